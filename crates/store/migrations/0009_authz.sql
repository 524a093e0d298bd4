-- Request-time authorization: break-glass grants, approvals for write
-- scopes, owner credentials and delegates, and usage records.
ALTER TABLE tokens ADD COLUMN break_glass INTEGER NOT NULL DEFAULT 0;
CREATE INDEX tokens_break_glass ON tokens(break_glass) WHERE break_glass = 1;

CREATE TABLE approvals (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    workload_id INTEGER NOT NULL REFERENCES workloads(id),
    owner_id INTEGER NOT NULL REFERENCES owners(id),
    request TEXT NOT NULL,
    justification TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    requested_at INTEGER NOT NULL,
    status TEXT NOT NULL,
    decided_by TEXT,
    decided_at INTEGER,
    decision_note TEXT,
    token_id TEXT
);
CREATE INDEX approvals_status ON approvals(status);

-- credentials that let an owner (a person) approve requests; SHA-256 only
CREATE TABLE owner_credentials (
    id INTEGER PRIMARY KEY,
    owner_id INTEGER NOT NULL REFERENCES owners(id),
    secret_hash BLOB NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);

-- an owner may name people who approve on their behalf
CREATE TABLE owner_delegates (
    owner_id INTEGER NOT NULL REFERENCES owners(id),
    delegate_id INTEGER NOT NULL REFERENCES owners(id),
    created_at INTEGER NOT NULL,
    PRIMARY KEY (owner_id, delegate_id)
) WITHOUT ROWID;

-- every decision, aggregated per token and what it was used for
CREATE TABLE usage_totals (
    token_id TEXT NOT NULL,
    workload TEXT NOT NULL,
    action TEXT NOT NULL,
    resource TEXT NOT NULL,
    tool TEXT NOT NULL,
    allowed INTEGER NOT NULL,
    count INTEGER NOT NULL,
    first_at INTEGER NOT NULL,
    last_at INTEGER NOT NULL,
    PRIMARY KEY (token_id, workload, action, resource, tool, allowed)
) WITHOUT ROWID;

-- the most recent decisions one by one (bounded: old rows are pruned)
CREATE TABLE usage_log (
    id INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    token_id TEXT NOT NULL,
    workload TEXT NOT NULL,
    action TEXT NOT NULL,
    resource TEXT NOT NULL,
    tool TEXT NOT NULL,
    allowed INTEGER NOT NULL,
    reason TEXT NOT NULL
);
CREATE INDEX usage_log_token ON usage_log(token_id, id);
CREATE INDEX findings_subject ON findings(subject, kind);
