//! Verify Leash access tokens in a Rust resource server, offline, with
//! revocations pushed to you.
//!
//! A [`Verifier`] keeps two things current in the background: Leash's JWK
//! Set (`/.well-known/jwks.json`, refetched on an unknown `kid` and
//! periodically) and the set of revoked tokens, fed by the Server-Sent
//! Events stream `GET /v1/revocations/stream` (resumed with `Last-Event-ID`
//! after any break). [`Verifier::verify`] then needs no network call:
//! signature, expiry, issuer, audience, revocation and DPoP binding.
//!
//! Key design choice: **fail closed**. If the revocation feed has not been
//! heard from within `max_staleness` (default 5 s) — Leash is down, the
//! network is cut, or the server says it cannot vouch for its feed — every
//! verification fails with [`VerifyError::FeedStale`] (HTTP 503 from the
//! [`layer`]), because a token revoked in the meantime would otherwise be
//! accepted. Opaque `lsh_` tokens cannot be checked offline; use
//! [`Verifier::authorize`] (AuthZEN) or introspection for them.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use leash_verify::{Credentials, Verifier, VerifierConfig};
//! let mut cfg = VerifierConfig::new(
//!     "http://127.0.0.1:8420",
//!     Credentials::Client { id: "cl_…".into(), secret: "lshc_…".into() },
//! );
//! cfg.audience = Some("reports-api".into());
//! let verifier = Verifier::start(cfg)?;
//! verifier.wait_synced(std::time::Duration::from_secs(5)).await?;
//! let t = verifier.verify("eyJ…", None).await?;
//! println!("{} acting for {}", t.claims.workload, t.claims.owner);
//! # Ok(()) }
//! ```

mod authzen;
pub mod dpop;
pub mod feed;
mod jwks;
pub mod layer;
pub mod sse;

use std::sync::Arc;
use std::time::{Duration, Instant};

pub use authzen::{Decision, Resource};
pub use dpop::DpopContext;
pub use feed::{FeedConfig, RevocationFeed, RevocationRecord, Staleness};
pub use layer::{LeashLayer, LeashService, LeashToken, Rejection};
pub use leash_token::jwt::AccessClaims;

/// JWS algorithms accepted: asymmetric only (never `none`, never HS*).
pub use leash_token::dpop::ASYMMETRIC_ALGS;

/// Default bound on how long the revocation feed may go unheard.
pub const DEFAULT_MAX_STALENESS: Duration = Duration::from_secs(5);

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// How the verifier authenticates to Leash (revocation stream, AuthZEN).
#[derive(Clone)]
pub enum Credentials {
    /// The operator credential (Bearer).
    Operator(String),
    /// A resource-server OAuth client (`leash client add --introspect`),
    /// sent with HTTP Basic.
    Client { id: String, secret: String },
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Operator(_) => f.write_str("Operator(…)"),
            Credentials::Client { id, .. } => write!(f, "Client {{ id: {id:?}, secret: … }}"),
        }
    }
}

impl Credentials {
    pub(crate) fn apply(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self {
            Credentials::Operator(t) => req.bearer_auth(t),
            Credentials::Client { id, secret } => req.basic_auth(id, Some(secret)),
        }
    }
}

/// Verifier settings.
#[derive(Debug, Clone)]
pub struct VerifierConfig {
    /// Leash base URL, e.g. `http://127.0.0.1:8420`.
    pub base_url: String,
    pub credentials: Credentials,
    /// Required `iss`, when set (recommended: Leash's issuer).
    pub issuer: Option<String>,
    /// Required `aud` (one of the token's audiences), when set.
    pub audience: Option<String>,
    /// Longest the revocation feed may go unheard before every token is
    /// refused with [`VerifyError::FeedStale`].
    pub max_staleness: Duration,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
    /// The JWK Set is refetched this often, besides on unknown `kid`s.
    pub jwks_refresh: Duration,
    /// An unknown `kid` refetches the JWK Set at most this often.
    pub jwks_min_refresh: Duration,
    /// HTTP client; None: one with a 5 s connect timeout.
    pub http: Option<reqwest::Client>,
}

impl VerifierConfig {
    /// Defaults for a Leash URL and credentials.
    pub fn new(base_url: impl Into<String>, credentials: Credentials) -> Self {
        VerifierConfig {
            base_url: base_url.into(),
            credentials,
            issuer: None,
            audience: None,
            max_staleness: DEFAULT_MAX_STALENESS,
            leeway: Duration::from_secs(10),
            jwks_refresh: Duration::from_secs(300),
            jwks_min_refresh: Duration::from_secs(10),
            http: None,
        }
    }
}

