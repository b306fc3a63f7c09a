-- Messages the ingestor rejected, kept for inspection. A hypertable on received_at so that
-- old rejections are dropped by chunk like the raw data. Payloads are truncated past a limit
-- (payload_size keeps the original size); wifi payloads are scrubbed of MAC addresses first.
CREATE TABLE dead_letters (
    received_at   timestamptz NOT NULL,
    topic         text NOT NULL,
    device_id     text,
    reason        text NOT NULL,
    detail        text NOT NULL,
    payload       bytea NOT NULL,
    payload_size  integer NOT NULL CHECK (payload_size >= 0)
);
SELECT create_hypertable('dead_letters', by_range('received_at', INTERVAL '7 days'));
CREATE INDEX dead_letters_reason_idx ON dead_letters (reason, received_at DESC);
CREATE INDEX dead_letters_device_idx ON dead_letters (device_id, received_at DESC);
COMMENT ON COLUMN dead_letters.reason IS 'Reason code, e.g. unknown_device, invalid_json, out_of_range (see docs/ingest.md).';
COMMENT ON COLUMN dead_letters.detail IS 'Human-readable explanation of the rejection.';
COMMENT ON COLUMN dead_letters.payload IS 'The message bytes, truncated past the configured limit.';
COMMENT ON COLUMN dead_letters.payload_size IS 'Size of the original payload (bytes).';
