//! RFC 7662 introspection, JWKS, Prometheus metrics, OpenAPI, and logs that
//! never carry a token.

use serde_json::{Value, json};

use crate::harness::Leash;

async fn introspect(l: &Leash, token: &str, auth: Option<&str>) -> (u16, Value) {
    let mut r = l
        .http
        .post(format!("{}/oauth2/introspect", l.url))
        .form(&[("token", token)]);
    if let Some(a) = auth {
        r = r.bearer_auth(a);
    }
    let resp = r.send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

#[tokio::test]
async fn introspection_follows_rfc7662() {
    let l = Leash::start().await;
    let run = l.fixture().await;
    let jwt = l.mint(json!({"workload": "triage-bot", "run": run, "scopes": ["tickets:read"], "ttl": "10m", "audience": ["tickets-api"]})).await;
    let opaque = l.mint(json!({"workload": "triage-bot", "scopes": ["tickets:read"], "ttl": "10m", "format": "opaque"})).await;
    for t in [&jwt, &opaque] {
        let (s, v) = introspect(&l, t["token"].as_str().unwrap(), Some(&l.token)).await;
        assert_eq!(s, 200);
        assert_eq!(v["active"], true, "{v}");
        assert_eq!(v["scope"], "tickets:read");
        assert_eq!(v["client_id"], "triage-bot");
        assert_eq!(v["sub"], "spiffe://acme.io/agents/triage");
        assert_eq!(v["jti"], t["id"]);
        assert!(v["exp"].as_i64().unwrap() > v["iat"].as_i64().unwrap());
    }
    l.post(
        &format!("/v1/runs/{run}/end"),
        json!({"status": "succeeded"}),
    )
    .await;
    let (_, v) = introspect(&l, jwt["token"].as_str().unwrap(), Some(&l.token)).await;
    assert_eq!(v, json!({"active": false}));
    let (_, v) = introspect(&l, opaque["token"].as_str().unwrap(), Some(&l.token)).await;
    assert_eq!(v["active"], true, "a token outside the run lives on");
    let (_, v) = introspect(&l, "garbage", Some(&l.token)).await;
    assert_eq!(v, json!({"active": false}));
    let (s, v) = introspect(&l, opaque["token"].as_str().unwrap(), None).await;
    assert_eq!(s, 401);
    assert_eq!(v["error"], "invalid_client");
    let r = l
        .http
        .post(format!("{}/oauth2/introspect", l.url))
        .bearer_auth(&l.token)
        .form(&[("nottoken", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "invalid_request");
}

#[tokio::test]
async fn jwks_publishes_the_signing_key_and_jwts_are_rfc9068() {
    use base64::Engine;
    let l = Leash::start().await;
    l.fixture().await;
    let t = l
        .mint(json!({"workload": "triage-bot", "scopes": ["tickets:read"], "ttl": "10m"}))
        .await;
    let jwks: Value = l.public_json("/.well-known/jwks.json").await;
    let key = &jwks["keys"][0];
    assert_eq!(key["kty"], "OKP");
    assert_eq!(key["crv"], "Ed25519");
    assert!(key.get("d").is_none(), "no private part in the JWKS");
    let token = t["token"].as_str().unwrap();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header: Value =
        serde_json::from_slice(&b64.decode(token.split('.').next().unwrap()).unwrap()).unwrap();
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(header["kid"], key["kid"]);
    let claims: Value =
        serde_json::from_slice(&b64.decode(token.split('.').nth(1).unwrap()).unwrap()).unwrap();
    for c in [
        "iss",
        "sub",
        "aud",
        "exp",
        "iat",
        "jti",
        "client_id",
        "scope",
        "owner",
    ] {
        assert!(claims.get(c).is_some(), "claim {c} missing: {claims}");
    }
    assert_eq!(claims["jti"], t["id"]);
    assert_eq!(claims["iss"], l.url);
}

#[tokio::test]
async fn metrics_openapi_and_logs() {
    let l = Leash::start().await;
    let run = l.fixture().await;
    let t = l
        .mint(
            json!({"workload": "triage-bot", "run": run, "scopes": ["tickets:read"], "ttl": "10m"}),
        )
        .await;
    let o = l.mint(json!({"workload": "triage-bot", "run": run, "scopes": ["tickets:read"], "ttl": "10m", "format": "opaque"})).await;
    l.post(
        "/v1/tokens",
        json!({"workload": "triage-bot", "scopes": ["tickets:read"], "ttl": "9h"}),
    )
    .await;
    l.post(
        &format!("/v1/runs/{run}/end"),
        json!({"status": "succeeded"}),
    )
    .await;
    l.explain(t["token"].as_str().unwrap()).await;
    introspect(&l, o["token"].as_str().unwrap(), Some(&l.token)).await;

    let m = l.public_text("/metrics").await;
    for needle in [
        "leash_mints_total{format=\"jwt\"} 1",
        "leash_mints_total{format=\"opaque\"} 1",
        "leash_mint_refusals_total{rule=\"ttl_cap\"} 1",
        "leash_revocations_total{trigger=\"run_ended\"} 2",
        "leash_http_request_duration_seconds_bucket{",
        "route=\"/v1/tokens\"",
    ] {
        assert!(m.contains(needle), "metrics lack `{needle}`:\n{m}");
    }

    let (s, doc) = l.get("/v1/openapi.json").await;
    assert_eq!(s, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for p in [
        "/v1/tokens",
        "/v1/explain",
        "/v1/runs/{id}/end",
        "/v1/owners/{name}/offboard",
        "/oauth2/introspect",
    ] {
        assert!(doc["paths"].get(p).is_some(), "openapi lacks {p}");
    }
    assert!(doc["components"]["schemas"].get("Problem").is_some());

    // debug-level logs saw every request, and never a credential
    let logs = l.logs();
    assert!(logs.contains("/v1/tokens"), "request log missing");
    for secret in [
        t["token"].as_str().unwrap(),
        o["token"].as_str().unwrap(),
        &l.token,
    ] {
        let probe = &secret[secret.len() - 24..];
        assert!(!logs.contains(probe), "a credential reached the logs");
    }
}
