//! OpenID Shared Signals Framework 1.0 transmitter: when Leash revokes a
//! token, every stream that asked for it gets CAEP Security Event Tokens
//! (RFC 8417) about it, pushed (RFC 8935) or polled (RFC 8936).
//!
//! How nothing is lost: the revocation is durable first (it is in the audit
//! chain). A background task ([`run`]) reads the store's durable
//! revocation feed after each stream's cursor, signs the SETs, and queues
//! them with the new cursor in one transaction; it is woken by the commit
//! feed and also runs every [`SsfSettings::tick`], so a restart, a lagging
//! feed or a crash between revocation and queuing only delays delivery.
//! Push attempts claim each SET under a lease, so replicas sharing one
//! PostgreSQL database do not push the same SET twice at once.
//!
//! What a SET says (one event per SET, as SSF requires):
//! * `sub_id` is `{"format": "opaque", "id": TOKEN_ID}` — the token's id
//!   (the `jti` of a JWT access token), which is how receivers know it;
//! * `session-revoked` carries `event_timestamp` (the revocation time, in
//!   seconds), `initiating_entity` (from the revocation trigger, see
//!   [`initiating_entity`]) and `reason_admin: {"en": REASON}`;
//! * `credential-change` carries the same with `change_type: "revoke"` and
//!   `credential_type: "leash-token"` (CAEP allows a type the two parties
//!   agree on: none of CAEP's listed types is an access token);
//! * `txn` is `leash:event:SEQ`, the audit event that caused the
//!   revocation, shared by every SET (and every cascaded token) it caused.

use std::sync::Arc;
use std::time::Duration;

use leash_core::RevocationTrigger;
use leash_store::{
    NewSet, RevocationRecord, SsfAdvance, SsfMethod, SsfOutcome, SsfPush, SsfStatus, SsfStream,
    now_ms,
};
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};

use crate::AppState;
use crate::notify::url_for_log;

/// CAEP session revoked.
pub const SESSION_REVOKED: &str =
    "https://schemas.openid.net/secevent/caep/event-type/session-revoked";
/// CAEP credential change.
pub const CREDENTIAL_CHANGE: &str =
    "https://schemas.openid.net/secevent/caep/event-type/credential-change";
/// SSF verification.
pub const VERIFICATION: &str = "https://schemas.openid.net/secevent/ssf/event-type/verification";
/// The event types Leash transmits on request.
pub const EVENTS_SUPPORTED: &[&str] = &[SESSION_REVOKED, CREDENTIAL_CHANGE];
/// `credential_type` of a Leash token in `credential-change`.
pub const CREDENTIAL_TYPE: &str = "leash-token";
/// The audit log's actor for the transmitter's work.
const ACTOR: &str = "leash:ssf";
/// Revocations read per pass.
const PAGE: u32 = 500;
/// Streams read per page.
const STREAM_PAGE: u32 = 500;
/// SETs claimed per push pass.
const PUSH_BATCH: u32 = 32;
/// Longest receiver answer read for an error description.
const MAX_ANSWER: usize = 4096;

/// How SETs are delivered.
#[derive(Debug, Clone)]
pub struct SsfSettings {
    /// First retry after a failed push; doubles each time up to `retry_max`.
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// Push attempts before a SET is recorded failed.
    pub max_attempts: u32,
    /// How long a claimed push is leased to this process.
    pub lease: Duration,
    /// Longest a poll waits for a SET when `returnImmediately` is false.
    pub long_poll_max: Duration,
    /// How often the transmitter looks for work without being woken.
    pub tick: Duration,
}

impl Default for SsfSettings {
    fn default() -> Self {
        SsfSettings {
            retry_base: Duration::from_secs(5),
            retry_max: Duration::from_secs(300),
            max_attempts: 8,
            lease: Duration::from_secs(60),
            long_poll_max: Duration::from_secs(30),
            tick: Duration::from_secs(1),
        }
    }
}

