-- Parking turnover: arrivals and stays per bucket of p_edges (width_bucket numbering,
-- 1-based). A site (p_site: a parking zone) sums its sensors; a device (p_device) is one
-- spot sensor (metric.parking_spots, in parking_occupancy.sql).
-- An arrival is a sensor's report where its state changes to `occupied`, or that comes
-- more than 2 days after its previous report; its stay lasts until the sensor's next
-- change of state and counts when that comes within a day. Both rules look at most 2 days
-- back and a day ahead, so a bucket's answer does not depend on the range around it
-- (the raw computation reads 2 days before the range: the routes' lookback).
-- Hourly rollup: rollup_parking_turnover_1h, per sensor and per zone (device_id ''),
-- filled by parking_turnover_fill.

-- One row per arrival in [p_lo, p_hi): the sensor, its zone, the bucket, and the length
-- of its stay in seconds when it ended within a day (else NULL).
CREATE FUNCTION metric.parking_arrivals(p_site text, p_device text, p_edges timestamptz[],
                                        p_lo timestamptz, p_hi timestamptz)
RETURNS TABLE (device_id text, site_id text, i integer, stay_s numeric)
LANGUAGE sql STABLE AS $$
    WITH s AS (
        SELECT p.device_id, d.site_id, p.time, p.state,
               lag(p.state) OVER w AS prev_state, lag(p.time) OVER w AS prev_time
        FROM parking_spot_state p
        JOIN metric.parking_spots(p_site, p_device) d ON d.id = p.device_id
        WHERE p.time >= p_lo - interval '2 days' AND p.time < p_hi + interval '1 day'
        WINDOW w AS (PARTITION BY p.device_id ORDER BY p.time)
    ),
    changes AS (
        SELECT device_id, site_id, time, state,
               lead(time) OVER (PARTITION BY device_id ORDER BY time) AS next_change
        FROM s WHERE prev_state IS DISTINCT FROM state OR time - prev_time > interval '2 days'
    )
    SELECT device_id, site_id, width_bucket(time, p_edges),
           CASE WHEN next_change - time <= interval '1 day'
                THEN extract(epoch FROM next_change - time) END
    FROM changes
    WHERE state = 'occupied' AND time >= p_lo AND time < p_hi
$$;

-- Per bucket: arrivals, the stays among them that ended within a day, their total length
-- (buckets without arrivals are left out).
CREATE FUNCTION metric.parking_turnover(p_site text, p_device text, p_edges timestamptz[],
                                        p_lo timestamptz, p_hi timestamptz)
RETURNS TABLE (i integer, arrivals bigint, stays bigint, stay_s double precision)
LANGUAGE sql STABLE AS $$
    SELECT a.i, count(*), count(a.stay_s), coalesce(sum(a.stay_s), 0)::float8
    FROM metric.parking_arrivals(p_site, p_device, p_edges, p_lo, p_hi) a
    GROUP BY a.i
$$;

-- The same from the hourly rollup (buckets made of whole UTC hours): a zone's rows have
-- device_id '', a spot's rows the zone it had when they were filled (looked up under its
-- zone now, as the rollup's key leads with the zone).
CREATE FUNCTION metric.parking_turnover_rollup(p_site text, p_device text,
                                               p_edges timestamptz[], p_lo timestamptz,
                                               p_hi timestamptz)
RETURNS TABLE (i integer, arrivals bigint, stays bigint, stay_s double precision)
LANGUAGE sql STABLE AS $$
    SELECT width_bucket(r.hour, p_edges), sum(r.arrivals)::bigint, sum(r.stays)::bigint,
           sum(r.stay_s)
    FROM rollup_parking_turnover_1h r
    WHERE r.site_id = coalesce(p_site, (SELECT s.site_id FROM metric.parking_spots(
                                            NULL, p_device) s), '')
      AND r.device_id = coalesce(p_device, '') AND r.hour >= p_lo AND r.hour < p_hi
    GROUP BY 1
$$;

-- What the rollup stores for the hours of p_edges: per sensor (under its zone) and per
-- zone (device_id ''), arrivals, stays that ended within a day, their total length.
CREATE FUNCTION metric.parking_turnover_fill(p_edges timestamptz[], p_lo timestamptz,
                                             p_hi timestamptz)
RETURNS TABLE (hour timestamptz, site_id text, device_id text, arrivals integer,
               stays integer, stay_s double precision)
LANGUAGE sql STABLE AS $$
    SELECT p_edges[a.i], a.site_id, coalesce(a.device_id, ''), count(*)::integer,
           count(a.stay_s)::integer, coalesce(sum(a.stay_s), 0)::float8
    FROM metric.parking_arrivals(NULL, NULL, p_edges, p_lo, p_hi) a
    GROUP BY GROUPING SETS ((a.i, a.site_id, a.device_id), (a.i, a.site_id))
$$;
