//! The revocation set a verifier keeps, fed by Leash's
//! `GET /v1/revocations/stream` (Server-Sent Events).
//!
//! A background task holds one stream open, applies `revoked` events to the
//! set, remembers the last event id and reconnects with `Last-Event-ID`
//! (with backoff) whenever the stream breaks. Entries are pruned at their
//! token's expiry, since an expired token is refused anyway.
//!
//! Freshness: the feed counts as *heard from* at each `head` heartbeat (the
//! server vouching that everything up to that sequence number was sent)
//! and at each `revoked` event on a connection that has already delivered
//! its first heartbeat. Events replayed on a fresh connection before its
//! first heartbeat do not count — the replay is not caught up yet — and
//! `stale` events never do. [`RevocationFeed::check_fresh`] fails closed
//! when the feed was never synced or not heard from within the staleness
//! bound.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use leash_core::Revocation;
use serde::Deserialize;
use tokio::task::JoinHandle;

use crate::sse::{SseEvent, SseParser};
use crate::{Credentials, now_ms};

/// One committed revocation as the stream carries it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RevocationRecord {
    /// Audit sequence number of the token's `token.revoked` event.
    pub seq: i64,
    pub token_id: String,
    /// The token's expiry (Unix ms); the entry is dropped after it.
    pub expires_at: i64,
    pub revocation: Revocation,
}

#[derive(Debug, Deserialize)]
struct Head {
    head: i64,
}

#[derive(Debug, Deserialize)]
struct Stale {
    reason: String,
}

/// First reconnect delay; doubles per failed attempt up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Longest wait between reconnects.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// A stream that sends nothing this long is assumed dead and reopened (the
/// server sends a heartbeat every second).
const IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// Shared state of one feed.
#[derive(Debug)]
pub(crate) struct FeedState {
    revoked: RwLock<HashMap<String, RevokedToken>>,
    /// Set when the feed is heard from; None before the first heartbeat.
    last_heard: Mutex<Option<Instant>>,
    /// The last event id received (resume point); -1 before any.
    last_id: AtomicI64,
    /// The last head the server announced; -1 before any.
    head: AtomicI64,
    /// Why the server says it cannot vouch for its feed, until the next heartbeat.
    stale: Mutex<Option<String>>,
    /// Connections opened (1 + reconnects).
    connections: AtomicU64,
    /// Why the last connection attempt or stream failed.
    last_error: Mutex<Option<String>>,
}

/// A revoked token the feed told us about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedToken {
    pub revocation: Revocation,
    pub seq: i64,
    pub expires_at: i64,
}

impl FeedState {
    fn new() -> Self {
        FeedState {
            revoked: RwLock::new(HashMap::new()),
            last_heard: Mutex::new(None),
            last_id: AtomicI64::new(-1),
            head: AtomicI64::new(-1),
            stale: Mutex::new(None),
            connections: AtomicU64::new(0),
            last_error: Mutex::new(None),
        }
    }

    fn heard(&self, at: Instant) {
        *self.last_heard.lock().unwrap_or_else(|e| e.into_inner()) = Some(at);
    }

    fn set_error(&self, why: String) {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
    }

