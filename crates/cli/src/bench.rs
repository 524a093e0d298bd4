//! `leash bench`: load drivers that talk HTTP/1.1 to a running server.
//!
//! Each client holds one keep-alive connection and sends requests
//! back to back (closed loop), or on a fixed global schedule with `--rate`
//! (open loop: a request whose slot passed while its connection was still
//! busy is timed from the slot, so a stalled server cannot hide its queueing
//! delay; one that waited for its slot is timed from when the driver's 1 ms
//! timer released it, so the timer's resolution is not charged to the server).

use std::io::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine;
use bytes::Bytes;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use serde_json::{Value, json};

use crate::client::Api;
use crate::commands::interactive;
use leash_server::api::dto::{RunEnded, RunView, TokenView};

#[derive(Subcommand)]
pub enum BenchCmd {
    /// Mint tokens as fast as possible (or at --rate) for --duration.
    Mint(MintBench),
    /// Mint --tokens tokens (e.g. 1,000,000 to fill the registry).
    Populate(PopulateBench),
    /// Mint --tokens into one run, then time ending the run (which revokes them all).
    RunEnd(RunEndBench),
    /// Mint one root token and --tokens tokens delegated from it, then time
    /// revoking the root (which revokes the whole lineage).
    Lineage(RunEndBench),
    /// Explain random existing tokens and report latency.
    Explain(ExplainBench),
    /// POST /v1/exposures with a chat message holding a live token, --tokens times: request → durable revocation latency.
    Exposure(ExposureBench),
    /// GET /health: the HTTP stack's own ceiling on this machine, as a peer for the other figures.
    Health(HealthBench),
    /// POST /oauth2/token, client_credentials with client_secret_basic.
    ClientCredentials(HealthBench),
    /// POST /oauth2/token, RFC 8693 exchange of an external ES256 JWT (verify, map, mint, durable commit).
    Exchange(HealthBench),
    /// POST /access/v1/evaluation (or /evaluations with --batch N): AuthZEN decisions
    /// over live tokens (cache, revocation set, binding, scope, Cedar, usage record).
    Authz(AuthzBench),
    /// Ingest --events usage events (JSON lines) over --tokens existing tokens through
    /// POST /v1/usage/ingest, then build the report --reports times.
    Review(ReviewBench),
}

#[derive(Args)]
pub struct ReviewBench {
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,
    /// Distinct existing tokens the events name (read from the registry).
    #[arg(long, default_value_t = 100_000)]
    pub tokens: u64,
    /// Lines per ingest request.
    #[arg(long, default_value_t = 50_000)]
    pub batch: usize,
    /// How many times to build the JSON report.
    #[arg(long, default_value_t = 3)]
    pub reports: u32,
    /// Events per thousand that come from a workload the token is not bound
    /// to, through a browser, so the per-use rules open and refresh findings
    /// as they would on a real estate.
    #[arg(long, default_value_t = 10)]
    pub anomalous_per_mille: u64,
}

#[derive(Args)]
pub struct AuthzBench {
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    #[arg(long, default_value = "10s")]
    pub duration: String,
    /// Distinct live tokens the requests cycle through.
    #[arg(long, default_value_t = 1000)]
    pub tokens: u64,
    /// Send batches of N evaluations to /access/v1/evaluations instead.
    #[arg(long)]
    pub batch: Option<usize>,
    /// Offer this many requests per second on a fixed schedule (open loop;
    /// latency counts from each request's scheduled time) instead of
    /// sending back to back.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Name a resource no earlier request named in every single
    /// evaluation, so no decision can be answered from memory.
    #[arg(long)]
    pub distinct_resources: bool,
}

#[derive(Args)]
pub struct HealthBench {
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    #[arg(long, default_value = "10s")]
    pub duration: String,
    /// Offer this many requests per second on a fixed schedule (open loop)
    /// instead of sending back to back.
    #[arg(long)]
    pub rate: Option<f64>,
}

#[derive(Args)]
pub struct Common {
    /// Concurrent clients (one connection each).
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// jwt or opaque.
    #[arg(long, default_value = "jwt")]
    pub format: String,
}

#[derive(Args)]
pub struct MintBench {
    #[command(flatten)]
    pub common: Common,
    /// How long to run, e.g. 10s.
    #[arg(long, default_value = "10s")]
    pub duration: String,
    /// Requests per second across all clients (open loop); omit for max throughput.
    #[arg(long)]
    pub rate: Option<f64>,
}

#[derive(Args)]
pub struct PopulateBench {
    #[command(flatten)]
    pub common: Common,
    #[arg(long, default_value_t = 100_000)]
    pub tokens: u64,
}

#[derive(Args)]
pub struct RunEndBench {
    #[command(flatten)]
    pub common: Common,
    #[arg(long, default_value_t = 10_000)]
    pub tokens: u64,
}

#[derive(Args)]
pub struct ExposureBench {
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// Tokens minted, then each reported once.
    #[arg(long, default_value_t = 2000)]
    pub tokens: u64,
    /// Reports per second across all clients (open loop); omit for max throughput.
    #[arg(long)]
    pub rate: Option<f64>,
    /// jwt or opaque.
    #[arg(long, default_value = "opaque")]
    pub format: String,
}

#[derive(Args)]
pub struct ExplainBench {
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    #[arg(long, default_value = "10s")]
    pub duration: String,
    /// Distinct token ids to sample from the registry.
    #[arg(long, default_value_t = 2000)]
    pub sample: usize,
}

