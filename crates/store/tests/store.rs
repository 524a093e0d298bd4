//! Store behaviour, on every backend: each test runs once on SQLite and once
//! on PostgreSQL (a fresh database per test: see `support/pg.rs`). Group
//! commit never lets a token outlive the run it was minted for; exposures,
//! violations and revocations do what they say and survive a reopen.

// Test code: an unexpected error should fail the test loudly.
#![allow(clippy::unwrap_used, clippy::panic)]
use std::sync::Arc;

use leash_core::RevocationTrigger;
use leash_core::issuance::MintRequest;
use leash_core::{
    Environment, ExposureAction, ExposureSource, Owner, OwnerKind, Run, RunState, Token,
    TokenFormat, TokenStatus, Workflow, Workload,
};
use std::collections::BTreeMap;

use leash_core::{ApprovalKind, ApprovalStatus, ExternalStatus, Severity};
use leash_store::{
    ImportedCredential, MintPlan, NewApproval, NewClient, NewExposure, NewExternalToken,
    NewFinding, NewIssuer, NewOwner, NewWorkflow, NewWorkload, RemovalTest, ReviewBatch,
    ReviewSettings, SourceCounts, Store, StoreConfig, StoreError, TokenFilter, UsageRecord,
    UsageRunTotal, UsageTotal, now_ms, open_store,
};

#[path = "support/pg.rs"]
mod pg;

/// Where one test's store lives.
enum Place {
    Sqlite(tempfile::TempDir),
    Postgres(pg::PgDatabase),
}

impl Place {
    fn location(&self) -> String {
        match self {
            Place::Sqlite(dir) => dir.path().display().to_string(),
            Place::Postgres(db) => db.url.clone(),
        }
    }
    /// Open (or reopen) the store, choosing the backend by location.
    async fn open(&self) -> Arc<dyn Store> {
        open_store(&self.location(), StoreConfig::default())
            .await
            .unwrap()
    }
}

/// Run each named `async fn(Place)` once per backend, as `NAME::sqlite` and
/// `NAME::postgres`.
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(super::Place::Sqlite(tempfile::tempdir().unwrap())).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(db) = super::pg::PgDatabase::create().await {
                    super::$name(super::Place::Postgres(db)).await
                }
            }
        }
    )*};
}

on_every_backend!(
    no_token_outlives_its_run_under_concurrent_mints,
    a_reopened_store_has_the_same_registry_and_chain,
    an_exposed_token_is_revoked_with_its_descendants_once,
    a_third_party_secret_matches_its_tracked_owner_and_users,
    a_revocation_is_in_the_revocation_set_when_acknowledged_and_after_a_reopen,
    a_violation_opens_one_finding_and_revokes_when_asked,
    tokens_page_in_byte_order_of_their_ids,
    every_operation_reads_back_what_it_wrote,
    a_database_credential_is_due_once_its_token_ends_and_failures_open_a_finding,
    ssf_outbox_resumes_from_a_durable_cursor_and_leases_each_push,
    a_large_lineage_is_revoked_in_one_transaction_and_the_chain_holds,
);

fn plan(id: String, owner_id: i64, workload_id: i64, run: i64, workflow: i64) -> MintPlan {
    let now = now_ms();
    let scopes = vec!["tickets:read".parse().unwrap()];
    MintPlan {
        token: Token {
            id,
            format: TokenFormat::Jwt,
            owner_id,
            workload_id,
            run_id: Some(run),
            workflow_id: Some(workflow),
            scopes: scopes.clone(),
            audience: vec!["api".into()],
            issued_at: now,
            expires_at: now + 600_000,
            parent_id: None,
            justification: None,
            revocation: None,
            depth: 0,
            act: None,
            may_act: None,
            cnf_jkt: None,
            break_glass: false,
        },
        secret_hash: None,
        request: MintRequest {
            scopes,
            ttl_secs: 600,
            audience: vec!["api".into()],
            justification: None,
        },
        approval: None,
        write_budget: None,
        credential: None,
    }
}

/// alice owns workload `bot` (dev, tickets:read) and workflow `wf`; one run is running.
async fn registry(store: &dyn Store) -> (Owner, Workload, Workflow, Run) {
    let owner = store
        .create_owner(
            NewOwner {
                name: "alice".into(),
                email: "a@acme.io".into(),
                kind: OwnerKind::Person,
                business_owner: true,
            },
            "test",
        )
        .await
        .unwrap();
    let wl = store
        .create_workload(
            NewWorkload {
                name: "bot".into(),
                owner: "alice".into(),
                identity: None,
                environment: Environment::Dev,
                scope_ceiling: vec!["tickets:read".parse().unwrap()],
            },
            "test",
        )
        .await
        .unwrap();
    let wf = store
        .create_workflow(
            NewWorkflow {
                name: "wf".into(),
                owner: "alice".into(),
                digest: "ab".repeat(32),
                tools: vec![],
            },
            "test",
        )
        .await
        .unwrap();
    let run = store.start_run("wf", "bot", "test").await.unwrap();
    (owner, wl, wf, run)
}

