//! The OpenID Shared Signals (SSF 1.0) transmitter: metadata, stream
//! management with per-client isolation, CAEP SETs pushed (RFC 8935) and
//! polled (RFC 8936) when Leash revokes a token, verification events, and
//! no event lost across a restart.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{Leash, Receiver};

const SESSION_REVOKED: &str = "https://schemas.openid.net/secevent/caep/event-type/session-revoked";
const CREDENTIAL_CHANGE: &str =
    "https://schemas.openid.net/secevent/caep/event-type/credential-change";
const VERIFICATION: &str = "https://schemas.openid.net/secevent/ssf/event-type/verification";

/// A registered OAuth client of the fixture's workload: (id, secret).
async fn client(l: &Leash) -> (String, String) {
    let v = l.ok("/v1/clients", json!({"workload": "triage-bot"})).await;
    (
        v["client_id"].as_str().unwrap().to_owned(),
        v["client_secret"].as_str().unwrap().to_owned(),
    )
}

/// A management or poll call as a receiver (HTTP Basic client credentials).
async fn call(
    l: &Leash,
    who: &(String, String),
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let r = l
        .http
        .request(method, format!("{}{path}", l.url))
        .basic_auth(&who.0, Some(&who.1));
    crate::harness::send(r, body).await
}

async fn create(l: &Leash, who: &(String, String), body: Value) -> Value {
    let (s, v) = call(l, who, reqwest::Method::POST, "/ssf/stream", Some(body)).await;
    assert_eq!(s, 201, "{v}");
    v
}

async fn revoke(l: &Leash, id: &str, reason: &str) {
    let (s, v) = l
        .post(
            "/v1/revocations",
            json!({"token_or_id": id, "reason": reason}),
        )
        .await;
    assert!(s.is_success(), "{v}");
}

async fn mint(l: &Leash, run: i64) -> String {
    let t = l
        .mint(
            json!({"workload": "triage-bot", "run": run, "scopes": ["tickets:read"], "ttl": "10m"}),
        )
        .await;
    t["id"].as_str().unwrap().to_owned()
}

/// Verify a SET's signature against the published JWKS and return its
/// header and claims.
async fn verify_set(l: &Leash, set: &str, aud: &str) -> (jsonwebtoken::Header, Value) {
    let jwks: jsonwebtoken::jwk::JwkSet =
        serde_json::from_value(l.public_json("/.well-known/jwks.json").await).unwrap();
    let header = jsonwebtoken::decode_header(set).unwrap();
    let jwk = jwks.find(header.kid.as_deref().unwrap()).unwrap();
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    v.set_audience(&[aud]);
    v.set_issuer(&[l.url.as_str()]);
    // a SET has no exp (RFC 8417 §2.2)
    v.required_spec_claims.clear();
    v.validate_exp = false;
    let data = jsonwebtoken::decode::<Value>(set, &key, &v).unwrap();
    (header, data.claims)
}

