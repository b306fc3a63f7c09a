-- Device health: each device's last message and the health values of its latest report,
-- kept in device_last_seen (sql/016_device_last_seen.sql), which the health routes read.
-- The ingestor merges each batch's newest rows per device into it in the batch's own
-- transaction (device_last_seen_merge); the maintenance job reconciles it with the raw
-- rows (device_last_seen_reconcile), for rows that came another way.

-- Merge newer values: last_seen only moves forward; the health values are replaced, all
-- together, by those of a later report (a report's NULL is its value: not sent). Rows that
-- bring nothing newer are not written at all (no dead tuple, no WAL). p_rows is a JSON
-- array of [device_id, last_seen, health_time, battery, rssi_dbm, snr_db, radio_up,
-- clients, paper, fault_code]: the ingestor serializes a batch's 800 devices in C
-- (orjson) where ten Python lists dumped as PostgreSQL arrays cost it 9 % of its CPU.
CREATE FUNCTION metric.device_last_seen_merge(p_rows jsonb)
RETURNS integer
LANGUAGE sql VOLATILE AS $$
    WITH merged AS (
        INSERT INTO device_last_seen AS t
        SELECT r ->> 0, (r ->> 1)::timestamptz, (r ->> 2)::timestamptz, (r ->> 3)::real,
               (r ->> 4)::smallint, (r ->> 5)::real, (r ->> 6)::boolean, (r ->> 7)::integer,
               (r ->> 8)::real, r ->> 9
        FROM jsonb_array_elements(p_rows) r
        ON CONFLICT (device_id) DO UPDATE SET
            last_seen = greatest(t.last_seen, excluded.last_seen),
            (health_time, battery, rssi_dbm, snr_db, radio_up, clients, paper, fault_code) =
                (SELECT excluded.health_time, excluded.battery, excluded.rssi_dbm,
                        excluded.snr_db, excluded.radio_up, excluded.clients, excluded.paper,
                        excluded.fault_code
                 WHERE excluded.health_time > coalesce(t.health_time, '-infinity')
                 UNION ALL
                 SELECT t.health_time, t.battery, t.rssi_dbm, t.snr_db, t.radio_up,
                        t.clients, t.paper, t.fault_code
                 WHERE NOT excluded.health_time > coalesce(t.health_time, '-infinity')
                    OR excluded.health_time IS NULL)
        WHERE excluded.last_seen > t.last_seen
           OR excluded.health_time > coalesce(t.health_time, '-infinity')
        RETURNING 1
    )
    SELECT count(*)::integer FROM merged
$$;

-- Each device's newest rows, looked up in its own family's hypertable(s) (the key's
-- (device_id, time) index read backwards: one row per lookup). A parking meter's health
-- comes from its status reports; a payment also shows it is alive. Devices that never
-- reported are left out.
CREATE FUNCTION metric.device_health_scan()
RETURNS TABLE (device_id text, last_seen timestamptz, health_time timestamptz,
               battery real, rssi_dbm smallint, snr_db real, radio_up boolean,
               clients integer, paper real, fault_code text)
LANGUAGE sql STABLE AS $$
    SELECT d.id, greatest(s.time, m.time, t.time, w.time, g.time),
           coalesce(s.time, m.time, w.time), coalesce(s.battery, m.battery), s.rssi_dbm,
           s.snr_db, w.radio_up, w.clients, m.paper, m.fault_code
    FROM devices d
    LEFT JOIN LATERAL (SELECT p.time, p.battery, p.rssi_dbm, p.snr_db
                       FROM parking_spot_state p
                       WHERE d.family = 'parking_spot' AND p.device_id = d.id
                       ORDER BY p.time DESC LIMIT 1) s ON true
    LEFT JOIN LATERAL (SELECT p.time, p.battery, p.paper, p.fault_code
                       FROM parking_meter_status p
                       WHERE d.family = 'parking_meter' AND p.device_id = d.id
                       ORDER BY p.time DESC LIMIT 1) m ON true
    LEFT JOIN LATERAL (SELECT p.time FROM parking_transactions p
                       WHERE d.family = 'parking_meter' AND p.device_id = d.id
                       ORDER BY p.time DESC LIMIT 1) t ON true
    LEFT JOIN LATERAL (SELECT p.time, p.clients, p.radio_up FROM wifi_ap_stats p
                       WHERE d.family = 'wifi_ap' AND p.device_id = d.id
                       ORDER BY p.time DESC LIMIT 1) w ON true
    LEFT JOIN LATERAL (SELECT p.time FROM grid_readings p
                       WHERE d.family = 'grid_meter' AND p.device_id = d.id
                       ORDER BY p.time DESC LIMIT 1) g ON true
    WHERE greatest(s.time, m.time, t.time, w.time, g.time) IS NOT NULL
$$;

-- Bring device_last_seen level with the raw rows; returns the devices brought forward.
CREATE FUNCTION metric.device_last_seen_reconcile()
RETURNS integer
LANGUAGE sql VOLATILE AS $$
    SELECT coalesce(metric.device_last_seen_merge(jsonb_agg(jsonb_build_array(
        s.device_id, s.last_seen, s.health_time, s.battery, s.rssi_dbm, s.snr_db, s.radio_up,
        s.clients, s.paper, s.fault_code))), 0)
    FROM metric.device_health_scan() s
$$;
