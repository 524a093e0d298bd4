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
    pub token: Option<String>,
    #[serde(default)]
    pub token_type_hint: Option<String>,
    /// Resource-server client authentication (or send the operator Bearer).
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub client_assertion_type: Option<String>,
    pub client_assertion: Option<String>,
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
    let operator = crate::bearer(&req).is_some_and(|t| app.is_operator(t));
    let headers = req.headers().clone();
    let form = axum::Form::<IntrospectForm>::from_request(req, &app)
        .await
        .map_err(|e| OAuthError {
            status: StatusCode::BAD_REQUEST,
            error: "invalid_request",
            description: format!("send `token=…` form-encoded: {}", e.body_text()),
        })?;
    let form = form.0;
    if !operator {
        let presented = super::clients::Presented {
            client_id: form.client_id.clone(),
            client_secret: form.client_secret.clone(),
            client_assertion_type: form.client_assertion_type.clone(),
            client_assertion: form.client_assertion.clone(),
        };
        let (client, _) = super::clients::authenticate(
            &app,
            &headers,
            &presented,
            &format!("{}/oauth2/introspect", app.issuer),
        )?;
        if !client.can_introspect {
            return Err(OAuthError {
                status: StatusCode::UNAUTHORIZED,
                error: "invalid_client",
                description: "this client is not a resource server; register one with `leash client add --introspect`".into(),
            });
        }
    }
    let token = form.token.ok_or_else(|| OAuthError {
        status: StatusCode::BAD_REQUEST,
        error: "invalid_request",
        description: "the `token` parameter is missing".into(),
    })?;
    // a replica that cannot vouch for its revocation set does not say
    // "active" (fail closed); it says why and the caller retries elsewhere
    if let Err(why) = app.vouch() {
        return Err(OAuthError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            error: "temporarily_unavailable",
            description: format!("{why}; retry on another replica"),
        });
    }
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
    let body: Value = app.keys().jwks();
    ([(header::CACHE_CONTROL, "public, max-age=300")], Json(body))
}

/// The token endpoint's form (RFC 6749 §4.4 plus Leash extensions).
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct TokenForm {
    pub grant_type: Option<String>,
    /// Space-separated scopes, each `TYPE[:ID]:ACTION`.
    pub scope: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub client_assertion_type: Option<String>,
    pub client_assertion: Option<String>,
    /// Audience (RFC 8693) or resource (RFC 8707); either becomes `aud`.
    pub audience: Option<String>,
    pub resource: Option<String>,
    /// Leash extension: requested lifetime (`15m`, or seconds); default 15 minutes, capped by the environment.
    pub ttl: Option<String>,
    /// Leash extension: bind the token to this run.
    pub run: Option<i64>,
    /// Leash extension: the business reason, required for write scopes.
    pub justification: Option<String>,
    /// Leash extension: `jwt` (default) or `opaque`.
    pub format: Option<String>,
    /// Leash extension: the approved request (`leash approvals`) a write-capable token is issued under.
    pub approval: Option<i64>,
    /// RFC 9449: the request's `DPoP` header (not a form field).
    #[serde(skip)]
    pub dpop: Option<String>,
    /// RFC 8693: the token being exchanged.
    pub subject_token: Option<String>,
    pub subject_token_type: Option<String>,
    /// RFC 8693: the token of the party that will act (a sub-agent's own Leash token).
    pub actor_token: Option<String>,
    pub actor_token_type: Option<String>,
    pub requested_token_type: Option<String>,
}

/// RFC 6749 §5.1 success response.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    /// RFC 8693 responses only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issued_token_type: Option<String>,
    pub token_type: String,
    pub expires_in: i64,
    pub scope: String,
}

fn oauth_error(
    status: StatusCode,
    error: &'static str,
    description: impl Into<String>,
) -> OAuthError {
    OAuthError {
        status,
        error,
        description: description.into(),
    }
}

/// Map a `/v1` error from the mint path to RFC 6749 §5.2, by its type.
fn from_api(e: crate::error::ApiError) -> OAuthError {
    let error = match (e.oauth, e.code) {
        (Some(code), _) => code,
        (None, "bad_request" | "not_found") => "invalid_request",
        (None, _) => "server_error",
    };
    let status = if error == "server_error" {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::BAD_REQUEST
    };
    oauth_error(status, error, e.detail)
}