/// The transmitter's shared state: settings, the push client, and the
/// signals that wake the delivery task and waiting pollers.
pub struct Transmitter {
    pub settings: SsfSettings,
    http: reqwest::Client,
    wake: Notify,
    queued: watch::Sender<u64>,
}

impl Transmitter {
    /// A transmitter with its own HTTP client: no redirects (a redirect
    /// could carry the receiver's authorization header elsewhere).
    pub fn new(settings: SsfSettings) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the SSF push client: {e}"))?;
        Ok(Transmitter {
            settings,
            http,
            wake: Notify::new(),
            queued: watch::channel(0).0,
        })
    }

    /// Ask the delivery task to look for work now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Changes whenever SETs are queued (long polls wait on it).
    pub fn queued(&self) -> watch::Receiver<u64> {
        self.queued.subscribe()
    }

    fn announce(&self) {
        self.queued.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// The event types a stream gets: those requested that Leash supports.
pub fn events_delivered(requested: &[String]) -> Vec<String> {
    EVENTS_SUPPORTED
        .iter()
        .filter(|e| requested.iter().any(|r| r == *e))
        .map(|e| (*e).to_owned())
        .collect()
}

/// CAEP `initiating_entity` for a revocation trigger: a person's action is
/// `admin`, a policy's decision `policy`, Leash's own lifecycle `system`.
pub fn initiating_entity(t: RevocationTrigger) -> &'static str {
    match t {
        RevocationTrigger::Manual | RevocationTrigger::OwnerOffboarded => "admin",
        RevocationTrigger::PolicyViolation | RevocationTrigger::Exposure => "policy",
        RevocationTrigger::RunEnded
        | RevocationTrigger::WorkflowChanged
        | RevocationTrigger::ParentRevoked
        | RevocationTrigger::Expiry => "system",
    }
}

/// A fresh SET `jti`.
fn new_jti() -> Result<String, String> {
    crate::api::clients::random_base62(24).map_err(|e| e.detail)
}

/// Sign one SET for `stream`.
fn sign_set(
    app: &crate::App,
    stream: &SsfStream,
    sub_id: Value,
    event_type: &str,
    event: Value,
    txn: Option<String>,
) -> Result<(String, String), String> {
    let jti = new_jti()?;
    let mut claims = json!({
        "iss": app.issuer,
        "aud": stream.aud,
        "iat": now_ms().div_euclid(1000),
        "jti": jti,
        "sub_id": sub_id,
        "events": { event_type: event },
    });
    if let (Some(txn), Some(obj)) = (txn, claims.as_object_mut()) {
        obj.insert("txn".into(), Value::String(txn));
    }
    let set = leash_token::jwt::sign_typed(&app.keys(), "secevent+jwt", &claims)
        .map_err(|e| e.to_string())?;
    Ok((jti, set))
}

/// The SETs a revocation produces for a stream.
fn revocation_sets(
    app: &crate::App,
    stream: &SsfStream,
    r: &RevocationRecord,
) -> Result<Vec<NewSet>, String> {
    let mut out = Vec::new();
    let sub_id = json!({"format": "opaque", "id": r.token_id});
    let txn = Some(format!("leash:event:{}", r.revocation.event));
    let base = json!({
        "event_timestamp": r.revocation.at.div_euclid(1000),
        "initiating_entity": initiating_entity(r.revocation.trigger),
        "reason_admin": {"en": format!("{}: {}", r.revocation.trigger, r.revocation.reason)},
    });
    for event_type in events_delivered(&stream.events_requested) {
        let mut event = base.clone();
        if event_type == CREDENTIAL_CHANGE
            && let Some(obj) = event.as_object_mut()
        {
            obj.insert("credential_type".into(), CREDENTIAL_TYPE.into());
            obj.insert("change_type".into(), "revoke".into());
        }
        let (jti, set) = sign_set(app, stream, sub_id.clone(), &event_type, event, txn.clone())?;
        out.push(NewSet {
            seq: r.seq,
            event_type,
            jti,
            set,
        });
    }
    Ok(out)
}

