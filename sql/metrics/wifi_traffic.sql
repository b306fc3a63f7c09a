-- Wifi traffic: bytes received and sent per bucket of p_edges, from the differences of
-- each access point's cumulative counters between consecutive reports at most a day apart
-- (counted in the bucket of the later report). A counter lower than the previous report
-- restarted (reboot): the new value is the traffic since, never a negative volume; resets
-- counts them. A site (p_site: a square) sums its APs; a device (p_device) is one AP.
-- Hourly rollup: rollup_wifi_ap_1h, filled (with the clients) by wifi_ap_fill.

-- Per AP and bucket. The report before p_lo (at most a day before) starts the first
-- interval.
CREATE FUNCTION metric.wifi_traffic_by_ap(p_site text, p_device text,
                                          p_edges timestamptz[], p_lo timestamptz,
                                          p_hi timestamptz)
RETURNS TABLE (device_id text, i integer, rx_bytes numeric, tx_bytes numeric,
               intervals bigint, resets bigint)
LANGUAGE sql STABLE AS $$
    WITH dv AS (SELECT id FROM metric.wifi_aps(p_site, p_device)),
    pts AS (
        SELECT w.device_id, w.time, w.rx_bytes, w.tx_bytes FROM wifi_ap_stats w
        WHERE w.device_id IN (SELECT id FROM dv) AND w.time >= p_lo AND w.time < p_hi
        UNION ALL
        SELECT dv.id, b.time, b.rx_bytes, b.tx_bytes FROM dv CROSS JOIN LATERAL (
            SELECT w.time, w.rx_bytes, w.tx_bytes FROM wifi_ap_stats w
            WHERE w.device_id = dv.id AND w.time < p_lo
              AND w.time >= p_lo - interval '1 day'
            ORDER BY w.time DESC LIMIT 1) b
    ),
    r AS (
        SELECT pts.device_id, pts.time, pts.rx_bytes AS rx, pts.tx_bytes AS tx,
               lag(pts.time) OVER w AS pt, lag(pts.rx_bytes) OVER w AS prx,
               lag(pts.tx_bytes) OVER w AS ptx
        FROM pts WINDOW w AS (PARTITION BY pts.device_id ORDER BY pts.time)
    )
    SELECT r.device_id, width_bucket(r.time, p_edges),
           sum(CASE WHEN r.rx < r.prx THEN r.rx ELSE r.rx - r.prx END),
           sum(CASE WHEN r.tx < r.ptx THEN r.tx ELSE r.tx - r.ptx END),
           count(*),
           count(*) FILTER (WHERE r.rx < r.prx OR r.tx < r.ptx)
    FROM r
    WHERE r.pt IS NOT NULL AND r.time >= p_lo AND r.time - r.pt <= interval '1 day'
    GROUP BY 1, 2
$$;

CREATE FUNCTION metric.wifi_traffic(p_site text, p_device text, p_edges timestamptz[],
                                    p_lo timestamptz, p_hi timestamptz)
RETURNS TABLE (i integer, rx_bytes numeric, tx_bytes numeric, intervals bigint,
               resets bigint)
LANGUAGE sql STABLE AS $$
    SELECT x.i, sum(x.rx_bytes), sum(x.tx_bytes), sum(x.intervals)::bigint,
           sum(x.resets)::bigint
    FROM metric.wifi_traffic_by_ap(p_site, p_device, p_edges, p_lo, p_hi) x
    GROUP BY 1
$$;

-- The same from the hourly rollup (buckets made of whole UTC hours).
CREATE FUNCTION metric.wifi_traffic_rollup(p_site text, p_device text,
                                           p_edges timestamptz[], p_lo timestamptz,
                                           p_hi timestamptz)
RETURNS TABLE (i integer, rx_bytes numeric, tx_bytes numeric, intervals bigint,
               resets bigint)
LANGUAGE sql STABLE AS $$
    SELECT width_bucket(r.hour, p_edges), sum(r.rx_bytes), sum(r.tx_bytes),
           sum(r.traffic_intervals), sum(r.counter_resets)
    FROM rollup_wifi_ap_1h r
    WHERE r.device_id IN (SELECT id FROM metric.wifi_aps(p_site, p_device))
      AND r.traffic_intervals > 0 AND r.hour >= p_lo AND r.hour < p_hi
    GROUP BY 1
$$;

-- What rollup_wifi_ap_1h stores per AP and UTC hour of [p_lo, p_hi) (p_edges: the
-- hours): the clients (wifi_clients.sql) and the traffic. An hour with reports but no
-- traffic interval has no bytes (rx_bytes, tx_bytes null; 0 intervals).
CREATE FUNCTION metric.wifi_ap_fill(p_edges timestamptz[], p_lo timestamptz,
                                    p_hi timestamptz)
RETURNS TABLE (hour timestamptz, device_id text, reports integer, clients_sum bigint,
               clients_max double precision, rx_bytes bigint, tx_bytes bigint,
               traffic_intervals integer, counter_resets integer)
LANGUAGE sql STABLE AS $$
    SELECT coalesce(c.hour, p_edges[t.i]), coalesce(c.device_id, t.device_id),
           coalesce(c.reports, 0), coalesce(c.clients_sum, 0), c.clients_max,
           t.rx_bytes::bigint, t.tx_bytes::bigint, coalesce(t.intervals, 0)::integer,
           coalesce(t.resets, 0)::integer
    FROM metric.wifi_clients_ap_hours(p_lo, p_hi) c
    FULL JOIN metric.wifi_traffic_by_ap(NULL, NULL, p_edges, p_lo, p_hi) t
      ON t.device_id = c.device_id AND p_edges[t.i] = c.hour
$$;
