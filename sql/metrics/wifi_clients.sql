-- Wifi clients: per bucket of p_edges (width_bucket numbering, 1-based), the mean of the
-- counts each access point reported, summed over the APs (clients_mean), the highest total
-- over one-minute slots of the APs' mean counts (clients_max), and how many APs reported.
-- A site (p_site: a square) sums its APs; a device (p_device) is one AP.
-- Hourly rollups: rollup_wifi_ap_1h (per AP, filled with the traffic by wifi_ap_fill in
-- wifi_traffic.sql) and rollup_wifi_site_1h (per square, wifi_site_fill), which holds a
-- square's hours already summed: its 1h buckets read one row each.

-- The access points of a square, or one access point (this file comes first: the other
-- wifi files use it).
CREATE FUNCTION metric.wifi_aps(p_site text, p_device text)
RETURNS TABLE (id text)
LANGUAGE sql STABLE AS $$
    SELECT d.id FROM devices d
    WHERE d.family = 'wifi_ap'
      AND (p_site IS NULL OR d.site_id = p_site) AND (p_device IS NULL OR d.id = p_device)
$$;

CREATE FUNCTION metric.wifi_clients(p_site text, p_device text, p_edges timestamptz[],
                                    p_lo timestamptz, p_hi timestamptz)
RETURNS TABLE (i integer, clients_mean double precision, aps bigint,
               clients_max double precision)
LANGUAGE sql STABLE AS $$
    WITH s AS (
        SELECT w.device_id, w.time, w.clients FROM wifi_ap_stats w
        WHERE w.device_id IN (SELECT id FROM metric.wifi_aps(p_site, p_device))
          AND w.time >= p_lo AND w.time < p_hi
    ),
    per_ap AS (
        SELECT width_bucket(s.time, p_edges) AS i, s.device_id,
               avg(s.clients)::float8 AS mean_c
        FROM s GROUP BY 1, 2
    ),
    minute AS (
        SELECT x.slot, sum(x.c)::float8 AS total FROM (
            SELECT time_bucket('1 minute', s.time) AS slot, s.device_id, avg(s.clients) AS c
            FROM s GROUP BY 1, 2) x
        GROUP BY 1
    ),
    peak AS (
        SELECT width_bucket(m.slot, p_edges) AS i, max(m.total) AS max_c
        FROM minute m GROUP BY 1
    )
    SELECT a.i, sum(a.mean_c), count(*), max(p.max_c)
    FROM per_ap a LEFT JOIN peak p USING (i)
    GROUP BY a.i
$$;

-- The same from the hourly rollups, for any bucket made of whole hours: each AP's mean
-- over the bucket from its hours' sums; the maximum from the square's own hours.
CREATE FUNCTION metric.wifi_clients_rollup(p_site text, p_device text,
                                           p_edges timestamptz[], p_lo timestamptz,
                                           p_hi timestamptz)
RETURNS TABLE (i integer, clients_mean double precision, aps bigint,
               clients_max double precision)
LANGUAGE sql STABLE AS $$
    WITH per_ap AS (
        SELECT width_bucket(r.hour, p_edges) AS i, r.device_id,
               sum(r.clients_sum)::float8 / sum(r.reports) AS mean_c,
               max(r.clients_max) AS max_c
        FROM rollup_wifi_ap_1h r
        WHERE r.device_id IN (SELECT id FROM metric.wifi_aps(p_site, p_device))
          AND r.reports > 0 AND r.hour >= p_lo AND r.hour < p_hi
        GROUP BY 1, 2
    ),
    site AS (
        SELECT width_bucket(r.hour, p_edges) AS i, max(r.clients_max) AS max_c
        FROM rollup_wifi_site_1h r
        WHERE r.site_id = p_site AND r.hour >= p_lo AND r.hour < p_hi
        GROUP BY 1
    )
    SELECT a.i, sum(a.mean_c), count(*), coalesce(max(s.max_c), max(a.max_c))
    FROM per_ap a LEFT JOIN site s USING (i)
    GROUP BY a.i
$$;

-- Hourly buckets: a square's hours are one row each of rollup_wifi_site_1h (its APs'
-- means already summed when the hour was rolled up, with the APs then in the square); an
-- AP's hours are its own rows.
CREATE FUNCTION metric.wifi_clients_hours(p_site text, p_device text,
                                          p_edges timestamptz[], p_lo timestamptz,
                                          p_hi timestamptz)
RETURNS TABLE (i integer, clients_mean double precision, aps bigint,
               clients_max double precision)
