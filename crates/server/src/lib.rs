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
pub mod authz;
pub mod bootstrap;
pub mod credentials;
pub mod error;
pub mod fanout;
pub mod metrics;
pub mod notify;
pub mod review;
pub mod ssf;

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
use leash_store::{PgStore, SqliteStore, Store, StoreConfig};
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
    /// Signing keys, operator credential, policies; and the SQLite
    /// database unless `database` names another.
    pub data_dir: PathBuf,
    /// A `postgres://` URL: the registry lives in that PostgreSQL database
    /// instead of SQLite in the data directory.
    pub database: Option<String>,
    pub listen: SocketAddr,
    /// `iss` of minted tokens; defaults to `http://LISTEN`.
    pub issuer: Option<String>,
    pub ttl_caps: TtlCaps,
    /// `aud` when a mint names none.
    pub default_audience: String,
    /// Most delegation hops below a root token.
    pub max_delegation_depth: u32,
    /// An issuer's JWKS URL is re-fetched for an unknown `kid` at most this often.
    pub jwks_min_refresh: std::time::Duration,
    /// Exposure feeds, notifications and connectors.
    pub exposure: ExposureSettings,
    /// Request-time authorization, approvals and break-glass.
    pub authz: AuthzSettings,
    /// Review rules and report thresholds.
    pub review: ReviewConfig,
    /// Downstream PostgreSQL credentials (`--credential-database`); None:
    /// `postgres` tokens are refused.
    pub credentials: Option<credentials::CredentialSettings>,
    /// Seals the signing keys in the database, shared by every replica on
    /// it (required with `database`; 32 bytes, raw, hex or base64).
    pub key_encryption_key: Option<SecretBytes>,
    /// Replicas: how far behind the shared database this one may fall
    /// before it stops answering decisions it cannot vouch for.
    pub max_staleness: std::time::Duration,
    /// NATS JetStream fan-out of revocations between replicas and to
    /// in-cluster consumers; None: PostgreSQL LISTEN/NOTIFY alone.
    pub nats: Option<fanout::NatsSettings>,
    /// SSF transmitter delivery (retries, leases, long polls).
    pub ssf: ssf::SsfSettings,
}

/// Review rules and report thresholds.
#[derive(Debug, Clone, Default)]
pub struct ReviewConfig {
    pub settings: leash_store::ReviewSettings,
    pub rules: review::RuleSettings,
    /// Most write-capable share of live tokens the report accepts (default 0.2).
    pub write_max_ratio: Option<f64>,
    /// Ended runs a removability verdict needs (default 3).
    pub removal_min_runs: Option<u32>,
}

/// How decisions, approvals and break-glass behave.
#[derive(Debug, Clone)]
pub struct AuthzSettings {
    /// Operator policies (`*.cedar`) overlaid on the defaults; default `DATA/policies`.
    pub policy_dir: Option<PathBuf>,
    /// How often the policy directory is checked for changes.
    pub policy_poll: std::time::Duration,
    pub violations: authz::ViolationResponses,
    pub usage: authz::usage::UsageSettings,
    /// Write-capable mints wait for the owner's approval (HTTP 202).
    pub write_approval: bool,
    /// Most live write-capable tokens per workload.
    pub write_budget: Option<u32>,
    /// Break-glass grants need a second person's approval.
    pub break_glass_approval: bool,
}

impl Default for AuthzSettings {
    fn default() -> Self {
        Self {
            policy_dir: None,
            policy_poll: std::time::Duration::from_secs(1),
            violations: authz::ViolationResponses::default(),
            usage: authz::usage::UsageSettings::default(),
            write_approval: true,
            write_budget: None,
            break_glass_approval: false,
        }
    }
}

/// Secret bytes that never print.
#[derive(Clone, Default)]
pub struct SecretBytes(pub Vec<u8>);

impl std::fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBytes(…)")
    }
}

/// How exposures reach the server and what it does after one.
#[derive(Debug, Clone, Default)]
pub struct ExposureSettings {
    /// Slack app signing secret: Slack Events API requests are verified with it.
    pub slack_signing_secret: Option<SecretBytes>,
    /// Jira webhook secret: `X-Hub-Signature: sha256=…` is verified with it.
    pub jira_webhook_secret: Option<SecretBytes>,
    /// GitHub secret scanning public keys (partner alerts are verified with them).
    pub github_keys: Vec<api::exposures::GithubKey>,
    /// Owner notifications go here (a signed JSON POST per exposure).
    pub notify_url: Option<String>,
    /// Signs notifications and connector calls (`Leash-Signature`).
    pub webhook_secret: Option<SecretBytes>,
    /// Revocation connectors by name: generic webhook URLs.
    pub connectors: Vec<(String, String)>,
    /// Extra scanner rules (gitleaks TOML), beside the built-in ones.
    pub extra_rules: Vec<leash_scan::Rule>,
}

