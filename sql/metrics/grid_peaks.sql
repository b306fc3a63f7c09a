-- Grid peaks: per bucket, the highest power reported by a meter, or for a district the
-- highest sum over its meters of the powers stamped on the same 10-minute mark, and when
-- (the earliest such mark on a tie). ``power_w`` is float4: summed in float4 the result
-- depends on the order of the rows (430,521.8 or .9 W); cast first, the float8 sum of
-- float4 values is exact, so every run gives the same answer.
--
-- grid_peaks_by groups by p_key: NULL (one group: the routes), 'device' or 'site' (the
-- rollups: per meter, per district); the group is returned as grp.

CREATE FUNCTION metric.grid_peaks_by(p_site text, p_device text, p_edges timestamptz[],
                                     p_lo timestamptz, p_hi timestamptz, p_key text)
RETURNS TABLE (grp text, i integer, slot timestamptz, power_w float8)
LANGUAGE sql STABLE AS $$
    WITH p AS (
        SELECT CASE p_key WHEN 'device' THEN g.device_id WHEN 'site' THEN d.site_id END
                 AS grp,
               time_bucket('10 minutes', g.time) AS slot, sum(g.power_w::float8) AS power_w
        FROM grid_readings g JOIN devices d ON d.id = g.device_id
        WHERE d.family = 'grid_meter'
          AND (p_site IS NULL OR d.site_id = p_site) AND (p_device IS NULL OR d.id = p_device)
          AND g.time >= p_lo AND g.time < p_hi AND g.power_w IS NOT NULL
        GROUP BY 1, 2
    )
    SELECT DISTINCT ON (p.grp, 2) p.grp, width_bucket(p.slot, p_edges), p.slot, p.power_w
    FROM p ORDER BY p.grp, 2, p.power_w DESC, p.slot
$$;

CREATE FUNCTION metric.grid_peaks(p_site text, p_device text, p_edges timestamptz[],
                                  p_lo timestamptz, p_hi timestamptz)
RETURNS TABLE (i integer, slot timestamptz, power_w float8)
LANGUAGE sql STABLE AS $$
    SELECT x.i, x.slot, x.power_w
    FROM metric.grid_peaks_by(p_site, p_device, p_edges, p_lo, p_hi, NULL) x
$$;

-- A district's own hourly peaks (the sums of its meters' powers on each mark), numbered by
-- bucket; none for a meter (p_site NULL).
CREATE FUNCTION metric.grid_site_peak_hours(p_site text, p_edges timestamptz[],
                                            p_lo timestamptz, p_hi timestamptz)
RETURNS TABLE (i integer, slot timestamptz, power_w float8)
LANGUAGE sql STABLE AS $$
    SELECT width_bucket(r.hour, p_edges), r.peak_slot, r.peak_w
    FROM rollup_grid_site_1h r
    WHERE p_site IS NOT NULL AND r.site_id = p_site AND r.hour >= p_lo AND r.hour < p_hi
$$;

-- From the hourly rollups: a district's own (its sums on each mark), or the meter's.
CREATE FUNCTION metric.grid_peaks_rollup(p_site text, p_device text, p_edges timestamptz[],
                                         p_lo timestamptz, p_hi timestamptz)
RETURNS TABLE (i integer, slot timestamptz, power_w float8)
LANGUAGE sql STABLE AS $$
    SELECT DISTINCT ON (x.i) x.i, x.slot, x.power_w
    FROM (SELECT * FROM metric.grid_site_peak_hours(p_site, p_edges, p_lo, p_hi)
          UNION ALL
          SELECT width_bucket(r.hour, p_edges), r.peak_slot, r.peak_w
          FROM rollup_grid_1h r
          WHERE p_site IS NULL
            AND r.device_id IN (SELECT id FROM metric.grid_meters(NULL, p_device, false))
            AND r.peak_w IS NOT NULL AND r.hour >= p_lo AND r.hour < p_hi) x
    ORDER BY x.i, x.power_w DESC, x.slot
$$;

-- A meter's buckets of whole local days of zone p_tz from its daily rollup (a district's:
-- from its hourly one, as above).
CREATE FUNCTION metric.grid_peaks_days(p_site text, p_device text, p_edges timestamptz[],
                                       p_lo timestamptz, p_hi timestamptz, p_tz text)
RETURNS TABLE (i integer, slot timestamptz, power_w float8)
LANGUAGE sql STABLE AS $$
    SELECT DISTINCT ON (x.i) x.i, x.slot, x.power_w
    FROM (SELECT * FROM metric.grid_site_peak_hours(p_site, p_edges, p_lo, p_hi)
          UNION ALL
          SELECT width_bucket(r.day_start, p_edges), r.peak_slot, r.peak_w
          FROM rollup_grid_meter_1d r
          WHERE p_site IS NULL
            AND r.device_id IN (SELECT id FROM metric.grid_meters(NULL, p_device, false))
            AND r.tz = p_tz AND r.peak_w IS NOT NULL
            AND r.day_start >= p_lo AND r.day_start < p_hi) x
    ORDER BY x.i, x.power_w DESC, x.slot
$$;

-- What the districts' hourly peak rollup stores (site at rollup time).
CREATE FUNCTION metric.grid_site_hours_fill(p_edges timestamptz[], p_lo timestamptz,
                                            p_hi timestamptz)
RETURNS TABLE (hour timestamptz, site_id text, peak_w float8, peak_slot timestamptz)
LANGUAGE sql STABLE AS $$
    SELECT p_edges[x.i], x.grp, x.power_w, x.slot
    FROM metric.grid_peaks_by(NULL, NULL, p_edges, p_lo, p_hi, 'site') x
    WHERE x.grp IS NOT NULL
$$;
