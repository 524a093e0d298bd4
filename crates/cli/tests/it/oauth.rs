//! OAuth 2.0 at the token endpoint: client_credentials with client_secret_basic,
//! client_secret_post and private_key_jwt (RFC 7523), RFC 7009 revocation,
//! RFC 8414 metadata, and RFC 6749 §5.2 errors.

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine;
use serde_json::{Value, json};

use crate::harness::Leash;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

async fn token(
    l: &Leash,
    form: &[(&str, &str)],
    basic: Option<(&str, &str)>,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let mut r = l.http.post(format!("{}/oauth2/token", l.url)).form(form);
    if let Some((id, secret)) = basic {
        r = r.basic_auth(id, Some(secret));
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, resp.json().await.unwrap_or(Value::Null), headers)
}

async fn client(l: &Leash, body: Value) -> Value {
    let (s, v) = l.post("/v1/clients", body).await;
    assert_eq!(s, 201, "{v}");
    v
}

#[tokio::test]
async fn client_credentials_with_a_secret_basic_and_post() {
    let l = Leash::start().await;
    l.fixture().await;
    let c = client(&l, json!({"workload": "triage-bot"})).await;
    let (id, secret) = (
        c["client_id"].as_str().unwrap(),
        c["client_secret"].as_str().unwrap(),
    );
    assert!(
        secret.starts_with("lshc_") && secret.len() == 48,
        "{secret}"
    );

    let (s, v, h) = token(
        &l,
        &[
            ("grant_type", "client_credentials"),
            ("scope", "tickets:read"),
            ("audience", "tickets-api"),
        ],
        Some((id, secret)),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["scope"], "tickets:read");
    assert_eq!(v["expires_in"], 900);
    assert_eq!(h["cache-control"], "no-store");
    let e = l.explain(v["access_token"].as_str().unwrap()).await;
    assert_eq!(e["workload"]["name"], "triage-bot");
    assert_eq!(e["privileges"]["audience"], json!(["tickets-api"]));

    let (s, v, _) = token(
        &l,
        &[
            ("grant_type", "client_credentials"),
            ("scope", "tickets:read"),
            ("client_id", id),
            ("client_secret", secret),
            ("ttl", "5m"),
        ],
        None,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["expires_in"], 300);

    // the audit log names the client as the actor
    let (_, evs) = l.get("/v1/audit/events?limit=1").await;
    assert_eq!(evs[0]["actor"], format!("client:{id}"));

    // errors, RFC 6749 §5.2
    type Case<'a> = (
        Vec<(&'a str, &'a str)>,
        Option<(&'a str, &'a str)>,
        u16,
        &'a str,
    );
    let cases: Vec<Case<'_>> = vec![
        (
            vec![
                ("grant_type", "client_credentials"),
                ("scope", "tickets:read"),
            ],
            Some((id, "lshc_wrong")),
            401,
            "invalid_client",
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("scope", "tickets:read"),
            ],
            Some(("cl_nobody", secret)),
            401,
            "invalid_client",
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("scope", "tickets:read"),
            ],
            None,
            401,
            "invalid_client",
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("scope", "tickets:read"),
                ("client_id", id),
                ("client_secret", secret),
            ],
            Some((id, secret)),
            400,
            "invalid_request",
        ),
        (
            vec![("grant_type", "password"), ("scope", "tickets:read")],
            Some((id, secret)),
            400,
            "unsupported_grant_type",
        ),
        (
            vec![("scope", "tickets:read")],
            Some((id, secret)),
            400,
            "invalid_request",
        ),
        (
            vec![("grant_type", "client_credentials")],
            Some((id, secret)),
            400,
            "invalid_scope",
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("scope", "repo:evil/x:write"),
                ("justification", "x"),
            ],
            Some((id, secret)),
            400,
            "invalid_scope",
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("scope", "repo:acme/api:write"),
            ],
            Some((id, secret)),
            400,
            "invalid_scope",
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("scope", "not a scope"),
            ],
            Some((id, secret)),
            400,
            "invalid_scope",
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("scope", "tickets:read"),
                ("ttl", "3h"),
            ],
            Some((id, secret)),
            400,
            "invalid_request",
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("scope", "tickets:read"),
                ("run", "999"),
            ],
            Some((id, secret)),
            400,
            "invalid_request",
        ),
    ];
    for (form, basic, status, error) in cases {
        let (s, v, h) = token(&l, &form, basic).await;
        assert_eq!(
            (s, v["error"].as_str()),
            (status, Some(error)),
            "{form:?}: {v}"
        );
        assert!(
            v["error_description"]
                .as_str()
                .is_some_and(|d| !d.is_empty()),
            "{v}"
        );
        if s == 401 {
            assert!(h.contains_key("www-authenticate"));
        }
    }
    // every refusal is in the audit log, with its reason and never a secret
    let (_, evs) = l.get("/v1/audit/events?limit=100").await;
    let refused: Vec<&Value> = evs
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "oauth.refused")
        .collect();
    assert_eq!(refused.len(), 12, "{evs}");
    assert!(
        refused
            .iter()
            .any(|e| e["data"]["error"] == "invalid_client"
                && e["subject"] == format!("client:{id}"))
    );
    assert!(
        !evs.to_string().contains(secret),
        "a client secret reached the audit log"
    );
    // a justified write scope is fine
    let (s, v, _) = token(
        &l,
        &[
            ("grant_type", "client_credentials"),
            ("scope", "repo:acme/api:write"),
            ("justification", "ship fix"),
        ],
        Some((id, secret)),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let m = l.public_text("/metrics").await;
    assert!(
        m.contains("leash_mint_refusals_total{rule=\"scope_ceiling\"} 1"),
        "{m}"
    );
}

