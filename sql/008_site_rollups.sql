-- Site-level rollups, so that a zone's or a district's long range reads a few hundred rows
-- instead of one row per device per hour (see docs/rollups.md). Both are written by the
-- maintenance job in the same transaction as the per-device rollups they come from, and
-- share their rollup_state row (`parking_spot`, `grid`).

-- Parking zones: spot-seconds occupied / free per UTC quarter hour, summed over the zone's
-- sensors (site at rollup time). Quarter hours are also local quarter hours in every zone
-- with a whole-hour or half-hour offset, so 15m, 30m, 1h, day, week and month buckets are
-- exact sums of them.
CREATE TABLE rollup_parking_zone_15m (
    slot        timestamptz NOT NULL,
    site_id     text NOT NULL,
    occupied_s  double precision NOT NULL,
    free_s      double precision NOT NULL,
    PRIMARY KEY (site_id, slot)
);
SELECT create_hypertable('rollup_parking_zone_15m', by_range('slot', INTERVAL '365 days'));

-- Districts: energy per local day (time zone `tz`, the configured one), computed from the
-- meters' hourly rollups exactly as the energy route computes a daily bucket: sums over
-- the meters that have data in the day, how many of them are complete (covered the whole
-- day, no estimate, no reset), the sum of their mean powers, and the flags.
CREATE TABLE rollup_grid_site_1d (
    day              date NOT NULL,
    tz               text NOT NULL,
    day_start        timestamptz NOT NULL,
    site_id          text NOT NULL,
    meters           integer NOT NULL,
    complete_meters  integer NOT NULL,
    import_wh        double precision NOT NULL,
    export_wh        double precision NOT NULL,
    mean_power_w     double precision NOT NULL,
    covered_s        double precision NOT NULL,
    estimated        boolean NOT NULL,
    reset            boolean NOT NULL,
    gap              boolean NOT NULL,
    PRIMARY KEY (site_id, tz, day)
);
COMMENT ON TABLE rollup_grid_site_1d IS
    'Energy of each district per local day (sum of covered_s over its meters with data).';
CREATE INDEX rollup_grid_site_1d_start ON rollup_grid_site_1d (site_id, tz, day_start);

-- Existing installations: forget how far the two rollups that now also feed these tables
-- had got, so that the next maintenance run rebuilds them over the whole retained history
-- (routes read raw rows for the part not yet rebuilt, as on a first run).
DELETE FROM rollup_state WHERE name IN ('parking_spot', 'grid');
