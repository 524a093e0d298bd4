//! OAuth clients: registration under `/v1/clients` and client
//! authentication at the token and revocation endpoints
//! (`client_secret_basic`, `client_secret_post`, `private_key_jwt`).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use base64::Engine;
use leash_core::Client;
use leash_store::{NewClient, now_ms};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use utoipa::ToSchema;

use super::ApiJson;
use super::dto::ts;
use super::oauth::OAuthError;
use super::registry::OPERATOR;
use crate::error::{ApiError, ApiResult, Problem};
use crate::{App, AppState};

/// `client_assertion_type` for RFC 7523 client authentication.
pub const JWT_BEARER_ASSERTION: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Longest a client assertion may live (Authlib and others default to an hour;
/// the replay cache keeps each `jti` until then).
const MAX_ASSERTION_LIFETIME: i64 = 3600;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateClient {
    /// Workload name the client authenticates as.
    pub workload: String,
    /// Public JWK Set for `private_key_jwt`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub jwks: Option<serde_json::Value>,
    /// Issue a client secret (default true; set false for key-only clients).
    #[serde(default)]
    pub secret: Option<bool>,
    /// A resource server: may introspect tokens at `/oauth2/introspect`.
    #[serde(default)]
    pub introspect: bool,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ClientCreated {
    pub client_id: String,
    /// Shown once; Leash stores only its SHA-256.
    pub client_secret: Option<String>,
    pub workload: String,
    pub auth_methods: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ClientView {
    pub client_id: String,
    pub workload: String,
    pub auth_methods: Vec<String>,
    pub created_at: String,
}

fn auth_methods(c: &Client) -> Vec<String> {
    let mut m = Vec::new();
    if c.secret_hash.is_some() {
        m.extend([
            "client_secret_basic".to_owned(),
            "client_secret_post".to_owned(),
        ]);
    }
    if c.jwks.is_some() {
        m.push("private_key_jwt".to_owned());
    }
    if c.can_introspect {
        m.push("introspection".to_owned());
    }
    m
}

pub fn random_base62(len: usize) -> Result<String, ApiError> {
    let mut buf = [0u8; 96];
    loop {
        aws_lc_rs::rand::fill(&mut buf).map_err(|_| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "storage",
                "the random generator failed",
            )
        })?;
        if let Some(s) = leash_token::base62::from_random(&buf, len) {
            return Ok(s);
        }
    }
}

#[utoipa::path(post, path = "/v1/clients", tag = "oauth", request_body = CreateClient,
    responses((status = 201, body = ClientCreated), (status = 400, body = Problem), (status = 404, body = Problem)))]
pub async fn create(
    State(app): State<AppState>,
    ApiJson(b): ApiJson<CreateClient>,
) -> ApiResult<(StatusCode, Json<ClientCreated>)> {
    let jwks = b.jwks.map(|v| public_jwks(&v)).transpose()?;
    let want_secret = b.secret.unwrap_or(true);
    // 43 base62 characters carry 256 bits
    let secret = if want_secret {
        Some(format!("lshc_{}", random_base62(43)?))
    } else {
        None
    };
    let id = format!("cl_{}", random_base62(16)?);
    let c = app
        .store
        .create_client(
            NewClient {
                id,
                workload: b.workload.clone(),
                secret_hash: secret.as_ref().map(|s| leash_token::sha256(s.as_bytes())),
                jwks,
                can_introspect: b.introspect,
            },
            OPERATOR,
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(ClientCreated {
            client_id: c.id.clone(),
            client_secret: secret,
            workload: b.workload,
            auth_methods: auth_methods(&c),
        }),
    ))
}

#[utoipa::path(get, path = "/v1/clients", tag = "oauth", responses((status = 200, body = [ClientView])))]
pub async fn list(State(app): State<AppState>) -> Json<Vec<ClientView>> {
    let reg = app.store.registry().read();
    Json(
        reg.clients()
            .into_iter()
            .map(|c| ClientView {
                client_id: c.id.clone(),
                workload: reg
                    .workload(c.workload_id)
                    .map(|w| w.name.clone())
                    .unwrap_or_default(),
                auth_methods: auth_methods(c),
                created_at: ts(c.created_at),
            })
            .collect(),
    )
}

