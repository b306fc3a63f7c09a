-- Per-device broker credentials. Only the Mosquitto hash of a password is kept; the clear
-- password is shown once when generated. A revoked row keeps its history (revoked_at set)
-- and gives no broker account; generating again makes it active with a new password.
CREATE TABLE device_credentials (
    device_id      text PRIMARY KEY REFERENCES devices (id) ON DELETE CASCADE,
    password_hash  text NOT NULL CHECK (password_hash ~ '^\$7\$[0-9]+\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$'),
    created_at     timestamptz NOT NULL DEFAULT now(),
    rotated_at     timestamptz,
    revoked_at     timestamptz
);
COMMENT ON TABLE device_credentials IS 'Broker passwords of devices (user name = device id); hashes only.';
COMMENT ON COLUMN device_credentials.password_hash IS 'Mosquitto 2 hash: $7$iterations$salt$PBKDF2-HMAC-SHA512 digest (base64).';
COMMENT ON COLUMN device_credentials.created_at IS 'When the current credentials were first issued.';
COMMENT ON COLUMN device_credentials.rotated_at IS 'When the password was last replaced; NULL if never.';
COMMENT ON COLUMN device_credentials.revoked_at IS 'When the credentials were revoked; NULL while they are active.';