/// Sign a verification SET for `stream` (`state` echoed back when given).
pub fn verification_set(
    app: &crate::App,
    stream: &SsfStream,
    state: Option<String>,
) -> Result<NewSet, String> {
    let event = match state {
        Some(s) => json!({"state": s}),
        None => json!({}),
    };
    let sub_id = json!({"format": "opaque", "id": stream.stream_id});
    let (jti, set) = sign_set(app, stream, sub_id, VERIFICATION, event, None)?;
    Ok(NewSet {
        seq: 0,
        event_type: VERIFICATION.into(),
        jti,
        set,
    })
}

/// Queue SETs for the revocations after each stream's cursor. Returns how
/// many SETs were queued.
async fn queue_revocations(app: &crate::App) -> Result<u64, String> {
    let mut streams = Vec::new();
    let mut after = String::new();
    loop {
        let page = app
            .store
            .list_ssf_streams(None, after.clone(), STREAM_PAGE)
            .await
            .map_err(|e| e.to_string())?;
        let full = page.len() >= STREAM_PAGE as usize;
        if let Some(last) = page.last() {
            after = last.stream_id.clone();
        }
        streams.extend(page);
        if !full {
            break;
        }
    }
    let Some(mut from) = streams.iter().map(|s| s.cursor).min() else {
        return Ok(0);
    };
    let mut queued = 0;
    loop {
        let recs = app
            .store
            .revocations_after(from, PAGE)
            .await
            .map_err(|e| e.to_string())?;
        let Some(last) = recs.last().map(|r| r.seq) else {
            break;
        };
        let mut advances = Vec::new();
        for s in &mut streams {
            if s.cursor >= last {
                continue;
            }
            let mut sets = Vec::new();
            if s.status != SsfStatus::Disabled {
                for r in recs.iter().filter(|r| r.seq > s.cursor) {
                    sets.extend(revocation_sets(app, s, r)?);
                }
            }
            advances.push(SsfAdvance {
                stream_id: s.stream_id.clone(),
                from: s.cursor,
                to: last,
                sets,
            });
            s.cursor = last;
        }
        if !advances.is_empty() {
            queued += app
                .store
                .queue_ssf_sets(advances)
                .await
                .map_err(|e| e.to_string())?;
        }
        from = last;
        if recs.len() < PAGE as usize {
            break;
        }
    }
    Ok(queued)
}

/// How long to wait before attempt `failed + 1`.
pub fn backoff(failed: u32, base: Duration, max: Duration) -> Duration {
    base.saturating_mul(1u32 << failed.saturating_sub(1).min(20))
        .min(max)
}

/// One RFC 8935 push.
async fn push(t: &Transmitter, p: &SsfPush) -> SsfOutcome {
    let shown = url_for_log(&p.endpoint_url);
    let mut req = t
        .http
        .post(&p.endpoint_url)
        .header(reqwest::header::CONTENT_TYPE, "application/secevent+jwt")
        .header(reqwest::header::ACCEPT, "application/json")
        .body(p.set.clone());
    if let Some(h) = &p.authorization_header {
        req = req.header(reqwest::header::AUTHORIZATION, h);
    }
    let retry = |error: String| {
        let failed = p.attempts.saturating_add(1);
        let wait = backoff(failed, t.settings.retry_base, t.settings.retry_max);
        SsfOutcome::Retry {
            error,
            next_attempt_ms: now_ms() + i64::try_from(wait.as_millis()).unwrap_or(i64::MAX / 2),
            give_up: failed >= t.settings.max_attempts,
        }
    };
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => return retry(format!("could not reach {shown}: {}", e.without_url())),
    };
    let status = resp.status();
    if status.is_success() {
        return SsfOutcome::Delivered;
    }
    if status == reqwest::StatusCode::BAD_REQUEST {
        // RFC 8935 §2.3: {"err": CODE, "description": TEXT}; a refusal for good
        let body = resp.bytes().await.unwrap_or_default();
        let v: Value =
            serde_json::from_slice(&body[..body.len().min(MAX_ANSWER)]).unwrap_or(Value::Null);
        let err = v["err"].as_str().unwrap_or("(no err code)");
        let description = v["description"].as_str().unwrap_or("");
        return SsfOutcome::Failed {
            error: format!("{shown} refused the SET (HTTP 400): {err}: {description}"),
        };
    }
    retry(format!("{shown} answered HTTP {}", status.as_u16()))
}

