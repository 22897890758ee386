// The sides of the channel-pair form: the type selector and, for each type, its fields
// (host and port, serial settings, relay URL and user, MQTT broker and topic), with the
// framing, acknowledgement, TLS and RS-485 sub-forms. Only what applies to the chosen type is shown; what is hidden is
// not sent, except settings marked `keep` (TLS while switched off, relay credentials).

import { $, append, h, replace } from '../common/dom.js';
import { escapeBytes, field, getPath, hexByte, nextId, readFields } from './form-fields.js';

const TYPES = [
  ['tcp_server', 'TCP server (listens)'],
  ['tcp_client', 'TCP client (connects)'],
  ['udp', 'UDP (datagrams)'],
  ['serial', 'Serial (RS-232/RS-485)'],
  ['remote_icombuffer', 'Remote ioBufferPro'],
  ['nats', 'NATS JetStream'],
  ['mqtt', 'MQTT broker'],
  ['modbus', 'Modbus device (polled; source only)'],
];
/** Types that can only be a source. */
const SOURCE_ONLY = ['modbus'];
/** A first poll for a new modbus side: an example to edit. */
const EXAMPLE_POLLS = [{
  name: 'tank', unit: 1, function: 'holding_registers', address: 0, count: 4, interval_ms: 1000,
  fields: [{ name: 'level', offset: 0, type: 'u16', scale: 0.1 }],
}];
const FRAMINGS = [
  ['raw', 'Raw – byte-transparent, no framing'],
  ['line', 'Line – ends with a delimiter'],
  ['mllp', 'MLLP – HL7 (0x0B … 0x1C 0x0D)'],
  ['stx_etx', 'STX/ETX (0x02 … 0x03)'],
  ['length_prefixed', 'Length-prefixed (big endian)'],
  ['delimited', 'Delimited – any start and end bytes'],
  ['idle_gap', 'Idle gap – ends after a silence'],
  ['astm', 'ASTM E1381 – lab instruments (ENQ/ACK link protocol)'],
];
const ACKS = [['none', 'None'], ['mllp', 'MLLP – HL7 ACK'], ['byte', 'Byte – ACK/NAK byte']];
const CLIENT_AUTH = [
  ['none', 'None'],
  ['optional', 'Optional – checked if presented'],
  ['required', 'Required – mutual TLS'],
];
/** What the API shows instead of a stored password (sending it back keeps the password). */
export const PASSWORD_MASK = '********';

/** The framing sub-form of a side (`prefix`: the side's JSON path). */
function framingBlock(prefix, f) {
  f = f || { type: 'raw' };
  const path = `${prefix}.framing`;
  const box = h('div', { class: 'fields' });
  const fill = (type, v) => {
    const fs = [];
    if (type === 'line') {
      fs.push(field({ path: `${path}.delimiter`, label: 'Delimiter', kind: 'bytes', required: true, value: escapeBytes(v.delimiter !== undefined ? v.delimiter : '\n'), help: 'Escapes: \\n \\r \\t \\0 \\xHH. Not part of the message.' }));
    } else if (type === 'length_prefixed') {
      fs.push(field({ path: `${path}.length_bytes`, label: 'Length field', kind: 'int', value: v.length_bytes || 4, options: [[1, '1 byte'], [2, '2 bytes'], [4, '4 bytes']] }));
    } else if (type === 'delimited') {
      fs.push(field({ path: `${path}.start`, label: 'Start bytes', kind: 'bytes', value: v.start !== undefined ? escapeBytes(v.start) : '', help: 'May be empty. Escapes: \\n \\r \\t \\0 \\xHH.' }));
      fs.push(field({ path: `${path}.end`, label: 'End bytes', kind: 'bytes', required: true, value: v.end !== undefined ? escapeBytes(v.end) : '', placeholder: '\\r\\n' }));
    } else if (type === 'idle_gap') {
      fs.push(field({ path: `${path}.gap_ms`, label: 'Silence that ends a message (ms)', kind: 'int', required: true, value: v.gap_ms }));
    } else if (type === 'astm') {
      fs.push(h('p', { class: 'muted small wide', text: 'The side speaks the ASTM E1381 link protocol itself: as a source it answers the analyzer (ENQ, frames, checksums, NAK and retransmission) and acknowledges a message only once it is on disk; as a destination it sends each message as one transmission to the LIS. One message is one E1394 message, Header (H) to Terminator (L). Acknowledgement stays None.' }));
    }
    fs.push(field({ path: `${path}.max_message_bytes`, label: 'Largest message (bytes)', kind: 'int', value: v.max_message_bytes, placeholder: '1048576', help: type === 'raw' ? 'Longer chunks are split, never dropped.' : 'Longer frames are rejected, counted and kept for inspection.' }));
    replace(box, fs);
  };
  const sel = field({ path: `${path}.type`, label: 'Framing', value: f.type, options: FRAMINGS, help: 'What one message is on the byte stream. Each side frames with its own setting (protocol translation).' });
  $('select', sel).addEventListener('change', (ev) => { fill(ev.target.value, {}); astmAck(prefix, ev.target.value); });
  fill(f.type, f);
  setTimeout(() => astmAck(prefix, f.type), 0);
  return h('fieldset', { class: 'framing', dataset: { block: `${prefix}-framing` } }, h('legend', { text: 'Framing' }),
    h('div', { class: 'fields' }, sel), box);
}

