// What starts every page of the portals: the session check (login or password page when
// needed), the CSRF token, the header (user, role, logout, link to the other portal), roles,
// and the capture of unexpected script errors, which are shown and recorded, never silent.
//
// A page's module runs its page with `runPage(async () => { const s = await start(); ... })`.

import { $, h, replace } from './dom.js';
import { ApiError, api, forceGo, goLogin, goPassword, here, isLeaving, setCsrf } from './api.js';
import { diagnostics } from './diagnostics.js';
import { notify } from './ui.js';

// ---------------------------------------------------------------- unexpected errors

function scriptError(message) {
  diagnostics.errors.push(message);
  if (document.body) notify(`Unexpected error in the page: ${message}`, 'error');
}
window.addEventListener('error', (ev) => scriptError(ev.message));
window.addEventListener('unhandledrejection', (ev) => {
  const r = ev.reason;
  if (r instanceof ApiError) { if (!isLeaving()) notify(r.message, 'error'); return; }
  scriptError(r && r.message ? r.message : String(r));
});

/** Runs a page's function; its errors are shown (an API error as a notice), never lost. */
export function runPage(fn) {
  Promise.resolve().then(fn).catch((e) => {
    if (isLeaving()) return;
    console.error(e);
    if (e instanceof ApiError) notify(e.message, 'error');
    else scriptError(e.message || String(e));
  });
}

// ---------------------------------------------------------------- roles

const RANK = { viewer: 1, operator: 2, admin: 3 };
let session = null;

/** Whether the logged-in user has at least `role`. */
export const can = (role) => !!session && (RANK[session.role] || 0) >= RANK[role];

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
    const r = await api('GET', '/api/v1/settings', undefined, { noRedirect: true });
    port = portOf(r[other + '_listen_active']) || port;
  } catch (_) { /* keep the default */ }
  const u = new URL(location.href);
  u.port = String(port);
  u.pathname = '/';
  u.search = '';
  u.hash = '';
  return u.toString();
}

let otherPortal = null;

/** Resolves with the other portal's URL (once `start` resolved), for links to its pages. */
export const otherPortalReady = () => otherPortal;

// ---------------------------------------------------------------- page start

function renderUser(s) {
  const box = $('#userbox');
  if (!box) return;
  const portal = document.body.dataset.portal;
  const other = portal === 'ops' ? 'mgmt' : 'ops';
  const otherLink = h('a', { class: 'other-portal', id: 'other-portal', hidden: true, text: PORTAL_NAMES[other] + ' ↗' });
  const logout = h('button', { type: 'button', class: 'linkbutton', id: 'logout', text: 'Log out' });
  logout.addEventListener('click', async () => {
    try { await api('DELETE', '/api/v1/session', undefined, { noRedirect: true }); } catch (_) { /* gone already */ }
    forceGo('/login');
  });
  replace(box,
    h('span', { id: 'live', class: 'live', hidden: true }),
    otherLink,
    h('a', { class: 'who', href: '/password?next=' + encodeURIComponent(here()), title: 'Change your password' },
      h('span', { id: 'username', text: s.username }),
      h('span', { class: 'role', id: 'role', text: s.role })),
    logout);
  otherPortal = otherPortalUrl(portal).then((url) => {
    otherLink.href = url;
    otherLink.hidden = false;
    return url;
  });
}

/**
 * Starts a page: checks the session (login or password page when needed), remembers the
 * CSRF token, fills in the header. Resolves with the session; never resolves when the page
 * is being left.
 */
export async function start() {
  let s;
  try {
    s = await api('GET', '/api/v1/session', undefined, { noRedirect: true });
  } catch (e) {
    if (e.status === 401) { goLogin(); return new Promise(() => {}); }
    fatal('Cannot load the session: ' + e.message);
    throw e;
  }
  if (s.must_change_password) { goPassword(); return new Promise(() => {}); }
  setCsrf(s.csrf_token);
  session = s;
  document.body.dataset.role = s.role;
  renderUser(s);
  if (!RANK[s.role]) {
    fatal(`The ${s.role} role is for relaying between ioBufferPro instances and cannot use the portals.`);
    return new Promise(() => {});
  }
  return s;
}

/** Replaces the page content with an error. */
export function fatal(message) {
  const main = $('#main');
  if (main) replace(main, h('div', { class: 'notice error', role: 'alert', text: message }));
}

/** A message for pages that need a role the user lacks. */
export function needRole(container, role, what) {
  replace(container, h('div', { class: 'notice info', id: 'role-needed', role: 'status' },
    h('strong', { text: `${role === 'admin' ? 'Admins' : 'Operators'} only. ` }),
    `${what} needs the ${role} role; you are logged in as ${session.username} (${session.role}).`));
}
