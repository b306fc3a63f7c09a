// The pages. Each takes the <main> element and the route's parameters, and returns a
// clean-up function (timers, charts) called when the user leaves it.
import { t } from './i18n.js';
import * as f from './fmt.js';
import { get, check, post, postNoAuth, setToken, clearToken, ApiError } from './api.js';
import { el, clear, errorText } from './dom.js';
import { seriesPanel } from './series.js';
import { PARKING, ENERGY, WIFI, DEVICE } from './metrics.js';

const KIND_FAMILY = { parking_zone: 'parking', square: 'wifi', district: 'energy' };

async function sitesOf(kind) {
  const body = await get('/v1/sites', { kind, limit: 1000 });
  return body.data;
}

function heading(main, key, intro) {
  main.append(el('h1', {}, t(key)));
  if (intro) main.append(el('p', { class: 'intro' }, t(intro)));
}

function failure(main, err, ctx) {
  main.append(el('p', { class: 'msg error', role: 'alert' }, errorText(err, ctx)));
}

// -- sign-in ---------------------------------------------------------------------------------
export async function signIn(main, params, app) {
  heading(main, 'signin.title', 'signin.intro');
  const msg = el('p', { id: 'signin-msg', class: 'msg', role: 'alert' });
  if (params.reason === 'expired') { msg.textContent = t('signin.expired'); msg.className = 'msg warn'; }
  if (params.reason === 'signed_out') { msg.textContent = t('signin.signed_out'); msg.className = 'msg info'; }
  const input = el('input', { id: 'signin-token', type: 'password', autocomplete: 'off', spellcheck: 'false', required: true });
  const form = el('form', { id: 'signin-form', class: 'signin' },
    el('label', { for: 'signin-token' }, t('signin.token')), input,
    el('p', { class: 'hint', id: 'signin-hint' }, t('signin.hint')),
    el('button', { type: 'submit', id: 'signin-submit' }, t('signin.submit')));
  input.setAttribute('aria-describedby', 'signin-hint');
  main.append(msg, form);

  async function verify() {
    try {
      await check('/v1/sites', { limit: 1 });
      app.signedIn();
      location.hash = '#/ville';
    } catch (err) {
      clearToken();
      msg.className = 'msg error';
      msg.textContent = err.status === 401 ? t('signin.refused') : errorText(err);
    }
  }

  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    setToken(input.value.trim());
    verify();
  });
  if (params.code) {
    history.replaceState(null, '', '#/connexion'); // the one-time code leaves the address bar
    try {
      const body = await postNoAuth('/dashboard/signin', { code: params.code });
      setToken(body.token);
      await verify();
    } catch (err) {
      msg.className = 'msg error';
      msg.textContent = err.status === 401 || err.status === 422 ? t('signin.bad_link') : errorText(err);
    }
  }
  return () => {};
}

// -- overview --------------------------------------------------------------------------------
function colourOf(share) {
  if (share === null || share === undefined) return '#9e9e9e';
  const stops = ['#1a9850', '#91cf60', '#fee08b', '#fc8d59', '#d73027'];
  return stops[Math.min(stops.length - 1, Math.floor(share * stops.length))];
}

async function currentOf(site) {
  const now = new Date();
  const ago = (min) => new Date(now.getTime() - min * 60000).toISOString();
  if (site.kind === 'parking_zone') {
    const c = await get(`/v1/parking/zones/${encodeURIComponent(site.id)}/current`);
    const known = c.free + c.occupied;
    return { value: known ? c.occupied / known : null, share: known ? c.occupied / known : null,
      short: known ? f.pct(c.occupied / known, 0) : null,
      text: known ? `${f.pct(c.occupied / known, 0)} (${t('ov.spots_taken', { n: f.num(c.occupied, 0), of: f.num(known, 0) })})` : t('ov.no_recent') };
  }
  if (site.kind === 'square') {
    const c = await get(`/v1/wifi/squares/${encodeURIComponent(site.id)}/clients`, { from: ago(60), to: now.toISOString(), bucket: '5m' });
    const last = [...c.data].reverse().find((r) => r.aps_reporting > 0);
    return { value: last ? last.clients_mean : null, short: last ? t('ov.clients_short', { n: f.num(last.clients_mean, 0) }) : null,
      text: last ? t('ov.clients', { n: f.num(last.clients_mean, 0) }) : t('ov.no_recent') };
  }
  const e = await get(`/v1/grid/districts/${encodeURIComponent(site.id)}/energy`, { from: ago(120), to: now.toISOString(), bucket: '10m' });
  const last = [...e.data].reverse().find((r) => r.mean_power_w !== null);
  const kw = last ? `${f.num(last.mean_power_w / 1000, 0)} kW` : null;
  return { value: last ? last.mean_power_w : null, short: kw, text: kw || t('ov.no_recent') };
}