impl ServerConfig {
    /// Defaults for a data directory and address.
    pub fn new(data_dir: PathBuf, listen: SocketAddr) -> Self {
        ServerConfig {
            data_dir,
            database: None,
            listen,
            issuer: None,
            ttl_caps: TtlCaps::default(),
            default_audience: "urn:leash:any".into(),
            max_delegation_depth: leash_core::issuance::DEFAULT_MAX_DELEGATION_DEPTH,
            jwks_min_refresh: api::federation::DEFAULT_MIN_REFRESH,
            exposure: ExposureSettings::default(),
            authz: AuthzSettings::default(),
            review: ReviewConfig::default(),
            credentials: None,
            key_encryption_key: None,
            max_staleness: DEFAULT_MAX_STALENESS,
            nats: None,
            ssf: ssf::SsfSettings::default(),
        }
    }
}

/// How far behind its shared database a replica may fall by default.
pub const DEFAULT_MAX_STALENESS: std::time::Duration = std::time::Duration::from_secs(3);

/// Everything a handler needs.
pub struct App {
    pub store: Arc<dyn Store>,
    keys: std::sync::RwLock<Arc<KeyRing>>,
    key_info: std::sync::RwLock<Vec<bootstrap::KeyInfo>>,
    key_source: bootstrap::KeySource,
    max_ttl: i64,
    pub metrics: Metrics,
    pub issuer: String,
    pub default_audience: String,
    pub max_delegation_depth: u32,
    /// DPoP proof `jti`s already used (RFC 9449 replay protection).
    pub dpop_jtis: api::clients::ReplayCache,
    /// JWK Sets of trusted external issuers.
    pub jwks_cache: api::federation::JwksCache,
    /// Outbound HTTP (JWKS fetches).
    pub http: reqwest::Client,
    /// Client-assertion `jti`s already used (RFC 7523 replay protection).
    pub assertion_jtis: api::clients::ReplayCache,
    /// Exposure feeds and what acts on them.
    pub exposures: api::exposures::ExposureConfig,
    /// The request-time decision point.
    pub authz: authz::Authorizer,
    /// Approvals, write budget and break-glass rules.
    pub authz_settings: AuthzSettings,
    /// Usage correlation, review findings and removability canaries.
    pub review: review::Review,
    pub review_config: ReviewConfig,
    operator_hash: [u8; 32],
    /// The credential database for `postgres` tokens, when configured.
    pub credentials: Option<Arc<credentials::Credentials>>,
    max_staleness: std::time::Duration,
    /// The NATS fan-out, when configured.
    pub fanout: Option<Arc<fanout::Fanout>>,
    /// The SSF transmitter (stream delivery state and its HTTP client).
    pub ssf: ssf::Transmitter,
    /// Open `/v1/revocations/stream` connections; a permit per stream.
    pub revocation_streams: Arc<tokio::sync::Semaphore>,
}

