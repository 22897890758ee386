// How a channel pair's configuration and status read on the Operations Portal's pages: one
// line per side, status pills, buffer, relay and failover texts. No requests, no state.

import { badge } from '../common/status.js';
import * as fmt from '../common/format.js';

export const FRAMING_NAMES = {
  raw: 'raw', line: 'line', mllp: 'MLLP', stx_etx: 'STX/ETX',
  length_prefixed: 'length-prefixed', delimited: 'delimited', idle_gap: 'idle gap', astm: 'ASTM',
};

/** One line describing a side's configuration. */
export function endpointSummary(e) {
  if (!e) return '';
  const fr = e.framing ? ` · ${FRAMING_NAMES[e.framing.type] || e.framing.type}` : '';
  const ack = e.ack && e.ack.type && e.ack.type !== 'none' ? ` · ack ${e.ack.type}` : '';
  const tls = e.tls && e.tls.enabled ? ' · TLS' : '';
  switch (e.type) {
    case 'tcp_server': return `listens on ${e.host}:${e.port}${fr}${ack}${tls}`;
    case 'tcp_client': return `connects to ${e.host}:${e.port}${fr}${ack}${tls}`;
    case 'udp': return `${e.host}:${e.port}`;
    case 'serial': {
      const par = (e.parity || 'None')[0];
      return `${e.port} · ${e.baud_rate || 9600} ${e.data_bits || 8}${par}${e.stop_bits || 1}${e.rs485 ? ' · RS-485' : ''}${fr}${ack}`;
    }
    case 'remote_icombuffer':
      return e.url ? `${e.url} · channel ${e.channel_id}` : `waits for the remote instance · channel ${e.channel_id}`;
    case 'nats': {
      const servers = e.servers || [];
      const natsTls = tls || (servers.some((u) => u.startsWith('tls://')) ? ' · TLS' : '');
      return `${servers.join(', ')} · ${e.stream ? `stream ${e.stream} · ` : ''}subject ${e.subject}${natsTls}`;
    }
    case 'modbus': {
      const t = e.transport || {};
      const where = t.type === 'rtu' ? `RTU ${t.port} · ${t.baud_rate || 9600} baud` : `TCP ${t.host}:${t.port || 502}`;
      const polls = e.polls || [];
      return `${where} · ${polls.length} poll${polls.length === 1 ? '' : 's'}`;
    }
    case 'mqtt':
      return `${e.url} · topic ${e.topic} · QoS ${e.qos || 1}${e.version === '3.1.1' ? ' · MQTT 3.1.1' : ''}`;
    default: return '';
  }
}

/** A status pill marked with the indicator it shows (source, buffer, destination, channel). */
export function indicatorBadge(kind, color, detail, which) {
  const b = badge(kind, color, detail);
  b.dataset.indicator = which;
  return b;
}

export function lastErrorText(le) {
  return `${fmt.time(le.at_ms)} · ${le.side}: ${le.message}`;
}

/** Messages not delivered yet: pending and in flight. */
export function undelivered(c) { return c.pending + c.in_flight; }

export function bufferDetail(s) {
  const parts = [`${fmt.num(undelivered(s.counts))} undelivered`, fmt.bytes(s.buffer_bytes)];
  if (s.oldest_pending_age_ms) parts.push(`oldest ${fmt.duration(s.oldest_pending_age_ms)}`);
  return parts.join(' · ');
}

// ---- relay (remote_icombuffer sides) and failover (backup destinations)

export const isRelay = (side) => !!side && side.type === 'remote_icombuffer';

/** How far a relay source is behind its sender: "12,400 behind (3.2 s)", "caught up". */
export function lagText(lag) {
  if (!lag) return null;
  if (!lag.messages) return 'caught up';
  const secs = lag.seconds || 0;
  const age = secs >= 60 ? fmt.duration(secs * 1000) : `${fmt.num1(secs)} s`;
  return `${fmt.num(lag.messages)} behind (${age})`;
}

/** The remote instances a relay side is connected to, as one line. */
export function relayPeersText(side) {
  const peers = side.peers || [];
  if (!peers.length) return side.connections ? `${fmt.num(side.connections)} connected` : 'none connected';
  const more = side.connections > peers.length ? ` and ${fmt.num(side.connections - peers.length)} more` : '';
  return peers.join(', ') + more;
}

/** The lag line of a relay source: null for other sides. */
export function relayLagLine(side) {
  if (!isRelay(side)) return null;
  const t = lagText(side.lag);
  if (t) return t;
  return side.connections ? 'no message relayed yet on this connection' : '–';
}

/** "primary" or "backup N of M" (M: every destination, the primary included). */
export function activeDestinationText(f) {
  return f.active ? `backup ${f.active} of ${f.destinations}` : 'primary';
}

/** One line about failover: which destination delivers, since when, switches, why. */
export function failoverText(f) {
  const parts = [`Delivering to ${activeDestinationText(f)}`];
  if (f.since_ms) parts.push(`since ${fmt.time(f.since_ms)}`);
  parts.push(`${fmt.num(f.switches)} switch${f.switches === 1 ? '' : 'es'}`);
  return parts.join(' · ');
}

export function channelDetail(p) {
  const s = p.status;
  if (s.buffer_failure) return `buffer failed: ${s.buffer_failure}`;
  if (!p.enabled) return 'stopped: buffered messages are kept';
  if (s.channel === 'yellow' && s.failover && s.failover.active) {
    return `degraded: delivering to ${activeDestinationText(s.failover)}`;
  }
  if (s.channel === 'yellow' && s.counts && s.counts.parked) {
    return `${s.counts.parked} message(s) parked: refused by the receiver, see the Parked tab`;
  }
  return {
    green: 'running',
    yellow: 'degraded, e.g. delivering to a backup destination',
    red: 'a side is failing; see the last error',
    white: 'stopped',
  }[s.channel] || s.channel;
}

/** Orders pairs by name, then id. */
export function byName(a, b) {
  return a.name.localeCompare(b.name) || a.id.localeCompare(b.id);
}
