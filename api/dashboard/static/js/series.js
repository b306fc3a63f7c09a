// One chart panel: site, indicator, range picker, bucket (only those the API accepts for
// the range), a uPlot chart, the same numbers as a table, and a CSV of what is shown.
import { t } from './i18n.js';
import * as f from './fmt.js';
import { get } from './api.js';
import { el, errorText, clear } from './dom.js';

// The API's limits (docs/api.md): longest range per bucket, at most 10,000 buckets.
const MAX_DAYS = { '5m': 1, '10m': 62, '15m': 93, '30m': 186, '1h': 366, '1d': 3660, '1w': 3660, '1mo': 3660 };
const SECONDS = { '5m': 300, '10m': 600, '15m': 900, '30m': 1800, '1h': 3600, '1d': 86400, '1w': 604800, '1mo': 2419200 };
export const BUCKETS = Object.keys(MAX_DAYS);
export const RANGES = ['today', 'yesterday', '7d', '30d', 'year', 'custom'];
const COLORS = ['#0b5fa5', '#b34700', '#2e7d32', '#7b1fa2', '#ad1457', '#00695c'];

export function rangeDates(range, custom = {}) {
  const today = f.isoDay();
  switch (range) {
    case 'today': return { from: today, to: f.addDays(today, 1) };
    case 'yesterday': return { from: f.addDays(today, -1), to: today };
    case '7d': return { from: f.addDays(today, -6), to: f.addDays(today, 1) };
    case '30d': return { from: f.addDays(today, -29), to: f.addDays(today, 1) };
    case 'year': return { from: f.addDays(today, -364), to: f.addDays(today, 1) };
    default: // custom: both days included
      if (!custom.from || !custom.to) return null;
      return { from: custom.from, to: f.addDays(custom.to, 1) };
  }
}

export function allowedBuckets(days, metricBuckets) {
  return BUCKETS.filter((b) => (!metricBuckets || metricBuckets.includes(b))
    && days <= MAX_DAYS[b] && (days * 86400) / SECONDS[b] <= 10000);
}

function preferredBucket(days, allowed, metric) {
  const wish = days <= 2 ? (metric.short || ['1h', '15m', '1d'])
    : days <= 8 ? ['1h', '1d'] : days <= 62 ? ['1d', '1h'] : ['1d', '1w', '1mo'];
  return wish.find((b) => allowed.includes(b)) || allowed[0];
}

function show(field, v) {
  if (v === null || v === undefined) return '—';
  if (field.kind === 'time') return f.dateTime(v);
  if (field.kind === 'bool') return t(v ? 'chart.yes' : 'chart.no');
  const x = field.scale ? field.scale(v) : v;
  return `${f.num(x, field.digits ?? 1)}${field.unit ? ` ${field.unit}` : ''}`;
}

