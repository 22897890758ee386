// The Live View of a pair's page: the messages as they are received (Source view) or
// delivered (Destination view), newest first, with pause, clear, and a note of what was not
// shown (the server sends at most 100 per second).

import { $, h, replace } from '../common/dom.js';
import * as fmt from '../common/format.js';

/** Entries kept (and shown) per side. */
const FEED_MAX = 200;

/**
 * Sets up the Live View; returns the feed: `add(entry, live)` for the stream's messages,
 * `skipped` and `note()` for what was not shown, `seed(side, recent)` and `render()`.
 */
export function liveView() {
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
          h('span', { text: fmt.clock(e.at_ms) }),
          h('span', { text: `${fmt.num(e.length)} bytes` }),
          e.peer ? h('span', { text: `${e.side === 'source' ? 'from' : 'to'} ${e.peer}` }) : null,
          e.summary ? h('span', { class: 'summary', dataset: { summary: '' }, title: 'ASTM E1394 record types and sample id', text: e.summary }) : null),
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
      if (this.skipped) parts.push(`${fmt.num(this.skipped)} not shown (over 100 per second)`);
      $('#feed-note').textContent = parts.join(' · ');
    },
    /**
     * Merges what the server kept of the recent history (GET …/live, newest first) with what
     * the stream brought meanwhile, and shows it.
     */
    seed(side, recent) {
      const merged = [...this.entries[side]];
      for (const e of recent) {
        const k = this.key(e);
        if (!this.keys.has(k)) { this.keys.add(k); merged.push(e); }
      }
      merged.sort((a, b) => b.at_ms - a.at_ms || (b.seq || 0) - (a.seq || 0));
      this.entries[side] = merged.slice(0, FEED_MAX);
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
  return feed;
}
