//! Lifecycle revocation, persistence, delegation cascade and the CLI walkthrough.

use serde_json::{Value, json};

use crate::harness::{Leash, stderr, stdout};

fn read_mint(run: Option<i64>) -> Value {
    json!({"workload": "triage-bot", "run": run, "scopes": ["tickets:read"], "ttl": "15m"})
}

#[tokio::test]
async fn first_start_creates_credentials_and_restart_keeps_everything() {
    let mut l = Leash::start().await;
    let meta = std::fs::metadata(l.data().join("operator.token")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            meta.permissions().mode() & 0o777,
            0o600,
            "operator.token must be 0600"
        );
    }
    if l.database_url().is_none() {
        assert!(std::fs::read_dir(l.data().join("keys")).unwrap().count() >= 1);
    } else {
        // on PostgreSQL the keys are sealed in the database, never on disk
        assert!(!l.data().join("keys").exists());
        assert_eq!(
            l.get("/v1/keys").await.1["keys"].as_array().unwrap().len(),
            1
        );
    }
    let run = l.fixture().await;
    let t = l.mint(read_mint(Some(run))).await;
    let jwks_before = l.public_text("/.well-known/jwks.json").await;
    let events_before = l.event_count().await;

    l.restart().await; // SIGKILL, then start again
    let e = l.explain(t["token"].as_str().unwrap()).await;
    assert_eq!(e["status"], "active");
    assert_eq!(e["owner"]["name"], "alice");
    assert_eq!(e["run"]["id"], run);
    let jwks_after = l.public_text("/.well-known/jwks.json").await;
    assert_eq!(jwks_before, jwks_after, "signing keys survive a restart");
    assert_eq!(l.event_count().await, events_before);
    // the run is still running after restart and still mints; ending it still revokes
    l.mint(read_mint(Some(run))).await;
    let (_, ended) = l
        .post(
            &format!("/v1/runs/{run}/end"),
            json!({"status": "succeeded"}),
        )
        .await;
    assert_eq!(ended["revoked"]["count"], 2);
    let (_, v) = l.get("/v1/audit/verify").await;
    assert_eq!(v["ok"], true, "{v}");
}

#[tokio::test]
async fn ending_a_run_revokes_its_tokens_only_and_records_the_event() {
    let l = Leash::start().await;
    let run_a = l.fixture().await;
    let run_b = l.start_run("triage", "triage-bot").await;
    let a: Vec<Value> = futures_join(&l, (0..3).map(|_| read_mint(Some(run_a))).collect()).await;
    let b = l.mint(read_mint(Some(run_b))).await;
    let free = l.mint(read_mint(None)).await;

    let (s, ended) = l
        .post(
            &format!("/v1/runs/{run_a}/end"),
            json!({"status": "failed"}),
        )
        .await;
    assert!(s.is_success(), "{ended}");
    assert_eq!(ended["run"]["state"], "failed");
    assert_eq!(ended["revoked"]["count"], 3);
    let cause = ended["revoked"]["event"].as_i64().unwrap();
    for t in &a {
        let e = l.explain(t["token"].as_str().unwrap()).await;
        assert_eq!(e["status"], "revoked");
        assert_eq!(e["revoked"]["trigger"], "run_ended");
        assert_eq!(e["revoked"]["event"]["seq"], cause);
        assert_eq!(e["revoked"]["event"]["kind"], "run.ended");
        assert!(
            e["revoked"]["reason"]
                .as_str()
                .unwrap()
                .contains(&format!("run {run_a} ended"))
        );
    }
    assert_eq!(
        l.explain(b["id"].as_str().unwrap()).await["status"],
        "active"
    );
    assert_eq!(
        l.explain(free["id"].as_str().unwrap()).await["status"],
        "active"
    );

    // the ended run can mint no more, and cannot end twice
    let (s, v) = l.post("/v1/tokens", read_mint(Some(run_a))).await;
    assert_eq!(s, 403);
    assert_eq!(v["rule"], "run_running");
    let (s, v) = l
        .post(
            &format!("/v1/runs/{run_a}/end"),
            json!({"status": "succeeded"}),
        )
        .await;
    assert_eq!(s, 409, "{v}");
}

