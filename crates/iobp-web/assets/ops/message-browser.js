// The Message Browser of a pair's page: the buffered messages by state, sequence or time,
// page by page; a message's text, hex, trace and download; re-sending a delivered one
// (operators).

import { $, h, replace } from '../common/dom.js';
import { api } from '../common/api.js';
import * as fmt from '../common/format.js';
import { dialog, notify } from '../common/ui.js';
import { pairUrl } from './pair-actions.js';
import { traceSection } from './message-trace.js';

const STATE_LABELS = { pending: 'Pending', in_flight: 'In flight', done: 'Done', unconfirmed: 'Unconfirmed', absent: 'Absent' };
/** Which kind of field a search names: `hl7` for a segment id (`MSH.10`), else `astm` (`O.3`). */
const fieldKind = (f) => (/^[A-Za-z][A-Za-z0-9]{2}\./.test(f) ? 'hl7' : 'astm');
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
        const kind = fieldKind(astmField);
        params.set(`${kind}_field`, astmField);
        params.set(`${kind}_value`, astmValue);
      }
      this.searching = params.has('contains') || params.has('astm_field') || params.has('hl7_field');
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
  if (canEdit) {
    $('#msg-replay').hidden = false;
    $('#msg-replay').addEventListener('click', () => replayDialog());
  }
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

  /**
   * Replay: the selection (prefilled from the filter), a preview — how many, the first five,
   * what is no longer retained — then the replay itself, into this pair or another.
   */
  async function replayDialog() {
    let pairs = [];
    try { pairs = (await api('GET', '/api/v1/pairs')).map((p) => p.id); } catch (e) { notify(e.message, 'error'); return; }
    const input = (id, label, type, value, extra) => h('div', { class: 'field' },
      h('label', { for: id, text: label }),
      h('input', { id, type, value: value || '', ...(extra || {}) }));
    const into = h('select', { id: 'replay-into' }, pairs.map((p) => h('option', { value: p, text: p === pairId ? `${p} (this pair: its destination again)` : p, selected: p === pairId })));
    const result = h('div', { id: 'replay-preview', class: 'replay-preview' });
    const body = h('div', null,
      h('p', { class: 'muted small', text: 'The selected messages are stored again as new messages, in their original order, after everything already buffered. The originals stay as they are. Select by sequence numbers or by time at each end; a text or an ASTM field narrows it.' }),
      h('div', { class: 'fields' },
        input('replay-from', 'From sequence', 'number', $('#msg-from').value, { min: '0', step: '1' }),
        input('replay-to', 'To sequence (included)', 'number', '', { min: '0', step: '1' }),
        input('replay-since', 'Stored since', 'datetime-local', $('#msg-since').value, { step: '1' }),
        input('replay-until', 'Stored before', 'datetime-local', '', { step: '1' }),
        input('replay-contains', 'Text contains', 'search', $('#msg-contains').value, { maxlength: '256' }),
        input('replay-astm-field', 'Field (ASTM O.3, HL7 MSH.10)', 'text', $('#msg-astm-field').value, { placeholder: 'O.3', size: '7' }),
        input('replay-astm-value', 'equals', 'search', $('#msg-astm-value').value),
        h('div', { class: 'field' }, h('label', { for: 'replay-into', text: 'Into' }), into)),
      result);
    const selection = () => {
      const v = (id) => $(`#${id}`).value.trim();
      const sel = {};
      if (v('replay-from') !== '') sel.from_seq = Number(v('replay-from'));
      if (v('replay-to') !== '') sel.to_seq = Number(v('replay-to'));
      if (v('replay-since')) sel.since_ms = new Date(v('replay-since')).getTime();
      if (v('replay-until')) sel.until_ms = new Date(v('replay-until')).getTime();
      if ($('#replay-contains').value !== '') sel.contains = $('#replay-contains').value;
      if (v('replay-astm-field') !== '') {
        const kind = fieldKind(v('replay-astm-field'));
        sel[`${kind}_field`] = v('replay-astm-field');
        sel[`${kind}_value`] = $('#replay-astm-value').value;
      }
      if (into.value !== pairId) sel.into = into.value;
      return sel;
    };
    const run = (dryRun) => api('POST', `${pairUrl(pairId)}/replay`, { ...selection(), dry_run: dryRun });
    let previewed = null;
    await dialog({
      title: 'Replay messages',
      body,
      wide: true,
      id: 'replay-dialog',
      buttons: [
        {
          label: 'Preview',
          value: 'preview',
          action: async (dlg, btn) => {
            btn.disabled = true;
            try {
              const r = await run(true);
              previewed = r;
              const gone = r.not_retained
                ? h('div', { class: 'notice warn', id: 'replay-not-retained', text: `${fmt.num(r.not_retained.removed)} message(s) of this range are no longer retained (the oldest kept is #${r.not_retained.oldest_seq}${r.not_retained.oldest_ms ? `, stored ${fmt.time(r.not_retained.oldest_ms)}` : ''}): they cannot be replayed.` })
                : null;
              replace(result,
                h('p', { id: 'replay-count', text: r.count ? `${fmt.num(r.count)} message(s) selected, #${r.first_seq}–#${r.last_seq}.` : 'No message is selected.' }),
                gone,
                r.preview.length ? h('ol', { class: 'list' }, r.preview.map((m) => h('li', { text: `#${m.seq} · ${fmt.time(m.timestamp_ms)} · ${m.text.length > 120 ? `${m.text.slice(0, 120)} …` : m.text}` }))) : null);
              const go = dlg.querySelector('[data-value="replayed"]');
              go.disabled = !r.count;
              go.textContent = r.count ? `↻ Replay ${fmt.num(r.count)} message(s)` : '↻ Replay';
            } catch (e) {
              replace(result, h('div', { class: 'notice error', id: 'replay-error', text: e.message }));
            }
            btn.disabled = false;
            return false;
          },
        },
        {
          label: '↻ Replay',
          class: 'primary',
          value: 'replayed',
          disabled: true,
          action: async (dlg, btn) => {
            btn.disabled = true;
            try {
              const r = await run(false);
              const where = r.into === pairId ? 'this pair' : `\`${r.into}\``;
              if (r.stopped) {
                notify(`Replayed ${fmt.num(r.replayed)} of ${fmt.num(r.count)} into ${where}, then stopped: ${r.stopped}. Replay again from #${r.resume_from_seq}.`, 'error');
              } else {
                notify(`Replayed ${fmt.num(r.replayed)} message(s) into ${where}${r.new_first_seq ? ` as #${r.new_first_seq}–#${r.new_last_seq}` : ''}.`, 'ok');
              }
              browser.search();
              return true;
            } catch (e) {
              replace(result, h('div', { class: 'notice error', id: 'replay-error', text: e.message }));
              btn.disabled = !previewed;
              return false;
            }
          },
        },
        { label: 'Close', value: null },
      ],
      onOpen: (dlg) => {
        // A changed selection must be previewed again before it is replayed.
        dlg.addEventListener('input', () => {
          const go = dlg.querySelector('[data-value="replayed"]');
          go.disabled = true;
          go.textContent = '↻ Replay';
        });
        dlg.addEventListener('change', (ev) => {
          if (ev.target === into) dlg.querySelector('[data-value="replayed"]').disabled = true;
        });
      },
    });
  }

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
      traceSection(pairId, seq),
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
