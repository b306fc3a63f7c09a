-- Districts per UTC half hour: the energy route's 30-minute bucket (the load curve)
-- precomputed exactly as the route computes it from the raw readings (meters with data,
-- complete meters, import/export Wh, sum of the meters' mean powers, covered seconds,
-- flags). Written by the maintenance job with the `grid` rollup, which this migration
-- rebuilds over the retained history. Site at rollup time.
CREATE TABLE rollup_grid_site_30m (
    slot             timestamptz NOT NULL,
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
    PRIMARY KEY (site_id, slot)
);
SELECT create_hypertable('rollup_grid_site_30m', by_range('slot', INTERVAL '365 days'));

DELETE FROM rollup_state WHERE name = 'grid';