impl App {
    /// The signing key ring in force (the newest key signs).
    pub fn keys(&self) -> Arc<KeyRing> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The published keys, newest first.
    pub fn key_info(&self) -> Vec<bootstrap::KeyInfo> {
        self.key_info
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Re-read the signing keys (the key directory, or the database's
    /// sealed keys), dropping keys whose retirement time passed.
    pub async fn reload_keys(&self) -> Result<(), ServerError> {
        let (ring, info) = self
            .key_source
            .load(&*self.store, self.max_ttl, leash_store::now_ms())
            .await?;
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(ring);
        *self.key_info.write().unwrap_or_else(|e| e.into_inner()) = info;
        Ok(())
    }

    /// Add a signing key that signs from now on; the previous one stays in
    /// the JWKS until every token it signed has expired. Audited. With keys
    /// in the database, the other replicas load it when they read the
    /// `key.rotated` event.
    pub async fn rotate_keys(&self, actor: &str) -> Result<String, ServerError> {
        let old = self.keys().active().kid().to_owned();
        let kid = match &self.key_source {
            bootstrap::KeySource::Dir(dir) => {
                let kid = bootstrap::create_key(dir)?;
                self.store
                    .record_event(
                        "key.rotated",
                        &format!("key:{kid}"),
                        serde_json::json!({"previous": old, "retire_previous_after_secs": self.max_ttl}),
                        actor,
                    )
                    .await?;
                kid
            }
            bootstrap::KeySource::Database(kek) => {
                bootstrap::rotate_database_key(&*self.store, kek, actor).await?
            }
        };
        self.reload_keys().await?;
        Ok(kid)
    }

    /// Whether this server can vouch for its view of revocations and the
    /// registry now: always on its own SQLite database; on a shared one only
    /// while it has caught up with the database within the staleness bound
    /// and, with NATS configured, while its fan-out consumer is current.
    /// Decisions it cannot vouch for are refused (fail closed) with this
    /// reason, and `/health` reports it.
    pub fn vouch(&self) -> Result<(), String> {
        let feed = self.store.commits();
        if let Some(synced_at) = feed.synced_at() {
            let bound = i64::try_from(self.max_staleness.as_millis()).unwrap_or(i64::MAX);
            let behind = leash_store::now_ms().saturating_sub(synced_at);
            if synced_at == 0 || behind > bound {
                let why = feed
                    .sync_error()
                    .unwrap_or_else(|| "no catch-up finished in time".into());
                return Err(format!(
                    "this replica has not caught up with the shared database for {behind} ms (bound {bound} ms): {why}"
                ));
            }
        }
        if let Some(f) = &self.fanout {
            f.vouch()?;
        }
        Ok(())
    }

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
    // a huge configured cap must not wrap to a negative retirement delay
    let max_ttl = i64::try_from(
        cfg.ttl_caps
            .dev
            .max(cfg.ttl_caps.stage)
            .max(cfg.ttl_caps.prod),
    )
    .unwrap_or(i64::MAX);
    let operator_hash = bootstrap::load_or_create_operator(&cfg.data_dir)?;
    let store_cfg = StoreConfig {
        ttl_caps: cfg.ttl_caps,
        max_delegation_depth: cfg.max_delegation_depth,
        ..StoreConfig::default()
    };
    let kek = cfg
        .key_encryption_key
        .as_ref()
        .map(|k| bootstrap::Kek::parse(&k.0))
        .transpose()?;
    let store: Arc<dyn Store> = match &cfg.database {
        Some(url) => {
            if !url.starts_with("postgres://") && !url.starts_with("postgresql://") {
                return Err(ServerError::Setup(
                    "--database takes a postgres:// URL (leave it out for SQLite in the data directory)".into(),
                ));
            }
            if kek.is_none() {
                return Err(ServerError::Setup(
                    "on PostgreSQL the replicas share their signing keys through the database, sealed under a key-encryption key: give the same one to every replica with --key-encryption-key-file FILE or LEASH_KEY_ENCRYPTION_KEY (32 bytes as base64, e.g. `openssl rand -base64 32`)".into(),
                ));
            }
            Arc::new(PgStore::open(url, store_cfg).await?)
        }
        None => Arc::new(SqliteStore::open(&cfg.data_dir, store_cfg).await?),
    };
    let key_source = match kek {
        Some(kek) => {
            bootstrap::seed_database_keys(&*store, &kek, &cfg.data_dir).await?;
            bootstrap::KeySource::Database(kek)
        }
        None => bootstrap::KeySource::Dir(cfg.data_dir.clone()),
    };
    let (keys, key_info) = key_source
        .load(&*store, max_ttl, leash_store::now_ms())
        .await?;
    let issuer = cfg
        .issuer
        .clone()
        .unwrap_or_else(|| format!("http://{}", cfg.listen));
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::limited(3))
        .build()
        .map_err(|e| ServerError::Setup(format!("cannot build the HTTP client: {e}")))?;
    let metrics = Metrics::default();
    let x = &cfg.exposure;
    let webhook_secret: Option<Arc<[u8]>> = x.webhook_secret.as_ref().map(|s| s.0.clone().into());
    let mut connectors: std::collections::HashMap<String, Arc<dyn notify::RevocationConnector>> =
        std::collections::HashMap::new();
    for (name, url) in &x.connectors {
        leash_core::validate_name("connector", name)
            .map_err(|e| ServerError::Setup(e.to_string()))?;
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(ServerError::Setup(format!(
                "connector `{name}`: its URL must start with http:// or https://"
            )));
        }
        connectors.insert(
            name.clone(),
            Arc::new(notify::WebhookConnector {
                url: url.clone(),
                secret: webhook_secret.clone(),
                http: http.clone(),
            }),
        );
    }
    let policy_dir = cfg
        .authz
        .policy_dir
        .clone()
        .unwrap_or_else(|| cfg.data_dir.join("policies"));
    std::fs::create_dir_all(&policy_dir)
        .map_err(|e| ServerError::Setup(format!("cannot create {}: {e}", policy_dir.display())))?;
    let policies = leash_policy::PolicySet::from_dir(&policy_dir).map_err(|e| {
        ServerError::Setup(format!(
            "the policies in {} are not valid, so Leash does not start: {e}",
            policy_dir.display()
        ))
    })?;
    let authz = authz::Authorizer::new(
        leash_policy::PolicyEngine::new(policies),
        policy_dir,
        authz::usage::UsageRecorder::start(store.clone(), cfg.authz.usage, metrics.usage.clone()),
        cfg.authz.violations,
    );
    let exposures = api::exposures::ExposureConfig {
        scanner: leash_scan::Scanner::builtin_with(x.extra_rules.clone()),
        slack_secret: x.slack_signing_secret.as_ref().map(|s| s.0.clone()),
        jira_secret: x.jira_webhook_secret.as_ref().map(|s| s.0.clone()),
        github_keys: x.github_keys.clone(),
        notifier: notify::Notifier::start(
            http.clone(),
            x.notify_url.clone(),
            webhook_secret,
            metrics.notifications.clone(),
        ),
        connectors,
    };
    let credentials = match &cfg.credentials {
        Some(settings) => Some(Arc::new(
            credentials::Credentials::connect(settings.clone())
                .await
                .map_err(|e| ServerError::Setup(e.to_string()))?,
        )),
        None => None,
    };
    let fanout = match &cfg.nats {
        Some(settings) => Some(Arc::new(
            fanout::Fanout::connect(settings.clone(), store.clone()).await?,
        )),
        None => None,
    };
    let ssf = ssf::Transmitter::new(cfg.ssf.clone()).map_err(ServerError::Setup)?;
    Ok(Arc::new(App {
        ssf,
        credentials,
        fanout,
        max_staleness: cfg.max_staleness,
        exposures,
        authz,
        authz_settings: cfg.authz.clone(),
        review: review::Review::new(cfg.review.settings, cfg.review.rules),
        review_config: cfg.review.clone(),
        store,
        keys: std::sync::RwLock::new(Arc::new(keys)),
        key_info: std::sync::RwLock::new(key_info),
        key_source,
        max_ttl,
        metrics,
        issuer,
        default_audience: cfg.default_audience.clone(),
        assertion_jtis: Default::default(),
        jwks_cache: api::federation::JwksCache::new(cfg.jwks_min_refresh),
        dpop_jtis: Default::default(),
        http,
        max_delegation_depth: cfg.max_delegation_depth,
        operator_hash,
        revocation_streams: Arc::new(tokio::sync::Semaphore::new(
            api::revocation_stream::MAX_STREAMS,
        )),
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
        .layer(middleware::from_fn_with_state(
            app.clone(),
            read_your_writes,
        ))
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
    tracing::info!(addr = %local, data = %cfg.data_dir.display(), kid = app.keys().active().kid(), store = if cfg.database.is_some() { "postgresql" } else { "sqlite" }, "leash listening");
    let refresher = app.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
        loop {
            tick.tick().await;
            if let Err(e) = refresher.reload_keys().await {
                tracing::error!(error = %e, "could not reload signing keys");
            }
            refresher.store.revocations().prune(leash_store::now_ms());
        }
    });
    tokio::spawn(api::policies::watch_policy_dir(app.clone()));
    tokio::spawn(api::approvals::expire_break_glass(app.clone()));
    tokio::spawn(api::review::sweep_periodically(app.clone()));
    tokio::spawn(credentials::reap(app.clone()));
    tokio::spawn(reload_keys_on_rotation(app.clone()));
    if let Some(f) = &app.fanout {
        f.spawn(app.store.clone());
    }
    tokio::spawn(ssf::run(app.clone()));
    api::review::load_canaries(&app).await;
    axum::serve(listener, router(app))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(ServerError::Serve)
}

/// Replicas: load the signing keys again whenever another replica's
/// commits include a key event (`key.created`, `key.rotated`).
async fn reload_keys_on_rotation(app: AppState) {
    let mut kinds = app.store.commits().subscribe_remote_kinds();
    loop {
        match kinds.recv().await {
            Ok(k) if !k.iter().any(|k| k.starts_with("key.")) => continue,
            Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                if let Err(e) = app.reload_keys().await {
                    tracing::error!(error = %e, "could not load the signing keys another replica changed");
                }
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Replicas: a change request may name what was just created on another
/// replica (a run started there, then a mint here), so on a shared database
/// every mutating call but a decision first reads the commits made before
/// it. Decisions do not wait: the revocation set is kept current by the
/// feed, and a replica behind it refuses them ([`App::vouch`]).
async fn read_your_writes(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let mutating = !matches!(
        *req.method(),
        axum::http::Method::GET | axum::http::Method::HEAD
    );
    let decision = path.starts_with("/access/") || path == "/oauth2/introspect";
    if mutating
        && !decision
        && app.store.commits().synced_at().is_some()
        && let Err(e) = app.store.catch_up().await
    {
        return ApiError::from(e).into_response();
    }
    next.run(req).await
}

/// Bearer operator credential on every `/v1` call except the OpenAPI document.
async fn require_operator(State(app): State<AppState>, req: Request, next: Next) -> Response {
    // the router nests under /v1, so the full path is in the original URI
    let path = req
        .extensions()
        .get::<axum::extract::OriginalUri>()
        .map(|u| u.path().to_owned())
        .unwrap_or_else(|| req.uri().path().to_owned());
    if api::self_authenticating(req.method(), &path) {
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
