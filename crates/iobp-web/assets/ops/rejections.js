// The Rejections tab of a pair's page: frames and messages that were not passed on
// (oversize, malformed, undeliverable, refused), as the server keeps them for operators.

import { $, h, replace } from '../common/dom.js';
import { api } from '../common/api.js';
import * as fmt from '../common/format.js';
import { notify } from '../common/ui.js';
import { pairUrl } from './pair-actions.js';

/** The Rejections tab of pair `pairId`: `load()` (re)loads the list, `loaded` once it did. */
export function rejectionsTab(pairId) {
  return {
    loaded: false,
    async load() {
      this.loaded = true;
      let list;
      try { list = await api('GET', `${pairUrl(pairId)}/rejections`); } catch (e) { notify(e.message, 'error'); return; }
      const box = $('#rej-table');
      if (!list.length) { replace(box, h('div', { class: 'empty', id: 'rej-empty', text: 'Nothing was rejected.' })); return; }
      replace(box, h('table', { class: 'stack', id: 'rej-list' },
        h('thead', null, h('tr', null, ['When', 'Side', 'Reason', 'Bytes', 'Start (hex)', 'Seq', 'Peer'].map((t) => h('th', { text: t })))),
        h('tbody', null, [...list].reverse().map((r) => h('tr', null,
          h('td', { class: 'nowrap', 'data-label': 'When', text: fmt.time(r.at_ms) }),
          h('td', { 'data-label': 'Side', text: r.side }),
          h('td', { class: 'message', 'data-label': 'Reason', text: r.reason }),
          h('td', { class: 'num', 'data-label': 'Bytes', text: fmt.num(r.length) }),
          h('td', { class: 'preview', 'data-label': 'Start (hex)', text: r.preview }),
          h('td', { class: 'num', 'data-label': 'Seq', text: r.seq === null || r.seq === undefined ? '–' : `#${r.seq}` }),
          h('td', { 'data-label': 'Peer', text: r.peer || '–' }))))));
    },
  };
}
