//! The store's logic, written once for every backend: a single writer task
//! that *group-commits* whatever work has queued while the previous commit
//! was syncing, an in-memory registry snapshot and revocation set that the
//! writer updates after COMMIT and before acknowledging, and a pool of
//! readers. [`Backend`] supplies the connection and the SQL dialect.
//!
//! How writers are serialized: one writer task per process runs every
//! mutation, so a process never has two write transactions in flight. On
//! PostgreSQL each batch also takes a transaction-scoped advisory lock
//! ([`WRITER_LOCK`]) before anything else and reloads the audit-chain head
//! under it, so that several processes sharing one database still append
//! one unbroken chain and never interleave their transactions.
//!
//! How replicas stay current: each process keeps the registry snapshot and
//! the revocation set in memory, so on a shared database its writer also
//! *catches up* with the other processes' commits: under the lock at the
//! start of each batch (nothing is decided against a stale registry), when
//! woken ([`CommitFeed::wake`]: a NOTIFY on [`COMMIT_CHANNEL`], a NATS
//! message) and on a [`CATCH_UP_TICK`]. Catching up reads the events after
//! the last applied sequence number: the revocations among them join the
//! set (and the feed, in order), and any registry change reloads the
//! snapshot. Commits are serialized by the lock and become visible in
//! sequence order, so every read sees a prefix of the chain.

use leash_core::audit::{ChainBreak, ChainHead, ChainSummary, ChainVerifier, Event, NewEvent};
use leash_core::issuance::{MintContext, TtlCaps, check_mint};
use leash_core::{
    Approval, ApprovalStatus, Client, Exposure, ExternalStatus, ExternalToken, Finding,
    FindingStatus, IdentityRule, InvalidInput, Issuer, Millis, Owner, OwnerStatus, Revocation,
    RevocationTrigger, Run, RunState, Token, TokenStatus, Workflow, Workload, validate_email,
    validate_len, validate_name,
};
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

use crate::registry::{Registry, SharedRegistry};
use crate::revocations::{CommitFeed, RevocationRecord, RevocationSet, RevokedEntry};
use crate::rows::{self, hash32, join_scopes};
use crate::sql::{Backend, Conn, Dialect, Pool, RowRead, Sql};
use crate::{
    ExposureRecord, MintPlan, NewApproval, NewClient, NewExposure, NewExternalToken, NewIssuer,
    NewOwner, NewViolation, NewWorkflow, NewWorkload, Revoked, Store, StoreConfig, StoreError,
    StoreFuture, TokenCounts, TokenFilter, TokenUsage, UsageRecord, UsageTotal, ViolationRecord,
    now_ms,
};

/// Most ids echoed back from a revocation.
const ECHO_IDS: usize = 100;
/// Events per INSERT on PostgreSQL (8 values each, under its 65,535).
const PG_EVENT_CHUNK: usize = 8000;
/// Rows per multi-row INSERT (keeps bound parameters under SQLite's limit).
const INSERT_CHUNK: usize = 500;
/// Most tools a workflow may declare; most scopes in a ceiling.
const MAX_LIST: usize = 64;
/// Rows per page when verifying the audit chain.
const VERIFY_PAGE: i64 = 20_000;
/// The PostgreSQL advisory lock every write transaction takes first
/// (`pg_advisory_xact_lock`; released at COMMIT or ROLLBACK): ASCII `leashwr1`.
pub const WRITER_LOCK: i64 = 0x6c65_6173_6877_7231;

/// The PostgreSQL NOTIFY channel each commit announces its head on.
pub const COMMIT_CHANNEL: &str = "leash_commits";
/// How often a writer on a shared database catches up unprompted.
pub const CATCH_UP_TICK: std::time::Duration = std::time::Duration::from_millis(1000);
/// Longest a request waits for this process to read other processes' commits.
const CATCH_UP_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
/// Revocations read per query while catching up.
const CATCH_UP_PAGE: u32 = 5000;

/// Audit event kinds whose commit changes the registry snapshot.
fn changes_registry(kind: &str) -> bool {
    [
        "owner.",
        "workload.",
        "workflow.",
        "run.",
        "issuer.",
        "identity_rule.",
        "client.",
    ]
    .iter()
    .any(|p| kind.starts_with(p))
}

/// Opens a fresh writer connection after the old one broke.
pub(crate) type Reconnect<B> = std::sync::Arc<
    dyn Fn() -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<Conn<B>, StoreError>> + Send>,
        > + Send
        + Sync,
>;

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;
type Ack = Box<dyn FnOnce(Result<(), String>) + Send>;

enum Job {
    CreateOwner(NewOwner, String, Reply<Owner>),
    CreateClient(NewClient, String, Reply<Client>),
    Record(String, String, serde_json::Value, String, Reply<i64>),
    CreateIssuer(NewIssuer, String, Reply<Issuer>),
    AddRule(
        String,
        String,
        std::collections::BTreeMap<String, String>,
        String,
        Reply<IdentityRule>,
    ),
    Offboard(String, String, Reply<(Owner, Revoked)>),
    CreateWorkload(NewWorkload, String, Reply<Workload>),
    CreateWorkflow(NewWorkflow, String, Reply<Workflow>),
    UpdateWorkflow(
        String,
        String,
        Option<Vec<String>>,
        String,
        Reply<(Workflow, Revoked)>,
    ),
    StartRun(String, String, String, Reply<Run>),
    EndRun(i64, RunState, String, Reply<(Run, Revoked)>),
    Mint(Box<MintPlan>, String, Reply<()>),
    Revoke(String, String, String, Reply<Revoked>),
    CreateExternal(NewExternalToken, String, Reply<ExternalToken>),
    SetExternal(i64, ExternalStatus, String, String, Reply<ExternalToken>),
    Exposure(Box<NewExposure>, String, Reply<ExposureRecord>),
    SetFinding(i64, FindingStatus, String, String, Reply<Finding>),
    Usage(Vec<UsageTotal>, Vec<UsageRecord>, u64, Reply<()>),
    Violation(Box<NewViolation>, String, Reply<ViolationRecord>),
    CreateApproval(Box<NewApproval>, String, Reply<Approval>),
    DecideApproval(i64, bool, String, String, String, Reply<Approval>),
    OwnerCredential(String, [u8; 32], String, Reply<Owner>),
    AddDelegate(String, String, String, Reply<()>),
    BreakGlassDue(Millis, String, Reply<Revoked>),
    Import(
        Vec<crate::ImportedCredential>,
        String,
        String,
        Reply<crate::ImportSummary>,
    ),
    Review(Box<crate::ReviewBatch>, String, Reply<crate::ReviewOutcome>),
    SaveRemoval(Box<crate::RemovalTest>, String, Reply<crate::RemovalTest>),
    CredentialDrop(
        String,
        crate::DropAttempt,
        String,
        Reply<leash_core::DatabaseCredential>,
    ),
    AddKey(crate::SealedKey, bool, String, Reply<bool>),
    SsfCreate(Box<ssf::NewSsfStream>, String, Reply<ssf::SsfStream>),
    SsfReplace(String, Box<ssf::SsfConfig>, String, Reply<ssf::SsfStream>),
    SsfDelete(String, String, Reply<()>),
    SsfStatus(
        String,
        ssf::SsfStatus,
        Option<String>,
        String,
        Reply<ssf::SsfStream>,
    ),
    SsfQueue(Vec<ssf::SsfAdvance>, Reply<u64>),
    SsfVerify(String, ssf::NewSet, String, Reply<()>),
    SsfClaim(Millis, Millis, u32, Reply<Vec<ssf::SsfPush>>),
    SsfRecord(String, ssf::SsfOutcome, String, Reply<()>),
    SsfAck(String, Vec<String>, Vec<ssf::SetError>, String, Reply<()>),
}

impl Job {
    fn reject(self, why: &str) {
        fn fail<T>(r: Reply<T>, why: &str) {
            // the receiver may have gone away; nothing to do then
            let _ = r.send(Err(StoreError::Storage(why.to_owned())));
        }
        match self {
            Job::CreateOwner(.., r) => fail(r, why),
            Job::CreateClient(.., r) => fail(r, why),
            Job::Record(.., r) => fail(r, why),
            Job::CreateIssuer(.., r) => fail(r, why),
            Job::AddRule(.., r) => fail(r, why),
            Job::Offboard(.., r) => fail(r, why),
            Job::CreateWorkload(.., r) => fail(r, why),
            Job::CreateWorkflow(.., r) => fail(r, why),
            Job::UpdateWorkflow(.., r) => fail(r, why),
            Job::StartRun(.., r) => fail(r, why),
            Job::EndRun(.., r) => fail(r, why),
            Job::Mint(.., r) => fail(r, why),
            Job::Revoke(.., r) => fail(r, why),
            Job::CreateExternal(.., r) => fail(r, why),
            Job::SetExternal(.., r) => fail(r, why),
            Job::Exposure(.., r) => fail(r, why),
            Job::SetFinding(.., r) => fail(r, why),
            Job::Usage(.., r) => fail(r, why),
            Job::Violation(.., r) => fail(r, why),
            Job::CreateApproval(.., r) => fail(r, why),
            Job::DecideApproval(.., r) => fail(r, why),
            Job::OwnerCredential(.., r) => fail(r, why),
            Job::AddDelegate(.., r) => fail(r, why),
            Job::BreakGlassDue(.., r) => fail(r, why),
            Job::Import(.., r) => fail(r, why),
            Job::Review(.., r) => fail(r, why),
            Job::SaveRemoval(.., r) => fail(r, why),
            Job::CredentialDrop(.., r) => fail(r, why),
            Job::AddKey(.., r) => fail(r, why),
            Job::SsfCreate(.., r) => fail(r, why),
            Job::SsfReplace(.., r) => fail(r, why),
            Job::SsfDelete(.., r) => fail(r, why),
            Job::SsfStatus(.., r) => fail(r, why),
            Job::SsfQueue(.., r) => fail(r, why),
            Job::SsfVerify(.., r) => fail(r, why),
            Job::SsfClaim(.., r) => fail(r, why),
            Job::SsfRecord(.., r) => fail(r, why),
            Job::SsfAck(.., r) => fail(r, why),
        }
    }
}

enum Step {
    Done(Ack),
    Abort(String, Ack),
}

fn settle<T: Send + 'static>(reply: Reply<T>, result: Result<T, StoreError>) -> Step {
    match result {
        Ok(v) => Step::Done(Box::new(move |commit| {
            let _ = reply.send(commit.map(|()| v).map_err(StoreError::Storage));
        })),
        Err(e @ (StoreError::Storage(_) | StoreError::Corrupt(_) | StoreError::Closed)) => {
            let msg = e.to_string();
            Step::Abort(
                msg,
                Box::new(move |commit| {
                    let _ = reply.send(Err(StoreError::Storage(commit.err().unwrap_or_default())));
                }),
            )
        }
        // a refusal wrote nothing: it stands whatever the commit does
        Err(e) => Step::Done(Box::new(move |_| {
            let _ = reply.send(Err(e));
        })),
    }
}

/// A Leash store on a SQL backend: see [`crate::SqliteStore`] and
/// [`crate::PgStore`].
pub struct SqlStore<B: Backend> {
    pub(crate) reads: Pool<B>,
    jobs: mpsc::Sender<Job>,
    registry: SharedRegistry,
    revocations: RevocationSet,
    feed: CommitFeed,
    caps: TtlCaps,
    /// Tasks that live as long as the store (the commit listener).
    pub(crate) background: Background,
}

/// Background tasks aborted when their owner is dropped.
#[derive(Debug, Default)]
pub(crate) struct Background(pub(crate) Vec<tokio::task::AbortHandle>);

