-- Grid meters per local day (time zone `tz`, the configured one): the meter's hourly rollup
-- rows of the day summed, so that daily, weekly and monthly buckets of a meter, of a
-- district's solar producers and of a district's voltage read one row per meter and day
-- instead of 23 to 25. Energy: import/export Wh, covered seconds, intervals, `reset`, `gap`,
-- whether an interval spans the day's start / end (`cross_start` / `cross_end`: a bucket
-- of days is `estimated` when one spans its first start or its last end). Power: the
-- highest 10-minute power of the day and when. Voltage: the day's 10-minute mean voltages
-- (per phase): how many, how many within 230 V +-10 %, lowest, highest. Written by the
-- maintenance job with the `grid` rollup (fill: metric.grid_meter_days_fill).
CREATE TABLE rollup_grid_meter_1d (
    day          date NOT NULL,
    tz           text NOT NULL,
    day_start    timestamptz NOT NULL,
    day_end      timestamptz NOT NULL,
    device_id    text NOT NULL,
    intervals    integer NOT NULL,
    import_wh    double precision,
    export_wh    double precision,
    covered_s    double precision NOT NULL,
    reset        boolean NOT NULL,
    gap          boolean NOT NULL,
    cross_start  boolean NOT NULL,
    cross_end    boolean NOT NULL,
    peak_w       double precision,
    peak_slot    timestamptz,
    v_n          integer NOT NULL,
    v_within     integer NOT NULL,
    v_min        double precision,
    v_max        double precision,
    PRIMARY KEY (device_id, tz, day)
);
COMMENT ON TABLE rollup_grid_meter_1d IS
    'Energy, peak power and voltage counts of each grid meter per local day.';
-- The readers ask for a range of days of some meters; the job replaces a range of days.
CREATE INDEX rollup_grid_meter_1d_start ON rollup_grid_meter_1d (device_id, tz, day_start);
CREATE INDEX rollup_grid_meter_1d_days ON rollup_grid_meter_1d (tz, day_start);

-- Existing installations: the next maintenance run rebuilds the `grid` rollup (which now
-- also fills this table) over the retained history; routes read raw rows meanwhile.
DELETE FROM rollup_state WHERE name = 'grid';
