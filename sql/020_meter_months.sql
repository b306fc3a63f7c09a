-- Grid meters per local month (time zone `tz`, the configured one): the meter's daily rows
-- of the month summed, so that monthly buckets of a meter, of a district's meters or of
-- its solar producers read one row per meter and month instead of 28 to 31 (a district's
-- producers over a year: 228 rows instead of 6,935, about 5 ms of database time less per
-- request). The columns mean what they mean per day (014_meter_days.sql): `cross_start` /
-- `cross_end` say whether an interval spans the month's start / end. Written by the
-- maintenance job under its own rollup_state row, `grid_months`, after the days it reads
-- (fill: metric.grid_meter_months_fill); an installation that had none fills it from the
-- retained days on its next run.
CREATE TABLE rollup_grid_meter_1mo (
    month        date NOT NULL,
    tz           text NOT NULL,
    month_start  timestamptz NOT NULL,
    month_end    timestamptz NOT NULL,
    device_id    text NOT NULL,
    intervals    integer NOT NULL,
    import_wh    double precision,
    export_wh    double precision,
    covered_s    double precision NOT NULL,
    reset        boolean NOT NULL,
    gap          boolean NOT NULL,
    cross_start  boolean NOT NULL,
    cross_end    boolean NOT NULL,
    PRIMARY KEY (device_id, tz, month)
);
COMMENT ON TABLE rollup_grid_meter_1mo IS
    'Energy of each grid meter per local month (from its days).';
-- The readers ask for a range of months of some meters, by index alone.
CREATE INDEX rollup_grid_meter_1mo_cells ON rollup_grid_meter_1mo (device_id, tz, month_start)
    INCLUDE (month_end, intervals, import_wh, export_wh, covered_s, reset, gap, cross_start,
             cross_end);
CREATE INDEX rollup_grid_meter_1mo_months ON rollup_grid_meter_1mo (tz, month_start);
