-- Parking meter revenue: transactions and euro cents per payment method, and the distinct
-- fault codes each meter reported, per bucket of p_edges (width_bucket numbering, 1-based).
-- A site (p_site: a parking zone) sums its meters; a device (p_device) is one meter.
-- Rows: one per (bucket, method) with transactions and revenue_cents, and one per bucket
-- with method NULL and meter_faults. Hourly rollups: rollup_parking_tx_1h and
-- rollup_parking_faults_1h, filled by parking_tx_fill and parking_faults_fill.

CREATE FUNCTION metric.parking_meters(p_site text, p_device text)
RETURNS TABLE (id text)
LANGUAGE sql STABLE AS $$
    SELECT d.id FROM devices d
    WHERE d.family = 'parking_meter'
      AND (p_site IS NULL OR d.site_id = p_site) AND (p_device IS NULL OR d.id = p_device)
$$;

CREATE FUNCTION metric.parking_revenue(p_site text, p_device text, p_edges timestamptz[],
                                       p_lo timestamptz, p_hi timestamptz)
RETURNS TABLE (i integer, method text, transactions bigint, revenue_cents bigint,
               meter_faults bigint)
LANGUAGE sql STABLE AS $$
    SELECT width_bucket(t.time, p_edges), t.payment_method, count(*), sum(t.amount_cents),
           NULL::bigint
    FROM parking_transactions t
    WHERE t.device_id IN (SELECT id FROM metric.parking_meters(p_site, p_device))
      AND t.time >= p_lo AND t.time < p_hi
    GROUP BY 1, 2
    UNION ALL
    SELECT width_bucket(s.time, p_edges), NULL, NULL, NULL,
           count(DISTINCT (s.device_id, s.fault_code))
    FROM parking_meter_status s
    WHERE s.device_id IN (SELECT id FROM metric.parking_meters(p_site, p_device))
      AND s.fault_code IS NOT NULL AND s.time >= p_lo AND s.time < p_hi
    GROUP BY 1
$$;

-- The same from the hourly rollups (p_period 'hour': buckets made of whole UTC hours) or
-- from the daily ones ('day': buckets of whole local days of zone p_tz). Hours and days
-- are one relation here; the planner keeps only the branch of p_period (a constant).
CREATE FUNCTION metric.parking_revenue_periods(p_site text, p_device text,
                                               p_edges timestamptz[], p_lo timestamptz,
                                               p_hi timestamptz, p_tz text, p_period text)
RETURNS TABLE (i integer, method text, transactions bigint, revenue_cents bigint,
               meter_faults bigint)
LANGUAGE sql STABLE AS $$
    WITH tx AS (
        SELECT 'hour' AS period, NULL::text AS tz, h.hour AS s, h.device_id,
               h.payment_method, h.transactions, h.revenue_cents
        FROM rollup_parking_tx_1h h
        UNION ALL
        SELECT 'day', d.tz, d.day_start, d.device_id, d.payment_method, d.transactions,
               d.revenue_cents
        FROM rollup_parking_tx_1d d),
    faults AS (
        SELECT 'hour' AS period, NULL::text AS tz, h.hour AS s, h.device_id, h.fault_code
        FROM rollup_parking_faults_1h h
        UNION ALL
        SELECT 'day', d.tz, d.day_start, d.device_id, d.fault_code
        FROM rollup_parking_faults_1d d)
    SELECT width_bucket(t.s, p_edges), t.payment_method, sum(t.transactions)::bigint,
           sum(t.revenue_cents)::bigint, NULL::bigint
    FROM tx t
    WHERE t.period = p_period AND t.tz IS NOT DISTINCT FROM p_tz
      AND t.device_id IN (SELECT id FROM metric.parking_meters(p_site, p_device))
      AND t.s >= p_lo AND t.s < p_hi
    GROUP BY 1, 2
    UNION ALL
    SELECT width_bucket(f.s, p_edges), NULL, NULL, NULL,
           count(DISTINCT (f.device_id, f.fault_code))
    FROM faults f
    WHERE f.period = p_period AND f.tz IS NOT DISTINCT FROM p_tz
      AND f.device_id IN (SELECT id FROM metric.parking_meters(p_site, p_device))
      AND f.s >= p_lo AND f.s < p_hi
    GROUP BY 1
