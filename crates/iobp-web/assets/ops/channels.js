// The Operations Portal's Channels page (`/channels`): the list of channel pairs with start,
// stop, edit and delete, and the create and edit form (`#create`, `#edit=<id>`); the list
// follows the server's events.

import { $, append, clear, h, replace } from '../common/dom.js';
import { api } from '../common/api.js';
import { events } from '../common/events.js';
import * as fmt from '../common/format.js';
import { can, runPage, start } from '../common/page.js';
import { typeName } from '../common/status.js';
import { notify } from '../common/ui.js';
import { deletePair, pairUrl, setToggle, startStop } from './pair-actions.js';
import { formContext, pairForm } from './pair-form.js';
import {
  byName, channelDetail, endpointSummary, indicatorBadge, isRelay, lagText, undelivered,
} from './pair-text.js';

const enc = encodeURIComponent;

runPage(async () => {
  await start();
  const canEdit = can('operator');
  const tableBox = $('#pair-table');
  const panel = $('#form-panel');
  const createBtn = $('#create-pair');
  let pairs = [];
  const rows = new Map();

  const closeForm = () => {
    panel.hidden = true;
    clear(panel);
    createBtn.disabled = false;
    history.replaceState(null, '', '/channels');
  };
  const openForm = async (pair) => {
    if (!pair) createBtn.disabled = true;
    const ctx = await formContext(pair);
    replace(panel,
      h('div', { class: 'card-head' }, h('h2', { id: 'form-title', text: pair ? `Edit ${pair.name}` : 'Create Channel Pair' }),
        pair ? h('span', { class: 'muted small mono', text: pair.id }) : null),
      pairForm(pair, ctx, {
        onDone: async (res) => {
          closeForm();
          await load();
          const row = rows.get(res.id);
          if (row) { row.classList.add('selected'); setTimeout(() => row.classList.remove('selected'), 2500); }
        },
        onCancel: closeForm,
      }));
    panel.hidden = false;
    createBtn.disabled = !pair;
    history.replaceState(null, '', pair ? `/channels#edit=${enc(pair.id)}` : '/channels#create');
    panel.scrollIntoView({ block: 'start' });
    const first = $('#pair-name-input');
    if (first) first.focus();
  };

  const statusCell = (p) => [indicatorBadge('channel', p.status.channel, channelDetail(p), 'channel')];
  const sideCell = (p, side) => {
    const st = p.status[side];
    const f = p.status.failover;
    const e = p.spec ? p.spec[side] : null;
    return [
      h('div', null, h('strong', { text: typeName(st.type) }), ' ',
        indicatorBadge('connection', st.status, st.detail, side)),
      h('div', { class: 'sub', text: e ? endpointSummary(e) : '' }),
      side === 'destination' && p.spec && p.spec.failover && p.spec.failover.length
        ? h('div', { class: 'sub', dataset: { backups: String(p.spec.failover.length) }, text: `+ ${p.spec.failover.length} backup destination${p.spec.failover.length === 1 ? '' : 's'}${p.spec.failback === false ? ' · no failback' : ''}` })
        : null,
      side === 'destination' && f && f.active ? onBackup(p, f) : null,
      h('div', { class: 'sub', text: st.detail }),
      side === 'source' && isRelay(st) && st.lag ? h('div', { class: 'sub', dataset: { relayLag: '' }, text: `lag: ${lagText(st.lag)}` }) : null];
  };
  /** The backup in use, in the destination column. */
  const onBackup = (p, f) => {
    const e = p.spec && p.spec.failover ? p.spec.failover[f.active - 1] : null;
    return h('div', { class: 'sub on-backup', dataset: { failoverActive: String(f.active) }, title: f.reason ? `Last switch: ${f.reason}` : undefined },
      h('span', { class: 'tag state-pending', text: `on backup ${f.active}` }),
      e ? ` ${typeName(e.type)} ${endpointSummary(e)}` : '');
  };
  const countsCell = (p) => {
    const c = p.status.counts;
    return [h('span', { dataset: { count: 'received' }, text: fmt.num(c.received) }), ' / ',
      h('span', { dataset: { count: 'sent' }, text: fmt.num(c.sent) }), ' / ',
      h('span', { dataset: { count: 'pending' }, text: fmt.num(undelivered(c)) })];
  };
  const updateRow = (tr, p) => {
    const sig = JSON.stringify([p.enabled, p.status.channel, p.status.source, p.status.destination, p.status.failover && p.status.failover.active]);
    if (tr.iobpStatus !== sig) {
      tr.iobpStatus = sig;
      replace($('.c-status', tr), statusCell(p));
      replace($('.c-source', tr), sideCell(p, 'source'));
      replace($('.c-dest', tr), sideCell(p, 'destination'));
    }
    replace($('.c-counts', tr), countsCell(p));
    const t = $('button[data-action="toggle"]', tr);
    if (t) setToggle(t, p.enabled);
  };
  const buildRow = (p) => {
    const tr = h('tr', { dataset: { pairId: p.id } },
      h('td', { class: 'c-status', 'data-label': 'Status' }),
      h('td', { 'data-label': 'Channel pair' }, h('a', { href: `/pairs/${enc(p.id)}`, text: p.name }), h('div', { class: 'sub mono', text: p.id })),
      h('td', { class: 'c-source', 'data-label': 'Source' }),
      h('td', { class: 'c-dest', 'data-label': 'Destination' }),
      h('td', { class: 'c-counts num nowrap', 'data-label': 'Received / sent / undelivered' }),
      canEdit ? h('td', { class: 'actions' }) : null);
    if (canEdit) {
      const toggle = h('button', { type: 'button', class: 'btn small', dataset: { action: 'toggle' } });
      toggle.addEventListener('click', async () => {
        const cur = pairs.find((x) => x.id === p.id) || p;
        const res = await startStop(cur, toggle);
        if (res) { Object.assign(cur, res); updateRow(tr, cur); }
      });
      const edit = h('button', { type: 'button', class: 'btn small', dataset: { action: 'edit' }, text: '✎ Edit' });
      edit.addEventListener('click', async () => {
        try { await openForm(await api('GET', pairUrl(p.id))); } catch (e) { notify(e.message, 'error'); }
      });
      const del = h('button', { type: 'button', class: 'btn small ghost-danger', dataset: { action: 'delete' }, text: 'Delete' });
      del.addEventListener('click', async () => {
        const cur = pairs.find((x) => x.id === p.id) || p;
        if (await deletePair(cur)) await load();
      });
      append($('.actions', tr), h('div', { class: 'btn-row' }, toggle, edit, del));
    }
    updateRow(tr, p);
    return tr;
  };
  const renderTable = () => {
    rows.clear();
    if (!pairs.length) {
      replace(tableBox, h('div', { class: 'empty', id: 'no-pairs' },
        h('p', { text: 'No channel pairs yet.' }),
        canEdit ? h('p', { class: 'small', text: 'Use “Create Channel Pair” to add the first one: a source, its own buffer on disk, a destination.' })
          : h('p', { class: 'small', text: 'You have read-only access; an operator creates channel pairs.' })));
      return;
    }
    const tbody = h('tbody');
    for (const p of [...pairs].sort(byName)) {
      const tr = buildRow(p);
      rows.set(p.id, tr);
      tbody.append(tr);
    }
    replace(tableBox, h('div', { class: 'table-wrap' }, h('table', { class: 'stack', id: 'pairs-table' },
      h('thead', null, h('tr', null,
        h('th', { text: 'Status' }), h('th', { text: 'Channel pair' }), h('th', { text: 'Source' }),
        h('th', { text: 'Destination' }), h('th', { text: 'Received / sent / undelivered' }),
        canEdit ? h('th', { class: 'actions', text: 'Actions' }) : null)),
      tbody)));
  };
  let loading = null;
  const load = () => {
    loading = loading || api('GET', '/api/v1/pairs').then((ps) => { pairs = ps; renderTable(); }).finally(() => { loading = null; });
    return loading;
  };

  if (canEdit) {
    createBtn.hidden = false;
    createBtn.addEventListener('click', () => openForm(null).catch((e) => notify(e.message, 'error')));
  }
  await load();
  if (canEdit) {
    const hash = location.hash;
    if (hash === '#create') await openForm(null);
    else if (hash.startsWith('#edit=')) {
      const id = decodeURIComponent(hash.slice(6));
      try { await openForm(await api('GET', pairUrl(id))); } catch (e) { notify(e.message, 'error'); }
    }
  }
  events({}, {
    pairs: (list) => {
      const known = new Set(pairs.map((p) => p.id));
      if (list.length !== known.size || list.some((p) => !known.has(p.id))) { load(); return; }
      for (const s of list) {
        const p = pairs.find((x) => x.id === s.id);
        p.enabled = s.enabled;
        p.status = s.status;
        p.name = s.name;
        const tr = rows.get(s.id);
        if (tr) updateRow(tr, p);
      }
    },
  });
});
