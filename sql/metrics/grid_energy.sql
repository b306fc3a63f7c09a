-- Grid energy (and solar export: the same functions with p_solar = true, restricted to the
-- meters the registry marks `"solar": true`), from the meters' cumulative indices.
--
-- Consecutive readings of a meter make intervals (previous time, time] with the index
-- difference; a decrease of an index is a reset (meter replaced): the new index is the
-- energy since the reset. Readings more than p_max_interval apart make no interval (the
-- energy in between is unknown), so an answer never depends on how far the query looks
-- around its range: the range's readings plus, per meter, the last one before it and the
-- first one after it (each at most p_max_interval away). Intervals are cut at bucket edges;
-- an interval spanning an edge (a gap) is shared in proportion to time and its buckets are
-- flagged `estimated` (cross_start / cross_end: it spans the bucket's start / end). `gap`:
-- readings further apart than p_gap reporting intervals.
--
-- The cell functions (grid_energy from raw readings, grid_energy_rollup from the hourly
-- rollup, grid_energy_days from the daily one) return one row per meter and bucket; the
-- route sums them in Python (math.fsum: the same answer whatever the rows' order). A
-- district also has its own rollups, per UTC half hour and per local day, read by
-- grid_energy_site_30m and grid_energy_site_days.

CREATE FUNCTION metric.grid_meters(p_site text, p_device text, p_solar boolean)
RETURNS TABLE (id text, ri integer)
LANGUAGE sql STABLE AS $$
    SELECT d.id, d.report_interval_s FROM devices d
    WHERE d.family = 'grid_meter'
      AND (p_site IS NULL OR d.site_id = p_site) AND (p_device IS NULL OR d.id = p_device)
      AND (NOT p_solar OR d.metadata -> 'solar' = 'true'::jsonb)
$$;

-- How many meters (solar producers with p_solar) a district or a meter counts.
CREATE FUNCTION metric.grid_meter_count(p_site text, p_device text, p_solar boolean)
RETURNS TABLE (meters bigint)
LANGUAGE sql STABLE AS $$
    SELECT count(*) FROM metric.grid_meters(p_site, p_device, p_solar)
$$;

CREATE FUNCTION metric.grid_energy(p_site text, p_device text, p_edges timestamptz[],
                                   p_lo timestamptz, p_hi timestamptz, p_gap float8,
                                   p_max_interval interval, p_solar boolean)
RETURNS TABLE (i integer, device_id text, intervals bigint, import_wh float8,
               export_wh float8, covered_s float8, estimated boolean, reset boolean,
               gap boolean, cross_start boolean, cross_end boolean)
LANGUAGE sql STABLE AS $$
    WITH dv AS (SELECT id, ri FROM metric.grid_meters(p_site, p_device, p_solar)),
    pts AS (
        SELECT g.device_id, g.time, g.energy_import_wh AS ei, g.energy_export_wh AS ee
        FROM grid_readings g
        WHERE g.device_id IN (SELECT id FROM dv) AND g.time >= p_lo AND g.time <= p_hi
        UNION ALL
        SELECT dv.id, b.time, b.energy_import_wh, b.energy_export_wh
        FROM dv CROSS JOIN LATERAL (
            SELECT g.time, g.energy_import_wh, g.energy_export_wh FROM grid_readings g
            WHERE g.device_id = dv.id AND g.time < p_lo AND g.time >= p_lo - p_max_interval
            ORDER BY g.time DESC LIMIT 1) b
        UNION ALL
        SELECT dv.id, f.time, f.energy_import_wh, f.energy_export_wh
        FROM dv CROSS JOIN LATERAL (
            SELECT g.time, g.energy_import_wh, g.energy_export_wh FROM grid_readings g
            WHERE g.device_id = dv.id AND g.time > p_hi AND g.time <= p_hi + p_max_interval
            ORDER BY g.time LIMIT 1) f
    ),
    r AS (
        SELECT p.device_id, p.time, p.ei, p.ee, dv.ri,
               lag(p.time) OVER w AS pt, lag(p.ei) OVER w AS pei, lag(p.ee) OVER w AS pee
        FROM pts p JOIN dv ON dv.id = p.device_id
        WINDOW w AS (PARTITION BY p.device_id ORDER BY p.time)
    ),
    iv AS (
        SELECT device_id, pt AS s, time AS e,
               CASE WHEN ei < pei THEN ei ELSE ei - pei END AS di,
               CASE WHEN ee < pee THEN ee ELSE ee - pee END AS de,
               coalesce(ei < pei, false) OR coalesce(ee < pee, false) AS reset,
               extract(epoch FROM time - pt) > ri * p_gap AS gap,
               extract(epoch FROM time - pt)::float8 AS len
        FROM r WHERE pt IS NOT NULL AND time > p_lo AND pt < p_hi
          AND time - pt <= p_max_interval
    )
    SELECT g.i, iv.device_id, count(*),
           sum(iv.di * o.overlap / iv.len), sum(iv.de * o.overlap / iv.len),
           sum(o.overlap), bool_or(o.overlap < iv.len), bool_or(iv.reset), bool_or(iv.gap),
           bool_or(iv.s < p_edges[g.i]), bool_or(iv.e > p_edges[g.i + 1])
    FROM iv
    CROSS JOIN LATERAL generate_series(
        greatest(width_bucket(iv.s, p_edges), 1),
        least(width_bucket(iv.e - interval '1 microsecond', p_edges),
              cardinality(p_edges) - 1)) g(i)
    CROSS JOIN LATERAL (SELECT extract(epoch FROM least(iv.e, p_edges[g.i + 1])
                                              - greatest(iv.s, p_edges[g.i]))::float8
                               AS overlap) o
    GROUP BY 1, 2
$$;

-- The same cells from the meters' hourly rollup (buckets made of whole UTC hours): sums over
-- the hours of the bucket; an interval spans the bucket's start (end) when one spans the
-- start of its first hour (the end of its last).
CREATE FUNCTION metric.grid_energy_rollup(p_site text, p_device text, p_edges timestamptz[],
                                          p_lo timestamptz, p_hi timestamptz, p_gap float8,
                                          p_max_interval interval, p_solar boolean)
RETURNS TABLE (i integer, device_id text, intervals bigint, import_wh float8,
               export_wh float8, covered_s float8, estimated boolean, reset boolean,
               gap boolean, cross_start boolean, cross_end boolean)
LANGUAGE sql STABLE AS $$
    SELECT x.i, x.device_id, sum(x.intervals)::bigint, sum(x.import_wh), sum(x.export_wh),
           sum(x.covered_s), bool_or(x.cs OR x.ce), bool_or(x.reset), bool_or(x.gap),
           bool_or(x.cs), bool_or(x.ce)
    FROM (SELECT width_bucket(r.hour, p_edges) AS i, r.device_id, r.intervals, r.import_wh,
                 r.export_wh, r.covered_s, r.reset, r.gap,
                 r.cross_start AND r.hour = p_edges[width_bucket(r.hour, p_edges)] AS cs,
                 r.cross_end AND r.hour + interval '1 hour'
                                 = p_edges[width_bucket(r.hour, p_edges) + 1] AS ce
          FROM rollup_grid_1h r
          WHERE r.device_id IN (SELECT id FROM metric.grid_meters(p_site, p_device, p_solar))
            AND r.intervals > 0 AND r.hour >= p_lo AND r.hour < p_hi) x
    GROUP BY 1, 2
$$;

-- The same cells from the meters' daily or monthly rollup (p_period 'day' or 'month':
-- buckets made of whole local days, or months, of zone p_tz). Both tables are one relation
-- here; the planner keeps only the branch of p_period (a constant in every call).
CREATE FUNCTION metric.grid_energy_periods(p_site text, p_device text,
                                           p_edges timestamptz[], p_lo timestamptz,
                                           p_hi timestamptz, p_solar boolean, p_tz text,
                                           p_period text)
RETURNS TABLE (i integer, device_id text, intervals bigint, import_wh float8,
               export_wh float8, covered_s float8, estimated boolean, reset boolean,
               gap boolean, cross_start boolean, cross_end boolean)
LANGUAGE sql STABLE AS $$
    WITH r AS (
        SELECT 'day' AS period, d.device_id, d.tz, d.day_start AS s, d.day_end AS e,
               d.intervals, d.import_wh, d.export_wh, d.covered_s, d.reset, d.gap,
               d.cross_start, d.cross_end
        FROM rollup_grid_meter_1d d
        UNION ALL
        SELECT 'month', m.device_id, m.tz, m.month_start, m.month_end, m.intervals,
               m.import_wh, m.export_wh, m.covered_s, m.reset, m.gap, m.cross_start,
               m.cross_end
        FROM rollup_grid_meter_1mo m)
    SELECT x.i, x.device_id, sum(x.intervals)::bigint, sum(x.import_wh), sum(x.export_wh),
           sum(x.covered_s), bool_or(x.cs OR x.ce), bool_or(x.reset), bool_or(x.gap),
           bool_or(x.cs), bool_or(x.ce)
    FROM (SELECT width_bucket(r.s, p_edges) AS i, r.device_id, r.intervals, r.import_wh,
                 r.export_wh, r.covered_s, r.reset, r.gap,
                 r.cross_start AND r.s = p_edges[width_bucket(r.s, p_edges)] AS cs,
                 r.cross_end AND r.e = p_edges[width_bucket(r.s, p_edges) + 1] AS ce
          FROM r
          WHERE r.period = p_period
            AND r.device_id IN (SELECT id FROM metric.grid_meters(p_site, p_device, p_solar))
            AND r.tz = p_tz AND r.intervals > 0 AND r.s >= p_lo AND r.s < p_hi) x
    GROUP BY 1, 2
$$;

-- The readers of the meters' days (1d, 1w and 1mo buckets in the configured zone) and of
-- their months (1mo buckets there).
CREATE FUNCTION metric.grid_energy_days(p_site text, p_device text, p_edges timestamptz[],
                                        p_lo timestamptz, p_hi timestamptz, p_gap float8,
                                        p_max_interval interval, p_solar boolean,
                                        p_tz text)
RETURNS TABLE (i integer, device_id text, intervals bigint, import_wh float8,
               export_wh float8, covered_s float8, estimated boolean, reset boolean,
               gap boolean, cross_start boolean, cross_end boolean)
LANGUAGE sql STABLE AS $$
    SELECT * FROM metric.grid_energy_periods(p_site, p_device, p_edges, p_lo, p_hi, p_solar,
                                             p_tz, 'day')
$$;

CREATE FUNCTION metric.grid_energy_months(p_site text, p_device text,
                                          p_edges timestamptz[], p_lo timestamptz,
                                          p_hi timestamptz, p_gap float8,
                                          p_max_interval interval, p_solar boolean,
                                          p_tz text)
RETURNS TABLE (i integer, device_id text, intervals bigint, import_wh float8,
               export_wh float8, covered_s float8, estimated boolean, reset boolean,
               gap boolean, cross_start boolean, cross_end boolean)
LANGUAGE sql STABLE AS $$
    SELECT * FROM metric.grid_energy_periods(p_site, p_device, p_edges, p_lo, p_hi, p_solar,
                                             p_tz, 'month')
$$;

-- What rollup_grid_meter_1mo stores for the local months of p_edges (their starts, then
-- the end of the last), zone p_tz: each meter's cells of those months from its days.
CREATE FUNCTION metric.grid_meter_months_fill(p_edges timestamptz[], p_lo timestamptz,
                                              p_hi timestamptz, p_tz text)
RETURNS TABLE (month date, tz text, month_start timestamptz, month_end timestamptz,
               device_id text, intervals integer, import_wh float8, export_wh float8,
               covered_s float8, reset boolean, gap boolean, cross_start boolean,
               cross_end boolean)
LANGUAGE sql STABLE AS $$
    SELECT (p_edges[c.i] AT TIME ZONE p_tz)::date, p_tz, p_edges[c.i], p_edges[c.i + 1],
           c.device_id, c.intervals::integer, c.import_wh, c.export_wh, c.covered_s, c.reset,
           c.gap, c.cross_start, c.cross_end
    FROM metric.grid_energy_days(NULL, NULL, p_edges, p_lo, p_hi, NULL, NULL, false, p_tz) c
$$;

-- A district's buckets from its meters' cells, computed as the route computes them: meters
-- with data, complete meters (covered the whole bucket, no estimate, no reset), import and
-- export, the sum of the meters' mean powers, covered seconds, flags. From the raw readings,
-- or with p_from_hours from the hourly rollup. Every district (site at rollup time).
CREATE FUNCTION metric.grid_energy_sites(p_edges timestamptz[], p_lo timestamptz,
                                         p_hi timestamptz, p_gap float8,
                                         p_max_interval interval, p_from_hours boolean)
RETURNS TABLE (i integer, site_id text, meters integer, complete_meters integer,
               import_wh float8, export_wh float8, mean_power_w float8, covered_s float8,
               estimated boolean, reset boolean, gap boolean)
LANGUAGE sql STABLE AS $$
    WITH y AS (
        SELECT * FROM metric.grid_energy(NULL, NULL, p_edges, p_lo, p_hi, p_gap,
                                         p_max_interval, false)
        WHERE NOT p_from_hours
        UNION ALL
        SELECT * FROM metric.grid_energy_rollup(NULL, NULL, p_edges, p_lo, p_hi, NULL, NULL,
                                                false)
        WHERE p_from_hours
    ),
    c AS (
        SELECT y.device_id, y.i, coalesce(y.import_wh, 0) AS imp,
               coalesce(y.export_wh, 0) AS exp, y.covered_s AS cov, y.estimated, y.reset,
               y.gap
        FROM y)
    SELECT c.i, d.site_id, count(*)::integer,
           (count(*) FILTER (WHERE c.cov >= extract(epoch FROM p_edges[c.i + 1]
                                                               - p_edges[c.i]) - 0.5
                            AND NOT c.estimated AND NOT c.reset))::integer,
           sum(c.imp), sum(c.exp),
           coalesce(sum((c.imp - c.exp) * 3600 / c.cov) FILTER (WHERE c.cov <> 0), 0),
           sum(c.cov), bool_or(c.estimated), bool_or(c.reset), bool_or(c.gap)
    FROM c JOIN devices d ON d.id = c.device_id
    WHERE d.site_id IS NOT NULL
    GROUP BY c.i, d.site_id
$$;

-- A district's half-hour buckets (the load curve), from its own rollup (p_site only).
CREATE FUNCTION metric.grid_energy_site_30m(p_site text, p_device text,
                                            p_edges timestamptz[], p_lo timestamptz,
                                            p_hi timestamptz, p_gap float8,
                                            p_max_interval interval, p_solar boolean)
RETURNS TABLE (i integer, meters integer, complete_meters integer, import_wh float8,
               export_wh float8, mean_power_w float8, covered_s float8, estimated boolean,
               reset boolean, gap boolean)
LANGUAGE sql STABLE AS $$
    SELECT width_bucket(r.slot, p_edges), r.meters, r.complete_meters, r.import_wh,
           r.export_wh, r.mean_power_w, r.covered_s, r.estimated, r.reset, r.gap
    FROM rollup_grid_site_30m r
    WHERE r.site_id = p_site AND r.slot >= p_lo AND r.slot < p_hi
$$;

-- ...and its daily buckets in zone p_tz (the configured one), from its own daily rollup.
CREATE FUNCTION metric.grid_energy_site_days(p_site text, p_device text,
                                             p_edges timestamptz[], p_lo timestamptz,
                                             p_hi timestamptz, p_gap float8,
                                             p_max_interval interval, p_solar boolean,
                                             p_tz text)
RETURNS TABLE (i integer, meters integer, complete_meters integer, import_wh float8,
               export_wh float8, mean_power_w float8, covered_s float8, estimated boolean,
               reset boolean, gap boolean)
LANGUAGE sql STABLE AS $$
    SELECT width_bucket(r.day_start, p_edges), r.meters, r.complete_meters, r.import_wh,
           r.export_wh, r.mean_power_w, r.covered_s, r.estimated, r.reset, r.gap
    FROM rollup_grid_site_1d r
    WHERE r.site_id = p_site AND r.tz = p_tz AND r.day_start >= p_lo AND r.day_start < p_hi
$$;

-- What the districts' rollups store: per UTC half hour, from the raw readings...
CREATE FUNCTION metric.grid_site_30m_fill(p_edges timestamptz[], p_lo timestamptz,
                                          p_hi timestamptz, p_gap float8,
                                          p_max_interval interval)
RETURNS TABLE (slot timestamptz, site_id text, meters integer, complete_meters integer,
               import_wh float8, export_wh float8, mean_power_w float8, covered_s float8,
               estimated boolean, reset boolean, gap boolean)
LANGUAGE sql STABLE AS $$
    SELECT p_edges[s.i], s.site_id, s.meters, s.complete_meters, s.import_wh, s.export_wh,
           s.mean_power_w, s.covered_s, s.estimated, s.reset, s.gap
    FROM metric.grid_energy_sites(p_edges, p_lo, p_hi, p_gap, p_max_interval, false) s
$$;

-- ...and per local day of zone p_tz (p_edges: the days' starts), from the hourly rollup.
CREATE FUNCTION metric.grid_site_days_fill(p_edges timestamptz[], p_lo timestamptz,
                                           p_hi timestamptz, p_tz text)
RETURNS TABLE (day date, tz text, day_start timestamptz, site_id text, meters integer,
               complete_meters integer, import_wh float8, export_wh float8,
               mean_power_w float8, covered_s float8, estimated boolean, reset boolean,
               gap boolean)
LANGUAGE sql STABLE AS $$
    SELECT (p_edges[s.i] AT TIME ZONE p_tz)::date, p_tz, p_edges[s.i], s.site_id, s.meters,
           s.complete_meters, s.import_wh, s.export_wh, s.mean_power_w, s.covered_s,
           s.estimated, s.reset, s.gap
    FROM metric.grid_energy_sites(p_edges, p_lo, p_hi, NULL, NULL, true) s
$$;
