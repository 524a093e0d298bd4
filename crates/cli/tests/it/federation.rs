//! Workload identity federation: a workload exchanges a JWT from a trusted
//! issuer (GitHub Actions OIDC claims, a SPIFFE JWT-SVID) for a Leash token.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::Leash;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;
const XCHG: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const JWT_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";

/// A test issuer's ES256 key.
struct IssuerKey {
    pk8: Vec<u8>,
    jwk: Value,
}

fn es256_key(kid: &str) -> IssuerKey {
    let (pk8, mut jwk) = crate::harness::es256_key();
    jwk["kid"] = json!(kid);
    jwk["alg"] = json!("ES256");
    IssuerKey { pk8, jwk }
}

fn sign(key: &IssuerKey, claims: &Value) -> String {
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    h.kid = key.jwk["kid"].as_str().map(str::to_owned);
    jsonwebtoken::encode(
        &h,
        claims,
        &jsonwebtoken::EncodingKey::from_ec_der(&key.pk8),
    )
    .unwrap()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn exchange(l: &Leash, subject: &str, extra: &[(&str, &str)]) -> (u16, Value) {
    let mut form: Vec<(&str, &str)> = vec![
        ("grant_type", XCHG),
        ("subject_token", subject),
        ("subject_token_type", JWT_TYPE),
    ];
    form.extend_from_slice(extra);
    let r = l
        .http
        .post(format!("{}/oauth2/token", l.url))
        .form(&form)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test]
async fn github_actions_oidc_tokens_map_to_workloads_by_claims() {
    let l = Leash::start().await;
    l.fixture().await;
    let key = es256_key("gh-1");
    let gh = "https://token.actions.githubusercontent.com";
    let o = l.cli(&[
        "issuer",
        "add",
        "github",
        "--issuer",
        gh,
        "--audience",
        "leash",
        "--jwks",
        &write_jwks(&l, &[&key.jwk]),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = l.cli(&[
        "workload",
        "identity-rule",
        "triage-bot",
        "--issuer",
        "github",
        "--claim",
        "sub=repo:acme/agents:ref:refs/heads/main",
        "--claim",
        "job_workflow_ref=acme/agents/.github/workflows/triage.yml@*",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let claims = |sub: &str, aud: &str, exp: i64| {
        json!({"iss": gh, "aud": aud, "sub": sub, "exp": exp, "iat": now(), "nbf": now() - 5,
               "job_workflow_ref": "acme/agents/.github/workflows/triage.yml@refs/heads/main", "run_id": "9182736450", "repository": "acme/agents"})
    };
    let good = sign(
        &key,
        &claims("repo:acme/agents:ref:refs/heads/main", "leash", now() + 300),
    );
    let (s, v) = exchange(&l, &good, &[("scope", "tickets:read")]).await;
    assert_eq!(s, 200, "{v}");
    let e = l.explain(v["access_token"].as_str().unwrap()).await;
    assert_eq!(e["workload"]["name"], "triage-bot");
    assert_eq!(e["owner"]["name"], "alice");
    let (_, evs) = l.get("/v1/audit/events?limit=1").await;
    assert_eq!(
        evs[0]["actor"],
        "federated:github:repo:acme/agents:ref:refs/heads/main"
    );

    // refusals: each is invalid_grant with a reason, and nothing is minted
    let other_key = es256_key("gh-1");
    let mut none_token = format!(
        "{}.{}.",
        B64.encode(r#"{"alg":"none","kid":"gh-1"}"#),
        B64.encode(
            claims("repo:acme/agents:ref:refs/heads/main", "leash", now() + 300).to_string()
        )
    );
    let hs256 = {
        // HS256 "signed" with the issuer's public key material: the RS/HS confusion attack
        let h = jsonwebtoken::Header {
            alg: jsonwebtoken::Algorithm::HS256,
            kid: Some("gh-1".into()),
            ..Default::default()
        };
        jsonwebtoken::encode(
            &h,
            &claims("repo:acme/agents:ref:refs/heads/main", "leash", now() + 300),
            &jsonwebtoken::EncodingKey::from_secret(key.jwk["x"].as_str().unwrap().as_bytes())
                .unwrap(),
        )
        .unwrap()
    };
    let cases = vec![
        (
            sign(
                &key,
                &claims(
                    "repo:acme/agents:ref:refs/heads/feature",
                    "leash",
                    now() + 300,
                ),
            ),
            "no identity rule",
        ),
        (
            sign(
                &key,
                &claims(
                    "repo:acme/agents:ref:refs/heads/main",
                    "someone-else",
                    now() + 300,
                ),
            ),
            "rejected",
        ),
        (
            sign(
                &key,
                &claims("repo:acme/agents:ref:refs/heads/main", "leash", now() - 600),
            ),
            "rejected",
        ),
        (
            sign(
                &other_key,
                &claims("repo:acme/agents:ref:refs/heads/main", "leash", now() + 300),
            ),
            "rejected",
        ),
        (
            sign(
                &key,
                &json!({"iss": "https://evil.example", "aud": "leash", "sub": "x", "exp": now() + 300}),
            ),
            "not trusted",
        ),
        (std::mem::take(&mut none_token), "not"),
        (hs256, "not accepted"),
        ("x".repeat(20_000), "larger"),
    ];
    let minted_before = l.get("/v1/tokens").await.1.as_array().unwrap().len();
    for (token, needle) in cases {
        let (s, v) = exchange(&l, &token, &[("scope", "tickets:read")]).await;
        assert_eq!(
            (s, v["error"].as_str()),
            (400, Some("invalid_grant")),
            "{needle}: {v}"
        );
        let d = v["error_description"].as_str().unwrap();
        assert!(d.contains(needle), "`{d}` lacks `{needle}`");
    }
    assert_eq!(
        l.get("/v1/tokens").await.1.as_array().unwrap().len(),
        minted_before
    );
    // a mapped identity still obeys the workload's ceiling
    let (s, v) = exchange(
        &l,
        &good,
        &[("scope", "repo:other/x:write"), ("justification", "x")],
    )
    .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (400, Some("invalid_scope")),
        "{v}"
    );
}

fn write_jwks(l: &Leash, keys: &[&Value]) -> String {
    let p = l.root.path().join("issuer-jwks.json");
    std::fs::write(&p, json!({"keys": keys}).to_string()).unwrap();
    p.to_str().unwrap().to_owned()
}

/// A JWKS endpoint on loopback that counts its hits.
async fn jwks_server(body: Arc<std::sync::Mutex<String>>, hits: Arc<AtomicU64>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                break;
            };
            let body = body.lock().unwrap().clone();
            hits.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let _ = s.read(&mut buf).await;
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}/jwks.json")
}

#[tokio::test]
async fn spiffe_jwt_svids_with_a_fetched_bundle_that_rotates() {
    let l = Leash::start_with(&["--jwks-min-refresh", "1s"]).await;
    l.fixture().await;
    let k1 = es256_key("svid-1");
    let k2 = es256_key("svid-2");
    let body = Arc::new(std::sync::Mutex::new(json!({"keys": [k1.jwk]}).to_string()));
    let hits = Arc::new(AtomicU64::new(0));
    let url = jwks_server(body.clone(), hits.clone()).await;
    l.ok("/v1/issuers", json!({"name": "acme-spire", "issuer": "https://spire.acme.io", "jwks_url": url, "audience": "leash"})).await;
    l.ok(
        "/v1/workloads/triage-bot/identity-rules",
        json!({"issuer": "acme-spire", "claims": {"sub": "spiffe://acme.io/agents/triage*"}}),
    )
    .await;
    let svid = |k: &IssuerKey| {
        sign(
            k,
            &json!({"iss": "https://spire.acme.io", "aud": ["leash"], "sub": "spiffe://acme.io/agents/triage", "exp": now() + 300, "iat": now()}),
        )
    };

    let (s, v) = exchange(&l, &svid(&k1), &[("scope", "tickets:read")]).await;
    assert_eq!(s, 200, "{v}");
    let (s, _) = exchange(&l, &svid(&k1), &[("scope", "tickets:read")]).await;
    assert_eq!(s, 200);
    assert_eq!(hits.load(Ordering::SeqCst), 1, "the bundle is cached");

    // the trust domain rotates its key; an unknown kid may refresh the bundle
    // at most every 30 s (so a flood of bad kids cannot hammer the issuer)
    *body.lock().unwrap() = json!({"keys": [k1.jwk, k2.jwk]}).to_string();
    // within the 30 s refresh window an unknown kid is refused without a fetch
    let (s, v) = exchange(&l, &svid(&k2), &[("scope", "tickets:read")]).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (400, Some("invalid_grant")),
        "{v}"
    );
    assert!(
        v["error_description"]
            .as_str()
            .unwrap()
            .contains("refreshed less than 1 s ago"),
        "{v}"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    // once the window has passed, the unknown kid fetches the new bundle, which has it
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (s, v) = exchange(&l, &svid(&k2), &[("scope", "tickets:read")]).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    let (s, _) = exchange(&l, &svid(&k1), &[("scope", "tickets:read")]).await;
    assert_eq!(
        s, 200,
        "the old key still verifies from the refreshed bundle"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 2);

    // an unmatched SPIFFE ID maps to nothing
    let stranger = sign(
        &k1,
        &json!({"iss": "https://spire.acme.io", "aud": "leash", "sub": "spiffe://acme.io/db/admin", "exp": now() + 300}),
    );
    let (s, v) = exchange(&l, &stranger, &[("scope", "tickets:read")]).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (400, Some("invalid_grant")),
        "{v}"
    );
}

#[tokio::test]
async fn issuer_registration_is_validated() {
    let l = Leash::start().await;
    l.fixture().await;
    for (body, status) in [
        (
            json!({"name": "x", "issuer": "https://x", "audience": "leash"}),
            409,
        ),
        (
            json!({"name": "x", "issuer": "https://x", "audience": "leash", "jwks_url": "ftp://x"}),
            409,
        ),
        (
            json!({"name": "x", "issuer": "https://x", "audience": "leash", "jwks": {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}}),
            400,
        ),
        (
            json!({"name": "bad name", "issuer": "https://x", "audience": "leash", "jwks_url": "https://x/jwks"}),
            400,
        ),
    ] {
        let (s, v) = l.post("/v1/issuers", body.clone()).await;
        assert_eq!(s, status, "{body}: {v}");
    }
    l.ok("/v1/issuers", json!({"name": "k8s", "issuer": "https://kubernetes.default.svc", "audience": "leash", "jwks_url": "https://kubernetes.default.svc/openid/v1/jwks"})).await;
    let (s, _) = l.post("/v1/issuers", json!({"name": "k8s2", "issuer": "https://kubernetes.default.svc", "audience": "leash", "jwks_url": "https://x/jwks"})).await;
    assert_eq!(s, 409, "one entry per iss");
    let (s, _) = l
        .post(
            "/v1/workloads/triage-bot/identity-rules",
            json!({"issuer": "k8s", "claims": {}}),
        )
        .await;
    assert_eq!(s, 409);
    let (s, _) = l
        .post(
            "/v1/workloads/triage-bot/identity-rules",
            json!({"issuer": "nope", "claims": {"sub": "x"}}),
        )
        .await;
    assert_eq!(s, 404);
    l.ok(
        "/v1/workloads/triage-bot/identity-rules",
        json!({"issuer": "k8s", "claims": {"sub": "system:serviceaccount:agents:triage"}}),
    )
    .await;
    let (_, list) = l.get("/v1/issuers").await;
    assert_eq!(list[0]["rules"][0]["workload"], "triage-bot");
}
