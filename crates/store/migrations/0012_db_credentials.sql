-- Downstream PostgreSQL credentials: one role per `postgres` token, created
-- in the credential database before the token is recorded, dropped once the
-- token is revoked or expired. The password is never stored, only its
-- SHA-256. `status` is active, dropped or drop_failed; a credential not yet
-- dropped whose token has ended is due when `next_attempt_at` has passed.
CREATE TABLE db_credentials (
    token_id TEXT PRIMARY KEY,
    role TEXT NOT NULL UNIQUE,
    database TEXT NOT NULL,
    password_hash BLOB NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    dropped_at INTEGER,
    finding_id INTEGER
) WITHOUT ROWID;
-- the reaper's scan reads only credentials not yet dropped
CREATE INDEX db_credentials_live ON db_credentials(next_attempt_at) WHERE status <> 'dropped';
