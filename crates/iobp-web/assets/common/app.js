// ioBufferPro portals: what every page shares. The REST API client (CSRF token, JSON errors,
// redirects to the login and password pages), the page header (user, role, logout, link to
// the other portal), server-sent events with reconnection, status badges, formatting, dialogs,
// form problem display, and the login and password pages.
//
// Vanilla ES2020, no build step. Everything lives under window.IOBP.
'use strict';

(() => {
  const App = {};
  window.IOBP = App;

  // ---------------------------------------------------------------- DOM helpers

  /** Creates an element: h('div', {class: 'x', text: 'y', on: {click: f}}, child, ...). */
  function h(tag, attrs, ...children) {
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
  function append(el, ...children) {
    for (const c of children) {
      if (c === null || c === undefined || c === false) continue;
      if (Array.isArray(c)) append(el, ...c);
      else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }
  function $(sel, root) { return (root || document).querySelector(sel); }
  function $$(sel, root) { return Array.from((root || document).querySelectorAll(sel)); }
  function clear(el) { while (el.firstChild) el.removeChild(el.firstChild); return el; }
  function replace(el, ...children) { clear(el); return append(el, ...children); }
  Object.assign(App, { h, append, $, $$, clear, replace });

  /**
   * Keeps `container`'s children in step with `items`: one child per item (data-key), built
   * by `render(item)` and rebuilt only when `sigOf(item)` changed, in the items' order; other
   * children are removed. Unchanged elements stay in place (focus, clicks in progress).
   */
  App.syncList = (container, items, keyOf, sigOf, render) => {
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
  };

  // ---------------------------------------------------------------- formatting

  const nf = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
  const nf1 = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });
  App.num = (n) => (n === null || n === undefined ? '–' : nf.format(n));
  App.num1 = (n) => (n === null || n === undefined ? '–' : nf1.format(n));
  App.bytes = (b) => {
    if (b === null || b === undefined) return '–';
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    let v = b;
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return (i === 0 ? nf.format(v) : nf1.format(v)) + ' ' + units[i];
  };
  App.pct = (p) => (p === null || p === undefined ? '–' : nf1.format(p) + ' %');
  const pad = (n, w = 2) => String(n).padStart(w, '0');
  /** Local date and time, `YYYY-MM-DD HH:MM:SS`. */
  App.time = (ms) => {
    if (!ms) return '–';
    const d = new Date(ms);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  };
  /** Local time with milliseconds, for the live feed. */
  App.clock = (ms) => {
    const d = new Date(ms);
    return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
  };
  App.duration = (ms) => {
    if (ms === null || ms === undefined) return '–';
    let s = Math.floor(ms / 1000);
    if (s < 60) return `${s} s`;
    const d = Math.floor(s / 86400); s -= d * 86400;
    const hh = Math.floor(s / 3600); s -= hh * 3600;
    const mm = Math.floor(s / 60); s -= mm * 60;
    if (d > 0) return `${d} d ${hh} h ${mm} min`;
    if (hh > 0) return `${hh} h ${mm} min`;
    return `${mm} min ${s} s`;
  };
  App.ago = (ms) => App.duration(Math.max(0, Date.now() - ms)) + ' ago';

  // ---------------------------------------------------------------- status

  const LABELS = {
    connection: { green: 'Connected', yellow: 'Connecting', red: 'Disconnected', white: 'Stopped' },
    buffer: { white: 'Empty', green: 'Flowing', yellow: 'Backlog', red: 'Full' },
    channel: { green: 'Running', yellow: 'Degraded', red: 'Error', white: 'Stopped' },
  };
  App.LABELS = LABELS;
  App.label = (kind, color) => (LABELS[kind] && LABELS[kind][color]) || color || 'Unknown';
  /** A status pill: colour and a text label (never colour alone). */
  App.badge = (kind, color, title) => h('span', {
    class: `badge badge-${['green', 'yellow', 'red', 'white'].includes(color) ? color : 'white'}`,
    title: title || undefined,
    dataset: { kind, color: color || '' },
    text: App.label(kind, color),
  });
  App.TYPE_NAMES = {
    tcp_server: 'TCP server',
    tcp_client: 'TCP client',
    udp: 'UDP',
    serial: 'Serial',
    remote_icombuffer: 'Remote ioBufferPro',
  };
  App.typeName = (t) => App.TYPE_NAMES[t] || t;

  // ---------------------------------------------------------------- roles

  const RANK = { viewer: 1, operator: 2, admin: 3 };
  /** Whether the logged-in user has at least `role`. */
  App.can = (role) => !!App.session && (RANK[App.session.role] || 0) >= RANK[role];

  // ---------------------------------------------------------------- API

  class ApiError extends Error {
    constructor(status, message, problems) {
      super(message);
      this.status = status;
      this.problems = problems || [];
    }
  }
  App.ApiError = ApiError;
  let csrf = '';

  function here() { return location.pathname + location.search + location.hash; }
  /**
   * Where to go after logging in: only a page of this portal. The URL parser decides, as the
   * browser will when it navigates (it drops tabs and newlines, treats \\ as /), so
   * "/\t/evil.example" cannot pass for a path.
   */
  function safeNext(n) {
    if (typeof n !== 'string' || !n.startsWith('/')) return '/';
    let u;
    try { u = new URL(n, location.origin); } catch (_) { return '/'; }
    if (u.origin !== location.origin) return '/';
    if (u.pathname.startsWith('/login') || u.pathname.startsWith('/password')) return '/';
    return u.pathname + u.search + u.hash;
  }
  App.safeNext = safeNext;
  App.nextParam = () => safeNext(new URLSearchParams(location.search).get('next') || '/');
  let leaving = false;
  function go(url) {
    if (leaving) return;
    leaving = true;
    location.assign(url);
  }
  App.goLogin = () => go('/login?next=' + encodeURIComponent(here()));
  App.goPassword = () => go('/password?next=' + encodeURIComponent(here()));

  /**
   * Calls the API. Sends the CSRF token with every state-changing request; a logged-out
   * session goes to the login page, a password that must be changed to the password page.
   * Throws ApiError with the server's message and field problems.
   */
  App.api = async function api(method, path, body, opts = {}) {
    const headers = { Accept: 'application/json' };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (method !== 'GET' && method !== 'HEAD') headers['X-CSRF-Token'] = csrf;
    let res;
    try {
      res = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        credentials: 'same-origin',
        cache: 'no-store',
      });
    } catch (e) {
      throw new ApiError(0, 'Cannot reach ioBufferPro (' + e.message + ')', []);
    }
    if (res.status === 204) return null;
    const text = await res.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (_) { data = null; }
    if (!res.ok) {
      const message = (data && data.error) || `${res.status} ${res.statusText}`;
      const err = new ApiError(res.status, message, (data && data.problems) || []);
      if (!opts.noRedirect) {
        if (res.status === 401) App.goLogin();
        else if (res.status === 403 && /password must be changed/i.test(message)) App.goPassword();
      }
      throw err;
    }
    return data;
  };

  // ---------------------------------------------------------------- toasts and dialogs

  function toastBox() {
    let box = $('#toasts');
    if (!box) {
      box = h('div', { id: 'toasts', class: 'toasts', role: 'status', 'aria-live': 'polite' });
      document.body.append(box);
    }
    return box;
  }
  /** A short message at the bottom right; kind 'ok', 'error' or 'info'. */
  App.notices = [];
  App.notify = (message, kind = 'info') => {
    App.notices.push(`${kind}: ${message}`);
    if (App.notices.length > 50) App.notices.shift();
    const t = h('div', { class: `toast ${kind}`, text: message });
    toastBox().append(t);
    setTimeout(() => t.remove(), kind === 'error' ? 9000 : 5000);
  };

  /**
   * A modal dialog. `buttons`: [{label, class, value, disabled}]. Resolves with the value of
   * the button pressed (or null when closed). `onOpen(dialog, buttons)` may wire inputs.
   */
  App.dialog = ({ title, body, buttons, wide, onOpen, id }) => new Promise((resolve) => {
    const btns = (buttons || [{ label: 'Close', value: null }]).map((b) => h('button', {
      type: 'button',
      class: `btn ${b.class || ''}`,
      disabled: b.disabled,
      dataset: { value: String(b.value) },
      text: b.label,
    }));
    const closeBtn = h('button', { type: 'button', class: 'close', 'aria-label': 'Close', text: '×' });
    const dlg = h('dialog', { class: wide ? 'wide' : undefined, id: id || undefined, 'aria-label': title },
      h('div', { class: 'dlg-head' }, h('h2', { text: title }), closeBtn),
      h('div', { class: 'dlg-body' }, body),
      h('div', { class: 'dlg-foot' }, btns));
    let result = null;
    const finish = () => { dlg.remove(); resolve(result); };
    dlg.addEventListener('close', finish);
    closeBtn.addEventListener('click', () => dlg.close());
    (buttons || [{ value: null }]).forEach((b, i) => btns[i].addEventListener('click', async () => {
      if (b.action) {
        const keep = await b.action(dlg, btns[i]);
        if (keep === false) return;
      }
      result = b.value;
      dlg.close();
    }));
    document.body.append(dlg);
    dlg.showModal();
    if (onOpen) onOpen(dlg, btns);
  });

  /** Asks for confirmation by typing `expect`; resolves true when confirmed. */
  App.confirmTyped = ({ title, message, expect, confirmLabel }) => {
    const input = h('input', { type: 'text', id: 'confirm-input', autocomplete: 'off', spellcheck: 'false' });
    const body = h('div', null,
      h('div', { class: 'notice warn' }, message),
      h('div', { class: 'field' },
        h('label', { for: 'confirm-input' }, 'Type ', h('code', { text: expect }), ' to confirm'),
        input));
    return App.dialog({
      title,
      body,
      id: 'confirm-dialog',
      buttons: [
        { label: 'Cancel', value: false },
        { label: confirmLabel || 'Delete', value: true, class: 'danger', disabled: true },
      ],
      onOpen: (dlg, btns) => {
        input.addEventListener('input', () => { btns[1].disabled = input.value !== expect; });
        input.focus();
      },
    }).then((v) => v === true);
  };

  /** A plain yes/no confirmation. */
  App.confirm = ({ title, message, confirmLabel, danger }) => App.dialog({
    title,
    body: h('p', null, message),
    id: 'confirm-dialog',
    buttons: [
      { label: 'Cancel', value: false },
      { label: confirmLabel || 'OK', value: true, class: danger ? 'danger' : 'primary' },
    ],
  }).then((v) => v === true);

  // ---------------------------------------------------------------- forms

  /** Removes the problems shown in a form. */
  App.clearProblems = (form) => {
    $$('.field-error', form).forEach((e) => e.remove());
    $$('.field.invalid', form).forEach((e) => e.classList.remove('invalid'));
    $$('[aria-invalid]', form).forEach((e) => e.removeAttribute('aria-invalid'));
    const box = $('.form-error', form);
    if (box) { box.hidden = true; clear(box); }
  };

  /**
   * Shows problems ({path, message}) next to the fields whose data-path matches (or the
   * nearest parent path); the rest, and a summary, in the form's .form-error box.
   */
  App.showProblems = (form, problems, summary) => {
    App.clearProblems(form);
    const unplaced = [];
    let first = null;
    for (const p of problems) {
      let path = p.path || '';
      let input = null;
      while (path) {
        input = form.querySelector(`[data-path="${CSS.escape(path)}"]`);
        if (input && !input.closest('[hidden]')) break;
        input = null;
        const cut = Math.max(path.lastIndexOf('.'), path.lastIndexOf('['));
        path = cut > 0 ? path.slice(0, cut) : '';
      }
      if (!input) { unplaced.push(p); continue; }
      const field = input.closest('.field') || input.parentElement;
      field.classList.add('invalid');
      input.setAttribute('aria-invalid', 'true');
      const msg = (p.path && path !== p.path) ? `${p.path}: ${p.message}` : p.message;
      field.append(h('div', { class: 'field-error', dataset: { for: p.path }, text: msg }));
      if (!first) first = input;
    }
    const box = $('.form-error', form);
    if (box) {
      const lines = unplaced.map((p) => (p.path ? `${p.path}: ${p.message}` : p.message));
      box.dataset.unplaced = String(lines.length);
      const head = summary || (problems.length ? 'Please correct the marked fields.' : '');
      if (head || lines.length) {
        replace(box, h('strong', { text: head || 'The change was refused.' }),
          lines.length ? h('ul', null, lines.map((l) => h('li', { text: l }))) : null);
        box.hidden = false;
      }
    }
    if (first) first.focus();
    else if (box && !box.hidden) box.scrollIntoView({ block: 'nearest' });
  };

  // Editing a marked field removes its mark (a select or checkbox: choosing another value).
  const unmark = (ev) => {
    const field = ev.target.closest && ev.target.closest('.field.invalid');
    if (!field) return;
    field.classList.remove('invalid');
    $$('.field-error', field).forEach((e) => e.remove());
    $$('[aria-invalid]', field).forEach((e) => e.removeAttribute('aria-invalid'));
    // The summary goes too once every marked field was edited (and nothing else was wrong).
    const form = field.closest('form');
    const box = form && $('.form-error', form);
    if (box && box.dataset.unplaced === '0' && !$('.field.invalid', form)) box.hidden = true;
  };
  document.addEventListener('input', unmark);
  document.addEventListener('change', unmark);

  /** Shows an API error in a form: problems next to fields, else the message. */
  App.showError = (form, err) => {
    if (err.problems && err.problems.length) App.showProblems(form, err.problems);
    else App.showProblems(form, [{ path: '', message: err.message }], 'The change was refused.');
  };

  // ---------------------------------------------------------------- server-sent events

  /**
   * Subscribes to /api/v1/events with `params`; `handlers` maps event names (pairs, health,
   * message, skipped) to functions of the parsed data. Reconnects after errors; a logged-out
   * session goes to the login page.
   */
  App.eventCounts = {};
  App.events = (params, handlers) => {
    const qs = new URLSearchParams(params || {}).toString();
    const url = '/api/v1/events' + (qs ? '?' + qs : '');
    let es = null;
    let closed = false;
    let timer = null;
    const open = () => {
      es = new EventSource(url);
      for (const [name, fn] of Object.entries(handlers)) {
        es.addEventListener(name, (ev) => {
          App.eventCounts[name] = (App.eventCounts[name] || 0) + 1;
          let data;
          try { data = JSON.parse(ev.data); } catch (_) { return; }
          fn(data);
        });
      }
      es.onopen = () => App.setLive(true);
      es.onerror = () => {
        App.setLive(false);
        if (es.readyState === EventSource.CLOSED && !closed) {
          // Refused (logged out, pair deleted) or the server went away: find out which.
          es.close();
          clearTimeout(timer);
          timer = setTimeout(async () => {
            try { await App.api('GET', '/api/v1/session'); } catch (_) { /* redirects on 401 */ }
            if (!closed && !leaving) open();
          }, 3000);
        }
      };
    };
    open();
    // A page kept in the back/forward cache must not hold its stream: browsers allow only six
    // connections per origin over HTTP/1.1, and cached pages would use them all up.
    window.addEventListener('pagehide', () => { clearTimeout(timer); if (es) es.close(); });
    window.addEventListener('pageshow', (ev) => { if (ev.persisted && !closed) open(); });
    return { close() { closed = true; clearTimeout(timer); if (es) es.close(); } };
  };
  App.setLive = (on) => {
    const el = $('#live');
    if (!el) return;
    el.hidden = false;
    el.classList.toggle('on', on);
    el.classList.toggle('off', !on);
    el.textContent = on ? 'Live' : 'Reconnecting…';
    el.title = on ? 'Receiving live updates' : 'The live connection was interrupted; reconnecting';
  };

  // ---------------------------------------------------------------- the other portal

  const PORTAL_NAMES = { ops: 'Operations Portal', mgmt: 'Management Dashboard' };
  const DEFAULT_PORTS = { ops: 8080, mgmt: 8081 };
  const portOf = (addr) => {
    const m = /:(\d+)$/.exec(addr || '');
    return m ? Number(m[1]) : null;
  };
  /**
   * The URL of the other portal: same scheme and host, the other port in force (the API
   * reports the addresses in force, command-line overrides included).
   */
  async function otherPortalUrl(portal) {
    const other = portal === 'ops' ? 'mgmt' : 'ops';
    let port = DEFAULT_PORTS[other];
    try {
      const r = await App.api('GET', '/api/v1/settings', undefined, { noRedirect: true });
      port = portOf(r[other + '_listen_active']) || port;
    } catch (_) { /* keep the default */ }
    const u = new URL(location.href);
    u.port = String(port);
    u.pathname = '/';
    u.search = '';
    u.hash = '';
    return u.toString();
  }
  App.otherPortal = null; // resolved URL, for pages that link to the other portal's pages

  // ---------------------------------------------------------------- page start

  function renderUser(s) {
    const box = $('#userbox');
    if (!box) return;
    const portal = document.body.dataset.portal;
    const other = portal === 'ops' ? 'mgmt' : 'ops';
    const otherLink = h('a', { class: 'other-portal', id: 'other-portal', hidden: true, text: PORTAL_NAMES[other] + ' ↗' });
    const logout = h('button', { type: 'button', class: 'linkbutton', id: 'logout', text: 'Log out' });
    logout.addEventListener('click', async () => {
      try { await App.api('DELETE', '/api/v1/session', undefined, { noRedirect: true }); } catch (_) { /* gone already */ }
      leaving = false;
      go('/login');
    });
    replace(box,
      h('span', { id: 'live', class: 'live', hidden: true }),
      otherLink,
      h('a', { class: 'who', href: '/password?next=' + encodeURIComponent(here()), title: 'Change your password' },
        h('span', { id: 'username', text: s.username }),
        h('span', { class: 'role', id: 'role', text: s.role })),
      logout);
    App.otherPortalReady = otherPortalUrl(portal).then((url) => {
      otherLink.href = url;
      otherLink.hidden = false;
      App.otherPortal = url;
      return url;
    });
  }

  function markNav() {
    const page = document.body.dataset.nav;
    $$('.mainnav a').forEach((a) => {
      if (a.dataset.nav === page) a.setAttribute('aria-current', 'page');
    });
  }

  /**
   * Starts a page: checks the session (login or password page when needed), remembers the
   * CSRF token, fills in the header. Resolves with the session; never resolves when the page
   * is being left.
   */
  App.start = async () => {
    markNav();
    let s;
    try {
      s = await App.api('GET', '/api/v1/session', undefined, { noRedirect: true });
    } catch (e) {
      if (e.status === 401) { App.goLogin(); return new Promise(() => {}); }
      App.fatal('Cannot load the session: ' + e.message);
      throw e;
    }
    if (s.must_change_password) { App.goPassword(); return new Promise(() => {}); }
    csrf = s.csrf_token;
    App.session = s;
    document.body.dataset.role = s.role;
    renderUser(s);
    if (!RANK[s.role]) {
      App.fatal(`The ${s.role} role is for relaying between ioBufferPro instances and cannot use the portals.`);
      return new Promise(() => {});
    }
    return s;
  };

  /** Replaces the page content with an error. */
  App.fatal = (message) => {
    const main = $('#main');
    if (main) replace(main, h('div', { class: 'notice error', role: 'alert', text: message }));
  };

  /** A message for pages that need a role the user lacks. */
  App.needRole = (container, role, what) => {
    replace(container, h('div', { class: 'notice info', id: 'role-needed', role: 'status' },
      h('strong', { text: `${role === 'admin' ? 'Admins' : 'Operators'} only. ` }),
      `${what} needs the ${role} role; you are logged in as ${App.session.username} (${App.session.role}).`));
  };

  // ---------------------------------------------------------------- login page

  async function loginPage() {
    const form = $('#login-form');
    const next = App.nextParam();
    // Already logged in: go on.
    try {
      const s = await App.api('GET', '/api/v1/session', undefined, { noRedirect: true });
      if (s.must_change_password) { go('/password?next=' + encodeURIComponent(next)); return; }
      go(next);
      return;
    } catch (_) { /* not logged in: show the form */ }
    if (new URLSearchParams(location.search).has('next') && next !== '/') {
      const box = $('.form-error', form);
      replace(box, 'Please log in to continue.');
      box.className = 'notice info form-error';
      box.hidden = false;
    }
    $('#username').focus();
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const username = $('#username').value.trim();
      const password = $('#password').value;
      const problems = [];
      if (!username) problems.push({ path: 'username', message: 'Enter your user name.' });
      if (!password) problems.push({ path: 'password', message: 'Enter your password.' });
      if (problems.length) { App.showProblems(form, problems); return; }
      const btn = $('button[type=submit]', form);
      btn.disabled = true;
      try {
        const s = await App.api('POST', '/api/v1/session', { username, password }, { noRedirect: true });
        if (s.must_change_password) go('/password?next=' + encodeURIComponent(next));
        else go(next);
      } catch (e) {
        btn.disabled = false;
        $('.form-error', form).className = 'notice error form-error';
        App.showProblems(form, [], e.status === 401 ? 'Wrong user name or password.' : e.message);
        $('#password').select();
      }
    });
  }

  // ---------------------------------------------------------------- password page

  async function passwordPage() {
    const form = $('#password-form');
    const next = App.nextParam();
    let s;
    try {
      s = await App.api('GET', '/api/v1/session', undefined, { noRedirect: true });
    } catch (e) {
      if (e.status === 401) { go('/login?next=' + encodeURIComponent('/password?next=' + next)); return; }
      App.showProblems(form, [], e.message);
      return;
    }
    csrf = s.csrf_token;
    $('#pw-user').textContent = s.username;
    if (s.must_change_password) {
      $('#pw-lead').textContent = s.username === 'admin'
        ? 'This is the first login with the password ioBufferPro generated at its first start. Choose your own password to continue.'
        : 'An administrator set this password for you. Choose your own password to continue.';
      $('#pw-cancel').hidden = true;
    } else {
      $('#pw-cancel').href = next;
    }
    $('#current').focus();
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const current = $('#current').value;
      const fresh = $('#new').value;
      const again = $('#again').value;
      const problems = [];
      if (!current) problems.push({ path: 'current_password', message: 'Enter your current password.' });
      if (fresh.length < 10) problems.push({ path: 'new_password', message: 'Use at least 10 characters.' });
      else if (fresh.toLowerCase() === s.username.toLowerCase()) problems.push({ path: 'new_password', message: 'The password must differ from the user name.' });
      else if (fresh === current) problems.push({ path: 'new_password', message: 'The new password must differ from the current one.' });
      if (fresh !== again) problems.push({ path: 'again', message: 'The two new passwords differ.' });
      if (problems.length) { App.showProblems(form, problems); return; }
      const btn = $('button[type=submit]', form);
      btn.disabled = true;
      try {
        await App.api('POST', '/api/v1/session/password', { current_password: current, new_password: fresh }, { noRedirect: true });
        go(next);
      } catch (e) {
        btn.disabled = false;
        if (e.status === 401) { go('/login?next=' + encodeURIComponent(next)); return; }
        const path = /current password/i.test(e.message) ? 'current_password' : 'new_password';
        App.showProblems(form, [{ path, message: e.message }]);
      }
    });
  }

  // ---------------------------------------------------------------- boot

  // Unexpected script errors: recorded (tests print them) and shown, never silent.
  App.errors = [];
  const scriptError = (message) => {
    App.errors.push(message);
    if (document.body) App.notify(`Unexpected error in the page: ${message}`, 'error');
  };
  window.addEventListener('error', (ev) => scriptError(ev.message));
  window.addEventListener('unhandledrejection', (ev) => {
    const r = ev.reason;
    if (r instanceof ApiError) { if (!leaving) App.notify(r.message, 'error'); return; }
    scriptError(r && r.message ? r.message : String(r));
  });

  App.pages = {};
  /** Registers the function that runs a page (by the body's data-page). */
  App.page = (name, fn) => { App.pages[name] = fn; };
  App.page('login', loginPage);
  App.page('password', passwordPage);

  document.addEventListener('DOMContentLoaded', () => {
    // Page scripts (ops.js, mgmt.js) are deferred too and register their pages first.
    const name = document.body.dataset.page;
    const fn = App.pages[name];
    if (fn) {
      Promise.resolve().then(fn).catch((e) => {
        if (leaving) return;
        console.error(e);
        if (e instanceof ApiError) App.notify(e.message, 'error');
        else scriptError(e.message || String(e));
      });
    }
  });
})();
