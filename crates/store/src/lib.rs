//! Leash storage.
//!
//! [`Store`] is the set of domain operations the server needs: each one is
//! one transaction, appends its audit events, and is durable before it
//! returns. [`SqliteStore`] is the embedded default: SQLite in WAL mode with
//! `synchronous=FULL`, one writer task that *group-commits* whatever work has
//! queued while the previous commit was syncing, and a pool of readers.
//! [`PgStore`] is the same store on PostgreSQL, for several processes
//! sharing one database; [`open_store`] picks one from a location (a data
//! directory or a `postgres://` URL). Both run one implementation of the
//! store's logic; only the connection and a few dialect differences are
//! per backend.
//!
//! ```no_run
//! # async fn demo() -> Result<(), leash_store::StoreError> {
//! use leash_store::{SqliteStore, Store, NewOwner, StoreConfig};
//! use leash_core::OwnerKind;
//!
//! let store = SqliteStore::open(std::path::Path::new("./.leash"), StoreConfig::default()).await?;
//! let alice = store.create_owner(NewOwner {
//!     name: "alice".into(), email: "alice@example.com".into(),
//!     kind: OwnerKind::Person, business_owner: true,
//! }, "operator").await?;
//! assert_eq!(alice.name, "alice");
//! # Ok(()) }
//! ```

mod engine;
mod postgres;
mod registry;
mod revocations;
mod rows;
mod sql;
mod sqlite;
#[cfg(test)]
#[path = "../tests/support/pg.rs"]
mod test_pg;

use std::future::Future;
use std::pin::Pin;

use leash_core::audit::{ChainBreak, ChainSummary, Event};
use leash_core::issuance::{MintRefusal, MintRequest, TtlCaps};
use leash_core::scope::Scope;
use leash_core::{
    Approval, ApprovalStatus, Client, CredentialStatus, DatabaseCredential, Environment, Exposure,
    ExposureSource, ExternalStatus, ExternalToken, Finding, FindingStatus, IdentityRule,
    InvalidInput, Issuer, Millis, Owner, OwnerKind, Run, RunState, Token, TokenStatus, Workflow,
    Workload,
};
use serde::Serialize;

pub use engine::ssf::{
    MAX_ACKS as SSF_MAX_ACKS, MAX_AUTHORIZATION as SSF_MAX_AUTHORIZATION,
    MAX_EVENTS_REQUESTED as SSF_MAX_EVENTS_REQUESTED,
    MAX_STREAMS_PER_CLIENT as SSF_MAX_STREAMS_PER_CLIENT, NewSet, NewSsfStream, SetError,
    SsfAdvance, SsfConfig, SsfMethod, SsfOutcome, SsfPush, SsfQueue, SsfStatus, SsfStream,
};
pub use engine::{
    COMMIT_CHANNEL, DROP_FAILED_FINDING, WRITER_LOCK, external_subject, merge_evidence,
    scope_allows, validate_fingerprint,
};
pub use postgres::verify_audit_in_database;
pub use registry::{Registry, SharedRegistry};
pub use revocations::{CommitFeed, RevocationRecord, RevocationSet, RevokedEntry};
pub use sqlite::verify_audit_offline;

/// The embedded store: SQLite (WAL, synchronous=FULL) in a data directory.
/// Open it with `SqliteStore::open(dir, cfg)`.
pub type SqliteStore = engine::SqlStore<sqlx::Sqlite>;

/// The shared store: PostgreSQL at a `postgres://` URL, with the same
/// behaviour as [`SqliteStore`]. Open it with `PgStore::open(url, cfg)`.
pub type PgStore = engine::SqlStore<sqlx::Postgres>;

/// Open the store at `location`: PostgreSQL for a `postgres://` or
/// `postgresql://` URL, otherwise SQLite in that data directory.
pub async fn open_store(
    location: &str,
    cfg: StoreConfig,
) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    if postgres::is_url(location) {
        Ok(std::sync::Arc::new(PgStore::open(location, cfg).await?))
    } else {
        Ok(std::sync::Arc::new(
            SqliteStore::open(std::path::Path::new(location), cfg).await?,
        ))
    }
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{what} `{key}` does not exist")]
    NotFound { what: &'static str, key: String },
    #[error("{what} `{name}` already exists; choose another name")]
    Duplicate { what: &'static str, name: String },
    #[error(transparent)]
    Refused(#[from] MintRefusal),
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    #[error("{0}")]
    Conflict(String),
    #[error("storage failed: {0}")]
    Storage(String),
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
    #[error("the store is shutting down")]
    Closed,
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Storage(e.to_string())
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        StoreError::Storage(format!("migration failed: {e}"))
    }
}

/// Store settings.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub ttl_caps: TtlCaps,
    /// Most operations in one group commit.
    pub max_batch: usize,
    /// Reader connections.
    pub readers: u32,
    /// Most delegation hops below a root token.
    pub max_delegation_depth: u32,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            ttl_caps: TtlCaps::default(),
            max_batch: 1024,
            readers: 4,
            max_delegation_depth: leash_core::issuance::DEFAULT_MAX_DELEGATION_DEPTH,
        }
    }
}

