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