// Squares lie inside the centre, next to (or on) their parking zone: their label shows on
// hover and focus only, the table under the map gives every value.
const LABEL = {
  district: (r) => ({ permanent: true, direction: 'bottom', offset: [0, r] }),
  square: (r) => ({ permanent: false, direction: 'top', offset: [0, -r] }),
  parking_zone: (r) => ({ permanent: true, direction: 'right', offset: [r, 0] }),
};

function drawMap(node, sites, values, tileUrl) {
  const L = window.L;
  const map = L.map(node, { attributionControl: false, zoomSnap: 0.25, scrollWheelZoom: false, keyboard: true });
  if (tileUrl) L.tileLayer(tileUrl, { maxZoom: 19 }).addTo(map);
  const placed = sites.filter((s) => s.latitude !== null && s.longitude !== null);
  const layer = L.layerGroup().addTo(map);
  // room on the right for the labels
  if (placed.length) map.fitBounds(L.latLngBounds(placed.map((s) => [s.latitude, s.longitude])), { paddingTopLeft: [130, 40], paddingBottomRight: [260, 50] });
  else map.setView([46.6, 2.4], 5);
  const maxOf = {};
  for (const s of placed) {
    const v = values[s.id] && values[s.id].value;
    if (v !== null && v !== undefined) maxOf[s.kind] = Math.max(maxOf[s.kind] || 0, v);
  }
  const ORDER = { district: 0, parking_zone: 1, square: 2 }; // small circles on top
  for (const s of [...placed].sort((a, b) => ORDER[a.kind] - ORDER[b.kind])) {
    const cur = values[s.id] || {};
    const share = s.kind === 'parking_zone' ? cur.share : (cur.value !== null && cur.value !== undefined && maxOf[s.kind] ? cur.value / maxOf[s.kind] : null);
    const radius = s.kind === 'district' ? 26 : s.kind === 'parking_zone' ? 14 : 10;
    L.circleMarker([s.latitude, s.longitude], {
      radius, color: '#222', weight: 1.5, fillColor: colourOf(share), fillOpacity: s.kind === 'district' ? 0.45 : 0.85,
      dashArray: s.kind === 'district' ? '4 3' : null,
    }).addTo(layer).bindTooltip(`${s.name} : ${cur.short || t('ov.no_recent_short')}`, {
      className: 'map-label', ...LABEL[s.kind](radius) });
  }
  return map;
}

