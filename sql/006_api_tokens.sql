-- Bearer tokens of the HTTP API. Only the SHA-256 of a token is kept (tokens are 256-bit
-- random strings, so a plain hash is enough: no dictionary to resist); the clear token is
-- printed once by `beffroi tokens create`. A revoked token keeps its row (history).
CREATE TABLE api_tokens (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    token_hash    bytea NOT NULL UNIQUE CHECK (octet_length(token_hash) = 32),
    scopes        text[] NOT NULL
                  CHECK (cardinality(scopes) >= 1 AND scopes <@ ARRAY['read', 'operate', 'admin']),
    created_at    timestamptz NOT NULL DEFAULT now(),
    revoked_at    timestamptz,
    last_used_at  timestamptz
);
COMMENT ON TABLE api_tokens IS 'Bearer tokens of the HTTP API; hashes only.';
COMMENT ON COLUMN api_tokens.token_hash IS 'SHA-256 of the token string (32 bytes).';
COMMENT ON COLUMN api_tokens.scopes IS 'read (technical services), operate (operators), admin (devices, tokens; implies the others).';
COMMENT ON COLUMN api_tokens.revoked_at IS 'When the token was revoked; NULL while it is valid.';
COMMENT ON COLUMN api_tokens.last_used_at IS 'Last authenticated request (updated at most once a minute).';
