//! The shared backend: PostgreSQL at a `postgres://` URL.
//!
//! The store's logic is the same as on SQLite (see the `engine` module):
//! one writer task per process group-commits every mutation, and each of
//! its transactions first takes the advisory lock [`crate::WRITER_LOCK`]
//! and rereads the audit-chain head, so processes sharing the database
//! serialize their writes and extend one chain. Commits are durable on
//! return (PostgreSQL's default `synchronous_commit = on`).

use std::str::FromStr;

use std::sync::Arc;

use sqlx::ConnectOptions;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};

use crate::engine::Reconnect;
use crate::sql::{Conn, Pool};
use crate::{CommitFeed, PgStore, Store, StoreConfig, StoreError};

/// Whether `location` names a PostgreSQL database rather than a directory.
pub(crate) fn is_url(location: &str) -> bool {
    location.starts_with("postgres://") || location.starts_with("postgresql://")
}

impl PgStore {
    /// Connect to the database at `url`, run the PostgreSQL migrations, load
    /// the registry and start the writer. The database must exist.
    ///
    /// Other processes may share the database (replicas): the store then
    /// listens on [`crate::COMMIT_CHANNEL`] and catches up with their commits
    /// (see the `engine` module), and its writer reconnects by itself when
    /// the database comes back after an outage.
    pub async fn open(url: &str, cfg: StoreConfig) -> Result<Self, StoreError> {
        let opts = connect_options(url)?;
        let mut conn = opts.connect().await?;
        sqlx::migrate!("./migrations-pg").run(&mut conn).await?;
        let readers = PgPoolOptions::new().max_connections(cfg.readers.max(1));
        let reads = readers.connect_with(opts.clone()).await?;
        let again = opts.clone();
        let reconnect: Reconnect<sqlx::Postgres> = Arc::new(move || {
            let opts = again.clone();
            Box::pin(async move { Ok(Conn(opts.connect().await?)) })
        });
        let mut store = Self::start(Conn(conn), Pool(reads.clone()), cfg, Some(reconnect)).await?;
        let feed = store.commits().clone();
        let listener = tokio::spawn(listen_for_commits(reads, feed));
        store.background.0.push(listener.abort_handle());
        Ok(store)
    }
}

/// Wake the writer whenever another process commits (its NOTIFY on
/// [`crate::COMMIT_CHANNEL`]), and once after every (re)connection, since
/// notifications sent while this one was away are lost. The writer's own
/// tick still catches up if this stays down.
async fn listen_for_commits(pool: sqlx::PgPool, feed: CommitFeed) {
    loop {
        let listening = async {
            let mut l = PgListener::connect_with(&pool).await?;
            l.listen(crate::COMMIT_CHANNEL).await?;
            feed.wake();
            loop {
                // after a lost connection `try_recv` yields None once and
                // reconnects on the next call
                // reconnects (and listens again) on the next call: either
                // way, something may have been committed
                let _ = l.try_recv().await?;
                feed.wake();
            }
        }
        .await;
        let listening: Result<(), sqlx::Error> = listening;
        if let Err(e) = listening {
            tracing::warn!(error = %e, "store: commit listener lost PostgreSQL; retrying");
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

fn connect_options(url: &str) -> Result<PgConnectOptions, StoreError> {
    // the URL may carry a password: errors name the problem, not the URL
    Ok(PgConnectOptions::from_str(url)
        .map_err(|e| StoreError::Storage(format!("bad PostgreSQL URL: {e}")))?
        .disable_statement_logging())
}

/// Verify the audit chain in the PostgreSQL database at `url` without a
/// server (the offline check `leash audit verify --database` runs): reads
/// only, changes nothing, needs no migration.
///
/// # Errors
/// [`StoreError::Storage`] when the database cannot be read.
pub async fn verify_audit_in_database(
    url: &str,
) -> Result<Result<crate::ChainSummary, Vec<crate::ChainBreak>>, StoreError> {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(connect_options(url)?)
        .await?;
    let out = crate::engine::verify_pool(&Pool::<sqlx::Postgres>(pool.clone())).await;
    pool.close().await;
    out
}

#[cfg(test)]
mod tests {
    // Test code: an unexpected error should fail the test loudly.
    #![allow(clippy::unwrap_used, clippy::panic)]
    use std::collections::BTreeSet;

    use crate::sql::{Pool, RowRead, Sql};
    use crate::test_pg::PgDatabase;
    use crate::{PgStore, SqliteStore, StoreConfig};

    async fn names<B: crate::sql::Backend>(pool: &Pool<B>, sql: &'static str) -> BTreeSet<String> {
        Sql::new(sql)
            .all(pool)
            .await
            .unwrap()
            .iter()
            .map(|r| r.text("name").unwrap())
            .collect()
    }

    /// The PostgreSQL schema is the SQLite one after all its migrations: the
    /// same tables, columns and named indexes (a new SQLite migration fails
    /// this until `migrations-pg` follows it).
    #[tokio::test]
    async fn the_postgres_schema_matches_the_sqlite_one() {
        let Some(db) = PgDatabase::create().await else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let lite = SqliteStore::open(dir.path(), StoreConfig::default())
            .await
            .unwrap();
        let pg = PgStore::open(&db.url, StoreConfig::default())
            .await
            .unwrap();
        let lite_columns = names(
            &lite.reads,
            "SELECT t.name || '.' || c.name AS name FROM sqlite_master t, pragma_table_info(t.name) c \
             WHERE t.type = 'table' AND t.name NOT LIKE 'sqlite_%' AND t.name NOT LIKE '_sqlx%'",
        )
        .await;
        let pg_columns = names(
            &pg.reads,
            "SELECT table_name || '.' || column_name AS name FROM information_schema.columns \
             WHERE table_schema = 'public' AND table_name NOT LIKE '_sqlx%'",
        )
        .await;
        assert_eq!(lite_columns, pg_columns);
        assert!(lite_columns.contains("tokens.break_glass"));
        let lite_indexes = names(
            &lite.reads,
            "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL",
        )
        .await;
        let pg_indexes = names(
            &pg.reads,
            "SELECT indexname AS name FROM pg_indexes WHERE schemaname = 'public' \
             AND indexname NOT LIKE '%\\_pkey' AND indexname NOT LIKE '%\\_key' AND indexname NOT LIKE '\\_sqlx%'",
        )
        .await;
        assert_eq!(lite_indexes, pg_indexes);
        assert!(lite_indexes.contains("usage_totals_denied"));
    }
}