export async function overview(main, params, app) {
  heading(main, 'ov.title', 'ov.intro');
  const updated = el('p', { id: 'ov-updated', class: 'updated', 'aria-live': 'off' });
  const stale = el('p', { id: 'ov-stale', class: 'msg warn', hidden: true }, t('ov.all_stale'));
  main.append(updated, stale);
  let sites;
  try { sites = (await get('/v1/sites', { limit: 1000 })).data; } catch (err) { failure(main, err); return () => {}; }
  const mapBox = el('div', { id: 'ov-map', class: 'map', role: 'region', 'aria-label': t('ov.map_label') });
  const siteTable = el('table', { id: 'ov-sites', class: 'data' });
  const dayBox = el('div', { id: 'ov-day' });
  const devBox = el('div', { id: 'ov-devices' });
  const rejBox = el('div', { id: 'ov-rejections' });
  const ingBox = el('p', { id: 'ov-ingest' });
  main.append(el('div', { class: 'grid-2' },
    el('section', { class: 'panel', 'aria-labelledby': 'ov-map-title' }, el('h2', { id: 'ov-map-title' }, t('ov.map')), mapBox,
      el('p', { class: 'legend' }, t('ov.legend')), siteTable),
    el('div', {},
      el('section', { class: 'panel', 'aria-labelledby': 'ov-day-title' }, el('h2', { id: 'ov-day-title' }, t('ov.day')), dayBox),
      el('section', { class: 'panel', 'aria-labelledby': 'ov-dev-title' }, el('h2', { id: 'ov-dev-title' }, t('ov.devices')), devBox),
      el('section', { class: 'panel', 'aria-labelledby': 'ov-rej-title' }, el('h2', { id: 'ov-rej-title' }, t('ov.rejections')), rejBox, ingBox))));
  let map = null;
  let prevIngest = null;
  let timer = null;
  let alive = true;

  async function refresh() {
    const today = f.isoDay();
    const day = { from: today, to: f.addDays(today, 1), bucket: '1d' };
    const values = {};
    const health = {};
    const dayRows = { parking: [], wifi: [], energy: [] };
    // every request of the refresh at once (the API serves them concurrently)
    const dayOf = (s) => {
      const enc = encodeURIComponent(s.id);
      if (s.kind === 'parking_zone') {
        return Promise.all([get(`/v1/parking/zones/${enc}/revenue`, day), get(`/v1/parking/zones/${enc}/occupancy`, day)])
          .then(([rev, occ]) => dayRows.parking.push([s, occ.data[0].occupancy_of_known === null ? '—' : f.pct(occ.data[0].occupancy_of_known, 0), f.num(rev.data[0].transactions, 0), f.euros(rev.data[0].revenue_cents)]));
      }
      if (s.kind === 'square') {
        return get(`/v1/wifi/squares/${enc}/visitors`, day).then((v) => dayRows.wifi.push([s, f.num(v.data[0].unique_visitors, 0)]));
      }
      return get(`/v1/grid/districts/${enc}/energy`, day)
        .then((e) => dayRows.energy.push([s, e.data[0].import_wh === null ? '—' : `${f.num(e.data[0].import_wh / 1000, 1)} kWh`]));
    };
    const side = Promise.all([get('/v1/dashboard/rejections', { minutes: 60 }), get('/v1/dashboard/ingest')]);
    side.catch(() => {}); // answered below
    try {
      await Promise.all(sites.flatMap((s) => [
        currentOf(s).then((cur) => { values[s.id] = cur; }),
        get(`/v1/health/sites/${encodeURIComponent(s.id)}`).then((h) => { health[s.id] = h; }),
        dayOf(s)]));
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) return;
      app.status(errorText(err), 'error');
      return;
    }
    if (!alive) return;
    stale.hidden = sites.some((s) => values[s.id].value !== null);
    // sites: map and table
    clear(siteTable);
    siteTable.append(el('caption', {}, t('ov.sites_caption')),
      el('thead', {}, el('tr', {}, ...['ov.site', 'ov.kind', 'ov.now', 'status.online', 'status.late', 'status.offline'].map((k) => el('th', { scope: 'col' }, t(k))))));
    const tb = el('tbody');
    for (const s of sites) {
      const fam = Object.values(health[s.id].families);
      const sum = (k) => fam.reduce((a, x) => a + x[k], 0);
      const page = KIND_FAMILY[s.kind];
      tb.append(el('tr', { 'data-site': s.id },
        el('th', { scope: 'row' }, el('a', { href: `#/${page === 'parking' ? 'stationnement' : page === 'wifi' ? 'wifi' : 'energie'}?site=${encodeURIComponent(s.id)}` }, s.name)),
        el('td', {}, t(`kind.${s.kind}`)),
        el('td', { class: 'now', 'data-value': values[s.id].value === null ? '' : String(values[s.id].value) }, values[s.id].text),
        el('td', { 'data-status': 'online' }, f.num(sum('online'), 0)),
        el('td', { 'data-status': 'late' }, f.num(sum('late'), 0)),
        el('td', { 'data-status': 'offline' }, f.num(sum('offline'), 0))));
    }
    siteTable.append(tb);
    if (map) map.remove();
    clear(mapBox);
    map = drawMap(mapBox, sites, values, app.config.tile_url);
    // day so far
    clear(dayBox);
    const dayTable = (key, head, rows) => el('table', { class: 'data compact', id: `ov-day-${key}` },
      el('caption', {}, t(`ov.day_${key}`)),
      el('thead', {}, el('tr', {}, ...head.map((h) => el('th', { scope: 'col' }, t(h))))),
      el('tbody', {}, ...rows.sort((a, b) => a[0].name.localeCompare(b[0].name)).map(([s, ...cells]) => el('tr', {}, el('th', { scope: 'row' }, s.name), ...cells.map((c) => el('td', {}, c))))));
    dayBox.append(dayTable('parking', ['ov.site', 'f.occupancy_known', 'f.transactions', 'f.revenue'], dayRows.parking),
      dayTable('wifi', ['ov.site', 'f.unique_visitors'], dayRows.wifi),
      dayTable('energy', ['ov.site', 'f.import'], dayRows.energy));
    // devices
    const totals = {};
    for (const s of sites) for (const [fam, c] of Object.entries(health[s.id].families)) {
      totals[fam] = totals[fam] || { online: 0, late: 0, offline: 0 };
      for (const k of ['online', 'late', 'offline']) totals[fam][k] += c[k];
    }
    clear(devBox);
    devBox.append(el('table', { class: 'data compact', id: 'ov-devices-table' },
      el('caption', {}, t('ov.devices_caption')),
      el('thead', {}, el('tr', {}, ...['dev.family', 'status.online', 'status.late', 'status.offline'].map((k) => el('th', { scope: 'col' }, t(k))))),
      el('tbody', {}, ...Object.entries(totals).sort().map(([fam, c]) => el('tr', { 'data-family': fam },
        el('th', { scope: 'row' }, t(`family.${fam}`)),
        ...['online', 'late', 'offline'].map((k) => el('td', { 'data-status': k, class: `st-${k}` }, f.num(c[k], 0))))))),
    el('p', {}, el('a', { href: '#/equipements?status=offline' }, t('ov.see_silent'))));
    // rejections and ingest rate
    try {
      const [rej, ing] = await side;
      clear(rejBox);
      rejBox.append(rej.total === 0 ? el('p', { id: 'ov-rej-none' }, t('ov.no_rejections'))
        : el('table', { class: 'data compact', id: 'ov-rej-table' }, el('caption', {}, t('ov.rej_caption', { n: f.num(rej.total, 0) })),
          el('thead', {}, el('tr', {}, el('th', { scope: 'col' }, t('ov.reason')), el('th', { scope: 'col' }, t('ov.count')))),
          el('tbody', {}, ...rej.by_reason.map((r) => el('tr', {}, el('th', { scope: 'row' }, r.reason), el('td', { 'data-value': String(r.count) }, f.num(r.count, 0)))))));
      if (!ing.available) ingBox.textContent = t('ov.ingest_unknown');
      else if (prevIngest) {
        const dt = (Date.parse(ing.at) - Date.parse(prevIngest.at)) / 1000;
        ingBox.textContent = t('ov.ingest_rate', { n: f.num(Math.max(0, ing.messages - prevIngest.messages) / dt, 1) });
      } else ingBox.textContent = t('ov.ingest_total', { n: f.num(ing.messages, 0) });
      prevIngest = ing.available ? ing : null;
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 401)) rejBox.textContent = errorText(err);
    }
    updated.textContent = t('ov.updated', { at: f.dateTime(new Date().toISOString()) + ':' + String(new Date().getSeconds()).padStart(2, '0') });
    updated.dataset.refreshedAt = String(Date.now());
  }

  const every = Math.min(300, Math.max(2, Number(params.refresh) || app.config.refresh_s || 15));
  const loop = async () => { await refresh(); if (alive) timer = setTimeout(loop, every * 1000); };
  await loop();
  return () => { alive = false; clearTimeout(timer); if (map) map.remove(); };
}

