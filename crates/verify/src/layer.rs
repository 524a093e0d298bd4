//! Protecting an axum (or any tower) service: [`LeashLayer`] verifies the
//! request's token and puts the [`VerifiedToken`] into the request
//! extensions; [`LeashToken`] extracts it in a handler.
//!
//! Tokens come as `Authorization: Bearer <token>`, or — for DPoP-bound
//! tokens — `Authorization: DPoP <token>` with a `DPoP: <proof>` header.
//! Failures answer RFC 6750 §3: 401 with `WWW-Authenticate: Bearer
//! error="invalid_token", error_description="…"` (`DPoP …` for DPoP
//! tokens), 403 `insufficient_scope` for a missing scope, and 503 with
//! `Retry-After` while the revocation feed is stale (fail closed).
//!
//! ```no_run
//! # fn demo(verifier: leash_verify::Verifier) {
//! use axum::{Router, routing::get};
//! use leash_verify::{LeashLayer, LeashToken};
//! async fn reports(LeashToken(t): LeashToken) -> String {
//!     format!("reports for {}", t.claims.workload)
//! }
//! let app: Router = Router::new()
//!     .route("/reports", get(reports))
//!     .layer(LeashLayer::new(verifier).require_scope("reports:read"));
//! # }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, Request, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use crate::{DpopContext, VerifiedToken, Verifier, VerifyError};

/// Why a request was turned away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// No token at all (401, a bare challenge).
    Missing,
    /// The token (or its DPoP proof) was refused (401).
    InvalidToken {
        description: String,
        /// Answer with a `DPoP` challenge (`invalid_dpop_proof` when `proof`).
        dpop: bool,
        proof: bool,
    },
    /// The token lacks this scope (403).
    InsufficientScope(String),
    /// Revocation status is unknown (503, `Retry-After`).
    Unavailable(String),
    /// Neither [`LeashLayer`] nor a [`Verifier`] extension is installed (500).
    Misconfigured,
}

impl From<VerifyError> for Rejection {
    fn from(e: VerifyError) -> Self {
        match e {
            VerifyError::FeedStale(_) => Rejection::Unavailable(e.to_string()),
            VerifyError::Dpop(_) => Rejection::InvalidToken {
                description: e.to_string(),
                dpop: true,
                proof: false,
            },
            other => Rejection::InvalidToken {
                description: other.to_string(),
                dpop: false,
                proof: false,
            },
        }
    }
}

/// RFC 6750 §3: `error_description` is visible ASCII without `"` or `\`.
fn quoted(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '"' | '\\' => '\'',
            c if c == ' ' || c.is_ascii_graphic() => c,
            _ => '?',
        })
        .take(300)
        .collect()
}

/// The `algs` a DPoP challenge lists.
const DPOP_ALGS: &str = "ES256 ES384 RS256 PS256 EdDSA";

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let (status, challenge, error, description) = match &self {
            Rejection::Missing => (
                StatusCode::UNAUTHORIZED,
                Some(format!("Bearer realm=\"leash\", DPoP realm=\"leash\", algs=\"{DPOP_ALGS}\"")),
                "invalid_request",
                "send the access token as `Authorization: Bearer <token>` (or `DPoP <token>` with a DPoP proof)".to_owned(),
            ),
            Rejection::InvalidToken {
                description,
                dpop,
                proof,
            } => {
                let error = if *proof { "invalid_dpop_proof" } else { "invalid_token" };
                let scheme = if *dpop {
                    format!("DPoP realm=\"leash\", algs=\"{DPOP_ALGS}\"")
                } else {
                    "Bearer realm=\"leash\"".to_owned()
                };
                (
                    StatusCode::UNAUTHORIZED,
                    Some(format!(
                        "{scheme}, error=\"{error}\", error_description=\"{}\"",
                        quoted(description)
                    )),
                    error,
                    description.clone(),
                )
            }
            Rejection::InsufficientScope(scope) => (
                StatusCode::FORBIDDEN,
                Some(format!(
                    "Bearer realm=\"leash\", error=\"insufficient_scope\", scope=\"{}\"",
                    quoted(scope)
                )),
                "insufficient_scope",
                format!("the token does not grant `{scope}`"),
            ),
            Rejection::Unavailable(why) => (
                StatusCode::SERVICE_UNAVAILABLE,
                None,
                "temporarily_unavailable",
                why.clone(),
            ),
            Rejection::Misconfigured => (
                StatusCode::INTERNAL_SERVER_ERROR,
                None,
                "server_error",
                "token verification is not set up: add LeashLayer, or an Extension(Verifier)".to_owned(),
            ),
        };
        let body = serde_json::json!({"error": error, "error_description": description});
        let mut resp = (status, axum::Json(body)).into_response();
        if let Some(c) = challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, c);
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        resp
    }
}