fn ed25519_client_key() -> (Ed25519KeyPair, Vec<u8>, Value) {
    let pk8 = Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new()).unwrap();
    let pair = Ed25519KeyPair::from_pkcs8(pk8.as_ref()).unwrap();
    let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": B64.encode(pair.public_key().as_ref()), "kid": "agent-key-1", "alg": "EdDSA", "use": "sig"});
    (pair, pk8.as_ref().to_vec(), json!({"keys": [jwk]}))
}

fn assertion(pk8: &[u8], alg: jsonwebtoken::Algorithm, kid: &str, claims: &Value) -> String {
    let mut header = jsonwebtoken::Header::new(alg);
    header.kid = Some(kid.into());
    jsonwebtoken::encode(
        &header,
        claims,
        &jsonwebtoken::EncodingKey::from_ed_der(pk8),
    )
    .unwrap()
}

#[tokio::test]
async fn private_key_jwt_client_assertions_are_verified_once() {
    let l = Leash::start().await;
    l.fixture().await;
    let (_pair, pk8, jwks) = ed25519_client_key();
    let c = client(
        &l,
        json!({"workload": "triage-bot", "jwks": jwks, "secret": false}),
    )
    .await;
    assert!(c["client_secret"].is_null());
    assert_eq!(c["auth_methods"], json!(["private_key_jwt"]));
    let id = c["client_id"].as_str().unwrap();
    let endpoint = format!("{}/oauth2/token", l.url);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let claims = |jti: &str, aud: &str, exp: i64| json!({"iss": id, "sub": id, "aud": aud, "exp": exp, "iat": now, "jti": jti});
    let form = |a: &str| {
        vec![
            ("grant_type", "client_credentials".to_owned()),
            ("scope", "tickets:read".to_owned()),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_owned(),
            ),
            ("client_assertion", a.to_owned()),
        ]
    };
    let send = |f: Vec<(&'static str, String)>| {
        let l = &l;
        async move {
            let pairs: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
            token(l, &pairs, None).await
        }
    };

    let good = assertion(
        &pk8,
        jsonwebtoken::Algorithm::EdDSA,
        "agent-key-1",
        &claims("j1", &endpoint, now + 60),
    );
    let (s, v, _) = send(form(&good)).await;
    assert_eq!(s, 200, "{v}");
    // the same assertion again is a replay
    let (s, v, _) = send(form(&good)).await;
    assert_eq!((s, v["error"].as_str()), (401, Some("invalid_client")));
    assert!(
        v["error_description"].as_str().unwrap().contains("replay"),
        "{v}"
    );

    let bad_cases = [
        (
            assertion(
                &pk8,
                jsonwebtoken::Algorithm::EdDSA,
                "agent-key-1",
                &claims("j2", "https://elsewhere.example/token", now + 60),
            ),
            "rejected",
        ),
        (
            assertion(
                &pk8,
                jsonwebtoken::Algorithm::EdDSA,
                "agent-key-1",
                &claims("j3", &endpoint, now - 120),
            ),
            "rejected",
        ),
        (
            assertion(
                &pk8,
                jsonwebtoken::Algorithm::EdDSA,
                "agent-key-1",
                &claims("j4", &endpoint, now + 7200),
            ),
            "longer",
        ),
        (
            assertion(
                &pk8,
                jsonwebtoken::Algorithm::EdDSA,
                "other-kid",
                &claims("j5", &endpoint, now + 60),
            ),
            "kid",
        ),
        (
            format!(
                "{}.{}.",
                B64.encode(r#"{"alg":"none"}"#),
                B64.encode(claims("j6", &endpoint, now + 60).to_string())
            ),
            "not",
        ),
        (
            format!(
                "{}.{}.{}",
                B64.encode(r#"{"alg":"HS256","kid":"agent-key-1"}"#),
                B64.encode(claims("j7", &endpoint, now + 60).to_string()),
                B64.encode("sig")
            ),
            "not accepted",
        ),
    ];
    for (a, needle) in bad_cases {
        let (s, v, _) = send(form(&a)).await;
        assert_eq!(
            (s, v["error"].as_str()),
            (401, Some("invalid_client")),
            "{v}"
        );
        let d = v["error_description"].as_str().unwrap();
        assert!(d.contains(needle), "`{d}` lacks `{needle}`");
    }
    // a forged signature (another key, same kid)
    let (_p2, other_pk8, _) = ed25519_client_key();
    let forged = assertion(
        &other_pk8,
        jsonwebtoken::Algorithm::EdDSA,
        "agent-key-1",
        &claims("j8", &endpoint, now + 60),
    );
    let (s, _, _) = send(form(&forged)).await;
    assert_eq!(s, 401);
}

#[tokio::test]
async fn clients_revoke_their_own_tokens_and_metadata_lists_the_endpoints() {
    let l = Leash::start().await;
    l.fixture().await;
    l.ok("/v1/workloads", json!({"name": "other-bot", "owner": "alice", "environment": "dev", "scope_ceiling": ["tickets:read"]})).await;
    let c = client(&l, json!({"workload": "triage-bot"})).await;
    let (id, secret) = (
        c["client_id"].as_str().unwrap(),
        c["client_secret"].as_str().unwrap(),
    );
    let (_, v, _) = token(
        &l,
        &[
            ("grant_type", "client_credentials"),
            ("scope", "tickets:read"),
        ],
        Some((id, secret)),
    )
    .await;
    let mine = v["access_token"].as_str().unwrap().to_owned();
    let theirs = l
        .mint(json!({"workload": "other-bot", "scopes": ["tickets:read"], "ttl": "5m"}))
        .await;

    let revoke = |tok: String, basic: Option<(String, String)>| {
        let l = &l;
        async move {
            let mut r = l
                .http
                .post(format!("{}/oauth2/revoke", l.url))
                .form(&[("token", tok.as_str())]);
            if let Some((i, s)) = basic {
                r = r.basic_auth(i, Some(s));
            }
            let resp = r.send().await.unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        }
    };
    let creds = Some((id.to_owned(), secret.to_owned()));
    let (s, body) = revoke(theirs["token"].as_str().unwrap().to_owned(), creds.clone()).await;
    assert_eq!(s, 400, "{body}");
    assert!(body.contains("unauthorized_client"));
    assert_eq!(
        l.explain(theirs["id"].as_str().unwrap()).await["status"],
        "active"
    );
    let (s, _) = revoke(mine.clone(), creds.clone()).await;
    assert_eq!(s, 200);
    let e = l.explain(&mine).await;
    assert_eq!(e["status"], "revoked");
    assert_eq!(e["revoked"]["event"]["actor"], format!("client:{id}"));
    let (s, _) = revoke("lsh_definitelynotatoken".into(), creds.clone()).await;
    assert_eq!(s, 200, "unknown tokens are a 200 (RFC 7009 §2.2)");
    let (s, _) = revoke(mine, None).await;
    assert_eq!(s, 401);

    let meta: Value = l
        .public_json("/.well-known/oauth-authorization-server")
        .await;
    assert_eq!(meta["issuer"], l.url);
    assert_eq!(meta["token_endpoint"], format!("{}/oauth2/token", l.url));
    assert_eq!(
        meta["revocation_endpoint"],
        format!("{}/oauth2/revoke", l.url)
    );
    assert_eq!(meta["jwks_uri"], format!("{}/.well-known/jwks.json", l.url));
    assert!(
        meta["token_endpoint_auth_methods_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("private_key_jwt"))
    );

    // registration errors
    let (s, v) = l.post("/v1/clients", json!({"workload": "ghost"})).await;
    assert_eq!(s, 404, "{v}");
    let (s, v) = l
        .post(
            "/v1/clients",
            json!({"workload": "triage-bot", "jwks": {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}}),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    let (s, v) = l
        .post(
            "/v1/clients",
            json!({"workload": "triage-bot", "secret": false}),
        )
        .await;
    assert_eq!(s, 409, "{v}");
    let (_, list) = l.get("/v1/clients").await;
    assert_eq!(list.as_array().unwrap().len(), 1);
}

fn claims_of(jwt: &str) -> Value {
    serde_json::from_slice(&B64.decode(jwt.split('.').nth(1).unwrap()).unwrap()).unwrap()
}

#[tokio::test]
async fn token_exchange_delegates_to_a_sub_agent_with_a_nested_act_chain() {
    let l = Leash::start_with(&["--max-delegation-depth", "3"]).await;
    l.fixture().await;
    l.ok("/v1/workloads", json!({"name": "sub-agent", "owner": "alice", "environment": "prod", "identity": "spiffe://acme.io/agents/coder", "scope_ceiling": ["tickets:read", "repo:acme/*:write"]})).await;
    let orch = client(&l, json!({"workload": "triage-bot"})).await;
    let sub = client(&l, json!({"workload": "sub-agent"})).await;
    let creds = |c: &Value| {
        (
            c["client_id"].as_str().unwrap().to_owned(),
            c["client_secret"].as_str().unwrap().to_owned(),
        )
    };
    let (oid, osec) = creds(&orch);
    let (sid, ssec) = creds(&sub);
    let (_, root, _) = token(
        &l,
        &[
            ("grant_type", "client_credentials"),
            ("scope", "tickets:read repo:acme/*:write"),
            ("justification", "fix TICKET-42"),
            ("audience", "git"),
        ],
        Some((&oid, &osec)),
    )
    .await;
    let root = root["access_token"].as_str().unwrap().to_owned();
    let (_, agent, _) = token(
        &l,
        &[
            ("grant_type", "client_credentials"),
            ("scope", "tickets:read"),
        ],
        Some((&sid, &ssec)),
    )
    .await;
    let agent = agent["access_token"].as_str().unwrap().to_owned();
    let at = "urn:ietf:params:oauth:token-type:access_token";
    let xchg = "urn:ietf:params:oauth:grant-type:token-exchange";

    // the orchestrator hands the sub-agent a narrower token
    let (s, v, _) = token(
        &l,
        &[
            ("grant_type", xchg),
            ("subject_token", &root),
            ("subject_token_type", at),
            ("actor_token", &agent),
            ("actor_token_type", at),
            ("scope", "repo:acme/api:write"),
        ],
        Some((&oid, &osec)),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["issued_token_type"], at);
    assert_eq!(v["scope"], "repo:acme/api:write");
    let hop1 = v["access_token"].as_str().unwrap().to_owned();
    let c = claims_of(&hop1);
    assert_eq!(c["act"], json!({"sub": "spiffe://acme.io/agents/coder"}));
    assert_eq!(c["workload"], "sub-agent");
    assert_eq!(c["aud"], "git", "audience defaults to the parent's");
    let e = l.explain(&hop1).await;
    assert_eq!(e["depth"], 1);
    assert_eq!(e["lineage"][0]["workload"], "triage-bot");
    assert_eq!(e["privileges"]["justification"], "fix TICKET-42");

    // the sub-agent narrows again for a plugin it runs; act is carried along
    let (s, v, _) = token(
        &l,
        &[
            ("grant_type", xchg),
            ("subject_token", &hop1),
            ("subject_token_type", at),
            ("ttl", "2m"),
        ],
        Some((&sid, &ssec)),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let hop2 = v["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        claims_of(&hop2)["act"],
        json!({"sub": "spiffe://acme.io/agents/coder"})
    );
    let (s, v, _) = token(
        &l,
        &[
            ("grant_type", xchg),
            ("subject_token", &hop2),
            ("subject_token_type", at),
            ("actor_token", &root),
            ("actor_token_type", at),
        ],
        Some((&sid, &ssec)),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let hop3 = v["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        claims_of(&hop3)["act"],
        json!({"sub": "spiffe://acme.io/agents/triage", "act": {"sub": "spiffe://acme.io/agents/coder"}})
    );
    let e = l.explain(&hop3).await;
    assert_eq!(e["depth"], 3);
    assert_eq!(e["lineage"].as_array().unwrap().len(), 3);

    // refusals: depth limit, widening, someone else's token, inactive subject
    let (s, v, _) = token(
        &l,
        &[
            ("grant_type", xchg),
            ("subject_token", &hop3),
            ("subject_token_type", at),
        ],
        Some((&oid, &osec)),
    )
    .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (400, Some("invalid_grant")),
        "{v}"
    );
    assert!(
        v["error_description"]
            .as_str()
            .unwrap()
            .contains("limit is 3"),
        "{v}"
    );
    let (s, v, _) = token(
        &l,
        &[
            ("grant_type", xchg),
            ("subject_token", &hop1),
            ("subject_token_type", at),
            ("scope", "tickets:read"),
        ],
        Some((&sid, &ssec)),
    )
    .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (400, Some("invalid_scope")),
        "{v}"
    );
    let (s, v, _) = token(
        &l,
        &[
            ("grant_type", xchg),
            ("subject_token", &hop1),
            ("subject_token_type", at),
            ("audience", "prod-db"),
        ],
        Some((&sid, &ssec)),
    )
    .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (400, Some("invalid_target")),
        "{v}"
    );
    let (s, v, _) = token(
        &l,
        &[
            ("grant_type", xchg),
            ("subject_token", &root),
            ("subject_token_type", at),
        ],
        Some((&sid, &ssec)),
    )
    .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (400, Some("invalid_grant")),
        "{v}"
    );
    let (s, v, _) = token(
        &l,
        &[("grant_type", xchg), ("subject_token", &root)],
        Some((&oid, &osec)),
    )
    .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (400, Some("invalid_request")),
        "{v}"
    );

    // revoking the root takes every hop down with it, in one transaction
    let (_, r) = l
        .post(
            "/v1/revocations",
            json!({"token_or_id": root, "reason": "orchestrator compromised"}),
        )
        .await;
    assert_eq!(r["count"], 4, "{r}");
    for t in [&hop1, &hop2, &hop3] {
        let e = l.explain(t).await;
        assert_eq!(e["status"], "revoked");
        assert_eq!(e["revoked"]["trigger"], "parent_revoked");
    }
    let (s, v, _) = token(
        &l,
        &[
            ("grant_type", xchg),
            ("subject_token", &root),
            ("subject_token_type", at),
        ],
        Some((&oid, &osec)),
    )
    .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (400, Some("invalid_grant")),
        "{v}"
    );
}

