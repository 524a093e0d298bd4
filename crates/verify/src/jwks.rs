//! The JWK Set cache: Leash's signing keys from `/.well-known/jwks.json`.
//!
//! Fetched at start, refetched periodically, and refetched when a token
//! names a `kid` the cache does not hold (a key rotation) — but at most once
//! per `min_refresh`, so a flood of tokens with made-up `kid`s cannot turn
//! into a flood of fetches.

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{Jwk, JwkSet};

/// What the cache can say about a `kid` without fetching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Lookup {
    Found(Box<Jwk>),
    /// Not held; a refetch is allowed now.
    Refetch,
    /// Not held, and the last fetch was too recent to try again.
    Unknown,
}

#[derive(Debug)]
pub(crate) struct JwksCache {
    keys: RwLock<Arc<JwkSet>>,
    /// When the keys were last fetched (or a fetch was last tried).
    last_fetch: Mutex<Option<Instant>>,
    min_refresh: Duration,
    url: String,
    http: reqwest::Client,
    /// Serialises fetches, so concurrent unknown-kid lookups fetch once.
    fetching: tokio::sync::Mutex<()>,
}

impl JwksCache {
    pub(crate) fn new(base_url: &str, http: reqwest::Client, min_refresh: Duration) -> Self {
        JwksCache {
            keys: RwLock::new(Arc::new(JwkSet { keys: Vec::new() })),
            last_fetch: Mutex::new(None),
            min_refresh,
            url: format!("{}/.well-known/jwks.json", base_url.trim_end_matches('/')),
            http,
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    /// Look `kid` up at time `now`, without fetching.
    pub(crate) fn lookup(&self, kid: &str, now: Instant) -> Lookup {
        if let Some(k) = self
            .keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .find(kid)
        {
            return Lookup::Found(Box::new(k.clone()));
        }
        let last = *self.last_fetch.lock().unwrap_or_else(|e| e.into_inner());
        match last {
            Some(t) if now.saturating_duration_since(t) < self.min_refresh => Lookup::Unknown,
            _ => Lookup::Refetch,
        }
    }

    /// Replace the keys (after a fetch at `at`).
    pub(crate) fn install(&self, set: JwkSet, at: Instant) {
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(set);
        *self.last_fetch.lock().unwrap_or_else(|e| e.into_inner()) = Some(at);
    }

    /// How many keys are held.
    pub(crate) fn len(&self) -> usize {
        self.keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys
            .len()
    }

    /// Fetch the set now. A failed fetch also counts against the rate limit.
    pub(crate) async fn refresh(&self) -> Result<(), String> {
        let _one = self.fetching.lock().await;
        let started = Instant::now();
        let result = self.fetch().await;
        match result {
            Ok(set) => {
                self.install(set, started);
                Ok(())
            }
            Err(e) => {
                *self.last_fetch.lock().unwrap_or_else(|e| e.into_inner()) = Some(started);
                Err(e)
            }
        }
    }

    async fn fetch(&self) -> Result<JwkSet, String> {
        let resp = self
            .http
            .get(&self.url)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .map_err(|e| format!("cannot fetch {}: {e}", self.url))?;
        if !resp.status().is_success() {
            return Err(format!("{} answered {}", self.url, resp.status()));
        }
        resp.json::<JwkSet>()
            .await
            .map_err(|e| format!("{} is not a JWK Set: {e}", self.url))
    }

    /// The key for `kid`, refetching once (rate-limited) when it is unknown.
    pub(crate) async fn key(&self, kid: &str) -> Option<Jwk> {
        match self.lookup(kid, Instant::now()) {
            Lookup::Found(k) => return Some(*k),
            Lookup::Unknown => return None,
            Lookup::Refetch => {}
        }
        {
            // another caller may have fetched while we waited for the lock
            let _one = self.fetching.lock().await;
            match self.lookup(kid, Instant::now()) {
                Lookup::Found(k) => return Some(*k),
                Lookup::Unknown => return None,
                Lookup::Refetch => {}
            }
        }
        if let Err(e) = self.refresh().await {
            tracing::warn!(error = %e, "could not refetch the Leash JWK Set");
        }
        match self.lookup(kid, Instant::now()) {
            Lookup::Found(k) => Some(*k),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(kids: &[&str]) -> JwkSet {
        let keys = kids
            .iter()
            .map(|kid| {
                serde_json::json!({"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": kid,
                    "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"})
            })
            .collect::<Vec<_>>();
        serde_json::from_value(serde_json::json!({ "keys": keys })).unwrap()
    }

    fn cache() -> JwksCache {
        JwksCache::new(
            "http://127.0.0.1:9",
            reqwest::Client::new(),
            Duration::from_secs(10),
        )
    }

    #[test]
    fn an_unknown_kid_may_refetch_at_most_once_per_min_refresh() {
        let c = cache();
        let t0 = Instant::now();
        // nothing fetched yet: a fetch is due
        assert_eq!(c.lookup("k1", t0), Lookup::Refetch);
        c.install(set(&["k1"]), t0);
        assert!(matches!(c.lookup("k1", t0), Lookup::Found(_)));
        // the key rotated: `k2` is unknown and the last fetch was just now
        assert_eq!(c.lookup("k2", t0 + Duration::from_secs(3)), Lookup::Unknown);
        assert_eq!(
            c.lookup("k2", t0 + Duration::from_secs(10)),
            Lookup::Refetch
        );
        // after the refetch both the old and the new key verify
        c.install(set(&["k2", "k1"]), t0 + Duration::from_secs(10));
        assert!(matches!(
            c.lookup("k1", t0 + Duration::from_secs(11)),
            Lookup::Found(_)
        ));
        assert!(matches!(
            c.lookup("k2", t0 + Duration::from_secs(11)),
            Lookup::Found(_)
        ));
        assert_eq!(c.len(), 2);
    }

    #[tokio::test]
    async fn a_failed_fetch_counts_against_the_rate_limit() {
        let c = cache(); // port 9 (discard): nothing listens there
        assert!(c.refresh().await.is_err());
        assert_eq!(c.lookup("k1", Instant::now()), Lookup::Unknown);
        assert_eq!(c.key("k1").await, None);
    }
}
