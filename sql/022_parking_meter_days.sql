-- Parking meters per local day (time zone `tz`, the configured one): their hourly rows of
-- the day summed (transactions and revenue per payment method; the fault codes they
-- reported), so that a zone's or a meter's revenue at daily, weekly or monthly buckets
-- reads one row per meter, method and day instead of 23 to 25 (a zone's month: about 600
-- rows instead of 3,300). Written by the maintenance job under its own rollup_state row,
-- `parking_meter_days`, after the hours they read (fills: metric.parking_tx_days_fill,
-- metric.parking_faults_days_fill); an installation that had none fills them from the
-- retained hours on its next run.
CREATE TABLE rollup_parking_tx_1d (
    day             date NOT NULL,
    tz              text NOT NULL,
    day_start       timestamptz NOT NULL,
    device_id       text NOT NULL,
    payment_method  text NOT NULL,
    transactions    integer NOT NULL,
    revenue_cents   bigint NOT NULL,
    PRIMARY KEY (device_id, tz, day, payment_method)
);
COMMENT ON TABLE rollup_parking_tx_1d IS
    'Transactions and revenue of each parking meter per payment method and local day.';
CREATE INDEX rollup_parking_tx_1d_cells ON rollup_parking_tx_1d (device_id, tz, day_start)
    INCLUDE (payment_method, transactions, revenue_cents);
CREATE INDEX rollup_parking_tx_1d_days ON rollup_parking_tx_1d (tz, day_start);

CREATE TABLE rollup_parking_faults_1d (
    day         date NOT NULL,
    tz          text NOT NULL,
    day_start   timestamptz NOT NULL,
    device_id   text NOT NULL,
    fault_code  text NOT NULL,
    PRIMARY KEY (device_id, tz, day, fault_code)
);
COMMENT ON TABLE rollup_parking_faults_1d IS
    'Fault codes each parking meter reported per local day.';
CREATE INDEX rollup_parking_faults_1d_cells ON rollup_parking_faults_1d
    (device_id, tz, day_start) INCLUDE (fault_code);
CREATE INDEX rollup_parking_faults_1d_days ON rollup_parking_faults_1d (tz, day_start);
