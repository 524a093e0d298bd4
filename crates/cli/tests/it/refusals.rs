//! Every refusal and bad input gets a clear error, and nothing is half-stored.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{Leash, stderr};

async fn refused(l: &Leash, body: Value) -> (StatusCode, Value) {
    let (s, v) = l.post("/v1/tokens", body).await;
    assert!(!s.is_success(), "expected a refusal, got {v}");
    (s, v)
}

#[tokio::test]
async fn every_issuance_rule_refuses_with_its_name_and_a_remedy() {
    let l = Leash::start().await;
    let run = l.fixture().await;
    let events = l.event_count().await;

    let (s, v) = refused(&l, json!({"workload": "triage-bot", "scopes": ["repo:other/x:write"], "ttl": "5m", "justification": "x"})).await;
    assert_eq!(
        (s.as_u16(), v["rule"].as_str()),
        (403, Some("scope_ceiling"))
    );
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .contains("above its scope ceiling"),
        "{v}"
    );
    assert_eq!(v["type"], "urn:leash:error:refused");

    let (s, v) = refused(
        &l,
        json!({"workload": "triage-bot", "scopes": ["tickets:read"], "ttl": "2h"}),
    )
    .await;
    assert_eq!((s.as_u16(), v["rule"].as_str()), (403, Some("ttl_cap")));
    assert!(
        v["detail"].as_str().unwrap().contains("prod cap of 1h"),
        "{v}"
    );

    let (s, v) = refused(
        &l,
        json!({"workload": "triage-bot", "scopes": ["repo:acme/api:write"], "ttl": "5m"}),
    )
    .await;
    assert_eq!(
        (s.as_u16(), v["rule"].as_str()),
        (403, Some("write_justification"))
    );
    let (_, v) = refused(&l, json!({"workload": "triage-bot", "scopes": ["repo:acme/api:write"], "ttl": "5m", "justification": "   "})).await;
    assert_eq!(
        v["rule"], "write_justification",
        "blank justification is none"
    );

    let (s, v) = refused(
        &l,
        json!({"workload": "triage-bot", "scopes": ["repo acme write"], "ttl": "5m"}),
    )
    .await;
    assert_eq!(s, 400);
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .contains("TYPE[:ID_PATTERN]:ACTION"),
        "{v}"
    );
    let (s, v) = refused(
        &l,
        json!({"workload": "triage-bot", "scopes": [], "ttl": "5m"}),
    )
    .await;
    assert_eq!(
        (s.as_u16(), v["rule"].as_str()),
        (403, Some("request_shape"))
    );
    let (s, v) = refused(
        &l,
        json!({"workload": "triage-bot", "scopes": ["tickets:read"], "ttl": "soon"}),
    )
    .await;
    assert_eq!(s, 400);
    assert!(v["detail"].as_str().unwrap().contains("15m"), "{v}");
    let (s, v) = refused(
        &l,
        json!({"workload": "ghost", "scopes": ["tickets:read"], "ttl": "5m"}),
    )
    .await;
    assert_eq!(s, 404);
    assert!(v["detail"].as_str().unwrap().contains("ghost"));
    let (s, _) = refused(
        &l,
        json!({"workload": "triage-bot", "run": 999, "scopes": ["tickets:read"], "ttl": "5m"}),
    )
    .await;
    assert_eq!(s, 404);
    let (s, v) = refused(&l, json!({"workload": "triage-bot", "scopes": ["tickets:read"], "ttl": "5m", "format": "pasteto"})).await;
    assert_eq!(s, 400, "{v}");

    // a run belongs to its workload
    l.ok("/v1/workloads", json!({"name": "other-bot", "owner": "alice", "environment": "dev", "scope_ceiling": ["tickets:read"]})).await;
    let (s, v) = refused(
        &l,
        json!({"workload": "other-bot", "run": run, "scopes": ["tickets:read"], "ttl": "5m"}),
    )
    .await;
    assert_eq!(
        (s.as_u16(), v["rule"].as_str()),
        (403, Some("run_workload")),
        "{v}"
    );

    // refusals store nothing: only the workload creation above was recorded
    assert_eq!(l.event_count().await, events + 1);
    let (_, list) = l.get("/v1/tokens").await;
    assert_eq!(list.as_array().unwrap().len(), 0);
    let m = l.public_text("/metrics").await;
    assert!(
        m.contains("leash_mint_refusals_total{rule=\"ttl_cap\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("leash_mint_refusals_total{rule=\"scope_ceiling\"} 1"),
        "{m}"
    );
}