/// Latency summary, milliseconds.
#[derive(Debug, Serialize)]
pub struct Report {
    pub what: String,
    pub clients: usize,
    pub requests: u64,
    pub errors: u64,
    pub seconds: f64,
    pub per_second: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
}

enum Stop {
    After(Duration),
    Count(u64),
}

struct Load {
    clients: usize,
    rate: Option<f64>,
    stop: Stop,
    /// OAuth form requests with this Authorization header, instead of JSON
    /// with the operator credential.
    oauth: Option<String>,
}

/// Builds request `i`: method, path and JSON body.
type MakeRequest = Arc<dyn Fn(u64) -> (&'static str, String, Option<Bytes>) + Send + Sync>;

fn addr_of(api: &Api) -> Result<(SocketAddr, String)> {
    let rest = api.base().strip_prefix("http://").ok_or_else(|| {
        anyhow!(
            "bench drives plain http:// servers; LEASH_URL is {}",
            api.base()
        )
    })?;
    let host = rest.split('/').next().unwrap_or(rest).to_owned();
    let addr = std::net::ToSocketAddrs::to_socket_addrs(&host)
        .with_context(|| format!("resolving {host}"))?
        .next()
        .ok_or_else(|| anyhow!("{host} resolves to nothing"))?;
    Ok((addr, host))
}

async fn drive(
    api: &Api,
    what: &str,
    load: Load,
    make: MakeRequest,
    progress: bool,
) -> Result<Report> {
    if load.rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
        bail!("--rate must be a positive number of requests per second");
    }
    let (addr, host) = addr_of(api)?;
    let (auth, content_type) = match &load.oauth {
        Some(a) => (a.clone(), "application/x-www-form-urlencoded"),
        None => (
            format!(
                "Bearer {}",
                api.token().ok_or_else(|| anyhow!(
                    "bench needs the operator credential (LEASH_TOKEN or LEASH_DATA)"
                ))?
            ),
            "application/json",
        ),
    };
    let start = Instant::now();
    let shared = Arc::new(Shared {
        addr,
        head: if auth.is_empty() {
            format!("host: {host}\r\ncontent-type: {content_type}\r\n")
        } else {
            format!("host: {host}\r\nauthorization: {auth}\r\ncontent-type: {content_type}\r\n")
        },
        make,
        ticket: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        first_error: std::sync::Mutex::new(None),
        start,
        rate: load.rate,
        deadline: match load.stop {
            Stop::After(d) => Some(start + d),
            Stop::Count(_) => None,
        },
        total: match load.stop {
            Stop::Count(n) => Some(n),
            Stop::After(_) => None,
        },
        bar: progress.then(|| {
            let b = match load.stop {
                Stop::Count(n) => ProgressBar::new(n),
                Stop::After(d) => ProgressBar::new(d.as_secs()),
            };
            b.set_style(
                ProgressStyle::with_template(
                    "{spinner} {msg} [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            b.set_message(what.to_owned());
            b
        }),
    });
    // like wrk: one OS thread per core, each a single-threaded runtime
    // holding its share of the connections, so the driver spends the
    // machine's cores on requests rather than on moving tasks between them
    let clients = load.clients.max(1);
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(clients);
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let shared = shared.clone();
            let mine = clients / threads + usize::from(t < clients % threads);
            std::thread::Builder::new()
                .name(format!("bench-{t}"))
                .spawn(move || -> Result<Vec<u32>> {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .context("starting a driver thread's runtime")?;
                    rt.block_on(async {
                        let conns: Vec<_> = (0..mine)
                            .map(|_| tokio::spawn(client(shared.clone())))
                            .collect();
                        let mut lat = Vec::new();
                        for c in conns {
                            lat.extend(c.await.map_err(|e| anyhow!("client task failed: {e}"))??);
                        }
                        Ok(lat)
                    })
                })
                .context("starting a driver thread")
        })
        .collect::<Result<_>>()?;
    let mut all: Vec<u32> = tokio::task::spawn_blocking(move || {
        let mut all = Vec::new();
        for w in workers {
            all.extend(
                w.join()
                    .map_err(|_| anyhow!("a driver thread panicked"))??,
            );
        }
        Ok::<_, anyhow::Error>(all)
    })
    .await
    .map_err(|e| anyhow!("driver failed: {e}"))??;
    let seconds = start.elapsed().as_secs_f64();
    if let Some(b) = &shared.bar {
        b.finish_and_clear();
    }
    all.sort_unstable();
    let pct = |p: f64| -> f64 {
        if all.is_empty() {
            return 0.0;
        }
        let idx = ((all.len() as f64 - 1.0) * p).round() as usize;
        f64::from(all[idx]) / 1000.0
    };
    let requests = all.len() as u64;
    Ok(Report {
        what: what.to_owned(),
        clients: load.clients,
        requests,
        errors: shared.errors.load(Ordering::Relaxed),
        seconds,
        per_second: requests as f64 / seconds,
        p50_ms: pct(0.5),
        p90_ms: pct(0.9),
        p99_ms: pct(0.99),
        max_ms: all.last().map(|v| f64::from(*v) / 1000.0).unwrap_or(0.0),
        first_error: shared
            .first_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone(),
    })
}

/// What every connection of one run shares.
struct Shared {
    addr: SocketAddr,
    /// The header lines every request carries (host, credential, type).
    head: String,
    make: MakeRequest,
    ticket: AtomicU64,
    errors: AtomicU64,
    first_error: std::sync::Mutex<Option<String>>,
    start: Instant,
    rate: Option<f64>,
    deadline: Option<Instant>,
    total: Option<u64>,
    bar: Option<ProgressBar>,
}

