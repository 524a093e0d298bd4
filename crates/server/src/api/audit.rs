//! Audit log, health and metrics endpoints.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header;
use axum::response::IntoResponse;
use serde::Deserialize;
use utoipa::IntoParams;

use super::dto::*;
use super::{ApiQuery, MAX_LIST};
use crate::AppState;
use crate::error::ApiResult;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EventQuery {
    /// Events with a sequence number above this; omit for the latest.
    pub after: Option<i64>,
    /// At most this many (default 50, max 1000).
    pub limit: Option<u32>,
}

#[utoipa::path(get, path = "/v1/audit/events", tag = "audit", params(EventQuery), responses((status = 200, body = [EventView])))]
pub async fn events(
    State(app): State<AppState>,
    ApiQuery(q): ApiQuery<EventQuery>,
) -> ApiResult<Json<Vec<EventView>>> {
    let limit = q.limit.unwrap_or(50).clamp(1, MAX_LIST);
    let evs = match q.after {
        Some(after) => app.store.events_after(after, limit).await?,
        None => app.store.latest_events(limit).await?,
    };
    Ok(Json(evs.iter().map(EventView::from).collect()))
}

#[utoipa::path(get, path = "/v1/audit/verify", tag = "audit", responses((status = 200, body = AuditVerification)))]
pub async fn verify(State(app): State<AppState>) -> ApiResult<Json<AuditVerification>> {
    Ok(Json(AuditVerification::from_result(
        app.store.verify_audit().await?,
    )))
}

#[utoipa::path(get, path = "/health", tag = "ops", responses(
    (status = 200, body = Health),
    (status = 503, body = Health, description = "this replica cannot vouch for its view of revocations (behind PostgreSQL or NATS) and refuses decisions until it can"),
))]
pub async fn health(State(app): State<AppState>) -> (StatusCode, Json<Health>) {
    let vouched = app.vouch();
    let feed = app.store.commits();
    let synced_at = feed.synced_at();
    let body = Health {
        status: if vouched.is_ok() { "ok" } else { "unavailable" }.into(),
        version: env!("CARGO_PKG_VERSION").into(),
        active_kid: app.keys().active().kid().to_owned(),
        reason: vouched.as_ref().err().cloned(),
        store: if synced_at.is_some() {
            "postgresql"
        } else {
            "sqlite"
        }
        .into(),
        head: feed.head_seq(),
        synced_at,
        nats_applied: app.fanout.as_ref().map(|f| f.applied()),
    };
    let status = if vouched.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}

#[utoipa::path(get, path = "/metrics", tag = "ops", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics(State(app): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.metrics.encode(),
    )
}