async fn futures_join(l: &Leash, bodies: Vec<Value>) -> Vec<Value> {
    let mut out = Vec::new();
    for b in bodies {
        out.push(l.mint(b).await);
    }
    out
}

#[tokio::test]
async fn changing_a_workflow_definition_revokes_tokens_of_runs_on_the_old_digest() {
    let l = Leash::start().await;
    let old_run = l.fixture().await;
    let old = l.mint(read_mint(Some(old_run))).await;
    let unrelated = l.mint(read_mint(None)).await;

    // same definition: nothing changes, nothing revoked
    let (s, same) = l
        .req(
            reqwest::Method::PUT,
            "/v1/workflows/triage",
            Some(json!({"definition": "steps: [read, comment]"})),
        )
        .await;
    assert!(s.is_success());
    assert_eq!(same["revoked"]["count"], 0);

    let (s, upd) = l
        .req(
            reqwest::Method::PUT,
            "/v1/workflows/triage",
            Some(json!({"definition": "steps: [read, comment, push]"})),
        )
        .await;
    assert!(s.is_success(), "{upd}");
    assert_eq!(upd["revoked"]["count"], 1);
    let e = l.explain(old["id"].as_str().unwrap()).await;
    assert_eq!(e["status"], "revoked");
    assert_eq!(e["revoked"]["trigger"], "workflow_changed");
    assert_eq!(e["revoked"]["event"]["kind"], "workflow.updated");
    assert_eq!(
        l.explain(unrelated["id"].as_str().unwrap()).await["status"],
        "active"
    );

    // the old run cannot mint again; a new run on the new digest can
    let (s, v) = l.post("/v1/tokens", read_mint(Some(old_run))).await;
    assert_eq!(
        (s.as_u16(), v["rule"].as_str()),
        (403, Some("run_definition")),
        "{v}"
    );
    let new_run = l.start_run("triage", "triage-bot").await;
    let fresh = l.mint(read_mint(Some(new_run))).await;
    assert_eq!(
        l.explain(fresh["id"].as_str().unwrap()).await["status"],
        "active"
    );
}

#[tokio::test]
async fn offboarding_an_owner_revokes_all_their_tokens_and_blocks_new_ones() {
    let l = Leash::start().await;
    let run = l.fixture().await;
    let t1 = l.mint(read_mint(Some(run))).await;
    let t2 = l.mint(json!({"workload": "triage-bot", "scopes": ["tickets:read"], "ttl": 60, "format": "opaque"})).await;
    let (s, off) = l.post("/v1/owners/alice/offboard", json!({})).await;
    assert!(s.is_success(), "{off}");
    assert_eq!(off["owner"]["status"], "offboarded");
    assert_eq!(off["revoked"]["count"], 2);
    for t in [&t1, &t2] {
        let e = l.explain(t["token"].as_str().unwrap()).await;
        assert_eq!(e["revoked"]["trigger"], "owner_offboarded");
        assert_eq!(e["owner"]["status"], "offboarded");
    }
    let (s, v) = l.post("/v1/tokens", read_mint(None)).await;
    assert_eq!(s, 403);
    assert_eq!(v["rule"], "owner_active");
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .contains("no token may exist without an active owner")
    );
    let (s, _) = l.post("/v1/owners/alice/offboard", json!({})).await;
    assert_eq!(s, 409);
}