/// One client: a keep-alive connection sending requests until the run ends;
/// returns each request's latency in microseconds.
async fn client(s: Arc<Shared>) -> Result<Vec<u32>> {
    let mut conn = Conn::open(s.addr).await?;
    let mut lat: Vec<u32> = Vec::with_capacity(4096);
    let mut out = Vec::with_capacity(1024);
    loop {
        let i = s.ticket.fetch_add(1, Ordering::Relaxed);
        if s.total.is_some_and(|n| i >= n) {
            break;
        }
        let scheduled = match s.rate {
            Some(r) => s.start + Duration::from_secs_f64(i as f64 / r),
            None => Instant::now(),
        };
        if s.deadline.is_some_and(|d| scheduled >= d) {
            break;
        }
        // the driver's timer has 1 ms resolution: a request that had
        // to wait for its slot counts from when the timer released it;
        // one whose slot passed while its connection was busy counts
        // from the slot (no coordinated omission)
        let from = if scheduled > Instant::now() {
            tokio::time::sleep_until(scheduled.into()).await;
            Instant::now()
        } else {
            scheduled
        };
        let (method, path, body) = (s.make)(i);
        let body = body.unwrap_or_default();
        out.clear();
        out.extend_from_slice(method.as_bytes());
        out.push(b' ');
        out.extend_from_slice(path.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\n");
        out.extend_from_slice(s.head.as_bytes());
        // writing into a Vec cannot fail
        let _ = write!(out, "content-length: {}\r\n\r\n", body.len());
        out.extend_from_slice(&body);
        let (status, body) = conn.call(&out).await?;
        lat.push(from.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
        if !(200..300).contains(&status) {
            s.errors.fetch_add(1, Ordering::Relaxed);
            let mut fe = s.first_error.lock().unwrap_or_else(|e| e.into_inner());
            if fe.is_none() {
                *fe = Some(format!(
                    "{status}: {}",
                    String::from_utf8_lossy(body)
                        .chars()
                        .take(300)
                        .collect::<String>()
                ));
            }
        }
        if let Some(b) = &s.bar {
            if s.total.is_some() {
                b.inc(1);
            } else {
                b.set_position(s.start.elapsed().as_secs());
            }
        }
    }
    Ok(lat)
}

/// A keep-alive HTTP/1.1 client connection, written and read by the task
/// that times the request: one write and (usually) one read per request, no
/// connection task to wake, no header map to build. The server under test is
/// Leash's, which answers with `content-length`; anything else is refused
/// rather than misread.
struct Conn {
    stream: tokio::net::TcpStream,
    buf: Vec<u8>,
    /// Bytes of `buf` that belong to the previous response.
    used: usize,
}

/// Largest response head the driver reads.
const MAX_HEAD: usize = 16 * 1024;
/// Largest response body the driver reads.
const MAX_BODY: usize = 64 * 1024 * 1024;

impl Conn {
    async fn open(addr: SocketAddr) -> Result<Self> {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            buf: Vec::with_capacity(8192),
            used: 0,
        })
    }

    /// Send one whole request; the response's status and body.
    async fn call(&mut self, request: &[u8]) -> Result<(u16, &[u8])> {
        use tokio::io::AsyncWriteExt;
        self.buf.drain(..self.used);
        self.used = 0;
        self.stream
            .write_all(request)
            .await
            .context("sending a request")?;
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut resp = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(head) = resp
                .parse(&self.buf)
                .context("the server's response is not HTTP/1.1 (or has more than 32 headers)")?
            {
                let status = resp.code.unwrap_or(0);
                if (100..200).contains(&status) && status != 101 {
                    // an interim response (100 Continue, 103 Early Hints):
                    // no body; the final one follows on the same connection
                    self.buf.drain(..head);
                    continue;
                }
                let mut length = None;
                for h in resp.headers.iter() {
                    if h.name.eq_ignore_ascii_case("content-length") {
                        let value = std::str::from_utf8(h.value)
                            .ok()
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .ok_or_else(|| {
                                anyhow!(
                                    "the server's content-length `{}` is not a byte count",
                                    String::from_utf8_lossy(h.value)
                                )
                            })?;
                        if length.is_some_and(|l| l != value) {
                            bail!("the server sent two different content-length headers");
                        }
                        length = Some(value);
                    } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                        bail!(
                            "the server answered with transfer-encoding; bench reads content-length responses only"
                        );
                    }
                }
                // RFC 9112 §6.3: 204 and 304 never have a body, whatever
                // their headers say
                let length = if status == 204 || status == 304 {
                    0
                } else {
                    length.ok_or_else(|| {
                        anyhow!("the server's response (status {status}) has no content-length")
                    })?
                };
                if length > MAX_BODY {
                    bail!(
                        "the server's response body is {length} bytes; bench reads at most {MAX_BODY}"
                    );
                }
                while self.buf.len() < head + length {
                    self.fill().await?;
                }
                self.used = head + length;
                return Ok((status, &self.buf[head..head + length]));
            }
            if self.buf.len() > MAX_HEAD {
                bail!("the server's response head is longer than {MAX_HEAD} bytes");
            }
            self.fill().await?;
        }
    }

    async fn fill(&mut self) -> Result<()> {
        use tokio::io::AsyncReadExt;
        self.buf.reserve(4096);
        let n = self
            .stream
            .read_buf(&mut self.buf)
            .await
            .context("reading a response")?;
        if n == 0 {
            bail!("the server closed the connection");
        }
        Ok(())
    }
}

