-- Review: imported inventories, usage from workload logs, removal tests.

-- what an import tells about a third-party credential
ALTER TABLE external_tokens ADD COLUMN provider TEXT;
ALTER TABLE external_tokens ADD COLUMN credential_kind TEXT;
ALTER TABLE external_tokens ADD COLUMN key_id TEXT;
ALTER TABLE external_tokens ADD COLUMN issued_at INTEGER;
ALTER TABLE external_tokens ADD COLUMN expires_at INTEGER;
ALTER TABLE external_tokens ADD COLUMN last_used_at INTEGER;
ALTER TABLE external_tokens ADD COLUMN imported_from TEXT;

-- usage per run and step (what a removability test reads); `run` is the
-- Leash run id for Leash tokens, the logged run for others, '' when unknown
CREATE TABLE usage_runs (
    token_id TEXT NOT NULL,
    run TEXT NOT NULL,
    step TEXT NOT NULL,
    action TEXT NOT NULL,
    resource TEXT NOT NULL,
    count INTEGER NOT NULL,
    first_at INTEGER NOT NULL,
    last_at INTEGER NOT NULL,
    PRIMARY KEY (token_id, run, step, action, resource)
) WITHOUT ROWID;

-- events from workload logs, counted apart from Leash's own decisions
CREATE TABLE usage_sources (
    source TEXT PRIMARY KEY,
    events INTEGER NOT NULL,
    unknown_refs INTEGER NOT NULL,
    skipped INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE removal_tests (
    id INTEGER PRIMARY KEY,
    target_kind TEXT NOT NULL,
    target TEXT NOT NULL,
    workflow_id INTEGER REFERENCES workflows(id),
    workload_id INTEGER REFERENCES workloads(id),
    scopes TEXT NOT NULL,
    verdict TEXT NOT NULL,
    evidence TEXT NOT NULL,
    canary TEXT NOT NULL,
    canary_run INTEGER,
    canary_denied INTEGER NOT NULL DEFAULT 0,
    digest TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX removal_tests_workflow ON removal_tests(workflow_id);
CREATE INDEX tokens_issued ON tokens(workload_id, issued_at);
CREATE INDEX findings_kind ON findings(kind, status);