/// The token and DPoP proof of a request.
fn presented(
    headers: &HeaderMap,
    method: &Method,
    uri: &Uri,
    origin: Option<&str>,
) -> Result<(String, Option<DpopContext>), Rejection> {
    let mut auth = headers.get_all(header::AUTHORIZATION).iter();
    let (Some(value), None) = (auth.next(), auth.next()) else {
        return Err(if headers.contains_key(header::AUTHORIZATION) {
            invalid("send exactly one Authorization header")
        } else {
            Rejection::Missing
        });
    };
    let value = value
        .to_str()
        .map_err(|_| invalid("the Authorization header is not text"))?;
    let Some((scheme, token)) = value.split_once(' ') else {
        return Err(invalid(
            "the Authorization header is `Bearer <token>` or `DPoP <token>`",
        ));
    };
    let token = token.trim().to_owned();
    if token.is_empty() {
        return Err(Rejection::Missing);
    }
    if scheme.eq_ignore_ascii_case("bearer") {
        return Ok((token, None));
    }
    if !scheme.eq_ignore_ascii_case("dpop") {
        return Err(invalid("the Authorization scheme must be Bearer or DPoP"));
    }
    let mut proofs = headers.get_all("dpop").iter();
    let (Some(proof), None) = (proofs.next(), proofs.next()) else {
        return Err(Rejection::InvalidToken {
            description: "the DPoP scheme needs exactly one `DPoP` proof header".into(),
            dpop: true,
            proof: true,
        });
    };
    let proof = proof.to_str().map_err(|_| Rejection::InvalidToken {
        description: "the DPoP header is not text".into(),
        dpop: true,
        proof: true,
    })?;
    let origin = match origin {
        Some(o) => o.trim_end_matches('/').to_owned(),
        None => {
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .or_else(|| uri.authority().map(|a| a.as_str()))
                .ok_or_else(|| {
                    invalid("the request names no Host, so its DPoP htu cannot be checked")
                })?;
            format!("{}://{host}", uri.scheme_str().unwrap_or("http"))
        }
    };
    Ok((
        token,
        Some(DpopContext {
            proof: proof.to_owned(),
            method: method.as_str().to_owned(),
            url: format!("{origin}{}", uri.path()),
        }),
    ))
}

fn invalid(why: &str) -> Rejection {
    Rejection::InvalidToken {
        description: why.to_owned(),
        dpop: false,
        proof: false,
    }
}

/// Verify the request's token with `verifier`.
pub async fn authenticate(
    verifier: &Verifier,
    headers: &HeaderMap,
    method: &Method,
    uri: &Uri,
    origin: Option<&str>,
) -> Result<VerifiedToken, Rejection> {
    let (token, dpop) = presented(headers, method, uri, origin)?;
    let had_proof = dpop.is_some();
    verifier
        .verify(&token, dpop.as_ref())
        .await
        .map_err(|e| match (e, had_proof) {
            (VerifyError::Dpop(why), true) => Rejection::InvalidToken {
                description: format!("the DPoP proof was refused: {why}"),
                dpop: true,
                proof: true,
            },
            (e, _) => e.into(),
        })
}

/// Verifies every request's token; see the [module docs](self).
#[derive(Clone)]
pub struct LeashLayer {
    verifier: Verifier,
    scopes: Arc<[String]>,
    origin: Option<Arc<str>>,
}

impl LeashLayer {
    pub fn new(verifier: Verifier) -> Self {
        LeashLayer {
            verifier,
            scopes: Arc::from(Vec::new()),
            origin: None,
        }
    }

    /// Also require this scope (403 `insufficient_scope` without it).
    pub fn require_scope(mut self, scope: impl Into<String>) -> Self {
        let mut v = self.scopes.to_vec();
        v.push(scope.into());
        self.scopes = v.into();
        self
    }

    /// The origin clients address this service by (e.g.
    /// `https://api.example.com`), for DPoP `htu`. Default: `http://` plus
    /// the request's `Host` header.
    pub fn public_origin(mut self, origin: impl Into<String>) -> Self {
        self.origin = Some(Arc::from(origin.into()));
        self
    }
}

