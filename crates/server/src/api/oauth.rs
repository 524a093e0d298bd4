//! Standard endpoints: RFC 7662 introspection and the JWKS.
//!
//! Errors here use the RFC 6749 §5.2 shape
//! (`{"error": "invalid_request", "error_description": "…"}`), not the `/v1`
//! problem shape, because OAuth clients expect it.

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use leash_core::TokenStatus;
use leash_store::now_ms;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::AppState;

/// An RFC 6749 §5.2 error response.
pub struct OAuthError {
    pub status: StatusCode,
    pub error: &'static str,
    pub description: String,
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let mut r = (
            self.status,
            Json(json!({"error": self.error, "error_description": self.description})),
        )
            .into_response();
        r.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"leash\""),
            );
        }
        r
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct IntrospectForm {
    pub token: String,
    #[serde(default)]
    pub token_type_hint: Option<String>,
}

/// RFC 7662 response. Inactive tokens get only `{"active": false}`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Introspection {
    pub active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aud: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workload: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<i64>,
}

impl Introspection {
    fn inactive() -> Self {
        Introspection {
            active: false,
            scope: None,
            client_id: None,
            token_type: None,
            exp: None,
            iat: None,
            sub: None,
            aud: None,
            iss: None,
            jti: None,
            owner: None,
            workload: None,
            run: None,
        }
    }
}

#[utoipa::path(post, path = "/oauth2/introspect", tag = "oauth",
    request_body(content = IntrospectForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, body = Introspection), (status = 401, description = "RFC 6749 error JSON")))]
pub async fn introspect(
    State(app): State<AppState>,
    req: Request,
) -> Result<Json<Introspection>, OAuthError> {
    let authorised = crate::bearer(&req).is_some_and(|t| app.is_operator(t));
    if !authorised {
        return Err(OAuthError {
            status: StatusCode::UNAUTHORIZED,
            error: "invalid_client",
            description: "introspection needs the operator credential as a Bearer token".into(),
        });
    }
    let form = axum::Form::<IntrospectForm>::from_request(req, &app)
        .await
        .map_err(|e| OAuthError {
            status: StatusCode::BAD_REQUEST,
            error: "invalid_request",
            description: format!("send `token=…` form-encoded: {}", e.body_text()),
        })?;
    let token = form.0.token;
    // every failure to find a live token is simply "inactive" (RFC 7662 §2.2)
    let Ok(t) = super::tokens::resolve(&app, &token).await else {
        return Ok(Json(Introspection::inactive()));
    };
    if t.status(now_ms()) != TokenStatus::Active {
        return Ok(Json(Introspection::inactive()));
    }
    let reg = app.store.registry().read();
    let workload = reg.workload(t.workload_id);
    Ok(Json(Introspection {
        active: true,
        scope: Some(
            t.scopes
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" "),
        ),
        client_id: workload.map(|w| w.name.clone()),
        token_type: Some("Bearer".into()),
        exp: Some(t.expires_at.div_euclid(1000)),
        iat: Some(t.issued_at.div_euclid(1000)),
        sub: workload.map(|w| w.identity.clone().unwrap_or_else(|| w.name.clone())),
        aud: Some(t.audience.clone()),
        iss: Some(app.issuer.clone()),
        jti: Some(t.id.clone()),
        owner: reg.owner(t.owner_id).map(|o| o.name.clone()),
        workload: workload.map(|w| w.name.clone()),
        run: t.run_id,
    }))
}

use axum::extract::FromRequest;

#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "oauth", responses((status = 200, description = "JWK Set of the Ed25519 signing keys")))]
pub async fn jwks(State(app): State<AppState>) -> impl IntoResponse {
    let body: Value = app.keys.jwks();
    ([(header::CACHE_CONTROL, "public, max-age=300")], Json(body))
}
