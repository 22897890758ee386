// A channel pair's page (`/pairs/<id>`): its status with charts, the Live View, the Message
// Browser and the rejections; start, stop, edit and delete for operators. Follows the
// server's events for this pair.

import { $, h, replace } from '../common/dom.js';
import { api } from '../common/api.js';
import { events } from '../common/events.js';
import { can, fatal, runPage, start } from '../common/page.js';
import { typeName } from '../common/status.js';
import { liveView } from './live-view.js';
import { messageBrowser } from './message-browser.js';
import { deletePair, pairUrl, setToggle, startStop } from './pair-actions.js';
import { pairCharts } from './pair-charts.js';
import { renderPairStatus } from './pair-status.js';
import { endpointSummary } from './pair-text.js';
import { parkedTab } from './parked.js';
import { rejectionsTab } from './rejections.js';
import { accountingPanel } from './reconciliation.js';

const enc = encodeURIComponent;

runPage(async () => {
  const id = decodeURIComponent(location.pathname.split('/')[2] || '');
  await start();
  const canEdit = can('operator');
  let pair;
  try {
    pair = await api('GET', pairUrl(id));
  } catch (e) {
    if (e.status === 404 || e.status === 400) {
      fatal(`There is no channel pair with id “${id}”. It may have been deleted.`);
      return;
    }
    throw e;
  }
  document.title = `${pair.name} · ioBufferPro Operations Portal`;
  $('#crumb-id').textContent = pair.id;
  $('#pair-name').textContent = pair.name;
  $('#pair-id').textContent = pair.id;
  const route = () => `· ${typeName(pair.spec.source.type)} ${endpointSummary(pair.spec.source)} → ${typeName(pair.spec.destination.type)} ${endpointSummary(pair.spec.destination)}`;
  $('#pair-route').textContent = route();

  // ---- actions
  if (canEdit) {
    const toggle = h('button', { type: 'button', class: 'btn', id: 'pair-toggle', dataset: { action: 'toggle' } });
    setToggle(toggle, pair.enabled);
    toggle.addEventListener('click', async () => {
      const res = await startStop(pair, toggle);
      if (res) { pair = res; renderPairStatus(pair); }
    });
    const edit = h('a', { class: 'btn', id: 'pair-edit', href: `/channels#edit=${enc(pair.id)}`, text: '✎ Edit' });
    const del = h('button', { type: 'button', class: 'btn ghost-danger', id: 'pair-delete', text: 'Delete' });
    del.addEventListener('click', async () => {
      if (await deletePair(pair)) location.assign('/channels');
    });
    replace($('#pair-actions'), toggle, edit, del);
  }

  // ---- status and charts
  renderPairStatus(pair);
  const sample = pairCharts();
  sample(pair.status.counts);
  accountingPanel(pair.id).start();

  // ---- Live View, Message Browser, rejections and the tabs between them
  const feed = liveView();
  const browser = messageBrowser(pair.id, canEdit);
  const rejections = rejectionsTab(pair.id);
  const parked = parkedTab(pair.id, canEdit);
  const tabs = ['live', 'messages', 'rejections', 'parked'];
  const showTab = (name) => {
    for (const t of tabs) {
      $(`#tab-${t}`).setAttribute('aria-selected', String(t === name));
      $(`#panel-${t}`).hidden = t !== name;
    }
    if (name === 'messages' && !browser.loaded) browser.search();
    if (name === 'rejections') rejections.load();
    if (name === 'parked') parked.load();
    history.replaceState(null, '', name === 'live' ? location.pathname : `${location.pathname}#${name}`);
  };
  for (const t of tabs) $(`#tab-${t}`).addEventListener('click', () => showTab(t));

  // Stream first, then seed from the recent history, so nothing falls in between.
  events({ pair: pair.id }, {
    pairs: (list) => {
      const s = list.find((p) => p.id === pair.id);
      if (!s) {
        const gone = $('#pair-gone');
        gone.textContent = 'This channel pair was deleted.';
        gone.hidden = false;
        return;
      }
      const prevRejected = pair.status.counts.rejected + pair.status.counts.refused;
      const prevParked = pair.status.counts.parked;
      pair.status = s.status;
      pair.enabled = s.enabled;
      pair.name = s.name;
      renderPairStatus(pair);
      sample(pair.status.counts);
      if (rejections.loaded && s.status.counts.rejected + s.status.counts.refused !== prevRejected) rejections.load();
      if (parked.loaded && s.status.counts.parked !== prevParked) parked.load();
    },
    message: (e) => feed.add(e, true),
    skipped: (d) => { feed.skipped += d.messages || 0; feed.note(); },
  });
  const [srcSeed, dstSeed] = await Promise.all([
    api('GET', `${pairUrl(pair.id)}/live?side=source`),
    api('GET', `${pairUrl(pair.id)}/live?side=destination`),
  ]);
  feed.seed('source', srcSeed);
  feed.seed('destination', dstSeed);
  feed.render();

  const initial = location.hash.slice(1);
  if (tabs.includes(initial)) showTab(initial);
});
