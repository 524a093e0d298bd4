//! HTTP routes.

pub mod approvals;
pub mod audit;
pub mod authzen;
pub mod clients;
pub mod credentials;
pub mod dpop;
pub mod dto;
pub mod exposures;
pub mod federation;
pub mod feeds;
pub mod oauth;
pub mod openapi;
pub mod policies;
pub mod registry;
pub mod review;
pub mod revocation_stream;
pub mod ssf;
pub mod tokens;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::routing::{get, post};
use serde::de::DeserializeOwned;

use crate::AppState;
use crate::error::ApiError;

pub use leash_token::dpop::ASYMMETRIC_ALGS;

/// Most items a list call returns.
pub const MAX_LIST: u32 = 1000;

/// JSON body extractor whose rejections use the documented error shape.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(rej) => Err(json_rejection(rej)),
        }
    }
}

fn json_rejection(rej: JsonRejection) -> ApiError {
    if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!(
                "request body is larger than {} bytes; send less",
                crate::MAX_BODY
            ),
        );
    }
    match rej {
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "bad_request",
            "send the body as JSON with `Content-Type: application/json`",
        ),
        other => {
            ApiError::bad_request(format!("the JSON body is not valid: {}", other.body_text()))
        }
    }
}

/// Query-string extractor with the documented error shape.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(ApiQuery(v)),
            Err(rej) => Err(query_rejection(rej)),
        }
    }
}

fn query_rejection(rej: QueryRejection) -> ApiError {
    ApiError::bad_request(format!(
        "the query string is not valid: {}",
        rej.body_text()
    ))
}

/// `/v1` routes (operator-authenticated).
pub fn v1_routes() -> Router<AppState> {
    Router::new()
        .route("/openapi.json", get(openapi::document))
        .route(
            "/owners",
            post(registry::create_owner).get(registry::list_owners),
        )
        .route("/owners/{name}", get(registry::get_owner))
        .route("/owners/{name}/offboard", post(registry::offboard_owner))
        .route(
            "/workloads",
            post(registry::create_workload).get(registry::list_workloads),
        )
        .route("/workloads/{name}", get(registry::get_workload))
        .route(
            "/workflows",
            post(registry::create_workflow).get(registry::list_workflows),
        )
        .route(
            "/workflows/{name}",
            get(registry::get_workflow).put(registry::update_workflow),
        )
        .route("/runs", post(registry::start_run).get(registry::list_runs))
        .route("/runs/{id}", get(registry::get_run))
        .route("/runs/{id}/end", post(registry::end_run))
        .route("/clients", post(clients::create).get(clients::list))
        .route("/keys", get(oauth::keys))
        .route(
            "/issuers",
            post(federation::create_issuer).get(federation::list_issuers),
        )
        .route(
            "/workloads/{name}/identity-rules",
            post(federation::add_rule),
        )
        .route("/keys/rotate", post(oauth::rotate_keys))
        .route("/tokens", post(tokens::mint).get(tokens::list))
        .route("/tokens/{id}", get(tokens::get))
        .route("/credentials", get(credentials::list))
        .route("/explain", post(tokens::explain))
        .route("/revocations", post(tokens::revoke))
        .route("/revocations/stream", get(revocation_stream::stream))
        .route("/audit/events", get(audit::events))
        .route("/audit/verify", get(audit::verify))
        .route("/exposures", post(exposures::report).get(exposures::list))
        .route("/exposures/{id}", get(exposures::get))
        .route("/partners/github", post(exposures::github_partner))
        .route("/findings", get(exposures::list_findings))
        .route("/findings/{id}", get(exposures::get_finding))
        .route("/findings/{id}/status", post(exposures::set_finding_status))
        .route(
            "/external-tokens",
            post(exposures::create_external).get(exposures::list_external),
        )
        .route("/external-tokens/{id}", get(exposures::get_external))
        .route("/policies", get(policies::list))
        .route("/policies/reload", post(policies::reload))
        .route("/policies/test", post(policies::test))
        .route(
            "/policies/{name}",
            axum::routing::put(policies::put).delete(policies::delete),
        )
        .route(
            "/external-tokens/import",
            post(review::import).layer(DefaultBodyLimit::max(review::MAX_IMPORT_BODY)),
        )
        .route(
            "/usage/ingest",
            post(review::ingest).layer(DefaultBodyLimit::max(review::MAX_INGEST_BODY)),
        )
        .route("/review/sweep", post(review::sweep))
        .route("/report", get(review::report))
        .route(
            "/removal-tests",
            post(review::create_removal_test).get(review::list_removal_tests),
        )
        .route("/removal-tests/{id}", get(review::get_removal_test))
        .route("/approvals", get(approvals::list))
        .route("/approvals/{id}", get(approvals::get))
        .route("/approvals/{id}/approve", post(approvals::approve))
        .route("/approvals/{id}/deny", post(approvals::deny))
        .route("/approvals/{id}/token", post(approvals::claim))
        .route(
            "/owners/{name}/credentials",
            post(approvals::create_owner_credential),
        )
        .route("/owners/{name}/delegates", post(approvals::add_delegate))
        .route("/write-ratio", get(approvals::write_ratio))
        .route(
            "/break-glass",
            post(approvals::break_glass).get(approvals::list_break_glass),
        )
        .route("/tokens/{id}/usage", get(approvals::token_usage))
}

/// `/v1` calls that authenticate themselves (webhook signatures, an
/// owner's own credential for approvals, a resource server's client
/// credentials on the revocation stream) instead of with the operator
/// credential.
pub fn self_authenticating(method: &axum::http::Method, path: &str) -> bool {
    path.ends_with("/openapi.json")
        || (method == axum::http::Method::GET && path == "/v1/revocations/stream")
        || (method == axum::http::Method::POST
            && (matches!(path, "/v1/exposures" | "/v1/partners/github")
                || (path.starts_with("/v1/approvals/")
                    && (path.ends_with("/approve") || path.ends_with("/deny")))))
}

/// Routes outside `/v1`.
pub fn public_routes() -> Router<AppState> {
    Router::new()
        .route("/health", get(audit::health))
        .route("/access/v1/evaluation", post(authzen::evaluation_endpoint))
        .route(
            "/access/v1/evaluations",
            post(authzen::evaluations_endpoint),
        )
        .route(
            "/.well-known/authzen-configuration",
            get(authzen::configuration),
        )
        .route("/metrics", get(audit::metrics))
        .route("/.well-known/jwks.json", get(oauth::jwks))
        .route("/oauth2/introspect", post(oauth::introspect))
        .route("/oauth2/token", post(oauth::token))
        .route("/oauth2/revoke", post(oauth::revoke))
        .route(
            "/.well-known/oauth-authorization-server",
            get(oauth::metadata),
        )
        .route("/.well-known/ssf-configuration", get(ssf::configuration))
        .merge(ssf_routes())
}

/// The SSF transmitter's management and poll endpoints (they authenticate
/// the receiver themselves; bodies are bounded to [`ssf::MAX_SSF_BODY`]).
fn ssf_routes() -> Router<AppState> {
    Router::new()
        .route(
            "/ssf/stream",
            post(ssf::create_stream)
                .get(ssf::read_stream)
                .patch(ssf::update_stream)
                .put(ssf::replace_stream)
                .delete(ssf::delete_stream),
        )
        .route(
            "/ssf/status",
            get(ssf::read_status).post(ssf::update_status),
        )
        .route("/ssf/verify", post(ssf::verify))
        .route("/ssf/poll/{stream_id}", post(ssf::poll))
        .layer(DefaultBodyLimit::max(ssf::MAX_SSF_BODY))
}