impl<S> tower::Layer<S> for LeashLayer {
    type Service = LeashService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        LeashService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`LeashLayer`] wraps around yours.
#[derive(Clone)]
pub struct LeashService<S> {
    inner: S,
    layer: LeashLayer,
}

impl<S, B> tower::Service<Request<B>> for LeashService<S>
where
    S: tower::Service<Request<B>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        // the ready clone serves this call (tower's clone-and-swap idiom)
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        Box::pin(async move {
            let checked = authenticate(
                &layer.verifier,
                req.headers(),
                req.method(),
                req.uri(),
                layer.origin.as_deref(),
            )
            .await
            .and_then(|t| {
                for s in layer.scopes.iter() {
                    t.require_scope(s)?;
                }
                Ok(t)
            });
            match checked {
                Ok(t) => {
                    req.extensions_mut().insert(t);
                    inner.call(req).await
                }
                Err(rejection) => Ok(rejection.into_response()),
            }
        })
    }
}

/// The verified token of a request: put there by [`LeashLayer`], or
/// verified here with a [`Verifier`] found in the request extensions
/// (`.layer(Extension(verifier))`).
#[derive(Debug, Clone)]
pub struct LeashToken(pub VerifiedToken);

impl<S: Send + Sync> FromRequestParts<S> for LeashToken {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        if let Some(t) = parts.extensions.get::<VerifiedToken>() {
            return Ok(LeashToken(t.clone()));
        }
        let verifier = parts
            .extensions
            .get::<Verifier>()
            .cloned()
            .ok_or(Rejection::Misconfigured)?;
        let t = authenticate(&verifier, &parts.headers, &parts.method, &parts.uri, None).await?;
        parts.extensions.insert(t.clone());
        Ok(LeashToken(t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header_of(r: Rejection) -> (StatusCode, Option<String>, Option<String>) {
        let resp = r.into_response();
        let h = |n: header::HeaderName| {
            resp.headers()
                .get(n)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        (
            resp.status(),
            h(header::WWW_AUTHENTICATE),
            h(header::RETRY_AFTER),
        )
    }

    #[test]
    fn rejections_follow_rfc_6750() {
        let (s, c, _) = header_of(
            VerifyError::Revoked {
                reason: "leaked \"here\"".into(),
            }
            .into(),
        );
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        let c = c.unwrap();
        assert!(
            c.starts_with("Bearer realm=\"leash\", error=\"invalid_token\""),
            "{c}"
        );
        assert!(
            c.contains("error_description=\"the token was revoked: leaked 'here'\""),
            "{c}"
        );
        let (s, c, _) = header_of(Rejection::InsufficientScope("reports:write".into()));
        assert_eq!(s, StatusCode::FORBIDDEN);
        assert!(
            c.unwrap()
                .contains("error=\"insufficient_scope\", scope=\"reports:write\"")
        );
        let (s, c, r) = header_of(VerifyError::FeedStale("down".into()).into());
        assert_eq!(
            (s, c, r.as_deref()),
            (StatusCode::SERVICE_UNAVAILABLE, None, Some("1"))
        );
        let (s, c, _) = header_of(Rejection::Missing);
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        assert!(!c.unwrap().contains("error="));
    }

    #[test]
    fn the_dpop_scheme_needs_a_proof_and_builds_the_htu() {
        let uri: Uri = "/reports?x=1".parse().unwrap();
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("DPoP tkn"));
        h.insert(header::HOST, HeaderValue::from_static("api.local:8080"));
        let err = presented(&h, &Method::GET, &uri, None).unwrap_err();
        assert!(
            matches!(err, Rejection::InvalidToken { proof: true, .. }),
            "{err:?}"
        );
        h.insert("dpop", HeaderValue::from_static("proof"));
        let (t, ctx) = presented(&h, &Method::GET, &uri, None).unwrap();
        assert_eq!(t, "tkn");
        assert_eq!(ctx.unwrap().url, "http://api.local:8080/reports");
        let (_, ctx) = presented(&h, &Method::GET, &uri, Some("https://api.example.com/")).unwrap();
        assert_eq!(ctx.unwrap().url, "https://api.example.com/reports");
        let none = presented(&HeaderMap::new(), &Method::GET, &uri, None).unwrap_err();
        assert_eq!(none, Rejection::Missing);
        let mut basic = HeaderMap::new();
        basic.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert!(matches!(
            presented(&basic, &Method::GET, &uri, None),
            Err(Rejection::InvalidToken { .. })
        ));
    }
}
