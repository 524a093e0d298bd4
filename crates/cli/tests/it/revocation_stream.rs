//! The revocation stream (`GET /v1/revocations/stream`), the `leash-verify`
//! library that follows it, and the example service it protects — all
//! against the real `leash` server.

use std::time::{Duration, Instant};

use base64::Engine;
use leash_verify::sse::{SseEvent, SseParser};
use leash_verify::{Credentials, Verifier, VerifierConfig};
use serde_json::{Value, json};

use crate::harness::Leash;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// alice → reports-bot (prod) that may hold reports:read and reports:write.
async fn reports_fixture(l: &Leash) {
    l.ok(
        "/v1/owners",
        json!({"name": "alice", "email": "alice@acme.io", "business_owner": true}),
    )
    .await;
    l.ok("/v1/workloads", json!({"name": "reports-bot", "owner": "alice", "environment": "prod",
        "identity": "spiffe://acme.io/agents/reports", "scope_ceiling": ["reports:read", "reports:write"]}))
        .await;
}

async fn mint(l: &Leash, scopes: &[&str]) -> (String, String) {
    let mut body = json!({"workload": "reports-bot", "scopes": scopes, "ttl": "10m"});
    if scopes.iter().any(|s| s.ends_with(":write")) {
        body["justification"] = json!("files the weekly report");
    }
    let t = l.mint(body).await;
    (
        t["id"].as_str().unwrap().to_owned(),
        t["token"].as_str().unwrap().to_owned(),
    )
}

async fn revoke(l: &Leash, id: &str) {
    l.ok(
        "/v1/revocations",
        json!({"token_or_id": id, "reason": "test revocation"}),
    )
    .await;
}

/// A resource-server client: (id, secret).
async fn resource_client(l: &Leash, introspect: bool) -> (String, String) {
    let c = l
        .ok(
            "/v1/clients",
            json!({"workload": "reports-bot", "introspect": introspect}),
        )
        .await;
    (
        c["client_id"].as_str().unwrap().to_owned(),
        c["client_secret"].as_str().unwrap().to_owned(),
    )
}

enum Auth<'a> {
    None,
    Bearer(&'a str),
    Basic(&'a str, &'a str),
}

fn stream_request(l: &Leash, auth: Auth<'_>, query: &str) -> reqwest::RequestBuilder {
    let r = l
        .http
        .get(format!("{}/v1/revocations/stream{query}", l.url));
    match auth {
        Auth::None => r,
        Auth::Bearer(t) => r.bearer_auth(t),
        Auth::Basic(id, secret) => r.basic_auth(id, Some(secret)),
    }
}

/// Read events until the first `head` event (included), at most 10 s.
async fn until_head(resp: reqwest::Response) -> Vec<SseEvent> {
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let mut resp = resp;
    let mut p = SseParser::new();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let chunk = tokio::time::timeout(left, resp.chunk())
            .await
            .expect("no head event within 10 s")
            .unwrap()
            .expect("the stream ended before a head event");
        for e in p.push(&chunk).unwrap() {
            let head = e.event == "head";
            got.push(e);
            if head {
                return got;
            }
        }
    }
}

fn revoked_ids(events: &[SseEvent]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e.event == "revoked")
        .map(|e| {
            let v: Value = serde_json::from_str(&e.data).unwrap();
            assert_eq!(e.id.as_deref(), Some(v["seq"].to_string().as_str()));
            v["token_id"].as_str().unwrap().to_owned()
        })
        .collect()
}

#[tokio::test]
async fn revocation_stream_needs_the_operator_or_a_resource_server_client() {
    let l = Leash::start().await;
    reports_fixture(&l).await;
    let resp = stream_request(&l, Auth::None, "").send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert!(resp.headers().contains_key("www-authenticate"));
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["code"], "unauthorized", "{v}");
    assert!(v["detail"].as_str().unwrap().contains("HTTP Basic"), "{v}");
    let resp = stream_request(&l, Auth::Bearer("lsh_not_the_operator"), "")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let (id, _) = resource_client(&l, true).await;
    let resp = stream_request(&l, Auth::Basic(&id, "lshc_wrong"), "")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    // a client that is not a resource server may not read the feed
    let (agent, agent_secret) = resource_client(&l, false).await;
    let resp = stream_request(&l, Auth::Basic(&agent, &agent_secret), "")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let v: Value = resp.json().await.unwrap();
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .contains("not a resource server"),
        "{v}"
    );

    let events = until_head(
        stream_request(&l, Auth::Bearer(&l.token), "")
            .send()
            .await
            .unwrap(),
    )
    .await;
    let head: Value = serde_json::from_str(&events.last().unwrap().data).unwrap();
    assert!(head["head"].as_i64().unwrap() > 0, "{head}");
    assert!(head["at"].as_i64().unwrap() > 0, "{head}");
    let (rs, rs_secret) = resource_client(&l, true).await;
    until_head(
        stream_request(&l, Auth::Basic(&rs, &rs_secret), "")
            .send()
            .await
            .unwrap(),
    )
    .await;
}

