-- Workload identity federation: trusted issuers and the rules that map
-- their verified claims to workloads.
CREATE TABLE issuers (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    issuer TEXT NOT NULL UNIQUE,
    jwks_url TEXT,
    jwks TEXT,
    audience TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE identity_rules (
    id INTEGER PRIMARY KEY,
    workload_id INTEGER NOT NULL REFERENCES workloads(id),
    issuer_id INTEGER NOT NULL REFERENCES issuers(id),
    claims TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