async fn read_form<T: serde::de::DeserializeOwned + Send>(
    req: Request,
    app: &AppState,
) -> Result<T, OAuthError> {
    axum::Form::<T>::from_request(req, app)
        .await
        .map(|f| f.0)
        .map_err(|e| {
            oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!("send the parameters form-encoded: {}", e.body_text()),
            )
        })
}

/// The token endpoint URL (the audience of client assertions).
pub fn token_endpoint(app: &crate::App) -> String {
    format!("{}/oauth2/token", app.issuer)
}

#[utoipa::path(post, path = "/oauth2/token", tag = "oauth",
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, body = TokenResponse), (status = 400, description = "RFC 6749 §5.2 error"), (status = 401, description = "invalid_client")))]
pub async fn token(State(app): State<AppState>, req: Request) -> Result<Response, OAuthError> {
    let headers = req.headers().clone();
    let mut form: TokenForm = read_form(req, &app).await?;
    form.dpop = headers
        .get("dpop")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    // attacker-controlled: keep what reaches the audit log short
    let who = form
        .client_id
        .clone()
        .or_else(|| super::clients::basic_client_id(&headers))
        .map(|c| c.chars().take(128).collect::<String>());
    let grant = form.grant_type.clone().unwrap_or_default();
    let result = token_grant(&app, &headers, form).await;
    if let Err(e) = &result {
        // refusals are security events: record them (never the token itself)
        let data = json!({"endpoint": "/oauth2/token", "grant_type": grant.chars().take(100).collect::<String>(), "client_id": who, "error": e.error, "reason": e.description});
        let subject = who
            .map(|c| format!("client:{}", c.chars().take(64).collect::<String>()))
            .unwrap_or_else(|| "anonymous".into());
        if let Err(err) = app
            .store
            .record_event("oauth.refused", &subject, data, "oauth")
            .await
        {
            tracing::error!(error = %err, "could not record a refused token request");
        }
    }
    result
}

async fn token_grant(
    app: &AppState,
    headers: &axum::http::HeaderMap,
    form: TokenForm,
) -> Result<Response, OAuthError> {
    let app = app.clone();
    let headers = headers.clone();
    let presented = super::clients::Presented {
        client_id: form.client_id.clone(),
        client_secret: form.client_secret.clone(),
        client_assertion_type: form.client_assertion_type.clone(),
        client_assertion: form.client_assertion.clone(),
    };
    // a workload exchanging its own identity token (federation) has no
    // client credentials: the verified subject_token is its credential
    let anonymous = presented.client_id.is_none()
        && presented.client_secret.is_none()
        && presented.client_assertion.is_none()
        && !headers.contains_key(header::AUTHORIZATION)
        && form.grant_type.as_deref() == Some(TOKEN_EXCHANGE);
    let client = if anonymous {
        None
    } else {
        Some(super::clients::authenticate(&app, &headers, &presented, &token_endpoint(&app))?.0)
    };
    let (minted, issued_type) = match (form.grant_type.as_deref(), &client) {
        (Some("client_credentials"), Some(client)) => {
            (client_credentials(&app, client, form).await?, None)
        }
        (Some(TOKEN_EXCHANGE), _) => (
            exchange(&app, client.as_ref(), form).await?,
            Some(ACCESS_TOKEN_TYPE),
        ),
        (Some("client_credentials"), None) => {
            return Err(oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "client_credentials needs client authentication",
            ));
        }
        (Some(other), _) => {
            return Err(oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                format!(
                    "grant_type `{}` is not supported; use client_credentials or {TOKEN_EXCHANGE}",
                    other.chars().take(80).collect::<String>()
                ),
            ));
        }
        (None, _) => {
            return Err(oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "grant_type is missing",
            ));
        }
    };
    let resp = TokenResponse {
        access_token: minted.token,
        issued_token_type: issued_type.map(str::to_owned),
        token_type: minted.token_type.clone(),
        expires_in: minted.expires_in,
        scope: minted.scopes.join(" "),
    };
    let mut r = Json(resp).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r.headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    Ok(r)
}

/// RFC 8693 grant type.
pub const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// RFC 8693 token type of Leash access tokens.
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";

fn split_scopes(scope: Option<&str>) -> Vec<String> {
    scope
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

fn workload_of(app: &crate::App, id: i64) -> Result<(String, Option<String>, u64), OAuthError> {
    let reg = app.store.registry().read();
    let w = reg.workload(id).ok_or_else(|| {
        oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_client",
            "the client's workload no longer exists",
        )
    })?;
    Ok((
        w.name.clone(),
        w.identity.clone(),
        app.store.ttl_caps().cap(w.environment),
    ))
}

