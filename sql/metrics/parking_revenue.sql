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

-- The same from the hourly rollups (buckets made of whole UTC hours).
CREATE FUNCTION metric.parking_revenue_rollup(p_site text, p_device text,
                                              p_edges timestamptz[], p_lo timestamptz,
                                              p_hi timestamptz)
RETURNS TABLE (i integer, method text, transactions bigint, revenue_cents bigint,
               meter_faults bigint)
LANGUAGE sql STABLE AS $$
    SELECT width_bucket(t.hour, p_edges), t.payment_method, sum(t.transactions)::bigint,
           sum(t.revenue_cents)::bigint, NULL::bigint
    FROM rollup_parking_tx_1h t
    WHERE t.device_id IN (SELECT id FROM metric.parking_meters(p_site, p_device))
      AND t.hour >= p_lo AND t.hour < p_hi
    GROUP BY 1, 2
    UNION ALL
    SELECT width_bucket(s.hour, p_edges), NULL, NULL, NULL,
           count(DISTINCT (s.device_id, s.fault_code))
    FROM rollup_parking_faults_1h s
    WHERE s.device_id IN (SELECT id FROM metric.parking_meters(p_site, p_device))
      AND s.hour >= p_lo AND s.hour < p_hi
    GROUP BY 1
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
