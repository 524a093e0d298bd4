//! The embedded backend: SQLite (WAL, synchronous=FULL) in a data directory.

use std::path::Path;
use std::time::Duration;

use leash_core::audit::{ChainBreak, ChainSummary};
use sqlx::ConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::sql::{Conn, Pool};
use crate::{SqliteStore, StoreConfig, StoreError};

pub(crate) fn connect_options(path: &Path) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(10))
        .pragma("mmap_size", "268435456")
        // big review batches must not spill the page cache mid-transaction,
        // and statement journals stay in memory
        .pragma("cache_size", "-65536")
        .pragma("temp_store", "MEMORY")
        .statement_cache_capacity(256)
        .disable_statement_logging()
}

impl SqliteStore {
    /// Open (creating if needed) the store in `dir`, run migrations, load
    /// the registry and start the writer.
    pub async fn open(dir: &Path, cfg: StoreConfig) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::Storage(format!(
                "cannot create data directory {}: {e}",
                dir.display()
            ))
        })?;
        let path = dir.join("leash.db");
        let opts = connect_options(&path);
        let mut conn = opts.clone().create_if_missing(true).connect().await?;
        sqlx::migrate!("./migrations").run(&mut conn).await?;
        let readers = SqlitePoolOptions::new().max_connections(cfg.readers.max(1));
        let reads = readers.connect_with(opts.read_only(true)).await?;
        Self::start(Conn(conn), Pool(reads), cfg, None).await
    }
}

/// Verify the audit chain of a data directory without a server (read-only).
pub async fn verify_audit_offline(
    dir: &Path,
) -> Result<Result<ChainSummary, Vec<ChainBreak>>, StoreError> {
    let path = dir.join("leash.db");
    if !path.exists() {
        return Err(StoreError::NotFound {
            what: "database",
            key: path.display().to_string(),
        });
    }
    let opts = SqliteConnectOptions::new()
        .filename(&path)
        .read_only(true)
        .busy_timeout(Duration::from_secs(10))
        .disable_statement_logging();
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(opts)
        .await?;
    let out = crate::engine::verify_pool(&Pool::<sqlx::Sqlite>(pool.clone())).await;
    pool.close().await;
    out
}
