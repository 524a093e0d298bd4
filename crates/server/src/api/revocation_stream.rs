//! `GET /v1/revocations/stream`: the revocation feed for resource servers,
//! as Server-Sent Events.
//!
//! Each committed revocation is one event, `id: <seq>` (the audit sequence
//! number of the token's `token.revoked` event), `event: revoked`, `data:`
//! the [`RevocationRecord`] as JSON. Every [`HEARTBEAT`] the stream sends
//! `event: head` with `id:` and `data: {"head": N, "at": ms}` — *only* while
//! the server can vouch for its feed ([`crate::App::vouch`]): a heartbeat
//! says "every revocation up to N has been sent to you". When it cannot, it
//! sends `event: stale` with `{"reason": …, "at": ms}` instead, so a verifier
//! stops trusting its copy and fails closed.
//!
//! Where it starts:
//! * `Last-Event-ID: <seq>` or `?after=<seq>`: every revocation after that
//!   sequence number, replayed from the database in bounded chunks, then live.
//! * neither: a snapshot of every revoked token that has not yet expired,
//!   then live. The snapshot reads all revocations from the database and
//!   drops the expired ones, so its cost grows with the revocation history
//!   (not only with the live set); a consumer should resume with
//!   `Last-Event-ID` whenever it can.
//!
//! Nothing is lost between the replay and the live feed: the stream
//! subscribes to the store's commit feed *before* it reads the database and
//! sends each sequence number once. A stream that falls behind the live
//! feed reads the gap back from the database.
//!
//! Authentication: the operator credential as a Bearer token, or a
//! registered resource-server client (`introspect: true`) with HTTP Basic
//! `client_id:client_secret`.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use leash_store::{RevocationRecord, now_ms};
use serde::Deserialize;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{OwnedSemaphorePermit, broadcast, mpsc};
use utoipa::IntoParams;

use super::ApiQuery;
use super::clients::{self, Caller};
use crate::error::{ApiError, ApiResult};
use crate::{App, AppState};

/// Most streams open at once; one more is answered 503.
pub const MAX_STREAMS: usize = 10_000;
/// How often a stream sends its `head` (or `stale`) event.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// Most revocations read from the database per query while replaying.
pub const REPLAY_CHUNK: u32 = 1000;
/// Events buffered per stream before the stream waits for its client.
const STREAM_BUFFER: usize = 256;

/// Query string of the stream.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct StreamQuery {
    /// Resume after this audit sequence number (the `id` of the last event
    /// received); the `Last-Event-ID` header does the same and wins.
    pub after: Option<String>,
}

#[utoipa::path(get, path = "/v1/revocations/stream", tag = "tokens",
    params(StreamQuery, ("Last-Event-ID" = Option<String>, Header, description = "Resume after this sequence number (the id of the last event received)")),
    security(("operator" = []), ("client_basic" = [])),
    responses(
        (status = 200, content_type = "text/event-stream", body = String, description = "Events `revoked` (id = seq, data = {seq, token_id, expires_at, revocation}), `head` every second while the server vouches for its feed (data = {head, at}), `stale` when it cannot (data = {reason, at})"),
        (status = 400, body = crate::error::Problem, description = "`Last-Event-ID` or `after` is not a sequence number"),
        (status = 401, body = crate::error::Problem, description = "No operator credential and no resource-server client credentials"),
        (status = 503, body = crate::error::Problem, description = "Too many streams are open"),
    ))]
pub async fn stream(
    State(app): State<AppState>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<StreamQuery>,
) -> ApiResult<Response> {
    let who = authenticate(&app, &headers)?;
    let resume = resume_point(&headers, q.after.as_deref())?;
    let permit = app
        .revocation_streams
        .clone()
        .try_acquire_owned()
        .map_err(|_| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                format!(
                    "this server already serves {MAX_STREAMS} revocation streams; retry later or connect to another replica"
                ),
            )
        })?;
    // subscribe before the database is read, so nothing committed in between is lost
    let live = app.store.commits().subscribe_revocations();
    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
    tracing::debug!(client = %who, after = ?resume, "revocation stream opened");
    tokio::spawn(feed(app, resume, live, tx, permit));
    let events = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|e| (Ok::<Event, Infallible>(e), rx))
    });
    let mut resp = Sse::new(events).into_response();
    // tell buffering proxies to pass events through at once
    resp.headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// Who opened the stream: `operator` or the client id.
fn authenticate(app: &App, headers: &HeaderMap) -> Result<String, ApiError> {
    let endpoint = format!("{}/v1/revocations/stream", app.issuer);
    match clients::operator_or_client(
        app,
        headers,
        &endpoint,
        "the revocation stream needs `Authorization: Bearer <operator token>` or HTTP Basic credentials of a resource-server client",
    )? {
        Caller::Operator => Ok("operator".to_owned()),
        Caller::Client(c) if c.can_introspect => Ok(c.id),
        Caller::Client(c) => Err(ApiError::unauthorized_because(format!(
            "client `{}` is not a resource server; register one with `leash client add --introspect` (or `\"introspect\": true` at /v1/clients)",
            c.id
        ))),
    }
}

