// Numbers, sizes, times and durations as the portals show them (the browser's locale for
// digit grouping; dates as YYYY-MM-DD HH:MM:SS in local time).

const nf = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
const nf1 = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });

export const num = (n) => (n === null || n === undefined ? '–' : nf.format(n));
export const num1 = (n) => (n === null || n === undefined ? '–' : nf1.format(n));

export function bytes(b) {
  if (b === null || b === undefined) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = b;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return (i === 0 ? nf.format(v) : nf1.format(v)) + ' ' + units[i];
}

export const pct = (p) => (p === null || p === undefined ? '–' : nf1.format(p) + ' %');

const pad = (n, w = 2) => String(n).padStart(w, '0');

/** Local date and time, `YYYY-MM-DD HH:MM:SS`. */
export function time(ms) {
  if (!ms) return '–';
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** Local time with milliseconds, for the live feed. */
export function clock(ms) {
  const d = new Date(ms);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

export function duration(ms) {
  if (ms === null || ms === undefined) return '–';
  let s = Math.floor(ms / 1000);
  if (s < 60) return `${s} s`;
  const d = Math.floor(s / 86400); s -= d * 86400;
  const hh = Math.floor(s / 3600); s -= hh * 3600;
  const mm = Math.floor(s / 60); s -= mm * 60;
  if (d > 0) return `${d} d ${hh} h ${mm} min`;
  if (hh > 0) return `${hh} h ${mm} min`;
  return `${mm} min ${s} s`;
}

export const ago = (ms) => duration(Math.max(0, Date.now() - ms)) + ' ago';