    /// Apply one event; `live` is whether this connection has delivered
    /// its first heartbeat. Returns the new `live`.
    pub(crate) fn apply(&self, e: &SseEvent, live: bool, at: Instant) -> Result<bool, String> {
        let id = e.id.as_deref().and_then(|i| i.parse::<i64>().ok());
        match e.event.as_str() {
            "revoked" => {
                let r: RevocationRecord = serde_json::from_str(&e.data).map_err(|err| {
                    format!("a `revoked` event is not a revocation record: {err}")
                })?;
                if r.expires_at > now_ms() {
                    self.revoked
                        .write()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(
                            r.token_id,
                            RevokedToken {
                                revocation: r.revocation,
                                seq: r.seq,
                                expires_at: r.expires_at,
                            },
                        );
                }
                self.last_id
                    .fetch_max(id.unwrap_or(r.seq), Ordering::SeqCst);
                if live {
                    self.heard(at);
                }
                Ok(live)
            }
            "head" => {
                let h: Head = serde_json::from_str(&e.data)
                    .map_err(|err| format!("a `head` event is not {{\"head\": N}}: {err}"))?;
                self.head.store(h.head, Ordering::SeqCst);
                if let Some(id) = id {
                    self.last_id.fetch_max(id, Ordering::SeqCst);
                }
                *self.stale.lock().unwrap_or_else(|e| e.into_inner()) = None;
                self.heard(at);
                self.prune(now_ms());
                Ok(true)
            }
            "stale" => {
                let reason = serde_json::from_str::<Stale>(&e.data)
                    .map(|s| s.reason)
                    .unwrap_or_else(|_| "the server cannot vouch for its feed".to_owned());
                *self.stale.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason);
                Ok(live)
            }
            _ => Ok(live), // unknown events are ignored
        }
    }

    fn prune(&self, now: i64) -> usize {
        let mut map = self.revoked.write().unwrap_or_else(|e| e.into_inner());
        let before = map.len();
        map.retain(|_, t| t.expires_at > now);
        before - map.len()
    }
}

/// Why the feed cannot be trusted now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staleness {
    /// When the feed was last heard from; None: never synced.
    pub last_heard: Option<Instant>,
    /// What the server or the connection said, if anything.
    pub reason: Option<String>,
}

impl std::fmt::Display for Staleness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.last_heard {
            None => f.write_str("the revocation feed has not synced yet")?,
            Some(t) => write!(
                f,
                "the revocation feed was last heard from {} ms ago",
                t.elapsed().as_millis()
            )?,
        }
        if let Some(r) = &self.reason {
            write!(f, " ({r})")?;
        }
        Ok(())
    }
}

/// How to reach the stream.
#[derive(Debug, Clone)]
pub struct FeedConfig {
    /// Leash base URL, e.g. `http://127.0.0.1:8420`.
    pub base_url: String,
    pub credentials: Credentials,
    /// Longest the feed may go unheard before it counts as stale.
    pub max_staleness: Duration,
    pub http: reqwest::Client,
}

/// A revocation set kept current by one SSE stream. Cheap to clone; the
/// background task stops when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct RevocationFeed {
    state: Arc<FeedState>,
    max_staleness: Duration,
    _task: Arc<AbortOnDrop>,
}

