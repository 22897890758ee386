// The channel-pair form (create and edit) on the Channels page: builds it from a stored pair,
// turns it into the API's JSON, and shows the server's problems at their fields. The server
// validates (iobp-config, then the engine, which also loads certificate files and checks
// ports against the other pairs); the form checks only what it needs to send anything
// (form-fields.js).

import { $, $$, append, h } from '../common/dom.js';
import { api } from '../common/api.js';
import { clearProblems, showError, showProblems } from '../common/forms.js';
import { notify } from '../common/ui.js';
import { backupsBlock } from './form-backups.js';
import { field, getPath, readFields, setPath } from './form-fields.js';
import { mainSide } from './form-sides.js';
import { pairUrl } from './pair-actions.js';

/** Baud rates offered when the server's list cannot be loaded. */
const BAUDS = [9600, 19200, 38400, 57600, 115200];

/**
 * Puts the server's problems where the form shows them. The server names the JSON path of
 * the value in the body it was sent, and the form's fields carry the same paths
 * (`data-path`), so most problems need no mapping. Three kinds do:
 * - `failover[i]…`: the i-th backup block, whose fields have a prefix of their own
 *   (`failover.b3…`) so that they stay with it when the backups are reordered;
 * - `….tls` (from the engine: a certificate file that does not load, a bad server name): the
 *   field with that file or the server name, else the first TLS field shown;
 * - any other object the form shows as several fields (`source.ack`, `destination.auth`):
 *   its first field shown (the type selector, the user name).
 * What still has no field shown goes to its nearest shown parent, or to the form's summary
 * (showProblems).
 */
function placeServerProblems(form, problems) {
  const backups = $$('#backups > .backup', form);
  const input = (path) => form.querySelector(`[data-path="${CSS.escape(path)}"]`);
  const firstShownUnder = (path) => $$('[data-path]', form)
    .find((i) => i.dataset.path.startsWith(`${path}.`) && !i.closest('[hidden]'));
  return problems.map((p) => {
    let path = p.path || '';
    const m = /^failover\[(\d+)\](.*)$/.exec(path);
    if (m && backups[Number(m[1])]) path = backups[Number(m[1])].dataset.prefix + m[2];
    if (/(^|\.)tls$/.test(path)) {
      const files = ['cert', 'key', 'ca'].map((f) => input(`${path}.${f}`)).filter((i) => i && i.value.trim());
      const named = files.find((i) => p.message.startsWith(`${i.value.trim()}:`)) || files.find((i) => p.message.includes(i.value.trim()));
      if (named) return { path: named.dataset.path, message: p.message };
      if (/^server name/i.test(p.message) && input(`${path}.server_name`)) return { path: `${path}.server_name`, message: p.message };
    }
    if (path && !input(path)) {
      const first = firstShownUnder(path);
      if (first) path = first.dataset.path;
    }
    return { path, message: p.message };
  });
}

/**
 * The settings this form shows, by object. A stored pair may hold others (written by a
 * newer version or by hand): an edit keeps them rather than dropping them silently.
 */
const KNOWN = {
  pair: ['id', 'name', 'enabled', 'source', 'destination', 'failover', 'failback', 'failover_policy', 'retry', 'max_storage_mb', 'dead_letter'],
  tcp_server: ['type', 'host', 'port', 'tls', 'framing', 'ack', 'max_connections', 'idle_timeout_s', 'write_timeout_ms'],
  tcp_client: ['type', 'host', 'port', 'tls', 'framing', 'ack', 'connect_timeout_ms', 'write_timeout_ms'],
  udp: ['type', 'host', 'port', 'receive_buffer_bytes'],
  serial: ['type', 'port', 'baud_rate', 'data_bits', 'parity', 'stop_bits', 'flow_control', 'framing', 'ack', 'rs485', 'write_timeout_ms'],
  remote_icombuffer: ['type', 'url', 'channel_id', 'auth', 'tls'],
  nats: ['type', 'servers', 'subject', 'stream', 'consumer', 'auth', 'tls', 'in_flight', 'ack_wait_s'],
  mqtt: ['type', 'url', 'version', 'client_id', 'topic', 'qos', 'auth', 'tls', 'in_flight', 'keep_alive_s', 'connect_timeout_ms', 'drop_duplicates'],
  modbus: ['type', 'transport', 'polls'],
  tls: ['enabled', 'cert', 'key', 'ca', 'client_auth', 'insecure_skip_verify', 'server_name'],
  // A relay or mqtt side's TLS follows its url, and it is always a client. The server answers
  // `enabled: false` with any other TLS setting; the form leaves it out (the same default)
  // rather than report it as a setting it does not show.
  remote_tls: ['enabled', 'cert', 'key', 'ca', 'insecure_skip_verify', 'server_name'],
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
  if ((orig.type === 'tcp_server' || orig.type === 'tcp_client' || orig.type === 'nats') && orig.tls) out.push(...unknownSettings(orig.tls, KNOWN.tls, `${prefix}.tls`));
  if ((orig.type === 'remote_icombuffer' || orig.type === 'mqtt') && orig.tls) out.push(...unknownSettings(orig.tls, KNOWN.remote_tls, `${prefix}.tls`));
  return out;
}

