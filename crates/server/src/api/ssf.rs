//! The SSF 1.0 transmitter's HTTP side: `/.well-known/ssf-configuration`,
//! the stream management API (`/ssf/stream`, `/ssf/status`,
//! `/ssf/verify`) and RFC 8936 poll delivery (`/ssf/poll/{stream_id}`).
//!
//! A receiver authenticates as a registered OAuth client with HTTP Basic
//! (`client_id:client_secret`) and sees only its own streams (another
//! client's stream answers 404, as one that does not exist); the operator
//! credential as a Bearer token sees every stream. A push stream's
//! `authorization_header` is write-only: it is stored as given (Leash must
//! send it), never echoed, logged or audited.

use std::time::Instant;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use leash_store::{NewSsfStream, SetError, SsfConfig, SsfMethod, SsfStatus, SsfStream, StoreError};
use serde::Deserialize;
use serde_json::{Value, json};

use super::clients::Caller;
use super::{ApiJson, ApiQuery};
use crate::error::{ApiError, ApiResult};
use crate::ssf::{EVENTS_SUPPORTED, events_delivered};
use crate::{App, AppState};

/// Largest body a management or poll request may send.
pub const MAX_SSF_BODY: usize = 64 * 1024;
/// Most SETs one poll returns.
const MAX_EVENTS: u32 = 100;

fn caller(app: &App, headers: &HeaderMap, endpoint: &str) -> ApiResult<Caller> {
    super::clients::operator_or_client(
        app,
        headers,
        endpoint,
        "a receiver sends HTTP Basic client_id:client_secret of its OAuth client (register one with POST /v1/clients); the operator its Bearer token",
    )
}

/// The stream `id` if the caller may see it (404 otherwise, so another
/// client's streams cannot be told from missing ones).
async fn visible(app: &App, who: &Caller, id: &str) -> ApiResult<SsfStream> {
    let not_found = || {
        ApiError::not_found(format!(
            "no stream `{}` for this receiver; list yours with GET /ssf/stream",
            id.chars().take(64).collect::<String>()
        ))
    };
    let s = match app.store.get_ssf_stream(id).await {
        Ok(s) => s,
        Err(StoreError::NotFound { .. }) => return Err(not_found()),
        Err(e) => return Err(e.into()),
    };
    match who {
        Caller::Operator => Ok(s),
        Caller::Client(c) if s.client_id.as_deref() == Some(c.id.as_str()) => Ok(s),
        Caller::Client(_) => Err(not_found()),
    }
}

fn url(app: &App, path: &str) -> String {
    format!("{}{path}", app.issuer.trim_end_matches('/'))
}

fn no_store(body: impl IntoResponse, status: StatusCode) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    r
}

/// `GET /.well-known/ssf-configuration`: transmitter metadata (SSF 1.0 §7).
pub async fn configuration(State(app): State<AppState>) -> Json<Value> {
    Json(json!({
        "spec_version": "1_0",
        "issuer": app.issuer,
        "jwks_uri": url(&app, "/.well-known/jwks.json"),
        "delivery_methods_supported": [SsfMethod::Push.urn(), SsfMethod::Poll.urn()],
        "configuration_endpoint": url(&app, "/ssf/stream"),
        "status_endpoint": url(&app, "/ssf/status"),
        "verification_endpoint": url(&app, "/ssf/verify"),
        // OAuth client authentication (HTTP Basic client_secret_basic)
        "authorization_schemes": [{"spec_urn": "urn:ietf:rfc:6749"}],
        // every token revocation is sent; there are no subject endpoints
        "default_subjects": "ALL",
    }))
}

/// A stream as SSF shows it (the authorization header is never shown).
fn view(app: &App, s: &SsfStream) -> Value {
    let endpoint = match s.method {
        SsfMethod::Push => s.endpoint_url.clone().unwrap_or_default(),
        SsfMethod::Poll => poll_url(app, &s.stream_id),
    };
    let mut v = json!({
        "stream_id": s.stream_id,
        "iss": app.issuer,
        "aud": s.aud,
        "events_supported": EVENTS_SUPPORTED,
        "events_requested": s.events_requested,
        "events_delivered": events_delivered(&s.events_requested),
        "delivery": {"method": s.method.urn(), "endpoint_url": endpoint},
    });
    if let (Some(d), Some(obj)) = (&s.description, v.as_object_mut()) {
        obj.insert("description".into(), Value::String(d.clone()));
    }
    v
}

fn poll_url(app: &App, stream_id: &str) -> String {
    url(app, &format!("/ssf/poll/{stream_id}"))
}