// -- family pages ----------------------------------------------------------------------------
async function familyPage(main, params, { title, intro, kind, metrics, route, siteLabel, extra }) {
  heading(main, title, intro);
  let sites;
  try { sites = await sitesOf(kind); } catch (err) { failure(main, err); return () => {}; }
  if (!sites.length) { main.append(el('p', { class: 'msg warn' }, t('err.no_sites'))); return () => {}; }
  const panel = seriesPanel(main, { id: 'p', route, title: 'chart.title', sites: sites.map((s) => ({ id: s.id, name: s.name })), metrics, params, siteLabel });
  const cleanup = extra ? await extra(main, sites) : () => {};
  return () => { panel.destroy(); cleanup(); };
}

export function parking(main, params) {
  return familyPage(main, params, { title: 'parking.title', intro: 'parking.intro', kind: 'parking_zone', metrics: PARKING, route: 'stationnement', siteLabel: 'chart.zone',
    extra: async (m, sites) => {
      const box = el('section', { class: 'panel', 'aria-labelledby': 'now-title' }, el('h2', { id: 'now-title' }, t('parking.now')));
      m.append(box);
      try {
        const rows = await Promise.all(sites.map((s) => get(`/v1/parking/zones/${encodeURIComponent(s.id)}/current`)));
        box.append(el('table', { class: 'data compact', id: 'parking-now' },
          el('caption', {}, t('parking.now_caption')),
          el('thead', {}, el('tr', {}, ...['chart.zone', 'parking.capacity', 'parking.free', 'parking.occupied', 'parking.unknown'].map((k) => el('th', { scope: 'col' }, t(k))))),
          el('tbody', {}, ...rows.map((r, i) => el('tr', {}, el('th', { scope: 'row' }, sites[i].name),
            ...['capacity', 'free', 'occupied', 'unknown'].map((k) => el('td', { 'data-value': String(r[k]) }, f.num(r[k], 0))))))));
      } catch (err) { box.append(el('p', { class: 'msg error' }, errorText(err))); }
      return () => {};
    } });
}