/**
 * Tidies a relay or mqtt side the form produced: TLS settings left at their defaults are
 * dropped (the server stores none), and so is a password typed for no user on a relay side
 * without url (the fields are hidden there and not used).
 */
function tidyRemote(e) {
  if (!e || (e.type !== 'remote_icombuffer' && e.type !== 'mqtt')) return;
  if (e.tls) {
    if (!e.tls.insecure_skip_verify) delete e.tls.insecure_skip_verify;
    if (!Object.keys(e.tls).length) delete e.tls;
  }
  if (e.type === 'remote_icombuffer' && !e.url && e.auth && !e.auth.username) delete e.auth;
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
export async function formContext(pair) {
  const ctx = { ports: [], bauds: BAUDS, self: pair ? pair.id : null, portsError: null };
  try {
    const r = await api('GET', '/api/v1/serial-ports');
    if (r && Array.isArray(r.ports)) ctx.ports = r.ports;
    if (r && Array.isArray(r.common_baud_rates) && r.common_baud_rates.length) ctx.bauds = r.common_baud_rates;
  } catch (e) {
    if (e.status === 401) throw e;
    ctx.portsError = e.message;
  }
  return ctx;
}


/** Builds the pair form; `pair` (a PairDto) to edit, null to create. */
export function pairForm(pair, ctx, { onDone, onCancel }) {
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
    h('details', { class: 'advanced', open: editing && (spec.retry || spec.max_storage_mb || spec.dead_letter) ? true : undefined },
      h('summary', { text: 'Retry, storage and poison messages' }),
      h('fieldset', null, h('legend', { text: 'Reconnect and retry (exponential backoff)' }),
        h('div', { class: 'fields' },
          field({ path: 'retry.initial_ms', label: 'First wait (ms)', kind: 'int', value: retry.initial_ms, placeholder: '1000' }),
          field({ path: 'retry.max_ms', label: 'Longest wait (ms)', kind: 'int', value: retry.max_ms, placeholder: '60000' }),
          field({ path: 'retry.jitter_percent', label: 'Jitter (%)', kind: 'int', value: retry.jitter_percent, placeholder: '20' }),
          field({ path: 'max_storage_mb', label: 'Storage limit of this pair (MiB)', kind: 'int', value: spec.max_storage_mb, placeholder: 'global limit only' }))),
      h('fieldset', null, h('legend', { text: 'Poison messages (dead-letter)' }),
        h('p', { class: 'muted small', text: 'By default a message the receiving application refuses (an HL7 AE/AR, a NAK byte) is retried forever, and every message behind it waits: strict order, nothing skipped. With a number here, a message refused that many times in a row is parked — kept, counted, shown on the pair page to re-send or discard — and delivery goes on with the next, so order is broken around it. Timeouts and connection errors never count.' }),
        h('div', { class: 'fields' },
          field({ path: 'dead_letter.after_rejections', label: 'Park a message after this many refusals', kind: 'int', value: spec.dead_letter ? spec.dead_letter.after_rejections : undefined, placeholder: 'never: retry forever' })))),
    h('div', { class: 'form-actions' }, submit, cancel,
      editing ? h('span', { class: 'muted small', text: 'Saving restarts the pair with the new settings; its buffered messages are kept.' }) : null));

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearProblems(form);
    const { value, problems } = readFields(form);
    const backups = $$('#backups > .backup', form);
    const sides = [
      value.source || {},
      value.destination || {},
      ...backups.map((b) => getPath(value, b.dataset.prefix) || {}),
    ];
    for (const e of sides) tidyRemote(e);
    if (problems.length) { showProblems(form, problems); return; }
    const body = {
      id: value.id,
      name: value.name || '',
      enabled: value.enabled,
      source: value.source,
      destination: value.destination,
      failover: sides.slice(2),
      failback: value.failback !== false,
    };
    if (value.failover_policy && Object.keys(value.failover_policy).length) body.failover_policy = value.failover_policy;
    if (value.retry) body.retry = value.retry;
    if (value.max_storage_mb !== undefined) body.max_storage_mb = value.max_storage_mb;
    if (value.dead_letter && value.dead_letter.after_rejections !== undefined) body.dead_letter = value.dead_letter;
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
        ? await api('PUT', pairUrl(pair.id), body)
        : await api('POST', '/api/v1/pairs', body);
      notify(editing ? `${res.name} saved; it restarts with the new settings.` : `Channel pair ${res.name} created.`, 'ok');
      onDone(res);
    } catch (e) {
      if (e.status === 409) showProblems(form, [{ path: 'id', message: e.message }]);
      else if (e.problems && e.problems.length) showProblems(form, placeServerProblems(form, e.problems));
      else showError(form, e);
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}