#[tokio::test]
async fn key_rotation_publishes_both_keys_then_retires_the_old_one() {
    let mut l = Leash::start_with(&[
        "--ttl-cap",
        "dev=2s",
        "--ttl-cap",
        "stage=2s",
        "--ttl-cap",
        "prod=2s",
    ])
    .await;
    l.fixture().await;
    let before = l
        .mint(json!({"workload": "triage-bot", "scopes": ["tickets:read"], "ttl": 2}))
        .await;
    let old_kid = claims_header_kid(before["token"].as_str().unwrap());
    let o = l.cli(&["keys", "rotate", "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let new_kid = v["active_kid"].as_str().unwrap().to_owned();
    assert_ne!(new_kid, old_kid);
    assert_eq!(v["keys"].as_array().unwrap().len(), 2);
    assert!(v["keys"][1]["retires_at"].as_i64().is_some());
    let jwks: Value = l.public_json("/.well-known/jwks.json").await;
    assert_eq!(
        jwks["keys"].as_array().unwrap().len(),
        2,
        "both keys are published during the overlap"
    );
    let after = l
        .mint(json!({"workload": "triage-bot", "scopes": ["tickets:read"], "ttl": 2}))
        .await;
    assert_eq!(
        claims_header_kid(after["token"].as_str().unwrap()),
        new_kid,
        "the new key signs"
    );
    assert_eq!(
        l.explain(before["token"].as_str().unwrap()).await["status"],
        "active",
        "the old key still verifies"
    );
    let (_, evs) = l.get("/v1/audit/events?limit=5").await;
    assert!(
        evs.as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "key.rotated"),
        "{evs}"
    );

    // after the longest TTL the old key leaves the JWKS
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    l.restart().await;
    let jwks: Value = l.public_json("/.well-known/jwks.json").await;
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);
    assert_eq!(jwks["keys"][0]["kid"], new_kid);
}