$$;

CREATE FUNCTION metric.parking_revenue_rollup(p_site text, p_device text,
                                              p_edges timestamptz[], p_lo timestamptz,
                                              p_hi timestamptz)
RETURNS TABLE (i integer, method text, transactions bigint, revenue_cents bigint,
               meter_faults bigint)
LANGUAGE sql STABLE AS $$
    SELECT * FROM metric.parking_revenue_periods(p_site, p_device, p_edges, p_lo, p_hi,
                                                 NULL, 'hour')
$$;

CREATE FUNCTION metric.parking_revenue_days(p_site text, p_device text,
                                            p_edges timestamptz[], p_lo timestamptz,
                                            p_hi timestamptz, p_tz text)
RETURNS TABLE (i integer, method text, transactions bigint, revenue_cents bigint,
               meter_faults bigint)
LANGUAGE sql STABLE AS $$
    SELECT * FROM metric.parking_revenue_periods(p_site, p_device, p_edges, p_lo, p_hi,
                                                 p_tz, 'day')
$$;

-- What the rollups store for the hours [p_lo, p_hi): per meter, hour and method...
CREATE FUNCTION metric.parking_tx_fill(p_edges timestamptz[], p_lo timestamptz,
                                       p_hi timestamptz)
RETURNS TABLE (hour timestamptz, device_id text, payment_method text, transactions integer,
               revenue_cents bigint)
LANGUAGE sql STABLE AS $$
    SELECT time_bucket('1 hour', t.time), t.device_id, t.payment_method, count(*)::integer,
           sum(t.amount_cents)
    FROM parking_transactions t
    WHERE t.device_id IN (SELECT id FROM metric.parking_meters(NULL, NULL))
      AND t.time >= p_lo AND t.time < p_hi
    GROUP BY 1, 2, 3
$$;

-- ...and per meter and hour, each fault code it reported.
CREATE FUNCTION metric.parking_faults_fill(p_edges timestamptz[], p_lo timestamptz,
                                           p_hi timestamptz)
RETURNS TABLE (hour timestamptz, device_id text, fault_code text)
LANGUAGE sql STABLE AS $$
    SELECT DISTINCT time_bucket('1 hour', s.time), s.device_id, s.fault_code
    FROM parking_meter_status s
    WHERE s.device_id IN (SELECT id FROM metric.parking_meters(NULL, NULL))
      AND s.fault_code IS NOT NULL AND s.time >= p_lo AND s.time < p_hi
$$;

-- What the daily rollups store for the local days of p_edges (their starts, then the end
-- of the last), zone p_tz: each meter's hours of those days summed per method...
CREATE FUNCTION metric.parking_tx_days_fill(p_edges timestamptz[], p_lo timestamptz,
                                            p_hi timestamptz, p_tz text)
RETURNS TABLE (day date, tz text, day_start timestamptz, device_id text,
               payment_method text, transactions integer, revenue_cents bigint)
LANGUAGE sql STABLE AS $$
    SELECT (p_edges[x.i] AT TIME ZONE p_tz)::date, p_tz, p_edges[x.i], x.device_id,
           x.payment_method, x.transactions::integer, x.revenue_cents::bigint
    FROM (SELECT width_bucket(h.hour, p_edges) AS i, h.device_id, h.payment_method,
                 sum(h.transactions) AS transactions, sum(h.revenue_cents) AS revenue_cents
          FROM rollup_parking_tx_1h h
          WHERE h.hour >= p_lo AND h.hour < p_hi
          GROUP BY 1, 2, 3) x
$$;

-- ...and the fault codes each meter reported in them.
CREATE FUNCTION metric.parking_faults_days_fill(p_edges timestamptz[], p_lo timestamptz,
                                                p_hi timestamptz, p_tz text)
RETURNS TABLE (day date, tz text, day_start timestamptz, device_id text, fault_code text)
LANGUAGE sql STABLE AS $$
    SELECT DISTINCT (p_edges[width_bucket(h.hour, p_edges)] AT TIME ZONE p_tz)::date, p_tz,
           p_edges[width_bucket(h.hour, p_edges)], h.device_id, h.fault_code
    FROM rollup_parking_faults_1h h
    WHERE h.hour >= p_lo AND h.hour < p_hi
$$;
