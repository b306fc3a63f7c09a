-- One hypertable per kind of reading. Times are UTC timestamptz. Each has a unique index
-- on its natural key (device, time, ...) so that a redelivered message never makes a second row.
-- Chunk intervals aim at chunks of a few hundred thousand to a few million rows for the
-- demo city's volume, so that a chunk's indexes stay in memory and retention drops whole chunks.

-- Wifi access point counters, one row per report (about one a minute per AP:
-- 8 APs -> ~11k rows a day). 7-day chunks keep ~80k rows each per 8 APs.
CREATE TABLE wifi_ap_stats (
    time         timestamptz NOT NULL,
    device_id    text NOT NULL,
    clients      integer NOT NULL CHECK (clients >= 0),
    rx_bytes     bigint CHECK (rx_bytes >= 0),
    tx_bytes     bigint CHECK (tx_bytes >= 0),
    radio_up     boolean
);
SELECT create_hypertable('wifi_ap_stats', by_range('time', INTERVAL '7 days'));
CREATE UNIQUE INDEX wifi_ap_stats_key ON wifi_ap_stats (device_id, time);
COMMENT ON COLUMN wifi_ap_stats.clients IS 'Clients associated at the time of the report (count).';
COMMENT ON COLUMN wifi_ap_stats.rx_bytes IS 'Cumulative bytes received since the AP started (B); resets on reboot.';
COMMENT ON COLUMN wifi_ap_stats.tx_bytes IS 'Cumulative bytes sent since the AP started (B); resets on reboot.';
COMMENT ON COLUMN wifi_ap_stats.radio_up IS 'Radio state: true = up, false = down.';

-- Wifi client association events. Personal data (pseudonymous): rows are kept at most
-- 24 hours, then only aggregates remain (CNIL). 1-day chunks so that retention drops
-- whole chunks every day.
CREATE TABLE wifi_sessions (
    time         timestamptz NOT NULL,
    device_id    text NOT NULL,
    client_key   bytea NOT NULL CHECK (octet_length(client_key) = 16),
    event        text NOT NULL CHECK (event IN ('associated', 'disassociated')),
    rssi_dbm     smallint CHECK (rssi_dbm BETWEEN -120 AND 0),
    session_s    integer CHECK (session_s >= 0)
);
SELECT create_hypertable('wifi_sessions', by_range('time', INTERVAL '1 day'));
CREATE UNIQUE INDEX wifi_sessions_key ON wifi_sessions (device_id, client_key, event, time);
COMMENT ON COLUMN wifi_sessions.client_key IS
    'Keyed hash (HMAC-SHA256 truncated to 16 bytes) of the client MAC address; the key rotates daily and is destroyed after 24 h. Never a MAC address.';
COMMENT ON COLUMN wifi_sessions.event IS 'associated or disassociated.';
COMMENT ON COLUMN wifi_sessions.rssi_dbm IS 'Client signal strength seen by the AP (dBm).';
COMMENT ON COLUMN wifi_sessions.session_s IS 'On disassociation: how long the client stayed (s), when the AP reports it.';

-- Parking spot sensors: state changes plus heartbeats (300 sensors, ~150 messages a day
-- each -> ~45k rows a day). 7-day chunks hold ~300k rows.
CREATE TABLE parking_spot_state (
    time         timestamptz NOT NULL,
    device_id    text NOT NULL,
    state        text NOT NULL CHECK (state IN ('free', 'occupied', 'unknown')),
    battery      real CHECK (battery BETWEEN 0 AND 1),
    rssi_dbm     smallint CHECK (rssi_dbm BETWEEN -150 AND 0),
    snr_db       real CHECK (snr_db BETWEEN -30 AND 30)
);
SELECT create_hypertable('parking_spot_state', by_range('time', INTERVAL '7 days'));
CREATE UNIQUE INDEX parking_spot_state_key ON parking_spot_state (device_id, time);
COMMENT ON COLUMN parking_spot_state.state IS 'free, occupied or unknown (sensor cannot tell).';
COMMENT ON COLUMN parking_spot_state.battery IS 'Battery level as a 0..1 ratio, when sent.';
COMMENT ON COLUMN parking_spot_state.rssi_dbm IS 'Radio signal strength of the uplink (dBm), when sent.';
COMMENT ON COLUMN parking_spot_state.snr_db IS 'Signal-to-noise ratio of the uplink (dB), when sent.';

