//! Request-time authorization end to end: AuthZEN decisions and their
//! reasons, batch semantics, violations and their revocations, policies
//! through the API and hot reload, approvals, write budget, break-glass,
//! usage records.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{Leash, Receiver, until};

const TRIAGE: &str = "spiffe://acme.io/agents/triage";

fn subject(token: &str) -> Value {
    json!({"type": "workload", "id": TRIAGE, "properties": {"token": token}})
}

async fn eval(l: &Leash, body: Value) -> (StatusCode, Value) {
    l.post("/access/v1/evaluation", body).await
}

/// Decide and return (decision, first reason).
pub(crate) async fn decide(
    l: &Leash,
    token: &str,
    action: &str,
    rtype: &str,
    rid: &str,
    tool: Option<&str>,
) -> (bool, String) {
    let mut body = json!({"subject": subject(token), "action": {"name": action}, "resource": {"type": rtype, "id": rid}});
    if let Some(t) = tool {
        body["context"] = json!({"tool": t});
    }
    let (s, v) = eval(l, body).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    (
        v["decision"].as_bool().unwrap(),
        v["context"]["reason"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

async fn findings(l: &Leash) -> Vec<Value> {
    let (_, v) = l.get("/v1/findings?limit=100").await;
    v.as_array().unwrap().clone()
}

async fn token_status(l: &Leash, id: &str) -> Value {
    l.explain(id).await
}

async fn write_token(l: &Leash, run: i64) -> Value {
    l.mint(json!({"workload": "triage-bot", "run": run, "scopes": ["tickets:read", "repo:acme/api:write"], "ttl": "10m", "justification": "fix triage"})).await
}

#[tokio::test]
async fn each_decision_path_allows_or_denies_with_a_reason_a_person_can_act_on() {
    let l = Leash::start().await;
    let run = l.fixture().await;
    let t = write_token(&l, run).await;
    let tok = t["token"].as_str().unwrap();

    // allow: live, bound, scoped, no policy forbids
    let (allow, why) = decide(&l, tok, "read", "tickets", "T-1", Some("jira")).await;
    assert!(allow, "{why}");
    let (allow, _) = decide(&l, tok, "write", "repo", "acme/api", Some("git")).await;
    assert!(allow);

    // unknown token: a deny with a reason, never an error
    let (allow, why) = decide(
        &l,
        "lsh_notarealtokenatall000000000000000000",
        "read",
        "tickets",
        "T-1",
        None,
    )
    .await;
    assert!(!allow);
    assert!(why.contains("not one this Leash issued"), "{why}");
    let forged = format!("{}x", &tok[..tok.len() - 1]);
    let (allow, why) = decide(&l, &forged, "read", "tickets", "T-1", None).await;
    assert!(!allow && why.contains("signature"), "{why}");

    // no token at all
    let (s, v) = eval(&l, json!({"subject": {"type": "workload", "id": TRIAGE}, "action": {"name": "read"}, "resource": {"type": "tickets", "id": "1"}})).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["decision"], false);
    assert!(
        v["context"]["reason"]
            .as_str()
            .unwrap()
            .contains("subject.properties.token")
    );

    // a read outside the scopes: denied, not a violation
    let (allow, why) = decide(&l, tok, "read", "wiki", "home", None).await;
    assert!(!allow);
    assert!(
        why.contains("no scope of token") && why.contains("wiki:home:read"),
        "{why}"
    );

    // Cedar: a tool the workflow does not declare (finding, no revocation by default)
    let (allow, why) = decide(&l, tok, "read", "tickets", "T-1", Some("curl")).await;
    assert!(!allow);
    assert!(why.contains("does not declare tool `curl`"), "{why}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let f = findings(&l).await;
    assert!(
        f.iter()
            .any(|f| f["kind"] == "violation.undeclared_tool" && f["subject"] == t["id"]),
        "{f:?}"
    );
    assert_eq!(
        token_status(&l, t["id"].as_str().unwrap()).await["status"],
        "active"
    );
    // the same violation again opens no second finding
    decide(&l, tok, "read", "tickets", "T-2", Some("curl")).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        findings(&l)
            .await
            .iter()
            .filter(|f| f["kind"] == "violation.undeclared_tool")
            .count(),
        1
    );

    // Cedar: production resources only from production workloads
    l.ok("/v1/workloads", json!({"name": "dev-bot", "owner": "alice", "environment": "dev", "scope_ceiling": ["repo:*:read"]})).await;
    let dev = l
        .mint(json!({"workload": "dev-bot", "scopes": ["repo:*:read"], "ttl": "5m"}))
        .await;
    let (s, v) = eval(&l, json!({"subject": {"type": "workload", "id": "dev-bot", "properties": {"token": dev["token"]}}, "action": {"name": "read"}, "resource": {"type": "repo", "id": "acme/api", "properties": {"environment": "prod"}}})).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["decision"], false);
    assert_eq!(v["context"]["reasons"][0]["policy"], "prod-only-from-prod");
    assert!(
        v["context"]["reason"]
            .as_str()
            .unwrap()
            .contains("workload `dev-bot` is dev")
    );

    // expired
    let short = l
        .mint(json!({"workload": "triage-bot", "scopes": ["tickets:read"], "ttl": 1}))
        .await;
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let (allow, why) = decide(
        &l,
        short["token"].as_str().unwrap(),
        "read",
        "tickets",
        "T-1",
        None,
    )
    .await;
    assert!(!allow && why.contains("expired at"), "{why}");

    // revoked by hand: seen by the very next decision (the token is cached by now)
    let other = l
        .mint(json!({"workload": "triage-bot", "scopes": ["tickets:read"], "ttl": "5m"}))
        .await;
    let otok = other["token"].as_str().unwrap();
    assert!(decide(&l, otok, "read", "tickets", "T-1", None).await.0);
    l.ok(
        "/v1/revocations",
        json!({"token_or_id": other["id"], "reason": "rotated by hand"}),
    )
    .await;
    let (allow, why) = decide(&l, otok, "read", "tickets", "T-1", None).await;
    assert!(!allow);
    assert!(
        why.contains("was revoked at") && why.contains("because rotated by hand"),
        "{why}"
    );

    // the run ends: "token revoked at … because run N ended", and a finding for use after the run
    l.ok(
        &format!("/v1/runs/{run}/end"),
        json!({"status": "succeeded"}),
    )
    .await;
    let (allow, why) = decide(&l, tok, "read", "tickets", "T-1", None).await;
    assert!(!allow);
    assert!(why.contains(&format!("because run {run} ended")), "{why}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        findings(&l)
            .await
            .iter()
            .any(|f| f["kind"] == "violation.after_run" && f["subject"] == t["id"])
    );

    // every decision about a known token is usage
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (s, u) = l
        .get(&format!("/v1/tokens/{}/usage", t["id"].as_str().unwrap()))
        .await;
    assert_eq!(s, StatusCode::OK, "{u}");
    let totals = u["totals"].as_array().unwrap();
    let allowed_reads = totals
        .iter()
        .find(|x| {
            x["action"] == "read"
                && x["resource"] == "tickets:T-1"
                && x["allowed"] == true
                && x["tool"] == "jira"
        })
        .unwrap();
    assert_eq!(allowed_reads["count"], 1);
    assert_eq!(allowed_reads["workload"], TRIAGE);
    assert!(
        u["recent"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["allowed"] == false && r["reason"] == "forbid:declared-tools-only")
    );
}

/// Decisions are remembered per registry generation: a change that
/// revokes nothing (the workflow's declared tools, same definition) still
/// changes the very next answer to the same request.
#[tokio::test]
async fn a_remembered_decision_never_outlives_a_registry_change() {
    let l = Leash::start().await;
    let run = l.fixture().await;
    let t = write_token(&l, run).await;
    let tok = t["token"].as_str().unwrap();
    for _ in 0..3 {
        let (allow, why) = decide(&l, tok, "read", "tickets", "T-1", Some("jira")).await;
        assert!(allow, "{why}");
    }
    let set_tools = |tools: Value| {
        l.req(
            reqwest::Method::PUT,
            "/v1/workflows/triage",
            Some(json!({"definition": "steps: [read, comment]", "tools": tools})),
        )
    };
    let (s, v) = set_tools(json!(["git"])).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["revoked"]["count"], 0, "{v}");
    let (allow, why) = decide(&l, tok, "read", "tickets", "T-1", Some("jira")).await;
    assert!(!allow);
    assert!(why.contains("does not declare tool `jira`"), "{why}");
    let (s, _) = set_tools(json!(["git", "jira"])).await;
    assert_eq!(s, StatusCode::OK);
    let (allow, why) = decide(&l, tok, "read", "tickets", "T-1", Some("jira")).await;
    assert!(allow, "{why}");
}

