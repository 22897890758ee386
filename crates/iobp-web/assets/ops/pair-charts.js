// The two charts of a pair's page: throughput (received and sent per second) and buffer
// depth (undelivered messages) over the last two minutes, from successive counter snapshots.

import { $ } from '../common/dom.js';
import { LineChart, RateTracker, chartColor } from '../common/chart.js';
import * as fmt from '../common/format.js';
import { undelivered } from './pair-text.js';

/** Sets up the charts; returns `sample(counts)`, which adds a snapshot of the pair's counts. */
export function pairCharts() {
  const thr = new LineChart($('#chart-throughput'), {
    unit: 'msg/s',
    series: [
      { key: 'received', label: 'Received', color: chartColor('--chart-received', '#2563eb') },
      { key: 'sent', label: 'Sent', color: chartColor('--chart-sent', '#7c3aed') },
    ],
  });
  const depth = new LineChart($('#chart-depth'), {
    unit: 'messages',
    integer: true,
    series: [{ key: 'depth', label: 'Undelivered', color: chartColor('--chart-depth', '#0f766e') }],
  });
  const rates = new RateTracker();
  return function sample(c) {
    const now = Date.now();
    const r = rates.next(now, { received: c.received, sent: c.sent });
    if (r) {
      thr.push(now, r);
      $('#rate-in').textContent = `${fmt.num1(r.received)} msg/s`;
      $('#rate-out').textContent = `${fmt.num1(r.sent)} msg/s`;
    }
    depth.push(now, { depth: undelivered(c) });
    $('#depth-now').textContent = fmt.num(undelivered(c));
  };
}
