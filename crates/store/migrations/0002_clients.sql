-- OAuth clients: how workloads authenticate at /oauth2/token.
CREATE TABLE clients (
    id TEXT PRIMARY KEY,
    workload_id INTEGER NOT NULL REFERENCES workloads(id),
    secret_hash BLOB,
    jwks TEXT,
    created_at INTEGER NOT NULL
);
