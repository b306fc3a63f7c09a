// What each page can chart: the API route, the fields shown, the buckets the route accepts
// and how to tell a range with data from one without.
const enc = encodeURIComponent;
const pct = (v) => v * 100;
const kilo = (v) => v / 1000;
const minutes = (v) => v / 60;
const mega = (v) => v / 1e6;
const LONG = ['1h', '1d', '1w', '1mo'];
// a bucket where no sensor said anything has no occupancy to show (not 0 %)
const KNOWN = (r) => r.unknown_share !== null && r.unknown_share < 1;

export const PARKING = [
  { key: 'occupancy', label: 'm.occupancy', short: ['15m', '1h'], path: (z) => `/v1/parking/zones/${enc(z)}/occupancy`,
    fields: [{ key: 'occupancy', label: 'f.occupancy', unit: '%', scale: pct, known: KNOWN }],
    has: KNOWN },
  { key: 'compare', label: 'm.compare', compare: true, short: ['15m', '1h'], path: (z) => `/v1/parking/zones/${enc(z)}/occupancy`,
    fields: [{ key: 'occupancy', label: 'f.occupancy', unit: '%', scale: pct, known: KNOWN }],
    has: KNOWN },
  { key: 'turnover', label: 'm.turnover', buckets: LONG, path: (z) => `/v1/parking/zones/${enc(z)}/turnover`,
    fields: [{ key: 'arrivals', label: 'f.arrivals', digits: 0 }], has: (r) => r.arrivals > 0 },
  { key: 'stay', label: 'm.stay', buckets: LONG, path: (z) => `/v1/parking/zones/${enc(z)}/turnover`,
    fields: [{ key: 'mean_stay_s', label: 'f.mean_stay', unit: 'min', scale: minutes, digits: 0 }],
    has: (r) => r.mean_stay_s !== null },
  { key: 'revenue', label: 'm.revenue', path: (z) => `/v1/parking/zones/${enc(z)}/revenue`,
    fields: ['card', 'contactless', 'coins', 'mobile'].map((m) => ({ key: `revenue_cents_${m}`, label: `pay.${m}`, unit: '€', scale: (v) => v / 100, digits: 2 })),
    has: (r) => r.transactions > 0 },
  { key: 'faults', label: 'm.faults', path: (z) => `/v1/parking/zones/${enc(z)}/revenue`,
    fields: [{ key: 'meter_faults', label: 'f.meter_faults', digits: 0 }],
    has: (r) => r.transactions > 0 || r.meter_faults > 0 },
];

export const ENERGY = [
  { key: 'load', label: 'm.load', short: ['30m', '10m', '1h'], path: (d) => `/v1/grid/districts/${enc(d)}/energy`,
    fields: [{ key: 'mean_power_w', label: 'f.mean_power', unit: 'kW', scale: kilo }], has: (r) => r.meters > 0 },
  { key: 'energy', label: 'm.energy', short: ['1h', '1d'], path: (d) => `/v1/grid/districts/${enc(d)}/energy`,
    fields: [{ key: 'import_wh', label: 'f.import', unit: 'kWh', scale: kilo }], has: (r) => r.meters > 0 },
  { key: 'peaks', label: 'm.peaks', buckets: ['1d', '1w', '1mo'], path: (d) => `/v1/grid/districts/${enc(d)}/peaks`,
    fields: [{ key: 'peak_power_w', label: 'f.peak', unit: 'kW', scale: kilo }, { key: 'peak_at', label: 'f.peak_at', kind: 'time' }],
    has: (r) => r.peak_power_w !== null },
  { key: 'export', label: 'm.export', short: ['1h', '1d'], path: (d) => `/v1/grid/districts/${enc(d)}/export`,
    fields: [{ key: 'export_wh', label: 'f.export', unit: 'kWh', scale: kilo }, { key: 'import_wh', label: 'f.producers_import', unit: 'kWh', scale: kilo }],
    has: (r) => r.producers > 0 },
  { key: 'voltage', label: 'm.voltage', buckets: LONG, path: (d) => `/v1/grid/districts/${enc(d)}/voltage`,
    fields: [{ key: 'share_within', label: 'f.share_within', unit: '%', scale: pct, digits: 2 }, { key: 'compliant', label: 'f.compliant', kind: 'bool' },
      { key: 'min_v', label: 'f.min_v', unit: 'V', kind: 'value' }, { key: 'max_v', label: 'f.max_v', unit: 'V', kind: 'value' }], has: (r) => r.values > 0 },
];

