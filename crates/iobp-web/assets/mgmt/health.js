// The Management Dashboard's System Health page (`/`): channel pairs by status, throughput,
// CPU, memory, disk, uptime and buffer storage with its 80 % warning, the active pairs
// (linked to their Operations Portal pages); updated live from the server's events.

import { $, h, replace, syncList } from '../common/dom.js';
import { api } from '../common/api.js';
import { LineChart, chartColor } from '../common/chart.js';
import { events } from '../common/events.js';
import * as fmt from '../common/format.js';
import { otherPortalReady, runPage, start } from '../common/page.js';
import { badge as statusBadge, label as statusLabel } from '../common/status.js';

const enc = encodeURIComponent;

function setMeter(el, fraction) {
  const f = Math.max(0, Math.min(1, fraction || 0));
  // Setting a style property from script is allowed by the Content-Security-Policy.
  el.firstElementChild.style.width = `${(f * 100).toFixed(1)}%`;
  el.classList.toggle('warn', f >= 0.8 && f < 1);
  el.classList.toggle('full', f >= 1);
  el.setAttribute('role', 'meter');
  el.setAttribute('aria-valuemin', '0');
  el.setAttribute('aria-valuemax', '100');
  el.setAttribute('aria-valuenow', String(Math.round(f * 100)));
}

