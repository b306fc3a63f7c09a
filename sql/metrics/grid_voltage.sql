-- Grid voltage quality (EN 50160): the 10-minute mean voltages per meter and phase, counted
-- per bucket: how many, how many within [p_vmin, p_vmax] (230 V +-10 %), lowest, highest.
-- grid_voltage_by groups by p_key as grid_peaks_by does (NULL: one group; 'device').
--
-- This file, the last of the family in name order (the files are loaded in that order),
-- also holds the fill functions of the meters' own rollups, which carry energy, peaks and
-- voltage together: rollup_grid_1h (hours) and rollup_grid_meter_1d (local days).

CREATE FUNCTION metric.grid_voltage_by(p_site text, p_device text, p_edges timestamptz[],
                                       p_lo timestamptz, p_hi timestamptz, p_vmin float8,
                                       p_vmax float8, p_key text)
RETURNS TABLE (grp text, i integer, n bigint, within bigint, min_v float8, max_v float8)
LANGUAGE sql STABLE AS $$
    WITH m AS (
        SELECT CASE p_key WHEN 'device' THEN g.device_id WHEN 'site' THEN d.site_id END
                 AS grp,
               g.device_id, time_bucket('10 minutes', g.time) AS slot, v.phase,
               avg(v.volts::float8) AS mean_v
        FROM grid_readings g JOIN devices d ON d.id = g.device_id
        CROSS JOIN LATERAL (VALUES (1, g.voltage_l1_v), (2, g.voltage_l2_v),
                                   (3, g.voltage_l3_v)) v(phase, volts)
        WHERE d.family = 'grid_meter'
          AND (p_site IS NULL OR d.site_id = p_site) AND (p_device IS NULL OR d.id = p_device)
          AND g.time >= p_lo AND g.time < p_hi AND v.volts IS NOT NULL
        GROUP BY 1, 2, 3, 4
    )
    SELECT m.grp, width_bucket(m.slot, p_edges), count(*),
           count(*) FILTER (WHERE m.mean_v BETWEEN p_vmin AND p_vmax),
           min(m.mean_v), max(m.mean_v)
    FROM m GROUP BY 1, 2
$$;

CREATE FUNCTION metric.grid_voltage(p_site text, p_device text, p_edges timestamptz[],
                                    p_lo timestamptz, p_hi timestamptz, p_vmin float8,
                                    p_vmax float8)
RETURNS TABLE (i integer, n bigint, within bigint, min_v float8, max_v float8)
LANGUAGE sql STABLE AS $$
    SELECT x.i, x.n, x.within, x.min_v, x.max_v
    FROM metric.grid_voltage_by(p_site, p_device, p_edges, p_lo, p_hi, p_vmin, p_vmax,
                                NULL) x
$$;

-- From the meters' hourly rollup (buckets of whole UTC hours)...
CREATE FUNCTION metric.grid_voltage_rollup(p_site text, p_device text, p_edges timestamptz[],
                                           p_lo timestamptz, p_hi timestamptz,
                                           p_vmin float8, p_vmax float8)
RETURNS TABLE (i integer, n bigint, within bigint, min_v float8, max_v float8)
LANGUAGE sql STABLE AS $$
    SELECT width_bucket(r.hour, p_edges), sum(r.v_n), sum(r.v_within), min(r.v_min),
           max(r.v_max)
    FROM rollup_grid_1h r
    WHERE r.device_id IN (SELECT id FROM metric.grid_meters(p_site, p_device, false))
      AND r.v_n > 0 AND r.hour >= p_lo AND r.hour < p_hi
    GROUP BY 1
$$;

-- ...and from their daily rollup (buckets of whole local days of zone p_tz).
CREATE FUNCTION metric.grid_voltage_days(p_site text, p_device text, p_edges timestamptz[],
                                         p_lo timestamptz, p_hi timestamptz, p_vmin float8,
                                         p_vmax float8, p_tz text)
RETURNS TABLE (i integer, n bigint, within bigint, min_v float8, max_v float8)
LANGUAGE sql STABLE AS $$
    SELECT width_bucket(r.day_start, p_edges), sum(r.v_n), sum(r.v_within), min(r.v_min),
           max(r.v_max)
    FROM rollup_grid_meter_1d r
    WHERE r.device_id IN (SELECT id FROM metric.grid_meters(p_site, p_device, false))
      AND r.tz = p_tz AND r.v_n > 0 AND r.day_start >= p_lo AND r.day_start < p_hi
    GROUP BY 1
$$;