LANGUAGE sql STABLE AS $$
    SELECT width_bucket(r.hour, p_edges), r.clients_mean, r.aps::bigint, r.clients_max
    FROM rollup_wifi_site_1h r
    WHERE p_site IS NOT NULL AND r.site_id = p_site AND r.hour >= p_lo AND r.hour < p_hi
      AND r.clients_mean IS NOT NULL
    UNION ALL
    SELECT x.i, x.clients_mean, x.aps, x.clients_max
    FROM metric.wifi_clients_rollup(NULL, p_device, p_edges, p_lo, p_hi) x
    WHERE p_site IS NULL
$$;

-- What rollup_wifi_ap_1h stores of the clients, per AP and UTC hour of [p_lo, p_hi):
-- reports, sum of the counts, highest one-minute mean count.
CREATE FUNCTION metric.wifi_clients_ap_hours(p_lo timestamptz, p_hi timestamptz)
RETURNS TABLE (hour timestamptz, device_id text, reports integer, clients_sum bigint,
               clients_max double precision)
LANGUAGE sql STABLE AS $$
    WITH s AS (
        SELECT w.device_id, w.time, w.clients FROM wifi_ap_stats w
        WHERE w.device_id IN (SELECT id FROM metric.wifi_aps(NULL, NULL))
          AND w.time >= p_lo AND w.time < p_hi
    ),
    mn AS (
        SELECT s.device_id, time_bucket('1 minute', s.time) AS slot,
               avg(s.clients)::float8 AS c
        FROM s GROUP BY 1, 2
    ),
    c AS (
        SELECT s.device_id, time_bucket('1 hour', s.time) AS hour, count(*) AS n,
               sum(s.clients) AS sm
        FROM s GROUP BY 1, 2
    ),
    mx AS (
        SELECT mn.device_id, time_bucket('1 hour', mn.slot) AS hour, max(mn.c) AS mx
        FROM mn GROUP BY 1, 2
    )
    SELECT c.hour, c.device_id, c.n::integer, c.sm, mx.mx
    FROM c JOIN mx USING (device_id, hour)
$$;

-- What rollup_wifi_site_1h stores, per square and UTC hour of [p_lo, p_hi): the highest
-- one-minute total of its APs' mean counts, the sum over its APs of their mean count over
-- the hour, and how many APs reported.
CREATE FUNCTION metric.wifi_site_fill(p_edges timestamptz[], p_lo timestamptz,
                                      p_hi timestamptz)
RETURNS TABLE (hour timestamptz, site_id text, clients_max double precision,
               clients_mean double precision, aps integer)
LANGUAGE sql STABLE AS $$
    WITH s AS (
        SELECT w.device_id, d.site_id, w.time, w.clients
        FROM wifi_ap_stats w JOIN devices d ON d.id = w.device_id
        WHERE d.family = 'wifi_ap' AND w.time >= p_lo AND w.time < p_hi
    ),
    mn AS (
        SELECT s.site_id, s.device_id, time_bucket('1 minute', s.time) AS slot,
               avg(s.clients) AS c
        FROM s GROUP BY 1, 2, 3
    ),
    tot AS (
        SELECT mn.site_id, mn.slot, sum(mn.c)::float8 AS total FROM mn GROUP BY 1, 2
    ),
    peak AS (
        SELECT time_bucket('1 hour', tot.slot) AS hour, tot.site_id, max(tot.total) AS mx
        FROM tot GROUP BY 1, 2
    ),
    per_ap AS (
        SELECT time_bucket('1 hour', s.time) AS hour, s.site_id, s.device_id,
               avg(s.clients)::float8 AS mean_c
        FROM s GROUP BY 1, 2, 3
    ),
    mean AS (
        SELECT a.hour, a.site_id, sum(a.mean_c) AS mean_c, count(*)::integer AS aps
        FROM per_ap a GROUP BY 1, 2
    )
    SELECT p.hour, p.site_id, p.mx, m.mean_c, m.aps
    FROM peak p JOIN mean m USING (hour, site_id)
$$;

-- Each active access point (of every square) with its latest report at p_at if younger
-- than p_stale reporting intervals (time and clients null otherwise): the open data's
-- real-time feed.
CREATE FUNCTION metric.wifi_aps_at(p_at timestamptz, p_stale integer)
RETURNS TABLE (id text, name text, site_id text, latitude double precision,
               longitude double precision, metadata jsonb, "time" timestamptz,
               clients integer)
LANGUAGE sql STABLE AS $$
    SELECT d.id, d.name, d.site_id, d.latitude, d.longitude, d.metadata, l.time, l.clients
    FROM devices d LEFT JOIN LATERAL (
        SELECT w.time, w.clients FROM wifi_ap_stats w
        WHERE w.device_id = d.id AND w.time <= p_at
          AND w.time > p_at - make_interval(secs => d.report_interval_s * p_stale)
        ORDER BY w.time DESC LIMIT 1) l ON true
    WHERE d.family = 'wifi_ap' AND d.active
$$;
