-- Exposure detection: third-party credentials Leash tracks (by fingerprint
-- only), leaked secrets found and what was done, and findings for review.
CREATE TABLE external_tokens (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    owner_id INTEGER REFERENCES owners(id),
    fingerprint TEXT NOT NULL UNIQUE,
    workloads TEXT NOT NULL,
    workflows TEXT NOT NULL,
    scopes TEXT NOT NULL,
    stored_in TEXT,
    connector TEXT,
    status TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);

CREATE TABLE exposures (
    id INTEGER PRIMARY KEY,
    source TEXT NOT NULL,
    location TEXT NOT NULL,
    detector TEXT NOT NULL,
    excerpt TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    token_id TEXT,
    external_id INTEGER,
    action TEXT NOT NULL,
    detected_at INTEGER NOT NULL,
    revoked_at INTEGER,
    revoked_count INTEGER NOT NULL,
    event INTEGER NOT NULL
);
-- the same secret reported twice from the same place is one exposure
CREATE UNIQUE INDEX exposures_seen ON exposures(fingerprint, location);

CREATE TABLE findings (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    severity TEXT NOT NULL,
    subject TEXT NOT NULL,
    owner_id INTEGER,
    summary TEXT NOT NULL,
    evidence TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX findings_status ON findings(status);
