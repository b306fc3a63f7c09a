-- Secret keys of the wifi client pseudonymisation (HMAC of MAC addresses), one per local day.
-- Shared by all ingestor workers so that a client maps to the same key all day (unique
-- visitors per day). A key is deleted as soon as its day has ended (CNIL: pseudonymous data
-- linkable for at most 24 hours); nothing can then link a client_key back to a MAC address.
CREATE TABLE privacy_keys (
    day         date PRIMARY KEY,
    key         bytea NOT NULL CHECK (octet_length(key) = 32),
    created_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE privacy_keys IS 'Daily HMAC keys for wifi client pseudonyms; deleted when the day ends.';
