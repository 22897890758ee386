// ioBufferPro portals: a small canvas line chart for live series over a sliding time window
// (throughput and buffer depth over the last two minutes). No dependencies.
//
//   const c = new LineChart(canvas, {
//     series: [{ key: 'received', label: 'Received', color: '#2563eb' }, ...],
//     windowMs: 120000, unit: 'msg/s' });
//   c.push(Date.now(), { received: 12.5, sent: 12 });

/** Rounds a maximum up to a "nice" axis limit (1, 2, 2.5, 5 × 10^n). */
function niceMax(v) {
  if (!(v > 0)) return 1;
  const exp = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) {
    if (v <= m * exp) return m * exp;
  }
  return 10 * exp;
}

function fmtAxis(v) {
  if (v >= 1e6) return (v / 1e6).toFixed(v % 1e6 ? 1 : 0) + 'M';
  if (v >= 1e4) return (v / 1e3).toFixed(v % 1e3 ? 1 : 0) + 'k';
  if (v >= 10 || Number.isInteger(v)) return String(Math.round(v));
  return String(Number(v.toFixed(2)));
}

export class LineChart {
  constructor(canvas, opts) {
    this.canvas = canvas;
    this.series = opts.series;
    this.windowMs = opts.windowMs || 120000;
    this.unit = opts.unit || '';
    this.integer = !!opts.integer; // whole numbers: ticks on whole numbers
    this.points = []; // {t, v: {key: value}}
    this.pending = false;
    const css = getComputedStyle(canvas);
    this.colors = {
      grid: '#e3e8ee',
      axis: '#6b7785',
      text: '#566372',
      font: css.fontFamily || 'system-ui, sans-serif',
    };
    if (typeof ResizeObserver !== 'undefined') {
      this.ro = new ResizeObserver(() => this.draw());
      this.ro.observe(canvas);
    } else {
      window.addEventListener('resize', () => this.draw());
    }
    this.timer = setInterval(() => this.draw(), 1000); // keep the time axis moving
    this.draw();
  }

  /** Adds a sample at time `t` (ms); drops samples older than the window. */
  push(t, values) {
    this.points.push({ t, v: values });
    const cutoff = t - this.windowMs - 5000;
    while (this.points.length > 2 && this.points[0].t < cutoff) this.points.shift();
    this.draw();
  }

  /** The latest value of a series. */
  latest(key) {
    const p = this.points[this.points.length - 1];
    return p ? p.v[key] : undefined;
  }

  draw() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      this.paint();
    });
  }

  paint() {
    const canvas = this.canvas;
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth;
    const hgt = canvas.clientHeight;
    if (!w || !hgt) return;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(hgt * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(hgt * dpr);
    }
    const ctx = canvas.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, hgt);
    ctx.font = `11px ${this.colors.font}`;

    const now = Date.now();
    const t0 = now - this.windowMs;
    const visible = this.points.filter((p) => p.t >= t0 - 2000);
    let max = 0;
    for (const p of visible) {
      for (const s of this.series) {
        const v = p.v[s.key];
        if (typeof v === 'number' && v > max) max = v;
      }
    }
    const ymax = this.integer ? Math.max(4, Math.ceil(niceMax(max) / 4) * 4) : niceMax(max);
    const left = Math.max(34, ctx.measureText(fmtAxis(ymax)).width + 12);
    const right = 8;
    const top = 8;
    const bottom = 20;
    const pw = w - left - right;
    const ph = hgt - top - bottom;
    const x = (t) => left + ((t - t0) / this.windowMs) * pw;
    const y = (v) => top + ph - (v / ymax) * ph;

    // Grid and y labels.
    ctx.strokeStyle = this.colors.grid;
    ctx.fillStyle = this.colors.text;
    ctx.lineWidth = 1;
    ctx.textAlign = 'right';
    ctx.textBaseline = 'middle';
    for (let i = 0; i <= 4; i++) {
      const v = (ymax / 4) * i;
      const yy = Math.round(y(v)) + 0.5;
      ctx.beginPath();
      ctx.moveTo(left, yy);
      ctx.lineTo(w - right, yy);
      ctx.stroke();
      ctx.fillText(fmtAxis(v), left - 6, yy);
    }
    // X labels: every 30 s.
    ctx.textAlign = 'center';
    ctx.textBaseline = 'top';
    for (let s = 0; s <= this.windowMs / 1000; s += 30) {
      const xx = x(now - s * 1000);
      const label = s === 0 ? 'now' : `-${s >= 60 && s % 60 === 0 ? s / 60 + ' min' : s + ' s'}`;
      ctx.fillText(label, Math.min(Math.max(xx, left + 14), w - right - 14), top + ph + 5);
    }
    if (this.unit) {
      ctx.textAlign = 'left';
      ctx.textBaseline = 'top';
      ctx.fillText(this.unit, left + 4, top + 1);
    }

    // Lines.
    ctx.save();
    ctx.beginPath();
    ctx.rect(left, top - 2, pw, ph + 4);
    ctx.clip();
    this.series.forEach((s, i) => {
      ctx.strokeStyle = s.color;
      // Earlier series wider, so that equal values (received = sent) both stay visible.
      ctx.lineWidth = this.series.length > 1 && i === 0 ? 4 : 2;
      ctx.lineJoin = 'round';
      ctx.beginPath();
      let started = false;
      for (const p of visible) {
        const v = p.v[s.key];
        if (typeof v !== 'number') { started = false; continue; }
        const xx = x(p.t);
        const yy = y(v);
        if (!started) { ctx.moveTo(xx, yy); started = true; } else ctx.lineTo(xx, yy);
      }
      ctx.stroke();
    });
    ctx.restore();

    if (visible.length === 0) {
      ctx.fillStyle = this.colors.text;
      ctx.textAlign = 'center';
      ctx.textBaseline = 'middle';
      ctx.fillText('Waiting for data…', left + pw / 2, top + ph / 2);
    }
    // Text alternative for screen readers.
    const last = visible[visible.length - 1];
    if (last) {
      canvas.setAttribute('aria-label', this.series
        .map((s) => `${s.label}: ${typeof last.v[s.key] === 'number' ? fmtAxis(last.v[s.key]) : '–'} ${this.unit}`)
        .join(', '));
    }
  }

  destroy() {
    clearInterval(this.timer);
    if (this.ro) this.ro.disconnect();
  }
}

/** Chart colours from the stylesheet's custom properties. */
export function chartColor(name, fallback) {
  const v = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  return v || fallback;
}

/**
 * Turns successive counter snapshots into per-second rates: `next(tMs, {a: count, ...})`
 * returns {a: rate, ...} (null for the first snapshot; counters that went down count as 0).
 */
export class RateTracker {
  constructor() { this.prev = null; }
  next(t, counters) {
    const prev = this.prev;
    this.prev = { t, c: counters };
    if (!prev || t <= prev.t) return null;
    const dt = (t - prev.t) / 1000;
    const out = {};
    for (const [k, v] of Object.entries(counters)) {
      const d = v - (prev.c[k] ?? v);
      out[k] = d > 0 ? d / dt : 0;
    }
    return out;
  }
}
