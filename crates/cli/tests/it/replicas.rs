//! Several `leash serve` replicas on one PostgreSQL database: what one
//! commits (a revocation, a registry change, a key rotation) the others
//! act on at once; over NATS JetStream too; and a replica that loses
//! PostgreSQL or NATS refuses decisions (fail closed, `/health` 503) until
//! it is back, by itself.
//!
//! These tests need PostgreSQL (`LEASH_TEST_DATABASE_URL`) and, for the
//! NATS ones, `nats-server -js` at `LEASH_TEST_NATS_URL` (default
//! 127.0.0.1:4222). They run once, in the suite's SQLite pass (each makes
//! its own PostgreSQL database either way).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};

use crate::harness::Leash;

/// Whether this pass runs the replica tests (the PostgreSQL pass skips
/// them: they make their own databases and would only repeat).
fn this_pass() -> bool {
    std::env::var("LEASH_TEST_SERVER_DATABASE").as_deref() != Ok("postgres")
}

fn nats_url() -> String {
    std::env::var("LEASH_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

async fn decide(l: &Leash, token: &str) -> (bool, String) {
    crate::authz::decide(l, token, "read", "tickets", "T-1", None).await
}

/// Poll `check` until it returns true (bounded: a correctness bound, not a
/// benchmark); returns how long it took.
async fn within(limit: Duration, what: &str, mut check: impl AsyncFnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if check().await {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "{what} did not happen within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn health(l: &Leash) -> (StatusCode, Value) {
    let r = l
        .http
        .get(format!("{}/health", l.url))
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap())
}

async fn read_token(l: &Leash, run: i64) -> Value {
    l.mint(json!({"workload": "triage-bot", "run": run, "scopes": ["tickets:read"], "ttl": "10m"}))
        .await
}

/// Revoked on A, refused on B; a workload registered on B mints on A;
/// keys rotated on B sign tokens that A accepts and publishes.
#[tokio::test]
async fn replicas_share_revocations_registry_and_signing_keys() {
    if !this_pass() {
        return;
    }
    let Some(a) = Leash::start_on_postgres(&[]).await else {
        return;
    };
    let b = a.replica(&[]).await;
    let run = a.fixture().await;
    let t = read_token(&a, run).await;
    let token = t["token"].as_str().unwrap();
    assert!(decide(&b, token).await.0, "B decides on A's token");

    a.ok(
        "/v1/revocations",
        json!({"token_or_id": t["id"], "reason": "leaked in chat"}),
    )
    .await;
    within(
        Duration::from_secs(2),
        "B refusing the revoked token",
        async || {
            let (allow, reason) = decide(&b, token).await;
            !allow && reason.contains("leaked in chat")
        },
    )
    .await;

    // a registry change on B (a new run) is usable on A at once
    let run2 = b.start_run("triage", "triage-bot").await;
    let t2 = read_token(&a, run2).await;
    // and the run ending on A revokes on B
    a.ok(
        &format!("/v1/runs/{run2}/end"),
        json!({"status": "succeeded"}),
    )
    .await;
    within(
        Duration::from_secs(2),
        "B refusing after the run ended on A",
        async || !decide(&b, t2["token"].as_str().unwrap()).await.0,
    )
    .await;

    // keys: both publish the same JWKS; a rotation on B reaches A
    let jwks = |l: &Leash| {
        let url = format!("{}/.well-known/jwks.json", l.url);
        let http = l.http.clone();
        async move {
            let v: Value = http.get(url).send().await.unwrap().json().await.unwrap();
            let mut kids: Vec<String> = v["keys"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| k["kid"].as_str().unwrap().to_owned())
                .collect();
            kids.sort();
            kids
        }
    };
    assert_eq!(jwks(&a).await, jwks(&b).await);
    let rotated = b.ok("/v1/keys/rotate", json!({})).await;
    let kid = rotated["active_kid"].as_str().unwrap().to_owned();
    within(
        Duration::from_secs(3),
        "A publishing B's new key",
        async || jwks(&a).await.contains(&kid),
    )
    .await;
    let run3 = a.start_run("triage", "triage-bot").await;
    let t3 = read_token(&b, run3).await;
    let header = t3["token"]
        .as_str()
        .unwrap()
        .split('.')
        .next()
        .unwrap()
        .to_owned();
    use base64::Engine as _;
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["kid"], kid, "B signs with its new key");
    assert!(
        decide(&a, t3["token"].as_str().unwrap()).await.0,
        "A accepts it"
    );

    // no signing key is ever written to the data directory on PostgreSQL
    let keys_dir = a.data().join("keys");
    assert!(
        !keys_dir.exists() || std::fs::read_dir(&keys_dir).unwrap().next().is_none(),
        "keys live sealed in the database, not in {}",
        keys_dir.display()
    );
}

/// A replica given a different key-encryption key cannot open the shared
/// keys and refuses to start, saying why.
#[tokio::test]
async fn a_replica_with_the_wrong_key_encryption_key_refuses_to_start() {
    if !this_pass() {
        return;
    }
    let Some(a) = Leash::start_on_postgres(&[]).await else {
        return;
    };
    let out = std::process::Command::new(crate::harness::BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(a.data())
        .args(["--database", a.database_url().unwrap()])
        .env("LEASH_KEY_ENCRYPTION_KEY", "00".repeat(32))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("key-encryption key"), "{err}");
    // and none at all is refused too
    let out = std::process::Command::new(crate::harness::BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(a.data())
        .args(["--database", a.database_url().unwrap()])
        .env_remove("LEASH_KEY_ENCRYPTION_KEY")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("LEASH_KEY_ENCRYPTION_KEY"));
}

/// A TCP proxy the test can cut (every connection dropped, nothing
/// accepted) and restore, on a fixed port: a stand-in for a network
/// partition between a replica and a service.
struct Proxy {
    port: u16,
    target: String,
    up: Arc<AtomicBool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Proxy {
    async fn start(target: &str) -> Proxy {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let mut p = Proxy {
            port,
            target: target.to_owned(),
            up: Arc::new(AtomicBool::new(true)),
            task: None,
        };
        p.serve(l);
        p
    }

    fn serve(&mut self, l: TcpListener) {
        let (target, up) = (self.target.clone(), self.up.clone());
        self.task = Some(tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((mut inbound, _)) = l.accept().await else {
                    return;
                };
                let target = target.clone();
                let up = up.clone();
                conns.spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(&target).await else {
                        return;
                    };
                    let copy = tokio::io::copy_bidirectional(&mut inbound, &mut outbound);
                    tokio::select! {
                        _ = copy => {}
                        _ = async { while up.load(Ordering::Acquire) { tokio::time::sleep(Duration::from_millis(20)).await } } => {}
                    }
                });
            }
        }));
    }

    /// Drop every connection and stop accepting.
    async fn cut(&mut self) {
        self.up.store(false, Ordering::Release);
        if let Some(t) = self.task.take() {
            t.abort();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    async fn restore(&mut self) {
        self.up.store(true, Ordering::Release);
        let l = loop {
            match TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(l) => break l,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        self.serve(l);
    }
}

/// A replica cut off from PostgreSQL stops vouching within its staleness
/// bound: decisions deny with the reason and `/health` is 503; the other
/// replica is unaffected; once the database is reachable again the replica
/// catches up (including a revocation made meanwhile) and answers again.
#[tokio::test]
async fn a_replica_that_loses_postgres_fails_closed_and_recovers() {
    if !this_pass() {
        return;
    }
    let Some(a) = Leash::start_on_postgres(&[]).await else {
        return;
    };
    let url = a.database_url().unwrap().to_owned();
    let parsed = reqwest::Url::parse(&url).unwrap();
    let target = format!(
        "{}:{}",
        parsed.host_str().unwrap(),
        parsed.port().unwrap_or(5432)
    );
    let mut proxy = Proxy::start(&target).await;
    let mut via = parsed.clone();
    via.set_host(Some("127.0.0.1")).unwrap();
    via.set_port(Some(proxy.port)).unwrap();
    let b = Leash::replica_via(&a, via.as_str(), &["--max-staleness", "1s"]).await;
    let run = a.fixture().await;
    let t1 = read_token(&a, run).await;
    let t2 = read_token(&a, run).await;
    assert!(decide(&b, t1["token"].as_str().unwrap()).await.0);

    proxy.cut().await;
    within(
        Duration::from_secs(5),
        "B refusing without PostgreSQL",
        async || {
            let (allow, reason) = decide(&b, t1["token"].as_str().unwrap()).await;
            !allow && reason.contains("shared database")
        },
    )
    .await;
    let (status, h) = health(&b).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{h}");
    assert_eq!(h["status"], "unavailable");
    assert!(
        h["reason"].as_str().unwrap().contains("shared database"),
        "{h}"
    );
    // A still answers, and revokes t2 meanwhile
    assert_eq!(health(&a).await.0, StatusCode::OK);
    a.ok(
        "/v1/revocations",
        json!({"token_or_id": t2["id"], "reason": "rotated out"}),
    )
    .await;

    proxy.restore().await;
    within(Duration::from_secs(10), "B vouching again", async || {
        health(&b).await.0 == StatusCode::OK
    })
    .await;
    assert!(
        decide(&b, t1["token"].as_str().unwrap()).await.0,
        "t1 is still good"
    );
    let (allow, reason) = decide(&b, t2["token"].as_str().unwrap()).await;
    assert!(!allow && reason.contains("rotated out"), "{reason}");
    // and B writes again (its writer reconnected)
    read_token(&b, run).await;
}

/// With NATS: a revocation on A is in B's set through JetStream (B's
/// consumer applies it; `/health` counts the stream sequence), and an
/// in-cluster consumer reads it from the subject. B cut off from NATS
/// refuses decisions until it is back and has replayed the stream.
#[tokio::test]
async fn revocations_fan_out_over_nats_and_a_replica_without_nats_fails_closed() {
    if !this_pass() {
        return;
    }
    let nats = nats_url();
    let nats_addr = nats.trim_start_matches("nats://").to_owned();
    if TcpStream::connect(&nats_addr).await.is_err() {
        // CI starts nats-server (.ci/run); there a missing NATS is a failure
        assert!(
            std::env::var_os("CI").is_none(),
            "no NATS at {nats} (start nats-server -js)"
        );
        eprintln!("skipping: no NATS at {nats}");
        return;
    }
    let Some(a) = Leash::start_on_postgres(&["--nats-url", &nats]).await else {
        return;
    };
    let mut proxy = Proxy::start(&nats_addr).await;
    let via = format!("nats://127.0.0.1:{}", proxy.port);
    let b = a.replica(&["--nats-url", &via]).await;
    let run = a.fixture().await;
    let t1 = read_token(&a, run).await;
    let t2 = read_token(&a, run).await;

    // an in-cluster consumer of the subject
    let client = async_nats::connect(&nats).await.unwrap();
    let mut sub = client.subscribe("leash.revocations").await.unwrap();
    let before = health(&b).await.1["nats_applied"].as_u64().unwrap();
    a.ok(
        "/v1/revocations",
        json!({"token_or_id": t1["id"], "reason": "seen in a ticket"}),
    )
    .await;
    let msg = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let m = sub.next().await.unwrap();
            let v: Value = serde_json::from_slice(&m.payload).unwrap();
            if v["revocations"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["token_id"] == t1["id"])
            {
                return v;
            }
        }
    })
    .await
    .expect("the revocation on the NATS subject");
    assert!(msg["head"].as_i64().unwrap() > 0);
    within(Duration::from_secs(2), "B refusing t1", async || {
        !decide(&b, t1["token"].as_str().unwrap()).await.0
    })
    .await;
    // (PostgreSQL's NOTIFY may have been faster; the NATS message follows)
    within(
        Duration::from_secs(2),
        "B applying the NATS message",
        async || health(&b).await.1["nats_applied"].as_u64().unwrap() > before,
    )
    .await;

    // B loses NATS: it stops vouching
    proxy.cut().await;
    within(
        Duration::from_secs(5),
        "B refusing without NATS",
        async || {
            let (allow, reason) = decide(&b, t2["token"].as_str().unwrap()).await;
            !allow && reason.contains("NATS")
        },
    )
    .await;
    let (status, h) = health(&b).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{h}");
    assert!(h["reason"].as_str().unwrap().contains("NATS"), "{h}");
    a.ok(
        "/v1/revocations",
        json!({"token_or_id": t2["id"], "reason": "cut off"}),
    )
    .await;

    proxy.restore().await;
    within(
        Duration::from_secs(15),
        "B vouching again after NATS returns",
        async || health(&b).await.0 == StatusCode::OK,
    )
    .await;
    let (allow, reason) = decide(&b, t2["token"].as_str().unwrap()).await;
    assert!(!allow && reason.contains("cut off"), "{reason}");
}

