//! One error shape for `/v1`: RFC 9457 problem details.
//!
//! ```json
//! {"type": "urn:leash:error:refused", "title": "Forbidden", "status": 403,
//!  "code": "refused", "rule": "scope_ceiling", "detail": "workload `triage-bot` may not hold …"}
//! ```
//! `code` is stable and machine-readable; `rule` names the issuance rule for
//! refusals; `detail` says what was wrong and what to do. OAuth endpoints
//! answer RFC 6749 §5.2 JSON instead (see `api::oauth`).

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use leash_store::StoreError;
use serde::Serialize;
use utoipa::ToSchema;

/// An API error.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: String,
    pub rule: Option<&'static str>,
    /// The RFC 6749 §5.2 error code this becomes at an OAuth endpoint, when
    /// it differs from the default for its status.
    pub oauth: Option<&'static str>,
}

/// The JSON body of every `/v1` error.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// `urn:leash:error:<code>`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    /// Stable machine-readable code: `bad_request`, `unauthorized`, `not_found`, `duplicate`, `conflict`, `refused`, `payload_too_large`, `storage`, `unavailable`.
    pub code: String,
    /// For refusals: the issuance rule (`owner_active`, `scope_ceiling`, `ttl_cap`, `write_justification`, `run_running`, `run_workload`, `run_definition`, `request_shape`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// What was wrong and what to do.
    pub detail: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            detail: detail.into(),
            rule: None,
            oauth: None,
        }
    }
    /// Mark the OAuth error code this error maps to.
    pub fn with_oauth(mut self, code: &'static str) -> Self {
        self.oauth = Some(code);
        self
    }
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", detail)
    }
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", detail)
    }
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong credential: send `Authorization: Bearer <operator token>` (the CLI reads it from LEASH_TOKEN or DIR/operator.token)",
        )
    }
    /// 403 refused by a named rule.
    pub fn refused(rule: &'static str, detail: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::FORBIDDEN, "refused", detail);
        e.rule = Some(rule);
        e
    }
    /// 401 with a specific reason (a webhook signature that does not verify, …).
    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", detail)
    }
    /// Add to the detail (e.g. what did not happen because of the error).
    pub fn with_suffix(mut self, suffix: &str) -> Self {
        self.detail.push_str(suffix);
        self
    }
    pub fn unauthorized_because(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let (status, code) = match &e {
            StoreError::NotFound { .. } => (StatusCode::NOT_FOUND, "not_found"),
            StoreError::Duplicate { .. } => (StatusCode::CONFLICT, "duplicate"),
            StoreError::Refused(_) => (StatusCode::FORBIDDEN, "refused"),
            StoreError::Invalid(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            StoreError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            StoreError::Storage(_) | StoreError::Corrupt(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "storage")
            }
            StoreError::Closed => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        };
        let (rule, oauth) = match &e {
            StoreError::Refused(r) => (Some(r.rule()), Some(r.oauth_error())),
            _ => (None, None),
        };
        if status.is_server_error() {
            tracing::error!(error = %e, "request failed in storage");
        }
        ApiError {
            status,
            code,
            detail: e.to_string(),
            rule,
            oauth,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Problem {
            kind: format!("urn:leash:error:{}", self.code),
            title: self.status.canonical_reason().unwrap_or("Error").to_owned(),
            status: self.status.as_u16(),
            code: self.code.to_owned(),
            rule: self.rule.map(str::to_owned),
            detail: self.detail,
        };
        let mut resp = (self.status, Json(body)).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"leash\""),
            );
        }
        resp
    }
}

/// Result alias for handlers.
pub type ApiResult<T> = Result<T, ApiError>;
