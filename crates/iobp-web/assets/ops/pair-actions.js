// What the Operations Portal's pages do to a channel pair from its list row or its page:
// start, stop, delete (confirmed by typing the id).

import { h } from '../common/dom.js';
import { api } from '../common/api.js';
import * as fmt from '../common/format.js';
import { confirmTyped, notify } from '../common/ui.js';
import { undelivered } from './pair-text.js';

const enc = encodeURIComponent;

/** The API URL of a pair. */
export const pairUrl = (id) => `/api/v1/pairs/${enc(id)}`;

/** Starts a stopped pair, stops a running one; resolves with the pair (null: refused). */
export async function startStop(p, btn) {
  const action = p.enabled ? 'stop' : 'start';
  btn.disabled = true;
  try {
    const res = await api('POST', `${pairUrl(p.id)}/${action}`);
    notify(`${res.name}: ${action === 'stop' ? 'stopped' : 'started'}.`, 'ok');
    return res;
  } catch (e) {
    notify(`Could not ${action} ${p.id}: ${e.message}`, 'error');
    return null;
  } finally {
    btn.disabled = false;
  }
}

/** Shows a start/stop button for a pair's state. */
export function setToggle(btn, enabled) {
  btn.textContent = enabled ? '■ Stop' : '▶ Start';
  btn.title = enabled ? 'Pause: stop receiving and delivering; buffered messages are kept' : 'Play: start receiving and delivering';
  btn.dataset.state = enabled ? 'running' : 'stopped';
}

/** Deletes a pair once the user typed its id; resolves whether it was deleted. */
export async function deletePair(p) {
  const c = p.status ? p.status.counts : null;
  const stored = c ? `${fmt.num(undelivered(c))} undelivered and ${fmt.num(c.done)} delivered message(s)` : 'its buffered messages';
  const ok = await confirmTyped({
    title: `Delete channel pair ${p.name}?`,
    message: h('span', null, 'This removes the configuration of ', h('strong', { text: p.id }),
      ` and its buffer with ${stored}, for good. It cannot be undone.`),
    expect: p.id,
    confirmLabel: 'Delete for good',
  });
  if (!ok) return false;
  try {
    await api('DELETE', `${pairUrl(p.id)}?confirm=${enc(p.id)}`);
    notify(`Channel pair ${p.id} deleted.`, 'ok');
    return true;
  } catch (e) {
    notify(`Could not delete ${p.id}: ${e.message}`, 'error');
    return false;
  }
}
