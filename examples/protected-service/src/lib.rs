//! An example resource server protected by `leash-verify`.
//!
//! * `GET /reports` needs a token with `reports:read`;
//! * `POST /reports` (`{"title": "…"}`) needs `reports:write`;
//! * `GET /health` is open and shows the verifier's feed state.
//!
//! Tokens are verified offline ([`leash_verify::LeashLayer`]); while the
//! revocation feed is stale every protected call answers 503 (fail
//! closed). The router is built here so tests can run it in-process:
//!
//! ```no_run
//! # async fn demo(verifier: leash_verify::Verifier) -> std::io::Result<()> {
//! let app = protected_service::router(verifier);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8430").await?;
//! axum::serve(listener, app).await
//! # }
//! ```

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::handler::Handler;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use leash_verify::{LeashLayer, LeashToken, Verifier};
use serde::{Deserialize, Serialize};

/// One report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub id: usize,
    pub title: String,
    /// The workload whose token created it.
    pub author: String,
    /// The owner accountable for that token.
    pub owner: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewReport {
    pub title: String,
}

#[derive(Clone)]
struct AppState {
    reports: Arc<Mutex<Vec<Report>>>,
    verifier: Verifier,
}

/// The service's routes, protected by `verifier`.
pub fn router(verifier: Verifier) -> Router {
    let state = AppState {
        reports: Arc::default(),
        verifier: verifier.clone(),
    };
    let read = LeashLayer::new(verifier.clone()).require_scope("reports:read");
    let write = LeashLayer::new(verifier).require_scope("reports:write");
    Router::new()
        .route("/reports", get(list.layer(read)).post(create.layer(write)))
        .route("/health", get(health))
        .with_state(state)
}

async fn list(State(s): State<AppState>, LeashToken(_t): LeashToken) -> Json<Vec<Report>> {
    Json(s.reports.lock().unwrap_or_else(|e| e.into_inner()).clone())
}

async fn create(
    State(s): State<AppState>,
    LeashToken(t): LeashToken,
    Json(b): Json<NewReport>,
) -> (StatusCode, Json<Report>) {
    let mut reports = s.reports.lock().unwrap_or_else(|e| e.into_inner());
    let r = Report {
        id: reports.len() + 1,
        title: b.title,
        author: t.claims.workload,
        owner: t.claims.owner,
    };
    reports.push(r.clone());
    (StatusCode::CREATED, Json(r))
}

async fn health(State(s): State<AppState>) -> (StatusCode, Json<serde_json::Value>) {
    let fresh = s.verifier.feed().check_fresh();
    let body = serde_json::json!({
        "feed": if fresh.is_ok() { "fresh" } else { "stale" },
        "detail": fresh.err().map(|e| e.to_string()),
        "head": s.verifier.head(),
        "revoked": s.verifier.revoked_count(),
        "last_heard_ms_ago": s.verifier.last_heard().map(|t| t.elapsed().as_millis() as u64),
    });
    let status = if body["feed"] == "fresh" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}
