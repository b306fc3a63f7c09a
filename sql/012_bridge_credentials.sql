-- Broker credentials of the bridges that publish for devices: a LoRaWAN network server
-- (ChirpStack) and a Linky TIC bridge (teleinfo2mqtt). Like device_credentials: only the
-- Mosquitto hash of the password is kept, and a revoked row keeps its history.
CREATE TABLE bridge_credentials (
    bridge         text PRIMARY KEY CHECK (bridge IN ('chirpstack', 'teleinfo')),
    password_hash  text NOT NULL CHECK (password_hash ~ '^\$7\$[0-9]+\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$'),
    created_at     timestamptz NOT NULL DEFAULT now(),
    rotated_at     timestamptz,
    revoked_at     timestamptz
);
COMMENT ON TABLE bridge_credentials IS 'Broker passwords of the bridges (user name and client id = bridge name); hashes only.';
COMMENT ON COLUMN bridge_credentials.password_hash IS 'Mosquitto 2 hash: $7$iterations$salt$PBKDF2-HMAC-SHA512 digest (base64).';
COMMENT ON COLUMN bridge_credentials.revoked_at IS 'When the credentials were revoked; NULL while they are active.';