/// A new owner.
#[derive(Debug, Clone)]
pub struct NewOwner {
    pub name: String,
    pub email: String,
    pub kind: OwnerKind,
    pub business_owner: bool,
}

/// A new workload.
#[derive(Debug, Clone)]
pub struct NewWorkload {
    pub name: String,
    pub owner: String,
    pub identity: Option<String>,
    pub environment: Environment,
    pub scope_ceiling: Vec<Scope>,
}

/// A new workflow.
#[derive(Debug, Clone)]
pub struct NewWorkflow {
    pub name: String,
    pub owner: String,
    pub digest: String,
    pub tools: Vec<String>,
}

/// A new trusted issuer.
#[derive(Debug, Clone)]
pub struct NewIssuer {
    pub name: String,
    pub issuer: String,
    pub jwks_url: Option<String>,
    pub jwks: Option<String>,
    pub audience: String,
}

/// A new OAuth client.
#[derive(Debug, Clone)]
pub struct NewClient {
    pub id: String,
    pub workload: String,
    pub secret_hash: Option<[u8; 32]>,
    pub jwks: Option<String>,
    pub can_introspect: bool,
}

/// A token ready to record: built and signed by the caller after a
/// pre-check; the store checks the request again against the registry as
/// it is at commit time.
#[derive(Debug, Clone)]
pub struct MintPlan {
    pub token: Token,
    /// SHA-256 of an opaque token; None for JWTs.
    pub secret_hash: Option<[u8; 32]>,
    pub request: MintRequest,
    /// The approval this token is issued under (it must be approved and
    /// unclaimed; the store marks it issued in the same transaction).
    pub approval: Option<i64>,
    /// Most write-capable tokens the workload may hold at once (checked at
    /// commit for write-capable tokens).
    pub write_budget: Option<u32>,
    /// The PostgreSQL role created for a `postgres` token, recorded in the
    /// same transaction as the token.
    pub credential: Option<NewCredential>,
}

/// A downstream PostgreSQL role, already created, to record with its token.
#[derive(Debug, Clone)]
pub struct NewCredential {
    pub role: String,
    pub database: String,
    /// SHA-256 of its password (the password itself is never stored).
    pub password_hash: [u8; 32],
}

/// What one attempt to drop a credential's role found.
#[derive(Debug, Clone)]
pub enum DropAttempt {
    /// The role is gone (`already_gone`: it was before this attempt).
    Dropped {
        sessions_ended: u64,
        already_gone: bool,
    },
    /// It failed: try again at `next_attempt_at`. After `fail_after` failed
    /// attempts an active credential becomes `drop_failed`, which is
    /// audited and opens a finding.
    Failed {
        error: String,
        next_attempt_at: Millis,
        fail_after: u32,
    },
}

/// A third-party credential to track (its secret is never stored: only
/// the SHA-256 fingerprint).
#[derive(Debug, Clone)]
pub struct NewExternalToken {
    pub name: String,
    pub kind: String,
    /// Owner name, when one is known (an unowned token is allowed, and shows as such).
    pub owner: Option<String>,
    /// Hex SHA-256 of the secret.
    pub fingerprint: String,
    /// Names of the workloads and workflows that use it.
    pub workloads: Vec<String>,
    pub workflows: Vec<String>,
    pub scopes: Vec<String>,
    pub stored_in: Option<String>,
    pub connector: Option<String>,
}

/// A leaked secret to record. When `token_id` names a Leash token, the store
/// revokes it (and its descendants) in the same transaction.
#[derive(Debug, Clone)]
pub struct NewExposure {
    pub source: ExposureSource,
    pub location: String,
    pub detector: String,
    /// Redacted excerpt (callers never pass the secret).
    pub excerpt: String,
    /// Hex SHA-256 of the secret.
    pub fingerprint: String,
    /// The Leash token it is (recognised by the caller with certainty:
    /// checksum and registry hash, or signature and key id).
    pub token_id: Option<String>,
    /// When the text holding it was received.
    pub detected_at: Millis,
}

/// What recording an exposure did.
#[derive(Debug, Clone, Serialize)]
pub struct ExposureRecord {
    pub exposure: Exposure,
    /// The revocation it caused (empty when nothing was live).
    pub revoked: Revoked,
    /// The finding it opened (None for a repeat report).
    pub finding: Option<Finding>,
    /// The external token it matched.
    pub external: Option<ExternalToken>,
    /// The same secret was already reported from the same location: nothing new was recorded.
    pub repeat: bool,
}

