//! Review end to end: imports, usage ingest with the findings it raises,
//! the registry-wide sweep, removability tests and canaries, the report.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{Leash, stdout};

const TRIAGE: &str = "spiffe://acme.io/agents/triage";
const DAY_MS: i64 = 86_400_000;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

async fn raw(l: &Leash, path: &str, body: &str) -> (StatusCode, Value) {
    let resp = reqwest::Client::new()
        .post(format!("{}{}", l.url, path))
        .bearer_auth(&l.token)
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let s = resp.status();
    let text = resp.text().await.unwrap();
    (
        s,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn findings_of(l: &Leash, kind: &str) -> Vec<Value> {
    let (_, v) = l.get("/v1/findings?limit=1000").await;
    v.as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == kind)
        .cloned()
        .collect()
}

async fn sweep(l: &Leash) -> Value {
    l.ok("/v1/review/sweep", json!({})).await
}

fn use_line(
    token: &str,
    at: i64,
    workload: &str,
    tool: &str,
    resource: &str,
    action: &str,
) -> String {
    json!({"time": rfc3339(at), "token_id": token, "workload": workload, "tool": tool,
           "resource": resource, "action": action, "user_agent": "python-httpx/0.27"})
    .to_string()
}

#[tokio::test]
async fn an_import_records_the_whole_export_or_nothing() {
    let l = Leash::start().await;
    l.ok(
        "/v1/owners",
        json!({"name": "alice", "email": "alice@acme.io", "business_owner": true}),
    )
    .await;
    let bad = "name,kind,provider,owner,scopes,created,last_used,fingerprint\n\
        ci-deploy,api_key,github,alice,repo,2026-01-01,2026-11-01,\n\
        billing-sync,service_account_key,gcp,alice@acme.io,roles/billing.viewer,2026-02-01,,\n\
        orphan,oauth_grant,slack,,chat:write,not-a-date,,\n";
    // a missing fingerprint with no key id, and a bad date further down: the first is named
    let (s, v) = raw(&l, "/v1/external-tokens/import?format=csv", bad).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let detail = v["detail"].as_str().unwrap();
    assert!(
        detail.contains("line 2") && detail.contains("nothing was imported"),
        "{detail}"
    );
    let (_, list) = l.get("/v1/external-tokens").await;
    assert_eq!(list.as_array().unwrap().len(), 0, "nothing half-imported");

    let fp = |c: char| c.to_string().repeat(64);
    let good = format!(
        "name,kind,provider,owner,scopes,created,last_used,fingerprint,stored_in\n\
         ci-deploy,api_key,github,alice,repo;workflow,2026-01-01,2026-11-01,{},vault:ci/deploy\n\
         billing-sync,service_account_key,gcp,alice@acme.io,roles/billing.viewer,2026-02-01,,{},\n\
         orphan,oauth_grant,slack,,chat:write,2026-03-01,,{},\n",
        fp('a'),
        fp('b'),
        fp('c')
    );
    let file = l.data().join("export.csv");
    std::fs::write(&file, &good).unwrap();
    let o = l.cli(&["import", file.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", crate::harness::stderr(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(
        (
            v["records"].as_u64(),
            v["created"].as_u64(),
            v["unowned"].as_u64()
        ),
        (Some(3), Some(3), Some(1)),
        "{v}"
    );
    let shadow = findings_of(&l, "shadow_ownership").await;
    assert_eq!(shadow.len(), 1, "{shadow:?}");
    assert_eq!(shadow[0]["subject"], "external:orphan");
    assert_eq!(shadow[0]["severity"], "high");

    // the same export again: updated, no second finding
    let o = l.cli(&["import", file.to_str().unwrap(), "--json"]);
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(
        (v["created"].as_u64(), v["updated"].as_u64()),
        (Some(0), Some(3)),
        "{v}"
    );
    assert_eq!(findings_of(&l, "shadow_ownership").await.len(), 1);

    // an owner Leash does not know is named with its line
    let unknown = format!("name,kind,owner,fingerprint\nx,api_key,bob,{}\n", fp('d'));
    let (s, v) = raw(&l, "/v1/external-tokens/import", &unknown).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .contains("line 2: owner `bob` is not registered"),
        "{v}"
    );

    // imported credentials answer the four questions like minted ones
    let e = l.explain("external:ci-deploy").await;
    assert_eq!(e["owner"]["name"], "alice", "{e}");
    assert_eq!(
        e["privileges"]["scopes"],
        json!(["repo", "workflow"]),
        "{e}"
    );
}

#[tokio::test]
async fn ingest_maps_uses_to_tokens_and_raises_findings_as_they_arrive() {
    let l = Leash::start().await;
    let run = l.fixture().await;
    let t = l
        .mint(
            json!({"workload": "triage-bot", "run": run, "scopes": ["tickets:read"], "ttl": "10m"}),
        )
        .await;
    let id = t["id"].as_str().unwrap().to_owned();
    let now = now_ms();

    // on its declared path (by name and by identity): nothing to review
    let lines = [
        use_line(&id, now, "triage-bot", "jira", "tickets:T-1", "read"),
        use_line(&id, now + 1, TRIAGE, "jira", "tickets:T-2", "read"),
        "{\"msg\": \"an unrelated log line\", \"time\": \"2026-11-01T00:00:00Z\"}".to_owned(),
        use_line(
            "tok_doesnotexist",
            now,
            "triage-bot",
            "jira",
            "tickets:T-1",
            "read",
        ),
    ]
    .join("\n");
    let (s, v) = raw(&l, "/v1/usage/ingest", &lines).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["events"], 3, "{v}");
    assert_eq!(v["matched"], 2, "{v}");
    assert_eq!(v["unknown_refs"], 1, "{v}");
    assert_eq!(v["unknown"][0]["line"], 4);
    assert_eq!(v["unknown"][0]["value"], "tok_doesnotexist");
    assert_eq!(v["skipped"], 1, "{v}");
    assert_eq!(v["findings_opened"], json!([]), "{v}");

    // curl is automation: not human use (near miss)
    let curl = json!({"time": rfc3339(now + 2), "token_id": id, "workload": "triage-bot", "tool": "jira",
                      "resource": "tickets:T-3", "action": "read", "user_agent": "curl/8.5.0"});
    let (_, v) = raw(&l, "/v1/usage/ingest", &curl.to_string()).await;
    assert_eq!(v["findings_opened"], json!([]), "{v}");

    // a tool the workflow does not declare, then another workload, then a browser
    let lines = [
        use_line(&id, now + 3, "triage-bot", "shell", "tickets:T-1", "read"),
        use_line(&id, now + 4, "deploy-bot", "jira", "tickets:T-1", "read"),
        json!({"time": rfc3339(now + 5), "token_id": id, "workload": "triage-bot", "tool": "jira",
               "resource": "tickets:T-9", "action": "read",
               "user_agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0"})
        .to_string(),
    ]
    .join("\n");
    let (_, v) = raw(&l, "/v1/usage/ingest?first_line=10", &lines).await;
    assert_eq!(v["findings_opened"].as_array().unwrap().len(), 3, "{v}");
    let up = findings_of(&l, "unexpected_path").await;
    assert_eq!(up.len(), 1, "one open finding per token and kind: {up:?}");
    let items = up[0]["evidence"]["items"].as_array().unwrap();
    assert!(
        items
            .iter()
            .any(|i| i["what"] == "undeclared tool" && i["value"] == "shell" && i["line"] == 10),
        "{items:?}"
    );
    assert!(
        items
            .iter()
            .any(|i| i["what"] == "workload" && i["value"] == "deploy-bot"),
        "{items:?}"
    );
    let shared = findings_of(&l, "shared_credential").await;
    assert_eq!(
        shared[0]["evidence"]["workloads"],
        json!(["deploy-bot", "triage-bot"])
    );
    assert_eq!(shared[0]["owner"], "alice");
    let human = findings_of(&l, "human_use").await;
    assert!(
        human[0]["summary"]
            .as_str()
            .unwrap()
            .contains("Mozilla/5.0"),
        "{human:?}"
    );

    // a malformed line: the batch is refused with its line, nothing recorded
    let before = l.get(&format!("/v1/tokens/{id}/usage")).await.1;
    let bad = format!(
        "{}\n{{not json\n",
        use_line(&id, now + 6, "triage-bot", "jira", "tickets:T-1", "read")
    );
    let (s, v) = raw(&l, "/v1/usage/ingest?first_line=100", &bad).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["detail"].as_str().unwrap().contains("line 101"), "{v}");
    assert_eq!(l.get(&format!("/v1/tokens/{id}/usage")).await.1, before);

    // usage from logs shows beside decisions
    let usage = l.get(&format!("/v1/tokens/{id}/usage")).await.1;
    let total: u64 = usage["totals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["count"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 6, "{usage}");

    // after its run ended
    l.ok(
        &format!("/v1/runs/{run}/end"),
        json!({"status": "succeeded"}),
    )
    .await;
    let late = use_line(
        &id,
        now_ms() + 1000,
        "triage-bot",
        "jira",
        "tickets:T-1",
        "read",
    );
    let (_, v) = raw(&l, "/v1/usage/ingest", &late).await;
    assert_eq!(v["findings_refreshed"].as_array().unwrap().len(), 1, "{v}");
    let up = findings_of(&l, "unexpected_path").await;
    assert!(
        up[0]["evidence"]["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["what"] == "after its run ended"),
        "{up:?}"
    );

    // OpenTelemetry records for an external key, by fingerprint, through the CLI
    let fp = "e".repeat(64);
    l.ok(
        "/v1/external-tokens",
        json!({"name": "ci-key", "kind": "aws-access-key", "owner": "alice",
        "fingerprint": fp, "workloads": ["triage-bot"], "scopes": ["s3:read"]}),
    )
    .await;
    let nanos = (now_ms() as i128 * 1_000_000).to_string();
    let otlp = json!({"resourceLogs": [{"resource": {"attributes": [
            {"key": "service.name", "value": {"stringValue": "triage-bot"}}]},
        "scopeLogs": [{"logRecords": [{"timeUnixNano": nanos, "body": {"stringValue": "s3 get"},
            "attributes": [{"key": "leash.token_fingerprint", "value": {"stringValue": fp}},
                           {"key": "resource", "value": {"stringValue": "s3:reports"}},
                           {"key": "action", "value": {"stringValue": "read"}}]}]}]}]});
    let file = l.data().join("otel.json");
    std::fs::write(&file, serde_json::to_string_pretty(&otlp).unwrap()).unwrap();
    let o = l.cli(&[
        "usage",
        "ingest",
        file.to_str().unwrap(),
        "--source",
        "otel",
        "--json",
    ]);
    assert!(o.status.success(), "{}", crate::harness::stderr(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(
        (v["events"].as_u64(), v["matched"].as_u64()),
        (Some(1), Some(1)),
        "{v}"
    );
    let x = l.get("/v1/external-tokens").await.1;
    let ci = x
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "ci-key")
        .unwrap()
        .clone();
    assert!(ci["last_used_at"].is_string(), "{ci}");
}

#[tokio::test]
async fn the_sweep_finds_stale_keys_shadow_owners_churn_and_unused_scopes() {
    let l = Leash::start_with(&[
        "--churn-threshold",
        "1s",
        "--churn-gap",
        "5s",
        "--unused-runs",
        "2",
    ])
    .await;
    let run = l.fixture().await;
    let now = now_ms();
    // stale: unused for 100 days; near miss: 89 days
    let csv = format!(
        "name,kind,provider,owner,last_used,fingerprint\n\
         old-key,api_key,github,alice,{},{}\n\
         recent-key,api_key,github,alice,{},{}\n",
        rfc3339(now - 100 * DAY_MS),
        "1".repeat(64),
        rfc3339(now - 89 * DAY_MS),
        "2".repeat(64)
    );
    let (s, v) = raw(&l, "/v1/external-tokens/import", &csv).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // shadow ownership: a platform team with no business owner holding a token;
    // near miss: a team that has a business owner
    l.ok("/v1/owners", json!({"name": "platform", "email": "platform@acme.io", "kind": "team", "business_owner": false})).await;
    l.ok("/v1/owners", json!({"name": "payments", "email": "payments@acme.io", "kind": "team", "business_owner": true})).await;
    for (w, owner) in [("infra-bot", "platform"), ("pay-bot", "payments")] {
        l.ok("/v1/workloads", json!({"name": w, "owner": owner, "environment": "dev", "scope_ceiling": ["tickets:read", "repo:acme/*:write"]})).await;
        // infra-bot's token outlives the test; pay-bot's are the churn below
        let ttl = if w == "infra-bot" { "10m" } else { "2s" };
        l.mint(json!({"workload": w, "scopes": ["tickets:read"], "ttl": ttl}))
            .await;
    }
    // churn: pay-bot re-minted back to back (three 2 s tokens); infra-bot minted once
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        l.mint(json!({"workload": "pay-bot", "scopes": ["tickets:read"], "ttl": "2s"}))
            .await;
    }
    // unused privilege: two ended runs holding a write scope that only reads used
    let scopes = json!(["tickets:read", "repo:acme/api:write"]);
    let mut runs = vec![run];
    runs.push(l.start_run("triage", "triage-bot").await);
    for r in &runs {
        let t = l.mint(json!({"workload": "triage-bot", "run": r, "scopes": scopes, "ttl": "10m", "justification": "fix"})).await;
        let body = json!({"subject": {"type": "workload", "id": TRIAGE, "properties": {"token": t["token"]}},
                          "action": {"name": "read"}, "resource": {"type": "tickets", "id": "T-1"}, "context": {"tool": "jira"}});
        let (_, d) = l.post("/access/v1/evaluation", body).await;
        assert_eq!(d["decision"], true, "{d}");
    }
    l.usage_written().await; // usage is written in 250 ms batches
    for r in &runs {
        l.ok(&format!("/v1/runs/{r}/end"), json!({"status": "succeeded"}))
            .await;
    }
    sweep(&l).await;

    let stale = findings_of(&l, "stale_external").await;
    assert_eq!(stale.len(), 1, "{stale:?}");
    assert_eq!(stale[0]["subject"], "external:old-key");
    assert!(
        stale[0]["summary"].as_str().unwrap().contains("100 days"),
        "{stale:?}"
    );

    let shadow = findings_of(&l, "shadow_ownership").await;
    assert_eq!(shadow.len(), 1, "{shadow:?}");
    assert_eq!(shadow[0]["subject"], "owner:platform");

    let churn = findings_of(&l, "reissue_churn").await;
    assert_eq!(churn.len(), 1, "{churn:?}");
    assert_eq!(churn[0]["evidence"]["workload"], "pay-bot");
    assert_eq!(churn[0]["evidence"]["tokens"], 3);
    // three 2 s tokens, 1.5 s apart: access spans about 5 s
    let span = churn[0]["evidence"]["effective_seconds"].as_i64().unwrap();
    assert!((4..=7).contains(&span), "{churn:?}");

    let unused = findings_of(&l, "unused_privilege").await;
    assert_eq!(unused.len(), 1, "{unused:?}");
    assert_eq!(
        unused[0]["evidence"]["unused"],
        json!(["repo:acme/api:write"])
    );
    assert_eq!(
        unused[0]["evidence"]["suggested_scopes"],
        json!(["tickets:read"])
    );

    // a second sweep refreshes instead of duplicating
    sweep(&l).await;
    assert_eq!(findings_of(&l, "reissue_churn").await.len(), 1);
    assert_eq!(findings_of(&l, "stale_external").await.len(), 1);

    // near miss for unused privilege: a third run uses the write scope
    let r3 = l.start_run("triage", "triage-bot").await;
    let t = l.mint(json!({"workload": "triage-bot", "run": r3, "scopes": scopes, "ttl": "10m", "justification": "fix"})).await;
    let body = json!({"subject": {"type": "workload", "id": TRIAGE, "properties": {"token": t["token"]}},
                      "action": {"name": "write"}, "resource": {"type": "repo", "id": "acme/api"}, "context": {"tool": "git"}});
    assert_eq!(
        l.post("/access/v1/evaluation", body).await.1["decision"],
        true
    );
    l.usage_written().await;
    l.ok(
        &format!("/v1/runs/{r3}/end"),
        json!({"status": "succeeded"}),
    )
    .await;
    let f = unused[0]["id"].as_i64().unwrap();
    l.ok(
        &format!("/v1/findings/{f}/status"),
        json!({"status": "resolved", "note": "checking"}),
    )
    .await;
    sweep(&l).await;
    assert!(
        findings_of(&l, "unused_privilege")
            .await
            .iter()
            .all(|f| f["status"] == "resolved"),
        "the write was used in the last two runs: no new finding"
    );
}

async fn decide(
    l: &Leash,
    token: &Value,
    action: &str,
    rtype: &str,
    rid: &str,
    tool: &str,
) -> Value {
    let body = json!({"subject": {"type": "workload", "id": TRIAGE, "properties": {"token": token}},
                      "action": {"name": action}, "resource": {"type": rtype, "id": rid}, "context": {"tool": tool}});
    l.post("/access/v1/evaluation", body).await.1
}

async fn test(l: &Leash, body: Value) -> Value {
    l.ok("/v1/removal-tests", body).await
}

/// One run of `triage` that holds tickets:read + repo:acme/api:write and
/// optionally pushes.
async fn triage_run(l: &Leash, push: bool, end: &str) -> i64 {
    let r = l.start_run("triage", "triage-bot").await;
    let t = l
        .mint(json!({"workload": "triage-bot", "run": r, "scopes": ["tickets:read", "repo:acme/api:write"], "ttl": "10m", "justification": "fix"}))
        .await;
    assert_eq!(
        decide(l, &t["token"], "read", "tickets", "T-1", "jira").await["decision"],
        true
    );
    if push {
        assert_eq!(
            decide(l, &t["token"], "write", "repo", "acme/api", "git").await["decision"],
            true
        );
    }
    l.usage_written().await;
    l.ok(&format!("/v1/runs/{r}/end"), json!({"status": end}))
        .await;
    r
}

#[tokio::test]
async fn removability_verdicts_from_usage_and_from_a_canary_run() {
    let l = Leash::start().await;
    let first = l.fixture().await;
    l.ok(
        &format!("/v1/runs/{first}/end"),
        json!({"status": "succeeded"}),
    )
    .await;
    // two runs that never push: too few to say (3 are needed)
    triage_run(&l, false, "succeeded").await;
    triage_run(&l, false, "succeeded").await;
    let v = test(
        &l,
        json!({"target": "repo:acme/api:write", "workflow": "triage"}),
    )
    .await;
    assert_eq!(v["verdict"], "unknown", "{v}");
    // a third: removable, with the runs as evidence
    triage_run(&l, false, "succeeded").await;
    let v = test(
        &l,
        json!({"target": "repo:acme/api:write", "workflow": "triage"}),
    )
    .await;
    assert_eq!(v["verdict"], "removable", "{v}");
    // the read scope is used in every run: needed, with the step that breaks
    let v = test(&l, json!({"target": "tickets:read", "workflow": "triage"})).await;
    assert_eq!(v["verdict"], "needed", "{v}");
    assert_eq!(v["evidence"]["would_break"][0]["step"], "jira", "{v}");
    // a run that pushes makes the write needed
    let pushed = triage_run(&l, true, "succeeded").await;
    let o = l.cli(&[
        "removal-test",
        "repo:acme/api:write",
        "--workflow",
        "triage",
        "--json",
    ]);
    assert!(o.status.success(), "{}", crate::harness::stderr(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["verdict"], "needed", "{v}");
    assert_eq!(v["evidence"]["would_break"][0]["run"], pushed);
    assert_eq!(v["evidence"]["would_break"][0]["step"], "git");

    // canary: the next run is denied the write with a distinct reason
    let c = test(
        &l,
        json!({"target": "repo:acme/api:write", "workflow": "triage", "canary": true}),
    )
    .await;
    assert_eq!(c["canary"], "armed", "{c}");
    let r = l.start_run("triage", "triage-bot").await;
    let t = l
        .mint(json!({"workload": "triage-bot", "run": r, "scopes": ["tickets:read", "repo:acme/api:write"], "ttl": "10m", "justification": "fix"}))
        .await;
    let d = decide(&l, &t["token"], "write", "repo", "acme/api", "git").await;
    assert_eq!(d["decision"], false, "{d}");
    assert!(
        d["context"]["reason"]
            .as_str()
            .unwrap()
            .starts_with("canary: removability test"),
        "{d}"
    );
    assert_eq!(
        decide(&l, &t["token"], "read", "tickets", "T-1", "jira").await["decision"],
        true
    );
    l.ok(&format!("/v1/runs/{r}/end"), json!({"status": "failed"}))
        .await;
    let v = l.get(&format!("/v1/removal-tests/{}", c["id"])).await.1;
    assert_eq!(
        (
            v["verdict"].as_str(),
            v["canary"].as_str(),
            v["canary_denied"].as_u64()
        ),
        (Some("needed"), Some("failed"), Some(1)),
        "{v}"
    );
    // the token was not revoked by the canary: it was a deny, not a violation
    assert_eq!(
        l.explain(t["id"].as_str().unwrap()).await["status"],
        "revoked"
    ); // run ended

    // a canary run that succeeds without the scope: removable
    let c = test(
        &l,
        json!({"target": "repo:acme/api:write", "workflow": "triage", "canary": true}),
    )
    .await;
    triage_run(&l, false, "succeeded").await;
    let v = l.get(&format!("/v1/removal-tests/{}", c["id"])).await.1;
    assert_eq!(
        (v["verdict"].as_str(), v["canary"].as_str()),
        (Some("removable"), Some("passed")),
        "{v}"
    );

    // a definition change re-runs the dry-run verdicts
    let (s, _) = l
        .req(
            reqwest::Method::PUT,
            "/v1/workflows/triage",
            Some(json!({"definition": "steps: [read, comment, push]"})),
        )
        .await;
    assert!(s.is_success());
    let list = l.get("/v1/removal-tests").await.1;
    let rerun = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["evidence"]["rerun"].is_string())
        .count();
    assert!(rerun >= 4, "{list}");
    // errors say what to do
    let (s, v) = l
        .post(
            "/v1/removal-tests",
            json!({"target": "repo:acme/api:write"}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        v["detail"].as_str().unwrap().contains("needs `workflow`"),
        "{v}"
    );
    let (s, _) = l
        .post("/v1/removal-tests", json!({"target": "external:nope"}))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_report_numbers_match_the_registry() {
    let l = Leash::start().await;
    let run = l.fixture().await;
    // four live tokens: one write-capable (justified, not approved: approvals are off)
    let mut ids = Vec::new();
    for scopes in [
        json!(["tickets:read"]),
        json!(["tickets:read"]),
        json!(["tickets:read"]),
        json!(["repo:acme/api:write"]),
    ] {
        let t = l.mint(json!({"workload": "triage-bot", "run": run, "scopes": scopes, "ttl": "10m", "justification": "fix"})).await;
        ids.push(t);
    }
    // a fifth, leaked in a chat: revoked automatically
    let leaked = l
        .mint(
            json!({"workload": "triage-bot", "run": run, "scopes": ["tickets:read"], "ttl": "10m"}),
        )
        .await;
    let (s, v) = l.post("/v1/exposures", json!({"source": "chat", "location": "C0OPS", "text": format!("here {}", leaked["token"].as_str().unwrap())})).await;
    assert!(s.is_success(), "{v}");
    // two external credentials, one unowned and without scopes
    let csv = format!(
        "name,kind,owner,scopes,fingerprint\nowned,api_key,alice,repo,{}\nnobody,api_key,,,{}\n",
        "7".repeat(64),
        "8".repeat(64)
    );
    assert_eq!(
        raw(&l, "/v1/external-tokens/import", &csv).await.0,
        StatusCode::OK
    );
    // one decision, denied
    let d = decide(&l, &ids[0]["token"], "read", "wiki", "home", "jira").await;
    assert_eq!(d["decision"], false);
    l.usage_written().await;

    let o = l.cli(&["report", "--json"]);
    assert!(o.status.success(), "{}", crate::harness::stderr(&o));
    let r: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let ratio = |v: &Value| {
        (
            v["numerator"].as_u64().unwrap(),
            v["denominator"].as_u64().unwrap(),
        )
    };
    // live: 4 Leash + 2 external; owned: 4 + 1
    assert_eq!(ratio(&r["signals"]["owner_coverage"]), (5, 6), "{r}");
    assert_eq!(ratio(&r["signals"]["write_ratio"]), (1, 4));
    assert_eq!(ratio(&r["signals"]["write_justified"]), (1, 1));
    assert_eq!(ratio(&r["signals"]["write_approved"]), (0, 1));
    assert_eq!(r["signals"]["exposures"]["revocable"], 1);
    assert_eq!(r["signals"]["exposures"]["revoked_automatically"], 1);
    assert!(r["signals"]["exposures"]["median_ms"].as_u64().unwrap() < 1000);
    assert_eq!(ratio(&r["questions"]["workload"]), (4, 6));
    assert_eq!(ratio(&r["questions"]["privileges"]), (5, 6));
    assert_eq!(ratio(&r["questions"]["revocation"]), (4, 6));
    assert_eq!(r["tokens"]["leash_total"], 5);
    assert_eq!(r["usage"]["decisions"], 1);
    assert_eq!(r["usage"]["denied"], 1);
    let status = |id: &str| {
        r["controls"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .unwrap()["status"]
            .clone()
    };
    assert_eq!(status("named-owner"), "fail");
    assert_eq!(status("write-scopes"), "fail");
    assert_eq!(status("exposure-revocation"), "pass");
    assert_eq!(status("short-ttl"), "pass");
    assert_eq!(status("request-time-policy"), "pass");
    let shadow = r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "shadow_ownership")
        .unwrap();
    assert_eq!(shadow["open"], 1);

    // Markdown and HTML carry the same numbers; HTML needs nothing from the network
    let md = stdout(&l.cli(&["report", "--format", "md"]));
    assert!(md.contains("83.3 % (5 / 6)"), "{md}");
    let html = l.data().join("report.html");
    let o = l.cli(&["report", "--format", "html", "-o", html.to_str().unwrap()]);
    assert!(o.status.success());
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("id=\"controls\"") && page.contains("<svg"));
    assert!(!page.contains("https://") && !page.contains("http://") && !page.contains("<script"));
    let (s, _) = l.get("/v1/report?format=pdf").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

/// The Chromium binary for the browser test: `LEASH_CHROMIUM`, or Debian's.
fn chromium() -> Option<String> {
    let path = std::env::var("LEASH_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    std::path::Path::new(&path).exists().then_some(path)
}

#[tokio::test]
async fn the_html_report_renders_offline_in_headless_chromium() {
    let Some(browser) = chromium() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI needs Chromium for the report test: apt-get install chromium (or set LEASH_CHROMIUM)"
        );
        eprintln!(
            "skipped: no Chromium at /usr/bin/chromium (apt-get install chromium, or set LEASH_CHROMIUM)"
        );
        return;
    };
    let l = Leash::start().await;
    let run = l.fixture().await;
    l.mint(json!({"workload": "triage-bot", "run": run, "scopes": ["tickets:read"], "ttl": "10m"}))
        .await;
    let csv = format!(
        "name,kind,owner,fingerprint\nnobody,api_key,,{}\n",
        "9".repeat(64)
    );
    assert_eq!(
        raw(&l, "/v1/external-tokens/import", &csv).await.0,
        StatusCode::OK
    );
    let html = l.data().join("report.html");
    let o = l.cli(&["report", "--format", "html", "-o", html.to_str().unwrap()]);
    assert!(o.status.success(), "{}", crate::harness::stderr(&o));
    let profile = tempfile::tempdir().unwrap();
    let shot = l.data().join("report.png");
    let base = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        // the page must need nothing from the network: every host is unreachable
        "--host-resolver-rules=MAP * ~NOTFOUND",
    ];
    let profile_arg = format!("--user-data-dir={}", profile.path().display());
    let url = format!("file://{}", html.display());
    let dom = std::process::Command::new(&browser)
        .args(base)
        .arg(&profile_arg)
        .args(["--dump-dom", &url])
        .output()
        .unwrap();
    assert!(
        dom.status.success(),
        "{}",
        String::from_utf8_lossy(&dom.stderr)
    );
    let dom = String::from_utf8_lossy(&dom.stdout);
    // the browser parsed it into the document the report promises
    assert!(dom.contains("id=\"controls\""), "{dom}");
    let rows = dom.matches("id=\"control-").count();
    assert_eq!(rows, 12, "one row per control");
    assert_eq!(
        dom.matches("class=\"pass\"").count() + dom.matches("class=\"fail\"").count(),
        12
    );
    assert!(
        dom.matches("role=\"img\"").count() >= 4,
        "the charts are there"
    );
    assert!(
        dom.contains("control-named-owner\" class=\"fail\""),
        "an unowned credential fails the owner control"
    );
    let png = std::process::Command::new(&browser)
        .args(base)
        .arg(&profile_arg)
        .args([
            format!("--screenshot={}", shot.display()).as_str(),
            "--window-size=1200,2400",
            &url,
        ])
        .output()
        .unwrap();
    assert!(
        png.status.success(),
        "{}",
        String::from_utf8_lossy(&png.stderr)
    );
    let bytes = std::fs::read(&shot).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    assert!(
        bytes.len() > 20_000,
        "a rendered page, not a blank one ({} bytes)",
        bytes.len()
    );
}