fn print_report(r: &Report, json_out: bool) -> Result<()> {
    if json_out {
        println!("{}", serde_json::to_string_pretty(r)?);
    } else {
        println!(
            "{}: {} requests in {:.2}s with {} clients = {:.0}/s; latency p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {} errors",
            r.what,
            r.requests,
            r.seconds,
            r.clients,
            r.per_second,
            r.p50_ms,
            r.p90_ms,
            r.p99_ms,
            r.max_ms,
            r.errors
        );
        if let Some(e) = &r.first_error {
            println!("first error: {e}");
        }
    }
    Ok(())
}

/// Closed-loop load on `/oauth2/token` with one form body and an
/// Authorization header (empty: none).
async fn token_endpoint_load(
    api: &Api,
    b: &HealthBench,
    what: &str,
    body: Bytes,
    authorization: String,
    progress: bool,
) -> Result<Report> {
    let make: MakeRequest =
        Arc::new(move |_| ("POST", "/oauth2/token".to_owned(), Some(body.clone())));
    let d = leash_core::duration::parse_duration(&b.duration)?;
    let load = Load {
        clients: b.clients,
        rate: b.rate,
        stop: Stop::After(Duration::from_secs(d)),
        oauth: Some(authorization),
    };
    drive(api, what, load, make, progress).await
}

/// Register a bench issuer (fresh ES256 key, inline JWKS) mapped to
/// `workload`, and return a form body exchanging one of its JWTs.
async fn federated_exchange_body(api: &Api, workload: &str) -> Result<Bytes> {
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pk8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .map_err(|_| anyhow!("key generation failed"))?;
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pk8.as_ref())
        .map_err(|_| anyhow!("key generation failed"))?;
    let public = pair.public_key().as_ref();
    let iss = format!("https://bench-issuer.example/{workload}");
    let jwk = json!({"kty": "EC", "crv": "P-256", "x": b64.encode(&public[1..33]), "y": b64.encode(&public[33..65]), "kid": "bench", "alg": "ES256"});
    let name = format!("iss-{}", &workload[workload.len().saturating_sub(12)..]);
    let _: Value = api
        .post(
            "/v1/issuers",
            &json!({"name": name, "issuer": iss, "jwks": {"keys": [jwk]}, "audience": "leash"}),
        )
        .await?;
    let _: Value = api
        .post(
            &format!("/v1/workloads/{workload}/identity-rules"),
            &json!({"issuer": name, "claims": {"sub": "repo:bench/*"}}),
        )
        .await?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let header = b64.encode(r#"{"alg":"ES256","typ":"JWT","kid":"bench"}"#);
    let claims = b64.encode(json!({"iss": iss, "aud": "leash", "sub": "repo:bench/agents:ref:refs/heads/main", "iat": now, "exp": now + 3600}).to_string());
    let signing_input = format!("{header}.{claims}");
    let sig = pair
        .sign(&rng, signing_input.as_bytes())
        .map_err(|_| anyhow!("signing failed"))?;
    let jwt = format!("{signing_input}.{}", b64.encode(sig.as_ref()));
    Ok(Bytes::from(format!(
        "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Ajwt&scope=tickets%3Aread&subject_token={jwt}"
    )))
}

/// Create a fresh owner, workload and (optionally) workflow + run to mint into.
/// One AuthZEN evaluation: `subject` reads ticket `resource` with tool `git`.
fn authz_body(subject: &str, token: &str, resource: &str) -> Value {
    json!({
        "subject": {"type": "workload", "id": subject, "properties": {"token": token}},
        "action": {"name": "read"},
        "resource": {"type": "tickets", "id": resource},
        "context": {"tool": "git"},
    })
}

async fn setup(api: &Api, with_run: bool) -> Result<(String, Option<i64>)> {
    let tag = format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    );
    let owner = format!("bench-owner-{tag}");
    let workload = format!("bench-wl-{tag}");
    let _: Value = api.post("/v1/owners", &json!({"name": owner, "email": "bench@example.com", "kind": "team", "business_owner": true})).await?;
    let _: Value = api.post("/v1/workloads", &json!({"name": workload, "owner": owner, "environment": "dev", "scope_ceiling": ["tickets:read", "repo:acme/*:write"], "identity": format!("spiffe://bench.example/{tag}")})).await?;
    if !with_run {
        return Ok((workload, None));
    }
    let wf = format!("bench-wf-{tag}");
    let _: Value = api.post("/v1/workflows", &json!({"name": wf, "owner": owner, "definition": format!("bench {tag}"), "tools": ["git"]})).await?;
    let run: RunView = api
        .post("/v1/runs", &json!({"workflow": wf, "workload": workload}))
        .await?;
    Ok((workload, Some(run.id)))
}

fn mint_maker(workload: String, run: Option<i64>, format: &str) -> Result<MakeRequest> {
    if format != "jwt" && format != "opaque" {
        bail!("--format must be jwt or opaque");
    }
    let body = Bytes::from(serde_json::to_vec(
        &json!({"workload": workload, "run": run, "scopes": ["tickets:read"], "ttl": "1h", "format": format}),
    )?);
    Ok(Arc::new(move |_| {
        ("POST", "/v1/tokens".to_owned(), Some(body.clone()))
    }))
}

