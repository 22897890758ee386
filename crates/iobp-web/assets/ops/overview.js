// The Operations Portal's overview (`/`): a card per channel pair with its connections,
// buffer and counts, a summary, a filter; updated live from the server's events.

import { $, h, replace, syncList } from '../common/dom.js';
import { api } from '../common/api.js';
import { events } from '../common/events.js';
import * as fmt from '../common/format.js';
import { can, runPage, start } from '../common/page.js';
import { label as statusLabel, typeName } from '../common/status.js';
import {
  bufferDetail, byName, channelDetail, failoverText, indicatorBadge, isRelay, lastErrorText,
  relayLagLine, relayPeersText, undelivered,
} from './pair-text.js';

const enc = encodeURIComponent;

function count(label, n, key, alert) {
  return h('div', { class: alert && n > 0 ? 'alert' : undefined, dataset: { count: key } },
    h('span', { class: 'n', text: fmt.num(n) }), h('span', { class: 'l', text: label }));
}

/** The relay and failover lines of an overview card (null when neither applies). */
function cardNotes(s) {
  const notes = [];
  for (const which of ['source', 'destination']) {
    const side = s[which];
    if (!isRelay(side)) continue;
    const lag = which === 'source' ? relayLagLine(side) : null;
    notes.push(h('div', { class: 'note', dataset: { relay: which } },
      h('strong', { text: which === 'source' ? 'Relay in: ' : 'Relay out: ' }),
      h('span', { dataset: { relayPeers: '' }, text: relayPeersText(side) }),
      lag ? [' · lag ', h('span', { dataset: { relayLag: '' }, text: lag })] : null));
  }
  const f = s.failover;
  if (f) {
    notes.push(h('div', { class: `note${f.active ? ' warn' : ''}`, dataset: { failover: String(f.active) }, title: f.reason ? `Last switch: ${f.reason}` : undefined },
      h('strong', { text: 'Failover: ' }), failoverText(f).replace(/^Delivering/, 'delivering')));
  }
  return notes.length ? h('div', { class: 'card-notes' }, notes) : null;
}

function pairCard(p) {
  const s = p.status;
  const c = s.counts;
  return h('article', { class: 'pair-card', dataset: { pairId: p.id, channel: s.channel } },
    h('div', { class: 'title' },
      h('div', null,
        h('h2', null, h('a', { href: `/pairs/${enc(p.id)}`, text: p.name })),
        h('div', { class: 'id', text: p.id })),
      indicatorBadge('channel', s.channel, channelDetail(p), 'channel')),
    h('div', { class: 'indicators' },
      h('span', { class: 'what', text: 'Source' }),
      indicatorBadge('connection', s.source.status, s.source.detail, 'source'),
      h('span', { class: 'detail', title: s.source.detail, text: `${typeName(s.source.type)} · ${s.source.detail}` }),
      h('span', { class: 'what', text: 'Buffer' }),
      indicatorBadge('buffer', s.buffer, bufferDetail(s), 'buffer'),
      h('span', { class: 'detail', text: bufferDetail(s) }),
      h('span', { class: 'what', text: 'Destination' }),
      indicatorBadge('connection', s.destination.status, s.destination.detail, 'destination'),
      h('span', { class: 'detail', title: s.destination.detail, text: `${s.failover && s.failover.active ? `Backup ${s.failover.active} of ${s.failover.destinations}` : typeName(s.destination.type)} · ${s.destination.detail}` })),
    cardNotes(s),
    h('div', { class: 'counts' },
      count('Received', c.received, 'received'),
      count('Sent', c.sent, 'sent'),
      count('Pending', c.pending, 'pending'),
      c.in_flight ? count('In flight', c.in_flight, 'in_flight') : null,
      c.rejected ? count('Rejected', c.rejected, 'rejected', true) : null,
      c.refused ? count('Refused', c.refused, 'refused', true) : null),
    s.buffer_failure ? h('div', { class: 'last-error', text: `Buffer failed: ${s.buffer_failure} (healing: the pair restarts by itself once the buffer reopens)` }) : null,
    s.storage_alarm ? h('div', { class: 'last-error', dataset: { storageAlarm: '' }, text: `Storage full: ${s.storage_alarm}` }) : null,
    s.last_error ? h('div', { class: 'last-error', dataset: { lastError: '' } },
      h('strong', { text: 'Last error: ' }), lastErrorText(s.last_error)) : null);
}

runPage(async () => {
  await start();
  const canEdit = can('operator');
  if (canEdit) $('#create-link').hidden = false;
  const grid = $('#pairs');
  const filter = $('#filter');
  let list = [];
  const render = () => {
    const q = filter.value.trim().toLowerCase();
    const shown = list.filter((p) => !q || p.id.toLowerCase().includes(q) || p.name.toLowerCase().includes(q)).sort(byName);
    if (!list.length) {
      replace(grid, h('div', { class: 'empty', id: 'no-pairs' },
        h('p', { text: 'No channel pairs yet.' }),
        canEdit ? h('a', { class: 'btn primary', href: '/channels#create', text: '+ Create Channel Pair' })
          : h('p', { class: 'small', text: 'An operator creates them on the Channels page.' })));
    } else if (!shown.length) {
      replace(grid, h('div', { class: 'empty', text: `No channel pair matches “${filter.value}”.` }));
    } else {
      syncList(grid, shown, (p) => p.id, (p) => JSON.stringify(p), pairCard);
    }
    renderSummary(list);
  };
  const renderSummary = (ps) => {
    const by = { green: 0, yellow: 0, red: 0, white: 0 };
    let rec = 0;
    let sent = 0;
    let pend = 0;
    for (const p of ps) {
      by[p.status.channel] = (by[p.status.channel] || 0) + 1;
      rec += p.status.counts.received;
      sent += p.status.counts.sent;
      pend += undelivered(p.status.counts);
    }
    replace($('#summary'),
      h('span', null, h('strong', { id: 'pair-total', text: fmt.num(ps.length) }), ` channel pair${ps.length === 1 ? '' : 's'}`),
      ['green', 'yellow', 'red', 'white'].filter((c) => by[c]).map((c) => h('span', { class: `badge badge-${c}`, text: `${by[c]} ${statusLabel('channel', c)}` })),
      h('span', null, 'Received ', h('strong', { text: fmt.num(rec) })),
      h('span', null, 'Sent ', h('strong', { text: fmt.num(sent) })),
      h('span', null, 'Undelivered ', h('strong', { text: fmt.num(pend) })));
  };
  filter.addEventListener('input', render);
  list = (await api('GET', '/api/v1/pairs')).map(({ id, name, enabled, status }) => ({ id, name, enabled, status }));
  render();
  events({}, { pairs: (ps) => { list = ps; render(); } });
});