#[tokio::test]
async fn revocation_cascades_to_every_descendant_and_delegation_only_narrows() {
    let l = Leash::start().await;
    l.fixture().await;
    let parent = l.mint(json!({"workload": "triage-bot", "scopes": ["tickets:read", "repo:acme/*:write"], "ttl": "30m", "justification": "release", "audience": ["api", "ci"]})).await;
    let pid = parent["id"].as_str().unwrap();
    let child = l.mint(json!({"workload": "triage-bot", "parent": parent["token"], "scopes": ["repo:acme/api:write"], "ttl": "10m", "justification": "push fix", "audience": ["api"]})).await;
    let grandchild = l.mint(json!({"workload": "triage-bot", "parent": child["id"], "scopes": ["repo:acme/api:write"], "ttl": "5m", "justification": "push fix"})).await;
    let e = l.explain(grandchild["id"].as_str().unwrap()).await;
    assert_eq!(e["parent"], child["id"]);
    assert!(
        e["revocation_triggers"]
            .as_array()
            .unwrap()
            .contains(&json!("parent_revoked"))
    );
    assert_eq!(
        e["privileges"]["audience"],
        json!(["api"]),
        "audience defaults to the parent's"
    );

    // a delegated token may not widen scope, audience or lifetime
    for (body, what) in [
        (
            json!({"workload": "triage-bot", "parent": child["id"], "scopes": ["tickets:read"], "ttl": "1m"}),
            "cannot hold",
        ),
        (
            json!({"workload": "triage-bot", "parent": pid, "scopes": ["tickets:read"], "ttl": "1m", "audience": ["evil"]}),
            "audience",
        ),
        (
            json!({"workload": "triage-bot", "parent": pid, "scopes": ["tickets:read"], "ttl": "59m"}),
            "outlive",
        ),
    ] {
        let (s, v) = l.post("/v1/tokens", body).await;
        assert_eq!(s, 403, "{v}");
        assert_eq!(v["rule"], "delegation");
        assert!(v["detail"].as_str().unwrap().contains(what), "{v}");
    }

    let (s, r) = l
        .post(
            "/v1/revocations",
            json!({"token_or_id": pid, "reason": "agent misbehaved"}),
        )
        .await;
    assert!(s.is_success(), "{r}");
    assert_eq!(r["count"], 3);
    assert_eq!(r["cascaded"], 2);
    let c = l.explain(child["token"].as_str().unwrap()).await;
    assert_eq!(c["status"], "revoked");
    assert_eq!(c["revoked"]["trigger"], "parent_revoked");
    assert_eq!(c["revoked"]["event"]["seq"], r["event"]);
    let p = l.explain(pid).await;
    assert_eq!(p["revoked"]["trigger"], "manual");
    assert_eq!(p["revoked"]["reason"], "agent misbehaved");
    assert_eq!(
        l.explain(grandchild["id"].as_str().unwrap()).await["status"],
        "revoked"
    );

    // revoking again is a no-op, and a revoked parent cannot delegate
    let (_, again) = l
        .post(
            "/v1/revocations",
            json!({"token_or_id": pid, "reason": "again"}),
        )
        .await;
    assert_eq!(again["count"], 0);
    let (s, v) = l.post("/v1/tokens", json!({"workload": "triage-bot", "parent": pid, "scopes": ["tickets:read"], "ttl": "1m"})).await;
    assert_eq!((s.as_u16(), v["rule"].as_str()), (403, Some("delegation")));
}

#[tokio::test]
async fn expired_tokens_show_as_expired_and_inactive() {
    let l = Leash::start().await;
    l.fixture().await;
    let t = l
        .mint(json!({"workload": "triage-bot", "scopes": ["tickets:read"], "ttl": 1}))
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let e = l.explain(t["token"].as_str().unwrap()).await;
    assert_eq!(e["status"], "expired");
    assert_eq!(e["privileges"]["expires_in"], 0);
    let (_, list) = l.get("/v1/tokens?status=expired").await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    let (_, r) = l
        .post(
            "/v1/revocations",
            json!({"token_or_id": t["id"], "reason": "cleanup"}),
        )
        .await;
    assert_eq!(r["count"], 0, "expired tokens stay expired");
}

