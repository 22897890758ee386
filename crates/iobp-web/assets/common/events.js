// Server-sent events from /api/v1/events, with reconnection, and the Live/Reconnecting
// marker in the page header.

import { $ } from './dom.js';
import { api, isLeaving } from './api.js';
import { diagnostics } from './diagnostics.js';

/** Shows whether the live stream is connected (the #live marker in the header). */
export function setLive(on) {
  const el = $('#live');
  if (!el) return;
  el.hidden = false;
  el.classList.toggle('on', on);
  el.classList.toggle('off', !on);
  el.textContent = on ? 'Live' : 'Reconnecting…';
  el.title = on ? 'Receiving live updates' : 'The live connection was interrupted; reconnecting';
}

/**
 * Subscribes to /api/v1/events with `params`; `handlers` maps event names (pairs, health,
 * message, skipped) to functions of the parsed data. Reconnects after errors; a logged-out
 * session goes to the login page. Returns {close()}.
 */
export function events(params, handlers) {
  const qs = new URLSearchParams(params || {}).toString();
  const url = '/api/v1/events' + (qs ? '?' + qs : '');
  let es = null;
  let closed = false;
  let timer = null;
  const open = () => {
    es = new EventSource(url);
    for (const [name, fn] of Object.entries(handlers)) {
      es.addEventListener(name, (ev) => {
        diagnostics.eventCounts[name] = (diagnostics.eventCounts[name] || 0) + 1;
        let data;
        try { data = JSON.parse(ev.data); } catch (_) { return; }
        fn(data);
      });
    }
    es.onopen = () => setLive(true);
    es.onerror = () => {
      setLive(false);
      if (es.readyState === EventSource.CLOSED && !closed) {
        // Refused (logged out, pair deleted) or the server went away: find out which.
        es.close();
        clearTimeout(timer);
        timer = setTimeout(async () => {
          try { await api('GET', '/api/v1/session'); } catch (_) { /* redirects on 401 */ }
          if (!closed && !isLeaving()) open();
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
}
