// The Message Browser of a pair's page: the buffered messages by state, sequence or time,
// page by page; a message's text, hex and download; re-sending a delivered one (operators).

import { $, h, replace } from '../common/dom.js';
import { api } from '../common/api.js';
import * as fmt from '../common/format.js';
import { dialog, notify } from '../common/ui.js';
import { pairUrl } from './pair-actions.js';

const STATE_LABELS = { pending: 'Pending', in_flight: 'In flight', done: 'Done', unconfirmed: 'Unconfirmed', absent: 'Absent' };
const stateTag = (s) => h('span', { class: `tag state-${s}`, text: STATE_LABELS[s] || s });

/**
 * Sets up the Message Browser of pair `pairId`; returns it: `search()` loads the page the
 * filter asks for, `loaded` tells whether it did once. Re-sending only when `canEdit`.
 */
export function messageBrowser(pairId, canEdit) {
  const browser = {
    loaded: false,
    page: null,
    async search(q) {
      this.loaded = true;
      const params = new URLSearchParams();
      const state = $('#msg-state').value;
      const limit = $('#msg-limit').value;
      params.set('state', state);
      params.set('limit', limit);
      q = q || {};
      const from = q.from_seq !== undefined ? String(q.from_seq) : $('#msg-from').value.trim();
      const since = $('#msg-since').value;
      if (from !== '') params.set('from_seq', from);
      else if (since && !q.newest) params.set('since_ms', String(new Date(since).getTime()));
      // Search: a text, or an ASTM E1394 field's value (O.3 = the sample id).
      const contains = $('#msg-contains').value;
      const astmField = $('#msg-astm-field').value.trim();
      const astmValue = $('#msg-astm-value').value;
      if (!q.newest && contains !== '') params.set('contains', contains);
      if (!q.newest && astmField !== '') {
        params.set('astm_field', astmField);
        params.set('astm_value', astmValue);
      }
      this.searching = params.has('contains') || params.has('astm_field');
      const err = $('#msg-error');
      err.hidden = true;
      try {
        this.page = await api('GET', `${pairUrl(pairId)}/messages?${params}`);
        this.render();
      } catch (e) {
        err.textContent = e.message;
        err.hidden = false;
      }
    },
    render() {
      const pg = this.page;
      const box = $('#msg-table');
      if (!pg.messages.length) {
        const searched = this.searching && pg.scanned_to < pg.next_seq ? ` (searched up to #${pg.scanned_to - 1}; search further for more)` : '';
        replace(box, h('div', { class: 'empty', id: 'msg-empty', text: pg.next_seq === pg.first_seq ? 'The buffer holds no messages.' : `No message matches${searched}.` }));
      } else {
        const tbody = h('tbody');
        for (const m of [...pg.messages].reverse()) {
          const tr = h('tr', { class: 'clickable', tabindex: '0', dataset: { seq: String(m.seq), state: m.state } },
            h('td', { class: 'num', 'data-label': 'Seq', text: `#${m.seq}` }),
            h('td', { class: 'nowrap', 'data-label': 'Stored', text: fmt.time(m.timestamp_ms) }),
            h('td', { 'data-label': 'State' }, stateTag(m.state)),
            h('td', { class: 'num', 'data-label': 'Bytes', text: fmt.num(m.length) }),
            h('td', { class: 'preview', 'data-label': 'Text', text: m.text }));
          tr.addEventListener('click', () => openMessage(m.seq));
          tr.addEventListener('keydown', (ev) => { if (ev.key === 'Enter') openMessage(m.seq); });
          tbody.append(tr);
        }
        replace(box, h('table', { class: 'stack', id: 'msg-list' },
          h('thead', null, h('tr', null, ['Seq', 'Stored', 'State', 'Bytes', 'Text (click a row to inspect)'].map((t) => h('th', { text: t })))),
          tbody));
      }
      const seqs = pg.messages.map((m) => m.seq);
      const lo = seqs.length ? Math.min(...seqs) : null;
      const hi = seqs.length ? Math.max(...seqs) : null;
      $('#msg-range').textContent = seqs.length
        ? `Showing #${lo}–#${hi} · the buffer holds #${pg.first_seq}–#${Math.max(pg.first_seq, pg.next_seq - 1)}`
        : `The buffer holds #${pg.first_seq}–#${Math.max(pg.first_seq, pg.next_seq - 1)}`;
      const further = $('#msg-further');
      further.hidden = !(this.searching && pg.scanned_to < pg.next_seq);
      further.dataset.from = String(pg.scanned_to);
      $('#msg-older').disabled = lo === null || lo <= pg.first_seq;
      $('#msg-newer').disabled = hi === null || hi + 1 >= pg.next_seq;
    },
  };
  $('#msg-filter').addEventListener('submit', (ev) => { ev.preventDefault(); browser.search(); });
  $('#msg-further').addEventListener('click', (ev) => {
    $('#msg-from').value = ev.target.dataset.from;
    browser.search();
  });
  $('#msg-newest').addEventListener('click', () => {
    $('#msg-from').value = '';
    $('#msg-since').value = '';
    $('#msg-contains').value = '';
    $('#msg-astm-field').value = '';
    $('#msg-astm-value').value = '';
    browser.search({ newest: true });
  });
  $('#msg-older').addEventListener('click', () => {
    const seqs = browser.page.messages.map((m) => m.seq);
    const limit = Number($('#msg-limit').value);
    const from = Math.max(browser.page.first_seq, Math.min(...seqs) - limit);
    $('#msg-from').value = String(from);
    browser.search();
  });
  $('#msg-newer').addEventListener('click', () => {
    const seqs = browser.page.messages.map((m) => m.seq);
    $('#msg-from').value = String(Math.max(...seqs) + 1);
    browser.search();
  });

  async function openMessage(seq) {
    let m;
    try { m = await api('GET', `${pairUrl(pairId)}/messages/${seq}`); } catch (e) { notify(e.message, 'error'); return; }
    const body = h('div', { id: 'message-detail', dataset: { seq: String(seq), state: m.state } },
      h('dl', { class: 'meta-list' },
        h('dt', { text: 'State' }), h('dd', null, stateTag(m.state)),
        h('dt', { text: 'Stored' }), h('dd', { text: fmt.time(m.timestamp_ms) }),
        h('dt', { text: 'Length' }), h('dd', { text: `${fmt.num(m.length)} bytes${m.truncated ? ' (the views below show the start)' : ''}` })),
      h('h3', { text: 'Text' }), h('pre', { class: 'payload', id: 'message-text', text: m.text }),
      h('h3', { text: 'Hex' }), h('pre', { class: 'payload', id: 'message-hex', text: m.hex }),
      m.state !== 'done' ? h('p', { class: 'muted small', text: 'Only delivered (Done) messages can be re-sent; this one will be delivered anyway.' }) : null);
    const buttons = [
      {
        label: 'Download',
        value: null,
        action: () => {
          const bin = atob(m.base64);
          const bytes = new Uint8Array(bin.length);
          for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
          const url = URL.createObjectURL(new Blob([bytes], { type: 'application/octet-stream' }));
          const a = h('a', { href: url, download: `${pairId}-${seq}.bin` });
          document.body.append(a);
          a.click();
          a.remove();
          setTimeout(() => URL.revokeObjectURL(url), 10000);
          return false;
        },
      },
    ];
    if (canEdit && m.state === 'done') {
      buttons.push({
        label: '↻ Re-send',
        class: 'primary',
        value: 'resent',
        action: async (dlg, btn) => {
          btn.disabled = true;
          try {
            const r = await api('POST', `${pairUrl(pairId)}/messages/${seq}/resend`);
            notify(`Message #${seq} re-sent as #${r.seq}; it is delivered after everything already buffered.`, 'ok');
            browser.search();
            return true;
          } catch (e) {
            notify(`Could not re-send #${seq}: ${e.message}`, 'error');
            btn.disabled = false;
            return false;
          }
        },
      });
    }
    buttons.push({ label: 'Close', value: null });
    dialog({ title: `Message #${seq}`, body, buttons, wide: true, id: 'message-dialog' });
  }
  return browser;
}
