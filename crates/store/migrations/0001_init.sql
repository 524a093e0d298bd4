-- Leash registry, tokens and audit log (SQLite).
CREATE TABLE owners (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    email TEXT NOT NULL,
    kind TEXT NOT NULL,
    business_owner INTEGER NOT NULL,
    status TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    offboarded_at INTEGER
);

CREATE TABLE workloads (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    owner_id INTEGER NOT NULL REFERENCES owners(id),
    identity TEXT,
    environment TEXT NOT NULL,
    scope_ceiling TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE workflows (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    owner_id INTEGER NOT NULL REFERENCES owners(id),
    digest TEXT NOT NULL,
    tools TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE runs (
    id INTEGER PRIMARY KEY,
    workflow_id INTEGER NOT NULL REFERENCES workflows(id),
    workload_id INTEGER NOT NULL REFERENCES workloads(id),
    digest TEXT NOT NULL,
    state TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    ended_at INTEGER
);
CREATE INDEX runs_running ON runs(workflow_id) WHERE state = 'running';

CREATE TABLE tokens (
    id TEXT PRIMARY KEY,
    format TEXT NOT NULL,
    secret_hash BLOB,
    owner_id INTEGER NOT NULL,
    workload_id INTEGER NOT NULL,
    run_id INTEGER,
    workflow_id INTEGER,
    scopes TEXT NOT NULL,
    audience TEXT NOT NULL,
    issued_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    parent_id TEXT,
    justification TEXT,
    has_write INTEGER NOT NULL,
    revoked_at INTEGER,
    revoked_trigger TEXT,
    revoked_reason TEXT,
    revoked_event INTEGER
) WITHOUT ROWID;
CREATE UNIQUE INDEX tokens_secret_hash ON tokens(secret_hash) WHERE secret_hash IS NOT NULL;
CREATE INDEX tokens_run ON tokens(run_id) WHERE run_id IS NOT NULL;
CREATE INDEX tokens_workload ON tokens(workload_id);
CREATE INDEX tokens_parent ON tokens(parent_id) WHERE parent_id IS NOT NULL;

CREATE TABLE events (
    seq INTEGER PRIMARY KEY,
    time INTEGER NOT NULL,
    kind TEXT NOT NULL,
    actor TEXT NOT NULL,
    subject TEXT NOT NULL,
    data TEXT NOT NULL,
    prev_hash BLOB NOT NULL,
    hash BLOB NOT NULL
);
