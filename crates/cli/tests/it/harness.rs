//! A running Leash server for one test.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

pub const BIN: &str = env!("CARGO_BIN_EXE_leash");

pub struct Leash {
    pub root: tempfile::TempDir,
    pub url: String,
    pub token: String,
    pub http: reqwest::Client,
    port: u16,
    extra: Vec<String>,
    child: Option<Child>,
    /// The server's PostgreSQL database, when the suite runs on PostgreSQL
    /// (owned: dropped with the first server; replicas only name it).
    _db: Option<crate::pg::PgDatabase>,
    db_url: Option<String>,
    data_dir: PathBuf,
}

/// The key-encryption key every test server on PostgreSQL seals its
/// signing keys under (32 bytes, base64).
pub const TEST_KEK: &str = "jTWFKbX9qthe8SiAFQ3MkYeZMZ9mi8emcnuat2j+KwA=";

/// A fresh PostgreSQL database for a server when the suite runs on
/// PostgreSQL (`LEASH_TEST_SERVER_DATABASE=postgres`), else None (SQLite).
async fn server_database() -> Option<crate::pg::PgDatabase> {
    match std::env::var("LEASH_TEST_SERVER_DATABASE").as_deref() {
        Ok("postgres") => Some(crate::pg::PgDatabase::create().await.expect(
            "LEASH_TEST_SERVER_DATABASE=postgres needs LEASH_TEST_DATABASE_URL (e.g. postgres://postgres@127.0.0.1:5432/postgres)",
        )),
        Ok("sqlite") | Ok("") | Err(_) => None,
        Ok(other) => panic!("LEASH_TEST_SERVER_DATABASE is sqlite or postgres, not `{other}`"),
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

impl Leash {
    pub async fn start() -> Leash {
        Self::start_with(&[]).await
    }

    /// A server for tests of other features: write-capable mints are
    /// issued at once (`--no-write-approval`), as most tests mint them.
    pub async fn start_with(extra: &[&str]) -> Leash {
        let mut flags = vec!["--no-write-approval"];
        flags.extend_from_slice(extra);
        Self::start_exactly(&flags).await
    }

    /// A server with exactly these flags (approvals required by default).
    pub async fn start_exactly(extra: &[&str]) -> Leash {
        Self::on(server_database().await, None, None, extra).await
    }

    /// A server on `db` (None: SQLite), or on `url` without owning it,
    /// with its data directory in `data` (default: its own).
    async fn on(
        db: Option<crate::pg::PgDatabase>,
        url: Option<String>,
        data: Option<PathBuf>,
        extra: &[&str],
    ) -> Leash {
        let root = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut l = Leash {
            data_dir: data.unwrap_or_else(|| root.path().join("data")),
            root,
            url: format!("http://127.0.0.1:{port}"),
            token: String::new(),
            http: reqwest::Client::new(),
            port,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
            db_url: url.or_else(|| db.as_ref().map(|d| d.url.clone())),
            _db: db,
        };
        l.spawn().await;
        l
    }

    /// A server on a fresh PostgreSQL database of its own, whatever the
    /// suite's backend (None when no PostgreSQL is configured).
    pub async fn start_on_postgres(extra: &[&str]) -> Option<Leash> {
        let db = crate::pg::PgDatabase::create().await?;
        let mut flags = vec!["--no-write-approval"];
        flags.extend_from_slice(extra);
        Some(Self::on(Some(db), None, None, &flags).await)
    }

    /// Another replica of this (PostgreSQL) server: the same database and
    /// data directory (operator credential, policies), its own port.
    pub async fn replica(&self, extra: &[&str]) -> Leash {
        let url = self
            .db_url
            .clone()
            .expect("replicas share a PostgreSQL database");
        let mut flags = vec!["--no-write-approval"];
        flags.extend_from_slice(extra);
        Self::on(None, Some(url), Some(self.data()), &flags).await
    }

    /// A replica of this server that reaches the database at `url` (the
    /// same database through another route, e.g. a proxy the test cuts).
    pub async fn replica_via(&self, url: &str, extra: &[&str]) -> Leash {
        let mut flags = vec!["--no-write-approval"];
        flags.extend_from_slice(extra);
        Self::on(None, Some(url.to_owned()), Some(self.data()), &flags).await
    }

    /// The server's PostgreSQL database URL when it runs on PostgreSQL
    /// (None: SQLite in the data directory).
    pub fn database_url(&self) -> Option<&str> {
        self.db_url.as_deref()
    }

    pub fn data(&self) -> PathBuf {
        self.data_dir.clone()
    }

    pub fn log_path(&self) -> PathBuf {
        self.root.path().join("server.log")
    }

    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let child = Command::new(BIN)
            .args(["serve", "--data"])
            .arg(self.data())
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .args(&self.extra)
            .args(self.db_url.iter().flat_map(|u| ["--database", u.as_str()]))
            .envs(
                self.db_url
                    .iter()
                    .map(|_| ("LEASH_KEY_ENCRYPTION_KEY", TEST_KEK)),
            )
            .env("LEASH_LOG", "debug")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = self.http.get(format!("{}/health", self.url)).send().await
                && r.status().is_success()
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "server did not come up; log:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.token = std::fs::read_to_string(self.data().join("operator.token"))
            .unwrap()
            .trim()
            .to_owned();
    }

    /// Kill the server hard (SIGKILL): nothing acknowledged may be lost.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Kill -9 and start again on the same directory and port.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Run the CLI against this server.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_in(self.root.path(), args)
    }

    pub fn cli_in(&self, cwd: &Path, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .current_dir(cwd)
            .env("LEASH_URL", &self.url)
            .env("LEASH_DATA", self.data())
            .env_remove("LEASH_TOKEN")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Run the CLI with `input` on stdin.
    pub fn cli_stdin(&self, args: &[&str], input: &[u8]) -> Output {
        use std::io::Write;
        let mut child = Command::new(BIN)
            .args(args)
            .current_dir(self.root.path())
            .env("LEASH_URL", &self.url)
            .env("LEASH_DATA", self.data())
            .env_remove("LEASH_TOKEN")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        child.wait_with_output().unwrap()
    }

    pub async fn req(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let r = self
            .http
            .request(method, format!("{}{}", self.url, path))
            .bearer_auth(&self.token);
        send(r, body).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.req(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.req(reqwest::Method::GET, path, None).await
    }

    /// POST that must succeed.
    pub async fn ok(&self, path: &str, body: Value) -> Value {
        let (s, v) = self.post(path, body).await;
        assert!(s.is_success(), "POST {path} -> {s}: {v}");
        v
    }

    pub async fn mint(&self, body: Value) -> Value {
        self.ok("/v1/tokens", body).await
    }

    pub async fn explain(&self, token_or_id: &str) -> Value {
        self.ok("/v1/explain", json!({"token_or_id": token_or_id}))
            .await
    }

    /// alice (business owner) → triage-bot (prod) → workflow triage; returns a running run id.
    pub async fn fixture(&self) -> i64 {
        self.ok(
            "/v1/owners",
            json!({"name": "alice", "email": "alice@acme.io", "business_owner": true}),
        )
        .await;
        self.ok("/v1/workloads", json!({"name": "triage-bot", "owner": "alice", "environment": "prod", "identity": "spiffe://acme.io/agents/triage", "scope_ceiling": ["tickets:read", "repo:acme/*:write"]})).await;
        self.ok("/v1/workflows", json!({"name": "triage", "owner": "alice", "definition": "steps: [read, comment]", "tools": ["jira", "git"]})).await;
        self.start_run("triage", "triage-bot").await
    }

    pub async fn start_run(&self, workflow: &str, workload: &str) -> i64 {
        self.ok(
            "/v1/runs",
            json!({"workflow": workflow, "workload": workload}),
        )
        .await["id"]
            .as_i64()
            .unwrap()
    }

    /// GET a public (unauthenticated) JSON endpoint.
    pub async fn public_json(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{}", self.url, path))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// GET a public (unauthenticated) text endpoint.
    pub async fn public_text(&self, path: &str) -> String {
        self.http
            .get(format!("{}{}", self.url, path))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub async fn event_count(&self) -> i64 {
        let (_, v) = self.get("/v1/audit/verify").await;
        v["events"].as_i64().unwrap()
    }

    /// Wait until every decision so far about a known token is written as
    /// usage: `leash_usage_recorded_total` catches up with the decisions
    /// counted, all read from one `/metrics` snapshot. (A token-less
    /// evaluation is a decision recorded nowhere, so a test that waits on
    /// this sends none.)
    pub async fn usage_written(&self) {
        let caught_up = until(async || {
            let m = self.public_text("/metrics").await;
            let c = |name: &str| counter(&m, name);
            c("leash_usage_recorded")
                == c("leash_decisions_allowed") + c("leash_decisions_denied")
                    - c("leash_decisions_unknown_token")
                    - c("leash_decisions_unvouched")
        })
        .await;
        assert!(caught_up, "usage records were not written within 10 s");
    }
}

impl Drop for Leash {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An unlabelled counter (`NAME_total`) in a `/metrics` text, 0 when absent.
fn counter(metrics: &str, name: &str) -> u64 {
    let prefix = format!("{name}_total ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0)
}

/// Poll `f` every 100 ms for up to 10 s; whether it came true.
pub async fn until(mut f: impl AsyncFnMut() -> bool) -> bool {
    for _ in 0..100 {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// A fresh P-256 key: its PKCS#8 bytes and its public JWK (no `kid`).
pub fn es256_key() -> (Vec<u8>, Value) {
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let pk8 = EcdsaKeyPair::generate_pkcs8(
        &ECDSA_P256_SHA256_FIXED_SIGNING,
        &aws_lc_rs::rand::SystemRandom::new(),
    )
    .unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pk8.as_ref()).unwrap();
    let p = pair.public_key().as_ref(); // 0x04 ‖ x ‖ y
    (
        pk8.as_ref().to_vec(),
        json!({"kty": "EC", "crv": "P-256", "x": b64.encode(&p[1..33]), "y": b64.encode(&p[33..65])}),
    )
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A request a [`Receiver`] got.
#[derive(Debug, Clone)]
pub struct Received {
    /// Lower-cased header names with their values.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// An HTTP endpoint on loopback that records every request and answers
/// `status` (a webhook receiver standing in for an owner or a connector).
pub struct Receiver {
    pub url: String,
    pub got: std::sync::Arc<std::sync::Mutex<Vec<Received>>>,
}

impl Receiver {
    pub async fn start(status: u16) -> Receiver {
        Self::start_answering(vec![status]).await
    }

    /// A receiver that answers the n-th request with `statuses[n]`, and
    /// every later one with the last status.
    pub async fn start_answering(statuses: Vec<u16>) -> Receiver {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let statuses = std::sync::Arc::new(statuses);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = got.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let sink = sink.clone();
                let statuses = statuses.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 8192];
                    let (head_end, len) = loop {
                        let n = s.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..i]).to_lowercase();
                            let len = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .and_then(|v| v.trim().parse::<usize>().ok())
                                .unwrap_or(0);
                            break (i + 4, len);
                        }
                    };
                    while buf.len() < head_end + len {
                        let n = s.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            break;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                    let headers = head
                        .lines()
                        .skip(1)
                        .filter_map(|l| l.split_once(':'))
                        .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_owned()))
                        .collect();
                    let body = buf[head_end..].to_vec();
                    let status = {
                        let mut got = sink.lock().unwrap();
                        got.push(Received { headers, body });
                        let n = got.len() - 1;
                        statuses[n.min(statuses.len() - 1)]
                    };
                    let resp = format!(
                        "HTTP/1.1 {status} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{{}}"
                    );
                    let _ = s.write_all(resp.as_bytes()).await;
                });
            }
        });
        Receiver {
            url: format!("http://{addr}/hook"),
            got,
        }
    }

    /// Wait (up to 10 s) until at least `n` requests arrived.
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got = self.got.lock().unwrap().clone();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {n} requests arrived",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// `sha256=HEX` HMAC-SHA256 of `body` under `key`.
pub fn hmac_hex(key: &[u8], body: &[u8]) -> String {
    use aws_lc_rs::hmac;
    let k = hmac::Key::new(hmac::HMAC_SHA256, key);
    hex::encode(hmac::sign(&k, body).as_ref())
}

/// Send `r` (with `body` as JSON when given): the status, and the body as
/// JSON (as a JSON string when it is not JSON).
pub async fn send(mut r: reqwest::RequestBuilder, body: Option<Value>) -> (StatusCode, Value) {
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}