/// Ingest throughput and report time (see [`ReviewBench`]).
async fn review_bench(api: &Api, b: ReviewBench, json_out: bool) -> Result<()> {
    use std::fmt::Write as _;
    if b.batch == 0 || b.tokens == 0 {
        bail!("--batch and --tokens must be at least 1");
    }
    if b.anomalous_per_mille > 1000 {
        bail!("--anomalous-per-mille is a share of 1000 events (0-1000)");
    }
    // the tokens, as the registry lists them
    let mut tokens: Vec<(String, String)> = Vec::new();
    let mut after: Option<String> = None;
    while (tokens.len() as u64) < b.tokens {
        let mut path = "/v1/tokens?limit=1000&status=active".to_owned();
        if let Some(a) = &after {
            path.push_str(&format!("&after={a}"));
        }
        let page: Vec<Value> = api.get(&path).await?;
        if page.is_empty() {
            break;
        }
        for t in &page {
            tokens.push((
                t["id"].as_str().unwrap_or_default().to_owned(),
                t["workload"].as_str().unwrap_or_default().to_owned(),
            ));
        }
        after = page
            .last()
            .and_then(|t| t["id"].as_str())
            .map(str::to_owned);
    }
    tokens.truncate(b.tokens as usize);
    if tokens.is_empty() {
        bail!("no live tokens to name: run `leash bench populate --tokens N` first");
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default();
    let start = Instant::now();
    let mut sent = 0u64;
    let mut matched = 0u64;
    let mut opened = 0u64;
    let mut in_flight = std::collections::VecDeque::new();
    let mut tally = |o: Value| {
        matched += o["matched"].as_u64().unwrap_or_default();
        opened += o["findings_opened"]
            .as_array()
            .map(|a| a.len() as u64)
            .unwrap_or_default();
    };
    while sent < b.events {
        let n = (b.events - sent).min(b.batch as u64);
        let mut body = String::with_capacity(n as usize * 200);
        for i in sent..sent + n {
            let (id, workload) = &tokens[(i % tokens.len() as u64) as usize];
            let (workload, agent) = if i % 1000 < b.anomalous_per_mille {
                (
                    "bench-intruder",
                    "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0",
                )
            } else {
                (workload.as_str(), "python-httpx/0.27")
            };
            let _ = writeln!(
                body,
                r#"{{"time":{},"token_id":"{id}","workload":"{workload}","tool":"jira","resource":"tickets:T-{}","action":"read","step":"triage","user_agent":"{agent}"}}"#,
                now + i / 1000,
                // each token works on a few tickets, as a task would
                (i / tokens.len() as u64) % 3,
            );
        }
        // two requests in flight, as `leash usage ingest` keeps them
        if in_flight.len() >= 2
            && let Some(task) = in_flight.pop_front()
        {
            tally(task.await??);
        }
        let (api, path) = (
            api.clone(),
            format!("/v1/usage/ingest?source=bench&first_line={}", sent + 1),
        );
        in_flight.push_back(tokio::spawn(async move {
            api.post_bytes::<Value>(&path, "application/x-ndjson", body.into_bytes())
                .await
        }));
        sent += n;
    }
    while let Some(task) = in_flight.pop_front() {
        tally(task.await??);
    }
    let wall = start.elapsed().as_secs_f64();
    let mut report_secs = Vec::new();
    let mut totals = Value::Null;
    for _ in 0..b.reports {
        let t = Instant::now();
        let r: Value = api.get("/v1/report?format=json").await?;
        report_secs.push(t.elapsed().as_secs_f64());
        totals = json!({"tokens": r["tokens"], "usage": r["usage"]});
    }
    let mut sorted = report_secs.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted.get(sorted.len() / 2).copied().unwrap_or_default();
    let out = json!({
        "events": sent, "distinct_tokens": tokens.len(), "matched": matched, "findings_opened": opened,
        "ingest_seconds": wall, "events_per_second": sent as f64 / wall,
        "report_seconds": report_secs, "report_median_seconds": median, "report_totals": totals,
    });
    if json_out {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "ingest: {sent} events over {} tokens in {wall:.2}s = {:.0} events/s ({matched} matched, {opened} findings opened)",
            tokens.len(),
            sent as f64 / wall
        );
        println!(
            "report: median {median:.2}s of {:?} (registry: {})",
            report_secs
                .iter()
                .map(|s| format!("{s:.2}"))
                .collect::<Vec<_>>(),
            totals
        );
    }
    Ok(())
}

