//! `protected-service`: run the example resource server.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use leash_verify::{Credentials, Verifier, VerifierConfig};

/// An example API protected by Leash tokens (GET /reports needs
/// reports:read, POST /reports needs reports:write).
#[derive(Debug, Parser)]
struct Args {
    /// Leash base URL.
    #[arg(long, env = "LEASH_URL", default_value = "http://127.0.0.1:8420")]
    leash_url: String,
    /// Resource-server client id (`leash client add --introspect`).
    #[arg(long, env = "LEASH_CLIENT_ID", requires = "client_secret")]
    client_id: Option<String>,
    /// Its client secret.
    #[arg(long, env = "LEASH_CLIENT_SECRET", hide_env_values = true)]
    client_secret: Option<String>,
    /// Or the operator credential.
    #[arg(
        long,
        env = "LEASH_TOKEN",
        hide_env_values = true,
        conflicts_with = "client_id"
    )]
    operator_token: Option<String>,
    /// Address to listen on.
    #[arg(long, env = "LISTEN", default_value = "127.0.0.1:8430")]
    listen: SocketAddr,
    /// Required token audience.
    #[arg(long, env = "LEASH_AUDIENCE")]
    audience: Option<String>,
    /// Required token issuer.
    #[arg(long, env = "LEASH_ISSUER")]
    issuer: Option<String>,
    /// Refuse every token when the revocation feed is quiet this long (ms).
    #[arg(long, default_value_t = 5000)]
    max_staleness_ms: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let a = Args::parse();
    let credentials = match (a.client_id, a.client_secret, a.operator_token) {
        (Some(id), Some(secret), None) => Credentials::Client { id, secret },
        (None, None, Some(t)) => Credentials::Operator(t),
        _ => anyhow::bail!(
            "give --client-id and --client-secret (a resource-server client) or --operator-token"
        ),
    };
    let mut cfg = VerifierConfig::new(a.leash_url, credentials);
    cfg.audience = a.audience;
    cfg.issuer = a.issuer;
    cfg.max_staleness = Duration::from_millis(a.max_staleness_ms);
    let verifier = Verifier::start(cfg)?;
    let listener = tokio::net::TcpListener::bind(a.listen)
        .await
        .with_context(|| format!("cannot listen on {}", a.listen))?;
    tracing::info!(addr = %a.listen, "protected-service listening");
    axum::serve(listener, protected_service::router(verifier)).await?;
    Ok(())
}
