// The Management Dashboard's Logs page (`/logs`): the instance's recent log lines by level,
// filtered by text, refreshed on demand or every 5 s.

import { $, h, replace } from '../common/dom.js';
import { api } from '../common/api.js';
import * as fmt from '../common/format.js';
import { runPage, start } from '../common/page.js';

runPage(async () => {
  await start();
  const box = $('#log-table');
  let lines = [];
  let timer = null;
  const render = () => {
    const q = $('#log-search').value.trim().toLowerCase();
    const shown = q ? lines.filter((l) => l.message.toLowerCase().includes(q)) : lines;
    if (!shown.length) {
      replace(box, h('div', { class: 'empty', id: 'log-empty', text: lines.length ? 'No line contains that text.' : 'No log lines at this level yet.' }));
      return;
    }
    replace(box, h('table', { class: 'stack', id: 'log-list' },
      h('thead', null, h('tr', null, ['Time', 'Level', 'Message'].map((t) => h('th', { text: t })))),
      h('tbody', null, shown.map((l) => h('tr', null,
        h('td', { class: 'nowrap num', 'data-label': 'Time', text: fmt.time(l.at_ms) }),
        h('td', { 'data-label': 'Level' }, h('span', { class: `tag level-${l.level}`, text: l.level })),
        h('td', { class: 'message mono', 'data-label': 'Message', text: l.message }))))));
  };
  const load = async () => {
    try {
      lines = await api('GET', `/api/v1/logs?level=${$('#log-level').value}&limit=${$('#log-limit').value}`);
      render();
      $('#log-status').textContent = `${fmt.num(lines.length)} line${lines.length === 1 ? '' : 's'} · updated ${fmt.clock(Date.now()).slice(0, 8)}`;
    } catch (e) {
      $('#log-status').textContent = `Could not load the log: ${e.message}`;
    }
  };
  $('#log-filter').addEventListener('submit', (ev) => { ev.preventDefault(); load(); });
  $('#log-level').addEventListener('change', load);
  $('#log-limit').addEventListener('change', load);
  $('#log-search').addEventListener('input', render);
  $('#log-auto').addEventListener('change', (ev) => {
    clearInterval(timer);
    if (ev.target.checked) timer = setInterval(load, 5000);
  });
  await load();
});
