-- Downstream PostgreSQL credentials (SQLite migration 0012): one role per
-- `postgres` token, dropped once the token is revoked or expired. Only the
-- password's SHA-256 is kept.
CREATE TABLE db_credentials (
    token_id TEXT COLLATE "C" PRIMARY KEY,
    role TEXT NOT NULL UNIQUE,
    database TEXT NOT NULL,
    password_hash BYTEA NOT NULL,
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    dropped_at BIGINT,
    finding_id BIGINT
);
CREATE INDEX db_credentials_live ON db_credentials(next_attempt_at) WHERE status <> 'dropped';