fn claims_header_kid(jwt: &str) -> String {
    let h: Value =
        serde_json::from_slice(&B64.decode(jwt.split('.').next().unwrap()).unwrap()).unwrap();
    h["kid"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn registered_resource_servers_introspect_and_plain_clients_cannot() {
    let l = Leash::start().await;
    l.fixture().await;
    l.ok("/v1/workloads", json!({"name": "tickets-api", "owner": "alice", "environment": "prod", "scope_ceiling": ["tickets:read"]})).await;
    let o = l.cli(&[
        "client",
        "add",
        "--workload",
        "tickets-api",
        "--introspect",
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rs: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        rs["auth_methods"]
            .as_array()
            .unwrap()
            .contains(&json!("introspection"))
    );
    let plain = client(&l, json!({"workload": "triage-bot"})).await;
    let t = l
        .mint(json!({"workload": "triage-bot", "scopes": ["tickets:read"], "ttl": "5m"}))
        .await;
    let introspect = |id: String, secret: String, token: String| {
        let l = &l;
        async move {
            let r = l
                .http
                .post(format!("{}/oauth2/introspect", l.url))
                .basic_auth(id, Some(secret))
                .form(&[("token", token.as_str())])
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let s = |v: &Value, k: &str| v[k].as_str().unwrap().to_owned();
    let (status, v) =
        introspect(s(&rs, "client_id"), s(&rs, "client_secret"), s(&t, "token")).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["active"], true);
    assert_eq!(v["client_id"], "triage-bot");
    let (status, v) = introspect(
        s(&plain, "client_id"),
        s(&plain, "client_secret"),
        s(&t, "token"),
    )
    .await;
    assert_eq!(
        (status, v["error"].as_str()),
        (401, Some("invalid_client")),
        "{v}"
    );
    let (status, v) = introspect(s(&rs, "client_id"), "lshc_wrong".into(), s(&t, "token")).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (401, Some("invalid_client")),
        "{v}"
    );
}

#[tokio::test]
async fn may_act_limits_who_can_act_for_a_token() {
    let l = Leash::start().await;
    l.fixture().await;
    for (name, id) in [
        ("coder", "spiffe://acme.io/agents/coder"),
        ("stranger", "spiffe://acme.io/agents/stranger"),
    ] {
        l.ok("/v1/workloads", json!({"name": name, "owner": "alice", "environment": "prod", "identity": id, "scope_ceiling": ["tickets:read"]})).await;
    }
    let o = l.cli(&[
        "mint",
        "--workload",
        "triage-bot",
        "--scope",
        "tickets:read",
        "--ttl",
        "10m",
        "--may-act",
        "coder",
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let root: Value = serde_json::from_slice(&o.stdout).unwrap();
    let root = root["token"].as_str().unwrap().to_owned();
    assert_eq!(
        claims_of(&root)["may_act"],
        json!({"sub": "spiffe://acme.io/agents/coder"})
    );
    assert_eq!(
        l.explain(&root).await["may_act"],
        "spiffe://acme.io/agents/coder"
    );
    let c = client(&l, json!({"workload": "triage-bot"})).await;
    let (id, secret) = (
        c["client_id"].as_str().unwrap().to_owned(),
        c["client_secret"].as_str().unwrap().to_owned(),
    );
    let at = "urn:ietf:params:oauth:token-type:access_token";
    for (actor, ok) in [("stranger", false), ("coder", true)] {
        let actor_token = l
            .mint(json!({"workload": actor, "scopes": ["tickets:read"], "ttl": "5m"}))
            .await["token"]
            .as_str()
            .unwrap()
            .to_owned();
        let (s, v, _) = token(
            &l,
            &[
                (
                    "grant_type",
                    "urn:ietf:params:oauth:grant-type:token-exchange",
                ),
                ("subject_token", &root),
                ("subject_token_type", at),
                ("actor_token", &actor_token),
                ("actor_token_type", at),
            ],
            Some((&id, &secret)),
        )
        .await;
        if ok {
            assert_eq!(s, 200, "{v}");
        } else {
            assert_eq!(
                (s, v["error"].as_str()),
                (400, Some("invalid_grant")),
                "{v}"
            );
            assert!(
                v["error_description"].as_str().unwrap().contains("may_act"),
                "{v}"
            );
        }
    }
    let (s, v) = l.post("/v1/tokens", json!({"workload": "triage-bot", "scopes": ["tickets:read"], "ttl": "1m", "may_act": "ghost"})).await;
    assert_eq!(s, 404, "{v}");
}

/// A DPoP key and proofs signed with it (RFC 9449).
struct DpopKey {
    pk8: Vec<u8>,
    jwk: jsonwebtoken::jwk::Jwk,
}

fn dpop_key() -> DpopKey {
    let (pk8, jwk) = crate::harness::es256_key();
    DpopKey {
        pk8,
        jwk: serde_json::from_value(jwk).unwrap(),
    }
}

fn dpop_proof(k: &DpopKey, htu: &str, jti: &str, ath_of: Option<&str>) -> String {
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    h.typ = Some("dpop+jwt".into());
    h.jwk = Some(k.jwk.clone());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut claims = json!({"htm": "POST", "htu": htu, "jti": jti, "iat": now});
    if let Some(t) = ath_of {
        claims["ath"] =
            json!(B64.encode(
                aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, t.as_bytes()).as_ref()
            ));
    }
    jsonwebtoken::encode(&h, &claims, &jsonwebtoken::EncodingKey::from_ec_der(&k.pk8)).unwrap()
}

async fn token_with_dpop(
    l: &Leash,
    form: &[(&str, &str)],
    basic: (&str, &str),
    proof: Option<&str>,
) -> (u16, Value) {
    let mut r = l
        .http
        .post(format!("{}/oauth2/token", l.url))
        .basic_auth(basic.0, Some(basic.1))
        .form(form);
    if let Some(p) = proof {
        r = r.header("DPoP", p);
    }
    let resp = r.send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

#[tokio::test]
async fn dpop_binds_tokens_to_a_key_and_a_stolen_bound_token_is_useless() {
    let l = Leash::start().await;
    l.fixture().await;
    let c = client(&l, json!({"workload": "triage-bot"})).await;
    let (id, secret) = (
        c["client_id"].as_str().unwrap().to_owned(),
        c["client_secret"].as_str().unwrap().to_owned(),
    );
    let htu = format!("{}/oauth2/token", l.url);
    let k = dpop_key();
    let cc = [
        ("grant_type", "client_credentials"),
        ("scope", "tickets:read"),
    ];

    let (s, v) = token_with_dpop(
        &l,
        &cc,
        (&id, &secret),
        Some(&dpop_proof(&k, &htu, "p1", None)),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["token_type"], "DPoP");
    let bound = v["access_token"].as_str().unwrap().to_owned();
    let jkt = claims_of(&bound)["cnf"]["jkt"].as_str().unwrap().to_owned();
    assert_eq!(l.explain(&bound).await["cnf_jkt"], jkt.as_str());

    // proofs: replayed, wrong htu, wrong typ, garbage
    for (proof, needle) in [
        (dpop_proof(&k, &htu, "p1", None), "already used"),
        (
            dpop_proof(&k, "https://elsewhere.example/token", "p2", None),
            "htu",
        ),
        ("not-a-jwt".to_owned(), "not a JWT"),
    ] {
        let (s, v) = token_with_dpop(&l, &cc, (&id, &secret), Some(&proof)).await;
        assert_eq!(
            (s, v["error"].as_str()),
            (400, Some("invalid_dpop_proof")),
            "{needle}: {v}"
        );
        assert!(
            v["error_description"].as_str().unwrap().contains(needle),
            "{v}"
        );
    }

    // a stolen bound token cannot be exchanged without its key
    let xchg = |subject: String| {
        vec![
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange".to_owned(),
            ),
            ("subject_token", subject),
            (
                "subject_token_type",
                "urn:ietf:params:oauth:token-type:access_token".to_owned(),
            ),
        ]
    };
    let pairs = |v: &Vec<(&'static str, String)>| {
        v.iter().map(|(a, b)| (*a, b.clone())).collect::<Vec<_>>()
    };
    let form = pairs(&xchg(bound.clone()));
    let form_ref: Vec<(&str, &str)> = form.iter().map(|(a, b)| (*a, b.as_str())).collect();
    let (s, v) = token_with_dpop(&l, &form_ref, (&id, &secret), None).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (400, Some("invalid_dpop_proof")),
        "{v}"
    );
    let thief = dpop_key();
    let (s, v) = token_with_dpop(
        &l,
        &form_ref,
        (&id, &secret),
        Some(&dpop_proof(&thief, &htu, "t1", Some(&bound))),
    )
    .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (400, Some("invalid_dpop_proof")),
        "{v}"
    );
    // the holder's key works, and the child stays bound to it
    let (s, v) = token_with_dpop(
        &l,
        &form_ref,
        (&id, &secret),
        Some(&dpop_proof(&k, &htu, "p3", Some(&bound))),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        claims_of(v["access_token"].as_str().unwrap())["cnf"]["jkt"],
        jkt.as_str()
    );

    // a third-party DPoP implementation (Node jose) gets a bound token; its replay is refused
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/interop");
    if std::path::Path::new(dir).join("node_modules/jose").exists() {
        let o = std::process::Command::new("node")
            .arg(format!("{dir}/dpop_jose.mjs"))
            .args([&htu, &id, &secret])
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "jose DPoP flow failed: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        let t = String::from_utf8_lossy(&o.stdout).trim().to_owned();
        assert_eq!(l.explain(&t).await["status"], "active");
    } else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install jose (scripts/test)"
        );
    }
}

