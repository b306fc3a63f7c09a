-- Wifi dwell times: sessions that ended (disassociation) per bucket of p_edges and bin of
-- p_bounds (width_bucket over the lower bounds in seconds: bin 0 is below the first), with
-- their total length. A session's length is the session_s the AP reports, otherwise the
-- time since the client's previous event on that AP when it was an association at most
-- 12 hours before. Counted in the bucket of the disassociation. A site (p_site: a square)
-- sums its APs; a device (p_device) is one AP.
-- Hourly aggregate: wifi_dwell_1h (per AP, hour and bin, no client key), filled by
-- wifi_dwell_fill with the session aggregates (api/maintenance.py: while the raw sessions,
-- kept 24 hours, are all there).

-- Per AP, bucket and bin.
CREATE FUNCTION metric.wifi_dwell_by_ap(p_site text, p_device text, p_edges timestamptz[],
                                        p_lo timestamptz, p_hi timestamptz,
                                        p_bounds bigint[])
RETURNS TABLE (device_id text, i integer, bin integer, sessions bigint, dwell_s numeric)
LANGUAGE sql STABLE AS $$
    WITH s AS (
        SELECT s.device_id, s.time, s.event, s.session_s,
               lag(s.event) OVER w AS pev, lag(s.time) OVER w AS ptime
        FROM wifi_sessions s
        WHERE s.device_id IN (SELECT id FROM metric.wifi_aps(p_site, p_device))
          AND s.time >= p_lo - interval '12 hours' AND s.time < p_hi
        WINDOW w AS (PARTITION BY s.device_id, s.client_key ORDER BY s.time)
    ),
    x AS (
        SELECT s.device_id, s.time,
               coalesce(s.session_s,
                        CASE WHEN s.pev = 'associated'
                              AND s.time - s.ptime <= interval '12 hours'
                             THEN extract(epoch FROM s.time - s.ptime)::bigint END) AS dwell
        FROM s WHERE s.event = 'disassociated' AND s.time >= p_lo
    )
    SELECT x.device_id, width_bucket(x.time, p_edges), width_bucket(x.dwell, p_bounds),
           count(*), sum(x.dwell)
    FROM x WHERE x.dwell IS NOT NULL
    GROUP BY 1, 2, 3
$$;

CREATE FUNCTION metric.wifi_dwell(p_site text, p_device text, p_edges timestamptz[],
                                  p_lo timestamptz, p_hi timestamptz, p_bounds bigint[])
RETURNS TABLE (i integer, bin integer, sessions bigint, dwell_s numeric)
LANGUAGE sql STABLE AS $$
    SELECT x.i, x.bin, sum(x.sessions)::bigint, sum(x.dwell_s)
    FROM metric.wifi_dwell_by_ap(p_site, p_device, p_edges, p_lo, p_hi, p_bounds) x
    GROUP BY 1, 2
$$;

-- The same from the hourly aggregate (buckets made of whole UTC hours): a square's rows
-- are those aggregated under it (its APs then), an AP's its own.
CREATE FUNCTION metric.wifi_dwell_rollup(p_site text, p_device text, p_edges timestamptz[],
                                         p_lo timestamptz, p_hi timestamptz,
                                         p_bounds bigint[])
RETURNS TABLE (i integer, bin integer, sessions bigint, dwell_s numeric)
LANGUAGE sql STABLE AS $$
    SELECT width_bucket(r.hour, p_edges), r.bin::integer, sum(r.sessions),
           sum(r.dwell_s)
    FROM wifi_dwell_1h r
    WHERE (p_site IS NULL OR r.site_id = p_site) AND (p_device IS NULL OR r.device_id = p_device)
      AND r.hour >= p_lo AND r.hour < p_hi
    GROUP BY 1, 2
$$;

-- What wifi_dwell_1h stores for the hours [p_lo, p_hi) (p_edges: the hours): per AP (and
-- its square), hour and bin, the ended sessions and their total length.
CREATE FUNCTION metric.wifi_dwell_fill(p_edges timestamptz[], p_lo timestamptz,
                                       p_hi timestamptz, p_bounds bigint[])
RETURNS TABLE (hour timestamptz, site_id text, device_id text, bin smallint,
               sessions integer, dwell_s bigint)
LANGUAGE sql STABLE AS $$
    SELECT p_edges[y.i], d.site_id, y.device_id, y.bin::smallint, y.sessions::integer,
           y.dwell_s::bigint
    FROM metric.wifi_dwell_by_ap(NULL, NULL, p_edges, p_lo, p_hi, p_bounds) y
    JOIN devices d ON d.id = y.device_id
$$;
