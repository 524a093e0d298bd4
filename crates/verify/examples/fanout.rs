//! Fan-out benchmark of the revocation feed: how long from a revocation at
//! Leash until N verifiers hold it.
//!
//! Spawns `--subscribers` feed followers (one SSE connection each, the same
//! [`leash_verify::RevocationFeed`] a `Verifier` uses, round-robin over the
//! `--url`s given: repeat `--url` for several replicas), waits until all are
//! synced, then `--rounds` times mints a token and revokes it on the first
//! URL, timing from just before the revoke call until each subscriber has
//! the token in its revocation set. Prints one JSON line with p50/p90/p99/max
//! over all subscriber-rounds.
//!
//! ```text
//! LEASH_TOKEN=$(cat .leash/operator.token) \
//!   cargo run --release -p leash-verify --example fanout -- --url http://127.0.0.1:8420 --subscribers 1000
//! ```
//!
//! Each subscriber holds one socket in this process and one in the server:
//! raise the open-file limit first (`ulimit -n 8192`) for 1000 or more.
//! It creates owner `fanout-owner` and workload `fanout-bot` if they are
//! missing.
//!
//! With `--nats-url`, `--nats-subscribers` more subscribers each hold their
//! own NATS connection and subscribe to `leash.revocations` (the in-cluster
//! feed the replicas publish to); they count once a message naming the
//! token has reached them. The JSON line then also has per-feed figures.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use anyhow::{Context, bail};
use clap::Parser;
use leash_verify::{Credentials, FeedConfig, RevocationFeed};
use serde_json::{Value, json};

#[derive(Debug, Parser)]
struct Args {
    /// Leash base URL (repeat for replicas); revocations go to the first.
    #[arg(long = "url", required = true)]
    urls: Vec<String>,
    /// How many feed subscribers.
    #[arg(long, default_value_t = 1000)]
    subscribers: usize,
    /// How many mint-and-revoke rounds.
    #[arg(long, default_value_t = 20)]
    rounds: usize,
    /// The operator credential.
    #[arg(long, env = "LEASH_TOKEN", hide_env_values = true)]
    token: String,
    /// Longest a round waits for every subscriber.
    #[arg(long, default_value_t = 10)]
    round_timeout_secs: u64,
    /// NATS server the replicas publish revocations to.
    #[arg(long)]
    nats_url: Option<String>,
    /// How many NATS subscribers (each its own connection), with --nats-url.
    #[arg(long, default_value_t = 0)]
    nats_subscribers: usize,
}

/// One simulated verifier: an SSE feed follower or a NATS subscriber.
enum Subscriber {
    Sse(RevocationFeed),
    Nats(Arc<Mutex<HashSet<String>>>),
}

impl Subscriber {
    fn has(&self, id: &str) -> bool {
        match self {
            Subscriber::Sse(f) => f.is_revoked(id),
            Subscriber::Nats(seen) => seen.lock().unwrap_or_else(|e| e.into_inner()).contains(id),
        }
    }
    fn kind(&self) -> &'static str {
        match self {
            Subscriber::Sse(_) => "sse",
            Subscriber::Nats(_) => "nats",
        }
    }
}

/// A NATS subscriber that remembers every token id it has been told of.
async fn nats_subscriber(url: &str) -> anyhow::Result<Arc<Mutex<HashSet<String>>>> {
    let client = async_nats::connect(url).await.context("connect to NATS")?;
    let mut sub = client.subscribe("leash.revocations").await?;
    client.flush().await?;
    let seen = Arc::new(Mutex::new(HashSet::new()));
    let into = seen.clone();
    tokio::spawn(async move {
        let _client = client;
        while let Some(m) = sub.next().await {
            let Ok(v) = serde_json::from_slice::<Value>(&m.payload) else {
                continue;
            };
            let mut seen = into.lock().unwrap_or_else(|e| e.into_inner());
            for r in v["revocations"].as_array().into_iter().flatten() {
                if let Some(id) = r["token_id"].as_str() {
                    seen.insert(id.to_owned());
                }
            }
        }
    });
    Ok(seen)
}

