//! Store behaviour that needs concurrency to show: group commit never lets
//! a token outlive the run it was minted for.

// Test code: an unexpected error should fail the test loudly.
#![allow(clippy::unwrap_used, clippy::panic)]
use std::sync::Arc;

use leash_core::issuance::MintRequest;
use leash_core::{Environment, OwnerKind, RunState, Token, TokenFormat, TokenStatus};
use leash_store::{
    MintPlan, NewOwner, NewWorkflow, NewWorkload, SqliteStore, Store, StoreConfig, StoreError,
    TokenFilter, now_ms,
};

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
        },
        secret_hash: None,
        request: MintRequest {
            scopes,
            ttl_secs: 600,
            audience: vec!["api".into()],
            justification: None,
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_outlives_its_run_under_concurrent_mints() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        SqliteStore::open(dir.path(), StoreConfig::default())
            .await
            .unwrap(),
    );
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

#[tokio::test]
async fn a_reopened_store_has_the_same_registry_and_chain() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SqliteStore::open(dir.path(), StoreConfig::default())
            .await
            .unwrap();
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
    let store = SqliteStore::open(dir.path(), StoreConfig::default())
        .await
        .unwrap();
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