#[tokio::test]
async fn registry_bad_input_is_refused_clearly() {
    let l = Leash::start().await;
    l.fixture().await;
    let cases = [
        (
            "/v1/owners",
            json!({"name": "alice", "email": "a@acme.io"}),
            409,
            "already exists",
        ),
        (
            "/v1/owners",
            json!({"name": "bad name", "email": "a@acme.io"}),
            400,
            "not a valid name",
        ),
        (
            "/v1/owners",
            json!({"name": "bob", "email": "not-an-email"}),
            400,
            "email",
        ),
        (
            "/v1/owners",
            json!({"name": "bob", "email": "b@acme.io", "kind": "robot"}),
            400,
            "person team",
        ),
        (
            "/v1/owners",
            json!({"name": "bob", "email": "b@acme.io", "colour": "red"}),
            400,
            "unknown field",
        ),
        (
            "/v1/workloads",
            json!({"name": "w", "owner": "nobody", "environment": "dev", "scope_ceiling": ["a:read"]}),
            404,
            "owner `nobody`",
        ),
        (
            "/v1/workloads",
            json!({"name": "w", "owner": "alice", "environment": "production", "scope_ceiling": ["a:read"]}),
            400,
            "dev stage prod",
        ),
        (
            "/v1/workloads",
            json!({"name": "w", "owner": "alice", "environment": "dev", "scope_ceiling": ["nope"]}),
            400,
            "malformed",
        ),
        (
            "/v1/workloads",
            json!({"name": "w", "owner": "alice", "environment": "dev", "scope_ceiling": []}),
            409,
            "scope ceiling",
        ),
        (
            "/v1/workloads",
            json!({"name": "triage-bot", "owner": "alice", "environment": "dev", "scope_ceiling": ["a:read"]}),
            409,
            "already exists",
        ),
        (
            "/v1/workflows",
            json!({"name": "wf", "owner": "alice"}),
            400,
            "definition",
        ),
        (
            "/v1/workflows",
            json!({"name": "wf", "owner": "alice", "digest": "abc"}),
            400,
            "64 hex",
        ),
        (
            "/v1/workflows",
            json!({"name": "wf", "owner": "alice", "definition": "x", "tools": ["bad tool"]}),
            400,
            "tool name",
        ),
        (
            "/v1/runs",
            json!({"workflow": "nope", "workload": "triage-bot"}),
            404,
            "workflow `nope`",
        ),
        (
            "/v1/runs/1/end",
            json!({"status": "running"}),
            400,
            "succeeded",
        ),
        (
            "/v1/runs/1/end",
            json!({"status": "exploded"}),
            400,
            "succeeded failed cancelled",
        ),
        (
            "/v1/revocations",
            json!({"token_or_id": "tok_nothere", "reason": "x"}),
            404,
            "token",
        ),
        (
            "/v1/revocations",
            json!({"token_or_id": "hello world", "reason": "x"}),
            400,
            "tok_",
        ),
        (
            "/v1/revocations",
            json!({"token_or_id": "lsh_0000000000000000000000000000000000000", "reason": "x"}),
            400,
            "Leash opaque token",
        ),
        (
            "/v1/revocations",
            json!({"token_or_id": "tok_x", "reason": ""}),
            400,
            "reason",
        ),
        (
            "/v1/explain",
            json!({"token_or_id": "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."}),
            400,
            "this Leash",
        ),
    ];
    let events = l.event_count().await;
    for (path, body, status, needle) in cases {
        let (s, v) = l.post(path, body.clone()).await;
        assert_eq!(s.as_u16(), status, "{path} {body}: {v}");
        let detail = v["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains(needle),
            "{path} {body}: `{detail}` lacks `{needle}`"
        );
        assert_eq!(v["status"], status);
    }
    assert_eq!(l.event_count().await, events, "no bad input changed state");
}