/// RFC 6749 §4.4: a per-task token for the client's own workload.
async fn client_credentials(
    app: &crate::App,
    client: &leash_core::Client,
    form: TokenForm,
) -> Result<super::dto::Minted, OAuthError> {
    mint_for_workload(
        app,
        client.workload_id,
        form,
        &format!("client:{}", client.id),
        leash_policy::IssuanceKind::ClientCredentials,
    )
    .await
}

/// A root token for `workload_id` from the grant's `scope` (required),
/// `ttl` (default 15 minutes, capped by the environment), `audience` /
/// `resource`, `run`, `justification` and `format`.
async fn mint_for_workload(
    app: &crate::App,
    workload_id: i64,
    form: TokenForm,
    actor: &str,
    kind: leash_policy::IssuanceKind,
) -> Result<super::dto::Minted, OAuthError> {
    let cnf_jkt = match &form.dpop {
        Some(p) => Some(super::dpop::verify_proof(
            app,
            p,
            "POST",
            &token_endpoint(app),
            None,
        )?),
        None => None,
    };
    let scopes = split_scopes(form.scope.as_deref());
    if scopes.is_empty() {
        return Err(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "ask for the scopes this task needs: scope=TYPE[:ID]:ACTION …",
        ));
    }
    let (workload, _, cap) = workload_of(app, workload_id)?;
    let ttl = match form.ttl {
        Some(t) => super::dto::Ttl::Text(t),
        None => super::dto::Ttl::Seconds(cap.min(900)),
    };
    let audience: Vec<String> = form.audience.into_iter().chain(form.resource).collect();
    let body = super::dto::MintBody {
        workload,
        run: form.run,
        scopes,
        ttl,
        audience,
        justification: form.justification,
        format: form.format,
        parent: None,
        may_act: None,
    };
    super::tokens::mint_counted(
        app,
        body,
        actor,
        super::tokens::MintExtra {
            cnf_jkt,
            approval: form.approval,
            kind: Some(kind),
            ..super::tokens::MintExtra::default()
        },
    )
    .await
    .map_err(from_api)
}

