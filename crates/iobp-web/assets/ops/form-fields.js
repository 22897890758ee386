// The fields of the channel-pair form and how they become the API's JSON. Each field carries
// the JSON path of its value (`data-path`, e.g. `source.framing.delimiter`), which is also the
// path the server names in its problems, so a problem is shown at its field.
//
// Validation is the server's (iobp-config and the engine): the form checks only what it must
// before it can send anything at all, namely that a field marked required is filled in and
// that what was typed can be turned into the JSON value (a whole number, escaped bytes, a
// byte). Ranges, combinations and conflicts come back as the server's problems.

import { $, $$, h } from '../common/dom.js';

/** `\n`, `\r`, `\t`, `\0`, `\\`, `\xHH` → bytes. Throws on a bad escape. */
export function parseEscapes(text) {
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
export function escapeBytes(v) {
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

/** A byte as the form shows it: `0x06`. */
export const hexByte = (b) => '0x' + Number(b).toString(16).padStart(2, '0');

let fieldSeq = 0;

/** A fresh element id for the form (`f12-<what>`). */
export const nextId = (what) => `f${++fieldSeq}-${what}`;

/**
 * A labelled form field. o: {path, label, kind ('str', 'int', 'password', 'bytes', 'byte',
 * 'bool', 'presence', 'list': values separated by commas or spaces, sent as an array, 'json':
 * a text area holding a JSON value, sent as it parses), value, required, mark (the required mark only: when the field is
 * required depends on other fields, which the server checks), keep (read even while hidden),
 * placeholder, help, options [[value, label]], wide, extra (nodes after the input)}.
 *
 * A 'presence' checkbox stands for an optional object: checked, the object is there (with
 * the fields under it); unchecked, it is left out.
 */
export function field(o) {
  const id = nextId((o.path || '').replace(/[^A-Za-z0-9]/g, '-'));
  const kind = o.kind || 'str';
  const data = { path: o.path, kind, label: o.label };
  if (o.required) data.required = '1';
  if (o.keep) data.keep = '1';
  let input;
  if (kind === 'bool' || kind === 'presence') {
    input = h('input', { type: 'checkbox', id, checked: !!o.value });
    Object.assign(input.dataset, data);
    if (o.onChange) input.addEventListener('change', o.onChange);
    return h('div', { class: `field check${o.wide ? ' wide' : ''}${o.danger ? ' danger' : ''}` }, input, h('label', { for: id, text: o.label }),
      o.help ? h('div', { class: 'help', text: o.help }) : null);
  }
  if (kind === 'json') {
    input = h('textarea', {
      id,
      rows: o.rows || 10,
      spellcheck: 'false',
      placeholder: o.placeholder,
      required: o.required,
      class: 'json',
    });
    input.value = o.value === undefined || o.value === null ? '' : JSON.stringify(o.value, null, 2);
  } else if (o.options) {
    input = h('select', { id }, o.options.map(([v, l]) => h('option', { value: String(v), text: l })));
    if (o.value !== undefined && o.value !== null) input.value = String(o.value);
    if (input.selectedIndex < 0) input.selectedIndex = 0;
  } else {
    input = h('input', {
      type: kind === 'int' ? 'number' : kind === 'password' ? 'password' : 'text',
      id,
      placeholder: o.placeholder,
      step: kind === 'int' ? '1' : undefined,
      inputmode: kind === 'int' ? 'numeric' : undefined,
      autocomplete: kind === 'password' ? 'new-password' : 'off',
      spellcheck: 'false',
      readonly: o.readonly,
      required: o.required,
      value: o.value === undefined || o.value === null ? '' : Array.isArray(o.value) ? o.value.join(', ') : String(o.value),
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

/** Sets `obj`'s value at a dotted path, creating the objects on the way. */
export function setPath(obj, path, value) {
  const parts = path.split('.');
  let o = obj;
  for (const p of parts.slice(0, -1)) o = (o[p] = o[p] || {});
  o[parts[parts.length - 1]] = value;
}

/** `obj`'s value at a dotted path (undefined when absent). */
export function getPath(obj, path) {
  let o = obj;
  for (const p of path.split('.')) {
    if (o === null || typeof o !== 'object') return undefined;
    o = o[p];
  }
  return o;
}

/**
 * Reads every visible field under `root` (and the hidden ones marked keep) into an object.
 * An empty field is left out (the server's default applies). Returns {value, problems}: the
 * problems are required fields left empty and text that is no value of its kind.
 */
export function readFields(root) {
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
      setPath(value, path, n);
    } else if (kind === 'bytes') {
      try {
        setPath(value, path, bytesJson(parseEscapes(raw)));
      } catch (e) { fail(path, e.message); }
    } else if (kind === 'json') {
      try {
        setPath(value, path, JSON.parse(raw));
      } catch (e) { fail(path, `${label} is not valid JSON: ${e.message}`); }
    } else if (kind === 'list') {
      setPath(value, path, raw.split(/[\s,]+/).filter(Boolean));
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
