// The status card of a pair's page: source, buffer, destination and channel indicators (with
// relay peers and lag), the active destination with failover, the counters, the last error.

import { $, clear, h, replace } from '../common/dom.js';
import * as fmt from '../common/format.js';
import { typeName } from '../common/status.js';
import { setToggle } from './pair-actions.js';
import {
  activeDestinationText, bufferDetail, channelDetail, endpointSummary, indicatorBadge, isRelay,
  lastErrorText, relayLagLine, relayPeersText,
} from './pair-text.js';

/** One indicator of the status strip: what, its pill, the detail. */
const indicator = (which, kind, label, color, detail, extra) => h('div', { class: 'indicator', dataset: { box: which } },
  h('div', { class: 'what', text: label }),
  indicatorBadge(kind, color, detail, which),
  h('div', { class: 'detail', text: detail }),
  extra || null);

/** One counter tile. */
const tile = (label, n, key, alert, text, title) => h('div', { class: `tile${alert && n > 0 ? ' alert' : ''}`, dataset: { count: key }, title },
  h('div', { class: 'l', text: label }), h('div', { class: 'n', text: text !== undefined ? text : fmt.num(n) }));

/** A relay side's remote instances and, for a source, its lag (null for other sides). */
const relayInfo = (which, side) => {
  if (!isRelay(side)) return null;
  const lag = which === 'source' ? relayLagLine(side) : null;
  return h('dl', { class: 'relay-info', dataset: { relay: which } },
    h('div', null,
      h('dt', { text: side.connections === 1 ? 'Remote instance' : 'Remote instances' }),
      h('dd', { dataset: { relayPeers: '' }, text: relayPeersText(side) })),
    lag ? h('div', null,
      h('dt', { text: 'Lag', title: 'Messages waiting at the sending instance, and how far behind (the age of the newest message received)' }),
      h('dd', { dataset: { relayLag: '' }, text: lag })) : null);
};

/** A serial side's UART line errors, where its driver counts them (null otherwise). */
const lineInfo = (which, side) => {
  const e = side.line_errors;
  if (!e) return null;
  const kinds = [['framing', 'framing'], ['parity', 'parity'], ['overrun', 'overrun'], ['break', 'break'], ['buffer_overrun', 'buffer overrun']];
  const counted = kinds.filter(([k]) => e[k] > 0).map(([k, label]) => `${fmt.num(e[k])} ${label}`);
  return h('dl', { class: 'line-info', dataset: { lineErrors: which } },
    h('div', null,
      h('dt', { text: 'Line errors', title: 'Errors the serial port’s UART counted since the pair started: framing (often a wrong baud rate), parity, overrun, break, buffer overrun' }),
      h('dd', { class: counted.length ? 'alert' : '', text: counted.length ? counted.join(', ') : 'none' })));
};

/** The destination a failover index names, from the configuration shown. */
const destinationSpec = (pair, i) => (i === 0 ? pair.spec.destination : (pair.spec.failover || [])[i - 1]);

/** Which destination delivers (with failover): all of them, the one in use marked. */
const failoverBox = (pair, f) => {
  const box = $('#failover');
  if (!f) { box.hidden = true; clear(box); return; }
  const n = f.destinations;
  const items = [];
  for (let i = 0; i < n; i++) {
    const e = destinationSpec(pair, i);
    items.push(h('li', { dataset: i === f.active ? { dest: String(i), current: '' } : { dest: String(i) } },
      `${i === 0 ? 'Primary' : `Backup ${i}`}: `,
      e ? `${typeName(e.type)} ${endpointSummary(e)}` : '–',
      i === f.active ? ' ← in use' : ''));
  }
  box.className = `failover-box${f.active ? ' on-backup' : ''}`;
  box.dataset.active = String(f.active);
  replace(box,
    h('div', { class: 'head' },
      h('span', { text: 'Active destination' }),
      h('span', { class: 'active', id: 'failover-active', text: activeDestinationText(f) }),
      h('span', { id: 'failover-since', text: f.since_ms ? `since ${fmt.time(f.since_ms)}` : '' }),
      h('span', { id: 'failover-switches', text: `${fmt.num(f.switches)} switch${f.switches === 1 ? '' : 'es'} since the pair started` }),
      f.active && pair.spec.failback === false ? h('span', { text: 'no failback: stays until this one fails' }) : null),
    h('div', { class: 'reason', id: 'failover-reason' }, h('strong', { text: 'Last switch: ' }), f.reason || 'none yet'),
    h('ul', { class: 'list' }, items));
  box.hidden = false;
};
let statusSig = '';