/// Check that a JSON value is a JWK Set of public asymmetric keys (RSA, EC,
/// OKP; never symmetric) and return it as text to store.
pub fn public_jwks(v: &serde_json::Value) -> Result<String, ApiError> {
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_value(v.clone())
        .map_err(|e| ApiError::bad_request(format!("`jwks` is not a JWK Set: {e}")))?;
    let usable = |k: &jsonwebtoken::jwk::Jwk| {
        jsonwebtoken::DecodingKey::from_jwk(k).is_ok()
            && !matches!(
                k.algorithm,
                jsonwebtoken::jwk::AlgorithmParameters::OctetKey(_)
            )
    };
    if set.keys.is_empty() || !set.keys.iter().all(usable) {
        return Err(ApiError::bad_request(
            "`jwks` must hold at least one key, and only public RSA, EC or OKP keys (no symmetric keys)",
        ));
    }
    Ok(v.to_string())
}

/// Client credentials as they arrived, before checking.
#[derive(Debug, Default, Deserialize)]
pub struct Presented {
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub client_assertion_type: Option<String>,
    pub client_assertion: Option<String>,
}

/// Seen `jti`s of client assertions and DPoP proofs, until they expire.
pub use leash_token::dpop::ReplayCache;

/// Who called an endpoint that takes the operator's Bearer credential or a
/// registered client's HTTP Basic credentials (feeds for resource servers
/// and receivers).
pub enum Caller {
    Operator,
    Client(Client),
}

impl Caller {
    /// The audit actor.
    pub fn actor(&self) -> String {
        match self {
            Caller::Operator => super::registry::OPERATOR.to_owned(),
            Caller::Client(c) => format!("client:{}", c.id),
        }
    }
    /// The client's id, None for the operator.
    pub fn client_id(&self) -> Option<&str> {
        match self {
            Caller::Operator => None,
            Caller::Client(c) => Some(&c.id),
        }
    }
}

/// Authenticate the operator (`Authorization: Bearer`) or a registered
/// client (HTTP Basic) at `endpoint`; `what` names the credentials in the
/// 401 when none were sent.
pub fn operator_or_client(
    app: &App,
    headers: &HeaderMap,
    endpoint: &str,
    what: &str,
) -> Result<Caller, ApiError> {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    match auth.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => {
            if app.is_operator(token.trim()) {
                Ok(Caller::Operator)
            } else {
                Err(ApiError::unauthorized_because(format!(
                    "the Bearer credential is not the operator credential; {what}"
                )))
            }
        }
        Some((scheme, _)) if scheme.eq_ignore_ascii_case("basic") => {
            let (client, _) = authenticate(app, headers, &Presented::default(), endpoint)
                .map_err(|e| ApiError::unauthorized_because(e.description))?;
            Ok(Caller::Client(client))
        }
        _ => Err(ApiError::unauthorized_because(format!(
            "authenticate: {what}"
        ))),
    }
}