pub async fn run(cmd: BenchCmd, api: Api, json_out: bool) -> Result<ExitCode> {
    let progress = interactive(json_out);
    match cmd {
        BenchCmd::Review(b) => review_bench(&api, b, json_out).await?,
        BenchCmd::Mint(b) => {
            let (workload, _) = setup(&api, false).await?;
            let d = leash_core::duration::parse_duration(&b.duration)?;
            let what = match b.rate {
                Some(r) => format!("mint ({}, {r:.0}/s offered)", b.common.format),
                None => format!("mint ({})", b.common.format),
            };
            let r = drive(
                &api,
                &what,
                Load {
                    clients: b.common.clients,
                    rate: b.rate,
                    stop: Stop::After(Duration::from_secs(d)),
                    oauth: None,
                },
                mint_maker(workload, None, &b.common.format)?,
                progress,
            )
            .await?;
            print_report(&r, json_out)?;
        }
        BenchCmd::Populate(b) => {
            let (workload, _) = setup(&api, false).await?;
            let r = drive(
                &api,
                "populate",
                Load {
                    clients: b.common.clients,
                    rate: None,
                    stop: Stop::Count(b.tokens),
                    oauth: None,
                },
                mint_maker(workload, None, &b.common.format)?,
                progress,
            )
            .await?;
            print_report(&r, json_out)?;
        }
        BenchCmd::RunEnd(b) => {
            let (workload, run) = setup(&api, true).await?;
            let run = run.ok_or_else(|| anyhow!("no run was created"))?;
            let fill = drive(
                &api,
                "mint into run",
                Load {
                    clients: b.common.clients,
                    rate: None,
                    stop: Stop::Count(b.tokens),
                    oauth: None,
                },
                mint_maker(workload, Some(run), &b.common.format)?,
                progress,
            )
            .await?;
            if fill.errors > 0 {
                bail!(
                    "minting into the run failed: {}",
                    fill.first_error.unwrap_or_default()
                );
            }
            let t0 = Instant::now();
            let ended: RunEnded = api
                .post(
                    &format!("/v1/runs/{run}/end"),
                    &json!({"status": "succeeded"}),
                )
                .await?;
            let secs = t0.elapsed().as_secs_f64();
            let out = json!({"run": run, "tokens_minted": fill.requests, "tokens_revoked": ended.revoked.count, "end_run_seconds": secs, "mint": fill});
            if json_out {
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                print_report(&fill, false)?;
                println!(
                    "run-end: ending run {run} revoked {} tokens in {:.3}s (request to durable response)",
                    ended.revoked.count, secs
                );
            }
        }
        BenchCmd::Lineage(b) => {
            if b.common.format != "jwt" && b.common.format != "opaque" {
                bail!("--format must be jwt or opaque");
            }
            let (workload, _) = setup(&api, false).await?;
            let root: Value = api
                .post(
                    "/v1/tokens",
                    &json!({"workload": workload, "scopes": ["tickets:read"], "ttl": "1h"}),
                )
                .await?;
            let root_id = root["id"]
                .as_str()
                .ok_or_else(|| anyhow!("mint answered no id"))?
                .to_owned();
            let body = Bytes::from(serde_json::to_vec(&json!({
                "workload": workload, "parent": root_id, "scopes": ["tickets:read"],
                "ttl": "30m", "format": b.common.format,
            }))?);
            let make: MakeRequest =
                Arc::new(move |_| ("POST", "/v1/tokens".to_owned(), Some(body.clone())));
            let fill = drive(
                &api,
                "mint the lineage",
                Load {
                    clients: b.common.clients,
                    rate: None,
                    stop: Stop::Count(b.tokens),
                    oauth: None,
                },
                make,
                progress,
            )
            .await?;
            if fill.errors > 0 {
                bail!(
                    "minting the lineage failed: {}",
                    fill.first_error.unwrap_or_default()
                );
            }
            let t0 = Instant::now();
            let revoked: Value = api
                .post(
                    "/v1/revocations",
                    &json!({"token_or_id": root_id, "reason": "bench: revoke a lineage"}),
                )
                .await?;
            let secs = t0.elapsed().as_secs_f64();
            let count = revoked["count"].as_u64().unwrap_or_default();
            let out = json!({"root": root_id, "descendants_minted": fill.requests, "tokens_revoked": count, "revoke_seconds": secs, "mint": fill});
            if json_out {
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                print_report(&fill, false)?;
                println!(
                    "lineage: revoking root {root_id} revoked {count} tokens in {secs:.3}s (request to durable response)"
                );
            }
        }
        BenchCmd::Exposure(b) => {
            let (workload, _) = setup(&api, false).await?;
            let minted: Vec<String> = {
                let mut out = Vec::with_capacity(b.tokens as usize);
                for _ in 0..b.tokens {
                    let t: Value = api
                        .post("/v1/tokens", &json!({"workload": workload, "scopes": ["tickets:read"], "ttl": "1h", "format": b.format}))
                        .await?;
                    out.push(
                        t["token"]
                            .as_str()
                            .ok_or_else(|| anyhow!("mint answered no token"))?
                            .to_owned(),
                    );
                }
                out
            };
            let bodies: Arc<Vec<Bytes>> = Arc::new(
                minted
                    .iter()
                    .enumerate()
                    .map(|(i, t)| {
                        serde_json::to_vec(&json!({"source": "chat", "location": format!("bench:C1/{i}"), "text": format!("can someone check why this fails? curl -H 'Authorization: Bearer {t}' https://api.acme.io/v1/tickets")}))
                            .map(Bytes::from)
                    })
                    .collect::<Result<_, _>>()?,
            );
            let make: MakeRequest = Arc::new(move |i| {
                let body = bodies[(i as usize) % bodies.len()].clone();
                ("POST", "/v1/exposures".to_owned(), Some(body))
            });
            let what = match b.rate {
                Some(r) => format!("exposure → revocation ({r:.0}/s offered)"),
                None => "exposure → revocation".to_owned(),
            };
            let r = drive(
                &api,
                &what,
                Load {
                    clients: b.clients,
                    rate: b.rate,
                    stop: Stop::Count(b.tokens),
                    oauth: None,
                },
                make,
                progress,
            )
            .await?;
            // every token must now be revoked, by exposure
            let active: Vec<TokenView> = api
                .get(&format!(
                    "/v1/tokens?workload={workload}&status=active&limit=1000"
                ))
                .await?;
            if !active.is_empty() {
                bail!(
                    "{} token(s) are still active after being reported",
                    active.len()
                );
            }
            print_report(&r, json_out)?;
            if !json_out {
                println!(
                    "all {} reported tokens are revoked (latency = webhook received → revocation durable → answer)",
                    minted.len()
                );
            }
        }
        BenchCmd::ClientCredentials(b) => {
            let (workload, _) = setup(&api, false).await?;
            let c: Value = api
                .post("/v1/clients", &json!({"workload": workload}))
                .await?;
            let (id, secret) = (
                c["client_id"].as_str().unwrap_or_default(),
                c["client_secret"].as_str().unwrap_or_default(),
            );
            let basic = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
            );
            let body = Bytes::from_static(b"grant_type=client_credentials&scope=tickets%3Aread");
            let r = token_endpoint_load(
                &api,
                &b,
                "client_credentials (client_secret_basic)",
                body,
                basic,
                progress,
            )
            .await?;
            print_report(&r, json_out)?;
        }
        BenchCmd::Exchange(b) => {
            let (workload, _) = setup(&api, false).await?;
            let body = federated_exchange_body(&api, &workload).await?;
            // no client credentials: the external token is the credential
            let r = token_endpoint_load(
                &api,
                &b,
                "token exchange (external ES256 JWT)",
                body,
                String::new(),
                progress,
            )
            .await?;
            print_report(&r, json_out)?;
        }
        BenchCmd::Authz(b) => {
            if b.distinct_resources && b.batch.is_some() {
                bail!("--distinct-resources applies to single evaluations; drop --batch or it");
            }
            let (workload, run) = setup(&api, true).await?;
            let w: Value = api
                .get(&format!("/v1/workloads/{}", crate::client::enc(&workload)))
                .await?;
            let subject = w["identity"].as_str().unwrap_or(&workload).to_owned();
            let mut tokens = Vec::with_capacity(b.tokens as usize);
            for _ in 0..b.tokens.max(1) {
                let m: Value = api
                    .post(
                        "/v1/tokens",
                        &json!({"workload": workload, "run": run, "scopes": ["tickets:read"], "ttl": "1h"}),
                    )
                    .await?;
                tokens.push(m["token"].as_str().unwrap_or_default().to_owned());
            }
            let one = |token: &str, i: u64| authz_body(&subject, token, &format!("T-{}", i % 997));
            let (path, bodies): (&str, Vec<Bytes>) = match b.batch {
                None => (
                    "/access/v1/evaluation",
                    tokens
                        .iter()
                        .enumerate()
                        .map(|(i, t)| serde_json::to_vec(&one(t, i as u64)).map(Bytes::from))
                        .collect::<Result<_, _>>()?,
                ),
                Some(n) => (
                    "/access/v1/evaluations",
                    tokens
                        .iter()
                        .map(|t| {
                            let items: Vec<Value> = (0..n as u64)
                                .map(|i| json!({"resource": {"type": "tickets", "id": format!("T-{i}")}}))
                                .collect();
                            let mut body = one(t, 0);
                            body["evaluations"] = Value::Array(items);
                            serde_json::to_vec(&body).map(Bytes::from)
                        })
                        .collect::<Result<_, _>>()?,
                ),
            };
            let bodies = Arc::new(bodies);
            let make: MakeRequest = if b.distinct_resources && b.batch.is_none() {
                let (tokens, subject) = (Arc::new(tokens.clone()), subject.clone());
                Arc::new(move |i| {
                    let t = &tokens[(i % tokens.len() as u64) as usize];
                    let body = serde_json::to_vec(&authz_body(&subject, t, &format!("D-{i}")))
                        .map(Bytes::from)
                        .unwrap_or_default();
                    ("POST", path.to_owned(), Some(body))
                })
            } else {
                Arc::new(move |i| {
                    let body = bodies[(i % bodies.len() as u64) as usize].clone();
                    ("POST", path.to_owned(), Some(body))
                })
            };
            let d = leash_core::duration::parse_duration(&b.duration)?;
            let mut what = match b.batch {
                None if b.distinct_resources => format!(
                    "AuthZEN evaluation ({} tokens, every resource new)",
                    tokens.len()
                ),
                None => format!("AuthZEN evaluation ({} tokens)", tokens.len()),
                Some(n) => format!(
                    "AuthZEN evaluations, batches of {n} ({} tokens)",
                    tokens.len()
                ),
            };
            if let Some(r) = b.rate {
                what.push_str(&format!(" offered at {r}/s"));
            }
            // every token's request once, closed loop, before the timed run:
            // a PEP's first question about a token pays for the first Cedar
            // evaluation (and, for a token minted on another node, its
            // verification); that cost is its own figure
            if !b.distinct_resources && b.batch.is_none() {
                let first = drive(
                    &api,
                    "first use of each token (warm-up, not in the figure below)",
                    Load {
                        clients: b.clients,
                        rate: None,
                        stop: Stop::Count(tokens.len() as u64),
                        oauth: None,
                    },
                    make.clone(),
                    false,
                )
                .await?;
                print_report(&first, json_out)?;
            }
            let r = drive(
                &api,
                &what,
                Load {
                    clients: b.clients,
                    rate: b.rate,
                    stop: Stop::After(Duration::from_secs(d)),
                    oauth: None,
                },
                make,
                progress,
            )
            .await?;
            print_report(&r, json_out)?;
        }
        BenchCmd::Health(b) => {
            let d = leash_core::duration::parse_duration(&b.duration)?;
            let make: MakeRequest = Arc::new(|_| ("GET", "/health".to_owned(), None));
            let what = match b.rate {
                Some(r) => format!("health (HTTP ceiling) offered at {r}/s"),
                None => "health (HTTP ceiling)".to_owned(),
            };
            let r = drive(
                &api,
                &what,
                Load {
                    clients: b.clients,
                    rate: b.rate,
                    stop: Stop::After(Duration::from_secs(d)),
                    oauth: None,
                },
                make,
                progress,
            )
            .await?;
            print_report(&r, json_out)?;
        }
        BenchCmd::Explain(b) => {
            // ids start with their mint time (8 base62 chars of ms), so cursors at
            // random times between the first token and now sample the whole registry
            let first: Vec<TokenView> = api.get("/v1/tokens?limit=1").await?;
            let Some(first) = first.first() else {
                bail!("no tokens to explain; run `leash bench populate` first");
            };
            let decode = |s: &str| {
                s.bytes().fold(0u64, |n, c| {
                    n * 62
                        + leash_token::base62::ALPHABET
                            .iter()
                            .position(|a| *a == c)
                            .unwrap_or(0) as u64
                })
            };
            let lo = decode(first.id.get(4..12).unwrap_or("0"));
            let hi = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(lo)
                .max(lo + 1);
            let mut ids: Vec<String> = Vec::new();
            let mut seed = hi ^ 0x9E37_79B9_7F4A_7C15;
            let mut tries = 0;
            while ids.len() < b.sample && tries < b.sample {
                tries += 1;
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let at = lo + seed % (hi - lo);
                let cursor = format!("tok_{}", leash_token::base62::encode_u64(at, 8));
                let page: Vec<TokenView> = api
                    .get(&format!("/v1/tokens?after={cursor}&limit=5"))
                    .await?;
                ids.extend(page.into_iter().map(|t| t.id));
            }
            if ids.is_empty() {
                bail!("no tokens to explain; run `leash bench populate` first");
            }
            let ids = Arc::new(ids);
            let bodies: Vec<Bytes> = ids
                .iter()
                .map(|id| Bytes::from(format!(r#"{{"token_or_id":"{id}"}}"#)))
                .collect();
            let bodies = Arc::new(bodies);
            let make: MakeRequest = Arc::new(move |i| {
                (
                    "POST",
                    "/v1/explain".to_owned(),
                    Some(bodies[(i as usize * 7919) % bodies.len()].clone()),
                )
            });
            let d = leash_core::duration::parse_duration(&b.duration)?;
            let r = drive(
                &api,
                &format!("explain ({} sampled ids)", ids.len()),
                Load {
                    clients: b.clients,
                    rate: None,
                    stop: Stop::After(Duration::from_secs(d)),
                    oauth: None,
                },
                make,
                progress,
            )
            .await?;
            print_report(&r, json_out)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A one-connection server that answers each request (read until the
    /// blank line; the driver's test requests have no body) with the next
    /// of `replies`, each written in the pieces given, then closes.
    async fn serve(replies: Vec<Vec<&'static [u8]>>) -> SocketAddr {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut seen = Vec::new();
            for pieces in replies {
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    let mut b = [0u8; 1024];
                    let n = s.read(&mut b).await.unwrap();
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&b[..n]);
                }
                seen.clear();
                for p in pieces {
                    s.write_all(p).await.unwrap();
                    s.flush().await.unwrap();
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        });
        addr
    }

    const GET: &[u8] = b"GET / HTTP/1.1\r\nhost: x\r\n\r\n";

    #[tokio::test]
    async fn reads_split_and_back_to_back_responses_on_one_connection() {
        let addr = serve(vec![
            vec![
                b"HTTP/1.1 200 OK\r\nContent-Le",
                b"ngth: 5\r\n\r\nhel",
                b"lo",
            ],
            vec![b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"],
            vec![b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n{}"],
            // bodiless by status, and an interim response before the final one
            vec![b"HTTP/1.1 204 No Content\r\n\r\n"],
            vec![
                b"HTTP/1.1 100 Continue\r\n\r\n",
                b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nyes",
            ],
        ])
        .await;
        let mut c = Conn::open(addr).await.unwrap();
        let (status, body) = c.call(GET).await.unwrap();
        assert_eq!((status, body), (200, &b"hello"[..]));
        let (status, body) = c.call(GET).await.unwrap();
        assert_eq!((status, body), (404, &b""[..]));
        let (status, body) = c.call(GET).await.unwrap();
        assert_eq!((status, body), (201, &b"{}"[..]));
        let (status, body) = c.call(GET).await.unwrap();
        assert_eq!((status, body), (204, &b""[..]));
        let (status, body) = c.call(GET).await.unwrap();
        assert_eq!((status, body), (200, &b"yes"[..]));
        // the server has gone: an end of stream, or a reset when it closed
        // with our request unread
        let e = format!("{:#}", c.call(GET).await.unwrap_err());
        assert!(
            e.contains("closed the connection") || e.contains("reading a response"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn refuses_responses_it_cannot_frame() {
        for (reply, says) in [
            (
                &b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n"[..],
                "transfer-encoding",
            ),
            (&b"HTTP/1.1 200 OK\r\nx: y\r\n\r\n"[..], "no content-length"),
            (
                &b"HTTP/1.1 200 OK\r\ncontent-length: five\r\n\r\n"[..],
                "not a byte count",
            ),
            (
                &b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nab"[..],
                "two different content-length",
            ),
            (
                &b"HTTP/1.1 200 OK\r\ncontent-length: 99999999999\r\n\r\n"[..],
                "bench reads at most",
            ),
            (&b"SSH-2.0-OpenSSH\r\n\r\n"[..], "not HTTP/1.1"),
        ] {
            let addr = serve(vec![vec![reply]]).await;
            let mut c = Conn::open(addr).await.unwrap();
            let e = c.call(GET).await.unwrap_err();
            assert!(format!("{e:#}").contains(says), "{says}: {e:#}");
        }
    }
}