/// RFC 8693: the holder of a Leash token exchanges it for a narrower one,
/// for itself or — with an `actor_token` — for a sub-agent. The new token is
/// a child of the subject token (revoked with it); `act` nests every hop.
async fn exchange(
    app: &crate::App,
    client: Option<&leash_core::Client>,
    form: TokenForm,
) -> Result<super::dto::Minted, OAuthError> {
    let bad = |error, why: &str| oauth_error(StatusCode::BAD_REQUEST, error, why);
    let subject_token = form
        .subject_token
        .as_deref()
        .ok_or_else(|| bad("invalid_request", "subject_token is missing"))?;
    match form.subject_token_type.as_deref() {
        Some(ACCESS_TOKEN_TYPE | JWT_TOKEN_TYPE) => {}
        _ => {
            return Err(bad(
                "invalid_request",
                "subject_token_type must be urn:ietf:params:oauth:token-type:access_token (or :jwt)",
            ));
        }
    }
    if form
        .requested_token_type
        .as_deref()
        .is_some_and(|t| t != ACCESS_TOKEN_TYPE && t != JWT_TOKEN_TYPE)
    {
        return Err(bad(
            "invalid_request",
            "requested_token_type must be an access token",
        ));
    }
    let now = leash_store::now_ms();
    let live = |t: &leash_core::Token| t.status(now) == leash_core::TokenStatus::Active;
    // a Leash token (opaque, or a JWT with our signature) is delegated; any
    // other JWT goes to federation. One lookup, one signature check.
    let leash_subject = match super::tokens::resolve(app, subject_token).await {
        Ok(t) if live(&t) => Some(t),
        Ok(_) => {
            return Err(bad(
                "invalid_grant",
                "subject_token is not an active Leash token (revoked or expired)",
            ));
        }
        Err(e)
            if e.code == "not_found" || subject_token.starts_with(leash_token::opaque::PREFIX) =>
        {
            return Err(bad(
                "invalid_grant",
                "subject_token is not an active Leash token",
            ));
        }
        Err(_) => None,
    };
    let Some(subject) = leash_subject else {
        return federated_exchange(app, client, form).await;
    };
    let client = client.ok_or_else(|| {
        oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "exchanging a Leash token needs the holder's client authentication",
        )
    })?;
    if subject.workload_id != client.workload_id {
        return Err(bad(
            "invalid_grant",
            "only the workload holding the subject_token may exchange it",
        ));
    }
    // a DPoP-bound subject token is presented with a proof by its key (RFC 9449)
    let proof_jkt = match &form.dpop {
        Some(p) => Some(super::dpop::verify_proof(
            app,
            p,
            "POST",
            &token_endpoint(app),
            subject.cnf_jkt.as_ref().map(|_| subject_token),
        )?),
        None => None,
    };
    if let Some(bound) = &subject.cnf_jkt
        && proof_jkt.as_ref() != Some(bound)
    {
        return Err(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_dpop_proof",
            "the subject_token is DPoP-bound: send a DPoP proof signed by its key, with ath",
        ));
    }
    // the acting party: the actor token's workload, else the holder itself
    let actor = match form.actor_token.as_deref() {
        None => None,
        Some(a) => {
            if !matches!(
                form.actor_token_type.as_deref(),
                Some(ACCESS_TOKEN_TYPE | JWT_TOKEN_TYPE)
            ) {
                return Err(bad(
                    "invalid_request",
                    "actor_token_type must be urn:ietf:params:oauth:token-type:access_token (or :jwt)",
                ));
            }
            Some(
                super::tokens::resolve(app, a)
                    .await
                    .ok()
                    .filter(live)
                    .ok_or_else(|| {
                        bad("invalid_grant", "actor_token is not an active Leash token")
                    })?,
            )
        }
    };
    let target_workload = actor
        .as_ref()
        .map_or(subject.workload_id, |a| a.workload_id);
    let (workload, identity, cap) = workload_of(app, target_workload)?;
    // RFC 8693 §4.4: a subject token with may_act names the only party that may act for it
    if let (Some(allowed), Some(_)) = (&subject.may_act, &actor) {
        let acting = identity.clone().unwrap_or_else(|| workload.clone());
        if &acting != allowed {
            return Err(bad(
                "invalid_grant",
                &format!(
                    "the subject_token's may_act allows only `{allowed}` to act for it, not `{acting}`"
                ),
            ));
        }
    }
    let act = match &actor {
        Some(_) => Some(leash_core::Actor {
            sub: identity.unwrap_or_else(|| workload.clone()),
            act: subject.act.clone().map(Box::new),
        }),
        None => subject.act.clone(),
    };
    let scopes = match split_scopes(form.scope.as_deref()) {
        s if s.is_empty() => subject.scopes.iter().map(ToString::to_string).collect(),
        s => s,
    };
    let left = ((subject.expires_at - now).max(1000) / 1000) as u64;
    let ttl = match form.ttl {
        Some(t) => super::dto::Ttl::Text(t),
        None => super::dto::Ttl::Seconds(cap.min(900).min(left)),
    };
    let audience: Vec<String> = form.audience.into_iter().chain(form.resource).collect();
    let body = super::dto::MintBody {
        workload,
        run: subject.run_id.filter(|_| actor.is_none()),
        scopes,
        ttl,
        audience,
        justification: form.justification.or_else(|| subject.justification.clone()),
        format: Some("jwt".into()),
        parent: Some(subject.id.clone()),
        may_act: None,
    };
    super::tokens::mint_counted(
        app,
        body,
        &format!("client:{}", client.id),
        super::tokens::MintExtra {
            act,
            cnf_jkt: proof_jkt,
            ..super::tokens::MintExtra::default()
        },
    )
    .await
    .map_err(from_api)
}

/// Workload identity federation: a workload presents a JWT from a trusted
/// issuer (GitHub Actions OIDC, a Kubernetes service-account token, a SPIFFE
/// JWT-SVID); its verified claims pick the workload through identity rules;
/// the workload gets a per-task Leash token.
async fn federated_exchange(
    app: &crate::App,
    client: Option<&leash_core::Client>,
    form: TokenForm,
) -> Result<super::dto::Minted, OAuthError> {
    let subject_token = form.subject_token.as_deref().unwrap_or_default();
    let fed = super::federation::verify_external(app, subject_token)
        .await
        .map_err(|why| oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", why))?;
    if client.is_some_and(|c| c.workload_id != fed.workload_id) {
        return Err(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "the subject_token maps to another workload than the authenticated client's",
        ));
    }
    let sub = fed
        .claims
        .get("sub")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("?");
    let actor = format!(
        "federated:{}:{}",
        fed.issuer.name,
        sub.chars().take(200).collect::<String>()
    );
    mint_for_workload(
        app,
        fed.workload_id,
        form,
        &actor,
        leash_policy::IssuanceKind::Federated,
    )
    .await
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct RevokeForm {
    pub token: Option<String>,
    pub token_type_hint: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub client_assertion_type: Option<String>,
    pub client_assertion: Option<String>,
}

#[utoipa::path(post, path = "/oauth2/revoke", tag = "oauth",
    request_body(content = RevokeForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "Revoked, or the token was unknown/invalid (RFC 7009 §2.2)"), (status = 401, description = "invalid_client")))]