impl Drop for Background {
    fn drop(&mut self) {
        self.0.iter().for_each(tokio::task::AbortHandle::abort);
    }
}

impl<B: Backend> SqlStore<B> {
    /// Load the registry, the chain head and the revocation set through
    /// `conn` (migrated), and start the writer on it.
    pub(crate) async fn start(
        mut conn: Conn<B>,
        reads: Pool<B>,
        cfg: StoreConfig,
        reconnect: Option<Reconnect<B>>,
    ) -> Result<Self, StoreError> {
        let registry = SharedRegistry::new(load_registry(&mut conn).await?);
        let head = load_head(&mut conn).await?;
        let revocations = RevocationSet::default();
        revocations.extend(load_revocations(&mut conn, now_ms()).await?);
        let feed = CommitFeed::new(head.seq, reconnect.is_some(), now_ms());
        let (tx, rx) = mpsc::channel(cfg.max_batch.max(1) * 4);
        let writer = Writer {
            feed: feed.clone(),
            conn,
            registry: registry.clone(),
            head,
            caps: cfg.ttl_caps,
            tokens: Vec::new(),
            events: Vec::new(),
            max_batch: cfg.max_batch.max(1),
            max_depth: cfg.max_delegation_depth,
            revocations: revocations.clone(),
            revoked_pending: Vec::new(),
            reconnect,
            broken: false,
        };
        tokio::spawn(writer.run(rx));
        Ok(SqlStore {
            reads,
            jobs: tx,
            registry,
            revocations,
            feed,
            caps: cfg.ttl_caps,
            background: Background::default(),
        })
    }

    async fn submit<T>(&self, make: impl FnOnce(Reply<T>) -> Job) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send(make(tx))
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }
}

async fn load_registry<B: Backend>(conn: &mut Conn<B>) -> Result<Registry, StoreError> {
    let mut r = Registry::default();
    for row in Sql::new("SELECT * FROM owners").all(&mut *conn).await? {
        r.put_owner(rows::owner(&row)?);
    }
    for row in Sql::new("SELECT * FROM workloads").all(&mut *conn).await? {
        r.put_workload(rows::workload(&row)?);
    }
    for row in Sql::new("SELECT * FROM workflows").all(&mut *conn).await? {
        r.put_workflow(rows::workflow(&row)?);
    }
    for row in Sql::new("SELECT * FROM clients").all(&mut *conn).await? {
        r.put_client(rows::client(&row)?);
    }
    for row in Sql::new("SELECT * FROM issuers").all(&mut *conn).await? {
        r.put_issuer(rows::issuer(&row)?);
    }
    for row in Sql::new("SELECT * FROM identity_rules ORDER BY id")
        .all(&mut *conn)
        .await?
    {
        r.put_rule(rows::identity_rule(&row)?);
    }
    for row in Sql::new("SELECT * FROM runs WHERE state = 'running'")
        .all(&mut *conn)
        .await?
    {
        r.put_run(rows::run(&row)?);
    }
    Ok(r)
}

/// Feed records from rows of `seq, id, expires_at` and the revocation columns.
fn revocation_records(
    rows: &[impl crate::sql::RowRead],
) -> Result<Vec<RevocationRecord>, StoreError> {
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let revocation = rows::revocation(row)?.ok_or_else(|| {
            StoreError::Corrupt("a token with a `token.revoked` event is not revoked".into())
        })?;
        out.push(RevocationRecord {
            seq: row.int("seq")?,
            token_id: row.text("id")?,
            expires_at: row.int("expires_at")?,
            revocation,
        });
    }
    Ok(out)
}

/// Revoked tokens that have not expired yet.
async fn load_revocations<B: Backend>(
    conn: &mut Conn<B>,
    now: Millis,
) -> Result<Vec<(String, RevokedEntry)>, StoreError> {
    let found = Sql::new(
        "SELECT id, expires_at, revoked_at, revoked_trigger, revoked_reason, revoked_event \
         FROM tokens WHERE revoked_at IS NOT NULL AND expires_at > $1",
    )
    .bind(now)
    .all(conn)
    .await?;
    let mut out = Vec::with_capacity(found.len());
    for row in &found {
        if let Some(revocation) = rows::revocation(row)? {
            out.push((
                row.text("id")?,
                RevokedEntry {
                    expires_at: row.int("expires_at")?,
                    revocation,
                },
            ));
        }
    }
    Ok(out)
}

