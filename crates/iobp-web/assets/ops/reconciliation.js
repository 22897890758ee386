// The Accounting panel of a pair's page: what this instance counted, added up against the
// buffer (GET /api/v1/pairs/{id}/reconciliation). received + the backlog it started with =
// delivered + parked + undeliverable + lost + pending + in flight; refused messages stand
// beside the sum — they were never accepted, the sender kept them. Any discrepancy (in a
// settled reading: under traffic a reading can fall between a store and its count) is shown
// in red: a message the instance cannot account for.

import { $, h, replace } from '../common/dom.js';
import { api } from '../common/api.js';
import * as fmt from '../common/format.js';
import { pairUrl } from './pair-actions.js';

/** How often the panel reads the accounting again. */
const EVERY_MS = 2000;

const term = (id, label, n) => h('span', { class: 'acc-term', id: `acc-${id}` },
  h('strong', { class: 'num', text: fmt.num(n) }), ' ', label);

/** Renders reading `r` into `#accounting-body`. */
export function renderAccounting(r) {
  const left = [term('received', 'received', r.received)];
  if (r.backlog_at_start) left.push(' + ', term('backlog', 'buffered at start', r.backlog_at_start));
  if (r.returned_by_heal) left.push(' + ', term('returned', 'returned by a buffer heal', r.returned_by_heal));
  const right = [
    term('delivered', 'delivered', r.delivered),
    ' + ', term('pending', 'pending', r.pending),
    ' + ', term('in-flight', 'in flight', r.in_flight),
    ' + ', term('parked', 'parked', r.parked),
    ' + ', term('undeliverable', 'undeliverable', r.undeliverable),
  ];
  if (r.lost) right.push(' + ', term('lost', 'lost to damage', r.lost));
  const diffs = [
    ['stored_difference', 'received vs. stored in the buffer'],
    ['done_difference', 'done in the buffer vs. delivered, parked, undeliverable and lost'],
    ['buffer_difference', 'buffer total vs. removed, done, pending and in flight'],
    ['pair_difference', 'the sum above'],
  ].filter(([k]) => r[k] !== 0);
  let verdict;
  if (r.discrepancy > 0) {
    verdict = h('div', { class: 'notice error', id: 'acc-discrepancy', role: 'alert' },
      h('strong', { text: `${fmt.num(r.discrepancy)} message(s) not accounted for. ` }),
      diffs.length ? diffs.map(([k, what]) => `${what}: ${r[k] > 0 ? '+' : ''}${r[k]}. `) : 'In the last settled reading.');
  } else if (r.settled) {
    verdict = h('p', { class: 'muted small', id: 'acc-exact', text: '✓ Every message is accounted for.' });
  } else {
    verdict = h('p', { class: 'muted small', id: 'acc-moving', text: 'Messages are moving: the figures add up once the pair is still for a moment.' });
  }
  replace($('#accounting-body'),
    h('p', { class: 'acc-sum', id: 'acc-sum' }, ...left, ' = ', ...right),
    h('p', { class: 'muted small', id: 'acc-refused' },
      term('refused', 'refused at the source', r.refused),
      ' — never accepted (the sender kept them), so not part of the sum.'),
    verdict);
}

/** The Accounting panel of pair `pairId`: `start()` reads it now and every few seconds. */
export function accountingPanel(pairId) {
  let timer = null;
  const load = async () => {
    try {
      renderAccounting(await api('GET', `${pairUrl(pairId)}/reconciliation`));
    } catch (e) {
      replace($('#accounting-body'), h('p', { class: 'muted small', text: `Accounting unavailable: ${e.message}` }));
      if (e.status === 404 && timer) { clearInterval(timer); timer = null; }
    }
  };
  return {
    start() {
      load();
      timer = setInterval(load, EVERY_MS);
    },
  };
}
