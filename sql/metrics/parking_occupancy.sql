-- Parking occupancy: spot-seconds occupied and free per bucket of p_edges (width_bucket
-- numbering, 1-based), time-weighted. A site (p_site: a parking zone) sums its sensors; a
-- device (p_device) is one spot sensor. Each reported state holds from its time until the
-- sensor's next report, but at most p_stale report intervals (the sensor's own
-- report_interval_s): after that the spot is unknown, neither free nor occupied; a state
-- `unknown` counts as unknown too. The rest of capacity x bucket length is unknown
-- (computed by the caller, which knows the capacity).
-- Rollups: rollup_parking_spot_1h (per sensor and UTC hour, filled by parking_spot_fill)
-- and rollup_parking_zone_15m (per zone and UTC quarter hour, parking_zone_fill): a zone
-- reads its quarter hours, a spot its hours (parking_occupancy_rollup).
-- Also here: the state of each spot at an instant (parking_spots_at, the zone's current
-- counts, the open data's real-time feed), with the same stale-after rule.

-- The spot sensors of a zone, or one sensor (both NULL: every sensor). parking_turnover
-- uses it too.
CREATE FUNCTION metric.parking_spots(p_site text, p_device text)
RETURNS TABLE (id text, site_id text, report_interval_s integer)
LANGUAGE sql STABLE AS $$
    SELECT d.id, d.site_id, d.report_interval_s FROM devices d
    WHERE d.family = 'parking_spot'
      AND (p_site IS NULL OR d.site_id = p_site) AND (p_device IS NULL OR d.id = p_device)
$$;

-- How far before a range the occupancy reads to find the state in force at its start:
-- p_stale report intervals of the slowest of the sensors (an older report is stale by then).
CREATE FUNCTION metric.parking_occupancy_lookback(p_site text, p_device text,
                                                  p_stale integer)
RETURNS TABLE (lookback interval)
LANGUAGE sql STABLE AS $$
    SELECT make_interval(secs => coalesce(max(s.report_interval_s), 0) * p_stale)
    FROM metric.parking_spots(p_site, p_device) s
$$;

-- The pieces: each state interval, clipped to [p_lo, p_hi) and cut at the bucket edges,
-- per sensor (with its zone), bucket and state, in seconds (numeric: exact sums). The
-- reports before p_lo are read back to the lookback, for the state in force at p_lo.
CREATE FUNCTION metric.parking_spot_seconds(p_site text, p_device text,
                                            p_edges timestamptz[], p_lo timestamptz,
                                            p_hi timestamptz, p_stale integer)
RETURNS TABLE (device_id text, site_id text, i integer, state text, seconds numeric)
LANGUAGE sql STABLE AS $$
    WITH r AS (
        SELECT p.device_id, s.site_id, p.time, p.state,
               p.time + make_interval(secs => s.report_interval_s * p_stale) AS stale_at,
               lead(p.time) OVER (PARTITION BY p.device_id ORDER BY p.time) AS next_time
        FROM parking_spot_state p
        JOIN metric.parking_spots(p_site, p_device) s ON s.id = p.device_id
        WHERE p.time >= p_lo - (SELECT lookback FROM metric.parking_occupancy_lookback(
                                    p_site, p_device, p_stale))
          -- the longest lookback the registry allows (report_interval_s <= 7 days): a
          -- bound the planner knows, so that it leaves the older chunks out of the plan
          AND p.time >= p_lo - make_interval(days => 7 * p_stale)
          AND p.time < p_hi
    ),
    iv AS (
        SELECT device_id, site_id, state, greatest(time, p_lo) AS s,
               least(coalesce(next_time, 'infinity'), stale_at, p_hi) AS e
        FROM r
    )
    SELECT iv.device_id, iv.site_id, g.i, iv.state,
           extract(epoch FROM least(iv.e, p_edges[g.i + 1]) - greatest(iv.s, p_edges[g.i]))
    FROM iv
    CROSS JOIN LATERAL generate_series(width_bucket(iv.s, p_edges),
                                       width_bucket(iv.e - interval '1 microsecond',
                                                    p_edges)) g(i)
    WHERE iv.e > iv.s
$$;

-- Per bucket: spot-seconds occupied and free (buckets without any are left out).
CREATE FUNCTION metric.parking_occupancy(p_site text, p_device text, p_edges timestamptz[],
                                         p_lo timestamptz, p_hi timestamptz,
                                         p_stale integer)
RETURNS TABLE (i integer, occupied_s double precision, free_s double precision)
LANGUAGE sql STABLE AS $$
    SELECT x.i, coalesce(sum(x.seconds) FILTER (WHERE x.state = 'occupied'), 0)::float8,
           coalesce(sum(x.seconds) FILTER (WHERE x.state = 'free'), 0)::float8
    FROM metric.parking_spot_seconds(p_site, p_device, p_edges, p_lo, p_hi, p_stale) x
    WHERE x.state IN ('occupied', 'free')
    GROUP BY x.i
$$;

-- The same from the rollups: a zone from its quarter hours, a spot from its hours
-- (buckets made of whole slots). p_stale is not needed (the fill applied it).
CREATE FUNCTION metric.parking_occupancy_rollup(p_site text, p_device text,
                                                p_edges timestamptz[], p_lo timestamptz,
                                                p_hi timestamptz, p_stale integer)
RETURNS TABLE (i integer, occupied_s double precision, free_s double precision)
LANGUAGE sql STABLE AS $$
    SELECT width_bucket(z.slot, p_edges), sum(z.occupied_s), sum(z.free_s)
    FROM rollup_parking_zone_15m z
    WHERE p_device IS NULL AND z.site_id = p_site AND z.slot >= p_lo AND z.slot < p_hi
    GROUP BY 1
    UNION ALL
    SELECT width_bucket(h.hour, p_edges), sum(h.occupied_s), sum(h.free_s)
    FROM rollup_parking_spot_1h h
    WHERE h.device_id IN (SELECT id FROM metric.parking_spots(p_site, p_device))
      AND p_device IS NOT NULL AND h.hour >= p_lo AND h.hour < p_hi
    GROUP BY 1
$$;

-- What rollup_parking_spot_1h stores for the hours of p_edges: per sensor and hour with
-- any known state...
CREATE FUNCTION metric.parking_spot_fill(p_edges timestamptz[], p_lo timestamptz,
                                         p_hi timestamptz, p_stale integer)
RETURNS TABLE (hour timestamptz, device_id text, occupied_s double precision,
               free_s double precision)
LANGUAGE sql STABLE AS $$
    SELECT p_edges[x.i], x.device_id,
           coalesce(sum(x.seconds) FILTER (WHERE x.state = 'occupied'), 0)::float8,
           coalesce(sum(x.seconds) FILTER (WHERE x.state = 'free'), 0)::float8
    FROM metric.parking_spot_seconds(NULL, NULL, p_edges, p_lo, p_hi, p_stale) x
    WHERE x.state IN ('occupied', 'free')
    GROUP BY x.i, x.device_id
$$;

-- ...and rollup_parking_zone_15m for the quarter hours of p_edges: per zone (of the
-- sensors at fill time) and quarter hour.
CREATE FUNCTION metric.parking_zone_fill(p_edges timestamptz[], p_lo timestamptz,
                                         p_hi timestamptz, p_stale integer)
RETURNS TABLE (slot timestamptz, site_id text, occupied_s double precision,
               free_s double precision)
LANGUAGE sql STABLE AS $$
    SELECT p_edges[x.i], x.site_id,
           coalesce(sum(x.seconds) FILTER (WHERE x.state = 'occupied'), 0)::float8,
           coalesce(sum(x.seconds) FILTER (WHERE x.state = 'free'), 0)::float8
    FROM metric.parking_spot_seconds(NULL, NULL, p_edges, p_lo, p_hi, p_stale) x
    WHERE x.state IN ('occupied', 'free')
    GROUP BY x.i, x.site_id
$$;

-- Each active spot sensor of a zone (p_site NULL: of every zone) at instant p_at: its
-- latest report at or before p_at if younger than p_stale report intervals, else
-- `unknown`. p_at NULL is now, counting reports stamped ahead of the server's clock: the
-- caller's clock p_now, passed rather than read with now() so that the planner knows the
-- bound below and plans only the latest chunks (with now() inside this inlined function
-- every chunk of the hypertable was planned: 10 ms a call on a year of data, against 3).
CREATE FUNCTION metric.parking_spots_at(p_site text, p_at timestamptz, p_now timestamptz,
                                        p_stale integer, p_window interval DEFAULT NULL)
RETURNS TABLE (id text, name text, site_id text, latitude double precision,
               longitude double precision, state text)
LANGUAGE sql STABLE AS $$
    SELECT d.id, d.name, d.site_id, d.latitude, d.longitude, coalesce(l.state, 'unknown')
    FROM devices d LEFT JOIN LATERAL (
        SELECT p.state FROM parking_spot_state p
        WHERE p.device_id = d.id AND p.time <= coalesce(p_at, 'infinity')
          AND p.time > coalesce(p_at, p_now) - make_interval(secs => d.report_interval_s
                                                                      * p_stale)
          -- the same bound for the slowest of the sensors asked (p_window, given by the
          -- caller: metric.parking_occupancy_lookback), else for the slowest the registry
          -- allows (7 days), which the planner applies before the join: the older chunks
          -- are left out (the last one only, for sensors reporting every 10 minutes)
          AND p.time > coalesce(p_at, p_now) - coalesce(p_window,
                                                        make_interval(days => 7 * p_stale))
        ORDER BY p.time DESC LIMIT 1) l ON true
    WHERE d.family = 'parking_spot' AND d.active AND (p_site IS NULL OR d.site_id = p_site)
$$;

-- A zone's active sensors at p_now (the caller's clock), counted per state (free,
-- occupied, unknown).
CREATE FUNCTION metric.parking_zone_current(p_site text, p_now timestamptz, p_stale integer,
                                            p_window interval DEFAULT NULL)
RETURNS TABLE (state text, n bigint)
LANGUAGE sql STABLE AS $$
    SELECT s.state, count(*)
    FROM metric.parking_spots_at(p_site, NULL, p_now, p_stale, p_window) s
    GROUP BY s.state
$$;