#[tokio::test]
async fn cli_walkthrough_answers_the_four_questions() {
    let l = Leash::start().await;
    let dir = l.root.path();
    std::fs::write(
        dir.join("triage.yaml"),
        "name: triage\nsteps: [read, comment]\n",
    )
    .unwrap();
    for args in [
        vec![
            "owner",
            "add",
            "alice",
            "--email",
            "alice@acme.io",
            "--business-owner",
        ],
        vec![
            "owner",
            "add",
            "platform",
            "--email",
            "platform@acme.io",
            "--kind",
            "team",
        ],
        vec![
            "workload",
            "add",
            "triage-bot",
            "--owner",
            "alice",
            "--env",
            "prod",
            "--identity",
            "spiffe://acme.io/agents/triage",
            "--ceiling",
            "tickets:read",
            "--ceiling",
            "repo:acme/*:write",
        ],
        vec![
            "workflow",
            "add",
            "triage",
            "--owner",
            "alice",
            "--definition",
            "triage.yaml",
            "--tool",
            "jira",
        ],
    ] {
        let o = l.cli(&args);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    }
    let o = l.cli(&["run", "start", "triage", "--workload", "triage-bot"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let run = stdout(&o).trim().to_owned();
    let o = l.cli(&[
        "mint",
        "--workload",
        "triage-bot",
        "--run",
        &run,
        "--scope",
        "repo:acme/api:write",
        "--ttl",
        "15m",
        "--justification",
        "fix release",
        "--format",
        "opaque",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let token = stdout(&o).trim().to_owned();
    assert!(token.starts_with("lsh_") && token.len() == 42, "{token}");

    let o = l.cli(&["explain", &token, "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let e: Value = serde_json::from_slice(&o.stdout).unwrap();
    for key in [
        "id",
        "status",
        "owner",
        "workload",
        "privileges",
        "revocation_triggers",
        "revoked",
    ] {
        assert!(e.get(key).is_some(), "explain --json lacks {key}: {e}");
    }
    assert_eq!(e["owner"]["name"], "alice");
    assert_eq!(e["workload"]["identity"], "spiffe://acme.io/agents/triage");
    assert_eq!(e["workload"]["environment"], "prod");
    assert_eq!(
        e["privileges"]["write_scopes"],
        json!(["repo:acme/api:write"])
    );
    assert_eq!(e["privileges"]["justification"], "fix release");
    assert!(e["revoked"].is_null());
    let text = stdout(&l.cli(&["explain", &token]));
    assert!(
        text.contains("alice") && text.contains("ACTIVE") && text.contains("run_ended"),
        "{text}"
    );

    let o = l.cli(&[
        "tokens", "list", "--owner", "alice", "--status", "active", "--json",
    ]);
    let list: Vec<Value> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(list.len(), 1);
    let o = l.cli(&[
        "tokens", "list", "--run", &run, "--status", "revoked", "--json",
    ]);
    assert_eq!(
        serde_json::from_slice::<Vec<Value>>(&o.stdout)
            .unwrap()
            .len(),
        0
    );
    let o = l.cli(&["tokens", "list", "--workload", "nope"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("workload `nope` does not exist"));

    let o = l.cli(&["run", "end", &run, "--status", "succeeded"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("revoked 1 token"), "{}", stdout(&o));
    let e: Value = serde_json::from_slice(&l.cli(&["explain", &token, "--json"]).stdout).unwrap();
    assert_eq!(e["status"], "revoked");
    assert_eq!(e["revoked"]["trigger"], "run_ended");

    // a hand revoke of a live token through the CLI
    let o = l.cli(&[
        "mint",
        "--workload",
        "triage-bot",
        "--scope",
        "tickets:read",
        "--ttl",
        "5m",
    ]);
    let jwt = stdout(&o).trim().to_owned();
    let o = l.cli(&["revoke", &jwt, "--reason", "leaked in chat"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&l.cli(&["explain", &jwt])).contains("leaked in chat"));

    let o = l.cli(&["audit", "verify"]);
    assert!(
        o.status.success() && stdout(&o).contains("audit chain OK"),
        "{}",
        stdout(&o)
    );
    let o = l.cli(&["audit", "tail", "-n", "3", "--json"]);
    let lines: Vec<Value> = stdout(&o)
        .lines()
        .map(|x| serde_json::from_str(x).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[2]["kind"], "token.revoked");
    let o = l.cli(&["owner", "list", "--json"]);
    assert_eq!(
        serde_json::from_slice::<Vec<Value>>(&o.stdout)
            .unwrap()
            .len(),
        2
    );
}