/// A signing key as the database keeps it: PKCS#8, sealed by the server
/// under its key-encryption key (the store never sees it in the clear).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedKey {
    pub kid: String,
    /// Unix ms; the newest key signs.
    pub created_ms: Millis,
    pub sealed: Vec<u8>,
}

/// What a revocation did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Revoked {
    /// Audit sequence number of the event that caused it (None if nothing changed).
    pub event: Option<i64>,
    /// The trigger recorded on the directly revoked tokens.
    pub trigger: Option<leash_core::RevocationTrigger>,
    /// How many tokens it revoked, descendants included.
    pub count: usize,
    /// How many of those were descendants (trigger `parent_revoked`).
    pub cascaded: usize,
    /// The first ids revoked (at most 100).
    pub tokens: Vec<String>,
}

/// Token list filter.
#[derive(Debug, Clone, Default)]
pub struct TokenFilter {
    pub owner_id: Option<i64>,
    pub workload_id: Option<i64>,
    pub run_id: Option<i64>,
    pub status: Option<TokenStatus>,
    /// Only break-glass grants (true) or only normal tokens (false).
    pub break_glass: Option<bool>,
    /// Only ids after this one (pagination cursor).
    pub after: Option<String>,
    pub limit: u32,
}

/// A boxed future for object-safe async trait methods.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// The domain operations Leash needs from storage. Every mutating call is
/// one transaction that appends its audit events and is durable on return.
pub trait Store: Send + Sync {
    /// Registry snapshot access for fast lookups and issuance pre-checks.
    fn registry(&self) -> &SharedRegistry;
    /// Revoked, unexpired tokens, current as of the last acknowledged commit.
    fn revocations(&self) -> &RevocationSet;
    /// What each commit made durable: revocations as they happen, and the
    /// audit sequence number applied here.
    fn commits(&self) -> &CommitFeed;
    /// Committed revocations after audit sequence number `after`, in order,
    /// at most `limit`: the durable revocation feed a consumer resumes from.
    fn revocations_after(&self, after: i64, limit: u32) -> StoreFuture<'_, Vec<RevocationRecord>>;
    /// On a shared database, return once this process has read every
    /// commit other processes made before the call (read-your-writes across
    /// replicas, for a request that depends on one made elsewhere); at once
    /// when this process is its database's only writer.
    fn catch_up(&self) -> StoreFuture<'_, ()>;
    /// The signing keys kept in the database (sealed), newest first.
    fn signing_keys(&self) -> StoreFuture<'_, Vec<SealedKey>>;
    /// Keep a new sealed signing key; with `first`, only if there is none
    /// yet. Returns whether it was kept (audited `key.created` for the
    /// first, `key.rotated` after).
    fn add_signing_key(&self, key: SealedKey, first: bool, actor: &str) -> StoreFuture<'_, bool>;
    /// TTL caps in force.
    fn ttl_caps(&self) -> TtlCaps;

    fn create_owner(&self, new: NewOwner, actor: &str) -> StoreFuture<'_, Owner>;
    /// Offboard an owner and revoke all their tokens.
    fn offboard_owner_and_revoke(
        &self,
        name: &str,
        actor: &str,
    ) -> StoreFuture<'_, (Owner, Revoked)>;
    fn create_workload(&self, new: NewWorkload, actor: &str) -> StoreFuture<'_, Workload>;
    fn create_workflow(&self, new: NewWorkflow, actor: &str) -> StoreFuture<'_, Workflow>;
    /// Change a workflow's definition; tokens of runs on the old digest are revoked.
    fn update_workflow_and_revoke(
        &self,
        name: &str,
        digest: String,
        tools: Option<Vec<String>>,
        actor: &str,
    ) -> StoreFuture<'_, (Workflow, Revoked)>;
    fn start_run(&self, workflow: &str, workload: &str, actor: &str) -> StoreFuture<'_, Run>;
    /// Append one audit event for a state change kept outside the database
    /// (e.g. a signing-key rotation); returns its sequence number.
    fn record_event(
        &self,
        kind: &str,
        subject: &str,
        data: serde_json::Value,
        actor: &str,
    ) -> StoreFuture<'_, i64>;
    /// Trust an external issuer.
    fn create_issuer(&self, new: NewIssuer, actor: &str) -> StoreFuture<'_, Issuer>;
    /// Map an issuer's verified claims to a workload.
    fn add_identity_rule(
        &self,
        workload: &str,
        issuer: &str,
        claims: std::collections::BTreeMap<String, String>,
        actor: &str,
    ) -> StoreFuture<'_, IdentityRule>;
    /// Register an OAuth client for a workload (`client.id` is chosen by the caller).
    fn create_client(&self, client: NewClient, actor: &str) -> StoreFuture<'_, Client>;
    /// End a run; every live token of it (and descendants) is revoked in the same transaction.
    fn end_run_and_revoke(
        &self,
        run: i64,
        state: RunState,
        actor: &str,
    ) -> StoreFuture<'_, (Run, Revoked)>;
    /// Record a minted token (durable on return).
    fn record_mint(&self, plan: MintPlan, actor: &str) -> StoreFuture<'_, ()>;
    /// Revoke one token by hand, with its descendants.
    fn revoke_token(&self, id: &str, reason: String, actor: &str) -> StoreFuture<'_, Revoked>;

