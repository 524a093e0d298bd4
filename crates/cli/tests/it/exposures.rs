//! Exposure feeds: a Leash token pasted into Slack, Jira or a log is
//! revoked before the webhook is answered; third-party secrets find their
//! owner, blast radius and connector; forged calls act on nothing.

use base64::Engine;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{Leash, Receiver, hmac_hex, stdout};

/// A third-party credential in a real format (DigitalOcean PAT).
const DO_TOKEN: &str = "dop_v1_a4c123b1612dd272d1371c17149d439536b3216fdaeeb975729fae923d5a4fd1";
const SLACK_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const JIRA_SECRET: &str = "jira-webhook-secret-for-tests";

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn raw_post(
    l: &Leash,
    path: &str,
    body: &[u8],
    headers: &[(&str, String)],
) -> (StatusCode, Value) {
    let mut r = l
        .http
        .post(format!("{}{}", l.url, path))
        .header("content-type", "application/json")
        .body(body.to_vec());
    for (k, v) in headers {
        r = r.header(*k, v);
    }
    let resp = r.send().await.unwrap();
    let s = resp.status();
    let text = resp.text().await.unwrap();
    (
        s,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn slack_post(l: &Leash, body: &Value, ts: i64, secret: &str) -> (StatusCode, Value) {
    let bytes = body.to_string().into_bytes();
    let mut base = format!("v0:{ts}:").into_bytes();
    base.extend_from_slice(&bytes);
    let sig = format!("v0={}", hmac_hex(secret.as_bytes(), &base));
    raw_post(
        l,
        "/v1/exposures",
        &bytes,
        &[
            ("x-slack-signature", sig),
            ("x-slack-request-timestamp", ts.to_string()),
        ],
    )
    .await
}

fn slack_message(text: &str, ts: &str) -> Value {
    json!({"type": "event_callback", "team_id": "T0ACME", "event_id": "Ev1",
           "event": {"type": "message", "channel": "C0OPS", "user": "U1", "text": text, "ts": ts}})
}

async fn start_with_feeds(extra: &[&str]) -> Leash {
    let dir = tempfile::tempdir().unwrap();
    let slack = dir.path().join("slack.secret");
    let jira = dir.path().join("jira.secret");
    std::fs::write(&slack, SLACK_SECRET).unwrap();
    std::fs::write(&jira, JIRA_SECRET).unwrap();
    let mut args: Vec<String> = vec![
        "--slack-signing-secret-file".into(),
        slack.display().to_string(),
        "--jira-webhook-secret-file".into(),
        jira.display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let l = Leash::start_with(&refs).await;
    // the server read the files at start-up
    drop(dir);
    l
}

#[tokio::test]
async fn a_token_pasted_in_slack_is_revoked_before_the_webhook_is_answered() {
    let l = start_with_feeds(&[]).await;
    let run = l.fixture().await;
    let parent = l
        .mint(json!({"workload": "triage-bot", "run": run, "scopes": ["tickets:read"], "ttl": "30m", "format": "opaque"}))
        .await;
    let secret = parent["token"].as_str().unwrap().to_owned();
    let child = l
        .mint(json!({"workload": "triage-bot", "run": run, "scopes": ["tickets:read"], "ttl": "10m", "parent": parent["id"]}))
        .await;

    // Slack's URL verification handshake
    let (s, v) = slack_post(
        &l,
        &json!({"type": "url_verification", "challenge": "c-123", "token": "x"}),
        now_secs(),
        SLACK_SECRET,
    )
    .await;
    assert_eq!(
        (s.as_u16(), v["challenge"].as_str()),
        (200, Some("c-123")),
        "{v}"
    );

    // forged, stale and unsigned copies of the same message act on nothing
    let msg = slack_message(
        &format!("hey can someone try with {secret} ?"),
        "1732870000.000100",
    );
    let (s, v) = slack_post(&l, &msg, now_secs(), "wrong-secret").await;
    assert_eq!(s, 401, "{v}");
    assert!(
        v["detail"].as_str().unwrap().contains("does not verify"),
        "{v}"
    );
    let (s, v) = slack_post(&l, &msg, now_secs() - 600, SLACK_SECRET).await;
    assert_eq!(s, 401);
    let (s, _) = slack_post(&l, &msg, i64::MIN, SLACK_SECRET).await;
    assert_eq!(s, 401, "a hostile timestamp is refused, not an overflow");
    assert!(v["detail"].as_str().unwrap().contains("5 minutes"), "{v}");
    let (s, _) = raw_post(&l, "/v1/exposures", msg.to_string().as_bytes(), &[]).await;
    assert_eq!(s, 401);
    assert_eq!(
        l.explain(parent["id"].as_str().unwrap()).await["status"],
        "active"
    );

    let (s, v) = slack_post(&l, &msg, now_secs(), SLACK_SECRET).await;
    assert_eq!(s, 200, "{v}");
    let e = &v["exposures"][0];
    assert_eq!(v["exposures"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(e["action"], "revoked");
    assert_eq!(e["detector"], "leash-opaque");
    assert_eq!(e["source"], "chat");
    assert_eq!(e["location"], "slack:T0ACME/C0OPS/1732870000.000100");
    assert_eq!(e["token"], parent["id"]);
    assert_eq!(e["owner"], "alice");
    assert_eq!(e["revoked_count"], 2);
    assert!(
        e["detection_to_revocation_ms"].as_i64().unwrap() < 1000,
        "{e}"
    );
    assert!(
        !v.to_string().contains(&secret),
        "the secret is never echoed"
    );

    // the registry shows both revoked, by exposure and by cascade
    let x = l.explain(parent["id"].as_str().unwrap()).await;
    assert_eq!(
        (x["status"].as_str(), x["revoked"]["trigger"].as_str()),
        (Some("revoked"), Some("exposure")),
        "{x}"
    );
    assert_eq!(x["revoked"]["event"]["kind"], "exposure.detected");
    let c = l.explain(child["id"].as_str().unwrap()).await;
    assert_eq!(c["revoked"]["trigger"], "parent_revoked");

    // Slack retries the same event: nothing new happens
    let events = l.event_count().await;
    let (s, v) = slack_post(&l, &msg, now_secs(), SLACK_SECRET).await;
    assert_eq!(s, 200);
    assert_eq!(v["exposures"][0]["repeat"], true);
    assert_eq!(l.event_count().await, events);

    // a finding was opened for the owner
    let (_, f) = l.get("/v1/findings?status=open").await;
    assert_eq!(f[0]["kind"], "exposure");
    assert_eq!(f[0]["owner"], "alice");
    assert_eq!(f[0]["severity"], "high");
    assert!(
        f[0]["summary"].as_str().unwrap().contains("slack:T0ACME"),
        "{f}"
    );

    // other Slack events are acknowledged and ignored
    let (s, v) = slack_post(
        &l,
        &json!({"type": "event_callback", "event": {"type": "reaction_added"}}),
        now_secs(),
        SLACK_SECRET,
    )
    .await;
    assert_eq!(s, 200);
    assert!(
        v["ignored"].as_str().unwrap().contains("reaction_added"),
        "{v}"
    );
}

#[tokio::test]
async fn a_jwt_in_a_jira_comment_is_revoked_and_bad_signatures_are_refused() {
    let l = start_with_feeds(&[]).await;
    let run = l.fixture().await;
    let t = l
        .mint(
            json!({"workload": "triage-bot", "run": run, "scopes": ["tickets:read"], "ttl": "30m"}),
        )
        .await;
    let jwt = t["token"].as_str().unwrap();
    // Jira Cloud sends comments in Atlassian Document Format
    let body = json!({
        "webhookEvent": "comment_created",
        "issue": {"key": "SUP-4127", "fields": {"summary": "bot failing"}},
        "comment": {"id": "10042", "body": {"type": "doc", "version": 1, "content": [
            {"type": "paragraph", "content": [{"type": "text", "text": "here is the header I used: Authorization: Bearer "},
                                               {"type": "text", "text": jwt}]}]}}
    })
    .to_string();
    let (s, _) = raw_post(
        &l,
        "/v1/exposures",
        body.as_bytes(),
        &[(
            "x-hub-signature",
            format!("sha256={}", hmac_hex(b"nope", body.as_bytes())),
        )],
    )
    .await;
    assert_eq!(s, 401);
    assert_eq!(
        l.explain(t["id"].as_str().unwrap()).await["status"],
        "active"
    );

    let sig = format!(
        "sha256={}",
        hmac_hex(JIRA_SECRET.as_bytes(), body.as_bytes())
    );
    let (s, v) = raw_post(
        &l,
        "/v1/exposures",
        body.as_bytes(),
        &[("x-hub-signature", sig)],
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let e = &v["exposures"][0];
    assert_eq!(
        (e["action"].as_str(), e["detector"].as_str()),
        (Some("revoked"), Some("leash-jwt")),
        "{v}"
    );
    assert_eq!(e["location"], "jira:SUP-4127#comment-10042");
    assert_eq!(e["source"], "ticket");
    assert_eq!(
        l.explain(t["id"].as_str().unwrap()).await["revoked"]["trigger"],
        "exposure"
    );

    // a JWT-shaped string we did not sign is not ours: nothing is revoked
    let (s, v) = l
        .post("/v1/exposures", json!({"source": "log", "location": "worker-7", "text": "auth eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"}))
        .await;
    assert_eq!(s, 200);
    assert!(
        v["exposures"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["action"] != "revoked"),
        "{v}"
    );
}

#[tokio::test]
async fn a_tracked_third_party_secret_reaches_its_owner_and_connector() {
    let owner_hook = Receiver::start(200).await;
    let connector = Receiver::start(200).await;
    let failing = Receiver::start(500).await;
    let dir = tempfile::tempdir().unwrap();
    let wsecret = dir.path().join("webhook.secret");
    std::fs::write(&wsecret, "outbound-signing-secret").unwrap();
    let l = Leash::start_with(&[
        "--notify-url",
        &owner_hook.url,
        "--webhook-secret-file",
        wsecret.to_str().unwrap(),
        "--connector",
        &format!("do-revoker={}", connector.url),
        "--connector",
        &format!("broken={}", failing.url),
    ])
    .await;
    l.fixture().await;
    let (s, x) = l
        .post("/v1/external-tokens", json!({"name": "deploy-do-token", "kind": "digitalocean-pat", "owner": "alice", "secret": DO_TOKEN, "workloads": ["triage-bot"], "workflows": ["triage"], "stored_in": "vault:ci/do", "connector": "do-revoker"}))
        .await;
    assert_eq!(s, 201, "{x}");
    assert_eq!(x["fingerprint"].as_str().unwrap().len(), 64);
    assert!(!x.to_string().contains(DO_TOKEN));
    let (s, v) = l
        .post(
            "/v1/external-tokens",
            json!({"name": "x", "kind": "k", "fingerprint": "ab".repeat(32), "connector": "nope"}),
        )
        .await;
    assert_eq!(s, 400);
    assert!(v["detail"].as_str().unwrap().contains("do-revoker"), "{v}");

    let text = format!("2026-11-29T10:00:01Z deploy: DIGITALOCEAN_TOKEN={DO_TOKEN} exit 1");
    let (s, v) = l
        .post(
            "/v1/exposures",
            json!({"source": "log", "location": "ci/build-8812", "text": text}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let e = &v["exposures"][0];
    assert_eq!(e["action"], "matched_external");
    assert_eq!(e["external"], "deploy-do-token");
    assert_eq!(e["owner"], "alice");
    assert_eq!(
        e["blast_radius"],
        json!({"workloads": ["triage-bot"], "workflows": ["triage"]})
    );

    // the connector is called, signed, without the secret; the token is marked revoked
    let calls = connector.wait_for(1).await;
    let sig = calls[0].header("leash-signature").unwrap();
    assert_eq!(
        sig,
        format!(
            "sha256={}",
            hmac_hex(b"outbound-signing-secret", &calls[0].body)
        )
    );
    assert_eq!(calls[0].json()["external_token"]["name"], "deploy-do-token");
    assert!(!String::from_utf8_lossy(&calls[0].body).contains(DO_TOKEN));
    let mut status = Value::Null;
    for _ in 0..100 {
        status = l.get(&format!("/v1/external-tokens/{}", x["id"])).await.1;
        if status["status"] == "revoked" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(status["status"], "revoked", "{status}");

    // the owner is notified with a signed message naming them, never the secret
    let notes = owner_hook.wait_for(1).await;
    let n = notes[0].json();
    assert_eq!(n["owner"]["email"], "alice@acme.io");
    assert_eq!(n["exposure"]["external"], "deploy-do-token");
    assert_eq!(n["finding"]["severity"], "critical");
    assert!(notes[0].header("leash-signature").is_some());
    assert!(!String::from_utf8_lossy(&notes[0].body).contains(DO_TOKEN));

    // a connector that fails is recorded as such (and audited)
    let other = "dop_v1_9b2e4f71c03a8d56e1f7b94a2c6d08e35f1a7b9c4e2d60f83a5c1e7b9d2f4a60";
    l.ok("/v1/external-tokens", json!({"name": "other-do", "kind": "digitalocean-pat", "secret": other, "connector": "broken"})).await;
    l.ok(
        "/v1/exposures",
        json!({"source": "chat", "location": "teams:ops", "text": format!("token {other}")}),
    )
    .await;
    failing.wait_for(1).await;
    let mut st = Value::Null;
    for _ in 0..300 {
        st = l.get("/v1/external-tokens?limit=10").await.1;
        if st[1]["status"] == "revocation_failed" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(st[1]["status"], "revocation_failed", "{st}");
    assert_eq!(
        st[1]["owner"],
        Value::Null,
        "an unowned credential shows as such"
    );

    // an untracked secret is recorded for review, with nobody to tell
    let (_, v) = l
        .post("/v1/exposures", json!({"source": "code", "location": "repo:acme/api", "findings": [{"detector": "github-pat", "fingerprint": "ef".repeat(32), "excerpt": "ghp_…(40 chars)", "location": "src/ci.py:3"}]}))
        .await;
    assert_eq!(v["exposures"][0]["action"], "unmatched", "{v}");
    assert_eq!(v["exposures"][0]["location"], "src/ci.py:3");
    assert_eq!(
        v["exposures"][0]["excerpt"], "ghp_…(40 chars)",
        "a redacted excerpt is kept as sent"
    );

    // the CLI shows the same
    let o = l.cli(&["exposures", "list", "--json"]);
    let list: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 3, "{}", stdout(&o));
    let o = l.cli(&["findings", "list"]);
    assert!(stdout(&o).contains("critical"), "{}", stdout(&o));
    let id = l.get("/v1/findings?status=open").await.1[0]["id"]
        .as_i64()
        .unwrap();
    let o = l.cli(&[
        "findings",
        "ack",
        &id.to_string(),
        "--note",
        "rotating",
        "--json",
    ]);
    assert_eq!(
        serde_json::from_slice::<Value>(&o.stdout).unwrap()["status"],
        "acknowledged"
    );
}

#[tokio::test]
async fn github_partner_alerts_are_verified_and_labelled() {
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pk8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pk8.as_ref()).unwrap();
    // SubjectPublicKeyInfo for a P-256 key: fixed prefix ‖ uncompressed point
    let mut spki = hex::decode("3059301306072a8648ce3d020106082a8648ce3d030107034200").unwrap();
    spki.extend_from_slice(pair.public_key().as_ref());
    let b64 = base64::engine::general_purpose::STANDARD;
    let pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        b64.encode(&spki)
    );
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("github-keys.json");
    std::fs::write(
        &keys,
        json!({"public_keys": [{"key_identifier": "kid-gh-1", "key": pem, "is_current": true}]})
            .to_string(),
    )
    .unwrap();
    let l = Leash::start_with(&["--github-keys", keys.to_str().unwrap()]).await;
    let run = l.fixture().await;
    let t = l
        .mint(json!({"workload": "triage-bot", "run": run, "scopes": ["tickets:read"], "ttl": "30m", "format": "opaque"}))
        .await;
    let token = t["token"].as_str().unwrap();
    let body = json!([
        {"token": token, "type": "leash_opaque_token", "url": "https://github.com/acme/api/blob/abc/ci.yml", "source": "content"},
        {"token": "lsh_notarealtokenatallnotarealtoken00", "type": "leash_opaque_token", "url": "https://github.com/acme/x", "source": "content"}
    ])
    .to_string();
    let sign = |b: &str| b64.encode(pair.sign(&rng, b.as_bytes()).unwrap().as_ref());

    // wrong signature, unknown key id, missing headers: 401, nothing acted on
    for headers in [
        vec![
            ("github-public-key-identifier", "kid-gh-1".to_owned()),
            ("github-public-key-signature", sign("other body")),
        ],
        vec![
            ("github-public-key-identifier", "kid-unknown".to_owned()),
            ("github-public-key-signature", sign(&body)),
        ],
        vec![],
    ] {
        let (s, v) = raw_post(&l, "/v1/partners/github", body.as_bytes(), &headers).await;
        assert_eq!(s, 401, "{v}");
    }
    assert_eq!(
        l.explain(t["id"].as_str().unwrap()).await["status"],
        "active"
    );

    let (s, v) = raw_post(
        &l,
        "/v1/partners/github",
        body.as_bytes(),
        &[
            ("github-public-key-identifier", "kid-gh-1".to_owned()),
            ("github-public-key-signature", sign(&body)),
        ],
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v[0]["label"], "true_positive");
    assert_eq!(v[0]["token_type"], "leash_opaque_token");
    assert_eq!(v[0]["token_hash"].as_str().unwrap().len(), 64);
    assert_eq!(v[1]["label"], "false_positive");
    assert!(!v.to_string().contains(token));
    let x = l.explain(t["id"].as_str().unwrap()).await;
    assert_eq!(x["revoked"]["trigger"], "exposure");
    let (_, list) = l.get("/v1/exposures").await;
    assert_eq!(list[0]["source"], "partner");
    assert_eq!(
        list[0]["location"],
        "https://github.com/acme/api/blob/abc/ci.yml"
    );
}

#[tokio::test]
async fn bad_exposure_reports_get_clear_errors() {
    let l = Leash::start().await;
    for (body, want) in [
        (
            json!({"source": "email", "location": "x", "text": "t"}),
            "ticket chat code git log partner",
        ),
        (json!({"source": "chat", "location": "x"}), "give `text`"),
        (
            json!({"source": "chat", "location": " ", "text": "t"}),
            "`location` is empty",
        ),
        (
            json!({"source": "chat", "location": "x", "text": "t", "extra": 1}),
            "unknown field",
        ),
        (
            json!({"source": "code", "location": "x", "findings": [{"detector": "d", "fingerprint": "zz", "excerpt": "e"}]}),
            "64 lowercase hex",
        ),
    ] {
        let (s, v) = l.post("/v1/exposures", body).await;
        assert_eq!(s, 400, "{v}");
        assert!(v["detail"].as_str().unwrap().contains(want), "{v}");
    }
    let (s, v) = raw_post(
        &l,
        "/v1/exposures",
        b"{not json",
        &[("authorization", format!("Bearer {}", l.token))],
    )
    .await;
    assert_eq!(s, 400, "{v}");
    // a Slack signature without a configured secret is refused, not trusted
    let (s, v) = slack_post(&l, &slack_message("x", "1.0"), now_secs(), SLACK_SECRET).await;
    assert_eq!(s, 401);
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .contains("--slack-signing-secret-file"),
        "{v}"
    );
    // only the POSTs authenticate themselves; reading exposures needs the operator
    for path in ["/v1/exposures", "/v1/findings", "/v1/external-tokens"] {
        let r = l.http.get(format!("{}{path}", l.url)).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path}");
    }
    let (s, v) = raw_post(&l, "/v1/partners/github", b"[]", &[]).await;
    assert_eq!(s, 401);
    assert!(
        v["detail"].as_str().unwrap().contains("--github-keys"),
        "{v}"
    );
}