/// Committed revocations after audit sequence number `after`, in order.
async fn revocations_after<'c, B: Backend>(
    on: impl Into<crate::sql::Exec<'c, B>>,
    after: i64,
    limit: u32,
) -> Result<Vec<RevocationRecord>, StoreError> {
    let rows = Sql::new(
        "SELECT e.seq, t.id, t.expires_at, t.revoked_at, t.revoked_trigger, t.revoked_reason, t.revoked_event \
         FROM events e JOIN tokens t ON t.id = e.subject \
         WHERE e.seq > $1 AND e.kind = 'token.revoked' ORDER BY e.seq LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .all(on)
    .await?;
    revocation_records(&rows)
}

async fn load_head<B: Backend>(conn: &mut Conn<B>) -> Result<ChainHead, StoreError> {
    let row = Sql::new("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1")
        .optional(conn)
        .await?;
    match row {
        None => Ok(ChainHead::EMPTY),
        Some(row) => Ok(ChainHead {
            seq: row.int("seq")?,
            hash: hash32(row.opt_bytes("hash")?.unwrap_or_default())?,
        }),
    }
}

macro_rules! select_tokens {
    ($tail:literal) => {
        concat!(
            "SELECT id, format, owner_id, workload_id, run_id, workflow_id, scopes, audience, issued_at, expires_at, ",
            "parent_id, justification, revoked_at, revoked_trigger, revoked_reason, revoked_event, depth, act, may_act, cnf_jkt, break_glass FROM tokens ",
            $tail
        )
    };
}

/// Which tokens a revocation starts from (descendants follow).
enum Root<'a> {
    Run(i64),
    Owner(i64),
    Token(&'a str),
    StaleRuns {
        workflow: i64,
        digest: &'a str,
    },
    /// Break-glass grants whose TTL ends at or before this time.
    BreakGlassDue(Millis),
}

struct Writer<B: Backend> {
    conn: Conn<B>,
    registry: SharedRegistry,
    head: ChainHead,
    caps: TtlCaps,
    tokens: Vec<(Token, Option<[u8; 32]>)>,
    events: Vec<Event>,
    max_batch: usize,
    max_depth: u32,
    /// Revocations made in memory by the open batch, published at commit.
    revoked_pending: Vec<RevocationRecord>,
    revocations: RevocationSet,
    feed: CommitFeed,
    /// On a shared database: how to replace a broken connection.
    reconnect: Option<Reconnect<B>>,
    /// The connection failed; open a new one before using it again.
    broken: bool,
}

impl<B: Backend> Writer<B> {
    async fn run(mut self, mut rx: mpsc::Receiver<Job>) {
        let shared = self.reconnect.is_some();
        let mut tick = tokio::time::interval(CATCH_UP_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let feed = self.feed.clone();
        loop {
            let first = tokio::select! {
                biased;
                job = rx.recv() => match job {
                    Some(j) => j,
                    None => return,
                },
                () = feed.woken(), if shared => {
                    self.catch_up().await;
                    continue;
                }
                _ = tick.tick(), if shared => {
                    self.catch_up().await;
                    continue;
                }
            };
            let mut jobs = Vec::with_capacity(64);
            jobs.push(first);
            while jobs.len() < self.max_batch {
                match rx.try_recv() {
                    Ok(j) => jobs.push(j),
                    Err(_) => break,
                }
            }
            self.run_batch(jobs).await;
        }
    }

    /// Outside a batch, on a shared database: read the other processes'
    /// commits up to the database's head, and say how that went.
    async fn catch_up(&mut self) {
        let outcome = async {
            self.ensure_connected().await?;
            let head = load_head(&mut self.conn).await?;
            self.absorb(head.seq).await?;
            Ok::<_, StoreError>(())
        }
        .await;
        if let Err(e) = &outcome {
            self.broken = true;
            tracing::warn!(error = %e, "store: could not catch up with the shared database");
        }
        self.feed
            .synced(outcome.map(|()| now_ms()).map_err(|e| e.to_string()));
    }

    /// Replace the connection when the last use found it broken.
    async fn ensure_connected(&mut self) -> Result<(), StoreError> {
        if let (true, Some(reconnect)) = (self.broken, &self.reconnect) {
            self.conn = reconnect().await?;
            self.broken = false;
            tracing::info!("store: reconnected to the shared database");
        }
        Ok(())
    }

    /// Apply the commits of other processes after the last sequence number
    /// this one applied, up to `upto`: reload the registry when any changed
    /// it, and add their revocations to the set and the feed, in order.
    async fn absorb(&mut self, upto: i64) -> Result<(), StoreError> {
        let from = self.feed.head_seq();
        if upto <= from {
            return Ok(());
        }
        let kinds: Vec<String> =
            Sql::new("SELECT DISTINCT kind FROM events WHERE seq > $1 AND seq <= $2")
                .bind(from)
                .bind(upto)
                .all(&mut self.conn)
                .await?
                .iter()
                .map(|r| r.text("kind"))
                .collect::<Result<_, _>>()?;
        if kinds.iter().any(|k| changes_registry(k)) {
            self.registry.replace(load_registry(&mut self.conn).await?);
        }
        if kinds.iter().any(|k| k == "token.revoked") {
            let mut after = from;
            loop {
                let mut page = revocations_after(&mut self.conn, after, CATCH_UP_PAGE).await?;
                let full = page.len() == CATCH_UP_PAGE as usize;
                page.retain(|r| r.seq <= upto);
                let Some(last) = page.last().map(|r| r.seq) else {
                    break;
                };
                after = last;
                let reached = !full || last >= upto;
                self.feed.publish(
                    &self.revocations,
                    page,
                    if reached { upto } else { last },
                    false,
                );
                if reached {
                    break;
                }
            }
        }
        self.feed
            .publish(&self.revocations, Vec::new(), upto, false);
        self.feed.publish_remote_kinds(kinds);
        Ok(())
    }

    async fn run_batch(&mut self, jobs: Vec<Job>) {
        let started = std::time::Instant::now();
        let size = jobs.len();
        if let Err(e) = self.begin().await {
            let msg = format!("could not start a transaction: {e}");
            tracing::error!(error = %msg, "store: begin failed");
            jobs.into_iter().for_each(|j| j.reject(&msg));
            return;
        }
        let mut acks: Vec<Ack> = Vec::with_capacity(jobs.len());
        let mut abort: Option<String> = None;
        let mut rest = jobs.into_iter();
        for job in rest.by_ref() {
            match self.apply(job).await {
                Step::Done(a) => acks.push(a),
                Step::Abort(msg, a) => {
                    acks.push(a);
                    abort = Some(msg);
                    break;
                }
            }
        }
        if abort.is_none()
            && let Err(e) = self.flush().await
        {
            abort = Some(e.to_string());
        }
        let outcome = match abort {
            None => match Sql::new("COMMIT").run(&mut self.conn).await {
                Ok(_) => Ok(()),
                Err(e) => Err(format!("commit failed: {e}")),
            },
            Some(msg) => Err(msg),
        };
        // published before anyone is acknowledged: a revocation its caller
        // saw succeed is seen by the next decision
        let revoked = std::mem::take(&mut self.revoked_pending);
        if outcome.is_ok() {
            self.feed
                .publish(&self.revocations, revoked, self.head.seq, true);
        }
        if let Err(msg) = &outcome {
            tracing::error!(error = %msg, "store: batch rolled back");
            if Sql::new("ROLLBACK").run(&mut self.conn).await.is_err() {
                self.broken = true;
            }
            self.tokens.clear();
            self.events.clear();
            self.resync().await;
            for j in rest {
                j.reject(msg);
            }
        }
        for a in acks {
            a(outcome.clone());
        }
        tracing::trace!(
            size,
            micros = started.elapsed().as_micros() as u64,
            ok = outcome.is_ok(),
            "store: batch committed"
        );
    }

    /// Open the batch's transaction. SQLite takes its write lock at once
    /// (`BEGIN IMMEDIATE`). PostgreSQL takes [`WRITER_LOCK`], which every
    /// writer of every process sharing the database takes first, and then
    /// reads the chain head: another process may have appended since.
    async fn begin(&mut self) -> Result<(), StoreError> {
        match B::DIALECT {
            Dialect::Sqlite => {
                Sql::new("BEGIN IMMEDIATE").run(&mut self.conn).await?;
            }
            Dialect::Postgres => {
                self.ensure_connected().await?;
                if let Err(e) = Sql::new("BEGIN").run(&mut self.conn).await {
                    self.broken = true;
                    return Err(e);
                }
                let locked = async {
                    Sql::new("SELECT pg_advisory_xact_lock($1)")
                        .bind(WRITER_LOCK)
                        .run(&mut self.conn)
                        .await?;
                    let head = load_head(&mut self.conn).await?;
                    self.absorb(head.seq).await?;
                    Ok::<_, StoreError>(head)
                }
                .await;
                match locked {
                    Ok(head) => {
                        self.head = head;
                        self.feed.synced(Ok(now_ms()));
                    }
                    Err(e) => {
                        let _ = Sql::new("ROLLBACK").run(&mut self.conn).await;
                        self.broken = true;
                        return Err(e);
                    }
                }
            }
        }
        Ok(())
    }

    /// After a failed batch, memory may hold changes that never committed:
    /// reload the registry and the chain head from disk.
    async fn resync(&mut self) {
        if let Err(e) = self.ensure_connected().await {
            tracing::error!(error = %e, "store: could not reconnect after a failed batch");
            return;
        }
        match (
            load_registry(&mut self.conn).await,
            load_head(&mut self.conn).await,
        ) {
            (Ok(r), Ok(h)) => {
                self.registry.replace(r);
                self.head = h;
            }
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(error = %e, "store: could not reload state after a failed batch")
            }
        }
    }

    async fn apply(&mut self, job: Job) -> Step {
        let now = now_ms();
        match job {
            Job::CreateClient(new, actor, r) => {
                settle(r, self.create_client(new, &actor, now).await)
            }
            Job::CreateIssuer(new, actor, r) => {
                settle(r, self.create_issuer(new, &actor, now).await)
            }
            Job::AddRule(workload, issuer, claims, actor, r) => settle(
                r,
                self.add_rule(&workload, &issuer, claims, &actor, now).await,
            ),
            Job::Record(kind, subject, data, actor, r) => {
                settle(r, Ok(self.append(now, &kind, &actor, subject, data)))
            }
            Job::CreateOwner(new, actor, r) => settle(r, self.create_owner(new, &actor, now).await),
            Job::Offboard(name, actor, r) => settle(r, self.offboard(&name, &actor, now).await),
            Job::CreateWorkload(new, actor, r) => {
                settle(r, self.create_workload(new, &actor, now).await)
            }
            Job::CreateWorkflow(new, actor, r) => {
                settle(r, self.create_workflow(new, &actor, now).await)
            }
            Job::UpdateWorkflow(name, digest, tools, actor, r) => settle(
                r,
                self.update_workflow(&name, digest, tools, &actor, now)
                    .await,
            ),
            Job::StartRun(wf, wl, actor, r) => {
                settle(r, self.start_run(&wf, &wl, &actor, now).await)
            }
            Job::EndRun(id, state, actor, r) => {
                settle(r, self.end_run(id, state, &actor, now).await)
            }
            Job::Mint(plan, actor, r) => settle(r, self.mint(*plan, &actor, now).await),
            Job::Revoke(id, reason, actor, r) => {
                settle(r, self.revoke(&id, reason, &actor, now).await)
            }
            Job::CreateExternal(new, actor, r) => {
                settle(r, self.create_external(new, &actor, now).await)
            }
            Job::SetExternal(id, status, detail, actor, r) => {
                settle(r, self.set_external(id, status, detail, &actor, now).await)
            }
            Job::Exposure(new, actor, r) => {
                settle(r, self.record_exposure(*new, &actor, now).await)
            }
            Job::SetFinding(id, status, note, actor, r) => {
                settle(r, self.set_finding(id, status, note, &actor, now).await)
            }
            Job::Usage(totals, log, keep, r) => {
                settle(r, self.record_usage(totals, log, keep).await)
            }
            Job::Violation(v, actor, r) => settle(r, self.record_violation(*v, &actor, now).await),
            Job::CreateApproval(new, actor, r) => {
                settle(r, self.create_approval(*new, &actor, now).await)
            }
            Job::DecideApproval(id, approve, approver, note, actor, r) => settle(
                r,
                self.decide_approval(id, approve, &approver, note, &actor, now)
                    .await,
            ),
            Job::OwnerCredential(owner, hash, actor, r) => settle(
                r,
                self.create_owner_credential(&owner, hash, &actor, now)
                    .await,
            ),
            Job::AddDelegate(owner, delegate, actor, r) => {
                settle(r, self.add_delegate(&owner, &delegate, &actor, now).await)
            }
            Job::BreakGlassDue(due, actor, r) => {
                settle(r, self.revoke_due_break_glass(due, &actor, now).await)
            }
            Job::Import(records, source, actor, r) => {
                settle(r, self.import_external(records, source, &actor, now).await)
            }
            Job::Review(batch, actor, r) => {
                settle(r, self.record_review(*batch, &actor, now).await)
            }
            Job::SaveRemoval(t, actor, r) => {
                settle(r, self.save_removal_test(*t, &actor, now).await)
            }
            Job::AddKey(key, first, actor, r) => {
                settle(r, self.add_signing_key(key, first, &actor, now).await)
            }
            Job::CredentialDrop(token_id, attempt, actor, r) => settle(
                r,
                self.record_credential_drop(&token_id, attempt, &actor, now)
                    .await,
            ),
            Job::SsfCreate(new, actor, r) => {
                settle(r, self.create_ssf_stream(*new, &actor, now).await)
            }
            Job::SsfReplace(id, config, actor, r) => {
                settle(r, self.replace_ssf_stream(&id, *config, &actor, now).await)
            }
            Job::SsfDelete(id, actor, r) => {
                settle(r, self.delete_ssf_stream(&id, &actor, now).await)
            }
            Job::SsfStatus(id, status, reason, actor, r) => settle(
                r,
                self.set_ssf_status(&id, status, reason, &actor, now).await,
            ),
            Job::SsfQueue(advances, r) => settle(r, self.queue_ssf_sets(advances, now).await),
            Job::SsfVerify(id, set, actor, r) => settle(
                r,
                self.queue_ssf_verification(&id, set.jti, set.set, set.event_type, &actor, now)
                    .await,
            ),
            Job::SsfClaim(at, lease, limit, r) => {
                settle(r, self.claim_ssf_push(at, lease, limit).await)
            }
            Job::SsfRecord(jti, outcome, actor, r) => {
                settle(r, self.record_ssf_push(&jti, outcome, &actor, now).await)
            }
            Job::SsfAck(id, acks, errors, actor, r) => {
                settle(r, self.ack_ssf(&id, acks, errors, &actor, now).await)
            }
        }
    }

    fn append(
        &mut self,
        time: Millis,
        kind: &str,
        actor: &str,
        subject: String,
        data: serde_json::Value,
    ) -> i64 {
        self.append_text(time, kind, actor, subject, data.to_string())
    }

    fn append_text(
        &mut self,
        time: Millis,
        kind: &str,
        actor: &str,
        subject: String,
        data: String,
    ) -> i64 {
        let ev = self.head.append(NewEvent {
            time,
            kind: kind.to_owned(),
            actor: actor.to_owned(),
            subject,
            data,
        });
        let seq = ev.seq;
        self.events.push(ev);
        seq
    }

    async fn flush_tokens(&mut self) -> Result<(), StoreError> {
        while !self.tokens.is_empty() {
            let n = self.tokens.len().min(INSERT_CHUNK);
            let chunk: Vec<_> = self.tokens.drain(..n).collect();
            let mut q = Sql::new(
                "INSERT INTO tokens (id, format, secret_hash, owner_id, workload_id, run_id, workflow_id, scopes, audience, issued_at, expires_at, parent_id, justification, has_write, depth, act, may_act, cnf_jkt, break_glass) ",
            );
            q.push_values(chunk, |mut b, (t, hash)| {
                let has_write = t.has_write();
                let act = t.act.as_ref().and_then(|a| serde_json::to_string(a).ok());
                b.push_bind(t.id)
                    .push_bind(t.format.as_str())
                    .push_bind(hash.map(|h| h.to_vec()))
                    .push_bind(t.owner_id)
                    .push_bind(t.workload_id)
                    .push_bind(t.run_id)
                    .push_bind(t.workflow_id)
                    .push_bind(join_scopes(&t.scopes))
                    .push_bind(t.audience.join(" "))
                    .push_bind(t.issued_at)
                    .push_bind(t.expires_at)
                    .push_bind(t.parent_id)
                    .push_bind(t.justification)
                    .push_bind(has_write)
                    .push_bind(i64::from(t.depth))
                    .push_bind(act)
                    .push_bind(t.may_act)
                    .push_bind(t.cnf_jkt)
                    .push_bind(t.break_glass);
            });
            q.run(&mut self.conn).await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), StoreError> {
        self.flush_tokens().await?;
        let announce = !self.events.is_empty() && B::DIALECT == Dialect::Postgres;
        // PostgreSQL takes up to 65,535 bound values a statement: fewer,
        // larger statements for a large batch (a lineage revoked at once)
        let per_statement = match B::DIALECT {
            Dialect::Sqlite => INSERT_CHUNK * 2,
            Dialect::Postgres => PG_EVENT_CHUNK,
        };
        while !self.events.is_empty() {
            let n = self.events.len().min(per_statement);
            let chunk: Vec<_> = self.events.drain(..n).collect();
            let mut q = Sql::new(
                "INSERT INTO events (seq, time, kind, actor, subject, data, prev_hash, hash) ",
            );
            q.push_values(chunk, |mut b, e| {
                b.push_bind(e.seq)
                    .push_bind(e.time)
                    .push_bind(e.kind)
                    .push_bind(e.actor)
                    .push_bind(e.subject)
                    .push_bind(e.data)
                    .push_bind(e.prev_hash.to_vec())
                    .push_bind(e.hash.to_vec());
            });
            q.run(&mut self.conn).await?;
        }
        if announce {
            // delivered to the other replicas' listeners at COMMIT
            Sql::new("SELECT pg_notify($1, $2)")
                .bind(COMMIT_CHANNEL)
                .bind(self.head.seq.to_string())
                .run(&mut self.conn)
                .await?;
        }
        Ok(())
    }

    async fn create_owner(
        &mut self,
        new: NewOwner,
        actor: &str,
        now: Millis,
    ) -> Result<Owner, StoreError> {
        validate_name("owner name", &new.name)?;
        validate_email(&new.email)?;
        if self.registry.read().owner_by_name(&new.name).is_some() {
            return Err(StoreError::Duplicate {
                what: "owner",
                name: new.name,
            });
        }
        self.flush_tokens().await?;
        let id = Sql::new("INSERT INTO owners (name, email, kind, business_owner, status, created_at) VALUES ($1, $2, $3, $4, 'active', $5) RETURNING id")
            .bind(&new.name)
            .bind(&new.email)
            .bind(new.kind.as_str())
            .bind(new.business_owner)
            .bind(now)
            .one(&mut self.conn)
            .await?
            .int("id")?;
        let owner = Owner {
            id,
            name: new.name,
            email: new.email,
            kind: new.kind,
            business_owner: new.business_owner,
            status: OwnerStatus::Active,
            created_at: now,
            offboarded_at: None,
        };
        self.append(now, "owner.created", actor, format!("owner:{}", owner.name), json!({"email": owner.email, "kind": owner.kind, "business_owner": owner.business_owner}));
        self.registry.write().put_owner(owner.clone());
        Ok(owner)
    }

    async fn offboard(
        &mut self,
        name: &str,
        actor: &str,
        now: Millis,
    ) -> Result<(Owner, Revoked), StoreError> {
        let mut owner = self
            .registry
            .read()
            .owner_by_name(name)
            .cloned()
            .ok_or_else(|| StoreError::NotFound {
                what: "owner",
                key: name.to_owned(),
            })?;
        if owner.status == OwnerStatus::Offboarded {
            return Err(StoreError::Conflict(format!(
                "owner `{name}` is already offboarded"
            )));
        }
        self.flush_tokens().await?;
        Sql::new("UPDATE owners SET status = 'offboarded', offboarded_at = $1 WHERE id = $2")
            .bind(now)
            .bind(owner.id)
            .run(&mut self.conn)
            .await?;
        owner.status = OwnerStatus::Offboarded;
        owner.offboarded_at = Some(now);
        let cause = self.append(
            now,
            "owner.offboarded",
            actor,
            format!("owner:{name}"),
            json!({}),
        );
        self.registry.write().put_owner(owner.clone());
        let revoked = self
            .revoke_cascade(
                Root::Owner(owner.id),
                RevocationTrigger::OwnerOffboarded,
                &format!("owner {name} was offboarded"),
                cause,
                actor,
                now,
                false,
            )
            .await?;
        Ok((owner, revoked))
    }

    async fn create_workload(
        &mut self,
        new: NewWorkload,
        actor: &str,
        now: Millis,
    ) -> Result<Workload, StoreError> {
        validate_name("workload name", &new.name)?;
        if let Some(identity) = &new.identity {
            validate_len("identity", identity, 512)?;
            if identity
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(InvalidInput::Choice {
                    what: "identity",
                    value: identity.chars().take(60).collect(),
                    expected: "a SPIFFE ID or OIDC subject without spaces",
                }
                .into());
            }
        }
        if new.scope_ceiling.is_empty() {
            return Err(StoreError::Conflict(
                "a workload needs a scope ceiling: pass at least one --ceiling TYPE[:ID]:ACTION"
                    .into(),
            ));
        }
        if new.scope_ceiling.len() > MAX_LIST {
            return Err(InvalidInput::TooMany {
                what: "scope ceiling",
                max: MAX_LIST,
            }
            .into());
        }
        if self.registry.read().workload_by_name(&new.name).is_some() {
            return Err(StoreError::Duplicate {
                what: "workload",
                name: new.name,
            });
        }
        let owner = self.active_owner_for("workload", &new.owner)?;
        self.flush_tokens().await?;
        let ceiling = join_scopes(&new.scope_ceiling);
        let id = Sql::new("INSERT INTO workloads (name, owner_id, identity, environment, scope_ceiling, created_at) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id")
            .bind(&new.name)
            .bind(owner.id)
            .bind(&new.identity)
            .bind(new.environment.as_str())
            .bind(&ceiling)
            .bind(now)
            .one(&mut self.conn)
            .await?
            .int("id")?;
        let w = Workload {
            id,
            name: new.name,
            owner_id: owner.id,
            identity: new.identity,
            environment: new.environment,
            scope_ceiling: new.scope_ceiling,
            created_at: now,
        };
        self.append(now, "workload.created", actor, format!("workload:{}", w.name), json!({"owner": owner.name, "identity": w.identity, "environment": w.environment, "scope_ceiling": ceiling}));
        self.registry.write().put_workload(w.clone());
        Ok(w)
    }

    async fn create_issuer(
        &mut self,
        new: NewIssuer,
        actor: &str,
        now: Millis,
    ) -> Result<Issuer, StoreError> {
        validate_name("issuer name", &new.name)?;
        for (what, v) in [("issuer", &new.issuer), ("audience", &new.audience)] {
            if v.is_empty()
                || v.len() > 512
                || v.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(InvalidInput::Choice {
                    what,
                    value: v.chars().take(60).collect(),
                    expected: "1-512 printable characters without spaces",
                }
                .into());
            }
        }
        match (&new.jwks_url, &new.jwks) {
            (Some(u), None) if u.starts_with("https://") || u.starts_with("http://") => {
                validate_len("jwks_url", u, 2048)?
            }
            (None, Some(j)) => validate_len("jwks", j, 256 * 1024)?,
            _ => {
                return Err(StoreError::Conflict(
                    "an issuer needs exactly one of jwks_url (http(s)://…) or an inline jwks"
                        .into(),
                ));
            }
        }
        {
            let reg = self.registry.read();
            if reg.issuer_by_name(&new.name).is_some() {
                return Err(StoreError::Duplicate {
                    what: "issuer",
                    name: new.name,
                });
            }
            if reg.issuer_by_iss(&new.issuer).is_some() {
                return Err(StoreError::Duplicate {
                    what: "issuer URL",
                    name: new.issuer,
                });
            }
        }
        self.flush_tokens().await?;
        let id = Sql::new("INSERT INTO issuers (name, issuer, jwks_url, jwks, audience, created_at) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id")
            .bind(&new.name)
            .bind(&new.issuer)
            .bind(&new.jwks_url)
            .bind(&new.jwks)
            .bind(&new.audience)
            .bind(now)
            .one(&mut self.conn)
            .await?
            .int("id")?;
        let i = Issuer {
            id,
            name: new.name,
            issuer: new.issuer,
            jwks_url: new.jwks_url,
            jwks: new.jwks,
            audience: new.audience,
            created_at: now,
        };
        self.append(now, "issuer.created", actor, format!("issuer:{}", i.name), json!({"issuer": i.issuer, "jwks_url": i.jwks_url, "inline_jwks": i.jwks.is_some(), "audience": i.audience}));
        self.registry.write().put_issuer(i.clone());
        Ok(i)
    }

    async fn add_rule(
        &mut self,
        workload: &str,
        issuer: &str,
        claims: std::collections::BTreeMap<String, String>,
        actor: &str,
        now: Millis,
    ) -> Result<IdentityRule, StoreError> {
        if claims.is_empty() || claims.len() > 16 {
            return Err(StoreError::Conflict("an identity rule needs 1 to 16 claim patterns, e.g. sub=repo:acme/agents:ref:refs/heads/main".into()));
        }
        for (k, v) in &claims {
            validate_len("claim name", k, 64)?;
            validate_len("claim pattern", v, 512)?;
        }
        let (workload_id, issuer_id) = {
            let reg = self.registry.read();
            let w = reg
                .workload_by_name(workload)
                .ok_or_else(|| StoreError::NotFound {
                    what: "workload",
                    key: workload.to_owned(),
                })?;
            let i = reg
                .issuer_by_name(issuer)
                .ok_or_else(|| StoreError::NotFound {
                    what: "issuer",
                    key: issuer.to_owned(),
                })?;
            (w.id, i.id)
        };
        self.flush_tokens().await?;
        let text =
            serde_json::to_string(&claims).map_err(|e| StoreError::Storage(e.to_string()))?;
        let id = Sql::new("INSERT INTO identity_rules (workload_id, issuer_id, claims, created_at) VALUES ($1, $2, $3, $4) RETURNING id")
            .bind(workload_id)
            .bind(issuer_id)
            .bind(&text)
            .bind(now)
            .one(&mut self.conn)
            .await?
            .int("id")?;
        let r = IdentityRule {
            id,
            workload_id,
            issuer_id,
            claims,
            created_at: now,
        };
        self.append(
            now,
            "identity_rule.created",
            actor,
            format!("workload:{workload}"),
            json!({"issuer": issuer, "claims": r.claims}),
        );
        self.registry.write().put_rule(r.clone());
        Ok(r)
    }

    async fn create_client(
        &mut self,
        new: NewClient,
        actor: &str,
        now: Millis,
    ) -> Result<Client, StoreError> {
        if new.secret_hash.is_none() && new.jwks.is_none() {
            return Err(StoreError::Conflict(
                "a client needs a secret or a JWK Set (for private_key_jwt)".into(),
            ));
        }
        if let Some(j) = &new.jwks {
            validate_len("jwks", j, 64 * 1024)?;
        }
        let workload = {
            let reg = self.registry.read();
            if reg.client(&new.id).is_some() {
                return Err(StoreError::Duplicate {
                    what: "client",
                    name: new.id,
                });
            }
            let w = reg
                .workload_by_name(&new.workload)
                .ok_or_else(|| StoreError::NotFound {
                    what: "workload",
                    key: new.workload.clone(),
                })?;
            (w.id, w.owner_id)
        };
        let owner = self.registry.read().owner(workload.1).map(|o| o.status);
        if owner != Some(OwnerStatus::Active) {
            return Err(StoreError::Conflict(format!(
                "workload `{}` has no active owner; a client needs one",
                new.workload
            )));
        }
        self.flush_tokens().await?;
        Sql::new("INSERT INTO clients (id, workload_id, secret_hash, jwks, can_introspect, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(&new.id)
            .bind(workload.0)
            .bind(new.secret_hash.map(|h| h.to_vec()))
                        .bind(&new.jwks)
            .bind(new.can_introspect)
            .bind(now)
            .run(&mut self.conn)
            .await?;
        let c = Client {
            id: new.id,
            workload_id: workload.0,
            secret_hash: new.secret_hash,
            jwks: new.jwks,
            can_introspect: new.can_introspect,
            created_at: now,
        };
        let methods: Vec<&str> = [
            c.secret_hash.map(|_| "client_secret_basic"),
            c.secret_hash.map(|_| "client_secret_post"),
            c.jwks.as_ref().map(|_| "private_key_jwt"),
        ]
        .into_iter()
        .flatten()
        .collect();
        self.append(
            now,
            "client.created",
            actor,
            format!("client:{}", c.id),
            json!({"workload": new.workload, "auth_methods": methods, "can_introspect": c.can_introspect}),
        );
        self.registry.write().put_client(c.clone());
        Ok(c)
    }

    /// The active owner named `name`, to own a new `what`.
    fn active_owner_for(&self, what: &str, name: &str) -> Result<Owner, StoreError> {
        let owner = self.registry.read().owner_by_name(name).cloned();
        let owner = owner.ok_or_else(|| StoreError::NotFound {
            what: "owner",
            key: name.to_owned(),
        })?;
        if owner.status != OwnerStatus::Active {
            return Err(StoreError::Conflict(format!(
                "owner `{name}` is offboarded; a {what} needs an active owner"
            )));
        }
        Ok(owner)
    }

    fn check_workflow_fields(digest: &str, tools: &[String]) -> Result<(), StoreError> {
        if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(InvalidInput::Choice {
                what: "definition digest",
                value: digest.chars().take(70).collect(),
                expected: "64 hex characters (SHA-256)",
            }
            .into());
        }
        if tools.len() > MAX_LIST {
            return Err(InvalidInput::TooMany {
                what: "tools",
                max: MAX_LIST,
            }
            .into());
        }
        for t in tools {
            validate_name("tool name", t)?;
        }
        Ok(())
    }

    async fn create_workflow(
        &mut self,
        new: NewWorkflow,
        actor: &str,
        now: Millis,
    ) -> Result<Workflow, StoreError> {
        validate_name("workflow name", &new.name)?;
        Self::check_workflow_fields(&new.digest, &new.tools)?;
        if self.registry.read().workflow_by_name(&new.name).is_some() {
            return Err(StoreError::Duplicate {
                what: "workflow",
                name: new.name,
            });
        }
        let owner = self.active_owner_for("workflow", &new.owner)?;
        self.flush_tokens().await?;
        let tools = new.tools.join(" ");
        let id = Sql::new("INSERT INTO workflows (name, owner_id, digest, tools, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id")
            .bind(&new.name)
            .bind(owner.id)
            .bind(&new.digest)
            .bind(&tools)
            .bind(now)
            .bind(now)
            .one(&mut self.conn)
            .await?
            .int("id")?;
        let w = Workflow {
            id,
            name: new.name,
            owner_id: owner.id,
            digest: new.digest,
            tools: new.tools,
            created_at: now,
            updated_at: now,
        };
        self.append(
            now,
            "workflow.created",
            actor,
            format!("workflow:{}", w.name),
            json!({"owner": owner.name, "digest": w.digest, "tools": w.tools}),
        );
        self.registry.write().put_workflow(w.clone());
        Ok(w)
    }

    async fn update_workflow(
        &mut self,
        name: &str,
        digest: String,
        tools: Option<Vec<String>>,
        actor: &str,
        now: Millis,
    ) -> Result<(Workflow, Revoked), StoreError> {
        let mut wf = self
            .registry
            .read()
            .workflow_by_name(name)
            .cloned()
            .ok_or_else(|| StoreError::NotFound {
                what: "workflow",
                key: name.to_owned(),
            })?;
        let tools = tools.unwrap_or_else(|| wf.tools.clone());
        Self::check_workflow_fields(&digest, &tools)?;
        let none = Revoked::default();
        if digest == wf.digest && tools == wf.tools {
            return Ok((wf, none));
        }
        self.flush_tokens().await?;
        Sql::new("UPDATE workflows SET digest = $1, tools = $2, updated_at = $3 WHERE id = $4")
            .bind(&digest)
            .bind(tools.join(" "))
            .bind(now)
            .bind(wf.id)
            .run(&mut self.conn)
            .await?;
        let old = std::mem::replace(&mut wf.digest, digest);
        wf.tools = tools;
        wf.updated_at = now;
        let cause = self.append(
            now,
            "workflow.updated",
            actor,
            format!("workflow:{name}"),
            json!({"old_digest": old, "digest": wf.digest, "tools": wf.tools}),
        );
        self.registry.write().put_workflow(wf.clone());
        if old == wf.digest {
            return Ok((wf, none));
        }
        let reason = format!(
            "workflow {name} definition changed from {} to {}",
            &old[..12],
            &wf.digest[..12]
        );
        let revoked = self
            .revoke_cascade(
                Root::StaleRuns {
                    workflow: wf.id,
                    digest: &wf.digest.clone(),
                },
                RevocationTrigger::WorkflowChanged,
                &reason,
                cause,
                actor,
                now,
                false,
            )
            .await?;
        Ok((wf, revoked))
    }

    async fn start_run(
        &mut self,
        workflow: &str,
        workload: &str,
        actor: &str,
        now: Millis,
    ) -> Result<Run, StoreError> {
        let (wf, wl) =
            {
                let reg = self.registry.read();
                let wf = reg.workflow_by_name(workflow).cloned().ok_or_else(|| {
                    StoreError::NotFound {
                        what: "workflow",
                        key: workflow.to_owned(),
                    }
                })?;
                let wl = reg.workload_by_name(workload).cloned().ok_or_else(|| {
                    StoreError::NotFound {
                        what: "workload",
                        key: workload.to_owned(),
                    }
                })?;
                (wf, wl)
            };
        self.flush_tokens().await?;
        let id = Sql::new("INSERT INTO runs (workflow_id, workload_id, digest, state, started_at) VALUES ($1, $2, $3, 'running', $4) RETURNING id")
            .bind(wf.id)
            .bind(wl.id)
            .bind(&wf.digest)
            .bind(now)
            .one(&mut self.conn)
            .await?
            .int("id")?;
        let run = Run {
            id,
            workflow_id: wf.id,
            workload_id: wl.id,
            digest: wf.digest.clone(),
            state: RunState::Running,
            started_at: now,
            ended_at: None,
        };
        self.append(
            now,
            "run.started",
            actor,
            format!("run:{id}"),
            json!({"workflow": wf.name, "workload": wl.name, "digest": wf.digest}),
        );
        self.registry.write().put_run(run.clone());
        Ok(run)
    }

    async fn stored_run(&mut self, id: i64) -> Result<Run, StoreError> {
        let row = Sql::new("SELECT * FROM runs WHERE id = $1")
            .bind(id)
            .optional(&mut self.conn)
            .await?;
        row.map(|r| rows::run(&r))
            .transpose()?
            .ok_or_else(|| StoreError::NotFound {
                what: "run",
                key: id.to_string(),
            })
    }

    async fn end_run(
        &mut self,
        id: i64,
        state: RunState,
        actor: &str,
        now: Millis,
    ) -> Result<(Run, Revoked), StoreError> {
        if state == RunState::Running {
            return Err(InvalidInput::Choice {
                what: "final run status",
                value: "running".into(),
                expected: "succeeded failed cancelled",
            }
            .into());
        }
        let running = self.registry.read().running_run(id).cloned();
        let mut run = match running {
            Some(r) => r,
            None => {
                let r = self.stored_run(id).await?;
                return Err(StoreError::Conflict(format!(
                    "run {id} already ended ({})",
                    r.state
                )));
            }
        };
        self.flush_tokens().await?;
        Sql::new("UPDATE runs SET state = $1, ended_at = $2 WHERE id = $3")
            .bind(state.as_str())
            .bind(now)
            .bind(id)
            .run(&mut self.conn)
            .await?;
        run.state = state;
        run.ended_at = Some(now);
        let cause = self.append(
            now,
            "run.ended",
            actor,
            format!("run:{id}"),
            json!({"status": state}),
        );
        self.registry.write().put_run(run.clone());
        let revoked = self
            .revoke_cascade(
                Root::Run(id),
                RevocationTrigger::RunEnded,
                &format!("run {id} ended ({state})"),
                cause,
                actor,
                now,
                false,
            )
            .await?;
        Ok((run, revoked))
    }

    async fn mint(&mut self, plan: MintPlan, actor: &str, now: Millis) -> Result<(), StoreError> {
        let t = &plan.token;
        // Judge against the registry as it is now, borrowing rather than
        // copying it: this runs in the single writer, so every microsecond
        // here is paid once per mint by the whole server.
        let judged: Result<Option<(String, String)>, StoreError> = {
            let reg = self.registry.read();
            let workload = reg
                .workload(t.workload_id)
                .ok_or_else(|| StoreError::NotFound {
                    what: "workload",
                    key: t.workload_id.to_string(),
                })?;
            let owner = reg
                .owner(workload.owner_id)
                .ok_or_else(|| StoreError::NotFound {
                    what: "owner",
                    key: workload.owner_id.to_string(),
                })?;
            if owner.id != t.owner_id {
                return Err(StoreError::Conflict(
                    "the workload changed owner while the token was being minted; try again".into(),
                ));
            }
            let pair = t
                .run_id
                .and_then(|id| reg.running_run(id))
                .and_then(|r| reg.workflow(r.workflow_id).map(|w| (r, w)));
            match (t.run_id, pair) {
                (Some(_), None) => Ok(None),
                (_, pair) => {
                    if pair.is_some_and(|(_, w)| Some(w.id) != t.workflow_id) {
                        return Err(StoreError::Conflict(
                            "the token's workflow does not match its run".into(),
                        ));
                    }
                    if t.break_glass {
                        if t.run_id.is_some() || t.parent_id.is_some() {
                            return Err(StoreError::Conflict(
                                "a break-glass grant stands alone: no run, no parent".into(),
                            ));
                        }
                        leash_core::issuance::check_break_glass(owner, workload, &plan.request)?;
                    } else {
                        let ctx = MintContext {
                            owner,
                            workload,
                            run: pair,
                        };
                        check_mint(ctx, &plan.request, &self.caps, |id| {
                            reg.workload(id).map(|w| w.name.clone()).unwrap_or_default()
                        })?;
                    }
                    Ok(Some((workload.name.clone(), owner.name.clone())))
                }
            }
        };
        let Some((workload_name, owner_name)) = judged? else {
            // bound to a run that is not running: say what it is
            let id = t.run_id.unwrap_or_default();
            let r = self.stored_run(id).await?;
            return Err(leash_core::issuance::MintRefusal::RunNotRunning {
                run: id,
                state: r.state,
            }
            .into());
        };
        if let Some(pid) = &t.parent_id {
            let row = Sql::new(select_tokens!("WHERE id = $1"))
                .bind(pid)
                .optional(&mut self.conn)
                .await?;
            let parent =
                row.map(|r| rows::token(&r))
                    .transpose()?
                    .ok_or_else(|| StoreError::NotFound {
                        what: "parent token",
                        key: pid.clone(),
                    })?;
            leash_core::issuance::check_delegation(
                &parent,
                &plan.request,
                t.expires_at,
                now,
                self.max_depth,
            )?;
            if t.depth != parent.depth + 1 {
                return Err(StoreError::Conflict(
                    "a delegated token's depth must be its parent's plus one".into(),
                ));
            }
        }
        if t.issued_at > now + 60_000 || t.expires_at <= t.issued_at {
            return Err(StoreError::Conflict("token times are inconsistent".into()));
        }
        if let Some(budget) = plan.write_budget
            && t.has_write()
            && !t.break_glass
        {
            let live = self.live_write_tokens(t.workload_id, now).await?;
            if live >= u64::from(budget) {
                return Err(leash_core::issuance::MintRefusal::WriteBudgetExceeded {
                    workload: workload_name,
                    live,
                    budget,
                }
                .into());
            }
        }
        if let Some(approval) = plan.approval {
            self.claim_approval(approval, t.workload_id, &t.id).await?;
        }
        #[derive(serde::Serialize)]
        struct Minted<'a> {
            format: &'a str,
            workload: &'a str,
            owner: &'a str,
            run: Option<i64>,
            scopes: String,
            expires_at: Millis,
            parent: Option<&'a str>,
            #[serde(skip_serializing_if = "std::ops::Not::not")]
            break_glass: bool,
            #[serde(skip_serializing_if = "Option::is_none")]
            approval: Option<i64>,
            #[serde(skip_serializing_if = "Option::is_none")]
            reason: Option<&'a str>,
        }
        let data = serde_json::to_string(&Minted {
            format: t.format.as_str(),
            workload: &workload_name,
            owner: &owner_name,
            run: t.run_id,
            scopes: join_scopes(&t.scopes),
            expires_at: t.expires_at,
            parent: t.parent_id.as_deref(),
            break_glass: t.break_glass,
            approval: plan.approval,
            reason: t.break_glass.then_some(()).and(t.justification.as_deref()),
        })
        .map_err(|e| StoreError::Storage(e.to_string()))?;
        let kind = if t.break_glass {
            "token.break_glass"
        } else {
            "token.minted"
        };
        self.append_text(now, kind, actor, t.id.clone(), data);
        if let Some(c) = &plan.credential {
            if t.format != leash_core::TokenFormat::Postgres {
                return Err(StoreError::Conflict(
                    "only a `postgres` token has a database credential".into(),
                ));
            }
            self.insert_credential(t, c, now).await?;
        }
        self.tokens.push((plan.token, plan.secret_hash));
        Ok(())
    }

    async fn revoke(
        &mut self,
        id: &str,
        reason: String,
        actor: &str,
        now: Millis,
    ) -> Result<Revoked, StoreError> {
        validate_len("reason", &reason, 1000)?;
        self.flush_tokens().await?;
        let row = Sql::new(select_tokens!("WHERE id = $1"))
            .bind(id)
            .optional(&mut self.conn)
            .await?;
        let token =
            row.map(|r| rows::token(&r))
                .transpose()?
                .ok_or_else(|| StoreError::NotFound {
                    what: "token",
                    key: id.to_owned(),
                })?;
        match token.status(now) {
            TokenStatus::Revoked | TokenStatus::Expired => {
                // idempotent (RFC 7009): nothing live to revoke, nothing appended
                return Ok(Revoked {
                    event: token.revocation.map(|r| r.event),
                    ..Revoked::default()
                });
            }
            TokenStatus::Active => {}
        }
        let cause = self.append(
            now,
            "token.revoked",
            actor,
            id.to_owned(),
            json!({"trigger": RevocationTrigger::Manual, "reason": reason}),
        );
        self.revoke_cascade(
            Root::Token(id),
            RevocationTrigger::Manual,
            &reason,
            cause,
            actor,
            now,
            true,
        )
        .await
    }

    /// Revoke every live token the root selects, and all their live
    /// descendants, recording `cause` as the event that did it. One
    /// `token.revoked` event is appended per token (except the root's own
    /// when `cause` already is that token's event).
    #[allow(clippy::too_many_arguments)]
    async fn revoke_cascade(
        &mut self,
        root: Root<'_>,
        trigger: RevocationTrigger,
        reason: &str,
        cause: i64,
        actor: &str,
        now: Millis,
        cause_is_root_event: bool,
    ) -> Result<Revoked, StoreError> {
        let cond = match root {
            Root::Run(_) => "run_id = $5",
            // tokens.owner_id is the workload's owner (workloads never change owner),
            // so the workload index serves and tokens need no owner index
            Root::Owner(_) => "workload_id IN (SELECT id FROM workloads WHERE owner_id = $5)",
            Root::Token(_) => "id = $5",
            Root::StaleRuns { .. } => {
                "run_id IN (SELECT id FROM runs WHERE workflow_id = $5 AND digest <> $6)"
            }
            Root::BreakGlassDue(_) => match B::DIALECT {
                Dialect::Sqlite => "break_glass = 1 AND expires_at <= $5",
                Dialect::Postgres => "break_glass AND expires_at <= $5",
            },
        };
        let sql = format!(
            "WITH RECURSIVE hit(id, direct) AS ( \
               SELECT id, 1 FROM tokens WHERE {cond} AND revoked_at IS NULL AND expires_at > $1 \
               UNION SELECT t.id, 0 FROM tokens t JOIN hit h ON t.parent_id = h.id WHERE t.revoked_at IS NULL AND t.expires_at > $1 ), \
             direct(id) AS (SELECT id FROM hit WHERE direct = 1) \
             UPDATE tokens SET revoked_at = $1, revoked_event = $2, \
               revoked_trigger = CASE WHEN id IN (SELECT id FROM direct) THEN $3 ELSE 'parent_revoked' END, \
               revoked_reason = CASE WHEN id IN (SELECT id FROM direct) THEN $4 ELSE 'an ancestor token was revoked: ' || $4 END \
             WHERE id IN (SELECT id FROM hit) RETURNING id, revoked_trigger, revoked_reason, expires_at"
        );
        // `cond` is one of the fixed fragments above; every value is bound
        let q = Sql::built(sql)
            .bind(now)
            .bind(cause)
            .bind(trigger.as_str())
            .bind(reason);
        let q = match root {
            Root::Run(id) | Root::Owner(id) | Root::BreakGlassDue(id) => q.bind(id),
            Root::Token(id) => q.bind(id),
            Root::StaleRuns { workflow, digest } => q.bind(workflow).bind(digest),
        };
        // PostgreSQL plans with the table statistics it has, and right after
        // a burst of mints they still say the run holds a handful of tokens:
        // the recursive join then became a nested loop comparing every hit
        // with every token (10,000 × 10,000 rows: seconds; minutes on a
        // larger table). Hash joins are linear whatever the statistics say.
        // A large lineage also wants its hash tables in memory (the default
        // 4 MB spills 100,000 ids to disk), and no JIT compilation.
        let pg = B::DIALECT == Dialect::Postgres;
        // (one round trip each way: set for this statement, then back to
        // the session's values for the rest of the batch)
        if pg {
            Sql::new(
                "SELECT set_config('enable_nestloop', 'off', true), set_config('work_mem', '64MB', true), \
                 set_config('jit', 'off', true)",
            )
            .run(&mut self.conn)
            .await?;
        }
        let found = q.all(&mut self.conn).await?;
        if pg {
            Sql::new(
                "SELECT set_config(name, reset_val, true) FROM pg_settings \
                 WHERE name IN ('enable_nestloop', 'work_mem', 'jit')",
            )
            .run(&mut self.conn)
            .await?;
        }
        let mut rows = Vec::new();
        for row in found {
            rows.push((
                row.text("id")?,
                row.text("revoked_trigger")?,
                row.text("revoked_reason")?,
                row.int("expires_at")?,
            ));
        }
        // in id order, whatever order the database returned them in
        rows.sort_unstable();
        let mut ids = Vec::with_capacity(rows.len().min(ECHO_IDS));
        let mut cascaded = 0;
        for (id, trig, reason, expires_at) in rows.iter().cloned() {
            let is_root = trig == trigger.as_str();
            cascaded += usize::from(!is_root);
            // every revoked token has exactly one `token.revoked` event: the
            // feed is ordered by it
            let seq = if cause_is_root_event && is_root {
                cause
            } else {
                self.append(
                    now,
                    "token.revoked",
                    actor,
                    id.clone(),
                    json!({"trigger": trig, "cause": cause}),
                )
            };
            self.revoked_pending.push(RevocationRecord {
                seq,
                token_id: id.clone(),
                expires_at,
                revocation: Revocation {
                    at: now,
                    trigger: if is_root {
                        trigger
                    } else {
                        RevocationTrigger::ParentRevoked
                    },
                    reason,
                    event: cause,
                },
            });
            if ids.len() < ECHO_IDS {
                ids.push(id);
            }
        }
        Ok(Revoked {
            event: Some(cause),
            trigger: Some(trigger),
            count: rows.len(),
            cascaded,
            tokens: ids,
        })
    }
}

