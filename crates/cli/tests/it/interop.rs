//! A third-party JOSE library (Python PyJWT) verifies a minted JWT using
//! only the published JWKS.

use std::process::Command;

use serde_json::json;

use crate::harness::Leash;

fn python() -> String {
    std::env::var("LEASH_PYTHON").unwrap_or_else(|_| "python3".into())
}

#[tokio::test]
async fn pyjwt_verifies_a_minted_jwt_with_the_jwks() {
    let probe = Command::new(python())
        .args(["-c", "import jwt, cryptography; print(jwt.__version__)"])
        .output();
    let available = probe.as_ref().is_ok_and(|o| o.status.success());
    if !available {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must provide PyJWT (LEASH_PYTHON): {probe:?}"
        );
        eprintln!(
            "SKIP pyjwt interop: `{} -c 'import jwt, cryptography'` failed; run .ci/run or set LEASH_PYTHON to an interpreter with PyJWT",
            python()
        );
        return;
    }
    let l = Leash::start().await;
    let run = l.fixture().await;
    let t = l.mint(json!({"workload": "triage-bot", "run": run, "scopes": ["tickets:read", "repo:acme/api:write"], "ttl": "10m", "audience": ["tickets-api"], "justification": "triage"})).await;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/interop/verify_jwt.py"
    );
    let o = Command::new(python())
        .arg(script)
        .args([
            &format!("{}/.well-known/jwks.json", l.url),
            t["token"].as_str().unwrap(),
            "tickets-api",
            &l.url,
            t["id"].as_str().unwrap(),
        ])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "PyJWT refused the token:\n{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.contains("verified"), "{out}");

    // a tampered token must fail PyJWT's verification
    let token = t["token"].as_str().unwrap();
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    // flip one payload character: the signed bytes change whatever the text
    let mid = parts[1].len() / 2;
    let flipped = if &parts[1][mid..mid + 1] == "A" {
        "B"
    } else {
        "A"
    };
    parts[1] = format!("{}{}{}", &parts[1][..mid], flipped, &parts[1][mid + 1..]);
    let bad = parts.join(".");
    let o = Command::new(python())
        .arg(script)
        .args([
            &format!("{}/.well-known/jwks.json", l.url),
            &bad,
            "tickets-api",
            &l.url,
            t["id"].as_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!o.status.success(), "PyJWT accepted a tampered token");
}

#[tokio::test]
async fn authlib_client_credentials_with_secret_and_private_key_jwt() {
    let probe = Command::new(python())
        .args(["-c", "import authlib, requests, jwt"])
        .output();
    if !probe.as_ref().is_ok_and(|o| o.status.success()) {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must provide Authlib (LEASH_PYTHON): {probe:?}"
        );
        eprintln!(
            "SKIP authlib interop: `{} -c 'import authlib'` failed; run scripts/test or set LEASH_PYTHON",
            python()
        );
        return;
    }
    let l = Leash::start().await;
    l.fixture().await;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/interop/authlib_client.py"
    );
    let o = Command::new(python())
        .arg(script)
        .args([&l.url, &l.token, "triage-bot"])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "authlib flow failed:\n{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

#[tokio::test]
async fn node_jose_verifies_minted_and_delegated_jwts() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/interop");
    let ready = std::path::Path::new(dir).join("node_modules/jose").exists()
        && Command::new("node")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
    if !ready {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install jose (scripts/test runs npm install in tests/interop)"
        );
        eprintln!("SKIP jose interop: run `npm install` in tests/interop (scripts/test does)");
        return;
    }
    let l = Leash::start().await;
    l.fixture().await;
    l.ok("/v1/workloads", json!({"name": "sub-agent", "owner": "alice", "environment": "prod", "identity": "spiffe://acme.io/agents/coder", "scope_ceiling": ["tickets:read"]})).await;
    let root = l.mint(json!({"workload": "triage-bot", "scopes": ["tickets:read"], "ttl": "10m", "audience": ["tickets-api"]})).await;
    let agent = l
        .mint(json!({"workload": "sub-agent", "scopes": ["tickets:read"], "ttl": "10m"}))
        .await;
    let (_, c) = l
        .post("/v1/clients", json!({"workload": "triage-bot"}))
        .await;
    let r = l
        .http
        .post(format!("{}/oauth2/token", l.url))
        .basic_auth(
            c["client_id"].as_str().unwrap(),
            c["client_secret"].as_str(),
        )
        .form(&[
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ),
            ("subject_token", root["token"].as_str().unwrap()),
            (
                "subject_token_type",
                "urn:ietf:params:oauth:token-type:access_token",
            ),
            ("actor_token", agent["token"].as_str().unwrap()),
            (
                "actor_token_type",
                "urn:ietf:params:oauth:token-type:access_token",
            ),
        ])
        .send()
        .await
        .unwrap();
    let delegated: serde_json::Value = r.json().await.unwrap();
    let jwks = format!("{}/.well-known/jwks.json", l.url);
    for token in [
        root["token"].as_str().unwrap(),
        delegated["access_token"].as_str().unwrap(),
    ] {
        let o = Command::new("node")
            .arg(format!("{dir}/verify_jose.mjs"))
            .args([&jwks, token, "tickets-api", &l.url])
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success() && out.contains("verified"),
            "jose refused: {out} {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    // jose rejects a token whose payload was altered
    let t = root["token"].as_str().unwrap();
    let parts: Vec<&str> = t.split('.').collect();
    let forged = format!("{}.{}x.{}", parts[0], parts[1], parts[2]);
    let o = Command::new("node")
        .arg(format!("{dir}/verify_jose.mjs"))
        .args([&jwks, &forged, "tickets-api", &l.url])
        .output()
        .unwrap();
    assert!(!o.status.success());
}