#[tokio::test]
async fn revocation_stream_snapshots_then_replays_exactly_what_was_missed() {
    let l = Leash::start().await;
    reports_fixture(&l).await;
    let (t1, _) = mint(&l, &["reports:read"]).await;
    let (t2, _) = mint(&l, &["reports:read"]).await;
    let (t3, _) = mint(&l, &["reports:read"]).await;
    let (_live, _) = mint(&l, &["reports:read"]).await;
    revoke(&l, &t1).await;

    // no resume point: the revoked, unexpired tokens, then a head
    let snap = until_head(
        stream_request(&l, Auth::Bearer(&l.token), "")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(revoked_ids(&snap), vec![t1.clone()]);
    let head_id = snap.last().unwrap().id.clone().unwrap();

    // two more while "disconnected"; resuming gets exactly those, in order
    revoke(&l, &t2).await;
    revoke(&l, &t3).await;
    let replay = until_head(
        stream_request(&l, Auth::Bearer(&l.token), "")
            .header("Last-Event-ID", &head_id)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(revoked_ids(&replay), vec![t2.clone(), t3.clone()]);
    let by_query = until_head(
        stream_request(&l, Auth::Bearer(&l.token), &format!("?after={head_id}"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(revoked_ids(&by_query), vec![t2.clone(), t3.clone()]);
    // resuming after the first replayed event skips it
    let after_t2 = replay[0].id.clone().unwrap();
    let rest = until_head(
        stream_request(&l, Auth::Bearer(&l.token), "")
            .header("Last-Event-ID", &after_t2)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(revoked_ids(&rest), vec![t3.clone()]);

    // a live stream gets a revocation made after it connected
    let mut resp = stream_request(&l, Auth::Bearer(&l.token), "")
        .header("Last-Event-ID", replay.last().unwrap().id.clone().unwrap())
        .send()
        .await
        .unwrap();
    let (t4, _) = mint(&l, &["reports:read"]).await;
    revoke(&l, &t4).await;
    let mut p = SseParser::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen = Vec::new();
    while !seen.contains(&t4) {
        assert!(
            Instant::now() < deadline,
            "the live revocation did not arrive"
        );
        let chunk = tokio::time::timeout(Duration::from_secs(5), resp.chunk())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        seen.extend(revoked_ids(&p.push(&chunk).unwrap()));
    }
    assert_eq!(seen, vec![t4]);

    for (header, query) in [(Some("abc"), ""), (None, "?after=-3"), (None, "?after=1e3")] {
        let mut r = stream_request(&l, Auth::Bearer(&l.token), query);
        if let Some(h) = header {
            r = r.header("Last-Event-ID", h);
        }
        let resp = r.send().await.unwrap();
        assert_eq!(resp.status(), 400, "{header:?} {query}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["code"], "bad_request", "{v}");
        let detail = v["detail"].as_str().unwrap();
        assert!(detail.contains("sequence number"), "{v}");
        assert!(
            detail.contains(if header.is_some() {
                "Last-Event-ID"
            } else {
                "after"
            }),
            "{v}"
        );
    }
}

/// The example service on a loopback port, verifying with `verifier`.
async fn protected_service(verifier: Verifier) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, protected_service::router(verifier))
            .await
            .unwrap();
    });
    format!("http://{addr}")
}

async fn reports(http: &reqwest::Client, svc: &str, token: Option<&str>) -> u16 {
    let mut r = http.get(format!("{svc}/reports"));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    r.send().await.unwrap().status().as_u16()
}

/// Poll until `GET /reports` answers `want`; returns how long it took.
async fn until_status(
    http: &reqwest::Client,
    svc: &str,
    token: &str,
    want: u16,
    within: Duration,
) -> Duration {
    let start = Instant::now();
    loop {
        let got = reports(http, svc, Some(token)).await;
        if got == want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "GET /reports still answers {got}, not {want}, after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_example_service_accepts_rejects_revoked_tokens_and_fails_closed() {
    let mut l = Leash::start().await;
    reports_fixture(&l).await;
    let (cid, csecret) = resource_client(&l, true).await;
    let max_staleness = Duration::from_millis(1500);
    let mut cfg = VerifierConfig::new(
        l.url.clone(),
        Credentials::Client {
            id: cid,
            secret: csecret,
        },
    );
    cfg.max_staleness = max_staleness;
    cfg.audience = Some("urn:leash:any".into());
    let verifier = Verifier::start(cfg).unwrap();
    verifier.wait_synced(Duration::from_secs(10)).await.unwrap();
    let svc = protected_service(verifier.clone()).await;
    let http = reqwest::Client::new();

    let (read_id, read) = mint(&l, &["reports:read"]).await;
    let (_, write) = mint(&l, &["reports:read", "reports:write"]).await;
    assert_eq!(reports(&http, &svc, Some(&read)).await, 200);
    // no token: 401 with a bare challenge
    let resp = http.get(format!("{svc}/reports")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert!(
        resp.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer realm=\"leash\"")
    );
    // a token without reports:write may not file a report
    let post = |t: &str| {
        http.post(format!("{svc}/reports"))
            .bearer_auth(t)
            .json(&json!({"title": "weekly"}))
            .send()
    };
    let resp = post(&read).await.unwrap();
    assert_eq!(resp.status(), 403);
    assert!(
        resp.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("error=\"insufficient_scope\"")
    );
    let resp = post(&write).await.unwrap();
    assert_eq!(resp.status(), 201);
    let created: Value = resp.json().await.unwrap();
    assert_eq!(
        (created["author"].as_str(), created["owner"].as_str()),
        (Some("reports-bot"), Some("alice"))
    );
    // garbage and opaque tokens are refused with invalid_token
    assert_eq!(reports(&http, &svc, Some("not-a-token")).await, 401);

    // revoked at Leash → refused by the service within 2 s
    revoke(&l, &read_id).await;
    let took = until_status(&http, &svc, &read, 401, Duration::from_secs(2)).await;
    let resp = http
        .get(format!("{svc}/reports"))
        .bearer_auth(&read)
        .send()
        .await
        .unwrap();
    let challenge = resp.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    assert!(challenge.contains("revoked"), "{challenge}");
    println!("revocation reached the service in {took:?}");
    assert!(verifier.revoked_count() >= 1);
    assert_eq!(reports(&http, &svc, Some(&write)).await, 200);

    // Leash goes away: within max_staleness the service refuses everything
    l.kill();
    let killed = Instant::now();
    until_status(
        &http,
        &svc,
        &write,
        503,
        max_staleness + Duration::from_millis(700),
    )
    .await;
    println!("fail-closed after {:?}", killed.elapsed());
    let resp = http
        .get(format!("{svc}/reports"))
        .bearer_auth(&write)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["retry-after"], "1");

    // Leash comes back: the service recovers by itself; the revoked token stays refused
    l.restart().await;
    until_status(&http, &svc, &write, 200, Duration::from_secs(15)).await;
    assert_eq!(reports(&http, &svc, Some(&read)).await, 401);
    assert!(verifier.feed().connections() >= 2);
}

#[tokio::test]
async fn the_verifier_follows_key_rotation_and_refuses_what_it_cannot_check() {
    let l = Leash::start().await;
    reports_fixture(&l).await;
    let mut cfg = VerifierConfig::new(l.url.clone(), Credentials::Operator(l.token.clone()));
    cfg.jwks_min_refresh = Duration::from_millis(100);
    cfg.issuer = Some("http://wrong.example".into());
    let strict = Verifier::start(cfg.clone()).unwrap();
    cfg.issuer = None;
    let v = Verifier::start(cfg).unwrap();
    v.wait_synced(Duration::from_secs(10)).await.unwrap();
    strict.wait_synced(Duration::from_secs(10)).await.unwrap();
    let (_, before) = mint(&l, &["reports:read"]).await;
    assert_eq!(
        v.verify(&before, None).await.unwrap().claims.workload,
        "reports-bot"
    );
    assert_eq!(
        strict.verify(&before, None).await.unwrap_err(),
        leash_verify::VerifyError::WrongIssuer
    );
    l.ok("/v1/keys/rotate", json!({})).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    let (_, after) = mint(&l, &["reports:read"]).await;
    // a new kid: fetched on first sight; the old key still verifies
    assert!(v.verify(&after, None).await.is_ok());
    assert!(v.verify(&before, None).await.is_ok());
    assert!(v.key_count() >= 2);
    // a forged signature with a known kid
    let mut parts: Vec<&str> = after.split('.').collect();
    let forged_sig = B64.encode([7u8; 64]);
    parts[2] = &forged_sig;
    assert_eq!(
        v.verify(&parts.join("."), None).await.unwrap_err(),
        leash_verify::VerifyError::BadSignature
    );
    let opaque = l.mint(json!({"workload": "reports-bot", "scopes": ["reports:read"], "ttl": "10m", "format": "opaque"})).await;
    let err = v
        .verify(opaque["token"].as_str().unwrap(), None)
        .await
        .unwrap_err();
    assert_eq!(err, leash_verify::VerifyError::Opaque);
    assert!(err.to_string().contains("remote check"), "{err}");
    // the remote check answers for it
    let d = v
        .authorize(
            opaque["token"].as_str().unwrap(),
            "spiffe://acme.io/agents/reports",
            "read",
            &leash_verify::Resource::new("reports", "weekly"),
        )
        .await
        .unwrap();
    assert!(d.allowed, "{d:?}");
    let d = v
        .authorize(
            opaque["token"].as_str().unwrap(),
            "spiffe://acme.io/agents/reports",
            "write",
            &leash_verify::Resource::new("reports", "weekly"),
        )
        .await
        .unwrap();
    assert!(!d.allowed, "{d:?}");
}

/// An ES256 DPoP proof for `htm htu`, with `ath` for `token` when given.
fn dpop_proof(pk8: &[u8], jwk: &Value, htm: &str, htu: &str, token: Option<&str>) -> String {
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    h.typ = Some("dpop+jwt".into());
    h.jwk = Some(serde_json::from_value(jwk.clone()).unwrap());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let jti = format!("{now}-{}", rand_suffix());
    let mut claims = json!({"htm": htm, "htu": htu, "jti": jti, "iat": now});
    if let Some(t) = token {
        claims["ath"] =
            json!(B64.encode(
                aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, t.as_bytes()).as_ref()
            ));
    }
    jsonwebtoken::encode(&h, &claims, &jsonwebtoken::EncodingKey::from_ec_der(pk8)).unwrap()
}

fn rand_suffix() -> String {
    let mut b = [0u8; 8];
    aws_lc_rs::rand::fill(&mut b).unwrap();
    hex::encode(b)
}

#[tokio::test]
async fn the_example_service_demands_a_dpop_proof_for_a_bound_token() {
    let l = Leash::start().await;
    reports_fixture(&l).await;
    let (cid, csecret) = resource_client(&l, false).await;
    let (pk8, jwk) = crate::harness::es256_key();
    let token_url = format!("{}/oauth2/token", l.url);
    let resp = l
        .http
        .post(&token_url)
        .basic_auth(&cid, Some(&csecret))
        .header("DPoP", dpop_proof(&pk8, &jwk, "POST", &token_url, None))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "reports:read"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["token_type"], "DPoP", "{body}");
    let bound = body["access_token"].as_str().unwrap().to_owned();

    let v = Verifier::start(VerifierConfig::new(
        l.url.clone(),
        Credentials::Operator(l.token.clone()),
    ))
    .unwrap();
    v.wait_synced(Duration::from_secs(10)).await.unwrap();
    let svc = protected_service(v).await;
    let http = reqwest::Client::new();
    let url = format!("{svc}/reports");
    // as a plain Bearer token (e.g. stolen without the key): refused
    let resp = http.get(&url).bearer_auth(&bound).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let c = resp.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(c.starts_with("DPoP "), "{c}");
    // with a proof for this request: accepted, once
    let proof = dpop_proof(&pk8, &jwk, "GET", &url, Some(&bound));
    let call = |proof: String| {
        http.get(&url)
            .header("Authorization", format!("DPoP {bound}"))
            .header("DPoP", proof)
            .send()
    };
    assert_eq!(call(proof.clone()).await.unwrap().status(), 200);
    let replayed = call(proof).await.unwrap();
    assert_eq!(replayed.status(), 401);
    assert!(
        replayed.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_dpop_proof")
    );
    // a proof for another method, or from another key
    let wrong_method = dpop_proof(&pk8, &jwk, "POST", &url, Some(&bound));
    assert_eq!(call(wrong_method).await.unwrap().status(), 401);
    let (thief_pk8, thief_jwk) = crate::harness::es256_key();
    let thief = dpop_proof(&thief_pk8, &thief_jwk, "GET", &url, Some(&bound));
    assert_eq!(call(thief).await.unwrap().status(), 401);
}