/// Push every SET due now. Returns how many were attempted.
async fn push_due(app: &AppState) -> Result<usize, String> {
    let t = &app.ssf;
    let lease = i64::try_from(t.settings.lease.as_millis()).unwrap_or(60_000);
    let due = app
        .store
        .claim_ssf_push(now_ms(), lease, PUSH_BATCH)
        .await
        .map_err(|e| e.to_string())?;
    let n = due.len();
    let mut tasks = tokio::task::JoinSet::new();
    for p in due {
        let app = app.clone();
        tasks.spawn(async move {
            let outcome = push(&app.ssf, &p).await;
            match &outcome {
                SsfOutcome::Delivered => {
                    tracing::debug!(stream = %p.stream_id, jti = %p.jti, "SET delivered")
                }
                SsfOutcome::Retry {
                    error, give_up: true, ..
                }
                | SsfOutcome::Failed { error } => {
                    tracing::error!(stream = %p.stream_id, jti = %p.jti, %error, "SET not delivered; recorded failed")
                }
                SsfOutcome::Retry { error, .. } => {
                    tracing::warn!(stream = %p.stream_id, jti = %p.jti, %error, "SET push failed; will retry")
                }
            }
            if let Err(e) = app.store.record_ssf_push(&p.jti, outcome, ACTOR).await {
                tracing::error!(stream = %p.stream_id, error = %e, "could not record a SET push");
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    Ok(n)
}

/// Queue and push SETs for as long as the server runs.
pub async fn run(app: AppState) {
    let mut revoked = app.store.commits().subscribe_revocations();
    loop {
        match queue_revocations(&app).await {
            Ok(0) => {}
            Ok(_) => app.ssf.announce(),
            Err(e) => tracing::error!(error = %e, "could not queue SETs for revocations"),
        }
        for _ in 0..16 {
            match push_due(&app).await {
                Ok(n) if n >= PUSH_BATCH as usize => continue,
                Ok(_) => break,
                Err(e) => {
                    tracing::error!(error = %e, "could not claim SETs to push");
                    break;
                }
            }
        }
        tokio::select! {
            // a lagging receiver just runs a pass: the cursor is durable
            r = revoked.recv() => {
                if matches!(r, Err(tokio::sync::broadcast::error::RecvError::Closed)) {
                    tokio::time::sleep(app.ssf.settings.tick).await;
                }
            }
            _ = app.ssf.wake.notified() => {}
            _ = tokio::time::sleep(app.ssf.settings.tick) => {}
        }
    }
}

/// A verification SET for `stream`, queued (and the task woken).
pub async fn queue_verification(
    app: &Arc<crate::App>,
    stream: &SsfStream,
    state: Option<String>,
    actor: &str,
) -> Result<(), crate::error::ApiError> {
    let set = verification_set(app, stream, state).map_err(crate::error::ApiError::internal)?;
    app.store
        .queue_ssf_verification(&stream.stream_id, set, actor)
        .await?;
    app.ssf.announce();
    app.ssf.wake();
    Ok(())
}

/// Whether a stream is delivered by push.
pub fn is_push(s: &SsfStream) -> bool {
    s.method == SsfMethod::Push
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_base_up_to_the_maximum() {
        let (base, max) = (Duration::from_secs(5), Duration::from_secs(300));
        let waits: Vec<u64> = (1..=8).map(|n| backoff(n, base, max).as_secs()).collect();
        assert_eq!(waits, vec![5, 10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(backoff(u32::MAX, base, max), max);
    }

    #[test]
    fn only_supported_requested_events_are_delivered() {
        let got = events_delivered(&[CREDENTIAL_CHANGE.into(), "urn:example:other".into()]);
        assert_eq!(got, vec![CREDENTIAL_CHANGE.to_owned()]);
    }
}