pub async fn revoke(State(app): State<AppState>, req: Request) -> Result<Response, OAuthError> {
    let headers = req.headers().clone();
    let operator = crate::bearer(&req).is_some_and(|t| app.is_operator(t));
    let form: RevokeForm = read_form(req, &app).await?;
    let client = if operator {
        None
    } else {
        let presented = super::clients::Presented {
            client_id: form.client_id.clone(),
            client_secret: form.client_secret.clone(),
            client_assertion_type: form.client_assertion_type.clone(),
            client_assertion: form.client_assertion.clone(),
        };
        Some(
            super::clients::authenticate(
                &app,
                &headers,
                &presented,
                &format!("{}/oauth2/revoke", app.issuer),
            )?
            .0,
        )
    };
    let token = form.token.ok_or_else(|| {
        oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the `token` parameter is missing",
        )
    })?;
    // unknown or invalid tokens: 200, nothing to do (RFC 7009 §2.2)
    let Ok(t) = super::tokens::resolve(&app, &token).await else {
        return Ok(StatusCode::OK.into_response());
    };
    let actor = match &client {
        Some(c) if c.workload_id != t.workload_id => {
            return Err(oauth_error(
                StatusCode::BAD_REQUEST,
                "unauthorized_client",
                "this token was not issued to the calling client's workload",
            ));
        }
        Some(c) => format!("client:{}", c.id),
        None => super::registry::OPERATOR.to_owned(),
    };
    let revoked = app
        .store
        .revoke_token(
            &t.id,
            format!("revoked through /oauth2/revoke by {actor}"),
            &actor,
        )
        .await
        .map_err(|e| from_api(e.into()))?;
    app.metrics.revoked(&revoked);
    Ok(StatusCode::OK.into_response())
}

#[utoipa::path(get, path = "/.well-known/oauth-authorization-server", tag = "oauth", responses((status = 200, description = "RFC 8414 metadata")))]
pub async fn metadata(State(app): State<AppState>) -> impl IntoResponse {
    let iss = &app.issuer;
    let algs: Vec<String> = super::ASYMMETRIC_ALGS
        .iter()
        .map(|a| format!("{a:?}"))
        .collect();
    Json(json!({
        "issuer": iss,
        "token_endpoint": format!("{iss}/oauth2/token"),
        "jwks_uri": format!("{iss}/.well-known/jwks.json"),
        "introspection_endpoint": format!("{iss}/oauth2/introspect"),
        "revocation_endpoint": format!("{iss}/oauth2/revoke"),
        "grant_types_supported": ["client_credentials", TOKEN_EXCHANGE],
        "response_types_supported": [],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": algs,
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt", "bearer"],
        "access_token_signing_alg_values_supported": ["EdDSA"],
        "service_documentation": format!("{iss}/v1/openapi.json"),
    }))
}

/// The signing keys and their retirement times.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KeysView {
    pub active_kid: String,
    pub keys: Vec<crate::bootstrap::KeyInfo>,
}

fn keys_view(app: &crate::App) -> KeysView {
    KeysView {
        active_kid: app.keys().active().kid().to_owned(),
        keys: app.key_info(),
    }
}

#[utoipa::path(get, path = "/v1/keys", tag = "oauth", responses((status = 200, body = KeysView)))]
pub async fn keys(State(app): State<AppState>) -> Json<KeysView> {
    Json(keys_view(&app))
}

#[utoipa::path(post, path = "/v1/keys/rotate", tag = "oauth",
    responses((status = 200, body = KeysView, description = "A new key signs from now on; the previous one stays published until the longest TTL has passed")))]
pub async fn rotate_keys(
    State(app): State<AppState>,
) -> Result<Json<KeysView>, crate::error::ApiError> {
    app.rotate_keys(super::registry::OPERATOR)
        .await
        .map_err(|e| {
            crate::error::ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "storage", e.to_string())
        })?;
    Ok(Json(keys_view(&app)))
}
