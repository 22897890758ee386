// ioBufferPro Operations Portal: the overview, the Channels page (list, start/stop, create,
// edit, delete) and the per-pair page (status, charts, Live View, message browser,
// rejections). Uses app.js (window.IOBP) and chart.js.
'use strict';

(() => {
  const App = window.IOBP;
  const { h, $, $$, replace, clear, append } = App;
  const enc = encodeURIComponent;
  const pairUrl = (id) => `/api/v1/pairs/${enc(id)}`;

  // ================================================================ shared

  const FRAMING_NAMES = {
    raw: 'raw', line: 'line', mllp: 'MLLP', stx_etx: 'STX/ETX',
    length_prefixed: 'length-prefixed', delimited: 'delimited', idle_gap: 'idle gap',
  };

  /** One line describing a side's configuration. */
  function endpointSummary(e) {
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
      default: return '';
    }
  }

  function indicatorBadge(kind, color, detail, which) {
    const b = App.badge(kind, color, detail);
    b.dataset.indicator = which;
    return b;
  }

  function count(label, n, key, alert) {
    return h('div', { class: alert && n > 0 ? 'alert' : undefined, dataset: { count: key } },
      h('span', { class: 'n', text: App.num(n) }), h('span', { class: 'l', text: label }));
  }

  function lastErrorText(le) {
    return `${App.time(le.at_ms)} · ${le.side}: ${le.message}`;
  }

  function undelivered(c) { return c.pending + c.in_flight; }

  function bufferDetail(s) {
    const parts = [`${App.num(undelivered(s.counts))} undelivered`, App.bytes(s.buffer_bytes)];
    if (s.oldest_pending_age_ms) parts.push(`oldest ${App.duration(s.oldest_pending_age_ms)}`);
    return parts.join(' · ');
  }

  // ---- relay (remote_icombuffer sides) and failover (backup destinations)

  const isRelay = (side) => !!side && side.type === 'remote_icombuffer';

  /** How far a relay source is behind its sender: "12,400 behind (3.2 s)", "caught up". */
  function lagText(lag) {
    if (!lag) return null;
    if (!lag.messages) return 'caught up';
    const secs = lag.seconds || 0;
    const age = secs >= 60 ? App.duration(secs * 1000) : `${App.num1(secs)} s`;
    return `${App.num(lag.messages)} behind (${age})`;
  }

  /** The remote instances a relay side is connected to, as one line. */
  function relayPeersText(side) {
    const peers = side.peers || [];
    if (!peers.length) return side.connections ? `${App.num(side.connections)} connected` : 'none connected';
    const more = side.connections > peers.length ? ` and ${App.num(side.connections - peers.length)} more` : '';
    return peers.join(', ') + more;
  }

  /** The lag line of a relay source: null for other sides. */
  function relayLagLine(side) {
    if (!isRelay(side)) return null;
    const t = lagText(side.lag);
    if (t) return t;
    return side.connections ? 'no message relayed yet on this connection' : '–';
  }

  /** "primary" or "backup N of M" (M: every destination, the primary included). */
  function activeDestinationText(f) {
    return f.active ? `backup ${f.active} of ${f.destinations}` : 'primary';
  }

  /** One line about failover: which destination delivers, since when, switches, why. */
  function failoverText(f) {
    const parts = [`Delivering to ${activeDestinationText(f)}`];
    if (f.since_ms) parts.push(`since ${App.time(f.since_ms)}`);
    parts.push(`${App.num(f.switches)} switch${f.switches === 1 ? '' : 'es'}`);
    return parts.join(' · ');
  }

  function channelDetail(p) {
    const s = p.status;
    if (s.buffer_failure) return `buffer failed: ${s.buffer_failure}`;
    if (!p.enabled) return 'stopped: buffered messages are kept';
    if (s.channel === 'yellow' && s.failover && s.failover.active) {
      return `degraded: delivering to ${activeDestinationText(s.failover)}`;
    }
    return {
      green: 'running',
      yellow: 'degraded, e.g. delivering to a backup destination',
      red: 'a side is failing; see the last error',
      white: 'stopped',
    }[s.channel] || s.channel;
  }

  async function startStop(p, btn) {
    const action = p.enabled ? 'stop' : 'start';
    btn.disabled = true;
    try {
      const res = await App.api('POST', `${pairUrl(p.id)}/${action}`);
      App.notify(`${res.name}: ${action === 'stop' ? 'stopped' : 'started'}.`, 'ok');
      return res;
    } catch (e) {
      App.notify(`Could not ${action} ${p.id}: ${e.message}`, 'error');
      return null;
    } finally {
      btn.disabled = false;
    }
  }

  function setToggle(btn, enabled) {
    btn.textContent = enabled ? '■ Stop' : '▶ Start';
    btn.title = enabled ? 'Pause: stop receiving and delivering; buffered messages are kept' : 'Play: start receiving and delivering';
    btn.dataset.state = enabled ? 'running' : 'stopped';
  }

  async function deletePair(p) {
    const c = p.status ? p.status.counts : null;
    const stored = c ? `${App.num(undelivered(c))} undelivered and ${App.num(c.done)} delivered message(s)` : 'its buffered messages';
    const ok = await App.confirmTyped({
      title: `Delete channel pair ${p.name}?`,
      message: h('span', null, 'This removes the configuration of ', h('strong', { text: p.id }),
        ` and its buffer with ${stored}, for good. It cannot be undone.`),
      expect: p.id,
      confirmLabel: 'Delete for good',
    });
    if (!ok) return false;
    try {
      await App.api('DELETE', `${pairUrl(p.id)}?confirm=${enc(p.id)}`);
      App.notify(`Channel pair ${p.id} deleted.`, 'ok');
      return true;
    } catch (e) {
      App.notify(`Could not delete ${p.id}: ${e.message}`, 'error');
      return false;
    }
  }

  // ================================================================ overview

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
        h('span', { class: 'detail', title: s.source.detail, text: `${App.typeName(s.source.type)} · ${s.source.detail}` }),
        h('span', { class: 'what', text: 'Buffer' }),
        indicatorBadge('buffer', s.buffer, bufferDetail(s), 'buffer'),
        h('span', { class: 'detail', text: bufferDetail(s) }),
        h('span', { class: 'what', text: 'Destination' }),
        indicatorBadge('connection', s.destination.status, s.destination.detail, 'destination'),
        h('span', { class: 'detail', title: s.destination.detail, text: `${s.failover && s.failover.active ? `Backup ${s.failover.active} of ${s.failover.destinations}` : App.typeName(s.destination.type)} · ${s.destination.detail}` })),
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

  function byName(a, b) {
    return a.name.localeCompare(b.name) || a.id.localeCompare(b.id);
  }

  App.page('ops-overview', async () => {
    await App.start();
    const canEdit = App.can('operator');
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
        App.syncList(grid, shown, (p) => p.id, (p) => JSON.stringify(p), pairCard);
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
        h('span', null, h('strong', { id: 'pair-total', text: App.num(ps.length) }), ` channel pair${ps.length === 1 ? '' : 's'}`),
        ['green', 'yellow', 'red', 'white'].filter((c) => by[c]).map((c) => h('span', { class: `badge badge-${c}`, text: `${by[c]} ${App.label('channel', c)}` })),
        h('span', null, 'Received ', h('strong', { text: App.num(rec) })),
        h('span', null, 'Sent ', h('strong', { text: App.num(sent) })),
        h('span', null, 'Undelivered ', h('strong', { text: App.num(pend) })));
    };
    filter.addEventListener('input', render);
    list = (await App.api('GET', '/api/v1/pairs')).map(({ id, name, enabled, status }) => ({ id, name, enabled, status }));
    render();
    App.events({}, { pairs: (ps) => { list = ps; render(); } });
  });

  // ================================================================ the pair form

  const TYPES = [
    ['tcp_server', 'TCP server (listens)'],
    ['tcp_client', 'TCP client (connects)'],
    ['udp', 'UDP (datagrams)'],
    ['serial', 'Serial (RS-232/RS-485)'],
    ['remote_icombuffer', 'Remote ioBufferPro'],
  ];
  const FRAMINGS = [
    ['raw', 'Raw – byte-transparent, no framing'],
    ['line', 'Line – ends with a delimiter'],
    ['mllp', 'MLLP – HL7 (0x0B … 0x1C 0x0D)'],
    ['stx_etx', 'STX/ETX (0x02 … 0x03)'],
    ['length_prefixed', 'Length-prefixed (big endian)'],
    ['delimited', 'Delimited – any start and end bytes'],
    ['idle_gap', 'Idle gap – ends after a silence'],
  ];
  const ACKS = [['none', 'None'], ['mllp', 'MLLP – HL7 ACK'], ['byte', 'Byte – ACK/NAK byte']];
  const CLIENT_AUTH = [
    ['none', 'None'],
    ['optional', 'Optional – checked if presented'],
    ['required', 'Required – mutual TLS'],
  ];
  /** Baud rates offered when the server's list cannot be loaded. */
  const BAUDS = [9600, 19200, 38400, 57600, 115200];
  /** What the API shows instead of a stored password (sending it back keeps the password). */
  const PASSWORD_MASK = '********';
  const MAX_MESSAGE = 64 * 1024 * 1024;
  const ID_RE = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$/;

  /** `\n`, `\r`, `\t`, `\0`, `\\`, `\xHH` → bytes. Throws on a bad escape. */
  function parseEscapes(text) {
    const out = [];
    for (let i = 0; i < text.length; i++) {
      const ch = text[i];
      if (ch !== '\\') {
        for (const b of new TextEncoder().encode(ch)) out.push(b);
        continue;
      }
      const n = text[++i];
      if (n === 'n') out.push(10);
      else if (n === 'r') out.push(13);
      else if (n === 't') out.push(9);
      else if (n === '0') out.push(0);
      else if (n === '\\') out.push(92);
      else if (n === 'x' && /^[0-9a-fA-F]{2}$/.test(text.slice(i + 1, i + 3))) {
        out.push(parseInt(text.slice(i + 1, i + 3), 16));
        i += 2;
      } else throw new Error('unknown escape: use \\n, \\r, \\t, \\0, \\\\ or \\xHH');
    }
    return out;
  }
  /** Bytes → JSON (a string when ASCII, else an array of numbers), as the server accepts. */
  function bytesJson(bytes) {
    return bytes.every((b) => b < 0x80) ? String.fromCharCode(...bytes) : bytes;
  }
  /** JSON bytes (string or array) → text with escapes, for editing. */
  function escapeBytes(v) {
    const bytes = Array.isArray(v) ? v : Array.from(new TextEncoder().encode(v || ''));
    return bytes.map((b) => {
      if (b === 10) return '\\n';
      if (b === 13) return '\\r';
      if (b === 9) return '\\t';
      if (b === 92) return '\\\\';
      if (b >= 0x20 && b < 0x7f) return String.fromCharCode(b);
      return '\\x' + b.toString(16).padStart(2, '0');
    }).join('');
  }
  const hexByte = (b) => '0x' + Number(b).toString(16).padStart(2, '0');

  let fieldSeq = 0;
  /**
   * A labelled form field. o: {path, label, kind ('str', 'int', 'password', 'bytes', 'byte',
   * 'bool', 'presence'), value, required, mark (the required mark only: the rule is checked
   * elsewhere), keep (read even while hidden), min, max, placeholder, help, options
   * [[value, label]], wide, extra (nodes after the input)}.
   *
   * A 'presence' checkbox stands for an optional object: checked, the object is there (with
   * the fields under it); unchecked, it is left out.
   */
  function field(o) {
    const id = `f${++fieldSeq}-${(o.path || '').replace(/[^A-Za-z0-9]/g, '-')}`;
    const kind = o.kind || 'str';
    const data = { path: o.path, kind, label: o.label };
    if (o.required) data.required = '1';
    if (o.keep) data.keep = '1';
    if (o.min !== undefined) data.min = String(o.min);
    if (o.max !== undefined) data.max = String(o.max);
    let input;
    if (kind === 'bool' || kind === 'presence') {
      input = h('input', { type: 'checkbox', id, checked: !!o.value });
      Object.assign(input.dataset, data);
      if (o.onChange) input.addEventListener('change', o.onChange);
      return h('div', { class: `field check${o.wide ? ' wide' : ''}${o.danger ? ' danger' : ''}` }, input, h('label', { for: id, text: o.label }),
        o.help ? h('div', { class: 'help', text: o.help }) : null);
    }
    if (o.options) {
      input = h('select', { id }, o.options.map(([v, l]) => h('option', { value: String(v), text: l })));
      if (o.value !== undefined && o.value !== null) input.value = String(o.value);
      if (input.selectedIndex < 0) input.selectedIndex = 0;
    } else {
      input = h('input', {
        type: kind === 'int' ? 'number' : kind === 'password' ? 'password' : 'text',
        id,
        placeholder: o.placeholder,
        min: kind === 'int' ? o.min : undefined,
        max: kind === 'int' ? o.max : undefined,
        step: kind === 'int' ? '1' : undefined,
        inputmode: kind === 'int' ? 'numeric' : undefined,
        autocomplete: kind === 'password' ? 'new-password' : 'off',
        spellcheck: 'false',
        readonly: o.readonly,
        value: o.value === undefined || o.value === null ? '' : String(o.value),
      });
    }
    Object.assign(input.dataset, data);
    if (o.onChange) input.addEventListener('change', o.onChange);
    if (o.onInput) input.addEventListener('input', o.onInput);
    return h('div', { class: `field${o.wide ? ' wide' : ''}` },
      h('label', { for: id }, o.label, o.required || o.mark ? h('span', { class: 'req', 'aria-hidden': 'true', text: '*' }) : null),
      input, o.extra || null,
      o.help ? h('div', { class: 'help', text: o.help }) : null);
  }

  function setPath(obj, path, value) {
    const parts = path.split('.');
    let o = obj;
    for (const p of parts.slice(0, -1)) o = (o[p] = o[p] || {});
    o[parts[parts.length - 1]] = value;
  }

  function getPath(obj, path) {
    let o = obj;
    for (const p of path.split('.')) {
      if (o === null || typeof o !== 'object') return undefined;
      o = o[p];
    }
    return o;
  }

  /**
   * Reads every visible field under `root` (and the hidden ones marked keep) into an object,
   * checking each field's own rules. Returns {value, problems}.
   */
  function readFields(root) {
    const value = {};
    const problems = [];
    const fail = (path, message) => problems.push({ path, message });
    for (const input of $$('[data-path]', root)) {
      if (input.closest('[hidden]') && input.dataset.keep !== '1') continue;
      const { path, kind, label } = input.dataset;
      const required = input.dataset.required === '1';
      if (kind === 'bool') { setPath(value, path, input.checked); continue; }
      if (kind === 'presence') {
        if (input.checked && getPath(value, path) === undefined) setPath(value, path, {});
        continue;
      }
      if (kind === 'type') { setPath(value, `${path}.type`, input.value); continue; }
      let raw = input.value;
      if (kind === 'baud' && raw === 'other') raw = $(`#${input.dataset.custom}`).value;
      if (kind !== 'password') raw = raw.trim();
      if (raw === '' && !(input.validity && input.validity.badInput)) {
        if (required) fail(path, `${label} is required.`);
        continue;
      }
      if (kind === 'int' || kind === 'baud') {
        const n = Number(raw);
        if (!/^-?\d+$/.test(raw) || !Number.isSafeInteger(n)) { fail(path, `${label} must be a whole number.`); continue; }
        const min = input.dataset.min !== undefined ? Number(input.dataset.min) : null;
        const max = input.dataset.max !== undefined ? Number(input.dataset.max) : null;
        if ((min !== null && n < min) || (max !== null && n > max)) {
          fail(path, max !== null ? `${label} must be between ${min} and ${max}.` : `${label} must be at least ${min}.`);
          continue;
        }
        setPath(value, path, n);
      } else if (kind === 'bytes') {
        try {
          const b = parseEscapes(raw);
          setPath(value, path, bytesJson(b));
        } catch (e) { fail(path, e.message); }
      } else if (kind === 'byte') {
        const n = /^0x[0-9a-f]{1,2}$/i.test(raw) ? parseInt(raw, 16) : /^\d{1,3}$/.test(raw) ? Number(raw) : NaN;
        if (!(n >= 0 && n <= 255)) { fail(path, `${label} must be a byte: 0x00 to 0xff, or 0 to 255.`); continue; }
        setPath(value, path, n);
      } else {
        setPath(value, path, raw);
      }
    }
    return { value, problems };
  }

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
        fs.push(field({ path: `${path}.gap_ms`, label: 'Silence that ends a message (ms)', kind: 'int', required: true, min: 1, max: 60000, value: v.gap_ms }));
      }
      fs.push(field({ path: `${path}.max_message_bytes`, label: 'Largest message (bytes)', kind: 'int', min: 1, max: MAX_MESSAGE, value: v.max_message_bytes, placeholder: '1048576', help: type === 'raw' ? 'Longer chunks are split, never dropped.' : 'Longer frames are rejected, counted and kept for inspection.' }));
      replace(box, fs);
    };
    const sel = field({ path: `${path}.type`, label: 'Framing', value: f.type, options: FRAMINGS, help: 'What one message is on the byte stream. Each side frames with its own setting (protocol translation).' });
    $('select', sel).addEventListener('change', (ev) => fill(ev.target.value, {}));
    fill(f.type, f);
    return h('fieldset', { class: 'framing', dataset: { block: `${prefix}-framing` } }, h('legend', { text: 'Framing' }),
      h('div', { class: 'fields' }, sel), box);
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
        fs.push(field({ path: `${path}.timeout_ms`, label: 'Wait for it (ms)', kind: 'int', min: 1, max: 3600000, value: v.timeout_ms, placeholder: '10000' }));
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
   * The settings of a TLS client (a tcp_client side, or a relay side with an https:// url):
   * trusted CA, server name, client certificate and key, and the lab-only skip-verify with its
   * warning. Kept while hidden, so hiding them loses nothing.
   */
  function clientTlsFields(path, t, hostWord, relay) {
    const warning = h('div', { class: 'notice warn insecure-warning', role: 'alert', hidden: !t.insecure_skip_verify },
      h('strong', { text: 'Certificate verification is OFF. ' }),
      relay
        ? 'Any server is accepted, including one in the middle that reads and changes the messages and learns the relay user’s password. For lab use only.'
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
      h('div', { class: 'fields' }, clientTlsFields(path, t, 'the URL’s host', true)));
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
   * The serial port: type any name, or pick one of the machine's ports (with the device a
   * stable link points to, the pairs that use it, ports configured but missing).
   */
  function serialPortField(path, value, ctx) {
    const listId = `f${++fieldSeq}-ports`;
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
      field({ path: `${path}.delay_before_send_ms`, label: 'Delay before sending (ms)', kind: 'int', min: 0, max: 1000, value: r.delay_before_send_ms, placeholder: '0', help: 'From RTS to the first bit, 0–1000.' }),
      field({ path: `${path}.delay_after_send_ms`, label: 'Delay after sending (ms)', kind: 'int', min: 0, max: 1000, value: r.delay_after_send_ms, placeholder: '0', help: 'From the last bit to releasing RTS, 0–1000.' }),
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

  /** The fields of one side for its type; `role` is 'source' or 'destination'. */
  function endpointFields(prefix, role, type, v, ctx) {
    v = v || {};
    const p = (f) => `${prefix}.${f}`;
    const src = role === 'source';
    const out = [];
    const fields = h('div', { class: 'fields' });
    out.push(fields);
    const port = (help) => field({ path: p('port'), label: 'Port', kind: 'int', required: true, min: 1, max: 65535, value: v.port, placeholder: '1-65535', help });
    const writeTimeout = (help) => field({ path: p('write_timeout_ms'), label: 'Write timeout (ms)', kind: 'int', min: 10, max: 3600000, value: v.write_timeout_ms, placeholder: '30000', help });
    switch (type) {
      case 'tcp_server':
        append(fields,
          field({ path: p('host'), label: 'Listen address', required: true, value: v.host !== undefined ? v.host : '0.0.0.0', help: '0.0.0.0 for every interface, 127.0.0.1 for this machine only.' }),
          port(src ? 'Senders connect to this port.' : 'Receiving applications connect to this port.'),
          field({ path: p('max_connections'), label: 'Max connections', kind: 'int', min: 1, max: 65535, value: v.max_connections, placeholder: '256' }),
          src
            ? field({ path: p('idle_timeout_s'), label: 'Close idle connections after (s)', kind: 'int', min: 0, value: v.idle_timeout_s, placeholder: 'never' })
            : writeTimeout());
        out.push(framingBlock(prefix, v.framing), ackBlock(prefix, role, v.ack), tlsBlock(prefix, v.tls, true));
        break;
      case 'tcp_client':
        append(fields,
          field({ path: p('host'), label: 'Server host', required: true, value: v.host, placeholder: 'host name or IP address' }),
          port(),
          field({ path: p('connect_timeout_ms'), label: 'Connect timeout (ms)', kind: 'int', min: 10, max: 600000, value: v.connect_timeout_ms, placeholder: '10000' }),
          src ? null : writeTimeout());
        out.push(framingBlock(prefix, v.framing), ackBlock(prefix, role, v.ack), tlsBlock(prefix, v.tls, false));
        break;
      case 'udp':
        append(fields,
          field({ path: p('host'), label: src ? 'Listen address' : 'Target host', required: true, value: v.host !== undefined ? v.host : (src ? '0.0.0.0' : undefined), placeholder: src ? undefined : 'host name or IP address' }),
          port(src ? 'Datagrams arrive on this port.' : 'Datagrams are sent to this port.'),
          src ? field({ path: p('receive_buffer_bytes'), label: 'Receive buffer (bytes)', kind: 'int', min: 65536, max: 268435456, value: v.receive_buffer_bytes, placeholder: '4194304 (4 MiB)', help: 'Holds bursts while the buffer writes to disk. UDP cannot be held back: what overflows it is dropped by the system, counted as refused and shown.' }) : null);
        break;
      case 'serial': {
        const bauds = ctx.bauds;
        const baud = v.baud_rate || 9600;
        const preset = bauds.includes(baud);
        const customId = `f${++fieldSeq}-baud-custom`;
        const custom = h('input', { type: 'number', id: customId, min: 1, step: 1, inputmode: 'numeric', value: preset ? '' : String(baud), placeholder: 'e.g. 31250', 'aria-label': 'Other baud rate', hidden: preset });
        const baudField = field({ path: p('baud_rate'), label: 'Baud rate', value: preset ? baud : 'other', options: [...bauds.map((b) => [b, String(b)]), ['other', 'Other…']], extra: custom, help: 'Or any other rate the driver accepts (Other…).' });
        const sel = $('select', baudField);
        Object.assign(sel.dataset, { kind: 'baud', custom: customId, min: '1', max: '20000000' });
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
      default:
        break;
    }
    return out;
  }

  /**
   * The type selector of a side and that type's fields, below `prefix` (`source`,
   * `destination`, or a backup's own prefix). Changing the type keeps what the types share.
   */
  function sideBlock(prefix, role, spec, ctx, typeId) {
    const box = h('div', { class: 'side-fields' });
    const typeField = field({ path: prefix, label: 'Type', value: spec ? spec.type : (role === 'source' ? 'tcp_server' : 'tcp_client'), options: TYPES });
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
  function mainSide(side, spec, ctx) {
    const title = side === 'source' ? 'Source' : 'Destination';
    const sub = side === 'source' ? 'Where messages come from.' : 'Where messages go, in order.';
    const { typeField, box } = sideBlock(side, side, spec, ctx, `${side}-type`);
    return h('fieldset', { class: 'side', dataset: { side } },
      h('legend', { text: title }), h('p', { class: 'muted small', text: sub }),
      h('div', { class: 'fields' }, typeField), box);
  }

  /**
   * The ordered backup destinations (failover) and failback. Each backup is a destination
   * sub-form under its own prefix (`failover.b1`, …) that stays with it when the backups are
   * reordered; the form sends them as the `failover` list in the order shown, and maps the
   * server's `failover[i]` paths back to the i-th block.
   */
  function backupsBlock(spec, ctx) {
    const list = h('div', { class: 'backup-list', id: 'backups' });
    const none = h('p', { class: 'muted small', id: 'no-backups', text: 'No backup destination: while the destination is down, messages wait in the buffer.' });
    let seq = 0;
    const addBtn = h('button', { type: 'button', class: 'btn', id: 'add-backup', text: '+ Add backup destination' });
    // When a destination counts as failed, and how often the primary is tried for failback.
    // Only meaningful with backups: hidden without them (what is set is kept).
    const fp = spec.failover_policy || {};
    const policy = h('fieldset', { class: 'failover-policy', dataset: { block: 'failover_policy' } },
      h('legend', { text: 'When to switch, and back' }),
      h('div', { class: 'fields' },
        field({ path: 'failover_policy.failures', label: 'Failed attempts before switching', kind: 'int', keep: true, min: 1, max: 1000, value: fp.failures, placeholder: '1', help: 'Failed attempts in a row (connection refused or lost, delivery error, acknowledgement timeout) before the next destination takes over. 1–1000.' }),
        field({ path: 'failover_policy.failed_after_ms', label: 'Not delivering for … counts as failed (ms)', kind: 'int', keep: true, min: 100, max: 3600000, value: fp.failed_after_ms, placeholder: '5000', help: 'A destination that has not delivered for this long (stuck connecting, a listening destination without a receiver) counts as failed too. 100–3600000 ms.' }),
        field({ path: 'failover_policy.probe_interval_ms', label: 'Probe the primary every (ms)', kind: 'int', keep: true, min: 100, max: 3600000, value: fp.probe_interval_ms, placeholder: '2000', help: 'While a backup delivers, how often the primary is tried; it takes over again once it answers (with failback). 100–3600000 ms.' })));
    const renumber = () => {
      const all = $$(':scope > .backup', list);
      all.forEach((b, i) => {
        $(':scope > legend', b).textContent = `Backup ${i + 1}`;
        $('[data-action="up"]', b.iobpHead).disabled = i === 0;
        $('[data-action="down"]', b.iobpHead).disabled = i === all.length - 1;
        b.dataset.index = String(i);
      });
      none.hidden = all.length > 0;
      policy.hidden = all.length === 0;
    };
    const add = (e, orig) => {
      const key = `b${++seq}`;
      const prefix = `failover.${key}`;
      const { typeField, box } = sideBlock(prefix, 'destination', e, ctx, `backup-${key}-type`);
      const button = (action, text, label) => h('button', { type: 'button', class: 'btn small', dataset: { action }, text, title: label, 'aria-label': label });
      const up = button('up', '↑ Up', 'Move up: tried earlier');
      const down = button('down', '↓ Down', 'Move down: tried later');
      const remove = h('button', { type: 'button', class: 'btn small ghost-danger', dataset: { action: 'remove' }, text: 'Remove' });
      const head = h('div', { class: 'backup-head' }, h('div', { class: 'fields' }, typeField), h('div', { class: 'btn-row' }, up, down, remove));
      const block = h('fieldset', { class: 'side backup', dataset: { backup: key, prefix, orig: orig === undefined ? '' : String(orig) } },
        h('legend', { text: 'Backup' }), head, box);
      block.iobpHead = head;
      up.addEventListener('click', () => {
        const prev = block.previousElementSibling;
        if (prev) { prev.before(block); renumber(); (up.disabled ? down : up).focus(); }
      });
      down.addEventListener('click', () => {
        const next = block.nextElementSibling;
        if (next) { next.after(block); renumber(); (down.disabled ? up : down).focus(); }
      });
      remove.addEventListener('click', () => { block.remove(); renumber(); addBtn.focus(); });
      list.append(block);
      renumber();
      return block;
    };
    (spec.failover || []).forEach((e, i) => add(e, i));
    addBtn.addEventListener('click', () => { $('select', add(null)).focus(); });
    renumber();
    return h('fieldset', { class: 'backups', dataset: { block: 'failover' } },
      h('legend', { text: 'Backup destinations (failover)' }),
      h('p', { class: 'muted small', text: 'When the destination fails, delivery moves to the next backup in this order, continuing in order with the messages not yet delivered (a message in flight at the switch may arrive twice). The channel shows Yellow while a backup delivers. Each backup has its own type and settings.' }),
      list, none,
      h('div', { class: 'btn-row backup-actions' }, addBtn),
      h('div', { class: 'fields' },
        field({ path: 'failback', label: 'Return to the primary when it is back (failback)', kind: 'bool', value: spec.failback !== false, wide: true, help: 'Off: deliveries stay on the backup in use until it fails in turn. The primary can be probed when it is a TCP client, a serial port or a relay with a URL.' })),
      policy);
  }

  const SERIAL_CONFLICT = 'RTS/CTS cannot be used with RS-485: RS-485 drives RTS to switch the transceiver. Choose None or XON/XOFF.';

  /** Checks of one side that involve several of its fields. */
  function endpointChecks(prefix, e) {
    const problems = [];
    const fail = (f, message) => problems.push({ path: `${prefix}.${f}`, message });
    if (['tcp_server', 'tcp_client', 'udp'].includes(e.type) && e.host && /\s/.test(e.host)) {
      fail('host', 'A host name or IP address has no spaces.');
    }
    if (e.ack && e.ack.type === 'mllp' && (!e.framing || e.framing.type !== 'mllp')) {
      fail('ack.type', 'MLLP acknowledgements need MLLP framing on the same side.');
    }
    if (e.ack && e.ack.type === 'byte' && e.ack.ack === e.ack.nak) {
      fail('ack.nak', 'The NAK byte must differ from the ACK byte.');
    }
    if (e.type === 'remote_icombuffer') {
      if (e.channel_id && !ID_RE.test(e.channel_id)) fail('channel_id', 'Use 1-64 letters, digits, “.”, “_” and “-” (not starting with “.”).');
      if (e.url && !/^https?:\/\/[^\s/:]+/.test(e.url)) fail('url', 'Must start with http:// or https:// and name a host.');
      if (e.url && e.auth && !e.auth.username) fail('auth.username', 'Give the user name that goes with the password.');
      if (e.url && e.auth && e.auth.username && !e.auth.password) fail('auth.password', 'Give the password of this user on the remote instance.');
      if (e.url && !e.auth) fail('auth.username', 'A user of the remote instance is required when a URL is set.');
      const rt = e.tls;
      if (e.url && /^https:\/\//.test(e.url) && rt) {
        if (rt.cert && !rt.key) fail('tls.key', 'A client certificate needs its key.');
        if (rt.key && !rt.cert) fail('tls.cert', 'A client key needs its certificate.');
        if (rt.server_name && !/^[A-Za-z0-9._:[\]-]+$/.test(rt.server_name)) fail('tls.server_name', 'Give a host name or IP address, e.g. plant-2.example.org.');
      }
    }
    if (e.type === 'serial' && e.rs485 && e.flow_control === 'RTS/CTS') fail('flow_control', SERIAL_CONFLICT);
    const t = e.tls;
    if ((e.type === 'tcp_server' || e.type === 'tcp_client') && t && t.enabled) {
      if (e.type === 'tcp_server') {
        if (!t.cert) fail('tls.cert', 'A TLS server needs its certificate (PEM file).');
        if (!t.key) fail('tls.key', 'A TLS server needs its private key (PEM file).');
        if (t.client_auth && t.client_auth !== 'none' && !t.ca) fail('tls.ca', 'Client certificates need the CA they must chain to.');
      } else {
        if (t.cert && !t.key) fail('tls.key', 'A client certificate needs its key.');
        if (t.key && !t.cert) fail('tls.cert', 'A client key needs its certificate.');
        if (t.server_name && !/^[A-Za-z0-9._:[\]-]+$/.test(t.server_name)) fail('tls.server_name', 'Give a host name or IP address, e.g. lis.example.org.');
      }
    }
    return problems;
  }

  /** The address a listening side would use, for conflicts between the sides of a pair. */
  function sameHost(a, b) {
    const canon = (x) => {
      const v = String(x || '').replace(/^\[|\]$/g, '');
      if (['0.0.0.0', '::', '', '*'].includes(v)) return '*';
      if (['localhost', '127.0.0.1', '::1'].includes(v)) return 'loopback';
      return v;
    };
    const [x, y] = [canon(a), canon(b)];
    return x === '*' || y === '*' || x === y;
  }

  /**
   * Checks that involve several fields; `pair` is what the form produced, `sides` the
   * endpoints in order: [{prefix, name, e}] (source, destination, backups).
   */
  function crossChecks(pair, sides) {
    const problems = [];
    for (const s of sides) problems.push(...endpointChecks(s.prefix, s.e));
    // Two sides of one pair cannot listen on one port, nor open one serial port.
    sides.forEach((s, i) => {
      const earlier = sides.slice(0, i);
      if (s.e.type === 'tcp_server' && s.e.port) {
        const o = earlier.find((x) => x.e.type === 'tcp_server' && x.e.port === s.e.port && sameHost(x.e.host, s.e.host));
        if (o) problems.push({ path: `${s.prefix}.port`, message: `${o.name} already listens on this port.` });
      }
      if (s.e.type === 'serial' && s.e.port) {
        const o = earlier.find((x) => x.e.type === 'serial' && x.e.port === s.e.port);
        if (o) problems.push({ path: `${s.prefix}.port`, message: `${o.name} already uses this serial port.` });
      }
    });
    const r = pair.retry || {};
    const initial = r.initial_ms !== undefined ? r.initial_ms : 1000;
    const max = r.max_ms !== undefined ? r.max_ms : 60000;
    if (max < initial) problems.push({ path: r.max_ms !== undefined ? 'retry.max_ms' : 'retry.initial_ms', message: `The longest wait (${max} ms) must be at least the first wait (${initial} ms).` });
    return problems;
  }

  /**
   * Puts the server's problems where the form shows them: `failover[i]…` at the i-th backup
   * block, and certificate files that do not load (reported for the side's `tls`) at the
   * field with that file.
   */
  function placeServerProblems(form, problems) {
    const backups = $$('#backups > .backup', form);
    const input = (path) => form.querySelector(`[data-path="${CSS.escape(path)}"]`);
    return problems.map((p) => {
      let path = p.path || '';
      const m = /^failover\[(\d+)\](.*)$/.exec(path);
      if (m && backups[Number(m[1])]) path = backups[Number(m[1])].dataset.prefix + m[2];
      if (/(^|\.)tls$/.test(path)) {
        const files = ['cert', 'key', 'ca'].map((f) => input(`${path}.${f}`)).filter((i) => i && i.value.trim());
        const named = files.find((i) => p.message.startsWith(`${i.value.trim()}:`)) || files.find((i) => p.message.includes(i.value.trim()));
        if (named) path = named.dataset.path;
        else if (/^server name/i.test(p.message) && input(`${path}.server_name`)) path = `${path}.server_name`;
        else if (input(`${path}.enabled`)) path = `${path}.enabled`;
      }
      return { path, message: p.message };
    });
  }

  /**
   * The settings this form shows, by object. A stored pair may hold others (written by a
   * newer version or by hand): an edit keeps them rather than dropping them silently.
   */
  const KNOWN = {
    pair: ['id', 'name', 'enabled', 'source', 'destination', 'failover', 'failback', 'failover_policy', 'retry', 'max_storage_mb'],
    tcp_server: ['type', 'host', 'port', 'tls', 'framing', 'ack', 'max_connections', 'idle_timeout_s', 'write_timeout_ms'],
    tcp_client: ['type', 'host', 'port', 'tls', 'framing', 'ack', 'connect_timeout_ms', 'write_timeout_ms'],
    udp: ['type', 'host', 'port', 'receive_buffer_bytes'],
    serial: ['type', 'port', 'baud_rate', 'data_bits', 'parity', 'stop_bits', 'flow_control', 'framing', 'ack', 'rs485', 'write_timeout_ms'],
    remote_icombuffer: ['type', 'url', 'channel_id', 'auth', 'tls'],
    tls: ['enabled', 'cert', 'key', 'ca', 'client_auth', 'insecure_skip_verify', 'server_name'],
    // A relay side's TLS follows its url: no `enabled`, and it is always a client.
    remote_tls: ['cert', 'key', 'ca', 'insecure_skip_verify', 'server_name'],
    failover_policy: ['failures', 'failed_after_ms', 'probe_interval_ms'],
  };

  /** Settings of `orig` the form does not show, as [path, value]. */
  function unknownSettings(orig, known, prefix) {
    if (!orig || typeof orig !== 'object' || Array.isArray(orig)) return [];
    return Object.entries(orig).filter(([k]) => !known.includes(k)).map(([k, v]) => [prefix ? `${prefix}.${k}` : k, v]);
  }

  /** The settings of a stored endpoint the form does not show (nothing when the type changed). */
  function unknownOfEndpoint(orig, prefix) {
    if (!orig || !KNOWN[orig.type]) return [];
    const out = unknownSettings(orig, KNOWN[orig.type], prefix);
    if ((orig.type === 'tcp_server' || orig.type === 'tcp_client') && orig.tls) out.push(...unknownSettings(orig.tls, KNOWN.tls, `${prefix}.tls`));
    if (orig.type === 'remote_icombuffer' && orig.tls) out.push(...unknownSettings(orig.tls, KNOWN.remote_tls, `${prefix}.tls`));
    return out;
  }

  /**
   * Tidies a relay side the form produced: TLS settings left at their defaults are dropped
   * (the server stores none), and so is a password typed for no user on a side without url
   * (the fields are hidden there and not used).
   */
  function tidyRemote(e) {
    if (!e || e.type !== 'remote_icombuffer') return;
    if (e.tls) {
      if (!e.tls.insecure_skip_verify) delete e.tls.insecure_skip_verify;
      if (!Object.keys(e.tls).length) delete e.tls;
    }
    if (!e.url && e.auth && !e.auth.username) delete e.auth;
  }

  /** The relay links (url, channel, user) of a stored pair that have a stored password. */
  function storedLinks(spec) {
    if (!spec) return [];
    return [spec.source, spec.destination, ...(spec.failover || [])]
      .filter((e) => e && e.type === 'remote_icombuffer' && e.auth);
  }

  /**
   * Whether the server can put a stored password back for a relay side sent with the mask:
   * only for a link stored with the same url, channel id and user (passwords follow their
   * link, wherever it moved in the list).
   */
  function maskKeepsPassword(e, stored) {
    const url = e.url === undefined ? null : e.url;
    return stored.some((o) => (o.url === undefined ? null : o.url) === url
      && o.channel_id === e.channel_id && o.auth.username === e.auth.username);
  }

  /** Puts back into `e` (an endpoint the form produced) the settings of `orig` it does not show. */
  function keepUnknown(e, orig) {
    if (!e || !orig || e.type !== orig.type) return;
    for (const [path, v] of unknownOfEndpoint(orig, '')) {
      const rel = path.replace(/^\./, '');
      if (getPath(e, rel) === undefined) setPath(e, rel, v);
    }
  }

  /** What the form needs from the server besides the pair: the serial ports, baud rates. */
  async function formContext(pair) {
    const ctx = { ports: [], bauds: BAUDS, self: pair ? pair.id : null, portsError: null };
    try {
      const r = await App.api('GET', '/api/v1/serial-ports');
      if (r && Array.isArray(r.ports)) ctx.ports = r.ports;
      if (r && Array.isArray(r.common_baud_rates) && r.common_baud_rates.length) ctx.bauds = r.common_baud_rates;
    } catch (e) {
      if (e.status === 401) throw e;
      ctx.portsError = e.message;
    }
    return ctx;
  }

  /** Builds the pair form; `pair` (a PairDto) to edit, null to create. */
  function pairForm(pair, ctx, { onDone, onCancel }) {
    const editing = !!pair;
    const spec = editing ? pair.spec : {};
    const form = h('form', { id: 'pair-form', novalidate: true, 'aria-label': editing ? `Edit ${pair.id}` : 'Create Channel Pair' });
    let idTouched = editing;
    const nameF = field({ path: 'name', label: 'Name', value: spec.name || '', placeholder: 'e.g. Lab analyzer to LIS', help: 'A descriptive name for operators.' });
    const idF = field({ path: 'id', label: 'Id', required: true, readonly: editing, value: spec.id || '', placeholder: 'e.g. lab-1', help: editing ? 'The id cannot change (it names the buffer).' : '1-64 letters, digits, “.”, “_” and “-”. Names the buffer and the pair in the API.' });
    const nameIn = $('input', nameF);
    const idIn = $('input', idF);
    nameIn.id = 'pair-name-input';
    idIn.id = 'pair-id-input';
    $('label', nameF).setAttribute('for', nameIn.id);
    $('label', idF).setAttribute('for', idIn.id);
    idIn.addEventListener('input', () => { idTouched = true; });
    nameIn.addEventListener('input', () => {
      if (!idTouched) idIn.value = nameIn.value.toLowerCase().trim().replace(/[^a-z0-9._-]+/g, '-').replace(/^[-.]+|-+$/g, '').slice(0, 64);
    });
    const retry = spec.retry || {};
    const hiddenSettings = editing ? [
      ...unknownSettings(spec, KNOWN.pair, ''),
      ...unknownOfEndpoint(spec.source, 'source'),
      ...unknownOfEndpoint(spec.destination, 'destination'),
      ...(spec.failover || []).flatMap((e, i) => unknownOfEndpoint(e, `failover[${i}]`)),
      ...unknownSettings(spec.failover_policy, KNOWN.failover_policy, 'failover_policy'),
    ] : [];
    const submit = h('button', { type: 'submit', class: 'btn primary', id: 'pair-submit', text: editing ? 'Save and restart' : 'Create' });
    const cancel = h('button', { type: 'button', class: 'btn', id: 'pair-cancel', text: 'Cancel' });
    cancel.addEventListener('click', onCancel);
    append(form,
      h('div', { class: 'notice error form-error', role: 'alert', hidden: true }),
      hiddenSettings.length
        ? h('div', { class: 'notice info small', id: 'pair-hidden-settings' },
          `This pair has settings this form does not show: ${hiddenSettings.map(([p]) => p).join(', ')}. Saving keeps them as they are (unless that side’s type changes).`)
        : null,
      h('fieldset', { class: 'general' }, h('legend', { text: 'General' }),
        h('div', { class: 'fields' }, nameF, idF,
          field({ path: 'enabled', label: editing ? 'Enabled (running)' : 'Start it when created', kind: 'bool', value: editing ? spec.enabled : true }))),
      h('div', { class: 'grid grid-2' }, mainSide('source', spec.source, ctx), mainSide('destination', spec.destination, ctx)),
      backupsBlock(spec, ctx),
      h('details', { class: 'advanced', open: editing && (spec.retry || spec.max_storage_mb) ? true : undefined },
        h('summary', { text: 'Retry and storage' }),
        h('fieldset', null, h('legend', { text: 'Reconnect and retry (exponential backoff)' }),
          h('div', { class: 'fields' },
            field({ path: 'retry.initial_ms', label: 'First wait (ms)', kind: 'int', min: 10, max: 86400000, value: retry.initial_ms, placeholder: '1000' }),
            field({ path: 'retry.max_ms', label: 'Longest wait (ms)', kind: 'int', min: 10, max: 86400000, value: retry.max_ms, placeholder: '60000' }),
            field({ path: 'retry.jitter_percent', label: 'Jitter (%)', kind: 'int', min: 0, max: 100, value: retry.jitter_percent, placeholder: '20' }),
            field({ path: 'max_storage_mb', label: 'Storage limit of this pair (MiB)', kind: 'int', min: 1, value: spec.max_storage_mb, placeholder: 'global limit only' })))),
      h('div', { class: 'form-actions' }, submit, cancel,
        editing ? h('span', { class: 'muted small', text: 'Saving restarts the pair with the new settings; its buffered messages are kept.' }) : null));

    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      App.clearProblems(form);
      const { value, problems } = readFields(form);
      if (value.id && !ID_RE.test(value.id)) problems.push({ path: 'id', message: 'Use 1-64 letters, digits, “.”, “_” and “-” (not starting with “.”).' });
      if (value.name && value.name.length > 200) problems.push({ path: 'name', message: 'At most 200 characters.' });
      const backups = $$('#backups > .backup', form);
      const sides = [
        { prefix: 'source', name: 'The source', e: value.source || {} },
        { prefix: 'destination', name: 'The destination', e: value.destination || {} },
        ...backups.map((b, i) => ({ prefix: b.dataset.prefix, name: `Backup ${i + 1}`, e: getPath(value, b.dataset.prefix) || {} })),
      ];
      for (const side of sides) tidyRemote(side.e);
      problems.push(...crossChecks(value, sides));
      // The mask stands for the stored password of the same link (url, channel id, user):
      // a new or changed link needs its password typed.
      const links = storedLinks(editing ? spec : null);
      for (const side of sides) {
        const e = side.e;
        if (e.type === 'remote_icombuffer' && e.auth && e.auth.password === PASSWORD_MASK && !maskKeepsPassword(e, links)) {
          problems.push({ path: `${side.prefix}.auth.password`, message: 'Enter the password: the stored one belongs to the link as it was saved, and its URL, channel id or user changed.' });
        }
      }
      if (problems.length) { App.showProblems(form, problems); return; }
      const body = {
        id: value.id,
        name: value.name || '',
        enabled: value.enabled,
        source: value.source,
        destination: value.destination,
        failover: sides.slice(2).map((s) => s.e),
        failback: value.failback !== false,
      };
      if (value.failover_policy && Object.keys(value.failover_policy).length) body.failover_policy = value.failover_policy;
      if (value.retry) body.retry = value.retry;
      if (value.max_storage_mb !== undefined) body.max_storage_mb = value.max_storage_mb;
      if (editing) {
        for (const [k, v] of unknownSettings(spec, KNOWN.pair, '')) if (!(k in body)) body[k] = v;
        for (const [k, v] of unknownSettings(spec.failover_policy, KNOWN.failover_policy, '')) {
          if (!body.failover_policy) body.failover_policy = {};
          if (!(k in body.failover_policy)) body.failover_policy[k] = v;
        }
        keepUnknown(body.source, spec.source);
        keepUnknown(body.destination, spec.destination);
        backups.forEach((b, i) => {
          if (b.dataset.orig !== '') keepUnknown(body.failover[i], (spec.failover || [])[Number(b.dataset.orig)]);
        });
      }
      submit.disabled = true;
      try {
        const res = editing
          ? await App.api('PUT', pairUrl(pair.id), body)
          : await App.api('POST', '/api/v1/pairs', body);
        App.notify(editing ? `${res.name} saved; it restarts with the new settings.` : `Channel pair ${res.name} created.`, 'ok');
        onDone(res);
      } catch (e) {
        if (e.status === 409) App.showProblems(form, [{ path: 'id', message: e.message }]);
        else if (e.problems && e.problems.length) App.showProblems(form, placeServerProblems(form, e.problems));
        else App.showError(form, e);
      } finally {
        submit.disabled = false;
      }
    });
    return form;
  }

  // ================================================================ channels page

  App.page('ops-channels', async () => {
    await App.start();
    const canEdit = App.can('operator');
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
        h('div', null, h('strong', { text: App.typeName(st.type) }), ' ',
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
        e ? ` ${App.typeName(e.type)} ${endpointSummary(e)}` : '');
    };
    const countsCell = (p) => {
      const c = p.status.counts;
      return [h('span', { dataset: { count: 'received' }, text: App.num(c.received) }), ' / ',
        h('span', { dataset: { count: 'sent' }, text: App.num(c.sent) }), ' / ',
        h('span', { dataset: { count: 'pending' }, text: App.num(undelivered(c)) })];
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
          try { await openForm(await App.api('GET', pairUrl(p.id))); } catch (e) { App.notify(e.message, 'error'); }
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
      loading = loading || App.api('GET', '/api/v1/pairs').then((ps) => { pairs = ps; renderTable(); }).finally(() => { loading = null; });
      return loading;
    };

    if (canEdit) {
      createBtn.hidden = false;
      createBtn.addEventListener('click', () => openForm(null).catch((e) => App.notify(e.message, 'error')));
    }
    await load();
    if (canEdit) {
      const hash = location.hash;
      if (hash === '#create') await openForm(null);
      else if (hash.startsWith('#edit=')) {
        const id = decodeURIComponent(hash.slice(6));
        try { await openForm(await App.api('GET', pairUrl(id))); } catch (e) { App.notify(e.message, 'error'); }
      }
    }
    App.events({}, {
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

  // ================================================================ pair page

  const FEED_MAX = 200;

  App.page('ops-pair', async () => {
    const id = decodeURIComponent(location.pathname.split('/')[2] || '');
    await App.start();
    const canEdit = App.can('operator');
    let pair;
    try {
      pair = await App.api('GET', pairUrl(id));
    } catch (e) {
      if (e.status === 404 || e.status === 400) {
        App.fatal(`There is no channel pair with id “${id}”. It may have been deleted.`);
        return;
      }
      throw e;
    }
    document.title = `${pair.name} · ioBufferPro Operations Portal`;
    $('#crumb-id').textContent = pair.id;
    $('#pair-name').textContent = pair.name;
    $('#pair-id').textContent = pair.id;
    const route = () => `· ${App.typeName(pair.spec.source.type)} ${endpointSummary(pair.spec.source)} → ${App.typeName(pair.spec.destination.type)} ${endpointSummary(pair.spec.destination)}`;
    $('#pair-route').textContent = route();

    // ---- actions
    if (canEdit) {
      const toggle = h('button', { type: 'button', class: 'btn', id: 'pair-toggle', dataset: { action: 'toggle' } });
      setToggle(toggle, pair.enabled);
      toggle.addEventListener('click', async () => {
        const res = await startStop(pair, toggle);
        if (res) { pair = res; renderStatus(); }
      });
      const edit = h('a', { class: 'btn', id: 'pair-edit', href: `/channels#edit=${enc(pair.id)}`, text: '✎ Edit' });
      const del = h('button', { type: 'button', class: 'btn ghost-danger', id: 'pair-delete', text: 'Delete' });
      del.addEventListener('click', async () => {
        if (await deletePair(pair)) location.assign('/channels');
      });
      replace($('#pair-actions'), toggle, edit, del);
    }

    // ---- status
    const indicator = (which, kind, label, color, detail, extra) => h('div', { class: 'indicator', dataset: { box: which } },
      h('div', { class: 'what', text: label }),
      indicatorBadge(kind, color, detail, which),
      h('div', { class: 'detail', text: detail }),
      extra || null);
    const tile = (label, n, key, alert, text, title) => h('div', { class: `tile${alert && n > 0 ? ' alert' : ''}`, dataset: { count: key }, title },
      h('div', { class: 'l', text: label }), h('div', { class: 'n', text: text !== undefined ? text : App.num(n) }));
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
    /** The destination a failover index names, from the configuration shown. */
    const destinationSpec = (i) => (i === 0 ? pair.spec.destination : (pair.spec.failover || [])[i - 1]);
    const failoverBox = (f) => {
      const box = $('#failover');
      if (!f) { box.hidden = true; clear(box); return; }
      const n = f.destinations;
      const items = [];
      for (let i = 0; i < n; i++) {
        const e = destinationSpec(i);
        items.push(h('li', { dataset: i === f.active ? { dest: String(i), current: '' } : { dest: String(i) } },
          `${i === 0 ? 'Primary' : `Backup ${i}`}: `,
          e ? `${App.typeName(e.type)} ${endpointSummary(e)}` : '–',
          i === f.active ? ' ← in use' : ''));
      }
      box.className = `failover-box${f.active ? ' on-backup' : ''}`;
      box.dataset.active = String(f.active);
      replace(box,
        h('div', { class: 'head' },
          h('span', { text: 'Active destination' }),
          h('span', { class: 'active', id: 'failover-active', text: activeDestinationText(f) }),
          h('span', { id: 'failover-since', text: f.since_ms ? `since ${App.time(f.since_ms)}` : '' }),
          h('span', { id: 'failover-switches', text: `${App.num(f.switches)} switch${f.switches === 1 ? '' : 'es'} since the pair started` }),
          f.active && pair.spec.failback === false ? h('span', { text: 'no failback: stays until this one fails' }) : null),
        h('div', { class: 'reason', id: 'failover-reason' }, h('strong', { text: 'Last switch: ' }), f.reason || 'none yet'),
        h('ul', { class: 'list' }, items));
      box.hidden = false;
    };
    let statusSig = '';
    function renderStatus() {
      const s = pair.status;
      const c = s.counts;
      const sig = JSON.stringify([pair.enabled, s]);
      if (sig === statusSig) return;
      statusSig = sig;
      const peers = (side) => (side.connections > 1 ? ` (${side.connections} connections)` : '');
      const f = s.failover;
      const activeDest = f && f.active ? destinationSpec(f.active) : null;
      const destLabel = f && f.active
        ? `Destination · ${activeDestinationText(f)}${activeDest ? ` · ${App.typeName(activeDest.type)}` : ''}`
        : `Destination · ${App.typeName(s.destination.type)}`;
      replace($('#indicators'),
        indicator('source', 'connection', `Source · ${App.typeName(s.source.type)}`, s.source.status, s.source.detail + peers(s.source), relayInfo('source', s.source)),
        indicator('buffer', 'buffer', 'Buffer state', s.buffer, bufferDetail(s)),
        indicator('destination', 'connection', destLabel, s.destination.status, s.destination.detail + peers(s.destination),
          relayInfo('destination', f && f.active ? { ...s.destination, type: activeDest ? activeDest.type : s.destination.type } : s.destination)),
        indicator('channel', 'channel', 'Channel', s.channel, channelDetail(pair)));
      failoverBox(f);
      replace($('#tiles'),
        tile('Received', c.received, 'received'),
        tile('Sent', c.sent, 'sent'),
        tile('Pending', c.pending, 'pending'),
        tile('In flight', c.in_flight, 'in_flight'),
        tile('Delivered, kept', c.done, 'done'),
        tile('Rejected', c.rejected, 'rejected', true),
        tile('Refused (full)', c.refused, 'refused', true),
        tile('Errors', c.errors, 'errors'),
        tile('Retries', c.retries, 'retries'),
        c.duplicates_dropped || isRelay(s.source)
          ? tile('Duplicates dropped', c.duplicates_dropped, 'duplicates_dropped', false, undefined, 'Relayed messages received again (after a reconnect) and dropped: this buffer had them already')
          : null,
        tile('Buffer size', 0, 'buffer_bytes', false, App.bytes(s.buffer_bytes)),
        tile('Oldest pending', 0, 'oldest', false, s.oldest_pending_age_ms ? App.duration(s.oldest_pending_age_ms) : '–'));
      replace($('#last-error'),
        s.buffer_failure ? h('div', { class: 'notice error', text: `The buffer failed: ${s.buffer_failure}. The pair reopens it by itself (trusting nothing past the last position known to be on disk) and restarts.` }) : null,
        s.storage_alarm ? h('div', { class: 'notice error', id: 'pair-storage-alarm', text: `Storage full: ${s.storage_alarm}.` }) : null,
        s.last_error ? h('div', { class: 'last-error', id: 'pair-last-error' }, h('strong', { text: 'Last error: ' }), lastErrorText(s.last_error))
          : h('div', { class: 'muted small', id: 'pair-last-error', text: 'No errors since ioBufferPro started.' }));
      $('#rej-count').textContent = c.rejected + c.refused ? `(${App.num(c.rejected + c.refused)})` : '';
      const t = $('#pair-toggle');
      if (t) setToggle(t, pair.enabled);
    }
    renderStatus();

    // ---- charts
    const thr = new App.LineChart($('#chart-throughput'), {
      unit: 'msg/s',
      series: [
        { key: 'received', label: 'Received', color: App.chartColor('--chart-received', '#2563eb') },
        { key: 'sent', label: 'Sent', color: App.chartColor('--chart-sent', '#7c3aed') },
      ],
    });
    const depth = new App.LineChart($('#chart-depth'), {
      unit: 'messages',
      integer: true,
      series: [{ key: 'depth', label: 'Undelivered', color: App.chartColor('--chart-depth', '#0f766e') }],
    });
    const rates = new App.RateTracker();
    function sample() {
      const now = Date.now();
      const c = pair.status.counts;
      const r = rates.next(now, { received: c.received, sent: c.sent });
      if (r) {
        thr.push(now, r);
        $('#rate-in').textContent = `${App.num1(r.received)} msg/s`;
        $('#rate-out').textContent = `${App.num1(r.sent)} msg/s`;
      }
      depth.push(now, { depth: undelivered(c) });
      $('#depth-now').textContent = App.num(undelivered(c));
    }
    sample();

    // ---- Live View
    const feedEl = $('#feed');
    const feed = {
      side: 'source',
      paused: false,
      unseen: 0,
      skipped: 0,
      entries: { source: [], destination: [] },
      keys: new Set(),
      key: (e) => `${e.side}|${e.seq}|${e.at_ms}|${e.length}|${e.peer}`,
      add(e, live) {
        const k = this.key(e);
        if (this.keys.has(k)) return;
        this.keys.add(k);
        const list = this.entries[e.side];
        if (!list) return;
        list.unshift(e);
        while (list.length > FEED_MAX) this.keys.delete(this.key(list.pop()));
        if (e.side !== this.side) return;
        if (this.paused) { this.unseen++; this.note(); return; }
        const empty = $('.feed-empty', feedEl);
        if (empty) empty.remove();
        const li = this.item(e);
        if (live) li.classList.add('fresh');
        feedEl.prepend(li);
        while (feedEl.children.length > FEED_MAX) feedEl.lastElementChild.remove();
      },
      item(e) {
        const more = e.length > 256 ? ' …' : '';
        return h('li', { dataset: { seq: e.seq === null || e.seq === undefined ? '' : String(e.seq), side: e.side } },
          h('div', { class: 'meta' },
            h('span', { class: 'seq', text: e.seq === null || e.seq === undefined ? '—' : `#${e.seq}` }),
            h('span', { text: App.clock(e.at_ms) }),
            h('span', { text: `${App.num(e.length)} bytes` }),
            e.peer ? h('span', { text: `${e.side === 'source' ? 'from' : 'to'} ${e.peer}` }) : null),
          h('pre', { class: 'text', text: (e.text || '') + more }),
          h('pre', { class: 'hex', text: (e.hex || '') + (e.length > 64 ? ' …' : '') }));
      },
      render() {
        const list = this.entries[this.side];
        if (!list.length) {
          replace(feedEl, h('li', { class: 'feed-empty', text: this.side === 'source' ? 'No message received yet. New messages appear here as they arrive.' : 'No message delivered yet. Messages appear here as they are delivered.' }));
        } else {
          replace(feedEl, list.map((e) => this.item(e)));
        }
        this.unseen = 0;
        this.note();
        $('#feed-explain').textContent = this.side === 'source'
          ? 'Messages as they are received from the source and stored on disk, newest first (text and hex of the first bytes).'
          : 'Messages as they are delivered to the destination and confirmed, newest first (text and hex of the first bytes).';
      },
      note() {
        const parts = [];
        if (this.paused) parts.push(this.unseen ? `Paused · ${this.unseen} new` : 'Paused');
        if (this.skipped) parts.push(`${App.num(this.skipped)} not shown (over 100 per second)`);
        $('#feed-note').textContent = parts.join(' · ');
      },
      show(side) {
        this.side = side;
        $('#view-source').setAttribute('aria-pressed', String(side === 'source'));
        $('#view-destination').setAttribute('aria-pressed', String(side === 'destination'));
        this.render();
      },
    };
    $('#view-source').addEventListener('click', () => feed.show('source'));
    $('#view-destination').addEventListener('click', () => feed.show('destination'));
    $('#feed-pause').addEventListener('click', (ev) => {
      feed.paused = !feed.paused;
      ev.target.textContent = feed.paused ? 'Resume' : 'Pause';
      if (!feed.paused) feed.render(); else feed.note();
    });
    $('#feed-clear').addEventListener('click', () => {
      for (const e of feed.entries[feed.side]) feed.keys.delete(feed.key(e));
      feed.entries[feed.side] = [];
      feed.skipped = 0;
      feed.render();
    });
    feed.render();

    // ---- tabs
    const tabs = ['live', 'messages', 'rejections'];
    const showTab = (name) => {
      for (const t of tabs) {
        $(`#tab-${t}`).setAttribute('aria-selected', String(t === name));
        $(`#panel-${t}`).hidden = t !== name;
      }
      if (name === 'messages' && !browser.loaded) browser.search();
      if (name === 'rejections') rejections.load();
      history.replaceState(null, '', name === 'live' ? location.pathname : `${location.pathname}#${name}`);
    };
    for (const t of tabs) $(`#tab-${t}`).addEventListener('click', () => showTab(t));

    // ---- message browser
    const STATE_LABELS = { pending: 'Pending', in_flight: 'In flight', done: 'Done', unconfirmed: 'Unconfirmed', absent: 'Absent' };
    const stateTag = (s) => h('span', { class: `tag state-${s}`, text: STATE_LABELS[s] || s });
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
        const err = $('#msg-error');
        err.hidden = true;
        try {
          this.page = await App.api('GET', `${pairUrl(pair.id)}/messages?${params}`);
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
          replace(box, h('div', { class: 'empty', id: 'msg-empty', text: pg.next_seq === pg.first_seq ? 'The buffer holds no messages.' : 'No message matches.' }));
        } else {
          const tbody = h('tbody');
          for (const m of [...pg.messages].reverse()) {
            const tr = h('tr', { class: 'clickable', tabindex: '0', dataset: { seq: String(m.seq), state: m.state } },
              h('td', { class: 'num', 'data-label': 'Seq', text: `#${m.seq}` }),
              h('td', { class: 'nowrap', 'data-label': 'Stored', text: App.time(m.timestamp_ms) }),
              h('td', { 'data-label': 'State' }, stateTag(m.state)),
              h('td', { class: 'num', 'data-label': 'Bytes', text: App.num(m.length) }),
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
        $('#msg-older').disabled = lo === null || lo <= pg.first_seq;
        $('#msg-newer').disabled = hi === null || hi + 1 >= pg.next_seq;
      },
    };
    $('#msg-filter').addEventListener('submit', (ev) => { ev.preventDefault(); browser.search(); });
    $('#msg-newest').addEventListener('click', () => {
      $('#msg-from').value = '';
      $('#msg-since').value = '';
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
      try { m = await App.api('GET', `${pairUrl(pair.id)}/messages/${seq}`); } catch (e) { App.notify(e.message, 'error'); return; }
      const body = h('div', { id: 'message-detail', dataset: { seq: String(seq), state: m.state } },
        h('dl', { class: 'meta-list' },
          h('dt', { text: 'State' }), h('dd', null, stateTag(m.state)),
          h('dt', { text: 'Stored' }), h('dd', { text: App.time(m.timestamp_ms) }),
          h('dt', { text: 'Length' }), h('dd', { text: `${App.num(m.length)} bytes${m.truncated ? ' (the views below show the start)' : ''}` })),
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
            const a = h('a', { href: url, download: `${pair.id}-${seq}.bin` });
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
              const r = await App.api('POST', `${pairUrl(pair.id)}/messages/${seq}/resend`);
              App.notify(`Message #${seq} re-sent as #${r.seq}; it is delivered after everything already buffered.`, 'ok');
              browser.search();
              return true;
            } catch (e) {
              App.notify(`Could not re-send #${seq}: ${e.message}`, 'error');
              btn.disabled = false;
              return false;
            }
          },
        });
      }
      buttons.push({ label: 'Close', value: null });
      App.dialog({ title: `Message #${seq}`, body, buttons, wide: true, id: 'message-dialog' });
    }

    // ---- rejections
    const rejections = {
      loaded: false,
      async load() {
        this.loaded = true;
        let list;
        try { list = await App.api('GET', `${pairUrl(pair.id)}/rejections`); } catch (e) { App.notify(e.message, 'error'); return; }
        const box = $('#rej-table');
        if (!list.length) { replace(box, h('div', { class: 'empty', id: 'rej-empty', text: 'Nothing was rejected.' })); return; }
        replace(box, h('table', { class: 'stack', id: 'rej-list' },
          h('thead', null, h('tr', null, ['When', 'Side', 'Reason', 'Bytes', 'Start (hex)', 'Seq', 'Peer'].map((t) => h('th', { text: t })))),
          h('tbody', null, [...list].reverse().map((r) => h('tr', null,
            h('td', { class: 'nowrap', 'data-label': 'When', text: App.time(r.at_ms) }),
            h('td', { 'data-label': 'Side', text: r.side }),
            h('td', { class: 'message', 'data-label': 'Reason', text: r.reason }),
            h('td', { class: 'num', 'data-label': 'Bytes', text: App.num(r.length) }),
            h('td', { class: 'preview', 'data-label': 'Start (hex)', text: r.preview }),
            h('td', { class: 'num', 'data-label': 'Seq', text: r.seq === null || r.seq === undefined ? '–' : `#${r.seq}` }),
            h('td', { 'data-label': 'Peer', text: r.peer || '–' }))))));
      },
    };

    // Stream first, then seed from the recent history, so nothing falls in between.
    App.events({ pair: pair.id }, {
      pairs: (list) => {
        const s = list.find((p) => p.id === pair.id);
        if (!s) {
          const gone = $('#pair-gone');
          gone.textContent = 'This channel pair was deleted.';
          gone.hidden = false;
          return;
        }
        const prevRejected = pair.status.counts.rejected + pair.status.counts.refused;
        pair.status = s.status;
        pair.enabled = s.enabled;
        pair.name = s.name;
        renderStatus();
        sample();
        if (rejections.loaded && s.status.counts.rejected + s.status.counts.refused !== prevRejected) rejections.load();
      },
      message: (e) => feed.add(e, true),
      skipped: (d) => { feed.skipped += d.messages || 0; feed.note(); },
    });
    const [srcSeed, dstSeed] = await Promise.all([
      App.api('GET', `${pairUrl(pair.id)}/live?side=source`),
      App.api('GET', `${pairUrl(pair.id)}/live?side=destination`),
    ]);
    for (const side of ['source', 'destination']) {
      const seed = side === 'source' ? srcSeed : dstSeed;
      const merged = [...feed.entries[side]];
      for (const e of seed) {
        const k = feed.key(e);
        if (!feed.keys.has(k)) { feed.keys.add(k); merged.push(e); }
      }
      merged.sort((a, b) => b.at_ms - a.at_ms || (b.seq || 0) - (a.seq || 0));
      feed.entries[side] = merged.slice(0, FEED_MAX);
    }
    feed.render();

    const initial = location.hash.slice(1);
    if (tabs.includes(initial)) showTab(initial);
  });
})();