-- Parking meter (horodateur) payments: a few thousand a day. 30-day chunks.
CREATE TABLE parking_transactions (
    time            timestamptz NOT NULL,
    device_id       text NOT NULL,
    transaction_id  text NOT NULL CHECK (length(transaction_id) BETWEEN 1 AND 64),
    amount_cents    integer NOT NULL CHECK (amount_cents BETWEEN 0 AND 100000),
    duration_s      integer NOT NULL CHECK (duration_s BETWEEN 0 AND 604800),
    payment_method  text NOT NULL CHECK (payment_method IN ('card', 'contactless', 'coins', 'mobile'))
);
SELECT create_hypertable('parking_transactions', by_range('time', INTERVAL '30 days'));
CREATE UNIQUE INDEX parking_transactions_key ON parking_transactions (device_id, transaction_id, time);
COMMENT ON TABLE parking_transactions IS 'Payments at parking meters. Never holds a licence plate.';
COMMENT ON COLUMN parking_transactions.transaction_id IS 'Meter-assigned transaction id, unique per meter.';
COMMENT ON COLUMN parking_transactions.amount_cents IS 'Amount paid, euro cents.';
COMMENT ON COLUMN parking_transactions.duration_s IS 'Parking time bought (s).';
COMMENT ON COLUMN parking_transactions.payment_method IS 'card, contactless, coins or mobile.';

-- Parking meter status reports: 12 meters every 15 minutes. 30-day chunks.
CREATE TABLE parking_meter_status (
    time         timestamptz NOT NULL,
    device_id    text NOT NULL,
    battery      real CHECK (battery BETWEEN 0 AND 1),
    paper        real CHECK (paper BETWEEN 0 AND 1),
    fault_code   text CHECK (length(fault_code) <= 32)
);
SELECT create_hypertable('parking_meter_status', by_range('time', INTERVAL '30 days'));
CREATE UNIQUE INDEX parking_meter_status_key ON parking_meter_status (device_id, time);
COMMENT ON COLUMN parking_meter_status.battery IS 'Battery level, 0..1 ratio.';
COMMENT ON COLUMN parking_meter_status.paper IS 'Receipt paper left, 0..1 ratio.';
COMMENT ON COLUMN parking_meter_status.fault_code IS 'Vendor fault code; NULL when the meter reports no fault.';

-- Electricity meters: 500 meters every 10 minutes -> 72k rows a day, 26 M a year.
-- 7-day chunks hold ~500k rows (~60 MB with indexes), comfortably in memory.
CREATE TABLE grid_readings (
    time              timestamptz NOT NULL,
    device_id         text NOT NULL,
    energy_import_wh  bigint CHECK (energy_import_wh >= 0),
    energy_export_wh  bigint CHECK (energy_export_wh >= 0),
    power_w           real,
    voltage_l1_v      real CHECK (voltage_l1_v BETWEEN 0 AND 500),
    voltage_l2_v      real CHECK (voltage_l2_v BETWEEN 0 AND 500),
    voltage_l3_v      real CHECK (voltage_l3_v BETWEEN 0 AND 500),
    current_l1_a      real CHECK (current_l1_a BETWEEN 0 AND 1000),
    current_l2_a      real CHECK (current_l2_a BETWEEN 0 AND 1000),
    current_l3_a      real CHECK (current_l3_a BETWEEN 0 AND 1000),
    frequency_hz      real CHECK (frequency_hz BETWEEN 40 AND 70)
);
SELECT create_hypertable('grid_readings', by_range('time', INTERVAL '7 days'));
CREATE UNIQUE INDEX grid_readings_key ON grid_readings (device_id, time);
COMMENT ON COLUMN grid_readings.energy_import_wh IS 'Cumulative active energy imported (Wh); a decrease means a meter reset or replacement.';
COMMENT ON COLUMN grid_readings.energy_export_wh IS 'Cumulative active energy exported, e.g. solar injection (Wh).';
COMMENT ON COLUMN grid_readings.power_w IS 'Active power (W); negative when exporting. From TIC, apparent power (VA) is stored as an approximation.';
COMMENT ON COLUMN grid_readings.voltage_l1_v IS 'RMS voltage of phase 1 (V); single-phase meters fill only L1.';
COMMENT ON COLUMN grid_readings.current_l1_a IS 'RMS current of phase 1 (A).';
COMMENT ON COLUMN grid_readings.frequency_hz IS 'Grid frequency (Hz).';