/**
 * Shows `pair`'s status: the indicators, the failover box, the counters, the last error and
 * the start/stop button. Does nothing when nothing changed since the last call.
 */
export function renderPairStatus(pair) {
  const s = pair.status;
  const c = s.counts;
  const sig = JSON.stringify([pair.enabled, s]);
  if (sig === statusSig) return;
  statusSig = sig;
  const peers = (side) => (side.connections > 1 ? ` (${side.connections} connections)` : '');
  const f = s.failover;
  const activeDest = f && f.active ? destinationSpec(pair, f.active) : null;
  const destLabel = f && f.active
    ? `Destination · ${activeDestinationText(f)}${activeDest ? ` · ${typeName(activeDest.type)}` : ''}`
    : `Destination · ${typeName(s.destination.type)}`;
  replace($('#indicators'),
    indicator('source', 'connection', `Source · ${typeName(s.source.type)}`, s.source.status, s.source.detail + peers(s.source), relayInfo('source', s.source) || lineInfo('source', s.source)),
    indicator('buffer', 'buffer', 'Buffer state', s.buffer, bufferDetail(s)),
    indicator('destination', 'connection', destLabel, s.destination.status, s.destination.detail + peers(s.destination),
      relayInfo('destination', f && f.active ? { ...s.destination, type: activeDest ? activeDest.type : s.destination.type } : s.destination)
        || lineInfo('destination', s.destination)),
    indicator('channel', 'channel', 'Channel', s.channel, channelDetail(pair)));
  failoverBox(pair, f);
  replace($('#tiles'),
    tile('Received', c.received, 'received'),
    tile('Sent', c.sent, 'sent'),
    tile('Pending', c.pending, 'pending'),
    tile('In flight', c.in_flight, 'in_flight'),
    tile('Delivered, kept', c.done, 'done'),
    tile('Rejected', c.rejected, 'rejected', true),
    tile('Refused (full)', c.refused, 'refused', true),
    c.parked ? tile('Parked', c.parked, 'parked', true, undefined, 'Refused too often by the receiver and set aside (dead-letter policy): see the Parked tab') : null,
    tile('Errors', c.errors, 'errors'),
    tile('Retries', c.retries, 'retries'),
    c.duplicates_dropped || isRelay(s.source)
      ? tile('Duplicates dropped', c.duplicates_dropped, 'duplicates_dropped', false, undefined, 'Relayed messages received again (after a reconnect) and dropped: this buffer had them already')
      : null,
    tile('Buffer size', 0, 'buffer_bytes', false, fmt.bytes(s.buffer_bytes)),
    tile('Oldest pending', 0, 'oldest', false, s.oldest_pending_age_ms ? fmt.duration(s.oldest_pending_age_ms) : '–'));
  replace($('#last-error'),
    s.buffer_failure ? h('div', { class: 'notice error', text: `The buffer failed: ${s.buffer_failure}. The pair reopens it by itself (trusting nothing past the last position known to be on disk) and restarts.` }) : null,
    s.storage_alarm ? h('div', { class: 'notice error', id: 'pair-storage-alarm', text: `Storage full: ${s.storage_alarm}.` }) : null,
    s.last_error ? h('div', { class: 'last-error', id: 'pair-last-error' }, h('strong', { text: 'Last error: ' }), lastErrorText(s.last_error))
      : h('div', { class: 'muted small', id: 'pair-last-error', text: 'No errors since ioBufferPro started.' }));
  $('#rej-count').textContent = c.rejected + c.refused ? `(${fmt.num(c.rejected + c.refused)})` : '';
  $('#parked-count').textContent = c.parked ? `(${fmt.num(c.parked)})` : '';
  const t = $('#pair-toggle');
  if (t) setToggle(t, pair.enabled);
}