    fn get_run(&self, id: i64) -> StoreFuture<'_, Run>;
    fn list_runs(&self, workflow_id: Option<i64>, limit: u32) -> StoreFuture<'_, Vec<Run>>;
    fn get_token(&self, id: &str) -> StoreFuture<'_, Token>;
    fn find_token_by_secret_hash(&self, hash: [u8; 32]) -> StoreFuture<'_, Token>;
    fn list_tokens(&self, filter: TokenFilter, now: Millis) -> StoreFuture<'_, Vec<Token>>;
    fn get_event(&self, seq: i64) -> StoreFuture<'_, Event>;
    /// Events with seq > `after`, ascending, at most `limit`.
    fn events_after(&self, after: i64, limit: u32) -> StoreFuture<'_, Vec<Event>>;
    /// Most recent events, newest last.
    fn latest_events(&self, limit: u32) -> StoreFuture<'_, Vec<Event>>;
    /// Verify the whole audit chain.
    fn verify_audit(&self) -> StoreFuture<'_, Result<ChainSummary, Vec<ChainBreak>>>;
    /// Counts by token status, for metrics and reports.
    fn token_counts(&self, now: Millis) -> StoreFuture<'_, TokenCounts>;
    /// Track a third-party credential by fingerprint.
    fn create_external_token(
        &self,
        new: NewExternalToken,
        actor: &str,
    ) -> StoreFuture<'_, ExternalToken>;
    /// Record what a revocation connector did for an external token.
    fn set_external_status(
        &self,
        id: i64,
        status: ExternalStatus,
        detail: String,
        actor: &str,
    ) -> StoreFuture<'_, ExternalToken>;
    /// Record a leaked secret: revoke the Leash token it is (with its
    /// descendants), match a third-party secret against the external
    /// inventory, open a finding. One transaction, durable on return.
    fn record_exposure_and_revoke(
        &self,
        new: NewExposure,
        actor: &str,
    ) -> StoreFuture<'_, ExposureRecord>;
    /// Change a finding's review status.
    fn set_finding_status(
        &self,
        id: i64,
        status: FindingStatus,
        note: String,
        actor: &str,
    ) -> StoreFuture<'_, Finding>;
    fn get_external_token(&self, id: i64) -> StoreFuture<'_, ExternalToken>;
    fn external_token_by_name(&self, name: &str) -> StoreFuture<'_, ExternalToken>;
    /// External tokens with id > `after`, ascending.
    fn list_external_tokens(&self, after: i64, limit: u32) -> StoreFuture<'_, Vec<ExternalToken>>;
    fn get_exposure(&self, id: i64) -> StoreFuture<'_, Exposure>;
    /// Exposures, newest first, with id < `before` when given.
    fn list_exposures(&self, before: Option<i64>, limit: u32) -> StoreFuture<'_, Vec<Exposure>>;
    fn get_finding(&self, id: i64) -> StoreFuture<'_, Finding>;
    /// Findings, newest first, optionally of one status, with id < `before` when given.
    fn list_findings(
        &self,
        status: Option<FindingStatus>,
        before: Option<i64>,
        limit: u32,
    ) -> StoreFuture<'_, Vec<Finding>>;