#[tokio::test]
async fn a_token_shown_by_another_workload_or_writing_outside_its_scope_is_revoked_with_its_descendants()
 {
    let l = Leash::start().await;
    let run = l.fixture().await;
    let parent = write_token(&l, run).await;
    let child = l.mint(json!({"workload": "triage-bot", "parent": parent["id"], "scopes": ["tickets:read"], "ttl": "5m"})).await;

    // presented by someone else
    let (s, v) = eval(&l, json!({"subject": {"type": "workload", "id": "spiffe://evil.example/agent", "properties": {"token": parent["token"]}}, "action": {"name": "read"}, "resource": {"type": "tickets", "id": "T-1"}})).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["decision"], false);
    assert_eq!(v["context"]["reasons"][0]["kind"], "workload_mismatch");
    // revoked before the answer: explain shows it, descendants too
    let e = token_status(&l, parent["id"].as_str().unwrap()).await;
    assert_eq!(e["status"], "revoked", "{e}");
    assert_eq!(e["revoked"]["trigger"], "policy_violation");
    assert_eq!(
        token_status(&l, child["id"].as_str().unwrap()).await["status"],
        "revoked"
    );
    let f = findings(&l).await;
    let mismatch = f
        .iter()
        .find(|f| f["kind"] == "violation.workload_mismatch")
        .unwrap();
    assert_eq!(mismatch["severity"], "high");
    assert!(
        mismatch["summary"]
            .as_str()
            .unwrap()
            .contains("spiffe://evil.example/agent")
    );

    // a write outside the scopes
    let run2 = l.start_run("triage", "triage-bot").await;
    let t = write_token(&l, run2).await;
    let (allow, why) = decide(
        &l,
        t["token"].as_str().unwrap(),
        "write",
        "repo",
        "other/secret",
        None,
    )
    .await;
    assert!(!allow && why.contains("no scope"), "{why}");
    assert_eq!(
        token_status(&l, t["id"].as_str().unwrap()).await["revoked"]["trigger"],
        "policy_violation"
    );
    assert!(
        findings(&l)
            .await
            .iter()
            .any(|f| f["kind"] == "violation.write_outside_scope")
    );
    // and the next decision says why
    let (_, why) = decide(
        &l,
        t["token"].as_str().unwrap(),
        "read",
        "tickets",
        "T-1",
        None,
    )
    .await;
    assert!(
        why.contains("policy violation (write_outside_scope)"),
        "{why}"
    );
}