#[derive(Debug)]
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl RevocationFeed {
    /// Start following the stream (needs a Tokio runtime).
    pub fn start(cfg: FeedConfig) -> Self {
        let state = Arc::new(FeedState::new());
        let max_staleness = cfg.max_staleness;
        let task = tokio::spawn(follow(cfg, Arc::downgrade(&state)));
        RevocationFeed {
            state,
            max_staleness,
            _task: Arc::new(AbortOnDrop(task)),
        }
    }

    /// Ok when the feed was heard from within the staleness bound.
    pub fn check_fresh(&self) -> Result<(), Staleness> {
        self.check_fresh_at(Instant::now())
    }

    pub(crate) fn check_fresh_at(&self, now: Instant) -> Result<(), Staleness> {
        let last_heard = *self
            .state
            .last_heard
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match last_heard {
            Some(t) if now.saturating_duration_since(t) <= self.max_staleness => Ok(()),
            _ => Err(Staleness {
                last_heard,
                reason: self
                    .state
                    .stale
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone()
                    .or_else(|| {
                        self.state
                            .last_error
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .clone()
                    }),
            }),
        }
    }

    /// The revocation of token `jti`, if the feed reported one.
    pub fn revocation(&self, jti: &str) -> Option<Revocation> {
        self.state
            .revoked
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(jti)
            .map(|t| t.revocation.clone())
    }

    /// Whether token `jti` is in the revocation set.
    pub fn is_revoked(&self, jti: &str) -> bool {
        self.state
            .revoked
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(jti)
    }

    /// When the feed was last heard from (None: never synced).
    pub fn last_heard(&self) -> Option<Instant> {
        *self
            .state
            .last_heard
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Revoked, unexpired tokens held.
    pub fn revoked_count(&self) -> usize {
        self.state
            .revoked
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// The last head sequence number the server announced.
    pub fn head(&self) -> Option<i64> {
        Some(self.state.head.load(Ordering::SeqCst)).filter(|h| *h >= 0)
    }

    /// The last event id received (where a reconnect resumes).
    pub fn last_event_id(&self) -> Option<i64> {
        Some(self.state.last_id.load(Ordering::SeqCst)).filter(|h| *h >= 0)
    }

    /// Connections opened so far (1 + reconnects).
    pub fn connections(&self) -> u64 {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// Wait until the feed is fresh, at most `timeout`.
    pub async fn wait_synced(&self, timeout: Duration) -> Result<(), Staleness> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.check_fresh() {
                Ok(()) => return Ok(()),
                Err(s) if Instant::now() >= deadline => return Err(s),
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }
}

/// Follow the stream until the feed is dropped.
async fn follow(cfg: FeedConfig, state: std::sync::Weak<FeedState>) {
    let url = format!(
        "{}/v1/revocations/stream",
        cfg.base_url.trim_end_matches('/')
    );
    let mut backoff = MIN_BACKOFF;
    loop {
        let Some(st) = state.upgrade() else { return };
        st.connections.fetch_add(1, Ordering::SeqCst);
        let synced = match stream_once(&cfg, &url, &st).await {
            Ok(synced) => synced,
            Err((synced, why)) => {
                tracing::debug!(error = %why, "revocation stream broke; reconnecting");
                st.set_error(why);
                synced
            }
        };
        drop(st);
        if synced {
            backoff = MIN_BACKOFF;
        }
        tokio::time::sleep(jitter(backoff)).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Up to a quarter more, so many verifiers do not reconnect in lockstep.
fn jitter(d: Duration) -> Duration {
    let clock = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let nanos = u64::from(clock ^ std::process::id());
    d + Duration::from_nanos(nanos % (d.as_nanos() as u64 / 4 + 1))
}

/// One connection; returns whether it delivered a heartbeat.
async fn stream_once(cfg: &FeedConfig, url: &str, st: &FeedState) -> Result<bool, (bool, String)> {
    let mut req = cfg
        .http
        .get(url)
        .header(reqwest::header::ACCEPT, "text/event-stream");
    req = cfg.credentials.apply(req);
    let resume = st.last_id.load(Ordering::SeqCst);
    if resume >= 0 {
        req = req.header("last-event-id", resume.to_string());
    }
    let mut resp = tokio::time::timeout(IDLE_TIMEOUT, req.send())
        .await
        .map_err(|_| {
            (
                false,
                format!("{url} did not answer within {IDLE_TIMEOUT:?}"),
            )
        })?
        .map_err(|e| (false, format!("cannot reach {url}: {e}")))?;
    let status = resp.status();
    if !status.is_success() {
        let body = resp.text().await.unwrap_or_default();
        return Err((
            false,
            format!(
                "{url} answered {status}: {}",
                body.chars().take(300).collect::<String>()
            ),
        ));
    }
    let mut parser = SseParser::new();
    let mut live = false;
    loop {
        let chunk = match tokio::time::timeout(IDLE_TIMEOUT, resp.chunk()).await {
            Err(_) => return Err((live, format!("{url} sent nothing for {IDLE_TIMEOUT:?}"))),
            Ok(Err(e)) => return Err((live, format!("the stream from {url} broke: {e}"))),
            Ok(Ok(None)) => return Err((live, format!("{url} closed the stream"))),
            Ok(Ok(Some(c))) => c,
        };
        let events = parser
            .push(&chunk)
            .map_err(|e| (live, format!("the stream from {url} is not SSE: {e}")))?;
        let at = Instant::now();
        for e in &events {
            live = st.apply(e, live, at).map_err(|why| (live, why))?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leash_core::RevocationTrigger;

    fn event(event: &str, id: Option<&str>, data: String) -> SseEvent {
        SseEvent {
            id: id.map(str::to_owned),
            event: event.to_owned(),
            data,
        }
    }

    fn revoked(seq: i64, id: &str, expires_at: i64) -> SseEvent {
        let r = serde_json::json!({"seq": seq, "token_id": id, "expires_at": expires_at,
            "revocation": {"at": 1, "trigger": RevocationTrigger::Manual, "reason": "test", "event": seq}});
        event("revoked", Some(&seq.to_string()), r.to_string())
    }

    fn feed(max_staleness: Duration) -> RevocationFeed {
        // a feed whose task never runs: the tests drive its state directly
        let state = Arc::new(FeedState::new());
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let task = rt.spawn(async {});
        RevocationFeed {
            state,
            max_staleness,
            _task: Arc::new(AbortOnDrop(task)),
        }
    }

    #[test]
    fn never_synced_is_stale_until_the_first_heartbeat() {
        let f = feed(Duration::from_secs(5));
        let t0 = Instant::now();
        let err = f.check_fresh_at(t0).unwrap_err();
        assert_eq!(err.last_heard, None);
        assert!(err.to_string().contains("has not synced"), "{err}");
        // replayed before the first heartbeat: applied, but not "heard"
        let far = now_ms() + 60_000;
        let live = f.state.apply(&revoked(3, "tok_a", far), false, t0).unwrap();
        assert!(!live);
        assert!(f.is_revoked("tok_a"));
        assert!(f.check_fresh_at(t0).is_err());
        let live = f
            .state
            .apply(
                &event("head", Some("9"), r#"{"head":9,"at":1}"#.into()),
                live,
                t0,
            )
            .unwrap();
        assert!(live);
        assert!(f.check_fresh_at(t0).is_ok());
        assert_eq!(f.head(), Some(9));
        assert_eq!(f.last_event_id(), Some(9));
    }

    #[test]
    fn freshness_runs_out_after_max_staleness_and_stale_events_do_not_refresh() {
        let f = feed(Duration::from_secs(1));
        let t0 = Instant::now();
        f.state
            .apply(
                &event("head", Some("1"), r#"{"head":1,"at":1}"#.into()),
                false,
                t0,
            )
            .unwrap();
        assert!(f.check_fresh_at(t0 + Duration::from_millis(900)).is_ok());
        // the server says it cannot vouch: nothing refreshes
        f.state
            .apply(
                &event("stale", None, r#"{"reason":"replica lag","at":1}"#.into()),
                true,
                t0 + Duration::from_millis(950),
            )
            .unwrap();
        let err = f
            .check_fresh_at(t0 + Duration::from_millis(1100))
            .unwrap_err();
        assert_eq!(err.reason.as_deref(), Some("replica lag"));
        // a live revocation counts as hearing from the feed
        let far = now_ms() + 60_000;
        f.state
            .apply(
                &revoked(2, "tok_b", far),
                true,
                t0 + Duration::from_millis(1200),
            )
            .unwrap();
        assert!(f.check_fresh_at(t0 + Duration::from_millis(1300)).is_ok());
    }

    #[test]
    fn expired_entries_are_not_kept_and_are_pruned() {
        let f = feed(Duration::from_secs(1));
        let t0 = Instant::now();
        f.state
            .apply(&revoked(1, "old", now_ms() - 1), false, t0)
            .unwrap();
        assert!(!f.is_revoked("old"));
        assert_eq!(f.last_event_id(), Some(1));
        f.state
            .apply(&revoked(2, "soon", now_ms() + 50), false, t0)
            .unwrap();
        assert_eq!(f.revoked_count(), 1);
        assert_eq!(f.state.prune(now_ms() + 100), 1);
        assert_eq!(f.revoked_count(), 0);
    }

    #[test]
    fn a_malformed_record_is_an_error_not_a_guess() {
        let f = feed(Duration::from_secs(1));
        let err = f
            .state
            .apply(
                &event("revoked", Some("4"), "{}".into()),
                true,
                Instant::now(),
            )
            .unwrap_err();
        assert!(err.contains("not a revocation record"), "{err}");
    }
}