runPage(async () => {
  await start();
  const chart = new LineChart($('#chart-total'), {
    unit: 'msg/s',
    series: [
      { key: 'received', label: 'Received', color: chartColor('--chart-received', '#2563eb') },
      { key: 'sent', label: 'Sent', color: chartColor('--chart-sent', '#7c3aed') },
    ],
  });
  let opsBase = null;
  otherPortalReady().then((url) => {
    opsBase = url;
    $('#ops-link').href = url;
    $('#ops-link').hidden = false;
    renderPairs(pairs, true);
  });

  function renderHealth(d) {
    const p = d.pairs;
    $('#h-pairs').textContent = fmt.num(p.total);
    $('#h-pairs-sub').textContent = `${fmt.num(p.running)} running · ${fmt.num(p.total - p.running)} stopped`;
    replace($('#h-pairs-colors'),
      [['green', p.green], ['yellow', p.yellow], ['red', p.red], ['white', p.total - p.running]]
        .filter(([, n]) => n > 0)
        .map(([c, n]) => h('span', { class: `badge badge-${c}`, dataset: { color: c }, text: `${n} ${statusLabel('channel', c)}` })));
    $('#h-rate').textContent = `${fmt.num1(d.received_per_s)} msg/s`;
    $('#h-rate-sub').textContent = `received · ${fmt.num1(d.sent_per_s)} msg/s sent`;
    chart.push(Date.now(), { received: d.received_per_s, sent: d.sent_per_s });
    $('#h-cpu').textContent = d.process_cpu_percent === null ? 'n/a' : fmt.pct(d.process_cpu_percent);
    $('#h-cpu-sub').textContent = `ioBufferPro, of one core · machine ${d.system_cpu_percent === null ? 'n/a' : fmt.pct(d.system_cpu_percent)} of all cores`;
    $('#h-mem').textContent = fmt.bytes(d.process_rss_bytes);
    const memTotal = d.system_memory_total_bytes;
    const memAvail = d.system_memory_available_bytes;
    if (memTotal) {
      setMeter($('#h-mem-meter'), (memTotal - memAvail) / memTotal);
      $('#h-mem-sub').textContent = `ioBufferPro resident · machine ${fmt.bytes(memTotal - memAvail)} of ${fmt.bytes(memTotal)} in use`;
    } else {
      $('#h-mem-sub').textContent = 'ioBufferPro resident memory';
    }
    if (d.disk_total_bytes) {
      $('#h-disk').textContent = fmt.bytes(d.disk_free_bytes);
      setMeter($('#h-disk-meter'), (d.disk_total_bytes - d.disk_free_bytes) / d.disk_total_bytes);
      $('#h-disk-sub').textContent = `free of ${fmt.bytes(d.disk_total_bytes)} on the data directory's file system`;
    } else {
      $('#h-disk').textContent = 'n/a';
    }
    $('#h-uptime').textContent = fmt.duration(d.uptime_s * 1000);
    $('#h-version').textContent = d.version;
    // The limit in force: max_storage_mb, or the disk's room where that is smaller.
    const limit = d.storage_effective_limit_bytes || d.storage_limit_bytes;
    const frac = limit ? d.storage_used_bytes / limit : 0;
    $('#h-storage').textContent = `${fmt.bytes(d.storage_used_bytes)} of ${fmt.bytes(limit)}`;
    setMeter($('#h-storage-meter'), frac);
    $('#h-storage-sub').textContent = d.storage_disk_bound
      ? `${fmt.num1(frac * 100)} % of the room left on the disk (less than max_storage_mb) used by the buffers`
      : `${fmt.num1(frac * 100)} % of max_storage_mb used by the buffers`;
    $('#h-datadir').textContent = d.data_dir;
    const warn = $('#storage-warning');
    warn.hidden = !d.storage_warning;
    if (d.storage_warning) {
      const fix = d.storage_disk_bound
        ? 'The disk holding the data directory is the limit: free space on it, or check for destinations that are down.'
        : 'Check for destinations that are down, or raise max_storage_mb in Settings.';
      warn.textContent = frac >= 0.95
        ? `Buffer storage is full (${fmt.bytes(d.storage_used_bytes)} of ${fmt.bytes(limit)}${d.storage_disk_bound ? ', bounded by the disk' : ''}): senders are held back and UDP datagrams refused; delivery goes on and frees space. ${fix}`
        : `Buffer storage is above 80 % (${fmt.num1(frac * 100)} % of ${fmt.bytes(limit)}${d.storage_disk_bound ? ', bounded by the disk' : ''}). ${fix}`;
    }
    $('#health-sub').textContent = `ioBufferPro ${d.version} · up ${fmt.duration(d.uptime_s * 1000)} · updated ${fmt.clock(Date.now()).slice(0, 8)}`;
  }

  let pairs = [];
  function renderPairs(list, force) {
    pairs = list;
    const box = $('#health-pairs');
    if (!list.length) {
      replace(box, h('div', { class: 'empty', text: 'No channel pairs are configured.' }));
      return;
    }
    let tbody = $('tbody', box);
    if (!tbody || force) {
      tbody = h('tbody');
      replace(box, h('div', { class: 'table-wrap' }, h('table', { class: 'stack', id: 'health-pairs-table' },
        h('thead', null, h('tr', null, ['Channel pair', 'Channel', 'Source', 'Buffer', 'Destination', 'Received', 'Sent', 'Undelivered'].map((t) => h('th', { text: t })))),
        tbody)));
    }
    const sorted = [...list].sort((a, b) => a.name.localeCompare(b.name) || a.id.localeCompare(b.id));
    syncList(tbody, sorted, (p) => p.id, (p) => JSON.stringify([p, opsBase]), (p) => {
      const s = p.status;
      const c = s.counts;
      const badge = (kind, color, title, which) => {
        const b = statusBadge(kind, color, title);
        b.dataset.indicator = which;
        return b;
      };
      return h('tr', { dataset: { pairId: p.id } },
        h('td', { 'data-label': 'Channel pair' },
          opsBase ? h('a', { href: new URL(`/pairs/${enc(p.id)}`, opsBase).toString(), text: p.name }) : h('span', { text: p.name }),
          h('div', { class: 'sub mono', text: p.id })),
        h('td', { 'data-label': 'Channel' }, badge('channel', s.channel, undefined, 'channel')),
        h('td', { 'data-label': 'Source' }, badge('connection', s.source.status, s.source.detail, 'source')),
        h('td', { 'data-label': 'Buffer' }, badge('buffer', s.buffer, undefined, 'buffer')),
        h('td', { 'data-label': 'Destination' }, badge('connection', s.destination.status, s.destination.detail, 'destination')),
        h('td', { class: 'num', 'data-label': 'Received', text: fmt.num(c.received) }),
        h('td', { class: 'num', 'data-label': 'Sent', text: fmt.num(c.sent) }),
        h('td', { class: 'num', 'data-label': 'Undelivered', text: fmt.num(c.pending + c.in_flight) }));
    });
    const running = list.filter((p) => p.status.channel !== 'white').length;
    $('#h-pairs-note').textContent = `${running} of ${list.length} running`;
  }

  const [health, list] = await Promise.all([api('GET', '/api/v1/health'), api('GET', '/api/v1/pairs')]);
  renderHealth(health);
  renderPairs(list.map(({ id, name, enabled, status }) => ({ id, name, enabled, status })));
  events({ health: 'true' }, { health: renderHealth, pairs: (ps) => renderPairs(ps) });
});