#[tokio::test]
async fn credentials_bodies_and_content_types_are_checked() {
    let l = Leash::start().await;
    // no credential, wrong credential: 401 on reads and writes alike
    for (method, path) in [
        ("GET", "/v1/owners"),
        ("POST", "/v1/owners"),
        ("POST", "/v1/tokens"),
        ("GET", "/v1/audit/verify"),
    ] {
        let m: reqwest::Method = method.parse().unwrap();
        let r = l
            .http
            .request(m.clone(), format!("{}{}", l.url, path))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{method} {path}");
        assert!(r.headers().get("www-authenticate").is_some());
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["code"], "unauthorized");
        let r = l
            .http
            .request(m, format!("{}{}", l.url, path))
            .bearer_auth("lshop_wrongwrongwrongwrongwrongwrongwrong")
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    // oversized body: reading stops at the 1 MiB limit with a 413
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let s = tokio::net::TcpStream::connect(l.url.trim_start_matches("http://"))
            .await
            .unwrap();
        let (mut rd, mut wr) = s.into_split();
        let head = format!(
            "POST /v1/owners HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            l.token,
            2 * 1024 * 1024
        );
        let writer = tokio::spawn(async move {
            let _ = wr.write_all(head.as_bytes()).await;
            // the server may hang up before all of it is sent
            let _ = wr.write_all(&vec![b'x'; 2 * 1024 * 1024]).await;
        });
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(std::time::Duration::from_secs(10), rd.read(&mut buf))
            .await
            .expect("no answer to an oversized body")
            .unwrap();
        let resp = String::from_utf8_lossy(&buf[..n]);
        assert!(resp.starts_with("HTTP/1.1 413"), "{resp}");
        assert!(resp.contains("payload_too_large"), "{resp}");
        writer.abort();
    }
    // not JSON
    let r = l
        .http
        .post(format!("{}/v1/owners", l.url))
        .bearer_auth(&l.token)
        .header("content-type", "application/json")
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = l
        .http
        .post(format!("{}/v1/owners", l.url))
        .bearer_auth(&l.token)
        .body("name=x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    // lists are bounded
    let (s, _) = l.get("/v1/tokens?limit=999999").await;
    assert_eq!(s, 200);
    let (s, v) = l.get("/v1/tokens?status=sleeping").await;
    assert_eq!(s, 400, "{v}");
}

#[tokio::test]
async fn cli_reports_errors_and_exits_non_zero() {
    let l = Leash::start().await;
    let o = l.cli(&["owner", "add", "alice", "--email", "alice@acme.io"]);
    assert!(o.status.success());
    let o = l.cli(&[
        "workflow",
        "add",
        "wf",
        "--owner",
        "alice",
        "--definition",
        "does-not-exist.yaml",
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("does-not-exist.yaml cannot be read"),
        "{}",
        stderr(&o)
    );
    let o = l.cli(&["owner", "add", "alice", "--email", "alice@acme.io"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("owner `alice` already exists"),
        "{}",
        stderr(&o)
    );
    let o = l.cli(&[
        "workload",
        "add",
        "bot",
        "--owner",
        "alice",
        "--env",
        "prod",
        "--ceiling",
        "tickets:read",
    ]);
    assert!(o.status.success());
    let o = l.cli(&[
        "mint",
        "--workload",
        "bot",
        "--scope",
        "tickets:read",
        "--ttl",
        "3h",
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("refused (ttl_cap)"), "{}", stderr(&o));
    // wrong credential from the environment
    let o = std::process::Command::new(crate::harness::BIN)
        .args(["owner", "list"])
        .env("LEASH_URL", &l.url)
        .env("LEASH_TOKEN", "lshop_wrong")
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("missing or wrong credential"),
        "{}",
        stderr(&o)
    );
    // no server at all
    let o = std::process::Command::new(crate::harness::BIN)
        .args(["owner", "list"])
        .env("LEASH_URL", "http://127.0.0.1:9")
        .env("LEASH_TOKEN", "x")
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("cannot reach Leash"), "{}", stderr(&o));
}

#[tokio::test]
async fn ttl_caps_are_configurable() {
    let l = Leash::start_with(&["--ttl-cap", "prod=10m", "--ttl-cap", "dev=20m"]).await;
    l.fixture().await;
    let (s, v) = l
        .post(
            "/v1/tokens",
            json!({"workload": "triage-bot", "scopes": ["tickets:read"], "ttl": "15m"}),
        )
        .await;
    assert_eq!(s, 403);
    assert!(
        v["detail"].as_str().unwrap().contains("prod cap of 10m"),
        "{v}"
    );
    l.mint(json!({"workload": "triage-bot", "scopes": ["tickets:read"], "ttl": "10m"}))
        .await;
}