async fn no_token_outlives_its_run_under_concurrent_mints(place: Place) {
    let store = place.open().await;
    let (owner, wl, wf, run) = registry(&*store).await;

    let mut minters = Vec::new();
    for m in 0..16 {
        let store = store.clone();
        minters.push(tokio::spawn(async move {
            let mut ok = 0u64;
            for n in 0.. {
                match store
                    .record_mint(
                        plan(format!("tok_{m}_{n}"), owner.id, wl.id, run.id, wf.id),
                        "test",
                    )
                    .await
                {
                    Ok(_) => ok += 1,
                    Err(StoreError::Refused(r)) => {
                        assert_eq!(r.rule(), "run_running", "{r}");
                        break;
                    }
                    Err(e) => panic!("unexpected: {e}"),
                }
            }
            ok
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    let (ended, revoked) = store
        .end_run_and_revoke(run.id, RunState::Cancelled, "test")
        .await
        .unwrap();
    assert_eq!(ended.state, RunState::Cancelled);
    let mut minted = 0;
    for m in minters {
        minted += m.await.unwrap();
    }
    assert!(minted > 0, "the minters ran");
    assert_eq!(
        revoked.count as u64, minted,
        "every token acknowledged before the end was revoked by it"
    );
    let live = store
        .list_tokens(
            TokenFilter {
                run_id: Some(run.id),
                status: Some(TokenStatus::Active),
                limit: 1000,
                ..TokenFilter::default()
            },
            now_ms(),
        )
        .await
        .unwrap();
    assert!(live.is_empty(), "{} tokens outlived their run", live.len());
    assert!(store.verify_audit().await.unwrap().is_ok());
}

async fn a_reopened_store_has_the_same_registry_and_chain(place: Place) {
    {
        let store = place.open().await;
        store
            .create_owner(
                NewOwner {
                    name: "alice".into(),
                    email: "a@acme.io".into(),
                    kind: OwnerKind::Team,
                    business_owner: false,
                },
                "test",
            )
            .await
            .unwrap();
        store
            .offboard_owner_and_revoke("alice", "test")
            .await
            .unwrap();
    }
    let store = place.open().await;
    let owner = store
        .registry()
        .read()
        .owner_by_name("alice")
        .cloned()
        .unwrap();
    assert_eq!(owner.status, leash_core::OwnerStatus::Offboarded);
    assert_eq!(owner.kind, OwnerKind::Team);
    let summary = store.verify_audit().await.unwrap().unwrap();
    assert_eq!(summary.events, 2);
    // the chain continues from the stored head
    store
        .create_owner(
            NewOwner {
                name: "bob".into(),
                email: "b@acme.io".into(),
                kind: OwnerKind::Person,
                business_owner: true,
            },
            "test",
        )
        .await
        .unwrap();
    assert_eq!(store.verify_audit().await.unwrap().unwrap().events, 3);
}

fn exposure(fingerprint: &str, location: &str, token: Option<&str>) -> NewExposure {
    NewExposure {
        source: ExposureSource::Chat,
        location: location.into(),
        detector: "leash-opaque".into(),
        excerpt: "lsh_…(42 chars)".into(),
        fingerprint: fingerprint.into(),
        token_id: token.map(str::to_owned),
        detected_at: now_ms(),
    }
}

async fn an_exposed_token_is_revoked_with_its_descendants_once(place: Place) {
    let store = place.open().await;
    let (owner, wl, wf, run) = registry(&*store).await;
    store
        .record_mint(plan("tok_a".into(), owner.id, wl.id, run.id, wf.id), "t")
        .await
        .unwrap();
    let mut child = plan("tok_b".into(), owner.id, wl.id, run.id, wf.id);
    child.token.parent_id = Some("tok_a".into());
    child.token.depth = 1;
    child.token.expires_at -= 5_000;
    child.request.ttl_secs = 590;
    store.record_mint(child, "t").await.unwrap();
    let events = store.verify_audit().await.unwrap().unwrap().events;

    let fp = "ab".repeat(32);
    let rec = store
        .record_exposure_and_revoke(exposure(&fp, "slack:T1/C1/1.2", Some("tok_a")), "feed")
        .await
        .unwrap();
    assert!(!rec.repeat);
    assert_eq!(rec.exposure.action, ExposureAction::Revoked);
    assert_eq!((rec.revoked.count, rec.revoked.cascaded), (2, 1));
    assert!(rec.exposure.revocation_latency_ms().unwrap() >= 0);
    let finding = rec.finding.unwrap();
    assert_eq!(finding.owner_id, Some(owner.id));
    assert_eq!(finding.evidence["exposure"], rec.exposure.id);
    for id in ["tok_a", "tok_b"] {
        let t = store.get_token(id).await.unwrap();
        assert_eq!(t.status(now_ms()), TokenStatus::Revoked, "{id}");
    }
    let a = store.get_token("tok_a").await.unwrap().revocation.unwrap();
    assert_eq!(a.trigger, leash_core::RevocationTrigger::Exposure);
    assert_eq!(a.event, rec.exposure.event);
    assert!(a.reason.contains("slack:T1/C1/1.2"), "{}", a.reason);
    // exposure event + the descendant's revocation event
    let after = store.verify_audit().await.unwrap().unwrap().events;
    assert_eq!(after, events + 2);

    // the same report again (a webhook retry): nothing new
    let again = store
        .record_exposure_and_revoke(exposure(&fp, "slack:T1/C1/1.2", Some("tok_a")), "feed")
        .await
        .unwrap();
    assert!(again.repeat);
    assert_eq!(again.exposure.id, rec.exposure.id);
    assert_eq!(store.verify_audit().await.unwrap().unwrap().events, after);

    // seen somewhere else later: recorded, nothing left to revoke
    let elsewhere = store
        .record_exposure_and_revoke(exposure(&fp, "jira:SUP-1", Some("tok_a")), "feed")
        .await
        .unwrap();
    assert_eq!(elsewhere.exposure.action, ExposureAction::AlreadyInactive);
    assert_eq!(elsewhere.revoked.count, 0);
    assert_eq!(store.list_exposures(None, 10).await.unwrap().len(), 2);
}

async fn a_third_party_secret_matches_its_tracked_owner_and_users(place: Place) {
    let store = place.open().await;
    let (owner, wl, wf, _) = registry(&*store).await;
    let fp = "cd".repeat(32);
    let ext = store
        .create_external_token(
            NewExternalToken {
                name: "ci-github-pat".into(),
                kind: "github-pat".into(),
                owner: Some("alice".into()),
                fingerprint: fp.clone(),
                workloads: vec!["bot".into()],
                workflows: vec!["wf".into()],
                scopes: vec!["repo".into()],
                stored_in: Some("vault:ci/github".into()),
                connector: None,
            },
            "t",
        )
        .await
        .unwrap();
    assert_eq!(
        (ext.workloads.clone(), ext.workflows.clone()),
        (vec![wl.id], vec![wf.id])
    );
    // the same secret cannot be tracked twice under another name
    let mut dup = NewExternalToken {
        name: "other".into(),
        kind: "github-pat".into(),
        owner: None,
        fingerprint: fp.clone(),
        workloads: vec![],
        workflows: vec![],
        scopes: vec![],
        stored_in: None,
        connector: None,
    };
    let err = store
        .create_external_token(dup.clone(), "t")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("ci-github-pat"), "{err}");
    dup.fingerprint = "not-hex".into();
    let err = store.create_external_token(dup, "t").await.unwrap_err();
    assert!(err.to_string().contains("64 lowercase hex"), "{err}");

    let mut e = exposure(&fp, "src/ci.yml:3", None);
    e.source = ExposureSource::Code;
    e.detector = "github-pat".into();
    let rec = store.record_exposure_and_revoke(e, "scan").await.unwrap();
    assert_eq!(rec.exposure.action, ExposureAction::MatchedExternal);
    assert_eq!(rec.external.unwrap().id, ext.id);
    let f = rec.finding.unwrap();
    assert_eq!(f.owner_id, Some(owner.id));
    assert_eq!(f.severity, leash_core::Severity::Critical);

    let rec = store
        .record_exposure_and_revoke(exposure(&"ef".repeat(32), "src/x.py:1", None), "scan")
        .await
        .unwrap();
    assert_eq!(rec.exposure.action, ExposureAction::Unmatched);
    assert_eq!(rec.finding.unwrap().owner_id, None);
    let open = store
        .list_findings(Some(leash_core::FindingStatus::Open), None, 10)
        .await
        .unwrap();
    assert_eq!(open.len(), 2);
    let acked = store
        .set_finding_status(
            open[0].id,
            leash_core::FindingStatus::Acknowledged,
            "on it".into(),
            "t",
        )
        .await
        .unwrap();
    assert_eq!(acked.status, leash_core::FindingStatus::Acknowledged);
    assert!(store.verify_audit().await.unwrap().is_ok());
}

async fn a_revocation_is_in_the_revocation_set_when_acknowledged_and_after_a_reopen(place: Place) {
    {
        let store = place.open().await;
        let (owner, wl, wf, run) = registry(&*store).await;
        store
            .record_mint(plan("tok_a".into(), owner.id, wl.id, run.id, wf.id), "t")
            .await
            .unwrap();
        let mut child = plan("tok_b".into(), owner.id, wl.id, run.id, wf.id);
        child.token.parent_id = Some("tok_a".into());
        child.token.depth = 1;
        child.token.expires_at -= 5_000;
        child.request.ttl_secs = 590;
        store.record_mint(child, "t").await.unwrap();
        assert!(store.revocations().is_empty());
        let mut feed = store.commits().subscribe_revocations();
        let done = store
            .revoke_token("tok_a", "stolen".into(), "t")
            .await
            .unwrap();
        // the feed carried the batch before the acknowledgement, in audit order
        let batch = feed.try_recv().unwrap();
        let ids: Vec<&str> = batch.iter().map(|r| r.token_id.as_str()).collect();
        assert_eq!(ids, ["tok_a", "tok_b"]);
        assert_eq!(batch[0].seq, done.event.unwrap());
        assert!(batch[1].seq > batch[0].seq);
        assert_eq!(store.commits().head_seq(), batch[1].seq);
        // and the durable feed resumes after any sequence number
        let all = store.revocations_after(0, 100).await.unwrap();
        assert_eq!(all, batch.to_vec());
        let rest = store.revocations_after(batch[0].seq, 100).await.unwrap();
        assert_eq!(rest, batch[1..].to_vec());
        assert_eq!(store.revocations_after(0, 1).await.unwrap().len(), 1);
        // no waiting: the acknowledgement implies the set holds both
        let a = store.revocations().get("tok_a").unwrap();
        assert_eq!(a.trigger, RevocationTrigger::Manual);
        assert_eq!(a.reason, "stolen");
        let b = store.revocations().get("tok_b").unwrap();
        assert_eq!(b.trigger, RevocationTrigger::ParentRevoked);
    }
    let store = place.open().await;
    assert_eq!(store.revocations().len(), 2);
    assert!(store.revocations().contains("tok_b"));
    // pruned once the tokens would have expired anyway
    assert_eq!(store.revocations().prune(now_ms() + 3_600_000), 2);
}

async fn a_violation_opens_one_finding_and_revokes_when_asked(place: Place) {
    let store = place.open().await;
    let (owner, wl, wf, run) = registry(&*store).await;
    store
        .record_mint(plan("tok_v".into(), owner.id, wl.id, run.id, wf.id), "t")
        .await
        .unwrap();
    let v = |revoke| leash_store::NewViolation {
        token_id: "tok_v".into(),
        class: leash_core::ViolationClass::UndeclaredTool,
        detail: "used from curl".into(),
        evidence: serde_json::json!({"tool": "curl"}),
        revoke,
    };
    let first = store
        .record_violation_and_revoke(v(false), "t")
        .await
        .unwrap();
    assert!(!first.repeat);
    assert_eq!(first.finding.kind, "violation.undeclared_tool");
    assert_eq!(first.revoked.count, 0);
    let again = store
        .record_violation_and_revoke(v(true), "t")
        .await
        .unwrap();
    assert!(again.repeat);
    assert_eq!(again.finding.id, first.finding.id);
    assert_eq!(again.revoked.count, 1);
    assert_eq!(
        store.revocations().get("tok_v").unwrap().trigger,
        RevocationTrigger::PolicyViolation
    );
}

async fn tokens_page_in_byte_order_of_their_ids(place: Place) {
    let store = place.open().await;
    let (owner, wl, wf, run) = registry(&*store).await;
    // byte order: `B` (0x42) < `_` (0x5f) < `a` (0x61); a locale's order differs
    for id in ["tok_a", "tok_B", "tok__", "tok_aa"] {
        store
            .record_mint(plan(id.into(), owner.id, wl.id, run.id, wf.id), "t")
            .await
            .unwrap();
    }
    let page = |after: Option<&str>| TokenFilter {
        after: after.map(str::to_owned),
        limit: 2,
        ..TokenFilter::default()
    };
    let ids = |v: Vec<Token>| v.into_iter().map(|t| t.id).collect::<Vec<_>>();
    let first = ids(store.list_tokens(page(None), now_ms()).await.unwrap());
    assert_eq!(first, ["tok_B", "tok__"]);
    let second = ids(store
        .list_tokens(page(Some("tok__")), now_ms())
        .await
        .unwrap());
    assert_eq!(second, ["tok_a", "tok_aa"]);
    assert!(
        store
            .list_tokens(page(Some("tok_aa")), now_ms())
            .await
            .unwrap()
            .is_empty()
    );
}

/// Two processes sharing one PostgreSQL database (two stores here): their
/// writes serialize on the writer lock and extend one chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_sharing_a_postgres_database_extend_one_chain() {
    let Some(db) = pg::PgDatabase::create().await else {
        return;
    };
    let place = Place::Postgres(db);
    let (a, b) = (place.open().await, place.open().await);
    let mut writers = Vec::new();
    for (n, store) in [a.clone(), b.clone()].into_iter().enumerate() {
        writers.push(tokio::spawn(async move {
            for i in 0..25 {
                store
                    .record_event(
                        "test.ping",
                        &format!("p{n}-{i}"),
                        serde_json::json!({}),
                        "t",
                    )
                    .await
                    .unwrap();
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    for store in [&a, &b] {
        assert_eq!(store.verify_audit().await.unwrap().unwrap().events, 50);
    }
    // each store's own view of the head moved with the other's writes
    let seq = b
        .record_event("test.ping", "last", serde_json::json!({}), "t")
        .await
        .unwrap();
    assert_eq!(seq, 51);
}

/// Wait (bounded) until `cond` holds for `store`, waking its catch-up.
async fn eventually(store: &dyn Store, what: &str, cond: impl Fn(&dyn Store) -> bool) {
    for _ in 0..100 {
        if cond(store) {
            return;
        }
        store.commits().wake();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("the other replica never saw {what}");
}

/// Replicas on one PostgreSQL database: what one commits (a revocation, a
/// run ended, a new workload) reaches the other's revocation set, feed and
/// registry by catching up, and the other decides its next write against
/// it (a mint for the ended run is refused) without any wake-up at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_sees_the_other_replicas_commits() {
    let Some(db) = pg::PgDatabase::create().await else {
        return;
    };
    let place = Place::Postgres(db);
    let (a, b) = (place.open().await, place.open().await);
    let (owner, wl, wf, run) = registry(&*a).await;
    let mut b_feed = b.commits().subscribe_revocations();
    let id = "tok_replica_1".to_owned();
    a.record_mint(plan(id.clone(), owner.id, wl.id, run.id, wf.id), "t")
        .await
        .unwrap();
    eventually(&*b, "the run", |s| {
        s.registry().read().running_run(run.id).is_some()
    })
    .await;
    a.revoke_token(&id, "leaked".into(), "t").await.unwrap();
    eventually(&*b, "the revocation", |s| s.revocations().contains(&id)).await;
    let records = b_feed.recv().await.unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].token_id, id);
    assert_eq!(records[0].revocation.reason, "leaked");
    assert_eq!(b.commits().head_seq(), a.commits().head_seq());
    assert!(b.commits().synced_at().is_some_and(|t| t > 0));
    assert_eq!(b.commits().sync_error(), None);

    // the run ends on A; B's very next mint catches up under the lock first
    a.end_run_and_revoke(run.id, RunState::Succeeded, "t")
        .await
        .unwrap();
    let refused = b
        .record_mint(
            plan("tok_replica_2".into(), owner.id, wl.id, run.id, wf.id),
            "t",
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, StoreError::Refused(r) if r.rule() == "run_running"),
        "{refused}"
    );
}

/// One decision as the raw log keeps it, and as an aggregate of two.
fn usage(token: &str, action: &str, allowed: bool, at: i64) -> (UsageTotal, UsageRecord) {
    let r = UsageRecord {
        at,
        token_id: token.into(),
        workload: "bot".into(),
        action: action.into(),
        resource: "tickets:T-1".into(),
        tool: "jira".into(),
        allowed,
        reason: if allowed { "permit:scope" } else { "forbid:x" }.into(),
    };
    let total = UsageTotal {
        token_id: r.token_id.clone(),
        workload: r.workload.clone(),
        action: r.action.clone(),
        resource: r.resource.clone(),
        tool: r.tool.clone(),
        allowed,
        count: 2,
        first_at: at,
        last_at: at + 10,
    };
    (total, r)
}

fn imported(line: usize, name: &str, owner: Option<&str>, fp: &str) -> ImportedCredential {
    ImportedCredential {
        line,
        name: name.into(),
        credential_kind: "api_key".into(),
        provider: "github".into(),
        owner: owner.map(str::to_owned),
        scopes: vec!["repo".into()],
        issued_at: Some(1_000),
        last_used_at: None,
        expires_at: None,
        stored_in: Some("vault:ci".into()),
        fingerprint: fp.into(),
        key_id: None,
        workloads: vec!["bot".into()],
    }
}

/// Every operation once, each read back: the statements of both dialects
/// run and return the same values.
async fn every_operation_reads_back_what_it_wrote(place: Place) {
    let store = place.open().await;
    let (alice, wl, wf, run) = registry(&*store).await;
    let now = now_ms();

    // federation and clients (kept in the registry across a reopen)
    store
        .create_issuer(
            NewIssuer {
                name: "gha".into(),
                issuer: "https://token.actions.githubusercontent.com".into(),
                jwks_url: Some(
                    "https://token.actions.githubusercontent.com/.well-known/jwks".into(),
                ),
                jwks: None,
                audience: "leash".into(),
            },
            "t",
        )
        .await
        .unwrap();
    let claims = BTreeMap::from([("sub".to_owned(), "repo:acme/*".to_owned())]);
    store
        .add_identity_rule("bot", "gha", claims.clone(), "t")
        .await
        .unwrap();
    store
        .create_client(
            NewClient {
                id: "bot-client".into(),
                workload: "bot".into(),
                secret_hash: Some([3; 32]),
                jwks: None,
                can_introspect: true,
            },
            "t",
        )
        .await
        .unwrap();

    // a token with a secret, found by its hash
    let mut p = plan("tok_1".into(), alice.id, wl.id, run.id, wf.id);
    p.secret_hash = Some([1; 32]);
    store.record_mint(p, "t").await.unwrap();
    assert_eq!(
        store.find_token_by_secret_hash([1; 32]).await.unwrap().id,
        "tok_1"
    );
    assert!(matches!(
        store.find_token_by_secret_hash([2; 32]).await,
        Err(StoreError::NotFound { .. })
    ));

    // usage: aggregates add up, the raw log keeps its newest rows
    let (t1, l1) = usage("tok_1", "read", true, now);
    let (t2, l2) = usage("tok_1", "write", false, now + 5);
    store
        .record_usage(vec![t1.clone(), t2], vec![l1.clone(), l2], 10)
        .await
        .unwrap();
    let (mut t3, l3) = usage("tok_1", "read", true, now - 100);
    t3.last_at = now + 50;
    store.record_usage(vec![t3], vec![l3], 2).await.unwrap();
    let used = store.token_usage("tok_1", 10).await.unwrap();
    let read = used.totals.iter().find(|t| t.action == "read").unwrap();
    assert_eq!(
        (read.count, read.first_at, read.last_at),
        (4, now - 100, now + 50)
    );
    assert_eq!(used.totals.len(), 2);
    assert_eq!(used.recent.len(), 2, "pruned to the newest two");
    assert_eq!(used.recent[0].at, now - 100, "newest first");
    let counts = store.token_counts(now_ms()).await.unwrap();
    assert_eq!((counts.active, counts.revoked, counts.expired), (1, 0, 0));

    // delegates, owner credentials, approvals claimed by a mint once
    store
        .create_owner(
            NewOwner {
                name: "bob".into(),
                email: "b@acme.io".into(),
                kind: OwnerKind::Person,
                business_owner: false,
            },
            "t",
        )
        .await
        .unwrap();
    store.add_delegate("alice", "bob", "t").await.unwrap();
    store.add_delegate("alice", "bob", "t").await.unwrap();
    assert_eq!(store.delegates_of(alice.id).await.unwrap(), ["bob"]);
    store
        .create_owner_credential("bob", [9; 32], "t")
        .await
        .unwrap();
    assert_eq!(
        store.owner_by_credential([9; 32]).await.unwrap().name,
        "bob"
    );
    let asked = store
        .create_approval(
            NewApproval {
                kind: ApprovalKind::Mint,
                workload: "bot".into(),
                request: serde_json::json!({"scopes": ["tickets:read"]}),
                justification: "triage".into(),
            },
            "bot",
        )
        .await
        .unwrap();
    let decided = store
        .decide_approval(asked.id, true, "bob", "ok".into(), "bob")
        .await
        .unwrap();
    assert_eq!(decided.status, ApprovalStatus::Approved);
    let listed = store
        .list_approvals(Some(ApprovalStatus::Approved), None, 10)
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    let mut p = plan("tok_2".into(), alice.id, wl.id, run.id, wf.id);
    p.approval = Some(asked.id);
    store.record_mint(p.clone(), "t").await.unwrap();
    let issued = store.get_approval(asked.id).await.unwrap();
    assert_eq!(
        (issued.status, issued.token_id.as_deref()),
        (ApprovalStatus::Issued, Some("tok_2"))
    );
    p.token.id = "tok_3".into();
    assert!(matches!(
        store.record_mint(p, "t").await,
        Err(StoreError::Conflict(_))
    ));

    // a break-glass grant ends revoked at its TTL
    let mut bg = plan("tok_bg".into(), alice.id, wl.id, run.id, wf.id);
    bg.token.run_id = None;
    bg.token.workflow_id = None;
    bg.token.break_glass = true;
    bg.token.justification = Some("incident 7".into());
    bg.request.justification = Some("incident 7".into());
    store.record_mint(bg, "t").await.unwrap();
    let due = store
        .revoke_due_break_glass(now_ms() + 3_600_000)
        .await
        .unwrap();
    assert_eq!(
        (due.count, due.tokens.clone()),
        (1, vec!["tok_bg".to_owned()])
    );
    assert_eq!(
        store.revocations().get("tok_bg").unwrap().trigger,
        RevocationTrigger::Expiry
    );

    // an inventory import, then the same again with newer facts
    let records = vec![
        imported(1, "gh-ci", Some("alice"), &"aa".repeat(32)),
        imported(2, "gh-orphan", None, &"bb".repeat(32)),
    ];
    let first = store
        .import_external(records.clone(), "github.json".into(), "t")
        .await
        .unwrap();
    assert_eq!((first.created, first.updated, first.unowned), (2, 0, 1));
    assert_eq!(first.findings.len(), 1);
    let mut again = records;
    again[0].last_used_at = Some(5_000);
    let second = store
        .import_external(again, "github.json".into(), "t")
        .await
        .unwrap();
    assert_eq!((second.created, second.updated), (0, 2));
    assert!(second.findings.is_empty(), "the open finding stands");
    let ci = store.external_token_by_name("gh-ci").await.unwrap();
    assert_eq!(ci.last_used_at, Some(5_000));
    assert_eq!(ci.workloads, [wl.id]);
    assert_eq!(store.list_external_tokens(0, 10).await.unwrap().len(), 2);
    // a refused import leaves nothing behind: its new first record is not
    // kept when a later record clashes with what is tracked (gh-ci's
    // fingerprint under another name) or with an earlier record of the
    // same import (one name, two fingerprints); no event is appended
    let head = store.latest_events(1).await.unwrap()[0].seq;
    for clash in [
        imported(2, "gh-renamed", None, &"aa".repeat(32)),
        imported(2, "gh-new", None, &"dd".repeat(32)),
    ] {
        let fresh = imported(1, "gh-new", None, &"cc".repeat(32));
        let refused = store
            .import_external(vec![fresh, clash], "bad.json".into(), "t")
            .await;
        assert!(
            matches!(&refused, Err(StoreError::Conflict(m)) if m.starts_with("line 2:")),
            "{refused:?}"
        );
        assert_eq!(store.list_external_tokens(0, 10).await.unwrap().len(), 2);
        assert!(matches!(
            store.external_token_by_name("gh-new").await,
            Err(StoreError::NotFound { .. })
        ));
    }
    assert_eq!(store.latest_events(1).await.unwrap()[0].seq, head);
    let revoked = store
        .set_external_status(ci.id, ExternalStatus::Revoked, "rotated".into(), "t")
        .await
        .unwrap();
    assert!(revoked.revoked_at.is_some());

    // usage from logs, with findings opened then refreshed
    let finding = |n: u32| NewFinding {
        kind: "unexpected_path".into(),
        severity: Severity::Medium,
        subject: "tok_1".into(),
        owner_id: Some(alice.id),
        summary: format!("seen {n}"),
        evidence: serde_json::json!({"items": [n]}),
    };
    let batch = |n: u32| ReviewBatch {
        totals: vec![usage("tok_1", "read", true, now).0],
        runs: vec![UsageRunTotal {
            token_id: "tok_1".into(),
            run: run.id.to_string(),
            step: "fetch".into(),
            action: "read".into(),
            resource: "tickets:T-1".into(),
            count: 1,
            first_at: now,
            last_at: now,
        }],
        last_used: vec![(ci.id, 9_000)],
        source: Some(SourceCounts {
            source: "log".into(),
            events: 3,
            unknown_refs: 1,
            skipped: 0,
        }),
        findings: vec![finding(n)],
    };
    let opened = store.record_review(batch(1), "t").await.unwrap();
    assert_eq!((opened.opened.len(), opened.refreshed.len()), (1, 0));
    let refreshed = store.record_review(batch(2), "t").await.unwrap();
    assert_eq!(refreshed.refreshed, opened.opened);
    let f = store.get_finding(opened.opened[0]).await.unwrap();
    assert_eq!(f.evidence["items"], serde_json::json!([1, 2]));
    assert_eq!(
        store
            .external_token_by_name("gh-ci")
            .await
            .unwrap()
            .last_used_at,
        Some(9_000)
    );
    let by_kind = store.finding_counts().await.unwrap();
    assert!(by_kind.contains(&("unexpected_path".into(), "open".into(), 1)));
    assert!(by_kind.contains(&("shadow_ownership".into(), "open".into(), 1)));

    // removal tests
    let mut rt = RemovalTest {
        id: 0,
        target_kind: "scope".into(),
        target: "tickets:read".into(),
        workflow_id: Some(wf.id),
        workload_id: Some(wl.id),
        scopes: vec!["tickets:read".into()],
        verdict: "unknown".into(),
        evidence: serde_json::json!({}),
        canary: "none".into(),
        canary_run: None,
        canary_denied: 0,
        digest: Some(wf.digest.clone()),
        created_at: 0,
        updated_at: 0,
    };
    rt = store.save_removal_test(rt, "t").await.unwrap();
    rt.verdict = "needed".into();
    rt.canary_denied = 2;
    let saved = store.save_removal_test(rt.clone(), "t").await.unwrap();
    assert_eq!((saved.id, saved.canary_denied), (rt.id, 2));
    assert_eq!(
        store.get_removal_test(rt.id).await.unwrap().verdict,
        "needed"
    );
    assert_eq!(
        store.list_removal_tests(Some(wf.id)).await.unwrap().len(),
        1
    );

    // a new definition revokes the run's tokens; the ended run shows its uses
    let (_, stale) = store
        .update_workflow_and_revoke("wf", "cd".repeat(32), None, "t")
        .await
        .unwrap();
    assert_eq!(stale.count, 2, "tok_1 and tok_2");
    assert_eq!(stale.trigger, Some(RevocationTrigger::WorkflowChanged));
    store
        .end_run_and_revoke(run.id, RunState::Succeeded, "t")
        .await
        .unwrap();
    // one batch naming the workload two ways (name and identity) lands on
    // one per-run row
    let (a, _) = usage("tok_1", "read", true, now + 100);
    let mut b = a.clone();
    b.workload = "spiffe://acme/bot".into();
    store.record_usage(vec![a, b], vec![], 10).await.unwrap();
    let runs = store.runs_usage(wf.id, None, 5).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].tokens.len(), 2);
    assert!(runs[0].uses.iter().any(|u| u.step == "fetch"));
    let decided: Vec<_> = runs[0]
        .uses
        .iter()
        .filter(|u| u.step == "jira" && u.action == "read")
        .collect();
    assert_eq!(decided.len(), 1, "{decided:?}");
    assert_eq!(
        (decided[0].count, decided[0].first_at, decided[0].last_at),
        (8, now - 100, now + 110),
        "allowed decisions per run add up; denials are not uses"
    );
    assert_eq!(store.list_runs(Some(wf.id), 10).await.unwrap().len(), 1);

    // the report's counts and the sweep over the registry
    let settings = ReviewSettings::default();
    let n = store.report_numbers(settings, now_ms()).await.unwrap();
    assert_eq!((n.leash_total, n.leash_live), (3, 0));
    assert_eq!((n.external_total, n.external_active), (2, 1));
    assert_eq!(
        (n.decisions, n.denied, n.log_events, n.unknown_refs),
        (10, 2, 6, 2)
    );
    assert_eq!(
        (
            n.break_glass_total,
            n.break_glass_live,
            n.break_glass_overdue
        ),
        (1, 0, 0)
    );
    let (found, chains) = store.review_sweep(settings, now_ms()).await.unwrap();
    assert!(chains.is_empty());
    assert!(
        found
            .iter()
            .any(|f| f.kind == "shadow_ownership" && f.subject == "external:gh-orphan"),
        "{found:?}"
    );

    // the audit log reads the same every way
    let all = store.events_after(0, 10_000).await.unwrap();
    let summary = store.verify_audit().await.unwrap().unwrap();
    assert_eq!(all.len() as u64, summary.events);
    let latest = store.latest_events(2).await.unwrap();
    assert_eq!(latest.last().unwrap().seq, summary.head_seq);
    assert_eq!(store.get_event(1).await.unwrap().kind, "owner.created");

    // offboarding revokes what is left; a reopen sees all of it
    let (_, gone) = store.offboard_owner_and_revoke("alice", "t").await.unwrap();
    assert_eq!(gone.count, 0, "nothing live was left");
    drop(store);
    let store = place.open().await;
    {
        let reg = store.registry().read();
        let issuer = reg.issuer_by_name("gha").unwrap();
        assert_eq!(reg.rules_of(issuer.id).next().unwrap().claims, claims);
        let client = reg.client("bot-client").unwrap();
        assert_eq!(
            (client.secret_hash, client.can_introspect),
            (Some([3; 32]), true)
        );
        assert_eq!(
            reg.owner_by_name("alice").unwrap().status,
            leash_core::OwnerStatus::Offboarded
        );
        assert!(reg.running_run(run.id).is_none());
    }
    assert!(store.revocations().contains("tok_1"));
    assert!(store.verify_audit().await.unwrap().is_ok());
}

/// A `postgres` token's credential is recorded with it, becomes due for
/// dropping when the token is revoked (or expires), and a drop that keeps
/// failing turns `drop_failed` once, audited and with a finding, until a
/// later attempt drops it.
async fn a_database_credential_is_due_once_its_token_ends_and_failures_open_a_finding(
    place: Place,
) {
    use leash_core::CredentialStatus;
    use leash_store::{DropAttempt, NewCredential};
    let store = place.open().await;
    let (owner, wl, wf, run) = registry(&*store).await;
    let mut p = plan("tok_pg1".into(), owner.id, wl.id, run.id, wf.id);
    p.token.format = TokenFormat::Postgres;
    p.credential = Some(NewCredential {
        role: "leash_abc".into(),
        database: "shop".into(),
        password_hash: [7; 32],
    });
    store.record_mint(p, "test").await.unwrap();
    // a credential on a token of another format is refused
    let mut jwt = plan("tok_jwt".into(), owner.id, wl.id, run.id, wf.id);
    jwt.credential = Some(NewCredential {
        role: "leash_def".into(),
        database: "shop".into(),
        password_hash: [8; 32],
    });
    assert!(matches!(
        store.record_mint(jwt, "test").await,
        Err(StoreError::Conflict(_))
    ));
    let c = store.get_credential("tok_pg1").await.unwrap().unwrap();
    assert_eq!(
        (c.role.as_str(), c.status, c.password_hash),
        ("leash_abc", CredentialStatus::Active, [7; 32])
    );
    assert!(store.get_credential("tok_jwt").await.unwrap().is_none());
    // live token: nothing due
    let now = now_ms();
    assert!(store.credentials_due(now, 10).await.unwrap().is_empty());
    store
        .revoke_token("tok_pg1", "done".into(), "test")
        .await
        .unwrap();
    let due = store.credentials_due(now_ms(), 10).await.unwrap();
    assert_eq!(due.len(), 1);

    let fail = |n: i64| DropAttempt::Failed {
        error: "role cannot be dropped".into(),
        next_attempt_at: now_ms() + n,
        fail_after: 2,
    };
    let events = store.latest_events(1).await.unwrap()[0].seq;
    let c = store
        .record_credential_drop("tok_pg1", fail(60_000), "test")
        .await
        .unwrap();
    assert_eq!((c.status, c.attempts), (CredentialStatus::Active, 1));
    // not due again before its next attempt
    assert!(
        store
            .credentials_due(now_ms(), 10)
            .await
            .unwrap()
            .is_empty()
    );
    let c = store
        .record_credential_drop("tok_pg1", fail(0), "test")
        .await
        .unwrap();
    assert_eq!((c.status, c.attempts), (CredentialStatus::DropFailed, 2));
    let finding = store.get_finding(c.finding_id.unwrap()).await.unwrap();
    assert_eq!(finding.kind, leash_store::DROP_FAILED_FINDING);
    assert_eq!(finding.subject, "tok_pg1");
    assert_eq!(finding.owner_id, Some(owner.id));
    let c = store
        .record_credential_drop("tok_pg1", fail(0), "test")
        .await
        .unwrap();
    assert_eq!((c.status, c.attempts), (CredentialStatus::DropFailed, 3));
    assert_eq!(
        c.finding_id,
        Some(finding.id),
        "one finding, not one per attempt"
    );
    let c = store
        .record_credential_drop(
            "tok_pg1",
            DropAttempt::Dropped {
                sessions_ended: 1,
                already_gone: false,
            },
            "test",
        )
        .await
        .unwrap();
    assert_eq!(c.status, CredentialStatus::Dropped);
    assert!(c.dropped_at.is_some() && c.last_error.is_none());
    assert!(
        store
            .credentials_due(now_ms(), 10)
            .await
            .unwrap()
            .is_empty()
    );
    let kinds: Vec<String> = store
        .events_after(events, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds, ["credential.drop_failed", "credential.dropped"]);
    let listed = store
        .list_credentials(Some(CredentialStatus::Dropped), None, 10)
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    // durable: a reopened store reads the same row
    drop(store);
    let store = place.open().await;
    let again = store.get_credential("tok_pg1").await.unwrap().unwrap();
    assert_eq!(again, c);
}

fn ssf_set(seq: i64, jti: &str) -> leash_store::NewSet {
    leash_store::NewSet {
        seq,
        event_type: "https://schemas.openid.net/secevent/caep/event-type/session-revoked".into(),
        jti: jti.into(),
        set: format!("signed.{jti}.set"),
    }
}

/// SSF streams: a stream carries revocations after its creation; queuing
/// moves its cursor in the same transaction (once: a stale cursor queues
/// nothing), the cursor and the outbox survive a reopen, a claimed push is
/// leased until it runs out, and pausing holds while disabling drops.
async fn ssf_outbox_resumes_from_a_durable_cursor_and_leases_each_push(place: Place) {
    use leash_store::{
        NewSsfStream, SetError, SsfAdvance, SsfConfig, SsfMethod, SsfOutcome, SsfStatus,
    };
    let config = |method| SsfConfig {
        events_requested: vec![
            "https://schemas.openid.net/secevent/caep/event-type/session-revoked".into(),
        ],
        method,
        endpoint_url: (method == SsfMethod::Push).then(|| "https://rx.example/events".into()),
        authorization_header: (method == SsfMethod::Push).then(|| "Bearer rx-secret".into()),
        description: Some("test".into()),
    };
    let (push, _, seq) = {
        let store = place.open().await;
        let (owner, wl, wf, run) = registry(&*store).await;
        store
            .record_mint(plan("tok_ssf1".into(), owner.id, wl.id, run.id, wf.id), "t")
            .await
            .unwrap();
        let push = store
            .create_ssf_stream(
                NewSsfStream {
                    stream_id: "s-push".into(),
                    client_id: Some("rx".into()),
                    aud: "rx".into(),
                    config: config(SsfMethod::Push),
                },
                "t",
            )
            .await
            .unwrap();
        let poll = store
            .create_ssf_stream(
                NewSsfStream {
                    stream_id: "s-poll".into(),
                    client_id: Some("rx".into()),
                    aud: "rx".into(),
                    config: config(SsfMethod::Poll),
                },
                "t",
            )
            .await
            .unwrap();
        assert_eq!(push.status, SsfStatus::Enabled);
        assert_eq!(
            push.authorization_header.as_deref(),
            Some("Bearer rx-secret")
        );
        // a poll stream takes no authorization header
        let mut bad = config(SsfMethod::Poll);
        bad.authorization_header = Some("x".into());
        let err = store
            .create_ssf_stream(
                NewSsfStream {
                    stream_id: "s-bad".into(),
                    client_id: None,
                    aud: "x".into(),
                    config: bad,
                },
                "t",
            )
            .await
            .unwrap_err();
        assert!(err.to_string().contains("push delivery only"), "{err}");

        store
            .revoke_token("tok_ssf1", "leaked".into(), "t")
            .await
            .unwrap();
        let recs = store.revocations_after(push.cursor, 10).await.unwrap();
        assert_eq!(recs.len(), 1);
        let seq = recs[0].seq;
        let advance = |s: &leash_store::SsfStream, jti: &str| SsfAdvance {
            stream_id: s.stream_id.clone(),
            from: s.cursor,
            to: seq,
            sets: vec![ssf_set(seq, jti)],
        };
        let queued = store
            .queue_ssf_sets(vec![advance(&push, "j-push"), advance(&poll, "j-poll")])
            .await
            .unwrap();
        assert_eq!(queued, 2);
        // the same advance again (another replica, a retry) queues nothing
        let again = store
            .queue_ssf_sets(vec![advance(&push, "j-push-2")])
            .await
            .unwrap();
        assert_eq!(again, 0);
        // SETs outside (from, to] are refused
        let mut wrong = advance(&push, "j-x");
        wrong.from = seq;
        wrong.to = seq + 5;
        assert!(store.queue_ssf_sets(vec![wrong]).await.is_err());
        (push, poll, seq)
    };
    // reopened: the cursor and the outbox are where the commit left them
    let store = place.open().await;
    assert_eq!(store.get_ssf_stream("s-push").await.unwrap().cursor, seq);
    assert_eq!(
        store.pending_ssf_sets("s-push", 10).await.unwrap(),
        vec![("j-push".to_owned(), "signed.j-push.set".to_owned())]
    );
    let now = now_ms();
    let claimed = store.claim_ssf_push(now, 60_000, 10).await.unwrap();
    assert_eq!(claimed.len(), 1, "only the push stream's SET is pushed");
    assert_eq!(claimed[0].jti, "j-push");
    assert_eq!(claimed[0].endpoint_url, "https://rx.example/events");
    assert_eq!(
        claimed[0].authorization_header.as_deref(),
        Some("Bearer rx-secret")
    );
    // leased: nobody else gets it until the lease runs out
    assert!(
        store
            .claim_ssf_push(now, 60_000, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let reclaimed = store
        .claim_ssf_push(now + 61_000, 60_000, 10)
        .await
        .unwrap();
    assert_eq!(reclaimed.len(), 1);
    store
        .record_ssf_push(
            "j-push",
            SsfOutcome::Retry {
                error: "rx answered HTTP 500".into(),
                next_attempt_ms: now,
                give_up: false,
            },
            "t",
        )
        .await
        .unwrap();
    let q = store.ssf_queue("s-push").await.unwrap();
    assert_eq!((q.pending, q.failed), (1, 0));
    assert_eq!(q.last_error.as_deref(), Some("rx answered HTTP 500"));
    // paused: held, not pushed
    store
        .set_ssf_status("s-push", SsfStatus::Paused, Some("maintenance".into()), "t")
        .await
        .unwrap();
    assert!(
        store
            .claim_ssf_push(now + 1, 60_000, 10)
            .await
            .unwrap()
            .is_empty()
    );
    store
        .set_ssf_status("s-push", SsfStatus::Enabled, None, "t")
        .await
        .unwrap();
    let c = store.claim_ssf_push(now + 1, 60_000, 10).await.unwrap();
    assert_eq!(c[0].attempts, 1);
    store
        .record_ssf_push("j-push", SsfOutcome::Delivered, "t")
        .await
        .unwrap();
    assert_eq!(store.ssf_queue("s-push").await.unwrap().pending, 0);

    // poll: an error report keeps the SET failed; an ack removes it
    store
        .ack_ssf_sets(
            "s-poll",
            vec![],
            vec![SetError {
                jti: "j-poll".into(),
                err: "invalid_key".into(),
                description: "unknown kid".into(),
            }],
            "t",
        )
        .await
        .unwrap();
    assert!(
        store
            .pending_ssf_sets("s-poll", 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.ssf_queue("s-poll").await.unwrap().failed, 1);
    // disabled: nothing is queued, only the cursor moves
    store
        .set_ssf_status("s-poll", SsfStatus::Disabled, None, "t")
        .await
        .unwrap();
    let poll = store.get_ssf_stream("s-poll").await.unwrap();
    let dropped = store
        .queue_ssf_sets(vec![SsfAdvance {
            stream_id: poll.stream_id.clone(),
            from: poll.cursor,
            to: poll.cursor + 1,
            sets: vec![ssf_set(poll.cursor + 1, "j-late")],
        }])
        .await
        .unwrap();
    assert_eq!(dropped, 0);
    assert_eq!(
        store.get_ssf_stream("s-poll").await.unwrap().cursor,
        poll.cursor + 1
    );
    let _ = push;
    store.delete_ssf_stream("s-poll", "t").await.unwrap();
    assert!(matches!(
        store.get_ssf_stream("s-poll").await,
        Err(StoreError::NotFound { .. })
    ));
    let mine = store
        .list_ssf_streams(Some("rx".into()), String::new(), 10)
        .await
        .unwrap();
    assert_eq!(mine.len(), 1);
    assert!(store.verify_audit().await.unwrap().is_ok());
}

/// More descendants than one INSERT of events takes (8,000 on PostgreSQL):
/// one revocation revokes them all, each with its own audit event, in
/// order, and the chain still verifies.
async fn a_large_lineage_is_revoked_in_one_transaction_and_the_chain_holds(place: Place) {
    let store = place.open().await;
    let (owner, wl, wf, run) = registry(&*store).await;
    store
        .record_mint(plan("tok_root".into(), owner.id, wl.id, run.id, wf.id), "t")
        .await
        .unwrap();
    let mut minters = Vec::new();
    for m in 0..8 {
        let store = store.clone();
        minters.push(tokio::spawn(async move {
            for n in 0..1100 {
                let mut p = plan(format!("tok_{m}_{n}"), owner.id, wl.id, run.id, wf.id);
                p.token.parent_id = Some("tok_root".into());
                p.token.depth = 1;
                p.token.expires_at -= 60_000; // within the parent's lifetime
                p.request.ttl_secs = 540;
                p.token.run_id = None;
                p.token.workflow_id = None;
                store.record_mint(p, "t").await.unwrap();
            }
        }));
    }
    for m in minters {
        m.await.unwrap();
    }
    let revoked = store
        .revoke_token("tok_root", "lineage".into(), "t")
        .await
        .unwrap();
    assert_eq!((revoked.count, revoked.cascaded), (8801, 8800));
    assert!(store.revocations().contains("tok_7_1099"));
    let records = store.revocations_after(0, 10_000).await.unwrap();
    assert_eq!(records.len(), 8801);
    assert!(records.windows(2).all(|w| w[0].seq < w[1].seq));
    let chain = store.verify_audit().await.unwrap().unwrap();
    assert_eq!(chain.head_seq, records.last().unwrap().seq);
}