/**
 * The ASTM link protocol acknowledges each frame itself: while a side's framing is astm its
 * acknowledgement is None and cannot be changed (the server refuses anything else).
 */
function astmAck(prefix, framingType) {
  const sel = document.querySelector(`[data-block="${prefix}-ack"] select`);
  if (!sel) return;
  const astm = framingType === 'astm';
  if (astm && sel.value !== 'none') {
    sel.value = 'none';
    sel.dispatchEvent(new Event('change'));
  }
  sel.disabled = astm;
}

/** The acknowledgement sub-form of a side; `role` is 'source' or 'destination'. */
function ackBlock(prefix, role, a) {
  const ack = typeof a === 'string' ? { type: a } : (a || { type: 'none' });
  const path = `${prefix}.ack`;
  const dest = role === 'destination';
  const box = h('div', { class: 'fields' });
  const fill = (type, v) => {
    const fs = [];
    if (type === 'byte') {
      fs.push(field({ path: `${path}.ack`, label: 'ACK byte', kind: 'byte', value: hexByte(v.ack !== undefined ? v.ack : 6) }));
      fs.push(field({ path: `${path}.nak`, label: 'NAK byte', kind: 'byte', value: hexByte(v.nak !== undefined ? v.nak : 0x15) }));
    }
    if (dest && type !== 'none') {
      fs.push(field({ path: `${path}.timeout_ms`, label: 'Wait for it (ms)', kind: 'int', value: v.timeout_ms, placeholder: '10000' }));
    }
    replace(box, fs);
  };
  const help = dest
    ? 'Wait for the receiving application to confirm each message before it counts as delivered.'
    : 'Acknowledge each message to the sender once it is stored on disk.';
  const sel = field({ path: `${path}.type`, label: 'Acknowledgement', value: ack.type, options: ACKS, help });
  $('select', sel).addEventListener('change', (ev) => fill(ev.target.value, {}));
  fill(ack.type, ack);
  return h('fieldset', { class: 'ack', dataset: { block: `${prefix}-ack` } }, h('legend', { text: 'Acknowledgements' }),
    h('div', { class: 'fields' }, sel), box);
}

/**
 * The settings of a TLS client (a tcp_client side, a relay side with an https:// url, an
 * mqtt side with an mqtts:// url): trusted CA, server name, client certificate and key, and
 * the lab-only skip-verify with its warning (`secret`: the password it gives away, if any).
 * Kept while hidden, so hiding them loses nothing.
 */
function clientTlsFields(path, t, hostWord, secret) {
  const warning = h('div', { class: 'notice warn insecure-warning', role: 'alert', hidden: !t.insecure_skip_verify },
    h('strong', { text: 'Certificate verification is OFF. ' }),
    secret
      ? `Any server is accepted, including one in the middle that reads and changes the messages and learns ${secret}. For lab use only.`
      : 'Any server is accepted, including one in the middle that reads and changes the messages. For lab use only; ioBufferPro logs a warning for this side.');
  return [
    field({ path: `${path}.ca`, label: 'Trusted CA (PEM, optional)', keep: true, value: t.ca, placeholder: '/etc/iobufferpro/ca.pem', help: 'Verify the server against this CA instead of the system’s roots.' }),
    field({ path: `${path}.server_name`, label: 'Server name (optional)', keep: true, value: t.server_name, placeholder: `default: ${hostWord}`, help: 'The name the server certificate must carry, when it differs from the host connected to.' }),
    field({ path: `${path}.cert`, label: 'Client certificate (PEM, optional)', keep: true, value: t.cert, placeholder: '/etc/iobufferpro/client.pem', help: 'For servers that ask for one (mutual TLS). Give certificate and key, or neither.' }),
    field({ path: `${path}.key`, label: 'Client key (PEM, optional)', keep: true, value: t.key, placeholder: '/etc/iobufferpro/client.key' }),
    field({
      path: `${path}.insecure_skip_verify`,
      label: 'Do not verify the server certificate (insecure_skip_verify) – lab use only',
      kind: 'bool',
      keep: true,
      wide: true,
      danger: true,
      value: t.insecure_skip_verify,
      help: 'Lab use only: accepts any server certificate. Never use it in production.',
      onChange: (ev) => { warning.hidden = !ev.target.checked; },
    }),
    warning,
  ];
}

/**
 * The HTTPS settings of a relay side (remote_icombuffer): shown only while its url starts
 * with https:// (TLS is implied by the url; there is no on/off switch). Kept while hidden.
 */
