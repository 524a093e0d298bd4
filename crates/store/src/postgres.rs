//! The shared backend: PostgreSQL at a `postgres://` URL.
//!
//! The store's logic is the same as on SQLite (see the `engine` module):
//! one writer task per process group-commits every mutation, and each of
//! its transactions first takes the advisory lock [`crate::WRITER_LOCK`]
//! and rereads the audit-chain head, so processes sharing the database
//! serialize their writes and extend one chain. Commits are durable on
//! return (PostgreSQL's default `synchronous_commit = on`).

use std::str::FromStr;

use sqlx::ConnectOptions;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::sql::{Conn, Pool};
use crate::{PgStore, StoreConfig, StoreError};

/// Whether `location` names a PostgreSQL database rather than a directory.
pub(crate) fn is_url(location: &str) -> bool {
    location.starts_with("postgres://") || location.starts_with("postgresql://")
}

impl PgStore {
    /// Connect to the database at `url`, run the PostgreSQL migrations, load
    /// the registry and start the writer. The database must exist.
    pub async fn open(url: &str, cfg: StoreConfig) -> Result<Self, StoreError> {
        // the URL may carry a password: errors name the problem, not the URL
        let opts = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Storage(format!("bad PostgreSQL URL: {e}")))?
            .disable_statement_logging();
        let mut conn = opts.connect().await?;
        sqlx::migrate!("./migrations-pg").run(&mut conn).await?;
        let readers = PgPoolOptions::new().max_connections(cfg.readers.max(1));
        Self::start(Conn(conn), Pool(readers.connect_with(opts).await?), cfg).await
    }
}