#[tokio::test]
async fn violation_responses_are_configurable_per_class() {
    let l = Leash::start_with(&[
        "--on-violation",
        "workload_mismatch=finding",
        "--on-violation",
        "undeclared_tool=revoke",
    ])
    .await;
    let run = l.fixture().await;
    let t = write_token(&l, run).await;
    let (s, v) = eval(&l, json!({"subject": {"type": "workload", "id": "someone-else", "properties": {"token": t["token"]}}, "action": {"name": "read"}, "resource": {"type": "tickets", "id": "T-1"}})).await;
    assert_eq!((s, v["decision"].clone()), (StatusCode::OK, json!(false)));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        token_status(&l, t["id"].as_str().unwrap()).await["status"],
        "active"
    );
    assert!(
        findings(&l)
            .await
            .iter()
            .any(|f| f["kind"] == "violation.workload_mismatch")
    );
    let (allow, _) = decide(
        &l,
        t["token"].as_str().unwrap(),
        "read",
        "tickets",
        "T-1",
        Some("curl"),
    )
    .await;
    assert!(!allow);
    assert_eq!(
        token_status(&l, t["id"].as_str().unwrap()).await["status"],
        "revoked"
    );

    // a bad setting is refused at start
    let out = std::process::Command::new(crate::harness::BIN)
        .args([
            "serve",
            "--data",
            "/nonexistent-leash",
            "--on-violation",
            "after_run=maybe",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a response for after_run"));
}

#[tokio::test]
async fn authzen_transport_and_batch_shapes_follow_the_spec() {
    let l = Leash::start().await;
    let run = l.fixture().await;
    let t = write_token(&l, run).await;
    let tok = t["token"].as_str().unwrap();
    let http = reqwest::Client::new();

    // metadata
    let m = l.public_json("/.well-known/authzen-configuration").await;
    assert_eq!(
        m["access_evaluation_endpoint"],
        format!("{}/access/v1/evaluation", m["issuer"].as_str().unwrap())
    );
    assert!(
        m["access_evaluations_endpoint"]
            .as_str()
            .unwrap()
            .ends_with("/access/v1/evaluations")
    );

    // the PEP must authenticate
    let r = http
        .post(format!("{}/access/v1/evaluation", l.url))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // malformed: 400 with an error message string; X-Request-ID comes back
    let r = http
        .post(format!("{}/access/v1/evaluation", l.url))
        .bearer_auth(&l.token)
        .header("x-request-id", "bfe9eb29-ab87-4ca3-be83-a1d5d8305716")
        .header("content-type", "application/json")
        .body("{\"subject\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        r.headers()["x-request-id"],
        "bfe9eb29-ab87-4ca3-be83-a1d5d8305716"
    );
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("not a valid AuthZEN request")
    );
    let (s, v) = eval(
        &l,
        json!({"subject": subject(tok), "action": {"name": "read"}}),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(v.as_str().unwrap().contains("`resource` is required"));

    // resource-server clients may ask too (HTTP Basic)
    let c = l
        .ok(
            "/v1/clients",
            json!({"workload": "triage-bot", "introspect": true}),
        )
        .await;
    let r = http
        .post(format!("{}/access/v1/evaluation", l.url))
        .basic_auth(c["client_id"].as_str().unwrap(), c["client_secret"].as_str())
        .json(&json!({"subject": subject(tok), "action": {"name": "read"}, "resource": {"type": "tickets", "id": "1"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["decision"], true);

    // batch: the spec's defaults example, with a subject that is ours
    let batch = |semantic: &str| {
        json!({
            "subject": subject(tok),
            "action": {"name": "read"},
            "options": {"evaluations_semantic": semantic},
            "evaluations": [
                {"resource": {"type": "tickets", "id": "1"}},
                {"resource": {"type": "wiki", "id": "2"}},
                {"action": {"name": "write"}, "resource": {"type": "repo", "id": "acme/api"}}
            ]
        })
    };
    let (s, v) = l.post("/access/v1/evaluations", batch("execute_all")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let d: Vec<Value> = v["evaluations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["decision"].clone())
        .collect();
    assert_eq!(d, vec![json!(true), json!(false), json!(true)]);
    let (_, v) = l
        .post("/access/v1/evaluations", batch("deny_on_first_deny"))
        .await;
    let d: Vec<Value> = v["evaluations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["decision"].clone())
        .collect();
    assert_eq!(d, vec![json!(true), json!(false)]);
    let (_, v) = l
        .post("/access/v1/evaluations", batch("permit_on_first_permit"))
        .await;
    assert_eq!(v["evaluations"].as_array().unwrap().len(), 1);
    let (s, v) = l.post("/access/v1/evaluations", batch("sometimes")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(v.as_str().unwrap().contains("execute_all"));
    // an item that is itself malformed gets an error in its context
    let (_, v) = l.post("/access/v1/evaluations", json!({"subject": subject(tok), "evaluations": [{"resource": {"type": "tickets", "id": "1"}}]})).await;
    assert_eq!(v["evaluations"][0]["decision"], false);
    assert_eq!(v["evaluations"][0]["context"]["error"]["status"], 400);
    // no evaluations array: like a single evaluation
    let (_, v) = l.post("/access/v1/evaluations", json!({"subject": subject(tok), "action": {"name": "read"}, "resource": {"type": "tickets", "id": "1"}})).await;
    assert_eq!(v["decision"], true);
    // limits
    let many: Vec<Value> = (0..1001)
        .map(|i| json!({"resource": {"type": "tickets", "id": i.to_string()}}))
        .collect();
    let (s, _) = l
        .post(
            "/access/v1/evaluations",
            json!({"subject": subject(tok), "action": {"name": "read"}, "evaluations": many}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

async fn put_policy(l: &Leash, name: &str, text: &str) -> (StatusCode, String) {
    let r = reqwest::Client::new()
        .put(format!("{}/v1/policies/{name}", l.url))
        .bearer_auth(&l.token)
        .body(text.to_owned())
        .send()
        .await
        .unwrap();
    (r.status(), r.text().await.unwrap())
}

#[tokio::test]
async fn policies_are_validated_before_activation_and_hot_reloaded() {
    let l = Leash::start().await;
    let run = l.fixture().await;
    let t = write_token(&l, run).await;
    let tok = t["token"].as_str().unwrap().to_owned();
    assert!(decide(&l, &tok, "read", "tickets", "T-9", None).await.0);

    // invalid Cedar: refused with Cedar's diagnostics, nothing changes
    let (s, body) = put_policy(
        &l,
        "bad",
        "forbid (principal, action, resource) when { resource.colour == \"red\" };",
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body.contains("policies refused") && body.contains("colour"),
        "{body}"
    );
    assert!(!l.data().join("policies/bad.cedar").exists());
    assert!(decide(&l, &tok, "read", "tickets", "T-9", None).await.0);

    // a valid policy through the API is active at once, with its reason
    let sealed = "@id(\"sealed-ticket\")\n@reason(\"ticket T-9 is sealed by legal; ask legal for access\")\nforbid (principal, action in [Leash::Action::\"read\", Leash::Action::\"write\", Leash::Action::\"admin\"], resource) when { resource.id == \"T-9\" };\n";
    let (s, body) = put_policy(&l, "sealed", sealed).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (allow, why) = decide(&l, &tok, "read", "tickets", "T-9", None).await;
    assert!(!allow);
    assert_eq!(why, "ticket T-9 is sealed by legal; ask legal for access");
    let (_, v) = l.get("/v1/policies").await;
    assert!(
        v["policies"]
            .as_array()
            .unwrap()
            .contains(&json!("sealed-ticket"))
    );

    // hot reload: a file dropped into the directory takes effect by itself
    let dir = l.data().join("policies");
    std::fs::write(
        dir.join("t8.cedar"),
        sealed.replace("sealed-ticket", "t8").replace("T-9", "T-8"),
    )
    .unwrap();
    let tok2 = tok.clone();
    assert!(
        until(async || !decide(&l, &tok2, "read", "tickets", "T-8", None).await.0).await,
        "the new file was not picked up"
    );
    // a broken edit is refused: the previous set stays active
    std::fs::write(
        dir.join("t8.cedar"),
        "forbid (principal, action, resource) when { nonsense };",
    )
    .unwrap();
    assert!(
        until(async || l
            .public_text("/metrics")
            .await
            .contains("leash_policy_reload_failures_total 1"))
        .await
    );
    assert!(!decide(&l, &tok, "read", "tickets", "T-8", None).await.0);
    assert!(decide(&l, &tok, "read", "tickets", "T-1", None).await.0);
    std::fs::remove_file(dir.join("t8.cedar")).unwrap();

    // removing a policy through the API
    let r = reqwest::Client::new()
        .delete(format!("{}/v1/policies/sealed", l.url))
        .bearer_auth(&l.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(until(async || decide(&l, &tok, "read", "tickets", "T-9", None).await.0).await);

    // leash policy test FILE: offline against the defaults, and against the server
    let samples = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../policy/samples/defaults.json"
    );
    let out = l.cli(&["policy", "test", samples, "--defaults"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 failed"));
    let out = l.cli(&["policy", "test", samples]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let wrong = l.root.path().join("wrong.json");
    std::fs::write(&wrong, json!([{"name": "dev bot reads prod", "input": {"workload": {"name": "b", "environment": "dev"}, "action": "read", "resource": {"type": "repo", "id": "x", "properties": {"environment": "prod"}}}, "expect": "allow"}]).to_string()).unwrap();
    let out = l.cli(&["policy", "test", wrong.to_str().unwrap(), "--defaults"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("FAIL  dev bot reads prod"));
}

#[tokio::test]
async fn a_write_scope_waits_for_its_owner_and_is_issued_once() {
    let l = Leash::start_exactly(&["--write-budget", "1"]).await;
    let run = l.fixture().await;
    l.ok("/v1/owners", json!({"name": "bob", "email": "bob@acme.io"}))
        .await;
    l.ok(
        "/v1/owners",
        json!({"name": "carol", "email": "carol@acme.io"}),
    )
    .await;
    let alice = l.ok("/v1/owners/alice/credentials", json!({})).await["credential"]
        .as_str()
        .unwrap()
        .to_owned();
    let bob = l.ok("/v1/owners/bob/credentials", json!({})).await["credential"]
        .as_str()
        .unwrap()
        .to_owned();
    let carol = l.ok("/v1/owners/carol/credentials", json!({})).await["credential"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(alice.starts_with("lsho_"));

    // reads need no approval
    let (s, _) = l
        .post(
            "/v1/tokens",
            json!({"workload": "triage-bot", "scopes": ["tickets:read"], "ttl": "5m"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    // a write: 202 with a pending request, no token
    let req = json!({"workload": "triage-bot", "run": run, "scopes": ["repo:acme/api:write"], "ttl": "5m", "justification": "hotfix for INC-7"});
    let (s, a) = l.post("/v1/tokens", req.clone()).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{a}");
    assert_eq!(a["status"], "pending");
    assert_eq!(a["owner"], "alice");
    assert!(a.get("token").is_none());
    let id = a["id"].as_i64().unwrap();
    // without a justification: refused, not queued
    let (s, v) = l
        .post(
            "/v1/tokens",
            json!({"workload": "triage-bot", "scopes": ["repo:acme/api:write"], "ttl": "5m"}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    // above the ceiling: refused, not queued
    let (s, _) = l.post("/v1/tokens", json!({"workload": "triage-bot", "scopes": ["repo:other/x:write"], "ttl": "5m", "justification": "x"})).await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // not claimable yet
    let (s, _) = l
        .post(&format!("/v1/approvals/{id}/token"), json!({}))
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    // the operator credential cannot approve; neither can another owner
    let http = reqwest::Client::new();
    let approve = |cred: String, id: i64| {
        let http = http.clone();
        let url = format!("{}/v1/approvals/{id}/approve", l.url);
        async move {
            let r = http
                .post(url)
                .bearer_auth(cred)
                .json(&json!({"note": "ok, INC-7"}))
                .send()
                .await
                .unwrap();
            (r.status(), r.json::<Value>().await.unwrap())
        }
    };
    assert_eq!(
        approve(l.token.clone(), id).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (s, v) = approve(bob.clone(), id).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .contains("only its owner `alice` or a delegate")
    );
    // a named delegate can
    l.ok("/v1/owners/alice/delegates", json!({"delegate": "bob"}))
        .await;
    let (s, v) = approve(bob.clone(), id).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        (v["status"].as_str(), v["decided_by"].as_str()),
        (Some("approved"), Some("bob"))
    );
    // the token goes to the requester, once
    let (s, m) = l
        .post(&format!("/v1/approvals/{id}/token"), json!({}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{m}");
    assert_eq!(m["scopes"], json!(["repo:acme/api:write"]));
    let (s, _) = l
        .post(&format!("/v1/approvals/{id}/token"), json!({}))
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (_, a) = l.get(&format!("/v1/approvals/{id}")).await;
    assert_eq!(
        (a["status"].as_str(), a["token_id"].as_str()),
        (Some("issued"), m["id"].as_str())
    );

    // the write budget (1 live write-capable token) holds a second approved request back
    let (_, a2) = l.post("/v1/tokens", req.clone()).await;
    let id2 = a2["id"].as_i64().unwrap();
    assert_eq!(approve(alice.clone(), id2).await.0, StatusCode::OK);
    let (s, v) = l
        .post(&format!("/v1/approvals/{id2}/token"), json!({}))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["rule"], "write_budget");
    l.ok(
        "/v1/revocations",
        json!({"token_or_id": m["id"], "reason": "done"}),
    )
    .await;
    let (s, _) = l
        .post(&format!("/v1/approvals/{id2}/token"), json!({}))
        .await;
    assert_eq!(s, StatusCode::CREATED);

    // a denial is final
    let (_, a3) = l.post("/v1/tokens", req.clone()).await;
    let id3 = a3["id"].as_i64().unwrap();
    let r = http
        .post(format!("{}/v1/approvals/{id3}/deny", l.url))
        .bearer_auth(&carol)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let r = http
        .post(format!("{}/v1/approvals/{id3}/deny", l.url))
        .bearer_auth(&alice)
        .json(&json!({"note": "use the read path"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(approve(alice.clone(), id3).await.0, StatusCode::CONFLICT);
    let (s, _) = l
        .post(&format!("/v1/approvals/{id3}/token"), json!({}))
        .await;
    assert_eq!(s, StatusCode::CONFLICT);

    // the write ratio
    let (_, w) = l.get("/v1/write-ratio").await;
    assert_eq!(
        (w["active"].as_u64(), w["active_write"].as_u64()),
        (Some(2), Some(1)),
        "{w}"
    );

    // over OAuth, a write scope needs `approval=ID`
    let c = l.ok("/v1/clients", json!({"workload": "triage-bot"})).await;
    let r = http
        .post(format!("{}/oauth2/token", l.url))
        .basic_auth(
            c["client_id"].as_str().unwrap(),
            c["client_secret"].as_str(),
        )
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "repo:acme/api:write"),
            ("justification", "x"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "invalid_scope");
    assert!(
        v["error_description"]
            .as_str()
            .unwrap()
            .contains("approval")
    );

    // the CLI: list, and a mint that answers with the request
    let out = l.cli(&["approvals", "list", "--status", "denied"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("use the read path")
            || String::from_utf8_lossy(&out.stdout).contains("denied")
    );
    let out = l.cli(&[
        "mint",
        "--workload",
        "triage-bot",
        "--scope",
        "repo:acme/api:write",
        "--ttl",
        "5m",
        "--justification",
        "cli",
    ]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs approval"));
    assert!(out.stdout.is_empty() || !String::from_utf8_lossy(&out.stdout).contains("eyJ"));
}

#[tokio::test]
async fn break_glass_is_loud_time_boxed_and_every_use_is_listed() {
    let hook = Receiver::start(200).await;
    let l = Leash::start_exactly(&["--notify-url", &hook.url]).await;
    l.fixture().await;
    // over the ceiling (repo:*:admin), no approval needed, but a reason and at most 1 h
    let (s, v) = l.post("/v1/break-glass", json!({"workload": "triage-bot", "scopes": ["repo:*:admin"], "reason": "", "ttl": "10m"})).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let (s, v) = l.post("/v1/break-glass", json!({"workload": "triage-bot", "scopes": ["repo:*:admin"], "reason": "prod down", "ttl": "2h"})).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(v["detail"].as_str().unwrap().contains("at most 1h"));
    let (s, g) = l.post("/v1/break-glass", json!({"workload": "triage-bot", "scopes": ["repo:*:admin"], "reason": "INC-9: prod down", "ttl": 3})).await;
    assert_eq!(s, StatusCode::CREATED, "{g}");
    let tok = g["token"].as_str().unwrap();
    // loud: webhook, audit, explain
    let got = hook.wait_for(1).await;
    assert_eq!(got[0].json()["event"], "break_glass");
    assert_eq!(got[0].json()["reason"], "INC-9: prod down");
    let e = l.explain(g["id"].as_str().unwrap()).await;
    assert_eq!(e["break_glass"], true, "{e}");
    let (_, ev) = l.get("/v1/audit/events?limit=100").await;
    assert!(
        ev.as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "token.break_glass")
    );
    // it works, and each use is recorded
    let (allow, why) = decide(&l, tok, "admin", "repo", "acme/api", None).await;
    assert!(allow, "{why}");
    // revoked at its TTL
    tokio::time::sleep(Duration::from_millis(3200)).await;
    let e = l.explain(g["id"].as_str().unwrap()).await;
    assert_eq!(e["status"], "revoked", "{e}");
    assert_eq!(e["revoked"]["trigger"], "expiry");
    let (allow, _) = decide(&l, tok, "admin", "repo", "acme/api", None).await;
    assert!(!allow);
    // usage is written in batches: wait for the denial to land
    let mut text = String::new();
    let listed = until(async || {
        text = String::from_utf8_lossy(&l.cli(&["break-glass", "--list"]).stdout).into_owned();
        text.contains("allowed") && text.contains("denied")
    })
    .await;
    assert!(listed, "{text}");
    assert!(
        text.contains("INC-9: prod down") && text.contains("admin repo:acme/api"),
        "{text}"
    );

    // with --break-glass-approval a second person must approve first
    let l2 = Leash::start_exactly(&["--break-glass-approval"]).await;
    l2.fixture().await;
    let (s, a) = l2.post("/v1/break-glass", json!({"workload": "triage-bot", "scopes": ["repo:*:admin"], "reason": "INC-10", "ttl": "5m"})).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{a}");
    assert_eq!(a["kind"], "break_glass");
    let cred = l2.ok("/v1/owners/alice/credentials", json!({})).await["credential"]
        .as_str()
        .unwrap()
        .to_owned();
    let id = a["id"].as_i64().unwrap();
    let out = l2.cli(&[
        "approvals",
        "approve",
        &id.to_string(),
        "--owner-token",
        &cred,
        "--note",
        "seen",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = l2.cli(&["approvals", "claim", &id.to_string(), "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        l2.explain(m["id"].as_str().unwrap()).await["break_glass"],
        true
    );
}

/// `leash bench` drives the real server with its own HTTP/1.1 client: every
/// request answered, none failed, latencies reported in order.
#[tokio::test]
async fn bench_drives_the_real_server() {
    let l = Leash::start().await;
    for args in [
        &[
            "bench",
            "health",
            "--clients",
            "3",
            "--duration",
            "1s",
            "--json",
        ][..],
        &[
            "bench",
            "authz",
            "--clients",
            "4",
            "--duration",
            "1s",
            "--tokens",
            "5",
            "--json",
        ][..],
    ] {
        let o = l.cli(args);
        assert!(
            o.status.success(),
            "{args:?}: {}",
            crate::harness::stderr(&o)
        );
        let out = crate::harness::stdout(&o);
        let reports: Vec<Value> = serde_json::Deserializer::from_str(&out)
            .into_iter()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(!reports.is_empty(), "{out}");
        for r in reports {
            assert!(r["requests"].as_u64().unwrap() > 0, "{r}");
            assert_eq!(r["errors"], 0, "{r}");
            let (p50, p99, max) = (
                r["p50_ms"].as_f64().unwrap(),
                r["p99_ms"].as_f64().unwrap(),
                r["max_ms"].as_f64().unwrap(),
            );
            assert!(p50 > 0.0 && p50 <= p99 && p99 <= max, "{r}");
        }
    }
}