/// Why a verifier could not start.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("the Leash URL must start with http:// or https://, not `{0}`")]
    BadUrl(String),
    #[error("cannot build the HTTP client: {0}")]
    Http(String),
    #[error("the verifier needs a Tokio runtime (call it from async code)")]
    NoRuntime,
}

/// Why a token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("revocation status unknown, so no token is accepted: {0}")]
    FeedStale(String),
    #[error(
        "this is an opaque Leash token; it cannot be verified offline — use the remote check (Verifier::authorize / AuthZEN, or /oauth2/introspect)"
    )]
    Opaque,
    #[error("the token is malformed: {0}")]
    Malformed(String),
    #[error("the token was not signed by a current Leash key: {0}")]
    UnknownKey(String),
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token expired")]
    Expired,
    #[error("the token is not valid yet (nbf)")]
    NotYetValid,
    #[error("the token was not issued by the expected issuer")]
    WrongIssuer,
    #[error("the token is not meant for this audience")]
    WrongAudience,
    #[error("the token was revoked: {reason}")]
    Revoked { reason: String },
    #[error("the token is DPoP-bound: {0}")]
    Dpop(String),
}

/// A token that passed every check.
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    pub claims: AccessClaims,
    /// The token's scopes (`claims.scope` split on spaces).
    pub scopes: Vec<String>,
}

impl VerifiedToken {
    /// Does one of the token's scopes cover `wanted` (`TYPE[:ID]:ACTION`;
    /// `repo:acme/*:write` covers `repo:acme/api:write`)? A malformed scope
    /// covers nothing.
    pub fn has_scope(&self, wanted: &str) -> bool {
        let Ok(w) = wanted.parse::<leash_core::scope::Scope>() else {
            return false;
        };
        self.scopes.iter().any(|s| {
            s.parse::<leash_core::scope::Scope>()
                .is_ok_and(|mine| mine.covers(&w))
        })
    }

    /// 403 `insufficient_scope` unless the token has `wanted`.
    pub fn require_scope(&self, wanted: &str) -> Result<(), Rejection> {
        if self.has_scope(wanted) {
            Ok(())
        } else {
            Err(Rejection::InsufficientScope(wanted.to_owned()))
        }
    }
}

pub(crate) struct Inner {
    cfg: VerifierConfig,
    http: reqwest::Client,
    jwks: jwks::JwksCache,
    feed: RevocationFeed,
    replay: dpop::ReplayCache,
    refresher: tokio::task::JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.refresher.abort();
    }
}

