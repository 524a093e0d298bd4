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
        let opts = connect_options(url)?;
        let mut conn = opts.connect().await?;
        sqlx::migrate!("./migrations-pg").run(&mut conn).await?;
        let readers = PgPoolOptions::new().max_connections(cfg.readers.max(1));
        Self::start(Conn(conn), Pool(readers.connect_with(opts).await?), cfg).await
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

/// The advisory lock a Leash server holds on its database for as long as
/// it runs ([`claim_database`]); the writer's [`crate::WRITER_LOCK`] is
/// another number.
pub const SERVER_LOCK: i64 = 0x6c65_6173_6800_0002;

/// A server's claim on its PostgreSQL database: one connection holding
/// [`SERVER_LOCK`], released when this is dropped (or the process dies).
#[derive(Debug)]
pub struct DatabaseClaim {
    _conn: sqlx::PgConnection,
}

/// Claim the database at `url` for this server alone.
///
/// Each server keeps its registry and revocation set in memory, current
/// with its own commits; a second server on the same database would not
/// see the first one's revocations until it restarted. Until replicas
/// learn each other's changes, a second `leash serve` on one database is
/// refused (fail closed) instead of answering from a stale view.
///
/// # Errors
/// [`StoreError::Conflict`] when another server holds the database;
/// [`StoreError::Storage`] when it cannot be reached.
pub async fn claim_database(url: &str) -> Result<DatabaseClaim, StoreError> {
    let mut conn = connect_options(url)?.connect().await?;
    let (claimed,): (bool,) = sqlx::query_as("SELECT pg_try_advisory_lock($1)")
        .bind(SERVER_LOCK)
        .fetch_one(&mut conn)
        .await?;
    if claimed {
        Ok(DatabaseClaim { _conn: conn })
    } else {
        Err(StoreError::Conflict(
            "another Leash server is serving this PostgreSQL database; servers do not share one database yet (each keeps its revocation set in memory), so stop the other one or give this one its own database".into(),
        ))
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

    /// One server per database: a second claim is refused with a reason
    /// while the first is held, and granted once it is released.
    #[tokio::test]
    async fn a_database_serves_one_server_at_a_time() {
        let Some(db) = PgDatabase::create().await else {
            return;
        };
        let first = crate::claim_database(&db.url).await.unwrap();
        let err = crate::claim_database(&db.url).await.unwrap_err();
        assert!(
            matches!(&err, crate::StoreError::Conflict(m) if m.contains("another Leash server")),
            "{err}"
        );
        drop(first);
        let mut again = None;
        for _ in 0..50 {
            match crate::claim_database(&db.url).await {
                Ok(c) => {
                    again = Some(c);
                    break;
                }
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
            }
        }
        assert!(again.is_some(), "the claim was not released");
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