fn invalid_client(why: impl Into<String>) -> OAuthError {
    OAuthError {
        status: StatusCode::UNAUTHORIZED,
        error: "invalid_client",
        description: why.into(),
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn basic_credentials(headers: &HeaderMap) -> Option<Result<(String, String), OAuthError>> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let bad = || invalid_client("the Basic credentials are not base64(client_id:client_secret)");
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .map_err(|_| bad());
    Some(decoded.and_then(|d| {
        let text = String::from_utf8(d).map_err(|_| bad())?;
        let (id, secret) = text.split_once(':').ok_or_else(bad)?;
        Ok((
            percent_decode(id).ok_or_else(bad)?,
            percent_decode(secret).ok_or_else(bad)?,
        ))
    }))
}

/// The client id of an HTTP Basic header, unverified (for audit records).
pub fn basic_client_id(headers: &HeaderMap) -> Option<String> {
    basic_credentials(headers)
        .and_then(Result::ok)
        .map(|(id, _)| id)
}

/// Authenticate the calling client by exactly one method.
pub fn authenticate(
    app: &App,
    headers: &HeaderMap,
    p: &Presented,
    endpoint: &str,
) -> Result<(Client, &'static str), OAuthError> {
    let basic = basic_credentials(headers).transpose()?;
    let methods = usize::from(basic.is_some())
        + usize::from(p.client_secret.is_some())
        + usize::from(p.client_assertion.is_some());
    if methods > 1 {
        return Err(OAuthError {
            status: StatusCode::BAD_REQUEST,
            error: "invalid_request",
            description: "use exactly one client authentication method".into(),
        });
    }
    let unknown = || invalid_client("unknown client or wrong credentials");
    let check_secret = |id: &str, secret: &str| -> Result<Client, OAuthError> {
        let c = app
            .store
            .registry()
            .read()
            .client(id)
            .cloned()
            .ok_or_else(unknown)?;
        let ok = c
            .secret_hash
            .is_some_and(|h| bool::from(leash_token::sha256(secret.as_bytes()).ct_eq(&h)));
        if ok { Ok(c) } else { Err(unknown()) }
    };
    if let Some((id, secret)) = basic {
        return check_secret(&id, &secret).map(|c| (c, "client_secret_basic"));
    }
    if let Some(secret) = &p.client_secret {
        let id = p
            .client_id
            .as_deref()
            .ok_or_else(|| invalid_client("client_secret_post needs client_id"))?;
        return check_secret(id, secret).map(|c| (c, "client_secret_post"));
    }
    if let Some(assertion) = &p.client_assertion {
        if p.client_assertion_type.as_deref() != Some(JWT_BEARER_ASSERTION) {
            return Err(invalid_client(format!(
                "client_assertion_type must be {JWT_BEARER_ASSERTION}"
            )));
        }
        return verify_assertion(app, assertion, p.client_id.as_deref(), endpoint)
            .map(|c| (c, "private_key_jwt"));
    }
    Err(invalid_client(
        "authenticate the client: HTTP Basic, client_secret_post or a private_key_jwt client_assertion",
    ))
}

#[derive(Debug, Deserialize)]
struct AssertionClaims {
    sub: String,
    exp: i64,
    jti: Option<String>,
}

/// RFC 7523 §3: verify a client assertion against the client's JWK Set.
fn verify_assertion(
    app: &App,
    assertion: &str,
    client_id: Option<&str>,
    endpoint: &str,
) -> Result<Client, OAuthError> {
    if assertion.len() > 16 * 1024 {
        return Err(invalid_client("client_assertion is larger than 16 KiB"));
    }
    let header = jsonwebtoken::decode_header(assertion)
        .map_err(|e| invalid_client(format!("client_assertion is not a JWT: {e}")))?;
    if !super::ASYMMETRIC_ALGS.contains(&header.alg) {
        return Err(invalid_client(format!(
            "client_assertion alg {:?} is not accepted; sign with RS*, PS*, ES256/384 or EdDSA",
            header.alg
        )));
    }
    // find the client: client_id if sent, else the (unverified) sub, verified below
    let id = match client_id {
        Some(id) => id.to_owned(),
        None => {
            let payload = assertion.split('.').nth(1).unwrap_or_default();
            let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .map_err(|_| invalid_client("client_assertion payload is not base64url"))?;
            let claims: AssertionClaims = serde_json::from_slice(&bytes)
                .map_err(|_| invalid_client("client_assertion lacks sub/exp"))?;
            claims.sub
        }
    };
    let client = app
        .store
        .registry()
        .read()
        .client(&id)
        .cloned()
        .ok_or_else(|| invalid_client("unknown client or wrong credentials"))?;
    let jwks_text = client
        .jwks
        .as_deref()
        .ok_or_else(|| invalid_client("this client has no registered keys for private_key_jwt"))?;
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_str(jwks_text)
        .map_err(|_| invalid_client("the client's registered JWK Set is unreadable"))?;
    let jwk = match &header.kid {
        Some(kid) => set.find(kid),
        None if set.keys.len() == 1 => set.keys.first(),
        None => None,
    }
    .ok_or_else(|| invalid_client("no registered key matches the assertion's kid"))?;
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk)
        .map_err(|e| invalid_client(format!("registered key unusable: {e}")))?;
    let mut v = jsonwebtoken::Validation::new(header.alg);
    v.set_audience(&[endpoint, app.issuer.as_str()]);
    v.set_issuer(&[id.as_str()]);
    v.sub = Some(id.clone());
    v.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
    v.leeway = 30;
    let data = jsonwebtoken::decode::<AssertionClaims>(assertion, &key, &v)
        .map_err(|e| invalid_client(format!("client_assertion rejected: {e}")))?;
    let now = now_ms().div_euclid(1000);
    if data.claims.exp - now > MAX_ASSERTION_LIFETIME {
        return Err(invalid_client(format!(
            "client_assertion lives longer than {MAX_ASSERTION_LIFETIME}s; use a short exp"
        )));
    }
    let jti = data
        .claims
        .jti
        .ok_or_else(|| invalid_client("client_assertion needs a jti (replay protection)"))?;
    if !app.assertion_jtis.first_use(
        format!("{id}\u{0}{jti}"),
        data.claims.exp + v.leeway as i64,
        now,
    ) {
        return Err(invalid_client(
            "client_assertion was already used (jti replay)",
        ));
    }
    Ok(client)
}