/// Offline verification of Leash access tokens. Cheap to clone.
#[derive(Clone)]
pub struct Verifier(Arc<Inner>);

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("base_url", &self.0.cfg.base_url)
            .field("revoked", &self.revoked_count())
            .field("head", &self.head())
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// Start the JWK Set and revocation feed tasks (needs a Tokio runtime).
    /// Returns at once; use [`Verifier::wait_synced`] to wait for the feed.
    pub fn start(cfg: VerifierConfig) -> Result<Self, ConfigError> {
        if !(cfg.base_url.starts_with("http://") || cfg.base_url.starts_with("https://")) {
            return Err(ConfigError::BadUrl(cfg.base_url.chars().take(80).collect()));
        }
        tokio::runtime::Handle::try_current().map_err(|_| ConfigError::NoRuntime)?;
        let http = match &cfg.http {
            Some(h) => h.clone(),
            None => reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(5))
                .build()
                .map_err(|e| ConfigError::Http(e.to_string()))?,
        };
        let base = cfg.base_url.trim_end_matches('/').to_owned();
        let feed = RevocationFeed::start(FeedConfig {
            base_url: base.clone(),
            credentials: cfg.credentials.clone(),
            max_staleness: cfg.max_staleness,
            http: http.clone(),
        });
        let jwks = jwks::JwksCache::new(&base, http.clone(), cfg.jwks_min_refresh);
        let inner = Arc::new_cyclic(|weak: &std::sync::Weak<Inner>| {
            let weak = weak.clone();
            let every = cfg.jwks_refresh;
            let refresher = tokio::spawn(async move {
                loop {
                    let Some(inner) = weak.upgrade() else { return };
                    let pause = match inner.jwks.refresh().await {
                        Ok(()) => every,
                        Err(e) => {
                            tracing::warn!(error = %e, "could not fetch the Leash JWK Set");
                            // keep trying at the unknown-kid rate until it works
                            inner.cfg.jwks_min_refresh.min(every)
                        }
                    };
                    drop(inner);
                    tokio::time::sleep(pause).await;
                }
            });
            Inner {
                cfg,
                http,
                jwks,
                feed,
                replay: dpop::ReplayCache::default(),
                refresher,
            }
        });
        Ok(Verifier(inner))
    }

    /// Wait until the revocation feed has synced, at most `timeout`.
    pub async fn wait_synced(&self, timeout: Duration) -> Result<(), VerifyError> {
        self.0
            .feed
            .wait_synced(timeout)
            .await
            .map_err(|s| VerifyError::FeedStale(s.to_string()))
    }

    /// The revocation feed this verifier reads.
    pub fn feed(&self) -> &RevocationFeed {
        &self.0.feed
    }

    /// When the revocation feed was last heard from (None: never synced).
    pub fn last_heard(&self) -> Option<Instant> {
        self.0.feed.last_heard()
    }

    /// Revoked, unexpired tokens held.
    pub fn revoked_count(&self) -> usize {
        self.0.feed.revoked_count()
    }

    /// The last head sequence number the feed announced.
    pub fn head(&self) -> Option<i64> {
        self.0.feed.head()
    }

    /// Signing keys held from Leash's JWK Set.
    pub fn key_count(&self) -> usize {
        self.0.jwks.len()
    }

    /// The configured Leash base URL.
    pub fn base_url(&self) -> &str {
        &self.0.cfg.base_url
    }

    /// Verify an access token (and its DPoP proof, if it is DPoP-bound).
    pub async fn verify(
        &self,
        token: &str,
        dpop: Option<&DpopContext>,
    ) -> Result<VerifiedToken, VerifyError> {
        // fail closed before anything else: no guessing about revocation
        self.0
            .feed
            .check_fresh()
            .map_err(|s| VerifyError::FeedStale(s.to_string()))?;
        let token = token.trim();
        if token.starts_with("lsh_") {
            return Err(VerifyError::Opaque);
        }
        if token.len() > leash_token::jwt::MAX_JWT_LEN {
            return Err(VerifyError::Malformed("longer than 16 KiB".into()));
        }
        let header = jsonwebtoken::decode_header(token).map_err(|e| {
            if leash_token::jwt::looks_like_jwt(token) {
                VerifyError::Malformed(format!("the JWT header is unreadable: {e}"))
            } else {
                VerifyError::Malformed("it is neither a JWT nor an opaque lsh_ token".into())
            }
        })?;
        if !header
            .typ
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case("at+jwt"))
        {
            return Err(VerifyError::Malformed(
                "the JWT is not an access token (typ is not at+jwt)".into(),
            ));
        }
        if !ASYMMETRIC_ALGS.contains(&header.alg) {
            return Err(VerifyError::Malformed(format!(
                "alg {:?} is not accepted (asymmetric algorithms only)",
                header.alg
            )));
        }
        let kid = header
            .kid
            .as_deref()
            .ok_or_else(|| VerifyError::Malformed("the JWT names no kid".into()))?;
        let jwk = self.0.jwks.key(kid).await.ok_or_else(|| {
            VerifyError::UnknownKey(format!(
                "no key `{}` in {}/.well-known/jwks.json",
                kid.chars().take(64).collect::<String>(),
                self.0.cfg.base_url
            ))
        })?;
        if jwk
            .common
            .key_algorithm
            .is_some_and(|a| a.to_string() != format!("{:?}", header.alg))
        {
            return Err(VerifyError::Malformed(format!(
                "alg {:?} does not match the algorithm of key `{kid}`",
                header.alg
            )));
        }
        let key = jsonwebtoken::DecodingKey::from_jwk(&jwk)
            .map_err(|e| VerifyError::UnknownKey(format!("key `{kid}` is unusable: {e}")))?;
        let mut v = jsonwebtoken::Validation::new(header.alg);
        v.leeway = self.0.cfg.leeway.as_secs();
        v.validate_nbf = true;
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        match &self.0.cfg.audience {
            Some(a) => v.set_audience(&[a]),
            None => v.validate_aud = false,
        }
        if let Some(iss) = &self.0.cfg.issuer {
            v.set_issuer(&[iss]);
        }
        use jsonwebtoken::errors::ErrorKind;
        let claims = jsonwebtoken::decode::<AccessClaims>(token, &key, &v)
            .map_err(|e| match e.kind() {
                ErrorKind::InvalidSignature => VerifyError::BadSignature,
                ErrorKind::ExpiredSignature => VerifyError::Expired,
                ErrorKind::ImmatureSignature => VerifyError::NotYetValid,
                ErrorKind::InvalidAudience => VerifyError::WrongAudience,
                ErrorKind::InvalidIssuer => VerifyError::WrongIssuer,
                ErrorKind::InvalidAlgorithm => {
                    VerifyError::Malformed(format!("alg {:?} does not fit key `{kid}`", header.alg))
                }
                _ => VerifyError::Malformed(format!("the claims were rejected: {e}")),
            })?
            .claims;
        if let Some(r) = self.0.feed.revocation(&claims.jti) {
            return Err(VerifyError::Revoked { reason: r.reason });
        }
        match (&claims.cnf, dpop) {
            (Some(cnf), Some(ctx)) => {
                dpop::verify_proof(ctx, token, &cnf.jkt, &self.0.replay, now_ms() / 1000)
                    .map_err(VerifyError::Dpop)?;
            }
            (Some(_), None) => {
                return Err(VerifyError::Dpop(
                    "present it with `Authorization: DPoP <token>` and a `DPoP` proof header"
                        .into(),
                ));
            }
            (None, Some(_)) => {
                return Err(VerifyError::Malformed(
                    "the token is not DPoP-bound; present it as `Authorization: Bearer`".into(),
                ));
            }
            (None, None) => {}
        }
        let scopes = claims.scope.split_whitespace().map(str::to_owned).collect();
        Ok(VerifiedToken { claims, scopes })
    }

    /// Ask Leash for a request-time decision (AuthZEN 1.0
    /// `POST /access/v1/evaluation`): may the workload presenting `token`
    /// do `action` on `resource`? Works for opaque tokens too, and applies
    /// the Cedar policies and workload binding that only Leash can.
    pub async fn authorize(
        &self,
        token: &str,
        workload: &str,
        action: &str,
        resource: &Resource,
    ) -> Result<Decision, authzen::AuthorizeError> {
        authzen::evaluate(
            &self.0.http,
            &self.0.cfg.base_url,
            &self.0.cfg.credentials,
            token,
            workload,
            action,
            resource,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(scope: &str) -> VerifiedToken {
        VerifiedToken {
            claims: serde_json::from_value(serde_json::json!({"iss": "i", "sub": "s", "aud": "a",
                "exp": 1, "iat": 1, "nbf": 1, "jti": "tok_1", "client_id": "c", "scope": scope,
                "owner": "alice", "workload": "bot"}))
            .unwrap(),
            scopes: scope.split_whitespace().map(str::to_owned).collect(),
        }
    }

    #[test]
    fn scopes_cover_by_type_id_and_action() {
        let t = token("reports:read repo:acme/*:write");
        assert!(t.has_scope("reports:read"));
        assert!(!t.has_scope("reports:write"));
        assert!(t.has_scope("repo:acme/api:write"));
        assert!(!t.has_scope("repo:other/api:write"));
        assert!(!t.has_scope("not a scope"));
        assert!(matches!(
            t.require_scope("reports:write"),
            Err(Rejection::InsufficientScope(s)) if s == "reports:write"
        ));
    }

    #[tokio::test]
    async fn a_verifier_that_never_synced_refuses_every_token() {
        // nothing listens on port 9: the feed never syncs
        let v = Verifier::start(VerifierConfig::new(
            "http://127.0.0.1:9",
            Credentials::Operator("x".into()),
        ))
        .unwrap();
        let err = v
            .verify("eyJhbGciOiJFZERTQSJ9.e30.sig", None)
            .await
            .unwrap_err();
        assert!(matches!(err, VerifyError::FeedStale(_)), "{err}");
        assert!(err.to_string().contains("has not synced"), "{err}");
        assert_eq!(v.last_heard(), None);
        assert!(v.wait_synced(Duration::from_millis(50)).await.is_err());
    }

    #[test]
    fn bad_urls_and_missing_runtimes_are_refused() {
        let cfg = VerifierConfig::new("ftp://x", Credentials::Operator("x".into()));
        assert!(matches!(Verifier::start(cfg), Err(ConfigError::BadUrl(_))));
        let cfg = VerifierConfig::new("http://x", Credentials::Operator("x".into()));
        assert!(matches!(Verifier::start(cfg), Err(ConfigError::NoRuntime)));
        let dbg = format!(
            "{:?}",
            Credentials::Client {
                id: "cl_1".into(),
                secret: "lshc_secret".into()
            }
        );
        assert!(!dbg.contains("lshc_secret"), "{dbg}");
    }
}
