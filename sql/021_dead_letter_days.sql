-- Dead letters counted per local day (time zone `tz`, the configured one), device and
-- reason, so that the operators' counts over a month group about 1,300 daily rows instead
-- of every rejected message (10,000 in a month of the benchmark's city: 8 ms of database
-- time per request). Dead letters are written as they are received and never change, so a
-- day's counts are final once it has ended: the maintenance job writes them then, under
-- rollup_state row `dead_letters` (fill: metric.dead_letter_days_fill), and drops them
-- with the dead letters' retention. `device_id` is null for messages whose topic named no
-- device, as in dead_letters. The counts route reads the whole days of its range here and
-- the rest (the day under way, a range's cut ends, a topic filter) from dead_letters.
CREATE TABLE dead_letter_days (
    day        date NOT NULL,
    tz         text NOT NULL,
    day_start  timestamptz NOT NULL,
    device_id  text,
    reason     text NOT NULL,
    n          integer NOT NULL CHECK (n > 0),
    UNIQUE NULLS NOT DISTINCT (tz, day, device_id, reason)
);
COMMENT ON TABLE dead_letter_days IS
    'Dead letters per local day, device and reason (counts only, no payload).';
CREATE INDEX dead_letter_days_start ON dead_letter_days (tz, day_start)
    INCLUDE (device_id, reason, n);