/// Kill -9 a replica under a load of mints and revocations: every one it
/// acknowledged is on the other replica afterwards, and the clients, which
/// retry there after an error, finish their work.
#[tokio::test]
async fn killing_a_replica_under_load_loses_nothing_acknowledged() {
    if !this_pass() {
        return;
    }
    let Some(mut a) = Leash::start_on_postgres(&[]).await else {
        return;
    };
    let b = a.replica(&[]).await;
    let run = a.fixture().await;
    let (a_url, b_url, token) = (a.url.clone(), b.url.clone(), a.token.clone());
    let acked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut clients = tokio::task::JoinSet::new();
    for c in 0..8 {
        let (a_url, b_url, token) = (a_url.clone(), b_url.clone(), token.clone());
        let acked = acked.clone();
        clients.spawn(async move {
            let http = reqwest::Client::new();
            let (mut minted, mut revoked, mut retried) = (Vec::new(), Vec::new(), 0u32);
            for i in 0..40 {
                // mint, then revoke every other one: on A until it fails, then on B
                let mut url = &a_url;
                let mint = loop {
                    let r = http
                        .post(format!("{url}/v1/tokens"))
                        .bearer_auth(&token)
                        .json(&json!({"workload": "triage-bot", "run": run, "scopes": ["tickets:read"], "ttl": "10m"}))
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status().is_success() => break r.json::<Value>().await.unwrap(),
                        _ => {
                            retried += 1;
                            url = &b_url;
                        }
                    }
                };
                let id = mint["id"].as_str().unwrap().to_owned();
                minted.push(id.clone());
                acked.fetch_add(1, Ordering::AcqRel);
                if (c + i) % 2 == 0 {
                    loop {
                        let r = http
                            .post(format!("{url}/v1/revocations"))
                            .bearer_auth(&token)
                            .json(&json!({"token_or_id": id, "reason": "load"}))
                            .send()
                            .await;
                        match r {
                            Ok(r) if r.status().is_success() => break,
                            _ => {
                                retried += 1;
                                url = &b_url;
                            }
                        }
                    }
                    revoked.push(id);
                }
            }
            (minted, revoked, retried)
        });
    }
    // kill A once a fifth of the work is acknowledged
    within(Duration::from_secs(20), "the load starting", async || {
        acked.load(Ordering::Acquire) >= 64
    })
    .await;
    a.kill();
    let (mut minted, mut revoked, mut retried) = (Vec::new(), Vec::new(), 0);
    while let Some(r) = clients.join_next().await {
        let (m, r, n) = r.unwrap();
        minted.extend(m);
        revoked.extend(r);
        retried += n;
    }
    assert_eq!(minted.len(), 8 * 40, "every client finished");
    assert!(
        retried > 0,
        "the kill happened under load (no client had to retry)"
    );
    for id in &minted {
        let (s, t) = b.get(&format!("/v1/tokens/{id}")).await;
        assert_eq!(s, StatusCode::OK, "acknowledged mint {id} lost: {t}");
        let want = if revoked.contains(id) {
            "revoked"
        } else {
            "active"
        };
        assert_eq!(t["status"], want, "{id}: {t}");
    }
    let (_, audit) = b.get("/v1/audit/verify").await;
    assert_eq!(audit["ok"], true, "{audit}");
}
