//! Downstream database credentials: the roles behind `postgres` tokens.

use axum::Json;
use axum::extract::State;
use leash_store::now_ms;
use serde::Deserialize;
use utoipa::IntoParams;

use super::dto::CredentialView;
use super::{ApiQuery, MAX_LIST};
use crate::AppState;
use crate::error::{ApiError, ApiResult, Problem};

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct CredentialQuery {
    /// `active`, `dropped` or `drop_failed`.
    pub status: Option<String>,
    /// Token ids after this one (cursor: the previous page's last `token_id`).
    pub after: Option<String>,
    /// Page size (default 100, max 1000).
    pub limit: Option<u32>,
}

/// The PostgreSQL roles Leash created for `postgres` tokens, by token id:
/// whether each is still there, dropped, or could not be dropped (never a
/// password).
#[utoipa::path(get, path = "/v1/credentials", tag = "tokens", params(CredentialQuery),
    responses((status = 200, body = [CredentialView]), (status = 400, body = Problem)))]
pub async fn list(
    State(app): State<AppState>,
    ApiQuery(q): ApiQuery<CredentialQuery>,
) -> ApiResult<Json<Vec<CredentialView>>> {
    let status = match q.status.as_deref() {
        None => None,
        Some(s) => Some(
            s.parse::<leash_core::CredentialStatus>()
                .map_err(|e| ApiError::bad_request(e.to_string()))?,
        ),
    };
    let limit = q.limit.unwrap_or(100).clamp(1, MAX_LIST);
    let rows = app.store.list_credentials(status, q.after, limit).await?;
    let now = now_ms();
    let mut out = Vec::with_capacity(rows.len());
    for c in &rows {
        let token_status = app.store.get_token(&c.token_id).await?.status(now);
        out.push(CredentialView::new(c, token_status));
    }
    Ok(Json(out))
}
