// A message's trace in the message browser's inspect dialog: what happened to it, from
// receipt to confirmation — stored (from whom), every delivery attempt (which destination,
// the receiver's answer, the error), Done, parked, re-sent, replayed, restarts.

import { h } from '../common/dom.js';
import { api } from '../common/api.js';
import * as fmt from '../common/format.js';
import { pairUrl } from './pair-actions.js';

const LABELS = {
  stored: 'Stored (durable)',
  delivered: 'Delivered',
  refused: 'Refused by the receiver',
  returned: 'Attempt failed',
  undeliverable: 'Undeliverable',
  parked: 'Parked',
  parked_resent: 'Parked message re-sent',
  parked_discarded: 'Parked message discarded',
  copied: 'Copied',
  copy_of: 'Copy',
  started: 'Waiting at a start',
  trimmed: 'Older trace removed',
};

/** The time of an event, with milliseconds (the date once it changes). */
function when(us) {
  const ms = Math.floor(us / 1000);
  return `${fmt.time(ms).slice(0, 10)} ${fmt.clock(ms)}`;
}

/** What an event says beyond its kind, in one line. */
function detail(e, seq) {
  const parts = [];
  if (e.route) parts.push(e.route);
  if (e.peer) parts.push(e.kind === 'stored' ? `from ${e.peer}` : `to ${e.peer}`);
  if (e.answer) parts.push(`answer: ${e.answer}`);
  if (e.kind === 'parked' && e.count) parts.push(`after ${e.count} refusals`);
  if (e.kind === 'copied') parts.push(`as #${e.other_seq + (seq - e.from_seq)} of ${e.other_pair}`);
  if (e.kind === 'copy_of') parts.push(`of #${e.other_seq + (seq - e.from_seq)} of ${e.other_pair}`);
  if (e.kind === 'parked_resent') parts.push(`stored again as #${e.other_seq}`);
  if (e.error) parts.push(e.error);
  if (e.from_seq !== e.to_seq) {
    const span = e.until_us ? `, over ${((e.until_us - e.at_us) / 1000).toFixed(1)} ms` : '';
    parts.push(`(with #${e.from_seq}–#${e.to_seq}${span})`);
  }
  return parts.join(' · ');
}

/** The Trace section of message `seq` of pair `pairId`: filled in once loaded. */
export function traceSection(pairId, seq) {
  const list = h('tbody', null, h('tr', null, h('td', { colspan: '3', class: 'muted', text: 'Loading…' })));
  const note = h('p', { class: 'muted small' });
  const section = h('section', { id: 'message-trace' },
    h('h3', { text: 'Trace' }),
    h('div', { class: 'table-wrap' }, h('table', null,
      h('thead', null, h('tr', null, ['Time', 'Event', 'Detail'].map((t) => h('th', { text: t })))),
      list)),
    note);
  (async () => {
    let t;
    try {
      t = await api('GET', `${pairUrl(pairId)}/messages/${seq}/trace`);
    } catch (e) {
      list.replaceChildren(h('tr', null, h('td', { colspan: '3', class: 'error', text: `The trace could not be read: ${e.message}` })));
      return;
    }
    const rows = t.events.map((e) => h('tr', { dataset: { kind: e.kind } },
      h('td', { class: 'nowrap', text: when(e.at_us) }),
      h('td', { text: LABELS[e.kind] || e.kind }),
      h('td', { text: detail(e, seq) })));
    list.replaceChildren(...(rows.length ? rows : [h('tr', null, h('td', { colspan: '3', class: 'muted', text: 'No events recorded for this message.' }))]));
    const notes = [];
    if (t.received_ms) notes.push(`Received ${fmt.time(t.received_ms)}.`);
    if (t.events_omitted) notes.push(`${fmt.num(t.events_omitted)} events in the middle are not shown.`);
    if (t.events_lost) notes.push(`${fmt.num(t.events_lost)} trace events of this pair could not be written (overload): the trace may be incomplete; messages are unaffected.`);
    note.textContent = notes.join(' ');
  })();
  return section;
}