export function seriesPanel(root, cfg) {
  const id = cfg.id;
  const state = {
    site: cfg.params.site || (cfg.sites[0] && cfg.sites[0].id),
    metric: cfg.metrics.find((m) => m.key === cfg.params.metric) ? cfg.params.metric : cfg.metrics[0].key,
    range: RANGES.includes(cfg.params.range) ? cfg.params.range : (cfg.params.from ? 'custom' : 'today'),
    from: cfg.params.from || f.addDays(f.isoDay(), -1),
    to: cfg.params.to || f.isoDay(),
    bucket: cfg.params.bucket || null,
  };
  let shown = null; // {metric, sites, rows} of the last drawing
  let plot = null;
  let generation = 0;

  const siteSel = el('select', { id: `${id}-site` });
  for (const s of cfg.sites) siteSel.append(el('option', { value: s.id }, s.name));
  if (state.site && !cfg.sites.some((s) => s.id === state.site)) siteSel.append(el('option', { value: state.site }, state.site));
  siteSel.value = state.site || '';
  const metricSel = el('select', { id: `${id}-metric` });
  for (const m of cfg.metrics) metricSel.append(el('option', { value: m.key }, t(m.label)));
  metricSel.value = state.metric;
  const rangeSel = el('select', { id: `${id}-range` });
  for (const r of RANGES) rangeSel.append(el('option', { value: r }, t(`range.${r}`)));
  rangeSel.value = state.range;
  const fromIn = el('input', { type: 'date', id: `${id}-from`, value: state.from });
  const toIn = el('input', { type: 'date', id: `${id}-to`, value: state.to });
  const custom = el('span', { class: 'custom' },
    el('label', { for: `${id}-from` }, t('range.from')), fromIn,
    el('label', { for: `${id}-to` }, t('range.to')), toIn);
  const bucketSel = el('select', { id: `${id}-bucket` });
  const csvBtn = el('button', { type: 'button', id: `${id}-csv`, class: 'secondary' }, t('chart.csv'));
  const msg = el('p', { id: `${id}-msg`, class: 'msg', role: 'status' });
  const chart = el('div', { id: `${id}-chart`, class: 'chart' });
  const table = el('table', { id: `${id}-table`, class: 'data' });
  const details = el('details', { class: 'table-view' }, el('summary', {}, t('chart.table')), el('div', { class: 'scroll', tabindex: '0', role: 'region', 'aria-label': t('chart.table') }, table));
  const siteLabel = el('label', { for: `${id}-site` }, t(cfg.siteLabel || 'chart.site'));
  const siteBox = el('span', { class: 'ctl' }, siteLabel, siteSel);
  const form = el('div', { class: 'controls' },
    siteBox,
    el('span', { class: 'ctl' }, el('label', { for: `${id}-metric` }, t('chart.metric')), metricSel),
    el('span', { class: 'ctl' }, el('label', { for: `${id}-range` }, t('chart.range')), rangeSel),
    custom,
    el('span', { class: 'ctl' }, el('label', { for: `${id}-bucket` }, t('chart.bucket')), bucketSel),
    csvBtn);
  const title = el('h2', { id: `${id}-title` }, t(cfg.title));
  root.append(el('section', { class: 'panel', 'aria-labelledby': `${id}-title` }, title, form, msg, chart, details));

  const metric = () => cfg.metrics.find((m) => m.key === state.metric);

  function syncControls() {
    const m = metric();
    siteBox.hidden = Boolean(m.compare);
    custom.hidden = state.range !== 'custom';
    const dates = rangeDates(state.range, { from: state.from, to: state.to });
    const days = dates ? Math.max(f.daysBetween(dates.from, dates.to), 0) : 1;
    const allowed = allowedBuckets(Math.max(days, 1), m.buckets);
    clear(bucketSel);
    for (const b of allowed) bucketSel.append(el('option', { value: b }, t(`bucket.${b}`)));
    if (!allowed.includes(state.bucket)) state.bucket = preferredBucket(days, allowed, m);
    bucketSel.value = state.bucket || '';
    return dates;
  }

  function remember() {
    const q = new URLSearchParams({ ...(cfg.keep || {}), site: state.site || '', metric: state.metric, bucket: state.bucket || '' });
    if (state.range === 'custom') { q.set('from', state.from); q.set('to', state.to); } else q.set('range', state.range);
    const hash = `#/${cfg.route}?${q}`;
    if (location.hash !== hash) history.replaceState(null, '', hash);
  }

  function say(text, kind = 'info') {
    msg.textContent = text;
    msg.className = `msg ${kind}`;
  }

  function drawEmpty() {
    if (plot) { plot.destroy(); plot = null; }
    clear(chart);
    clear(table);
    chart.hidden = true;
    details.hidden = true;
    shown = null;
  }

  async function reload() {
    const dates = syncControls();
    remember();
    const gen = ++generation;
    const m = metric();
    if (!dates || dates.from >= dates.to) {
      drawEmpty();
      say(t('err.empty_range'), 'warn');
      return;
    }
    say(t('chart.loading'));
    const sites = m.compare ? cfg.sites : cfg.sites.filter((s) => s.id === state.site).concat(
      cfg.sites.some((s) => s.id === state.site) ? [] : [{ id: state.site, name: state.site }]);
    let answers;
    try {
      answers = await Promise.all(sites.map((s) => get(m.path(s.id), { from: dates.from, to: dates.to, bucket: state.bucket })));
    } catch (err) {
      if (gen !== generation) return;
      drawEmpty();
      say(errorText(err, { site: state.site }), 'error');
      return;
    }
    if (gen !== generation) return;
    const rows = answers[0].data;
    const any = answers.some((a) => a.data.some((r) => (m.has ? m.has(r) : m.fields.some((fd) => r[fd.key] !== null && r[fd.key] !== 0))));
    if (!any) {
      drawEmpty();
      say(t(dates.to === f.addDays(dates.from, 1) ? 'msg.no_data_day' : 'msg.no_data'), 'warn');
      return;
    }
    say(t('chart.summary', { n: rows.length, from: f.dateTime(answers[0].from), to: f.dateTime(answers[0].to) }));
    shown = { metric: m, sites, answers };
    draw();
  }

  function columns() {
    const { metric: m, sites } = shown;
    if (m.compare) return sites.map((s, i) => ({ label: s.name, field: m.fields[0], site: i }));
    return m.fields.map((fd) => ({ label: t(fd.label), field: fd, site: 0 }));
  }

  function draw() {
    chart.hidden = false;
    details.hidden = false;
    const rows = shown.answers[0].data;
    const cols = columns();
    const plotted = cols.filter((c) => !c.field.kind);
    const xs = rows.map((r) => Date.parse(r.start) / 1000);
    const ys = plotted.map((c) => shown.answers[c.site].data.map((r) => {
      const v = r[c.field.key];
      if (v === null || v === undefined || (c.field.known && !c.field.known(r))) return null;
      return c.field.scale ? c.field.scale(v) : v;
    }));
    // table (same numbers; raw API value in data-value)
    clear(table);
    const dup = new Set();
    const seen = new Set();
    for (const r of rows) { const k = f.dateTime(r.start); if (seen.has(k)) dup.add(k); seen.add(k); }
    table.append(el('caption', {}, `${t(shown.metric.label)} — ${shown.metric.compare ? t('chart.all_sites') : (shown.sites[0].name)}`));
    table.append(el('thead', {}, el('tr', {}, el('th', { scope: 'col' }, t('chart.start')),
      ...cols.map((c) => el('th', { scope: 'col' }, `${c.label}${c.field.unit ? ` (${c.field.unit})` : ''}`)))));
    const body = el('tbody');
    rows.forEach((r, i) => {
      const label = f.dateTime(r.start, dup.has(f.dateTime(r.start)));
      body.append(el('tr', { 'data-start': r.start }, el('th', { scope: 'row' }, label),
        ...cols.map((c) => {
          const row = shown.answers[c.site].data[i];
          const raw = row[c.field.key];
          const unknown = c.field.known && !c.field.known(row);
          return el('td', { 'data-key': c.field.key, 'data-value': raw === null || raw === undefined ? '' : String(raw) }, unknown ? t('chart.unknown') : show(c.field, raw));
        })));
    });
    table.append(body);
    // chart
    if (plot) plot.destroy();
    clear(chart);
    const span = xs.length ? xs[xs.length - 1] - xs[0] : 0;
    const U = window.uPlot;
    const unit = plotted[0].field.unit || '';
    chart.setAttribute('role', 'img');
    chart.setAttribute('aria-label', t('chart.aria', { what: t(shown.metric.label) }));
    const opts = {
      width: Math.max(chart.clientWidth || 600, 300),
      height: 300,
      tzDate: (ts) => U.tzDate(new Date(ts * 1000), f.TZ),
      // from zero: a municipal reader compares heights, not a zoomed band
      scales: { x: { time: true }, y: { range: (u, min, max) => [Math.min(0, min ?? 0), max > 0 ? max * 1.05 : 1] } },
      legend: { live: true },
      cursor: { drag: { x: false, y: false } },
      series: [
        { label: t('chart.start'), value: (u, v) => (v === null ? '—' : f.dateTime(new Date(v * 1000).toISOString())) },
        ...plotted.map((c, i) => ({
          label: c.label, stroke: COLORS[i % COLORS.length], width: 2,
          fill: plotted.length === 1 ? 'rgba(11,95,165,0.08)' : undefined,
          points: { show: xs.length <= 48 },
          value: (u, v) => (v === null ? '—' : `${f.num(v, c.field.digits ?? 1)}${c.field.unit ? ` ${c.field.unit}` : ''}`),
        })),
      ],
      axes: [
        { stroke: '#333', size: 50, values: (u, splits) => splits.map((s) => {
          const iso = new Date(s * 1000).toISOString();
          if (span <= 2 * 86400) return f.time(iso);
          return span <= 10 * 86400 ? `${f.date(iso).slice(0, 5)}\n${f.time(iso)}` : f.date(iso).slice(0, 5);
        }) },
        { stroke: '#333', size: 70, label: unit, values: (u, splits) => splits.map((v) => f.num(v, 1)) },
      ],
    };
    plot = new U(opts, [xs, ...ys], chart);
  }

  function downloadCsv() {
    if (!shown) { say(t('err.nothing_to_download'), 'warn'); return; }
    const cols = columns();
    const head = ['start', 'end', ...cols.map((c) => (shown.metric.compare ? `${shown.sites[c.site].id}_${c.field.key}` : c.field.key))];
    const lines = [head.join(',')];
    shown.answers[0].data.forEach((r, i) => {
      lines.push([r.start, r.end, ...cols.map((c) => {
        const v = shown.answers[c.site].data[i][c.field.key];
        return v === null || v === undefined ? '' : String(v);
      })].join(','));
    });
    const blob = new Blob([`${lines.join('\n')}\n`], { type: 'text/csv;charset=utf-8' });
    const a = el('a', { href: URL.createObjectURL(blob), download: `${cfg.route}-${shown.metric.key}-${shown.metric.compare ? 'zones' : state.site}.csv` });
    document.body.append(a);
    a.click();
    setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
  }

  siteSel.addEventListener('change', () => { state.site = siteSel.value; reload(); });
  metricSel.addEventListener('change', () => { state.metric = metricSel.value; reload(); });
  rangeSel.addEventListener('change', () => { state.range = rangeSel.value; reload(); });
  bucketSel.addEventListener('change', () => { state.bucket = bucketSel.value; reload(); });
  fromIn.addEventListener('change', () => { state.from = fromIn.value; reload(); });
  toIn.addEventListener('change', () => { state.to = toIn.value; reload(); });
  csvBtn.addEventListener('click', downloadCsv);
  const ro = new ResizeObserver(() => { if (plot) plot.setSize({ width: Math.max(chart.clientWidth, 300), height: 300 }); });
  ro.observe(chart);
  reload();
  return { reload, destroy: () => { ro.disconnect(); if (plot) plot.destroy(); generation += 1; } };
}
