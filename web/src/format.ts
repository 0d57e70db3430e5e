// How values read in the UI: times, durations, sizes. (What a status means
// for its protocol is in protocols.ts, from the hub's catalogue.)

const pad = (n: number, w = 2) => String(n).padStart(w, '0');

/** `19:36:50.123` in local time, from microseconds since the epoch. */
export function clock(tsUs: number): string {
  const d = new Date(Math.floor(tsUs / 1000));
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

/** The full local date and time with microseconds, for tooltips. */
export function fullTime(tsUs: number): string {
  const d = new Date(Math.floor(tsUs / 1000));
  const us = Math.floor(tsUs % 1_000_000);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(us, 6)}`;
}

export function duration(us: number | null | undefined): string {
  if (us === null || us === undefined) return '';
  if (us < 1000) return `${us} µs`;
  if (us < 1_000_000) return `${(us / 1000).toFixed(us < 10_000 ? 2 : 1)} ms`;
  return `${(us / 1_000_000).toFixed(2)} s`;
}

export function bytes(n: number | null | undefined): string {
  if (n === null || n === undefined) return '';
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[u]}`;
}

export function count(n: number): string {
  return n.toLocaleString('en-US');
}

export function rate(perSecond: number): string {
  if (perSecond >= 100) return `${Math.round(perSecond)}/s`;
  if (perSecond >= 1) return `${perSecond.toFixed(1)}/s`;
  return `${perSecond.toFixed(2)}/s`;
}
