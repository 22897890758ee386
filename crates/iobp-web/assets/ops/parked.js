// The Parked tab of a pair's page: the messages its destination refused
// `dead_letter.after_rejections` times and the dead-letter policy set aside, to re-send
// (stored again and delivered after everything buffered) or discard (operators).

import { $, h, replace } from '../common/dom.js';
import { api } from '../common/api.js';
import * as fmt from '../common/format.js';
import { confirmTyped, notify } from '../common/ui.js';
import { pairUrl } from './pair-actions.js';

/** The Parked tab of pair `pairId`: `load()` (re)loads the list, `loaded` once it did. */
export function parkedTab(pairId, canEdit) {
  const tab = {
    loaded: false,
    async load() {
      this.loaded = true;
      let list;
      try { list = await api('GET', `${pairUrl(pairId)}/parked`); } catch (e) { notify(e.message, 'error'); return; }
      const box = $('#parked-table');
      if (!list.length) {
        replace(box, h('div', { class: 'empty', id: 'parked-empty', text: 'No message is parked. With a dead-letter policy (Edit → Retry, storage and poison messages), a message the receiver refuses too often is set aside here and delivery goes on.' }));
        return;
      }
      const act = (m, what) => async () => {
        try {
          if (what === 'discard') {
            const ok = await confirmTyped({ title: `Discard parked message #${m.original_seq}`, message: 'It is removed for good; it will not be delivered.', expect: 'discard', confirmLabel: 'Discard' });
            if (!ok) return;
            await api('POST', `${pairUrl(pairId)}/parked/${m.id}/discard`);
            notify(`Parked message #${m.original_seq} discarded.`, 'ok');
          } else {
            const r = await api('POST', `${pairUrl(pairId)}/parked/${m.id}/resend`);
            notify(`Parked message #${m.original_seq} re-sent as #${r.seq}; it is delivered after everything already buffered.`, 'ok');
          }
        } catch (e) { notify(e.message, 'error'); }
        tab.load();
      };
      replace(box, h('table', { class: 'stack', id: 'parked-list' },
        h('thead', null, h('tr', null, ['Parked', 'Was', 'Bytes', 'Text', ''].map((t) => h('th', { text: t })))),
        h('tbody', null, list.map((m) => h('tr', { dataset: { parked: String(m.id) } },
          h('td', { class: 'nowrap', 'data-label': 'Parked', text: fmt.time(m.parked_ms) }),
          h('td', { class: 'num', 'data-label': 'Was', text: `#${m.original_seq}` }),
          h('td', { class: 'num', 'data-label': 'Bytes', text: fmt.num(m.length) }),
          h('td', { class: 'preview', 'data-label': 'Text', text: m.text }),
          h('td', { class: 'nowrap' }, canEdit ? [
            h('button', { type: 'button', class: 'btn small primary', dataset: { action: 'resend' }, text: '↻ Re-send', on: { click: act(m, 'resend') } }),
            ' ',
            h('button', { type: 'button', class: 'btn small danger', dataset: { action: 'discard' }, text: 'Discard', on: { click: act(m, 'discard') } }),
          ] : null))))));
    },
  };
  return tab;
}