function remoteTlsBlock(prefix, t) {
  t = t || {};
  const path = `${prefix}.tls`;
  return h('fieldset', { class: 'tls', dataset: { block: `${prefix}-tls`, tls: 'remote' } },
    h('legend', { text: 'HTTPS (the URL starts with https://)' }),
    h('p', { class: 'muted small', text: 'The connection to the remote instance is encrypted because its URL starts with https://. Without a trusted CA the server certificate is checked against the system’s roots.' }),
    h('div', { class: 'fields' }, clientTlsFields(path, t, 'the URL’s host', 'the relay user’s password')));
}

/**
 * The TLS settings of an mqtt side: shown only while its url starts with mqtts:// (TLS is
 * implied by the url, as for a relay side). Kept while hidden.
 */
function mqttTlsBlock(prefix, t) {
  t = t || {};
  const path = `${prefix}.tls`;
  return h('fieldset', { class: 'tls', dataset: { block: `${prefix}-tls`, tls: 'mqtt' } },
    h('legend', { text: 'TLS (the URL starts with mqtts://)' }),
    h('p', { class: 'muted small', text: 'The connection to the broker is encrypted because its URL starts with mqtts://. Without a trusted CA the broker’s certificate is checked against the system’s roots.' }),
    h('div', { class: 'fields' }, clientTlsFields(path, t, 'the URL’s host', 'the broker password')));
}

/**
 * The fields of an mqtt side: broker url and protocol version, the topic (a destination
 * publishes to it, a source subscribes to it as a filter), QoS, client id, the publish window
 * (destinations), timers, the broker credentials (a stored password comes back masked and is
 * kept when sent back unchanged) and TLS for mqtts:// urls.
 */