export function energy(main, params) {
  return familyPage(main, params, { title: 'energy.title', intro: 'energy.intro', kind: 'district', metrics: ENERGY, route: 'energie', siteLabel: 'chart.district' });
}

export function wifi(main, params) {
  return familyPage(main, params, { title: 'wifi.title', intro: 'wifi.intro', kind: 'square', metrics: WIFI, route: 'wifi', siteLabel: 'chart.square' });
}

// -- devices ---------------------------------------------------------------------------------
const STATUS_ORDER = { offline: 0, late: 1, online: 2 };

function signal(r) {
  if (r.rssi_dbm === null) return '—';
  return `${f.num(r.rssi_dbm, 0)} dBm${r.snr_db === null ? '' : ` / ${f.num(r.snr_db, 1)} dB`}`;
}

export async function devices(main, params) {
  if (params.device) return devicePage(main, params);
  heading(main, 'dev.title', 'dev.intro');
  let sites;
  try { sites = (await get('/v1/sites', { limit: 1000 })).data; } catch (err) { failure(main, err); return () => {}; }
  const fam = el('select', { id: 'dev-family' }, el('option', { value: '' }, t('dev.all')),
    ...['parking_spot', 'parking_meter', 'wifi_ap', 'grid_meter'].map((x) => el('option', { value: x }, t(`family.${x}`))));
  const site = el('select', { id: 'dev-site' }, el('option', { value: '' }, t('dev.all')), ...sites.map((s) => el('option', { value: s.id }, s.name)));
  const status = el('select', { id: 'dev-status' }, el('option', { value: '' }, t('dev.all')),
    ...['offline', 'late', 'online'].map((x) => el('option', { value: x }, t(`status.${x}`))));
  fam.value = params.family || '';
  site.value = params.site || '';
  status.value = params.status || '';
  const msg = el('p', { id: 'dev-msg', class: 'msg', role: 'status' });
  const table = el('table', { id: 'dev-table', class: 'data' });
  main.append(el('div', { class: 'controls' },
    el('span', { class: 'ctl' }, el('label', { for: 'dev-family' }, t('dev.family')), fam),
    el('span', { class: 'ctl' }, el('label', { for: 'dev-site' }, t('chart.site')), site),
    el('span', { class: 'ctl' }, el('label', { for: 'dev-status' }, t('dev.status')), status)), msg, el('div', { class: 'scroll', tabindex: '0', role: 'region', 'aria-label': t('chart.table') }, table));
  let gen = 0;
  async function load() {
    const g = ++gen;
    const q = new URLSearchParams();
    for (const [k, v] of [['family', fam.value], ['site', site.value], ['status', status.value]]) if (v) q.set(k, v);
    history.replaceState(null, '', `#/equipements${q.toString() ? `?${q}` : ''}`);
    let body;
    try {
      body = await get('/v1/health/devices', { family: fam.value, site: site.value, status: status.value, limit: 1000 });
    } catch (err) { if (g === gen) { clear(table); msg.textContent = errorText(err); msg.className = 'msg error'; } return; }
    if (g !== gen) return;
    const rows = body.data.slice().sort((a, b) => STATUS_ORDER[a.status] - STATUS_ORDER[b.status] || (b.silent_s ?? Infinity) - (a.silent_s ?? Infinity));
    msg.className = 'msg';
    msg.textContent = rows.length ? t('dev.count', { n: f.num(body.count, 0) }) : t('dev.none');
    clear(table);
    if (!rows.length) return;
    table.append(el('caption', {}, t('dev.caption')),
      el('thead', {}, el('tr', {}, ...['dev.device', 'dev.family', 'chart.site', 'dev.status', 'dev.last_seen', 'dev.battery', 'dev.signal', 'dev.paper', 'dev.fault'].map((k) => el('th', { scope: 'col' }, t(k))))),
      el('tbody', {}, ...rows.map((r) => el('tr', { 'data-device': r.id, 'data-status': r.status },
        el('th', { scope: 'row' }, el('a', { href: `#/equipements?device=${encodeURIComponent(r.id)}` }, r.name || r.id)),
        el('td', {}, t(`family.${r.family}`)), el('td', {}, r.site_id),
        el('td', {}, el('span', { class: `badge st-${r.status}` }, t(`status.${r.status}`))),
        el('td', {}, f.dateTime(r.last_seen)), el('td', {}, r.battery === null ? '—' : f.pct(r.battery, 0)),
        el('td', {}, signal(r)), el('td', {}, r.paper === null ? '—' : f.pct(r.paper, 0)), el('td', {}, r.fault_code ?? '—')))));
  }
  for (const s of [fam, site, status]) s.addEventListener('change', load);
  await load();
  return () => { gen += 1; };
}