impl<B: Backend> Store for SqlStore<B> {
    fn registry(&self) -> &SharedRegistry {
        &self.registry
    }
    fn revocations(&self) -> &RevocationSet {
        &self.revocations
    }
    fn commits(&self) -> &CommitFeed {
        &self.feed
    }
    fn revocations_after(&self, after: i64, limit: u32) -> StoreFuture<'_, Vec<RevocationRecord>> {
        Box::pin(revocations_after(&self.reads, after, limit))
    }
    fn catch_up(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            if self.feed.synced_at().is_none() {
                return Ok(()); // the only writer: nothing to catch up with
            }
            // one read; the writer is only asked when something is new
            let head = Sql::new("SELECT COALESCE(MAX(seq), 0) AS head FROM events")
                .one(&self.reads)
                .await?
                .int("head")?;
            let mut applied = self.feed.head();
            if *applied.borrow() >= head {
                return Ok(());
            }
            self.feed.wake();
            let reached =
                tokio::time::timeout(CATCH_UP_WAIT, applied.wait_for(|h| *h >= head)).await;
            match reached {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(_)) => Err(StoreError::Closed),
                Err(_) => Err(StoreError::Storage(format!(
                    "this replica could not read the shared database's commits up to {head} within {} s; retry, or on another replica",
                    CATCH_UP_WAIT.as_secs()
                ))),
            }
        })
    }
    fn signing_keys(&self) -> StoreFuture<'_, Vec<crate::SealedKey>> {
        Box::pin(keys::signing_keys(&self.reads))
    }
    fn add_signing_key(
        &self,
        key: crate::SealedKey,
        first: bool,
        actor: &str,
    ) -> StoreFuture<'_, bool> {
        let actor = actor.to_owned();
        Box::pin(self.submit(move |r| Job::AddKey(key, first, actor, r)))
    }
    fn ttl_caps(&self) -> TtlCaps {
        self.caps
    }
    fn create_owner(&self, new: NewOwner, actor: &str) -> StoreFuture<'_, Owner> {
        let actor = actor.to_owned();
        Box::pin(self.submit(move |r| Job::CreateOwner(new, actor, r)))
    }
    fn record_event(
        &self,
        kind: &str,
        subject: &str,
        data: serde_json::Value,
        actor: &str,
    ) -> StoreFuture<'_, i64> {
        let (kind, subject, actor) = (kind.to_owned(), subject.to_owned(), actor.to_owned());
        Box::pin(self.submit(move |r| Job::Record(kind, subject, data, actor, r)))
    }
    fn create_issuer(&self, new: NewIssuer, actor: &str) -> StoreFuture<'_, Issuer> {
        let actor = actor.to_owned();
        Box::pin(self.submit(move |r| Job::CreateIssuer(new, actor, r)))
    }
    fn add_identity_rule(
        &self,
        workload: &str,
        issuer: &str,
        claims: std::collections::BTreeMap<String, String>,
        actor: &str,
    ) -> StoreFuture<'_, IdentityRule> {
        let (workload, issuer, actor) = (workload.to_owned(), issuer.to_owned(), actor.to_owned());
        Box::pin(self.submit(move |r| Job::AddRule(workload, issuer, claims, actor, r)))
    }
    fn create_client(&self, new: NewClient, actor: &str) -> StoreFuture<'_, Client> {
        let actor = actor.to_owned();
        Box::pin(self.submit(move |r| Job::CreateClient(new, actor, r)))
    }
    fn offboard_owner_and_revoke(
        &self,
        name: &str,
        actor: &str,
    ) -> StoreFuture<'_, (Owner, Revoked)> {
        let (name, actor) = (name.to_owned(), actor.to_owned());
        Box::pin(self.submit(move |r| Job::Offboard(name, actor, r)))
    }
    fn create_workload(&self, new: NewWorkload, actor: &str) -> StoreFuture<'_, Workload> {
        let actor = actor.to_owned();
        Box::pin(self.submit(move |r| Job::CreateWorkload(new, actor, r)))
    }
    fn create_workflow(&self, new: NewWorkflow, actor: &str) -> StoreFuture<'_, Workflow> {
        let actor = actor.to_owned();
        Box::pin(self.submit(move |r| Job::CreateWorkflow(new, actor, r)))
    }
    fn update_workflow_and_revoke(
        &self,
        name: &str,
        digest: String,
        tools: Option<Vec<String>>,
        actor: &str,
    ) -> StoreFuture<'_, (Workflow, Revoked)> {
        let (name, actor) = (name.to_owned(), actor.to_owned());
        Box::pin(self.submit(move |r| Job::UpdateWorkflow(name, digest, tools, actor, r)))
    }
    fn start_run(&self, workflow: &str, workload: &str, actor: &str) -> StoreFuture<'_, Run> {
        let (wf, wl, actor) = (workflow.to_owned(), workload.to_owned(), actor.to_owned());
        Box::pin(self.submit(move |r| Job::StartRun(wf, wl, actor, r)))
    }
    fn end_run_and_revoke(
        &self,
        run: i64,
        state: RunState,
        actor: &str,
    ) -> StoreFuture<'_, (Run, Revoked)> {
        let actor = actor.to_owned();
        Box::pin(self.submit(move |r| Job::EndRun(run, state, actor, r)))
    }
    fn record_mint(&self, plan: MintPlan, actor: &str) -> StoreFuture<'_, ()> {
        let actor = actor.to_owned();
        Box::pin(self.submit(move |r| Job::Mint(Box::new(plan), actor, r)))
    }
    fn revoke_token(&self, id: &str, reason: String, actor: &str) -> StoreFuture<'_, Revoked> {
        let (id, actor) = (id.to_owned(), actor.to_owned());
        Box::pin(self.submit(move |r| Job::Revoke(id, reason, actor, r)))
    }
    fn create_external_token(
        &self,
        new: NewExternalToken,
        actor: &str,
    ) -> StoreFuture<'_, ExternalToken> {
        let actor = actor.to_owned();
        Box::pin(self.submit(move |r| Job::CreateExternal(new, actor, r)))
    }
    fn set_external_status(
        &self,
        id: i64,
        status: ExternalStatus,
        detail: String,
        actor: &str,
    ) -> StoreFuture<'_, ExternalToken> {
        let actor = actor.to_owned();
        Box::pin(self.submit(move |r| Job::SetExternal(id, status, detail, actor, r)))
    }
    fn record_exposure_and_revoke(
        &self,
        new: NewExposure,
        actor: &str,
    ) -> StoreFuture<'_, ExposureRecord> {
        let actor = actor.to_owned();
        Box::pin(self.submit(move |r| Job::Exposure(Box::new(new), actor, r)))
    }
    fn set_finding_status(
        &self,
        id: i64,
        status: FindingStatus,
        note: String,
        actor: &str,
    ) -> StoreFuture<'_, Finding> {
        let actor = actor.to_owned();
        Box::pin(self.submit(move |r| Job::SetFinding(id, status, note, actor, r)))
    }
    fn get_external_token(&self, id: i64) -> StoreFuture<'_, ExternalToken> {
        Box::pin(exposures::get_external(&self.reads, id))
    }
    fn external_token_by_name(&self, name: &str) -> StoreFuture<'_, ExternalToken> {
        let name = name.to_owned();
        Box::pin(async move { exposures::external_by_name(&self.reads, &name).await })
    }
    fn list_external_tokens(&self, after: i64, limit: u32) -> StoreFuture<'_, Vec<ExternalToken>> {
        Box::pin(exposures::list_external(&self.reads, after, limit))
    }
    fn get_exposure(&self, id: i64) -> StoreFuture<'_, Exposure> {
        Box::pin(exposures::get_exposure(&self.reads, id))
    }
    fn list_exposures(&self, before: Option<i64>, limit: u32) -> StoreFuture<'_, Vec<Exposure>> {
        Box::pin(exposures::list_exposures(&self.reads, before, limit))
    }
    fn get_finding(&self, id: i64) -> StoreFuture<'_, Finding> {
        Box::pin(exposures::get_finding(&self.reads, id))
    }
    fn list_findings(
        &self,
        status: Option<FindingStatus>,
        before: Option<i64>,
        limit: u32,
    ) -> StoreFuture<'_, Vec<Finding>> {
        Box::pin(exposures::list_findings(&self.reads, status, before, limit))
    }

    fn get_run(&self, id: i64) -> StoreFuture<'_, Run> {
        Box::pin(async move {
            let row = Sql::new("SELECT * FROM runs WHERE id = $1")
                .bind(id)
                .optional(&self.reads)
                .await?;
            row.map(|r| rows::run(&r))
                .transpose()?
                .ok_or_else(|| StoreError::NotFound {
                    what: "run",
                    key: id.to_string(),
                })
        })
    }
    fn list_runs(&self, workflow_id: Option<i64>, limit: u32) -> StoreFuture<'_, Vec<Run>> {
        Box::pin(async move {
            let rows = match workflow_id {
                Some(w) => {
                    Sql::new("SELECT * FROM runs WHERE workflow_id = $1 ORDER BY id DESC LIMIT $2")
                        .bind(w)
                        .bind(limit)
                        .all(&self.reads)
                        .await?
                }
                None => {
                    Sql::new("SELECT * FROM runs ORDER BY id DESC LIMIT $1")
                        .bind(limit)
                        .all(&self.reads)
                        .await?
                }
            };
            rows.iter().map(rows::run).collect()
        })
    }
    fn get_token(&self, id: &str) -> StoreFuture<'_, Token> {
        let id = id.to_owned();
        Box::pin(async move {
            let row = Sql::new(select_tokens!("WHERE id = $1"))
                .bind(&id)
                .optional(&self.reads)
                .await?;
            row.map(|r| rows::token(&r))
                .transpose()?
                .ok_or(StoreError::NotFound {
                    what: "token",
                    key: id,
                })
        })
    }
    fn find_token_by_secret_hash(&self, hash: [u8; 32]) -> StoreFuture<'_, Token> {
        Box::pin(async move {
            let row = Sql::new(select_tokens!("WHERE secret_hash = $1"))
                .bind(hash.to_vec())
                .optional(&self.reads)
                .await?;
            row.map(|r| rows::token(&r))
                .transpose()?
                .ok_or(StoreError::NotFound {
                    what: "token",
                    key: "(by secret)".into(),
                })
        })
    }
    fn list_tokens(&self, f: TokenFilter, now: Millis) -> StoreFuture<'_, Vec<Token>> {
        Box::pin(async move {
            let mut q = Sql::new(select_tokens!("WHERE 1 = 1"));
            if let Some(v) = f.owner_id {
                q.push(" AND workload_id IN (SELECT id FROM workloads WHERE owner_id = ")
                    .push_bind(v)
                    .push(")");
            }
            if let Some(v) = f.workload_id {
                q.push(" AND workload_id = ").push_bind(v);
            }
            if let Some(v) = f.run_id {
                q.push(" AND run_id = ").push_bind(v);
            }
            match f.status {
                Some(TokenStatus::Active) => {
                    q.push(" AND revoked_at IS NULL AND expires_at > ")
                        .push_bind(now);
                }
                Some(TokenStatus::Revoked) => {
                    q.push(" AND revoked_at IS NOT NULL");
                }
                Some(TokenStatus::Expired) => {
                    q.push(" AND revoked_at IS NULL AND expires_at <= ")
                        .push_bind(now);
                }
                None => {}
            }
            if let Some(b) = f.break_glass {
                q.push(" AND break_glass = ").push_bind(b);
            }
            if let Some(after) = f.after {
                q.push(" AND id > ").push_bind(after);
            }
            q.push(" ORDER BY id LIMIT ").push_bind(i64::from(f.limit));
            let rows = q.all(&self.reads).await?;
            rows.iter().map(rows::token).collect()
        })
    }
    fn get_event(&self, seq: i64) -> StoreFuture<'_, Event> {
        Box::pin(async move {
            let row = Sql::new("SELECT * FROM events WHERE seq = $1")
                .bind(seq)
                .optional(&self.reads)
                .await?;
            row.map(|r| rows::event(&r))
                .transpose()?
                .ok_or_else(|| StoreError::NotFound {
                    what: "event",
                    key: seq.to_string(),
                })
        })
    }
    fn events_after(&self, after: i64, limit: u32) -> StoreFuture<'_, Vec<Event>> {
        Box::pin(async move {
            let rows = Sql::new("SELECT * FROM events WHERE seq > $1 ORDER BY seq LIMIT $2")
                .bind(after)
                .bind(limit)
                .all(&self.reads)
                .await?;
            rows.iter().map(rows::event).collect()
        })
    }
    fn latest_events(&self, limit: u32) -> StoreFuture<'_, Vec<Event>> {
        Box::pin(async move {
            let rows = Sql::new("SELECT * FROM events ORDER BY seq DESC LIMIT $1")
                .bind(limit)
                .all(&self.reads)
                .await?;
            let mut v: Vec<Event> = rows.iter().map(rows::event).collect::<Result<_, _>>()?;
            v.reverse();
            Ok(v)
        })
    }
    fn verify_audit(&self) -> StoreFuture<'_, Result<ChainSummary, Vec<ChainBreak>>> {
        Box::pin(verify_pool(&self.reads))
    }
    fn record_usage(
        &self,
        totals: Vec<UsageTotal>,
        log: Vec<UsageRecord>,
        keep_log: u64,
    ) -> StoreFuture<'_, ()> {
        Box::pin(self.submit(move |r| Job::Usage(totals, log, keep_log, r)))
    }
    fn token_usage(&self, token_id: &str, recent: u32) -> StoreFuture<'_, TokenUsage> {
        let id = token_id.to_owned();
        Box::pin(async move { authz::token_usage(&self.reads, &id, recent).await })
    }
    fn record_violation_and_revoke(
        &self,
        v: NewViolation,
        actor: &str,
    ) -> StoreFuture<'_, ViolationRecord> {
        let actor = actor.to_owned();
        Box::pin(self.submit(move |r| Job::Violation(Box::new(v), actor, r)))
    }
    fn create_approval(&self, new: NewApproval, actor: &str) -> StoreFuture<'_, Approval> {
        let actor = actor.to_owned();
        Box::pin(self.submit(move |r| Job::CreateApproval(Box::new(new), actor, r)))
    }
    fn decide_approval(
        &self,
        id: i64,
        approve: bool,
        approver: &str,
        note: String,
        actor: &str,
    ) -> StoreFuture<'_, Approval> {
        let (approver, actor) = (approver.to_owned(), actor.to_owned());
        Box::pin(self.submit(move |r| Job::DecideApproval(id, approve, approver, note, actor, r)))
    }
    fn get_approval(&self, id: i64) -> StoreFuture<'_, Approval> {
        Box::pin(authz::get_approval(&self.reads, id))
    }
    fn list_approvals(
        &self,
        status: Option<ApprovalStatus>,
        before: Option<i64>,
        limit: u32,
    ) -> StoreFuture<'_, Vec<Approval>> {
        Box::pin(authz::list_approvals(&self.reads, status, before, limit))
    }
    fn create_owner_credential(
        &self,
        owner: &str,
        secret_hash: [u8; 32],
        actor: &str,
    ) -> StoreFuture<'_, Owner> {
        let (owner, actor) = (owner.to_owned(), actor.to_owned());
        Box::pin(self.submit(move |r| Job::OwnerCredential(owner, secret_hash, actor, r)))
    }
    fn owner_by_credential(&self, secret_hash: [u8; 32]) -> StoreFuture<'_, Owner> {
        Box::pin(authz::owner_by_credential(&self.reads, secret_hash))
    }
    fn add_delegate(&self, owner: &str, delegate: &str, actor: &str) -> StoreFuture<'_, ()> {
        let (owner, delegate, actor) = (owner.to_owned(), delegate.to_owned(), actor.to_owned());
        Box::pin(self.submit(move |r| Job::AddDelegate(owner, delegate, actor, r)))
    }
    fn delegates_of(&self, owner_id: i64) -> StoreFuture<'_, Vec<String>> {
        Box::pin(authz::delegates_of(&self.reads, owner_id))
    }
    fn revoke_due_break_glass(&self, due: Millis) -> StoreFuture<'_, Revoked> {
        Box::pin(async move {
            // checked every quarter second: only a due grant costs a write
            let any = Sql::built(format!(
                "SELECT 1 AS one FROM tokens WHERE break_glass = {} AND revoked_at IS NULL AND expires_at > $1 AND expires_at <= $2 LIMIT 1",
                B::DIALECT.boolean(true)
            ))
            .bind(now_ms())
            .bind(due)
            .optional(&self.reads)
            .await?;
            if any.is_none() {
                return Ok(Revoked::default());
            }
            self.submit(move |r| Job::BreakGlassDue(due, "leash".into(), r))
                .await
        })
    }
    fn credentials_due(
        &self,
        now: Millis,
        limit: u32,
    ) -> StoreFuture<'_, Vec<leash_core::DatabaseCredential>> {
        Box::pin(credentials::credentials_due(&self.reads, now, limit))
    }
    fn record_credential_drop(
        &self,
        token_id: &str,
        attempt: crate::DropAttempt,
        actor: &str,
    ) -> StoreFuture<'_, leash_core::DatabaseCredential> {
        let (token_id, actor) = (token_id.to_owned(), actor.to_owned());
        Box::pin(self.submit(move |r| Job::CredentialDrop(token_id, attempt, actor, r)))
    }
    fn create_ssf_stream(
        &self,
        new: ssf::NewSsfStream,
        actor: &str,
    ) -> StoreFuture<'_, ssf::SsfStream> {
        let actor = actor.to_owned();
        Box::pin(self.submit(move |r| Job::SsfCreate(Box::new(new), actor, r)))
    }
    fn replace_ssf_stream(
        &self,
        stream_id: &str,
        config: ssf::SsfConfig,
        actor: &str,
    ) -> StoreFuture<'_, ssf::SsfStream> {
        let (id, actor) = (stream_id.to_owned(), actor.to_owned());
        Box::pin(self.submit(move |r| Job::SsfReplace(id, Box::new(config), actor, r)))
    }
    fn delete_ssf_stream(&self, stream_id: &str, actor: &str) -> StoreFuture<'_, ()> {
        let (id, actor) = (stream_id.to_owned(), actor.to_owned());
        Box::pin(self.submit(move |r| Job::SsfDelete(id, actor, r)))
    }
    fn set_ssf_status(
        &self,
        stream_id: &str,
        status: ssf::SsfStatus,
        reason: Option<String>,
        actor: &str,
    ) -> StoreFuture<'_, ssf::SsfStream> {
        let (id, actor) = (stream_id.to_owned(), actor.to_owned());
        Box::pin(self.submit(move |r| Job::SsfStatus(id, status, reason, actor, r)))
    }
    fn get_ssf_stream(&self, stream_id: &str) -> StoreFuture<'_, ssf::SsfStream> {
        let id = stream_id.to_owned();
        Box::pin(async move { ssf::get_stream(&self.reads, &id).await })
    }
    fn list_ssf_streams(
        &self,
        client_id: Option<String>,
        after: String,
        limit: u32,
    ) -> StoreFuture<'_, Vec<ssf::SsfStream>> {
        Box::pin(ssf::list_streams(&self.reads, client_id, after, limit))
    }
    fn queue_ssf_sets(&self, advances: Vec<ssf::SsfAdvance>) -> StoreFuture<'_, u64> {
        Box::pin(self.submit(move |r| Job::SsfQueue(advances, r)))
    }
    fn queue_ssf_verification(
        &self,
        stream_id: &str,
        set: ssf::NewSet,
        actor: &str,
    ) -> StoreFuture<'_, ()> {
        let (id, actor) = (stream_id.to_owned(), actor.to_owned());
        Box::pin(self.submit(move |r| Job::SsfVerify(id, set, actor, r)))
    }
    fn claim_ssf_push(
        &self,
        now: Millis,
        lease_ms: Millis,
        limit: u32,
    ) -> StoreFuture<'_, Vec<ssf::SsfPush>> {
        Box::pin(async move {
            // idle ticks stay off the writer (and, shared, off its lock)
            let any = Sql::new(
                "SELECT 1 AS one FROM ssf_outbox o JOIN ssf_streams s ON s.stream_id = o.stream_id \
                 WHERE o.state = 'pending' AND o.next_attempt_ms <= $1 AND s.status = 'enabled' AND s.delivery_method = 'push' LIMIT 1",
            )
            .bind(now)
            .optional(&self.reads)
            .await?;
            if any.is_none() {
                return Ok(Vec::new());
            }
            self.submit(move |r| Job::SsfClaim(now, lease_ms, limit, r))
                .await
        })
    }
    fn record_ssf_push(
        &self,
        jti: &str,
        outcome: ssf::SsfOutcome,
        actor: &str,
    ) -> StoreFuture<'_, ()> {
        let (jti, actor) = (jti.to_owned(), actor.to_owned());
        Box::pin(self.submit(move |r| Job::SsfRecord(jti, outcome, actor, r)))
    }
    fn ack_ssf_sets(
        &self,
        stream_id: &str,
        acks: Vec<String>,
        errors: Vec<ssf::SetError>,
        actor: &str,
    ) -> StoreFuture<'_, ()> {
        let (id, actor) = (stream_id.to_owned(), actor.to_owned());
        Box::pin(self.submit(move |r| Job::SsfAck(id, acks, errors, actor, r)))
    }
    fn pending_ssf_sets(
        &self,
        stream_id: &str,
        limit: u32,
    ) -> StoreFuture<'_, Vec<(String, String)>> {
        let id = stream_id.to_owned();
        Box::pin(async move { ssf::pending_sets(&self.reads, &id, limit).await })
    }
    fn ssf_queue(&self, stream_id: &str) -> StoreFuture<'_, ssf::SsfQueue> {
        let id = stream_id.to_owned();
        Box::pin(async move { ssf::queue_summary(&self.reads, &id).await })
    }
    fn get_credential(
        &self,
        token_id: &str,
    ) -> StoreFuture<'_, Option<leash_core::DatabaseCredential>> {
        let token_id = token_id.to_owned();
        Box::pin(async move { credentials::get_credential(&self.reads, &token_id).await })
    }
    fn list_credentials(
        &self,
        status: Option<leash_core::CredentialStatus>,
        after: Option<String>,
        limit: u32,
    ) -> StoreFuture<'_, Vec<leash_core::DatabaseCredential>> {
        Box::pin(credentials::list_credentials(
            &self.reads,
            status,
            after,
            limit,
        ))
    }
    fn import_external(
        &self,
        records: Vec<crate::ImportedCredential>,
        source: String,
        actor: &str,
    ) -> StoreFuture<'_, crate::ImportSummary> {
        let actor = actor.to_owned();
        Box::pin(self.submit(move |r| Job::Import(records, source, actor, r)))
    }
    fn usage_subject(&self, r: crate::UsageRef) -> StoreFuture<'_, Option<crate::UsageSubject>> {
        Box::pin(review::usage_subject(&self.reads, &self.registry, r))
    }
    fn usage_subjects(
        &self,
        refs: Vec<crate::UsageRef>,
    ) -> StoreFuture<'_, Vec<Option<crate::UsageSubject>>> {
        Box::pin(review::usage_subjects(&self.reads, &self.registry, refs))
    }
    fn record_review(
        &self,
        batch: crate::ReviewBatch,
        actor: &str,
    ) -> StoreFuture<'_, crate::ReviewOutcome> {
        let actor = actor.to_owned();
        Box::pin(self.submit(move |r| Job::Review(Box::new(batch), actor, r)))
    }
    fn review_sweep(
        &self,
        settings: crate::ReviewSettings,
        now: Millis,
    ) -> StoreFuture<'_, (Vec<crate::NewFinding>, Vec<crate::ChurnChain>)> {
        Box::pin(review::review_sweep(
            &self.reads,
            &self.registry,
            settings,
            now,
        ))
    }
    fn churn_chains(
        &self,
        settings: crate::ReviewSettings,
        now: Millis,
    ) -> StoreFuture<'_, Vec<crate::ChurnChain>> {
        Box::pin(review::churn_chains(
            &self.reads,
            &self.registry,
            settings,
            now,
        ))
    }
    fn finding_counts(&self) -> StoreFuture<'_, Vec<(String, String, u64)>> {
        Box::pin(review::finding_counts(&self.reads))
    }
    fn report_numbers(
        &self,
        _settings: crate::ReviewSettings,
        now: Millis,
    ) -> StoreFuture<'_, crate::ReportNumbers> {
        Box::pin(review::report_numbers(
            &self.reads,
            &self.registry,
            self.caps,
            now,
        ))
    }
    fn save_removal_test(
        &self,
        t: crate::RemovalTest,
        actor: &str,
    ) -> StoreFuture<'_, crate::RemovalTest> {
        let actor = actor.to_owned();
        Box::pin(self.submit(move |r| Job::SaveRemoval(Box::new(t), actor, r)))
    }
    fn get_removal_test(&self, id: i64) -> StoreFuture<'_, crate::RemovalTest> {
        Box::pin(review::get_removal_test(&self.reads, id))
    }
    fn list_removal_tests(
        &self,
        workflow_id: Option<i64>,
    ) -> StoreFuture<'_, Vec<crate::RemovalTest>> {
        Box::pin(review::list_removal_tests(&self.reads, workflow_id))
    }
    fn runs_usage(
        &self,
        workflow_id: i64,
        workload_id: Option<i64>,
        last: u32,
    ) -> StoreFuture<'_, Vec<crate::RunUsage>> {
        Box::pin(review::runs_usage(
            &self.reads,
            workflow_id,
            workload_id,
            last,
        ))
    }
    fn token_counts(&self, now: Millis) -> StoreFuture<'_, TokenCounts> {
        Box::pin(async move {
            let row = Sql::built(format!(
                "SELECT COALESCE(SUM(CASE WHEN revoked_at IS NULL AND expires_at > $1 THEN 1 ELSE 0 END), 0) AS active, \
                 COALESCE(SUM(CASE WHEN revoked_at IS NOT NULL THEN 1 ELSE 0 END), 0) AS revoked, \
                 COALESCE(SUM(CASE WHEN revoked_at IS NULL AND expires_at <= $1 THEN 1 ELSE 0 END), 0) AS expired, \
                 COALESCE(SUM(CASE WHEN revoked_at IS NULL AND expires_at > $1 AND has_write = {} THEN 1 ELSE 0 END), 0) AS active_write \
                 FROM tokens",
                B::DIALECT.boolean(true)
            ))
            .bind(now)
            .one(&self.reads)
            .await?;
            Ok(TokenCounts {
                active: rows::count(row.int("active")?),
                revoked: rows::count(row.int("revoked")?),
                expired: rows::count(row.int("expired")?),
                active_write: rows::count(row.int("active_write")?),
            })
        })
    }
}