-- What the meters' hourly rollup stores for the hours [p_lo, p_hi) (p_edges: every hour):
-- each meter's energy cells (grid_energy), its peak (grid_peaks_by) and its voltage counts,
-- one row per meter and hour with any of them.
CREATE FUNCTION metric.grid_meter_hours_fill(p_edges timestamptz[], p_lo timestamptz,
                                             p_hi timestamptz, p_gap float8,
                                             p_max_interval interval, p_vmin float8,
                                             p_vmax float8)
RETURNS TABLE (hour timestamptz, device_id text, intervals integer, import_wh float8,
               export_wh float8, covered_s float8, reset boolean, gap boolean,
               cross_start boolean, cross_end boolean, peak_w float8,
               peak_slot timestamptz, v_n integer, v_within integer, v_min float8,
               v_max float8)
LANGUAGE sql STABLE AS $$
    WITH en AS (
        SELECT * FROM metric.grid_energy(NULL, NULL, p_edges, p_lo, p_hi, p_gap,
                                         p_max_interval, false)),
    pk AS (SELECT * FROM metric.grid_peaks_by(NULL, NULL, p_edges, p_lo, p_hi, 'device')),
    vq AS (SELECT * FROM metric.grid_voltage_by(NULL, NULL, p_edges, p_lo, p_hi, p_vmin,
                                                p_vmax, 'device')),
    pv AS (
        SELECT coalesce(pk.grp, vq.grp) AS dev, coalesce(pk.i, vq.i) AS k, pk.power_w,
               pk.slot, vq.n, vq.within, vq.min_v, vq.max_v
        FROM pk FULL JOIN vq ON vq.grp = pk.grp AND vq.i = pk.i)
    SELECT p_edges[coalesce(en.i, pv.k)], coalesce(en.device_id, pv.dev),
           coalesce(en.intervals, 0)::integer, en.import_wh, en.export_wh,
           coalesce(en.covered_s, 0), coalesce(en.reset, false), coalesce(en.gap, false),
           coalesce(en.cross_start, false), coalesce(en.cross_end, false), pv.power_w,
           pv.slot, coalesce(pv.n, 0)::integer, coalesce(pv.within, 0)::integer, pv.min_v,
           pv.max_v
    FROM en FULL JOIN pv ON pv.dev = en.device_id AND pv.k = en.i
$$;

-- What the meters' daily rollup stores for the local days of zone p_tz starting in
-- [p_lo, p_hi) (p_edges: the days' starts, then the end of the last), from the hourly
-- rollup: the energy cells of each day (grid_energy_rollup), the highest hourly peak (the
-- earliest on a tie), the voltage counts summed.
CREATE FUNCTION metric.grid_meter_days_fill(p_edges timestamptz[], p_lo timestamptz,
                                            p_hi timestamptz, p_tz text)
RETURNS TABLE (day date, tz text, day_start timestamptz, day_end timestamptz,
               device_id text, intervals integer, import_wh float8, export_wh float8,
               covered_s float8, reset boolean, gap boolean, cross_start boolean,
               cross_end boolean, peak_w float8, peak_slot timestamptz, v_n integer,
               v_within integer, v_min float8, v_max float8)
LANGUAGE sql STABLE AS $$
    WITH en AS (
        SELECT * FROM metric.grid_energy_rollup(NULL, NULL, p_edges, p_lo, p_hi, NULL, NULL,
                                                false)),
    pv AS (
        SELECT r.device_id AS dev, width_bucket(r.hour, p_edges) AS k,
               max(r.peak_w) AS peak_w,
               (array_agg(r.peak_slot ORDER BY r.peak_w DESC, r.peak_slot)
                  FILTER (WHERE r.peak_w IS NOT NULL))[1] AS peak_slot,
               sum(r.v_n) AS v_n, sum(r.v_within) AS v_within, min(r.v_min) AS v_min,
               max(r.v_max) AS v_max
        FROM rollup_grid_1h r
        WHERE r.device_id IN (SELECT id FROM metric.grid_meters(NULL, NULL, false))
          AND r.hour >= p_lo AND r.hour < p_hi
        GROUP BY 1, 2)
    SELECT (p_edges[coalesce(en.i, pv.k)] AT TIME ZONE p_tz)::date, p_tz,
           p_edges[coalesce(en.i, pv.k)], p_edges[coalesce(en.i, pv.k) + 1],
           coalesce(en.device_id, pv.dev), coalesce(en.intervals, 0)::integer,
           en.import_wh, en.export_wh, coalesce(en.covered_s, 0), coalesce(en.reset, false),
           coalesce(en.gap, false), coalesce(en.cross_start, false),
           coalesce(en.cross_end, false), pv.peak_w, pv.peak_slot,
           coalesce(pv.v_n, 0)::integer, coalesce(pv.v_within, 0)::integer, pv.v_min,
           pv.v_max
    FROM en FULL JOIN pv ON pv.dev = en.device_id AND pv.k = en.i
$$;
