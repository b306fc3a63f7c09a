-- Each device's last message and the health values of its latest report, kept as readings
-- arrive, so that the device health routes read one row per device instead of looking up
-- every device's newest row in its family's hypertable (820 lookups on every chunk of a
-- year: 13-21 ms of database CPU for the silent devices' list). The ingestor upserts it
-- in the transaction of each batch (never ahead of the readings, never behind them);
-- the maintenance job reconciles it with the raw rows (metric.device_last_seen_reconcile in
-- sql/metrics/device_health.sql), which also fills it the first time after this migration,
-- and covers rows written by other means (a restore, a bulk load). One row per device that ever
-- reported; no personal data (device-level values only, never a wifi client's).
CREATE TABLE device_last_seen (
    device_id   text PRIMARY KEY,
    last_seen   timestamptz NOT NULL,  -- newest reading of any kind the device sent
    health_time timestamptz,           -- time of the report the health values come from
    battery     real,
    rssi_dbm    smallint,
    snr_db      real,
    radio_up    boolean,
    clients     integer,
    paper       real,
    fault_code  text
);