/// Walk the audit log in two keyset-paged passes (hashes, then events).
pub(crate) async fn verify_pool<B: Backend>(
    pool: &Pool<B>,
) -> Result<Result<ChainSummary, Vec<ChainBreak>>, StoreError> {
    let mut v = ChainVerifier::new();
    let mut after = i64::MIN;
    loop {
        let rows = Sql::new("SELECT seq, hash FROM events WHERE seq > $1 ORDER BY seq LIMIT $2")
            .bind(after)
            .bind(VERIFY_PAGE)
            .all(pool)
            .await?;
        let Some(last) = rows.last() else { break };
        after = last.int("seq")?;
        for r in &rows {
            v.index(
                r.int("seq")?,
                hash32(r.opt_bytes("hash")?.unwrap_or_default())?,
            );
        }
    }
    let mut after = i64::MIN;
    loop {
        let rows = Sql::new("SELECT * FROM events WHERE seq > $1 ORDER BY seq LIMIT $2")
            .bind(after)
            .bind(VERIFY_PAGE)
            .all(pool)
            .await?;
        let Some(last) = rows.last() else { break };
        after = last.int("seq")?;
        for r in &rows {
            v.check(&rows::event(r)?);
        }
    }
    Ok(v.finish())
}

mod authz;
mod credentials;
mod exposures;
mod keys;
mod review;
pub(crate) mod ssf;
pub use credentials::DROP_FAILED_FINDING;
pub use exposures::validate_fingerprint;
pub use review::{external_subject, merge_evidence, scope_allows};
