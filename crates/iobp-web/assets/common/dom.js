// DOM helpers every page uses: element creation without HTML strings (the Content-Security-Policy
// allows no inline script or style, and nothing here parses HTML), queries, and keeping a
// list of elements in step with data.

/** Creates an element: h('div', {class: 'x', text: 'y', on: {click: f}}, child, ...). */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k === 'text') el.textContent = v;
      else if (k === 'on') for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
      else if (k === 'dataset') Object.assign(el.dataset, v);
      else if (k === 'value') el.value = v;
      else if (k === 'checked') el.checked = !!v;
      else if (k === 'style') throw new Error('no inline styles (CSP)');
      else el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  append(el, ...children);
  return el;
}

/** Appends children (nodes, strings, arrays of them; null and false are skipped). */
export function append(el, ...children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, ...c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function $(sel, root) { return (root || document).querySelector(sel); }
export function $$(sel, root) { return Array.from((root || document).querySelectorAll(sel)); }
export function clear(el) { while (el.firstChild) el.removeChild(el.firstChild); return el; }
export function replace(el, ...children) { clear(el); return append(el, ...children); }

/**
 * Keeps `container`'s children in step with `items`: one child per item (data-key), built
 * by `render(item)` and rebuilt only when `sigOf(item)` changed, in the items' order; other
 * children are removed. Unchanged elements stay in place (focus, clicks in progress).
 */
export function syncList(container, items, keyOf, sigOf, render) {
  const existing = new Map();
  for (const el of Array.from(container.children)) {
    if (el.dataset && el.dataset.key !== undefined) existing.set(el.dataset.key, el);
    else el.remove();
  }
  let prev = null;
  for (const it of items) {
    const key = String(keyOf(it));
    const sig = sigOf(it);
    let el = existing.get(key);
    if (!el || el.iobpSig !== sig) {
      const fresh = render(it);
      fresh.dataset.key = key;
      fresh.iobpSig = sig;
      if (el) el.replaceWith(fresh);
      el = fresh;
    }
    existing.delete(key);
    if (prev ? prev.nextElementSibling !== el : container.firstElementChild !== el) {
      if (prev) prev.after(el); else container.prepend(el);
    }
    prev = el;
  }
  for (const el of existing.values()) el.remove();
}