/// `delivery` as a receiver sends it.
#[derive(Debug, Deserialize)]
pub struct DeliveryIn {
    pub method: String,
    #[serde(default)]
    pub endpoint_url: Option<String>,
    #[serde(default)]
    pub authorization_header: Option<String>,
}

/// A stream configuration as a receiver sends it (create, update, replace).
#[derive(Debug, Deserialize)]
pub struct StreamIn {
    #[serde(default)]
    pub stream_id: Option<String>,
    #[serde(default)]
    pub events_requested: Option<Vec<String>>,
    #[serde(default)]
    pub delivery: Option<DeliveryIn>,
    #[serde(default)]
    pub description: Option<String>,
    // transmitter-supplied: when present on an update they must match
    #[serde(default)]
    pub iss: Option<Value>,
    #[serde(default)]
    pub aud: Option<Value>,
    #[serde(default)]
    pub events_supported: Option<Value>,
    #[serde(default)]
    pub events_delivered: Option<Value>,
}

/// The delivery a receiver asked for, checked.
fn delivery(d: Option<DeliveryIn>) -> ApiResult<(SsfMethod, Option<String>, Option<String>)> {
    let Some(d) = d else {
        // SSF: no delivery means poll
        return Ok((SsfMethod::Poll, None, None));
    };
    let method = SsfMethod::from_urn(&d.method).ok_or_else(|| {
        ApiError::bad_request(format!(
            "delivery.method `{}` is not supported; use urn:ietf:rfc:8935 (push) or urn:ietf:rfc:8936 (poll)",
            d.method.chars().take(80).collect::<String>()
        ))
    })?;
    match method {
        // Leash supplies the poll endpoint; a receiver's value is ignored
        SsfMethod::Poll => {
            if d.authorization_header.is_some() {
                return Err(ApiError::bad_request(
                    "delivery.authorization_header is for push delivery only; poll requests authenticate as the client",
                ));
            }
            Ok((SsfMethod::Poll, None, None))
        }
        SsfMethod::Push => {
            let raw = d.endpoint_url.ok_or_else(|| {
                ApiError::bad_request(
                    "push delivery needs delivery.endpoint_url: the receiver's http:// or https:// URL",
                )
            })?;
            let parsed = reqwest::Url::parse(&raw).map_err(|e| {
                ApiError::bad_request(format!("delivery.endpoint_url is not a URL ({e}); send an absolute http:// or https:// URL"))
            })?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
                return Err(ApiError::bad_request(
                    "delivery.endpoint_url must be an http:// or https:// URL with a host",
                ));
            }
            Ok((SsfMethod::Push, Some(raw), d.authorization_header))
        }
    }
}

fn check_transmitter_fields(app: &App, s: &SsfStream, body: &StreamIn) -> ApiResult<()> {
    let mismatch = |field: &str| {
        ApiError::bad_request(format!(
            "`{field}` is supplied by the transmitter and does not match this stream's; leave it out or send the value GET /ssf/stream returns"
        ))
    };
    if body.iss.as_ref().is_some_and(|v| v != &json!(app.issuer)) {
        return Err(mismatch("iss"));
    }
    if body
        .aud
        .as_ref()
        .is_some_and(|v| v != &json!(s.aud) && v != &json!([s.aud]))
    {
        return Err(mismatch("aud"));
    }
    if body
        .events_supported
        .as_ref()
        .is_some_and(|v| v != &json!(EVENTS_SUPPORTED))
    {
        return Err(mismatch("events_supported"));
    }
    if body
        .events_delivered
        .as_ref()
        .is_some_and(|v| v != &json!(events_delivered(&s.events_requested)))
    {
        return Err(mismatch("events_delivered"));
    }
    Ok(())
}

/// `POST /ssf/stream`: create a stream (201).
pub async fn create_stream(
    State(app): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<StreamIn>,
) -> ApiResult<Response> {
    let who = caller(&app, &headers, &url(&app, "/ssf/stream"))?;
    let (method, endpoint_url, authorization_header) = delivery(body.delivery)?;
    let stream_id = super::clients::random_base62(24)?;
    let aud = who
        .client_id()
        .map_or_else(|| stream_id.clone(), str::to_owned);
    let s = app
        .store
        .create_ssf_stream(
            NewSsfStream {
                stream_id,
                client_id: who.client_id().map(str::to_owned),
                aud,
                config: SsfConfig {
                    events_requested: body.events_requested.unwrap_or_default(),
                    method,
                    endpoint_url,
                    authorization_header,
                    description: body.description,
                },
            },
            &who.actor(),
        )
        .await?;
    Ok(no_store(Json(view(&app, &s)), StatusCode::CREATED))
}

#[derive(Debug, Deserialize)]
pub struct StreamQuery {
    #[serde(default)]
    pub stream_id: Option<String>,
}