function mqttFields(p, prefix, src, v, fields, out) {
  const auth = v.auth || {};
  const masked = auth.password === PASSWORD_MASK;
  const urlF = field({
    path: p('url'),
    label: 'Broker URL',
    required: true,
    value: v.url,
    placeholder: 'e.g. mqtt://broker.example:1883',
    wide: true,
    help: 'mqtt://host:port (default port 1883), or mqtts://host:port (default 8883) for TLS. No user name in the URL: use Authentication.',
  });
  const urlIn = $('input', urlF);
  const authSet = h('fieldset', { class: 'auth' }, h('legend', { text: 'Authentication (optional)' }),
    h('p', { class: 'muted small', text: 'A user of the broker, if it asks for one. Leave both empty for a broker without authentication.' }),
    h('div', { class: 'fields' },
      field({ path: p('auth.username'), label: 'User name', value: auth.username, placeholder: 'e.g. iobp-plant-1' }),
      field({
        path: p('auth.password'),
        label: 'Password',
        kind: 'password',
        value: auth.password,
        help: masked ? 'Stored: leave it to keep the stored password. A changed URL, client id, user or TLS setting needs the password again.' : undefined,
      })));
  const tls = mqttTlsBlock(prefix, v.tls);
  const sync = () => { tls.hidden = !/^mqtts:\/\//.test(urlIn.value.trim()); };
  urlIn.addEventListener('input', sync);
  urlIn.addEventListener('change', sync);
  append(fields,
    urlF,
    field({ path: p('version'), label: 'Protocol version', value: v.version || '5', options: [['5', 'MQTT 5'], ['3.1.1', 'MQTT 3.1.1']], help: 'MQTT 5 unless the broker speaks only 3.1.1.' }),
    field({
      path: p('topic'),
      label: src ? 'Topic filter' : 'Topic',
      required: true,
      value: v.topic,
      placeholder: src ? 'e.g. plant/+/results or plant/#' : 'e.g. plant/{pair}/results',
      wide: true,
      help: src
        ? 'What this source subscribes to: + stands for one whole level (plant/+/results), # for all remaining levels and must be last (plant/#).'
        : 'Where each message is published; {pair} becomes this pair’s id. No + or # wildcards.',
    }),
    field({ path: p('qos'), label: 'Quality of service', kind: 'int', value: v.qos || 1, options: [[1, '1 – at least once'], [2, '2 – exactly once']], help: src ? 'A message is acknowledged to the broker only once it is stored on disk here.' : 'A message counts as delivered once the broker acknowledged it (PUBACK for QoS 1, PUBCOMP for QoS 2).' }),
    field({ path: p('client_id'), label: 'Client id (optional)', value: v.client_id, placeholder: src ? 'default: iobp-<pair id>-<filter hash>' : 'default: iobp-<pair id>', help: src ? 'The persistent session belongs to this id: two clients with the same id take it from each other. The default changes with the filter and QoS, so that an edit starts a new session.' : 'Unique on the broker: two clients with the same id take the connection from each other.' }),
    src ? field({ path: p('drop_duplicates'), label: 'Store copies from another ioBufferPro once', kind: 'bool', value: v.drop_duplicates, wide: true, help: 'MQTT 5: a message carrying another instance’s iobp-id that is already stored (sent again after its reconnect or crash) is dropped. Only where the broker lets only trusted ioBufferPro instances publish to this filter: a forged id could drop that sender’s later messages.' }) : null,
    src ? null : field({ path: p('in_flight'), label: 'Messages in flight', kind: 'int', value: v.in_flight, placeholder: '64', help: 'Published and not yet acknowledged, at most (1–1024). The broker may allow fewer.' }),
    field({ path: p('keep_alive_s'), label: 'Keep-alive (s)', kind: 'int', value: v.keep_alive_s, placeholder: '30', help: 'Seconds between pings while idle (5–3600).' }),
    field({ path: p('connect_timeout_ms'), label: 'Connect timeout (ms)', kind: 'int', value: v.connect_timeout_ms, placeholder: '10000' }));
  out.push(authSet, tls);
  sync();
}

/**
 * The TLS sub-form of a TCP side: a server (tcp_server) or a client (tcp_client) side, each
 * with only the settings that apply to it. With TLS off the settings are hidden but kept, so
 * switching TLS off and on again (or a stored pair with TLS off) loses nothing.
 */
function tlsBlock(prefix, t, server) {
  t = t || {};
  const path = `${prefix}.tls`;
  const box = h('div', { class: 'fields tls-settings', hidden: !t.enabled });
  if (server) {
    const auth = field({ path: `${path}.client_auth`, label: 'Client certificates', keep: true, value: t.client_auth || 'none', options: CLIENT_AUTH, help: 'Ask connecting clients for a certificate that chains to the client CA.' });
    const ca = field({ path: `${path}.ca`, label: 'Client CA (PEM)', mark: true, keep: true, value: t.ca, placeholder: '/etc/iobufferpro/clients-ca.pem', help: 'The CA that client certificates must chain to. Required unless client certificates are None.' });
    const authSel = $('select', auth);
    const sync = () => { $('.req', ca).hidden = authSel.value === 'none'; };
    authSel.addEventListener('change', sync);
    sync();
    append(box,
      field({ path: `${path}.cert`, label: 'Certificate file (PEM)', mark: true, keep: true, value: t.cert, placeholder: '/etc/iobufferpro/server.pem', help: 'This server’s certificate chain.' }),
      field({ path: `${path}.key`, label: 'Private key file (PEM)', mark: true, keep: true, value: t.key, placeholder: '/etc/iobufferpro/server.key' }),
      auth, ca);
  } else {
    append(box, clientTlsFields(path, t, 'the server host'));
  }
  const on = field({ path: `${path}.enabled`, label: 'Use TLS', kind: 'bool', value: t.enabled, help: 'Turned off, the TLS settings are kept but not used.', onChange: (ev) => { box.hidden = !ev.target.checked; } });
  return h('fieldset', { class: 'tls', dataset: { block: `${prefix}-tls`, tls: server ? 'server' : 'client' } },
    h('legend', { text: server ? 'TLS (this side is the server)' : 'TLS (this side is the client)' }),
    h('div', { class: 'fields' }, on), box);
}

/**
 * The settings of a `nats` side: servers, subject, stream, consumer (source), publish window
 * (destination), credentials (none, user and password, a token, or a `.creds` file; only the
 * chosen way's fields are sent) and TLS as a client (a server name replaces the host of the
 * URLs in the certificate check).
 */
function natsFields(prefix, role, v, fields, out) {
  const p = (f) => `${prefix}.${f}`;
  const src = role === 'source';
  const auth = v.auth || {};
  const masked = auth.password === PASSWORD_MASK || auth.token === PASSWORD_MASK;
  append(fields,
    field({ path: p('servers'), label: 'Servers', kind: 'list', required: true, wide: true, value: v.servers, placeholder: 'nats://nats-1:4222, nats://nats-2:4222', help: 'nats:// or tls:// URLs, separated by commas; several for a cluster. Credentials go below, not in the URL.' }),
    field({ path: p('subject'), label: src ? 'Subject filter' : 'Subject', required: true, value: v.subject, placeholder: src ? 'e.g. plant.>' : 'e.g. plant.{pair}.results', help: src ? 'The consumer takes the stream’s messages on this subject (wildcards: * for one token, > for the rest).' : 'Every message is published to it; {pair} becomes the pair id. A JetStream stream must capture it.' }),
    field({ path: p('stream'), label: src ? 'Stream' : 'Stream (optional)', required: src, value: v.stream, placeholder: 'e.g. PLANT', help: src ? 'The JetStream stream to consume.' : 'The stream expected to capture the subject: shown in the status, with a warning if another one does.' }),
    src
      ? field({ path: p('consumer'), label: 'Durable consumer (optional)', value: v.consumer, placeholder: 'default: iobp-<pair id>', help: 'One pair per consumer: it restarts the consumer after what it has stored.' })
      : field({ path: p('in_flight'), label: 'Published ahead of their acknowledgement', kind: 'int', value: v.in_flight, placeholder: '256', help: '1–4096. A message is delivered (Done) only once JetStream acknowledged it.' }),
    src ? field({ path: p('ack_wait_s'), label: 'Ack wait (s)', kind: 'int', value: v.ack_wait_s, placeholder: '30', help: 'A message not acknowledged within this long is delivered again (and stored once).' }) : null);
  const mode = auth.creds_file !== undefined ? 'creds'
    : auth.token !== undefined ? 'token'
      : auth.username !== undefined ? 'user' : 'none';
  const modeId = nextId('nats-auth');
  const modeSel = h('select', { id: modeId, dataset: { natsAuth: prefix } },
    [['none', 'None'], ['user', 'User name and password'], ['token', 'Token'], ['creds', 'Credentials file (.creds)']].map(([val, text]) => h('option', { value: val, text })));
  modeSel.value = mode;
  const userBox = h('div', { class: 'fields', hidden: mode !== 'user' },
    field({ path: p('auth.username'), label: 'User name', mark: true, value: auth.username }),
    field({ path: p('auth.password'), label: 'Password', kind: 'password', mark: true, value: auth.password, help: masked ? 'Stored: leave it to keep the stored password.' : undefined }));
  const tokenBox = h('div', { class: 'fields', hidden: mode !== 'token' },
    field({ path: p('auth.token'), label: 'Token', kind: 'password', mark: true, value: auth.token }));
  const credsBox = h('div', { class: 'fields', hidden: mode !== 'creds' },
    field({ path: p('auth.creds_file'), label: 'Credentials file', mark: true, wide: true, value: auth.creds_file, placeholder: '/etc/iobufferpro/edge.creds', help: 'A .creds file as nsc writes it (user JWT and NKey seed) on this machine. Checked when saved; read again at every connection, so a renewed file needs no edit. Only its path is stored.' }));
  modeSel.addEventListener('change', () => {
    userBox.hidden = modeSel.value !== 'user';
    tokenBox.hidden = modeSel.value !== 'token';
    credsBox.hidden = modeSel.value !== 'creds';
  });
  const authSet = h('fieldset', { class: 'auth' }, h('legend', { text: 'Authentication' }),
    h('div', { class: 'fields' }, h('div', { class: 'field' }, h('label', { for: modeId, text: 'Credentials' }), modeSel)),
    userBox, tokenBox, credsBox);
  out.push(authSet, tlsBlock(prefix, v.tls, false));
}

/**
 * The serial port: type any name, or pick one of the machine's ports (with the device a
 * stable link points to, the pairs that use it, ports configured but missing).
 */
function serialPortField(path, value, ctx) {
  const listId = nextId('ports');
  const ports = ctx.ports;
  const others = (p) => (p.used_by || []).filter((id) => id !== ctx.self);
  const describe = (p) => {
    const bits = [];
    if (p.device) bits.push(`→ ${p.device}`);
    if (!p.present) bits.push('missing: not on this machine now');
    const o = others(p);
    if (o.length) bits.push(`used by ${o.join(', ')}`);
    return bits.join(' · ');
  };
  const list = h('datalist', { id: listId }, ports.map((p) => h('option', {
    value: p.path,
    label: describe(p) || 'present',
    dataset: { present: String(!!p.present), usedBy: others(p).join(','), device: p.device || '' },
  })));
  const info = h('div', { class: 'port-info', 'aria-live': 'polite' });
  const f = field({
    path,
    label: 'Serial port',
    required: true,
    value,
    placeholder: ports.length ? 'choose from the list or type' : '/dev/ttyUSB0 or COM3',
    extra: [list, info],
    help: 'Prefer the stable /dev/serial/by-id/… names: they survive plugging the adapter into another socket.',
  });
  const input = $('input', f);
  input.setAttribute('list', listId);
  const update = () => {
    const v = input.value.trim();
    const bits = [];
    let state = '';
    const hit = ports.find((p) => p.path === v) || ports.find((p) => p.device && p.device === v);
    if (hit) {
      state = 'present';
      if (hit.path === v && hit.device) bits.push(h('span', { class: 'device', text: `Links to ${hit.device} now.` }));
      if (hit.path !== v) bits.push(h('span', { text: `Stable name: ${hit.path} (survives replugging).` }));
      if (!hit.present) {
        state = 'missing';
        bits.push(h('span', { class: 'warn-text', text: 'Missing: not on this machine now (unplugged?). The side stays Red until it is back.' }));
      }
      const o = others(hit);
      if (o.length) {
        state = 'used';
        bits.push(h('span', { class: 'warn-text', text: `Used by channel pair ${o.join(', ')}: a port serves one pair only.` }));
      }
    } else if (v && ctx.portsError) {
      state = 'unknown';
      bits.push(h('span', { text: `The port list could not be loaded (${ctx.portsError}).` }));
    } else if (v) {
      state = 'unknown';
      bits.push(h('span', { text: 'Not among the ports found on this machine now.' }));
    }
    info.dataset.state = state;
    replace(info, bits.map((b, i) => (i ? [' ', b] : b)));
    info.hidden = !bits.length;
  };
  input.addEventListener('input', update);
  input.addEventListener('change', update);
  update();
  return f;
}

/** The optional RS-485 settings of a serial side. */
function rs485Block(prefix, r) {
  const path = `${prefix}.rs485`;
  const on = !!r;
  r = r || {};
  const box = h('div', { class: 'fields rs485-settings', hidden: !on },
    field({ path: `${path}.rts_on_send`, label: 'RTS high while sending', kind: 'bool', value: r.rts_on_send !== false, help: 'Off: RTS low while sending (rts_on_send).' }),
    field({ path: `${path}.delay_before_send_ms`, label: 'Delay before sending (ms)', kind: 'int', value: r.delay_before_send_ms, placeholder: '0', help: 'From RTS to the first bit, 0–1000.' }),
    field({ path: `${path}.delay_after_send_ms`, label: 'Delay after sending (ms)', kind: 'int', value: r.delay_after_send_ms, placeholder: '0', help: 'From the last bit to releasing RTS, 0–1000.' }),
    field({ path: `${path}.full_duplex`, label: 'Full duplex (RS-422)', kind: 'bool', value: r.full_duplex }),
    field({ path: `${path}.terminate_bus`, label: 'Terminate the bus', kind: 'bool', value: r.terminate_bus, help: 'Switches on the termination resistor, where the adapter has one.' }));
  const toggle = field({
    path,
    label: 'RS-485 (driver switches the transceiver with RTS)',
    kind: 'presence',
    value: on,
    wide: true,
    help: 'Linux drivers with RS-485 support; a driver without it is reported as an error. Cannot be combined with RTS/CTS flow control.',
    onChange: (ev) => { box.hidden = !ev.target.checked; },
  });
  return h('fieldset', { class: 'rs485', dataset: { block: `${prefix}-rs485` } }, h('legend', { text: 'RS-485' }),
    h('div', { class: 'fields' }, toggle), box);
}

/**
 * The settings of a `modbus` side (a source): the transport — Modbus TCP (host, port) or RTU
 * on a serial port with the serial side's line settings and RS-485 — the response timeout,
 * and the polls as JSON (a list of {name, unit, function, address, count, interval_ms,
 * fields}); the server names a problem's poll and field (`source.polls[2].count`), shown at
 * the polls box.
 */
function modbusFields(prefix, v, ctx, fields, out) {
  const t = v.transport || { type: 'tcp', port: 502 };
  const tp = (f) => `${prefix}.transport.${f}`;
  const tcpBox = h('div', { class: 'fields modbus-tcp' },
    field({ path: tp('host'), label: 'Device host', required: true, value: t.host, placeholder: 'host name or IP address of the device or gateway' }),
    field({ path: tp('port'), label: 'Port', kind: 'int', value: t.port, placeholder: '502' }));
  const bauds = ctx.bauds;
  const rtuBox = h('div', { class: 'fields modbus-rtu' },
    serialPortField(tp('port'), t.type === 'rtu' ? t.port : undefined, ctx),
    field({ path: tp('baud_rate'), label: 'Baud rate', kind: 'int', value: t.baud_rate || 9600, options: bauds.map((b) => [b, String(b)]) }),
    field({ path: tp('data_bits'), label: 'Data bits', kind: 'int', value: t.data_bits || 8, options: [[7, '7'], [8, '8']] }),
    field({ path: tp('parity'), label: 'Parity', value: t.parity || 'Even', options: [['None', 'None'], ['Even', 'Even'], ['Odd', 'Odd']], help: 'Modbus RTU usually runs 8E1; set what the device uses.' }),
    field({ path: tp('stop_bits'), label: 'Stop bits', kind: 'int', value: t.stop_bits || 1, options: [[1, '1'], [2, '2']] }),
    rs485Block(`${prefix}.transport`, t.rs485));
  const kind = field({ path: tp('type'), label: 'Transport', value: t.type || 'tcp', options: [['tcp', 'Modbus TCP'], ['rtu', 'Modbus RTU (serial port)']] });
  const kindSel = $('select', kind);
  const sync = () => {
    tcpBox.hidden = kindSel.value !== 'tcp';
    rtuBox.hidden = kindSel.value !== 'rtu';
  };
  kindSel.addEventListener('change', sync);
  append(fields,
    kind,
    field({ path: tp('timeout_ms'), label: 'Response timeout (ms)', kind: 'int', value: t.timeout_ms, placeholder: '1000', help: 'A device that does not answer within this long shows Red and is reconnected.' }));
  out.push(
    h('fieldset', { class: 'modbus-transport', dataset: { block: `${prefix}-modbus` } }, h('legend', { text: 'Device' }), tcpBox, rtuBox),
    h('fieldset', { class: 'modbus-polls' }, h('legend', { text: 'Polls' }),
      h('p', { class: 'muted small', text: 'Each poll reads one block on its own schedule and stores one JSON message per reading. function: coils, discrete_inputs, holding_registers or input_registers; count: 1–125 registers or 1–2000 bits; interval_ms: at least 10. Optional fields decode values: type u16, i16, u32, i32, f32 or bool, word_order big or little, scale and offset_value.' }),
      h('div', { class: 'fields' },
        field({ path: `${prefix}.polls`, label: 'Polls (JSON)', kind: 'json', required: true, wide: true, rows: 12, value: v.polls || EXAMPLE_POLLS }))));
  sync();
}

/** The fields of one side for its type; `role` is 'source' or 'destination'. */
function endpointFields(prefix, role, type, v, ctx) {
  v = v || {};
  const p = (f) => `${prefix}.${f}`;
  const src = role === 'source';
  const out = [];
  const fields = h('div', { class: 'fields' });
  out.push(fields);
  const port = (help) => field({ path: p('port'), label: 'Port', kind: 'int', required: true, value: v.port, placeholder: '1-65535', help });
  const writeTimeout = (help) => field({ path: p('write_timeout_ms'), label: 'Write timeout (ms)', kind: 'int', value: v.write_timeout_ms, placeholder: '30000', help });
  switch (type) {
    case 'tcp_server':
      append(fields,
        field({ path: p('host'), label: 'Listen address', required: true, value: v.host !== undefined ? v.host : '0.0.0.0', help: '0.0.0.0 for every interface, 127.0.0.1 for this machine only.' }),
        port(src ? 'Senders connect to this port.' : 'Receiving applications connect to this port.'),
        field({ path: p('max_connections'), label: 'Max connections', kind: 'int', value: v.max_connections, placeholder: '256' }),
        src
          ? field({ path: p('idle_timeout_s'), label: 'Close idle connections after (s)', kind: 'int', value: v.idle_timeout_s, placeholder: 'never' })
          : writeTimeout());
      out.push(framingBlock(prefix, v.framing), ackBlock(prefix, role, v.ack), tlsBlock(prefix, v.tls, true));
      break;
    case 'tcp_client':
      append(fields,
        field({ path: p('host'), label: 'Server host', required: true, value: v.host, placeholder: 'host name or IP address' }),
        port(),
        field({ path: p('connect_timeout_ms'), label: 'Connect timeout (ms)', kind: 'int', value: v.connect_timeout_ms, placeholder: '10000' }),
        src ? null : writeTimeout());
      out.push(framingBlock(prefix, v.framing), ackBlock(prefix, role, v.ack), tlsBlock(prefix, v.tls, false));
      break;
    case 'udp':
      append(fields,
        field({ path: p('host'), label: src ? 'Listen address' : 'Target host', required: true, value: v.host !== undefined ? v.host : (src ? '0.0.0.0' : undefined), placeholder: src ? undefined : 'host name or IP address' }),
        port(src ? 'Datagrams arrive on this port.' : 'Datagrams are sent to this port.'),
        src ? field({ path: p('receive_buffer_bytes'), label: 'Receive buffer (bytes)', kind: 'int', value: v.receive_buffer_bytes, placeholder: '4194304 (4 MiB)', help: 'Holds bursts while the buffer writes to disk. UDP cannot be held back: what overflows it is dropped by the system, counted as refused and shown.' }) : null);
      break;
    case 'serial': {
      const bauds = ctx.bauds;
      const baud = v.baud_rate || 9600;
      const preset = bauds.includes(baud);
      const customId = nextId('baud-custom');
      const custom = h('input', { type: 'number', id: customId, step: 1, inputmode: 'numeric', value: preset ? '' : String(baud), placeholder: 'e.g. 31250', 'aria-label': 'Other baud rate', hidden: preset });
      const baudField = field({ path: p('baud_rate'), label: 'Baud rate', value: preset ? baud : 'other', options: [...bauds.map((b) => [b, String(b)]), ['other', 'Other…']], extra: custom, help: 'Or any other rate the driver accepts (Other…).' });
      const sel = $('select', baudField);
      Object.assign(sel.dataset, { kind: 'baud', custom: customId });
      sel.addEventListener('change', () => { custom.hidden = sel.value !== 'other'; if (!custom.hidden) custom.focus(); });
      append(fields,
        serialPortField(p('port'), v.port, ctx),
        baudField,
        field({ path: p('data_bits'), label: 'Data bits', kind: 'int', value: v.data_bits || 8, options: [[5, '5'], [6, '6'], [7, '7'], [8, '8']] }),
        field({ path: p('parity'), label: 'Parity', value: v.parity || 'None', options: [['None', 'None'], ['Even', 'Even'], ['Odd', 'Odd'], ['Mark', 'Mark (Linux only)'], ['Space', 'Space (Linux only)']], help: 'Mark and Space work on Linux only.' }),
        field({ path: p('stop_bits'), label: 'Stop bits', kind: 'int', value: v.stop_bits || 1, options: [[1, '1'], [2, '2']] }),
        field({ path: p('flow_control'), label: 'Flow control', value: v.flow_control || 'None', options: [['None', 'None'], ['RTS/CTS', 'RTS/CTS (hardware)'], ['XON/XOFF', 'XON/XOFF (software)']] }),
        src ? null : writeTimeout('A device that takes no data for this long is reopened and the messages retried.'));
      out.push(rs485Block(prefix, v.rs485), framingBlock(prefix, v.framing), ackBlock(prefix, role, v.ack));
      break;
    }
    case 'remote_icombuffer': {
      const auth = v.auth || {};
      const masked = auth.password === PASSWORD_MASK;
      const urlF = field({
        path: p('url'),
        label: 'URL of the remote instance (optional)',
        value: v.url,
        placeholder: 'e.g. https://plant-2.example:8080',
        wide: true,
        help: src
          ? 'With a URL this source connects and pulls the channel from that instance (its Operations Portal address). Leave it empty to wait: the remote instance then pushes to this one.'
          : 'With a URL this destination connects and pushes the channel to that instance (its Operations Portal address). Leave it empty to wait: the remote instance then pulls from this one.',
      });
      const urlIn = $('input', urlF);
      const authSet = h('fieldset', { class: 'auth' }, h('legend', { text: 'Authentication (a user of the remote instance)' }),
        h('p', { class: 'muted small', text: 'A user of the remote instance with the Relay role (created there on the Management Dashboard, Users page). The password is checked when the link connects.' }),
        h('div', { class: 'fields' },
          field({ path: p('auth.username'), label: 'User name', keep: true, mark: true, value: auth.username, placeholder: 'e.g. relay-plant-1' }),
          field({
            path: p('auth.password'),
            label: 'Password',
            kind: 'password',
            keep: true,
            mark: true,
            value: auth.password,
            help: masked ? 'Stored: leave it to keep the stored password. A changed URL, channel id or user needs the password again.' : undefined,
          })));
      const waits = h('div', { class: 'notice info small relay-waits', dataset: { relayRole: 'waits' } },
        h('strong', { text: 'This side waits for the remote instance. ' }),
        src
          ? 'The remote instance’s destination for this channel id has this instance’s URL and pushes; it logs in here with a user of this instance that has the Relay role (Management Dashboard → Users).'
          : 'The remote instance’s source for this channel id has this instance’s URL and pulls; it logs in here with a user of this instance that has the Relay role (Management Dashboard → Users).');
      const tls = remoteTlsBlock(prefix, v.tls);
      const sync = () => {
        const url = urlIn.value.trim();
        authSet.hidden = !url;
        waits.hidden = !!url;
        tls.hidden = !/^https:\/\//.test(url);
      };
      urlIn.addEventListener('input', sync);
      urlIn.addEventListener('change', sync);
      append(fields,
        h('div', { class: 'notice info small relay-explain wide' },
          'A relay links two ioBufferPro instances. One side of the link has a URL and connects (a destination pushes, a source pulls); the other side, without a URL, waits for it. The channel id names the link and is the same on both instances.'),
        urlF,
        field({ path: p('channel_id'), label: 'Channel id', required: true, value: v.channel_id, placeholder: 'e.g. plant-2-results', help: 'The link’s name, the same on both instances (not a pair id). A side without URL is found by it: one source and one destination per channel id on an instance.' }),
        waits);
      out.push(authSet, tls);
      sync();
      break;
    }
    case 'nats':
      natsFields(prefix, role, v, fields, out);
      break;
    case 'mqtt':
      mqttFields(p, prefix, src, v, fields, out);
      break;
    case 'modbus':
      modbusFields(prefix, v, ctx, fields, out);
      break;
    default:
      break;
  }
  return out;
}

/**
 * The type selector of a side and that type's fields, below `prefix` (`source`,
 * `destination`, or a backup's own prefix). Changing the type keeps what the types share.
 */
export function sideBlock(prefix, role, spec, ctx, typeId) {
  const box = h('div', { class: 'side-fields' });
  const types = role === 'source' ? TYPES : TYPES.filter(([t]) => !SOURCE_ONLY.includes(t));
  const typeField = field({ path: prefix, label: 'Type', value: spec ? spec.type : (role === 'source' ? 'tcp_server' : 'tcp_client'), options: types });
  const sel = $('select', typeField);
  sel.dataset.kind = 'type';
  if (typeId) {
    sel.id = typeId;
    $('label', typeField).setAttribute('for', sel.id);
  }
  sel.addEventListener('change', () => {
    // Keep what the new type shares with the old one (host, port, framing, ack, …).
    const keep = getPath(readFields(box).value, prefix) || {};
    replace(box, endpointFields(prefix, role, sel.value, keep, ctx));
  });
  replace(box, endpointFields(prefix, role, sel.value, spec || {}, ctx));
  return { typeField, box };
}

/** The source or the destination. */
export function mainSide(side, spec, ctx) {
  const title = side === 'source' ? 'Source' : 'Destination';
  const sub = side === 'source' ? 'Where messages come from.' : 'Where messages go, in order.';
  const { typeField, box } = sideBlock(side, side, spec, ctx, `${side}-type`);
  return h('fieldset', { class: 'side', dataset: { side } },
    h('legend', { text: title }), h('p', { class: 'muted small', text: sub }),
    h('div', { class: 'fields' }, typeField), box);
}
