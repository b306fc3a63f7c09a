// French (or English) display of numbers and dates, always in the city's time zone.
import { locale } from './i18n.js';

export let TZ = 'Europe/Paris';
export function setTimeZone(tz) { TZ = tz; }

const cache = new Map();
function nf(opts) {
  const key = locale() + JSON.stringify(opts);
  if (!cache.has(key)) cache.set(key, new Intl.NumberFormat(locale(), opts));
  return cache.get(key);
}

export function num(v, digits = 1) {
  if (v === null || v === undefined || Number.isNaN(v)) return '—';
  return nf({ maximumFractionDigits: digits }).format(v);
}

export function pct(v, digits = 1) {
  if (v === null || v === undefined) return '—';
  return nf({ style: 'percent', maximumFractionDigits: digits }).format(v);
}

export function euros(cents) {
  if (cents === null || cents === undefined) return '—';
  return nf({ style: 'currency', currency: 'EUR' }).format(cents / 100);
}

function df(opts) {
  const key = 'd' + locale() + TZ + JSON.stringify(opts);
  if (!cache.has(key)) cache.set(key, new Intl.DateTimeFormat(locale(), { timeZone: TZ, ...opts }));
  return cache.get(key);
}

const DT = { day: '2-digit', month: '2-digit', year: 'numeric', hour: '2-digit', minute: '2-digit' };

// 14/05/2024 10:42 (no comma, whatever the locale's habit)
export function dateTime(iso, withZone = false) {
  if (!iso) return '—';
  const d = new Date(iso);
  const s = df(withZone ? { ...DT, timeZoneName: 'short' } : DT).format(d);
  return s.replace(',', '');
}

export function date(iso) {
  if (!iso) return '—';
  return df({ day: '2-digit', month: '2-digit', year: 'numeric' }).format(new Date(iso));
}

export function time(iso) {
  return df({ hour: '2-digit', minute: '2-digit' }).format(new Date(iso));
}

// YYYY-MM-DD of an instant in the city's time zone
export function isoDay(d = new Date()) {
  return new Intl.DateTimeFormat('en-CA', { timeZone: TZ, year: 'numeric', month: '2-digit', day: '2-digit' }).format(d);
}

export function addDays(day, n) {
  const [y, m, dd] = day.split('-').map(Number);
  const d = new Date(Date.UTC(y, m - 1, dd + n));
  return d.toISOString().slice(0, 10);
}

export function daysBetween(a, b) {
  const p = (s) => { const [y, m, d] = s.split('-').map(Number); return Date.UTC(y, m - 1, d); };
  return Math.round((p(b) - p(a)) / 86400000);
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined) return '—';
  if (seconds < 3600) return `${num(seconds / 60, 0)} min`;
  return `${num(seconds / 3600, 1)} h`;
}