async function devicePage(main, params) {
  main.append(el('p', {}, el('a', { href: '#/equipements' }, t('dev.back'))));
  let d;
  try { d = await get(`/v1/devices/${encodeURIComponent(params.device)}`); } catch (err) {
    heading(main, 'dev.device_title');
    failure(main, err, { device: params.device });
    return () => {};
  }
  main.append(el('h1', {}, `${d.name || d.id}`));
  const h = d.health || {};
  const facts = [['dev.id', d.id], ['dev.family', t(`family.${d.family}`)], ['chart.site', d.site_id], ['dev.status', t(`status.${h.status}`)],
    ['dev.last_seen', f.dateTime(h.last_seen)], ['dev.battery', h.battery === null || h.battery === undefined ? '—' : f.pct(h.battery, 0)],
    ['dev.signal', h.rssi_dbm === undefined ? '—' : signal(h)]];
  main.append(el('section', { class: 'panel', 'aria-labelledby': 'dev-facts' }, el('h2', { id: 'dev-facts' }, t('dev.facts')),
    el('dl', { class: 'facts', id: 'dev-facts-list' }, ...facts.flatMap(([k, v]) => [el('dt', {}, t(k)), el('dd', {}, v)]))));
  const latest = d.latest || {};
  const lat = el('section', { class: 'panel', 'aria-labelledby': 'dev-latest' }, el('h2', { id: 'dev-latest' }, t('dev.latest')));
  const kinds = Object.entries(latest);
  if (!kinds.length) lat.append(el('p', {}, t('dev.no_latest')));
  for (const [kind, row] of kinds) {
    if (!row) continue;
    lat.append(el('table', { class: 'data compact' }, el('caption', {}, kind),
      el('tbody', {}, ...Object.entries(row).map(([k, v]) => el('tr', {}, el('th', { scope: 'row' }, k),
        el('td', {}, typeof v === 'number' ? f.num(v, 3) : (k === 'time' ? f.dateTime(v) : String(v ?? '—'))))))));
  }
  main.append(lat);
  const metrics = DEVICE[d.family];
  if (!metrics) return () => {};
  const panel = seriesPanel(main, { id: 'p', route: 'equipements', title: 'dev.history', sites: [{ id: d.id, name: d.name || d.id }],
    metrics, params: { ...params, site: d.id }, keep: { device: d.id } });
  return () => panel.destroy();
}