#[tokio::test]
async fn a_dpop_bound_token_is_allowed_by_authzen_only_with_a_proof_by_its_key() {
    let l = Leash::start().await;
    l.fixture().await;
    let c = client(&l, json!({"workload": "triage-bot"})).await;
    let (id, secret) = (
        c["client_id"].as_str().unwrap().to_owned(),
        c["client_secret"].as_str().unwrap().to_owned(),
    );
    let k = dpop_key();
    let htu = format!("{}/oauth2/token", l.url);
    let (s, v) = token_with_dpop(
        &l,
        &[
            ("grant_type", "client_credentials"),
            ("scope", "tickets:read"),
        ],
        (&id, &secret),
        Some(&dpop_proof(&k, &htu, "mint-1", None)),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let bound = v["access_token"].as_str().unwrap().to_owned();
    let rs = "https://tickets.acme.io/api/T-1";
    let ask = |dpop: Option<Value>| {
        let mut props = json!({"token": bound});
        if let Some(d) = dpop {
            props["dpop"] = d;
        }
        json!({"subject": {"type": "workload", "id": "spiffe://acme.io/agents/triage", "properties": props},
               "action": {"name": "read"}, "resource": {"type": "tickets", "id": "T-1"}})
    };
    // no proof: denied, saying what to send
    let (_, v) = l.post("/access/v1/evaluation", ask(None)).await;
    assert_eq!(v["decision"], false);
    assert!(
        v["context"]["reason"]
            .as_str()
            .unwrap()
            .contains("DPoP-bound"),
        "{v}"
    );
    // a proof by its key for the resource server's request: allowed
    let proof = dpop_proof(&k, rs, "rs-1", Some(&bound));
    let (_, v) = l
        .post(
            "/access/v1/evaluation",
            ask(Some(json!({"proof": proof, "htm": "POST", "htu": rs}))),
        )
        .await;
    assert_eq!(v["decision"], true, "{v}");
    // the same proof again is a replay
    let (_, v) = l
        .post(
            "/access/v1/evaluation",
            ask(Some(json!({"proof": proof, "htm": "POST", "htu": rs}))),
        )
        .await;
    assert_eq!(v["decision"], false);
    assert!(
        v["context"]["reason"]
            .as_str()
            .unwrap()
            .contains("already used"),
        "{v}"
    );
    // a thief's key: denied
    let thief = dpop_key();
    let stolen = dpop_proof(&thief, rs, "rs-2", Some(&bound));
    let (_, v) = l
        .post(
            "/access/v1/evaluation",
            ask(Some(json!({"proof": stolen, "htm": "POST", "htu": rs}))),
        )
        .await;
    assert_eq!(v["decision"], false);
    assert!(
        v["context"]["reason"]
            .as_str()
            .unwrap()
            .contains("another key"),
        "{v}"
    );
}