    /// Add decisions to the usage aggregates and the raw log, then prune
    /// the raw log to its newest `keep_log` rows. Not audited (usage is
    /// evidence, not a change of state).
    fn record_usage(
        &self,
        totals: Vec<UsageTotal>,
        log: Vec<UsageRecord>,
        keep_log: u64,
    ) -> StoreFuture<'_, ()>;
    /// A token's usage: every aggregate and its `recent` newest raw records.
    fn token_usage(&self, token_id: &str, recent: u32) -> StoreFuture<'_, TokenUsage>;
    /// Record a violation: open a finding (one open finding per token and
    /// class) and, when asked, revoke the token with its descendants.
    fn record_violation_and_revoke(
        &self,
        v: NewViolation,
        actor: &str,
    ) -> StoreFuture<'_, ViolationRecord>;
    /// Ask for a token that needs approval; the workload's owner approves.
    fn create_approval(&self, new: NewApproval, actor: &str) -> StoreFuture<'_, Approval>;
    /// Approve or deny a pending request as `approver` (an owner name): the
    /// workload's owner or one of their delegates.
    fn decide_approval(
        &self,
        id: i64,
        approve: bool,
        approver: &str,
        note: String,
        actor: &str,
    ) -> StoreFuture<'_, Approval>;
    fn get_approval(&self, id: i64) -> StoreFuture<'_, Approval>;
    /// Approvals, newest first, optionally of one status, with id < `before`.
    fn list_approvals(
        &self,
        status: Option<ApprovalStatus>,
        before: Option<i64>,
        limit: u32,
    ) -> StoreFuture<'_, Vec<Approval>>;
    /// Store a credential (its SHA-256) that lets `owner` approve requests.
    fn create_owner_credential(
        &self,
        owner: &str,
        secret_hash: [u8; 32],
        actor: &str,
    ) -> StoreFuture<'_, Owner>;
    /// The owner a credential belongs to (NotFound when none).
    fn owner_by_credential(&self, secret_hash: [u8; 32]) -> StoreFuture<'_, Owner>;
    /// Let `delegate` approve on behalf of `owner`.
    fn add_delegate(&self, owner: &str, delegate: &str, actor: &str) -> StoreFuture<'_, ()>;
    /// Names of the owners who may approve for `owner` (its delegates).
    fn delegates_of(&self, owner_id: i64) -> StoreFuture<'_, Vec<String>>;
    /// Revoke break-glass grants whose TTL ends before `due` (trigger
    /// `expiry`), so they end revoked and visibly so.
    fn revoke_due_break_glass(&self, due: Millis) -> StoreFuture<'_, Revoked>;

    /// Credentials not yet dropped whose token is revoked or expired at
    /// `now` and whose next drop attempt is due, soonest first.
    fn credentials_due(&self, now: Millis, limit: u32) -> StoreFuture<'_, Vec<DatabaseCredential>>;
    /// Record what an attempt to drop a credential's role found: dropped
    /// (audited `credential.dropped`), or failed (retried; after a few
    /// failures `drop_failed`, audited `credential.drop_failed`, with a finding).
    fn record_credential_drop(
        &self,
        token_id: &str,
        attempt: DropAttempt,
        actor: &str,
    ) -> StoreFuture<'_, DatabaseCredential>;
    /// Register an SSF event stream (audited `ssf.stream_created`); its
    /// cursor starts at that event, so it carries revocations from then on.
    /// Conflict when its client already holds [`SSF_MAX_STREAMS_PER_CLIENT`].
    fn create_ssf_stream(&self, new: NewSsfStream, actor: &str) -> StoreFuture<'_, SsfStream>;
    /// Replace a stream's receiver-supplied configuration (audited).
    fn replace_ssf_stream(
        &self,
        stream_id: &str,
        config: SsfConfig,
        actor: &str,
    ) -> StoreFuture<'_, SsfStream>;
    /// Delete a stream and everything queued for it (audited).
    fn delete_ssf_stream(&self, stream_id: &str, actor: &str) -> StoreFuture<'_, ()>;
    /// Enable, pause (SETs are held) or disable (held SETs are dropped) a
    /// stream (audited `ssf.status_changed`).
    fn set_ssf_status(
        &self,
        stream_id: &str,
        status: SsfStatus,
        reason: Option<String>,
        actor: &str,
    ) -> StoreFuture<'_, SsfStream>;
    fn get_ssf_stream(&self, stream_id: &str) -> StoreFuture<'_, SsfStream>;
    /// Streams by id after `after` (of one client when given).
    fn list_ssf_streams(
        &self,
        client_id: Option<String>,
        after: String,
        limit: u32,
    ) -> StoreFuture<'_, Vec<SsfStream>>;
    /// Queue signed SETs and move each stream's cursor with them, in one
    /// transaction (see [`SsfAdvance`]); returns how many rows were queued.
    fn queue_ssf_sets(&self, advances: Vec<SsfAdvance>) -> StoreFuture<'_, u64>;
    /// Queue a verification SET (audited `ssf.verification_requested`,
    /// whose sequence number it is queued under). Conflict when disabled.
    fn queue_ssf_verification(
        &self,
        stream_id: &str,
        set: NewSet,
        actor: &str,
    ) -> StoreFuture<'_, ()>;
    /// Claim up to `limit` SETs due for push on enabled streams: each is
    /// leased for `lease_ms` (no other claim returns it until then).
    fn claim_ssf_push(
        &self,
        now: Millis,
        lease_ms: Millis,
        limit: u32,
    ) -> StoreFuture<'_, Vec<SsfPush>>;
    /// Record a push attempt: delivered SETs leave the outbox; failures
    /// are retried or, given up on, kept `failed` (audited).
    fn record_ssf_push(&self, jti: &str, outcome: SsfOutcome, actor: &str) -> StoreFuture<'_, ()>;
    /// A poller's acknowledgements (removed) and errors (kept `failed`,
    /// audited), at most [`SSF_MAX_ACKS`] in all.
    fn ack_ssf_sets(
        &self,
        stream_id: &str,
        acks: Vec<String>,
        errors: Vec<SetError>,
        actor: &str,
    ) -> StoreFuture<'_, ()>;
    /// SETs waiting for a stream, oldest first: `(jti, set)`.
    fn pending_ssf_sets(
        &self,
        stream_id: &str,
        limit: u32,
    ) -> StoreFuture<'_, Vec<(String, String)>>;
    /// How many SETs are pending and failed for a stream, with the last error.
    fn ssf_queue(&self, stream_id: &str) -> StoreFuture<'_, SsfQueue>;

