//! `leash bench`: load drivers that talk HTTP/1.1 to a running server.
//!
//! Each client holds one keep-alive connection (hyper) and sends requests
//! back to back (closed loop), or on a fixed global schedule with `--rate`
//! (open loop: a request whose slot passed while its connection was still
//! busy is timed from the slot, so a stalled server cannot hide its queueing
//! delay; one that waited for its slot is timed from when the driver's 1 ms
//! timer released it, so the timer's resolution is not charged to the server).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine;
use bytes::Bytes;
use clap::{Args, Subcommand};
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
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
type MakeRequest = Arc<dyn Fn(u64) -> (hyper::Method, String, Option<Bytes>) + Send + Sync>;

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
    let ticket = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let first_error: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
    let start = Instant::now();
    let deadline = match load.stop {
        Stop::After(d) => Some(start + d),
        Stop::Count(_) => None,
    };
    let total = match load.stop {
        Stop::Count(n) => Some(n),
        Stop::After(_) => None,
    };
    let bar = if progress {
        let b = match total {
            Some(n) => ProgressBar::new(n),
            None => ProgressBar::new(deadline.map(|d| (d - start).as_secs()).unwrap_or(0)),
        };
        b.set_style(
            ProgressStyle::with_template(
                "{spinner} {msg} [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b.set_message(what.to_owned());
        Some(b)
    } else {
        None
    };
    let mut tasks = Vec::new();
    for _ in 0..load.clients.max(1) {
        let (ticket, errors, first_error, make, auth, host) = (
            ticket.clone(),
            errors.clone(),
            first_error.clone(),
            make.clone(),
            auth.clone(),
            host.clone(),
        );
        let bar = bar.clone();
        let rate = load.rate;
        tasks.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
            tokio::spawn(conn);
            let mut lat: Vec<u32> = Vec::with_capacity(4096);
            loop {
                let i = ticket.fetch_add(1, Ordering::Relaxed);
                if total.is_some_and(|n| i >= n) {
                    break;
                }
                let scheduled = match rate {
                    Some(r) => start + Duration::from_secs_f64(i as f64 / r),
                    None => Instant::now(),
                };
                if deadline.is_some_and(|d| scheduled >= d) {
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
                let (method, path, body) = make(i);
                let mut req = Request::builder()
                    .method(method)
                    .uri(path)
                    .header(HOST, &host);
                if !auth.is_empty() {
                    req = req.header(AUTHORIZATION, &auth);
                }
                let req = req
                    .header(CONTENT_TYPE, content_type)
                    .body(Full::new(body.unwrap_or_default()))?;
                sender.ready().await?;
                let resp = sender.send_request(req).await?;
                let status = resp.status();
                let body = resp.into_body().collect().await?.to_bytes();
                lat.push(from.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                if !status.is_success() {
                    errors.fetch_add(1, Ordering::Relaxed);
                    let mut fe = first_error.lock().unwrap_or_else(|e| e.into_inner());
                    if fe.is_none() {
                        *fe = Some(format!(
                            "{status}: {}",
                            String::from_utf8_lossy(&body)
                                .chars()
                                .take(300)
                                .collect::<String>()
                        ));
                    }
                }
                if let Some(b) = &bar {
                    if total.is_some() {
                        b.inc(1);
                    } else {
                        b.set_position(start.elapsed().as_secs());
                    }
                }
            }
            Ok::<_, anyhow::Error>(lat)
        }));
    }
    let mut all: Vec<u32> = Vec::new();
    for t in tasks {
        all.extend(t.await.map_err(|e| anyhow!("client task failed: {e}"))??);
    }
    let seconds = start.elapsed().as_secs_f64();
    if let Some(b) = bar {
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
        errors: errors.load(Ordering::Relaxed),
        seconds,
        per_second: requests as f64 / seconds,
        p50_ms: pct(0.5),
        p90_ms: pct(0.9),
        p99_ms: pct(0.99),
        max_ms: all.last().map(|v| f64::from(*v) / 1000.0).unwrap_or(0.0),
        first_error: first_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone(),
    })
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
    let make: MakeRequest = Arc::new(move |_| {
        (
            hyper::Method::POST,
            "/oauth2/token".to_owned(),
            Some(body.clone()),
        )
    });
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
        (
            hyper::Method::POST,
            "/v1/tokens".to_owned(),
            Some(body.clone()),
        )
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
            let make: MakeRequest = Arc::new(move |_| {
                (
                    hyper::Method::POST,
                    "/v1/tokens".to_owned(),
                    Some(body.clone()),
                )
            });
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
                (hyper::Method::POST, "/v1/exposures".to_owned(), Some(body))
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
                    (hyper::Method::POST, path.to_owned(), Some(body))
                })
            } else {
                Arc::new(move |i| {
                    let body = bodies[(i % bodies.len() as u64) as usize].clone();
                    (hyper::Method::POST, path.to_owned(), Some(body))
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
            let make: MakeRequest = Arc::new(|_| (hyper::Method::GET, "/health".to_owned(), None));
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
                    hyper::Method::POST,
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