// -- operations ------------------------------------------------------------------------------
export async function operate(main, params, app) {
  heading(main, 'op.title', 'op.intro');
  let scenarios;
  try { scenarios = (await get('/v1/operate/scenarios')).data.filter((s) => s.valid); } catch (err) {
    main.append(el('p', { id: 'op-forbidden', class: 'msg error', role: 'alert' }, err.status === 403 ? t('op.forbidden') : errorText(err)));
    return () => {};
  }
  const scen = el('select', { id: 'op-scenario' }, ...scenarios.map((s) => el('option', { value: s.name }, `${s.name} — ${s.description || ''}`)));
  const speed = el('input', { id: 'op-speed', type: 'number', min: '1', max: '100000', step: '1', value: '600', inputmode: 'numeric' });
  const start = el('button', { type: 'button', id: 'op-start' }, t('op.start'));
  const runMsg = el('p', { id: 'op-msg', class: 'msg', role: 'status' });
  const runs = el('div', { id: 'op-runs' });
  main.append(el('section', { class: 'panel', 'aria-labelledby': 'op-runs-title' }, el('h2', { id: 'op-runs-title' }, t('op.runs')),
    el('div', { class: 'controls' }, el('span', { class: 'ctl' }, el('label', { for: 'op-scenario' }, t('op.scenario')), scen),
      el('span', { class: 'ctl' }, el('label', { for: 'op-speed' }, t('op.speed')), speed), start), runMsg, runs));
  start.addEventListener('click', async () => {
    start.disabled = true;
    try {
      const r = await post('/v1/operate/runs', { scenario: scen.value, speed: Number(speed.value) });
      runMsg.className = 'msg info';
      runMsg.textContent = t('op.started', { id: r.id });
    } catch (err) { runMsg.className = 'msg error'; runMsg.textContent = errorText(err); }
    start.disabled = false;
    await pollRuns();
  });
  async function stop(id, btn) {
    btn.disabled = true;
    try {
      const r = await post(`/v1/operate/runs/${encodeURIComponent(id)}/stop`);
      runMsg.className = 'msg info';
      runMsg.textContent = t('op.stopped', { id, n: f.num(r.sent_total, 0) });
    } catch (err) { runMsg.className = 'msg error'; runMsg.textContent = errorText(err); }
    await pollRuns();
  }
  async function pollRuns() {
    let body;
    try { body = await get('/v1/operate/runs'); } catch { return; }
    clear(runs);
    if (!body.data.length) { runs.append(el('p', {}, t('op.no_runs'))); return; }
    runs.append(el('table', { class: 'data', id: 'op-runs-table' }, el('caption', {}, t('op.runs_caption')),
      el('thead', {}, el('tr', {}, ...['op.run', 'op.scenario', 'op.state', 'op.progress', 'op.sim_clock', 'op.sent', 'op.rate', 'op.action'].map((k) => el('th', { scope: 'col' }, t(k))))),
      el('tbody', {}, ...body.data.map((r) => {
        const active = r.state === 'starting' || r.state === 'running';
        const btn = active ? el('button', { type: 'button', class: 'danger', 'data-stop': r.id, 'aria-label': t('op.stop_run', { id: r.id }) }, t('op.stop')) : '—';
        if (active) btn.addEventListener('click', () => stop(r.id, btn));
        return el('tr', { 'data-run': r.id, 'data-state': r.state },
          el('th', { scope: 'row' }, r.id), el('td', {}, r.scenario), el('td', {}, t(`run.${r.state}`)),
          el('td', {}, el('progress', { max: '1', value: String(r.progress ?? 0), 'aria-label': t('op.progress') }), ` ${f.pct(r.progress ?? 0, 0)}`),
          el('td', {}, f.dateTime(r.sim_clock)), el('td', { 'data-value': String(r.sent_total) }, f.num(r.sent_total, 0)),
          el('td', {}, r.rate === null ? '—' : `${f.num(r.rate, 0)}/s`), el('td', {}, btn));
      }))));
  }
  await pollRuns();
  const timer = setInterval(pollRuns, 1000);
  // dead letters
  const dl = el('section', { class: 'panel', 'aria-labelledby': 'op-dl-title' }, el('h2', { id: 'op-dl-title' }, t('op.dead_letters')));
  main.append(dl);
  const reason = el('select', { id: 'dl-reason' }, el('option', { value: '' }, t('dev.all')));
  const counts = el('div', { id: 'dl-counts' });
  const list = el('div', { id: 'dl-list' });
  dl.append(counts, el('div', { class: 'controls' }, el('span', { class: 'ctl' }, el('label', { for: 'dl-reason' }, t('op.reason')), reason)), list);
  async function loadLetters() {
    try {
      const c = await get('/v1/operate/dead-letters/counts', { top: 10 });
      clear(counts);
      const keep = reason.value;
      clear(reason);
      reason.append(el('option', { value: '' }, t('dev.all')), ...c.by_reason.map((r) => el('option', { value: r.reason }, `${r.reason} (${f.num(r.count, 0)})`)));
      reason.value = keep;
      counts.append(el('p', {}, t('op.dl_total', { n: f.num(c.total, 0) })));
      if (c.total) {
        counts.append(el('div', { class: 'grid-2' },
          el('table', { class: 'data compact', id: 'dl-by-reason' }, el('caption', {}, t('op.by_reason')),
            el('thead', {}, el('tr', {}, el('th', { scope: 'col' }, t('op.reason')), el('th', { scope: 'col' }, t('ov.count')))),
            el('tbody', {}, ...c.by_reason.map((r) => el('tr', {}, el('th', { scope: 'row' }, r.reason), el('td', {}, f.num(r.count, 0)))))),
          el('table', { class: 'data compact', id: 'dl-by-device' }, el('caption', {}, t('op.by_device')),
            el('thead', {}, el('tr', {}, el('th', { scope: 'col' }, t('dev.device')), el('th', { scope: 'col' }, t('ov.count')))),
            el('tbody', {}, ...c.by_device.map((r) => el('tr', {}, el('th', { scope: 'row' }, r.device_id ?? t('op.no_device')), el('td', {}, f.num(r.count, 0))))))));
      }
      const l = await get('/v1/operate/dead-letters', { reason: reason.value, limit: 20, payload_max: 300 });
      clear(list);
      if (!l.data.length) { list.append(el('p', {}, t('op.dl_none'))); return; }
      list.append(el('table', { class: 'data', id: 'dl-table' }, el('caption', {}, t('op.dl_caption', { n: f.num(l.count, 0) })),
        el('thead', {}, el('tr', {}, ...['op.received', 'op.topic', 'dev.device', 'op.reason', 'op.detail', 'op.payload'].map((k) => el('th', { scope: 'col' }, t(k))))),
        el('tbody', {}, ...l.data.map((r) => el('tr', {}, el('td', {}, f.dateTime(r.received_at)), el('td', {}, el('code', {}, r.topic)),
          el('td', {}, r.device_id ?? '—'), el('td', {}, r.reason), el('td', {}, r.detail ?? ''),
          el('td', {}, el('pre', { class: 'payload', tabindex: '0' }, r.payload_encoding === 'base64' ? `base64: ${r.payload}` : r.payload)))))));
    } catch (err) { clear(list); list.append(el('p', { class: 'msg error' }, errorText(err))); }
  }
  reason.addEventListener('change', loadLetters);
  await loadLetters();
  return () => clearInterval(timer);
}