    /// The credential of a `postgres` token (None for other tokens).
    fn get_credential(&self, token_id: &str) -> StoreFuture<'_, Option<DatabaseCredential>>;
    /// Credentials by token id, after `after`, optionally of one status.
    fn list_credentials(
        &self,
        status: Option<CredentialStatus>,
        after: Option<String>,
        limit: u32,
    ) -> StoreFuture<'_, Vec<DatabaseCredential>>;

    /// Record a whole inventory export, or nothing: every record is checked
    /// (owners and workloads must be registered) before any is written;
    /// errors name the record's line. A credential already tracked (same
    /// fingerprint) is updated. Each unowned one opens a finding.
    fn import_external(
        &self,
        records: Vec<ImportedCredential>,
        source: String,
        actor: &str,
    ) -> StoreFuture<'_, ImportSummary>;
    /// What a token reference in usage is (None when Leash knows no such token).
    fn usage_subject(&self, r: UsageRef) -> StoreFuture<'_, Option<UsageSubject>>;
    /// [`Store::usage_subject`] for many references at once, in their order.
    fn usage_subjects(&self, refs: Vec<UsageRef>) -> StoreFuture<'_, Vec<Option<UsageSubject>>>;
    /// Write usage from outside Leash's decisions and the findings it raised.
    fn record_review(&self, batch: ReviewBatch, actor: &str) -> StoreFuture<'_, ReviewOutcome>;
    /// Findings computed over the whole registry: stale external tokens,
    /// shadow ownership, reissue churn, unused privilege; with the churn
    /// chains found (longest first).
    fn review_sweep(
        &self,
        settings: ReviewSettings,
        now: Millis,
    ) -> StoreFuture<'_, (Vec<NewFinding>, Vec<ChurnChain>)>;
    /// Chains of back-to-back reissues longer than the threshold.
    fn churn_chains(
        &self,
        settings: ReviewSettings,
        now: Millis,
    ) -> StoreFuture<'_, Vec<ChurnChain>>;
    /// Findings by (kind, status, count).
    fn finding_counts(&self) -> StoreFuture<'_, Vec<(String, String, u64)>>;
    /// The counts behind the controls-evidence report (findings apart: see
    /// [`Store::finding_counts`]).
    fn report_numbers(
        &self,
        settings: ReviewSettings,
        now: Millis,
    ) -> StoreFuture<'_, ReportNumbers>;
    /// Create (id 0) or update a removability test.
    fn save_removal_test(&self, t: RemovalTest, actor: &str) -> StoreFuture<'_, RemovalTest>;
    fn get_removal_test(&self, id: i64) -> StoreFuture<'_, RemovalTest>;
    /// Removability tests, newest first (of one workflow when given).
    fn list_removal_tests(&self, workflow_id: Option<i64>) -> StoreFuture<'_, Vec<RemovalTest>>;
    /// The `last` ended runs of a workflow (of one workload when given),
    /// newest first, with their tokens and uses per step.
    fn runs_usage(
        &self,
        workflow_id: i64,
        workload_id: Option<i64>,
        last: u32,
    ) -> StoreFuture<'_, Vec<RunUsage>>;
}

/// Thresholds of the review rules and the report.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ReviewSettings {
    /// An external token unused this long is stale.
    pub stale_days: u32,
    /// Reissues at most this far apart belong to one chain.
    pub churn_gap_ms: Millis,
    /// A chain whose effective access spans longer than this is churn.
    pub churn_threshold_ms: Millis,
    /// Scopes unused over this many ended runs are unused privilege.
    pub unused_runs: u32,
}