/// `GET /ssf/stream[?stream_id=]`: one stream, or the caller's list.
pub async fn read_stream(
    State(app): State<AppState>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<StreamQuery>,
) -> ApiResult<Response> {
    let who = caller(&app, &headers, &url(&app, "/ssf/stream"))?;
    if let Some(id) = q.stream_id {
        let s = visible(&app, &who, &id).await?;
        return Ok(no_store(Json(view(&app, &s)), StatusCode::OK));
    }
    let limit = match who {
        Caller::Operator => super::MAX_LIST,
        Caller::Client(_) => leash_store::SSF_MAX_STREAMS_PER_CLIENT,
    };
    let list = app
        .store
        .list_ssf_streams(who.client_id().map(str::to_owned), String::new(), limit)
        .await?;
    let out: Vec<Value> = list.iter().map(|s| view(&app, s)).collect();
    Ok(no_store(Json(out), StatusCode::OK))
}

async fn change_stream(
    app: &AppState,
    headers: &HeaderMap,
    body: StreamIn,
    replace: bool,
) -> ApiResult<Response> {
    let who = caller(app, headers, &url(app, "/ssf/stream"))?;
    let id = body
        .stream_id
        .clone()
        .ok_or_else(|| ApiError::bad_request("send the stream_id of the stream to change"))?;
    let s = visible(app, &who, &id).await?;
    check_transmitter_fields(app, &s, &body)?;
    let config = if replace {
        let (method, endpoint_url, authorization_header) = delivery(body.delivery)?;
        SsfConfig {
            events_requested: body.events_requested.unwrap_or_default(),
            method,
            endpoint_url,
            authorization_header,
            description: body.description,
        }
    } else {
        let (method, endpoint_url, authorization_header) = match body.delivery {
            Some(d) => delivery(Some(d))?,
            None => (
                s.method,
                s.endpoint_url.clone(),
                s.authorization_header.clone(),
            ),
        };
        SsfConfig {
            events_requested: body.events_requested.unwrap_or(s.events_requested.clone()),
            method,
            endpoint_url,
            authorization_header,
            description: body.description.or(s.description.clone()),
        }
    };
    let s = app
        .store
        .replace_ssf_stream(&id, config, &who.actor())
        .await?;
    Ok(no_store(Json(view(app, &s)), StatusCode::OK))
}

/// `PATCH /ssf/stream`: change the properties sent, keep the rest.
pub async fn update_stream(
    State(app): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<StreamIn>,
) -> ApiResult<Response> {
    change_stream(&app, &headers, body, false).await
}

/// `PUT /ssf/stream`: replace the receiver-supplied configuration; what is
/// left out is removed.
pub async fn replace_stream(
    State(app): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<StreamIn>,
) -> ApiResult<Response> {
    change_stream(&app, &headers, body, true).await
}

/// `DELETE /ssf/stream?stream_id=`: delete a stream and what is queued for it (204).
pub async fn delete_stream(
    State(app): State<AppState>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<StreamQuery>,
) -> ApiResult<Response> {
    let who = caller(&app, &headers, &url(&app, "/ssf/stream"))?;
    let id = q
        .stream_id
        .ok_or_else(|| ApiError::bad_request("send ?stream_id= of the stream to delete"))?;
    visible(&app, &who, &id).await?;
    app.store.delete_ssf_stream(&id, &who.actor()).await?;
    Ok(no_store((), StatusCode::NO_CONTENT))
}

async fn status_view(app: &App, s: &SsfStream) -> ApiResult<Value> {
    let q = app.store.ssf_queue(&s.stream_id).await?;
    let mut v = json!({
        "stream_id": s.stream_id,
        "status": s.status.as_str(),
        // Leash's addition: what is queued and the last delivery error
        "delivery": {"pending": q.pending, "failed": q.failed, "last_error": q.last_error},
    });
    if let (Some(r), Some(obj)) = (&s.reason, v.as_object_mut()) {
        obj.insert("reason".into(), Value::String(r.clone()));
    }
    Ok(v)
}

/// `GET /ssf/status?stream_id=`.
pub async fn read_status(
    State(app): State<AppState>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<StreamQuery>,
) -> ApiResult<Response> {
    let who = caller(&app, &headers, &url(&app, "/ssf/status"))?;
    let id = q
        .stream_id
        .ok_or_else(|| ApiError::bad_request("send ?stream_id= of the stream"))?;
    let s = visible(&app, &who, &id).await?;
    Ok(no_store(Json(status_view(&app, &s).await?), StatusCode::OK))
}