async fn post(
    http: &reqwest::Client,
    a: &Args,
    path: &str,
    body: Value,
) -> anyhow::Result<(u16, Value)> {
    let resp = http
        .post(format!("{}{path}", a.urls[0]))
        .bearer_auth(&a.token)
        .json(&body)
        .send()
        .await
        .with_context(|| format!("POST {path}"))?;
    let status = resp.status().as_u16();
    Ok((status, resp.json().await.unwrap_or(Value::Null)))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let http = reqwest::Client::new();
    // someone to own the tokens
    for (path, body) in [
        (
            "/v1/owners",
            json!({"name": "fanout-owner", "email": "fanout@example.invalid", "business_owner": true}),
        ),
        (
            "/v1/workloads",
            json!({"name": "fanout-bot", "owner": "fanout-owner", "environment": "dev",
            "identity": "spiffe://example.invalid/fanout", "scope_ceiling": ["bench:read"]}),
        ),
    ] {
        let (s, v) = post(&http, &a, path, body).await?;
        if !(200..300).contains(&s) && s != 409 {
            bail!("POST {path} answered {s}: {v}");
        }
    }
    let feed_http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()?;
    let feeds: Vec<RevocationFeed> = (0..a.subscribers)
        .map(|i| {
            RevocationFeed::start(FeedConfig {
                base_url: a.urls[i % a.urls.len()].clone(),
                credentials: Credentials::Operator(a.token.clone()),
                max_staleness: Duration::from_secs(30),
                http: feed_http.clone(),
            })
        })
        .collect();
    let started = Instant::now();
    for (i, f) in feeds.iter().enumerate() {
        let left = Duration::from_secs(120).saturating_sub(started.elapsed());
        f.wait_synced(left)
            .await
            .map_err(|e| anyhow::anyhow!("subscriber {i} did not sync: {e}"))?;
    }
    eprintln!(
        "{} subscribers synced in {:?}",
        feeds.len(),
        started.elapsed()
    );
    let mut feeds: Vec<Subscriber> = feeds.into_iter().map(Subscriber::Sse).collect();
    if let Some(url) = &a.nats_url {
        for _ in 0..a.nats_subscribers {
            feeds.push(Subscriber::Nats(nats_subscriber(url).await?));
        }
        eprintln!("{} NATS subscribers on {url}", a.nats_subscribers);
    }
    let mut by_kind: std::collections::BTreeMap<&str, Vec<f64>> = Default::default();
    let mut samples: Vec<f64> = Vec::with_capacity(a.rounds * feeds.len());
    let mut missed = 0usize;
    for round in 0..a.rounds {
        let (s, t) = post(
            &http,
            &a,
            "/v1/tokens",
            json!({"workload": "fanout-bot", "scopes": ["bench:read"], "ttl": "5m"}),
        )
        .await?;
        if s != 201 && s != 200 {
            bail!("mint answered {s}: {t}");
        }
        let id = t["id"].as_str().context("mint returned no id")?.to_owned();
        let mut pending: Vec<usize> = (0..feeds.len()).collect();
        let t0 = Instant::now();
        let (s, v) = post(
            &http,
            &a,
            "/v1/revocations",
            json!({"token_or_id": id, "reason": "fanout benchmark"}),
        )
        .await?;
        if s != 200 {
            bail!("revoke answered {s}: {v}");
        }
        let deadline = t0 + Duration::from_secs(a.round_timeout_secs);
        while !pending.is_empty() && Instant::now() < deadline {
            pending.retain(|&i| {
                if feeds[i].has(&id) {
                    let ms = t0.elapsed().as_secs_f64() * 1000.0;
                    samples.push(ms);
                    by_kind.entry(feeds[i].kind()).or_default().push(ms);
                    false
                } else {
                    true
                }
            });
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        missed += pending.len();
        eprintln!(
            "round {}: {} of {} subscribers in {:?}",
            round + 1,
            feeds.len() - pending.len(),
            feeds.len(),
            t0.elapsed()
        );
    }
    samples.sort_by(f64::total_cmp);
    let per_feed: serde_json::Map<String, Value> = by_kind
        .into_iter()
        .map(|(k, mut v)| {
            v.sort_by(f64::total_cmp);
            let fig = json!({"samples": v.len(), "p50_ms": percentile(&v, 50.0), "p99_ms": percentile(&v, 99.0), "max_ms": v.last()});
            (k.to_owned(), fig)
        })
        .collect();
    let out = json!({
        "feeds": per_feed,
        "subscribers": feeds.len(),
        "urls": a.urls,
        "rounds": a.rounds,
        "samples": samples.len(),
        "missed": missed,
        "p50_ms": percentile(&samples, 50.0),
        "p90_ms": percentile(&samples, 90.0),
        "p99_ms": percentile(&samples, 99.0),
        "max_ms": samples.last().copied().unwrap_or(f64::NAN),
    });
    println!("{out}");
    Ok(())
}
