// The REST API client: the CSRF token, JSON errors with the server's field problems, and
// the way to the login and password pages when the session says so.

import { diagnostics } from './diagnostics.js';

/** A failed API call: the HTTP status (0: unreachable), the server's message and problems. */
export class ApiError extends Error {
  constructor(status, message, problems) {
    super(message);
    this.status = status;
    /** The server's field problems: [{path, message}], `path` a JSON path of the request. */
    this.problems = problems || [];
  }
}

let csrf = '';

/** Remembers the session's CSRF token, sent with every state-changing request. */
export function setCsrf(token) { csrf = token; }

/** This page's path, query and fragment. */
export function here() { return location.pathname + location.search + location.hash; }

/**
 * Where to go after logging in: only a page of this portal. The URL parser decides, as the
 * browser will when it navigates (it drops tabs and newlines, treats \\ as /), so
 * "/\t/evil.example" cannot pass for a path.
 */
export function safeNext(n) {
  if (typeof n !== 'string' || !n.startsWith('/')) return '/';
  let u;
  try { u = new URL(n, location.origin); } catch (_) { return '/'; }
  if (u.origin !== location.origin) return '/';
  if (u.pathname.startsWith('/login') || u.pathname.startsWith('/password')) return '/';
  return u.pathname + u.search + u.hash;
}
diagnostics.safeNext = safeNext;

/** The page to return to, from this page's `next` parameter. */
export const nextParam = () => safeNext(new URLSearchParams(location.search).get('next') || '/');

let leaving = false;

/** Whether the page is being left (errors from then on are not worth showing). */
export const isLeaving = () => leaving;

/** Navigates away, once: later calls are ignored. */
export function go(url) {
  if (leaving) return;
  leaving = true;
  location.assign(url);
}

/** Navigates away even when a navigation was started already (logging out). */
export function forceGo(url) {
  leaving = false;
  go(url);
}

export const goLogin = () => go('/login?next=' + encodeURIComponent(here()));
export const goPassword = () => go('/password?next=' + encodeURIComponent(here()));

/**
 * Calls the API. Sends the CSRF token with every state-changing request; a logged-out
 * session goes to the login page, a password that must be changed to the password page
 * (unless `opts.noRedirect`). Throws ApiError with the server's message and field problems.
 */
export async function api(method, path, body, opts = {}) {
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
      if (res.status === 401) goLogin();
      else if (res.status === 403 && /password must be changed/i.test(message)) goPassword();
    }
    throw err;
  }
  return data;
}