impl Default for ReviewSettings {
    fn default() -> Self {
        Self {
            stale_days: 90,
            churn_gap_ms: 10 * 60 * 1000,
            churn_threshold_ms: 24 * 3_600_000,
            unused_runs: 5,
        }
    }
}

/// Back-to-back reissues of the same workload and scope set.
#[derive(Debug, Clone, Serialize)]
pub struct ChurnChain {
    pub workload_id: i64,
    pub workload: String,
    pub owner_id: i64,
    pub scopes: Vec<String>,
    pub tokens: u64,
    pub first_issued: Millis,
    /// When the last token stopped working (revoked or expired), or will.
    pub last_end: Millis,
    pub first_token: String,
    pub last_token: String,
}

impl ChurnChain {
    /// How long the chain gave access, in hours.
    pub fn effective_hours(&self) -> f64 {
        (self.last_end - self.first_issued) as f64 / 3_600_000.0
    }
}

/// The counts behind the report (live = active at `now`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReportNumbers {
    pub leash_total: u64,
    pub leash_live: u64,
    pub live_owned: u64,
    pub live_run_bound: u64,
    pub live_over_ttl_cap: u64,
    pub live_write: u64,
    pub live_write_justified: u64,
    pub live_write_approved: u64,
    pub external_total: u64,
    pub external_active: u64,
    pub external_owned: u64,
    pub external_with_workloads: u64,
    pub external_with_scopes: u64,
    /// Active external tokens with a known revocation event (a connector or an expiry).
    pub external_with_trigger: u64,
    /// Exposures of credentials Leash can revoke (its own, or tracked with a connector).
    pub exposures_revocable: u64,
    pub exposures_revoked: u64,
    /// Detection-to-revocation latencies, ascending.
    pub revocation_latencies_ms: Vec<u64>,
    pub decisions: u64,
    pub denied: u64,
    pub log_events: u64,
    pub unknown_refs: u64,
    pub break_glass_total: u64,
    pub break_glass_live: u64,
    pub break_glass_overdue: u64,
}

/// Token counts by status.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct TokenCounts {
    pub active: u64,
    pub revoked: u64,
    pub expired: u64,
    /// Active tokens holding a write or admin scope.
    pub active_write: u64,
}

/// One authorization decision, as the raw usage log keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsageRecord {
    pub at: Millis,
    pub token_id: String,
    /// The workload that presented the token (the AuthZEN subject id).
    pub workload: String,
    pub action: String,
    /// `TYPE:ID`.
    pub resource: String,
    /// `""` when the request named no tool.
    pub tool: String,
    pub allowed: bool,
    /// Why (the first reason's kind and policy, e.g. `forbid:prod-only-from-prod`).
    pub reason: String,
}

/// Decisions of one kind for one token: how many, first and last.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsageTotal {
    pub token_id: String,
    pub workload: String,
    pub action: String,
    pub resource: String,
    pub tool: String,
    pub allowed: bool,
    pub count: u64,
    pub first_at: Millis,
    pub last_at: Millis,
}

/// What Leash knows about one token's use.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TokenUsage {
    /// Every decision, aggregated (never pruned).
    pub totals: Vec<UsageTotal>,
    /// The most recent decisions one by one (the raw log is bounded).
    pub recent: Vec<UsageRecord>,
}

/// A violation of a token's terms seen at decision time.
#[derive(Debug, Clone)]
pub struct NewViolation {
    pub token_id: String,
    pub class: leash_core::ViolationClass,
    /// What happened, for the finding's summary.
    pub detail: String,
    pub evidence: serde_json::Value,
    /// Revoke the token and its descendants too.
    pub revoke: bool,
}

/// What recording a violation did.
#[derive(Debug, Clone, Serialize)]
pub struct ViolationRecord {
    /// The finding opened, or the open one for the same token and class.
    pub finding: Finding,
    /// True when an open finding already covered it (nothing new opened).
    pub repeat: bool,
    pub revoked: Revoked,
}

/// A request for a token that needs a person's approval.
#[derive(Debug, Clone)]
pub struct NewApproval {
    pub kind: leash_core::ApprovalKind,
    pub workload: String,
    pub request: serde_json::Value,
    pub justification: String,
}

/// Current Unix time in milliseconds.
pub fn now_ms() -> Millis {
    time::OffsetDateTime::now_utc()
        .unix_timestamp_nanos()
        .div_euclid(1_000_000) as Millis
}