async fn poll(l: &Leash, who: &(String, String), stream: &str, body: Value) -> Value {
    let (s, v) = call(
        l,
        who,
        reqwest::Method::POST,
        &format!("/ssf/poll/{stream}"),
        Some(body),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    v
}

#[tokio::test]
async fn ssf_configuration_names_the_endpoints_and_delivery_methods() {
    let l = Leash::start().await;
    let c = l.public_json("/.well-known/ssf-configuration").await;
    assert_eq!(c["spec_version"], "1_0");
    assert_eq!(c["issuer"], l.url);
    assert_eq!(c["jwks_uri"], format!("{}/.well-known/jwks.json", l.url));
    assert_eq!(
        c["delivery_methods_supported"],
        json!(["urn:ietf:rfc:8935", "urn:ietf:rfc:8936"])
    );
    assert_eq!(c["configuration_endpoint"], format!("{}/ssf/stream", l.url));
    assert_eq!(c["status_endpoint"], format!("{}/ssf/status", l.url));
    assert_eq!(c["verification_endpoint"], format!("{}/ssf/verify", l.url));
    assert_eq!(
        c["authorization_schemes"][0]["spec_urn"],
        "urn:ietf:rfc:6749"
    );
}

#[tokio::test]
async fn ssf_streams_are_managed_per_client_and_bad_requests_say_what_is_wrong() {
    let l = Leash::start().await;
    l.fixture().await;
    let a = client(&l).await;
    let b = client(&l).await;

    // without credentials, or with a wrong secret: 401
    let resp = l
        .http
        .get(format!("{}/ssf/stream", l.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let (s, _) = call(
        &l,
        &(a.0.clone(), "wrong".into()),
        reqwest::Method::GET,
        "/ssf/stream",
        None,
    )
    .await;
    assert_eq!(s, 401);

    // no delivery: poll, with Leash's poll URL
    let p = create(&l, &a, json!({"events_requested": [SESSION_REVOKED, "urn:example:unknown"], "description": "a's poll"})).await;
    let id = p["stream_id"].as_str().unwrap();
    assert_eq!(p["iss"], l.url);
    assert_eq!(p["aud"], a.0);
    assert_eq!(p["delivery"]["method"], "urn:ietf:rfc:8936");
    assert_eq!(
        p["delivery"]["endpoint_url"],
        format!("{}/ssf/poll/{id}", l.url)
    );
    assert_eq!(
        p["events_supported"],
        json!([SESSION_REVOKED, CREDENTIAL_CHANGE])
    );
    assert_eq!(p["events_delivered"], json!([SESSION_REVOKED]));
    assert_eq!(p["description"], "a's poll");

    // push with an authorization header: stored, never shown back
    let push = create(&l, &a, json!({"delivery": {"method": "urn:ietf:rfc:8935", "endpoint_url": "https://rx.example/events", "authorization_header": "Bearer s3cret"}, "events_requested": [CREDENTIAL_CHANGE]})).await;
    assert!(!push.to_string().contains("s3cret"), "{push}");
    assert_eq!(
        push["delivery"]["endpoint_url"],
        "https://rx.example/events"
    );

    // read one, list
    let (s, one) = call(
        &l,
        &a,
        reqwest::Method::GET,
        &format!("/ssf/stream?stream_id={id}"),
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(one["stream_id"], id);
    let (_, list) = call(&l, &a, reqwest::Method::GET, "/ssf/stream", None).await;
    assert_eq!(list.as_array().unwrap().len(), 2);

    // client b sees none of a's streams, and cannot touch them
    let (_, list) = call(&l, &b, reqwest::Method::GET, "/ssf/stream", None).await;
    assert_eq!(list, json!([]));
    let (s, _) = call(
        &l,
        &b,
        reqwest::Method::GET,
        &format!("/ssf/stream?stream_id={id}"),
        None,
    )
    .await;
    assert_eq!(s, 404);
    let (s, _) = call(
        &l,
        &b,
        reqwest::Method::DELETE,
        &format!("/ssf/stream?stream_id={id}"),
        None,
    )
    .await;
    assert_eq!(s, 404);
    let (s, _) = call(
        &l,
        &b,
        reqwest::Method::POST,
        "/ssf/status",
        Some(json!({"stream_id": id, "status": "disabled"})),
    )
    .await;
    assert_eq!(s, 404);
    let (s, _) = call(
        &l,
        &b,
        reqwest::Method::POST,
        &format!("/ssf/poll/{id}"),
        Some(json!({"returnImmediately": true})),
    )
    .await;
    assert_eq!(s, 404);
    // the operator sees every stream
    let (s, all) = l.get("/ssf/stream").await;
    assert_eq!(s, 200);
    assert_eq!(all.as_array().unwrap().len(), 2);

    // PATCH changes what is sent; PUT replaces the whole configuration
    let (s, v) = call(
        &l,
        &a,
        reqwest::Method::PATCH,
        "/ssf/stream",
        Some(json!({"stream_id": id, "events_requested": [SESSION_REVOKED, CREDENTIAL_CHANGE]})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["events_delivered"],
        json!([SESSION_REVOKED, CREDENTIAL_CHANGE])
    );
    assert_eq!(v["description"], "a's poll");
    let (s, v) = call(
        &l,
        &a,
        reqwest::Method::PUT,
        "/ssf/stream",
        Some(json!({"stream_id": id, "events_requested": [CREDENTIAL_CHANGE]})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["events_delivered"], json!([CREDENTIAL_CHANGE]));
    assert!(v.get("description").is_none(), "{v}");
    // a transmitter-supplied field that does not match: 400
    let (s, v) = call(
        &l,
        &a,
        reqwest::Method::PATCH,
        "/ssf/stream",
        Some(json!({"stream_id": id, "iss": "https://evil.example"})),
    )
    .await;
    assert_eq!(s, 400);
    assert!(v["detail"].as_str().unwrap().contains("iss"), "{v}");

    // bad inputs: each says what to send instead
    for (body, needle) in [
        (
            json!({"delivery": {"method": "urn:example:carrier-pigeon"}}),
            "urn:ietf:rfc:8935",
        ),
        (
            json!({"delivery": {"method": "urn:ietf:rfc:8935"}}),
            "endpoint_url",
        ),
        (
            json!({"delivery": {"method": "urn:ietf:rfc:8935", "endpoint_url": "ftp://rx.example/x"}}),
            "http://",
        ),
        (
            json!({"delivery": {"method": "urn:ietf:rfc:8936", "authorization_header": "x"}}),
            "push delivery only",
        ),
        (
            json!({"events_requested": (0..40).map(|i| format!("urn:e:{i}")).collect::<Vec<_>>()}),
            "at most 32",
        ),
    ] {
        let (s, v) = call(&l, &a, reqwest::Method::POST, "/ssf/stream", Some(body)).await;
        assert_eq!(s, 400, "{v}");
        assert!(
            v["detail"].as_str().unwrap().contains(needle),
            "{needle}: {v}"
        );
    }
    let (s, _) = call(
        &l,
        &a,
        reqwest::Method::POST,
        "/ssf/status",
        Some(json!({"stream_id": id, "status": "asleep"})),
    )
    .await;
    assert_eq!(s, 400);
    // an oversized body is refused before it is read
    let big = "x".repeat(70 * 1024);
    let (s, _) = call(
        &l,
        &a,
        reqwest::Method::POST,
        "/ssf/stream",
        Some(json!({"description": big})),
    )
    .await;
    assert_eq!(s, 413);

    // status: read, pause with a reason
    let (s, st) = call(
        &l,
        &a,
        reqwest::Method::GET,
        &format!("/ssf/status?stream_id={id}"),
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(st["status"], "enabled");
    let (s, st) = call(
        &l,
        &a,
        reqwest::Method::POST,
        "/ssf/status",
        Some(json!({"stream_id": id, "status": "paused", "reason": "maintenance"})),
    )
    .await;
    assert_eq!(s, 200, "{st}");
    assert_eq!(
        (st["status"].as_str(), st["reason"].as_str()),
        (Some("paused"), Some("maintenance"))
    );

    // delete: 204, then 404
    let (s, _) = call(
        &l,
        &a,
        reqwest::Method::DELETE,
        &format!("/ssf/stream?stream_id={id}"),
        None,
    )
    .await;
    assert_eq!(s, 204);
    let (s, _) = call(
        &l,
        &a,
        reqwest::Method::GET,
        &format!("/ssf/stream?stream_id={id}"),
        None,
    )
    .await;
    assert_eq!(s, 404);

    // every change is in the audit chain; the push secret is not
    let (_, events) = l.get("/v1/audit/events?limit=1000").await;
    let text = events.to_string();
    assert!(
        text.contains("ssf.stream_created")
            && text.contains("ssf.stream_deleted")
            && text.contains("ssf.status_changed"),
        "{text}"
    );
    assert!(!text.contains("s3cret"));
    assert!(!l.logs().contains("s3cret"));
}

#[tokio::test]
async fn ssf_push_delivers_a_signed_session_revoked_set_after_the_receiver_fails_once() {
    let l = Leash::start().await;
    let run = l.fixture().await;
    let a = client(&l).await;
    let rx = Receiver::start_answering(vec![500, 202]).await;
    create(&l, &a, json!({"delivery": {"method": "urn:ietf:rfc:8935", "endpoint_url": rx.url, "authorization_header": "Bearer rx-token"}, "events_requested": [SESSION_REVOKED]})).await;
    let id = mint(&l, run).await;
    revoke(&l, &id, "laptop stolen").await;

    // the first push gets 500; the retry (after the backoff) is accepted
    let deadline = Instant::now() + Duration::from_secs(20);
    let got = loop {
        let got = rx.got.lock().unwrap().clone();
        if got.len() >= 2 {
            break got;
        }
        assert!(
            Instant::now() < deadline,
            "only {} pushes arrived; log:\n{}",
            got.len(),
            l.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for r in &got {
        assert_eq!(r.header("content-type"), Some("application/secevent+jwt"));
        assert_eq!(r.header("accept"), Some("application/json"));
        assert_eq!(r.header("authorization"), Some("Bearer rx-token"));
    }
    // the same SET both times
    assert_eq!(got[0].body, got[1].body);
    let set = String::from_utf8(got[1].body.clone()).unwrap();
    let (header, claims) = verify_set(&l, &set, &a.0).await;
    assert_eq!(header.typ.as_deref(), Some("secevent+jwt"));
    assert_eq!(claims["iss"], l.url);
    assert_eq!(claims["aud"], a.0);
    assert!(claims["iat"].as_i64().unwrap() > 1_600_000_000);
    assert!(claims["jti"].as_str().unwrap().len() >= 16);
    assert!(claims["txn"].as_str().unwrap().starts_with("leash:event:"));
    assert_eq!(claims["sub_id"], json!({"format": "opaque", "id": id}));
    let events = claims["events"].as_object().unwrap();
    assert_eq!(events.len(), 1, "one event per SET");
    let e = &events[SESSION_REVOKED];
    assert_eq!(e["initiating_entity"], "admin");
    assert!(
        e["reason_admin"]["en"]
            .as_str()
            .unwrap()
            .contains("laptop stolen"),
        "{e}"
    );
    assert!(e["event_timestamp"].as_i64().unwrap() > 1_600_000_000);

    // delivered: nothing pending, no failure; a third push never comes
    let (_, streams) = call(&l, &a, reqwest::Method::GET, "/ssf/stream", None).await;
    let sid = streams[0]["stream_id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, st) = call(
            &l,
            &a,
            reqwest::Method::GET,
            &format!("/ssf/status?stream_id={sid}"),
            None,
        )
        .await;
        if st["delivery"]["pending"] == 0 {
            assert_eq!(st["delivery"]["failed"], 0);
            break;
        }
        assert!(Instant::now() < deadline, "{st}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(rx.got.lock().unwrap().len(), 2);
    assert!(!l.logs().contains("rx-token"));
}

#[tokio::test]
async fn ssf_a_receiver_that_refuses_a_set_gets_it_recorded_failed() {
    let l = Leash::start().await;
    let run = l.fixture().await;
    let a = client(&l).await;
    let rx = Receiver::start(400).await;
    let s = create(&l, &a, json!({"delivery": {"method": "urn:ietf:rfc:8935", "endpoint_url": rx.url}, "events_requested": [CREDENTIAL_CHANGE]})).await;
    let sid = s["stream_id"].as_str().unwrap();
    let id = mint(&l, run).await;
    revoke(&l, &id, "rotated").await;
    let got = rx.wait_for(1).await;
    let (_, claims) = verify_set(&l, std::str::from_utf8(&got[0].body).unwrap(), &a.0).await;
    let e = &claims["events"][CREDENTIAL_CHANGE];
    assert_eq!(e["change_type"], "revoke");
    assert_eq!(e["credential_type"], "leash-token");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, st) = call(
            &l,
            &a,
            reqwest::Method::GET,
            &format!("/ssf/status?stream_id={sid}"),
            None,
        )
        .await;
        if st["delivery"]["failed"] == 1 {
            assert!(
                st["delivery"]["last_error"]
                    .as_str()
                    .unwrap()
                    .contains("HTTP 400"),
                "{st}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "{st}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, events) = l.get("/v1/audit/events?limit=1000").await;
    assert!(events.to_string().contains("ssf.delivery_failed"));
    // a permanent refusal is not retried
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(rx.got.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn ssf_poll_returns_sets_until_acknowledged_and_carries_verification() {
    let l = Leash::start().await;
    let run = l.fixture().await;
    let a = client(&l).await;
    let s = create(
        &l,
        &a,
        json!({"events_requested": [SESSION_REVOKED, CREDENTIAL_CHANGE]}),
    )
    .await;
    let sid = s["stream_id"].as_str().unwrap().to_owned();
    let t1 = mint(&l, run).await;
    let t2 = mint(&l, run).await;
    revoke(&l, &t1, "one").await;
    revoke(&l, &t2, "two").await;

    // long poll: waits for the first SETs to be queued
    let first = poll(&l, &a, &sid, json!({"maxEvents": 1})).await;
    assert_eq!(first["sets"].as_object().unwrap().len(), 1, "{first}");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, st) = call(
            &l,
            &a,
            reqwest::Method::GET,
            &format!("/ssf/status?stream_id={sid}"),
            None,
        )
        .await;
        if st["delivery"]["pending"] == 4 {
            break;
        }
        assert!(Instant::now() < deadline, "{st}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let v = poll(&l, &a, &sid, json!({"maxEvents": 3})).await;
    let sets = v["sets"].as_object().unwrap().clone();
    assert_eq!(sets.len(), 3, "{v}");
    assert_eq!(v["moreAvailable"], true);
    let mut subjects = Vec::new();
    for (jti, set) in &sets {
        let (_, c) = verify_set(&l, set.as_str().unwrap(), &a.0).await;
        assert_eq!(&c["jti"], jti);
        subjects.push(c["sub_id"]["id"].as_str().unwrap().to_owned());
    }
    assert!(subjects.contains(&t1));
    // unacknowledged SETs come again
    let again = poll(
        &l,
        &a,
        &sid,
        json!({"maxEvents": 3, "returnImmediately": true}),
    )
    .await;
    assert_eq!(again["sets"].as_object().unwrap().len(), 3);
    // acknowledged ones do not
    let acks: Vec<&String> = sets.keys().collect();
    let v = poll(
        &l,
        &a,
        &sid,
        json!({"ack": acks, "maxEvents": 10, "returnImmediately": true}),
    )
    .await;
    let rest = v["sets"].as_object().unwrap();
    assert_eq!(rest.len(), 1, "{v}");
    assert_eq!(v["moreAvailable"], false);
    let last: Vec<&String> = rest.keys().collect();
    let v = poll(
        &l,
        &a,
        &sid,
        json!({"ack": last, "returnImmediately": true}),
    )
    .await;
    assert_eq!(v["sets"], json!({}));

    // verification: the state comes back in a verification SET about the stream
    let (st, _) = call(
        &l,
        &a,
        reqwest::Method::POST,
        "/ssf/verify",
        Some(json!({"stream_id": sid, "state": "xyz-123"})),
    )
    .await;
    assert_eq!(st, 204);
    let v = poll(&l, &a, &sid, json!({})).await;
    let (jti, set) = v["sets"].as_object().unwrap().iter().next().unwrap();
    let (_, c) = verify_set(&l, set.as_str().unwrap(), &a.0).await;
    assert_eq!(c["sub_id"], json!({"format": "opaque", "id": sid}));
    assert_eq!(c["events"][VERIFICATION]["state"], "xyz-123");
    // a receiver's error report is recorded and the SET not sent again
    let v = poll(&l, &a, &sid, json!({"setErrs": {jti: {"err": "invalid_state", "description": "unexpected"}}, "returnImmediately": true})).await;
    assert_eq!(v["sets"], json!({}));
    let (_, st) = call(
        &l,
        &a,
        reqwest::Method::GET,
        &format!("/ssf/status?stream_id={sid}"),
        None,
    )
    .await;
    assert_eq!(st["delivery"]["failed"], 1, "{st}");

    // paused: held (not returned); enabled again: delivered
    call(
        &l,
        &a,
        reqwest::Method::POST,
        "/ssf/status",
        Some(json!({"stream_id": sid, "status": "paused"})),
    )
    .await;
    let t3 = mint(&l, run).await;
    revoke(&l, &t3, "three").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let v = poll(&l, &a, &sid, json!({"returnImmediately": true})).await;
    assert_eq!(v["sets"], json!({}));
    call(
        &l,
        &a,
        reqwest::Method::POST,
        "/ssf/status",
        Some(json!({"stream_id": sid, "status": "enabled"})),
    )
    .await;
    let v = poll(&l, &a, &sid, json!({"returnImmediately": true})).await;
    assert_eq!(v["sets"].as_object().unwrap().len(), 2, "{v}");
}

#[tokio::test]
async fn ssf_a_restart_between_revocation_and_delivery_loses_no_event() {
    let mut l = Leash::start().await;
    let run = l.fixture().await;
    let a = client(&l).await;
    let s = create(&l, &a, json!({"events_requested": [SESSION_REVOKED]})).await;
    let sid = s["stream_id"].as_str().unwrap().to_owned();
    let id = mint(&l, run).await;
    revoke(&l, &id, "before the crash").await;
    // killed at once: the SET may or may not have been queued yet
    l.restart().await;
    let v = poll(&l, &a, &sid, json!({"maxEvents": 10})).await;
    let sets = v["sets"].as_object().unwrap();
    assert_eq!(sets.len(), 1, "{v}");
    let (_, c) = verify_set(&l, sets.values().next().unwrap().as_str().unwrap(), &a.0).await;
    assert_eq!(c["sub_id"]["id"], id);
    let (s, v) = l.get("/v1/audit/verify").await;
    assert!(s.is_success(), "{v}");
}