const BINS = ['lt_1m', '1m_5m', '5m_15m', '15m_30m', '30m_1h', '1h_2h', '2h_4h', 'ge_4h'];

export const WIFI = [
  { key: 'clients', label: 'm.clients', short: ['15m', '1h'], path: (s) => `/v1/wifi/squares/${enc(s)}/clients`,
    fields: [{ key: 'clients_mean', label: 'f.clients_mean' }, { key: 'clients_max', label: 'f.clients_max' }],
    has: (r) => r.aps_reporting > 0 },
  { key: 'visitors', label: 'm.visitors', buckets: ['1h', '1d'], path: (s) => `/v1/wifi/squares/${enc(s)}/visitors`,
    fields: [{ key: 'unique_visitors', label: 'f.unique_visitors', digits: 0 }], has: (r) => r.associations > 0 },
  { key: 'dwell', label: 'm.dwell', buckets: LONG, path: (s) => `/v1/wifi/squares/${enc(s)}/dwell`,
    fields: [{ key: 'mean_dwell_s', label: 'f.mean_dwell', unit: 'min', scale: minutes }], has: (r) => r.sessions > 0 },
  { key: 'dwell_bins', label: 'm.dwell_bins', buckets: LONG, path: (s) => `/v1/wifi/squares/${enc(s)}/dwell`,
    fields: BINS.map((b) => ({ key: `sessions_${b}`, label: `bin.${b}`, digits: 0 })), has: (r) => r.sessions > 0 },
  { key: 'traffic', label: 'm.traffic', path: (s) => `/v1/wifi/squares/${enc(s)}/traffic`,
    fields: [{ key: 'rx_bytes', label: 'f.rx', unit: 'Mo', scale: mega }, { key: 'tx_bytes', label: 'f.tx', unit: 'Mo', scale: mega }],
    has: (r) => r.intervals > 0 },
];

// A device's own history, by family.
export const DEVICE = {
  parking_spot: [{ key: 'occupancy', label: 'm.occupancy', short: ['15m', '1h'], path: (d) => `/v1/parking/spots/${enc(d)}/occupancy`,
    fields: [{ key: 'occupancy', label: 'f.occupancy', unit: '%', scale: pct, known: KNOWN }], has: KNOWN }],
  parking_meter: [{ key: 'revenue', label: 'm.revenue', path: (d) => `/v1/parking/meters/${enc(d)}/revenue`,
    fields: [{ key: 'revenue_cents', label: 'f.revenue', unit: '€', scale: (v) => v / 100, digits: 2 }], has: (r) => r.transactions > 0 || r.meter_faults > 0 }],
  wifi_ap: [{ key: 'clients', label: 'm.clients', short: ['15m', '1h'], path: (d) => `/v1/wifi/aps/${enc(d)}/clients`,
    fields: [{ key: 'clients_mean', label: 'f.clients_mean' }], has: (r) => r.aps_reporting > 0 }],
  grid_meter: [{ key: 'energy', label: 'm.energy', short: ['1h', '30m'], path: (d) => `/v1/grid/meters/${enc(d)}/energy`,
    fields: [{ key: 'import_wh', label: 'f.import', unit: 'kWh', scale: kilo }], has: (r) => r.meters > 0 }],
};
