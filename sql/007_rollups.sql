-- Rollups kept by Beffroi itself (the Apache edition of TimescaleDB has no continuous
-- aggregates): one row per device (or site) per UTC hour, computed from the raw rows by
-- the maintenance job (`beffroi maintain`, and every minute inside the API process).
-- UTC hours are also local hours in Europe/Paris (whole-hour offsets), so local days,
-- weeks and months (23/25-hour days included) are exact sums of them. See docs/rollups.md.

-- Per rollup: every hour in [since, watermark) is rolled up; routes read rollups only there.
CREATE TABLE rollup_state (
    name          text PRIMARY KEY,
    since         timestamptz,
    watermark     timestamptz,
    refreshed_at  timestamptz
);
COMMENT ON TABLE rollup_state IS 'Rolled-up range [since, watermark) of each rollup, and its last refresh.';

-- Parking sensors: spot-seconds occupied / free in the hour (time-weighted, each state held
-- until the next message, at most 3 heartbeats; the rest of the hour is unknown).
CREATE TABLE rollup_parking_spot_1h (
    hour        timestamptz NOT NULL,
    device_id   text NOT NULL,
    occupied_s  double precision NOT NULL,
    free_s      double precision NOT NULL,
    PRIMARY KEY (device_id, hour)
);
SELECT create_hypertable('rollup_parking_spot_1h', by_range('hour', INTERVAL '90 days'));

-- Parking meters: transactions and revenue per payment method; distinct fault codes.
CREATE TABLE rollup_parking_tx_1h (
    hour            timestamptz NOT NULL,
    device_id       text NOT NULL,
    payment_method  text NOT NULL,
    transactions    integer NOT NULL,
    revenue_cents   bigint NOT NULL,
    PRIMARY KEY (device_id, payment_method, hour)
);
SELECT create_hypertable('rollup_parking_tx_1h', by_range('hour', INTERVAL '180 days'));

CREATE TABLE rollup_parking_faults_1h (
    hour        timestamptz NOT NULL,
    device_id   text NOT NULL,
    fault_code  text NOT NULL,
    PRIMARY KEY (device_id, fault_code, hour)
);
SELECT create_hypertable('rollup_parking_faults_1h', by_range('hour', INTERVAL '180 days'));

-- Grid meters. Energy: the pieces of the intervals between consecutive readings that fall
-- in the hour (index differences shared in proportion to time), with flags; cross_start /
-- cross_end tell an interval spans the hour's start / end (a bucket made of hours is
-- `estimated` when one spans its first start or its last end). Power: the highest sum of
-- the meter's powers on one 10-minute mark, and when. Voltage: the 10-minute mean voltages
-- (per phase) of the hour: how many, how many within 230 V +-10 %, lowest, highest.
CREATE TABLE rollup_grid_1h (
    hour          timestamptz NOT NULL,
    device_id     text NOT NULL,
    intervals     integer NOT NULL,
    import_wh     double precision,
    export_wh     double precision,
    covered_s     double precision NOT NULL,
    reset         boolean NOT NULL,
    gap           boolean NOT NULL,
    cross_start   boolean NOT NULL,
    cross_end     boolean NOT NULL,
    peak_w        double precision,
    peak_slot     timestamptz,
    v_n           integer NOT NULL,
    v_within      integer NOT NULL,
    v_min         double precision,
    v_max         double precision,
    PRIMARY KEY (device_id, hour)
);
SELECT create_hypertable('rollup_grid_1h', by_range('hour', INTERVAL '90 days'));

-- Districts (sites): the highest sum over the site's meters of the powers on one 10-minute
-- mark in the hour (district peaks are not sums of meter peaks). Site at rollup time.
CREATE TABLE rollup_grid_site_1h (
    hour        timestamptz NOT NULL,
    site_id     text NOT NULL,
    peak_w      double precision NOT NULL,
    peak_slot   timestamptz NOT NULL,
    PRIMARY KEY (site_id, hour)
);
SELECT create_hypertable('rollup_grid_site_1h', by_range('hour', INTERVAL '365 days'));

-- Wifi access points: reports and sum of clients (mean = sum / reports), highest one-minute
-- mean, traffic from the cumulative counters (a counter that went down restarted from 0).
CREATE TABLE rollup_wifi_ap_1h (
    hour            timestamptz NOT NULL,
    device_id       text NOT NULL,
    reports         integer NOT NULL,
    clients_sum     bigint NOT NULL,
    clients_max     double precision,
    rx_bytes        bigint,
    tx_bytes        bigint,
    traffic_intervals integer NOT NULL,
    counter_resets  integer NOT NULL,
    PRIMARY KEY (device_id, hour)
);
SELECT create_hypertable('rollup_wifi_ap_1h', by_range('hour', INTERVAL '180 days'));

CREATE TABLE rollup_wifi_site_1h (
    hour         timestamptz NOT NULL,
    site_id      text NOT NULL,
    clients_max  double precision NOT NULL,
    PRIMARY KEY (site_id, hour)
);
SELECT create_hypertable('rollup_wifi_site_1h', by_range('hour', INTERVAL '365 days'));

-- Wifi sessions: the only trace of client sessions kept beyond 24 hours (CNIL). No client
-- key, no per-device row: counts per access point and per square (device_id = '').
CREATE TABLE wifi_visitors_1h (
    hour          timestamptz NOT NULL,
    site_id       text NOT NULL,
    device_id     text NOT NULL,
    visitors      integer NOT NULL,
    associations  integer NOT NULL,
    PRIMARY KEY (site_id, device_id, hour)
);
COMMENT ON TABLE wifi_visitors_1h IS 'Distinct pseudonymous clients per UTC hour, per AP and per square (device_id empty).';

CREATE TABLE wifi_visitors_1d (
    day           date NOT NULL,
    tz            text NOT NULL,
    day_start     timestamptz NOT NULL,
    site_id       text NOT NULL,
    device_id     text NOT NULL,
    visitors      integer NOT NULL,
    associations  integer NOT NULL,
    PRIMARY KEY (site_id, device_id, tz, day)
);
COMMENT ON TABLE wifi_visitors_1d IS 'Distinct pseudonymous clients per local day (keys rotate daily), per AP and per square (device_id empty).';

-- Dwell-time histogram: ended sessions per access point, UTC hour (of the disassociation)
-- and bin (1-based index into the bins of api/rollups.py), with their total length.
CREATE TABLE wifi_dwell_1h (
    hour       timestamptz NOT NULL,
    site_id    text NOT NULL,
    device_id  text NOT NULL,
    bin        smallint NOT NULL,
    sessions   integer NOT NULL,
    dwell_s    bigint NOT NULL,
    PRIMARY KEY (site_id, device_id, bin, hour)
);
COMMENT ON TABLE wifi_dwell_1h IS 'Ended wifi sessions per AP, UTC hour and dwell-time bin.';
