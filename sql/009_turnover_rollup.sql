-- Parking turnover per UTC hour, per sensor and per zone (device_id empty), from the
-- maintenance job like the other rollups (rollup_state name `parking_turnover`):
-- arrivals (changes to occupied, or a first report after 2 days of silence), the stays
-- among them that ended within a day, and their total length. Counts and sums add up
-- over hours, sensors and zones. Site at rollup time.
CREATE TABLE rollup_parking_turnover_1h (
    hour       timestamptz NOT NULL,
    site_id    text NOT NULL,
    device_id  text NOT NULL,
    arrivals   integer NOT NULL,
    stays      integer NOT NULL,
    stay_s     double precision NOT NULL,
    PRIMARY KEY (site_id, device_id, hour)
);
SELECT create_hypertable('rollup_parking_turnover_1h', by_range('hour', INTERVAL '180 days'));
