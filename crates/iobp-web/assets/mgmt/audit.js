// The Management Dashboard's Audit trail page (`/audit`, admins only): who changed what,
// when and from where, newest first, page by page.

import { $, h, replace } from '../common/dom.js';
import { api } from '../common/api.js';
import * as fmt from '../common/format.js';
import { can, needRole, runPage, start } from '../common/page.js';

runPage(async () => {
  await start();
  const root = $('#audit-root');
  if (!can('admin')) {
    needRole(root, 'admin', 'The audit trail');
    return;
  }
  const size = h('select', { id: 'audit-size' }, [25, 50, 100, 200].map((n) => h('option', { value: String(n), text: String(n), selected: n === 50 })));
  const newest = h('button', { type: 'button', class: 'btn', id: 'audit-newest', text: 'Newest' });
  const older = h('button', { type: 'button', class: 'btn small', id: 'audit-older', text: 'Older →' });
  const newer = h('button', { type: 'button', class: 'btn small', id: 'audit-newer', text: '← Newer' });
  const pageNo = h('span', { class: 'muted small', id: 'audit-page' });
  const table = h('div', { class: 'table-wrap', id: 'audit-table' });
  replace(root, h('section', { class: 'card' },
    h('div', { class: 'toolbar' },
      h('div', { class: 'field' }, h('label', { for: 'audit-size', text: 'Entries per page' }), size), newest),
    table,
    h('div', { class: 'pager' }, newer, pageNo, older)));
  // Cursors: `before` of each page shown so far (null: the newest).
  let cursors = [null];
  let entries = [];
  const load = async () => {
    const before = cursors[cursors.length - 1];
    const qs = new URLSearchParams({ limit: size.value });
    if (before !== null) qs.set('before', String(before));
    try {
      entries = await api('GET', `/api/v1/audit?${qs}`);
    } catch (e) {
      replace(table, h('div', { class: 'notice error', text: e.message }));
      return;
    }
    if (!entries.length) {
      replace(table, h('div', { class: 'empty', text: 'No entries.' }));
    } else {
      replace(table, h('table', { class: 'stack', id: 'audit-list' },
        h('thead', null, h('tr', null, ['When', 'Who', 'From', 'What', 'Target', 'Details'].map((t) => h('th', { text: t })))),
        h('tbody', null, entries.map((e) => h('tr', { dataset: { id: String(e.id), action: e.action } },
          h('td', { class: 'nowrap num', 'data-label': 'When', text: fmt.time(e.at_ms) }),
          h('td', { 'data-label': 'Who', text: e.username || '—' }),
          h('td', { class: 'mono', 'data-label': 'From', text: e.address || '—' }),
          h('td', { 'data-label': 'What' }, h('span', { class: `tag${/failed/.test(e.action) ? ' level-WARN' : ''}`, text: e.action })),
          h('td', { class: 'mono', 'data-label': 'Target', text: e.target || '—' }),
          h('td', { class: 'message small', 'data-label': 'Details', text: e.detail || '' }))))));
    }
    pageNo.textContent = `Page ${cursors.length}${entries.length ? ` · entries #${entries[entries.length - 1].id}–#${entries[0].id}` : ''}`;
    newer.disabled = cursors.length === 1;
    older.disabled = entries.length < Number(size.value);
  };
  older.addEventListener('click', () => {
    if (!entries.length) return;
    cursors.push(entries[entries.length - 1].id);
    load();
  });
  newer.addEventListener('click', () => {
    if (cursors.length > 1) cursors.pop();
    load();
  });
  newest.addEventListener('click', () => { cursors = [null]; load(); });
  size.addEventListener('change', () => { cursors = [null]; load(); });
  await load();
});