/// The sequence number to resume after, if the client named one.
fn resume_point(headers: &HeaderMap, after: Option<&str>) -> Result<Option<i64>, ApiError> {
    let header = headers
        .get("last-event-id")
        .map(|v| {
            v.to_str()
                .map_err(|_| ApiError::bad_request("`Last-Event-ID` is not text"))
        })
        .transpose()?;
    let (name, value) = match (header, after) {
        (Some(h), _) => ("Last-Event-ID", h),
        (None, Some(a)) => ("after", a),
        (None, None) => return Ok(None),
    };
    match value.trim().parse::<i64>() {
        Ok(seq) if seq >= 0 => Ok(Some(seq)),
        _ => Err(ApiError::bad_request(format!(
            "`{name}` must be the id of an event this stream sent (a sequence number, 0 or more), not `{}`",
            value.chars().take(40).collect::<String>()
        ))),
    }
}

/// The stream's client went away (or the event could not be built).
struct Gone;

/// Where a stream is: the highest sequence number it has sent.
struct Cursor {
    last: i64,
    tx: mpsc::Sender<Event>,
}

impl Cursor {
    async fn send(&self, e: Event) -> Result<(), Gone> {
        self.tx.send(e).await.map_err(|_| Gone)
    }

    /// Send records not sent yet (each sequence number once).
    async fn send_records(&mut self, records: &[RevocationRecord]) -> Result<(), Gone> {
        for r in records {
            if r.seq > self.last {
                self.send(revoked_event(r)?).await?;
                self.last = r.seq;
            }
        }
        Ok(())
    }

    /// Replay from the database everything after `last`, in chunks; with
    /// `unexpired_only` (the snapshot) tokens already expired are skipped.
    async fn replay(&mut self, app: &App, unexpired_only: bool) -> Result<(), Gone> {
        loop {
            let chunk = match app.store.revocations_after(self.last, REPLAY_CHUNK).await {
                Ok(c) => c,
                Err(e) => {
                    // end the stream: the client reconnects with its Last-Event-ID
                    tracing::warn!(error = %e, after = self.last, "revocation stream could not read the database; closing it");
                    return Err(Gone);
                }
            };
            let now = now_ms();
            for r in &chunk {
                if !unexpired_only || r.expires_at > now {
                    self.send(revoked_event(r)?).await?;
                }
                self.last = self.last.max(r.seq);
            }
            if chunk.len() < REPLAY_CHUNK as usize {
                return Ok(());
            }
        }
    }

    /// Everything already broadcast, without waiting; a gap is read back.
    async fn drain(
        &mut self,
        app: &App,
        live: &mut broadcast::Receiver<std::sync::Arc<[RevocationRecord]>>,
    ) -> Result<(), Gone> {
        loop {
            match live.try_recv() {
                Ok(batch) => self.send_records(&batch).await?,
                Err(TryRecvError::Empty) => return Ok(()),
                Err(TryRecvError::Lagged(_)) => self.replay(app, false).await?,
                Err(TryRecvError::Closed) => return Err(Gone),
            }
        }
    }
}

fn revoked_event(r: &RevocationRecord) -> Result<Event, Gone> {
    Event::default()
        .id(r.seq.to_string())
        .event("revoked")
        .json_data(r)
        .map_err(|_| Gone)
}

/// Feed one stream until its client goes away.
async fn feed(
    app: AppState,
    resume: Option<i64>,
    mut live: broadcast::Receiver<std::sync::Arc<[RevocationRecord]>>,
    tx: mpsc::Sender<Event>,
    _permit: OwnedSemaphorePermit,
) {
    let mut cur = Cursor {
        last: resume.unwrap_or(0),
        tx,
    };
    if cur.replay(&app, resume.is_none()).await.is_err() {
        return;
    }
    let mut tick = tokio::time::interval(HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let step = tokio::select! {
            biased;
            () = cur.tx.closed() => Err(Gone),
            // the tick first: it is ready once a second, and a busy feed must not starve it
            _ = tick.tick() => heartbeat(&app, &mut cur, &mut live).await,
            msg = live.recv() => match msg {
                Ok(batch) => cur.send_records(&batch).await,
                Err(RecvError::Lagged(_)) => cur.replay(&app, false).await,
                Err(RecvError::Closed) => Err(Gone),
            },
        };
        if step.is_err() {
            return;
        }
    }
}

/// `head` when the server vouches for its feed, else `stale`.
async fn heartbeat(
    app: &App,
    cur: &mut Cursor,
    live: &mut broadcast::Receiver<std::sync::Arc<[RevocationRecord]>>,
) -> Result<(), Gone> {
    let at = now_ms();
    match app.vouch() {
        Ok(()) => {
            // read the head first: the store broadcasts a batch before it
            // moves the head, so after draining, everything up to it is sent
            let head = app.store.commits().head_seq();
            cur.drain(app, live).await?;
            let announced = head.max(cur.last);
            let e = Event::default()
                .id(announced.to_string())
                .event("head")
                .json_data(serde_json::json!({"head": announced, "at": at}))
                .map_err(|_| Gone)?;
            cur.send(e).await
        }
        Err(reason) => {
            let e = Event::default()
                .event("stale")
                .json_data(serde_json::json!({"reason": reason, "at": at}))
                .map_err(|_| Gone)?;
            cur.send(e).await
        }
    }
}