/// A third-party credential from an inventory export (parsed by the caller;
/// the store resolves names and records the whole file or nothing).
#[derive(Debug, Clone, Serialize)]
pub struct ImportedCredential {
    /// Line of the export it came from (named in errors).
    pub line: usize,
    pub name: String,
    /// `oauth_grant`, `api_key` or `service_account_key`.
    pub credential_kind: String,
    pub provider: String,
    /// Owner name or email; None when the export names nobody.
    pub owner: Option<String>,
    pub scopes: Vec<String>,
    pub issued_at: Option<Millis>,
    pub last_used_at: Option<Millis>,
    pub expires_at: Option<Millis>,
    pub stored_in: Option<String>,
    pub fingerprint: String,
    pub key_id: Option<String>,
    /// Workload names (each must be registered).
    pub workloads: Vec<String>,
}

/// What an import did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ImportSummary {
    pub created: u64,
    pub updated: u64,
    /// Imported credentials nobody owns (each opens a finding).
    pub unowned: u64,
    /// Findings opened by the import.
    pub findings: Vec<i64>,
}

/// What a token reference in usage resolved to, with what the review rules
/// compare each use against.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UsageSubject {
    /// `tok_…` for Leash tokens, `external:NAME` for third-party ones: the
    /// key of its usage and the subject of its findings.
    pub subject: String,
    pub external_id: Option<i64>,
    pub owner_id: Option<i64>,
    /// Names of the workloads the token is bound to or declared for.
    pub workloads: Vec<String>,
    /// Their identities (SPIFFE ID, OIDC subject), each with its workload's name.
    pub identities: Vec<(String, String)>,
    /// Tools its workflow declares (empty: none declared).
    pub tools: Vec<String>,
    pub scopes: Vec<String>,
    pub run: Option<i64>,
    pub run_ended_at: Option<Millis>,
    /// Meant for a workload, not a person (every Leash token; an external
    /// one that names workloads or is a service-account key).
    pub workload_token: bool,
    /// What earlier usage showed (its usual set).
    pub seen_workloads: Vec<String>,
    pub seen_tools: Vec<String>,
    pub seen_resources: Vec<String>,
    pub seen_events: u64,
}

/// A token reference found in usage.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum UsageRef {
    /// A Leash token id or an external token's name.
    Id(String),
    /// Hex SHA-256 of the secret.
    Fingerprint(String),
}

/// Uses of one token in one run and step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsageRunTotal {
    pub token_id: String,
    pub run: String,
    pub step: String,
    pub action: String,
    pub resource: String,
    pub count: u64,
    pub first_at: Millis,
    pub last_at: Millis,
}

/// A finding a review rule raised. When one of the same kind about the same
/// subject is still open, its evidence is replaced instead.
#[derive(Debug, Clone, Serialize)]
pub struct NewFinding {
    pub kind: String,
    pub severity: leash_core::Severity,
    pub subject: String,
    pub owner_id: Option<i64>,
    pub summary: String,
    pub evidence: serde_json::Value,
}

/// Usage from outside Leash, folded, with the findings it raised.
#[derive(Debug, Clone, Default)]
pub struct ReviewBatch {
    pub totals: Vec<UsageTotal>,
    pub runs: Vec<UsageRunTotal>,
    /// External tokens last used at (id, time).
    pub last_used: Vec<(i64, Millis)>,
    /// Counts for a usage source (`log`, `decision`).
    pub source: Option<SourceCounts>,
    pub findings: Vec<NewFinding>,
}

/// Events counted per usage source.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SourceCounts {
    pub source: String,
    pub events: u64,
    pub unknown_refs: u64,
    pub skipped: u64,
}

/// Findings a review batch opened or refreshed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReviewOutcome {
    pub opened: Vec<i64>,
    pub refreshed: Vec<i64>,
}

/// A removability test of a token or a scope, with its latest verdict.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct RemovalTest {
    pub id: i64,
    /// `token` or `scope`.
    pub target_kind: String,
    pub target: String,
    pub workflow_id: Option<i64>,
    pub workload_id: Option<i64>,
    /// The scopes whose removal is tested.
    pub scopes: Vec<String>,
    /// `removable`, `needed` or `unknown`.
    pub verdict: String,
    pub evidence: serde_json::Value,
    /// `none`, `armed` (the next run is denied), `running`, `passed`, `failed`.
    pub canary: String,
    pub canary_run: Option<i64>,
    pub canary_denied: u64,
    /// The workflow definition the verdict was computed against.
    pub digest: Option<String>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// One run of a workflow, with the uses of a token or scope in it.
#[derive(Debug, Clone, Serialize)]
pub struct RunUsage {
    pub run: i64,
    pub state: String,
    pub started_at: Millis,
    pub ended_at: Option<Millis>,
    pub digest: String,
    /// Tokens of the run, with their scopes.
    pub tokens: Vec<(String, Vec<String>)>,
    /// Uses per step.
    pub uses: Vec<UsageRunTotal>,
}