#[derive(Debug, Deserialize)]
pub struct StatusIn {
    pub stream_id: String,
    pub status: String,
    #[serde(default)]
    pub reason: Option<String>,
}

/// `POST /ssf/status`: enable, pause (held) or disable (dropped).
pub async fn update_status(
    State(app): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<StatusIn>,
) -> ApiResult<Response> {
    let who = caller(&app, &headers, &url(&app, "/ssf/status"))?;
    let status =
        SsfStatus::parse(&body.status).map_err(|e| ApiError::bad_request(e.to_string()))?;
    visible(&app, &who, &body.stream_id).await?;
    let s = app
        .store
        .set_ssf_status(&body.stream_id, status, body.reason, &who.actor())
        .await?;
    app.ssf.wake();
    Ok(no_store(Json(status_view(&app, &s).await?), StatusCode::OK))
}

#[derive(Debug, Deserialize)]
pub struct VerifyIn {
    pub stream_id: String,
    #[serde(default)]
    pub state: Option<String>,
}

/// `POST /ssf/verify`: queue a verification event carrying `state` (204).
pub async fn verify(
    State(app): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<VerifyIn>,
) -> ApiResult<Response> {
    let who = caller(&app, &headers, &url(&app, "/ssf/verify"))?;
    if body
        .state
        .as_ref()
        .is_some_and(|s| s.chars().count() > 1024)
    {
        return Err(ApiError::bad_request(
            "state is longer than 1024 characters; send a shorter value",
        ));
    }
    let s = visible(&app, &who, &body.stream_id).await?;
    crate::ssf::queue_verification(&app, &s, body.state, &who.actor()).await?;
    Ok(no_store((), StatusCode::NO_CONTENT))
}

#[derive(Debug, Deserialize)]
pub struct SetErrIn {
    pub err: String,
    #[serde(default)]
    pub description: String,
}

/// An RFC 8936 poll request.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PollIn {
    #[serde(default)]
    pub max_events: Option<u32>,
    #[serde(default)]
    pub return_immediately: Option<bool>,
    #[serde(default)]
    pub ack: Vec<String>,
    #[serde(default)]
    pub set_errs: std::collections::BTreeMap<String, SetErrIn>,
}

/// `POST /ssf/poll/{stream_id}` (RFC 8936): acknowledge, report errors,
/// and receive what is pending; without `returnImmediately: true` it waits
/// (up to the configured bound) for a SET to arrive.
pub async fn poll(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(stream_id): Path<String>,
    ApiJson(body): ApiJson<PollIn>,
) -> ApiResult<Response> {
    let who = caller(&app, &headers, &poll_url(&app, &stream_id))?;
    let s = visible(&app, &who, &stream_id).await?;
    if s.method != SsfMethod::Poll {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            "this stream is delivered by push, not poll; change its delivery (PATCH /ssf/stream) to poll first",
        ));
    }
    if body.ack.len() + body.set_errs.len() > leash_store::SSF_MAX_ACKS {
        return Err(ApiError::bad_request(format!(
            "a poll may acknowledge or report at most {} SETs; send the rest in the next poll",
            leash_store::SSF_MAX_ACKS
        )));
    }
    if !body.ack.is_empty() || !body.set_errs.is_empty() {
        let errors = body
            .set_errs
            .into_iter()
            .map(|(jti, e)| SetError {
                jti,
                err: e.err,
                description: e.description,
            })
            .collect();
        app.store
            .ack_ssf_sets(&stream_id, body.ack, errors, &who.actor())
            .await?;
    }
    let max = body.max_events.unwrap_or(MAX_EVENTS).min(MAX_EVENTS);
    let deadline = Instant::now() + app.ssf.settings.long_poll_max;
    let mut queued = app.ssf.queued();
    loop {
        let enabled = app.store.get_ssf_stream(&stream_id).await?.status == SsfStatus::Enabled;
        let mut sets = if enabled && max > 0 {
            app.store.pending_ssf_sets(&stream_id, max + 1).await?
        } else {
            Vec::new()
        };
        let more = sets.len() > max as usize;
        sets.truncate(max as usize);
        let waiting = max > 0 && !body.return_immediately.unwrap_or(false);
        if !sets.is_empty() || !waiting || Instant::now() >= deadline {
            let map: serde_json::Map<String, Value> = sets
                .into_iter()
                .map(|(j, s)| (j, Value::String(s)))
                .collect();
            return Ok(no_store(
                Json(json!({"sets": map, "moreAvailable": more})),
                StatusCode::OK,
            ));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        // woken when anything is queued; a poller on another replica
        // sees SETs it queued at the next tick
        let _ = tokio::time::timeout(left.min(app.ssf.settings.tick), queued.changed()).await;
    }
}
