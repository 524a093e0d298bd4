//! The Leash HTTP server.
//!
//! * `/v1/…` — the native JSON API (owners, workloads, workflows, runs,
//!   tokens, explain, audit), described at `/v1/openapi.json`; every call
//!   needs the operator credential as a Bearer token.
//! * `/oauth2/introspect` (RFC 7662), `/.well-known/jwks.json`, `/metrics`.
//!
//! Design choice: handlers are thin. They parse, pre-check issuance against
//! the in-memory registry, sign, and hand one domain operation to the
//! [`leash_store::Store`], which commits it durably (group commit) before the
//! response is sent. Errors map to responses by type ([`error::ApiError`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), leash_server::ServerError> {
//! let cfg = leash_server::ServerConfig::new("./.leash".into(), "127.0.0.1:8420".parse().unwrap());
//! leash_server::serve(cfg, std::future::pending()).await
//! # }
//! ```

pub mod api;
pub mod bootstrap;
pub mod error;
pub mod metrics;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use leash_core::issuance::TtlCaps;
use leash_store::{SqliteStore, Store, StoreConfig};
use leash_token::KeyRing;
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::metrics::{Metrics, RequestLabels};

/// Largest request body accepted (1 MiB).
pub const MAX_BODY: usize = 1024 * 1024;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("setup failed: {0}")]
    Setup(String),
    #[error(transparent)]
    Store(#[from] leash_store::StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("server stopped with an error: {0}")]
    Serve(std::io::Error),
}

/// Server settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// `iss` of minted tokens; defaults to `http://LISTEN`.
    pub issuer: Option<String>,
    pub ttl_caps: TtlCaps,
    /// `aud` when a mint names none.
    pub default_audience: String,
    /// Most delegation hops below a root token.
    pub max_delegation_depth: u32,
}

impl ServerConfig {
    /// Defaults for a data directory and address.
    pub fn new(data_dir: PathBuf, listen: SocketAddr) -> Self {
        ServerConfig {
            data_dir,
            listen,
            issuer: None,
            ttl_caps: TtlCaps::default(),
            default_audience: "urn:leash:any".into(),
            max_delegation_depth: leash_core::issuance::DEFAULT_MAX_DELEGATION_DEPTH,
        }
    }
}

/// Everything a handler needs.
pub struct App {
    pub store: Arc<dyn Store>,
    pub keys: KeyRing,
    pub metrics: Metrics,
    pub issuer: String,
    pub default_audience: String,
    pub max_delegation_depth: u32,
    /// Client-assertion `jti`s already used (RFC 7523 replay protection).
    pub assertion_jtis: api::clients::ReplayCache,
    operator_hash: [u8; 32],
}

impl App {
    /// Constant-time check of a presented operator credential.
    pub fn is_operator(&self, presented: &str) -> bool {
        let h = leash_token::sha256(presented.as_bytes());
        bool::from(h.ct_eq(&self.operator_hash))
    }
}

/// Shared application state.
pub type AppState = Arc<App>;

/// Open the data directory and build the application.
pub async fn build_app(cfg: &ServerConfig) -> Result<AppState, ServerError> {
    std::fs::create_dir_all(&cfg.data_dir).map_err(|e| {
        ServerError::Setup(format!("cannot create {}: {e}", cfg.data_dir.display()))
    })?;
    let keys = bootstrap::load_or_create_keys(&cfg.data_dir)?;
    let operator_hash = bootstrap::load_or_create_operator(&cfg.data_dir)?;
    let store = SqliteStore::open(
        &cfg.data_dir,
        StoreConfig {
            ttl_caps: cfg.ttl_caps,
            max_delegation_depth: cfg.max_delegation_depth,
            ..StoreConfig::default()
        },
    )
    .await?;
    let issuer = cfg
        .issuer
        .clone()
        .unwrap_or_else(|| format!("http://{}", cfg.listen));
    Ok(Arc::new(App {
        store: Arc::new(store),
        keys,
        metrics: Metrics::default(),
        issuer,
        default_audience: cfg.default_audience.clone(),
        assertion_jtis: Default::default(),
        max_delegation_depth: cfg.max_delegation_depth,
        operator_hash,
    }))
}

/// The full router.
pub fn router(app: AppState) -> Router {
    let v1 = api::v1_routes().route_layer(middleware::from_fn_with_state(
        app.clone(),
        require_operator,
    ));
    Router::new()
        .nest("/v1", v1)
        .merge(api::public_routes())
        .layer(middleware::from_fn_with_state(app.clone(), observe))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(app)
}

/// Run until `shutdown` resolves.
pub async fn serve(
    cfg: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let app = build_app(&cfg).await?;
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| ServerError::Listen {
            addr: cfg.listen,
            source,
        })?;
    let local = listener.local_addr().map_err(ServerError::Serve)?;
    tracing::info!(addr = %local, data = %cfg.data_dir.display(), kid = app.keys.active().kid(), "leash listening");
    axum::serve(listener, router(app))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(ServerError::Serve)
}

/// Bearer operator credential on every `/v1` call except the OpenAPI document.
async fn require_operator(State(app): State<AppState>, req: Request, next: Next) -> Response {
    if req.uri().path().ends_with("/openapi.json") {
        return next.run(req).await;
    }
    let ok = bearer(&req).is_some_and(|t| app.is_operator(t));
    if ok {
        next.run(req).await
    } else {
        ApiError::unauthorized().into_response()
    }
}

/// The Bearer token of a request, if any.
pub fn bearer(req: &Request) -> Option<&str> {
    let v = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

/// Latency histogram and a log line per request. Only the route template
/// is recorded, never bodies or headers, so no token reaches the logs.
async fn observe(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().as_str().to_owned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let resp = next.run(req).await;
    let secs = start.elapsed().as_secs_f64();
    let status = resp.status().as_u16();
    app.metrics
        .requests
        .get_or_create(&RequestLabels {
            method: method.clone(),
            route: route.clone(),
            status,
        })
        .observe(secs);
    tracing::debug!(%method, %route, status, ms = secs * 1000.0, "request");
    resp
}
