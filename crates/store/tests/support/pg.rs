//! A fresh PostgreSQL database per test, in one place for the store's unit
//! and integration tests.
//!
//! The server comes from `LEASH_TEST_DATABASE_URL` (for example
//! `postgres://postgres@127.0.0.1:5432/postgres`); each test creates its
//! own database `leash_t_…` there, so tests run in parallel, and drops it
//! when done (best effort). When the variable is unset a PostgreSQL test
//! skips and says why, except under CI (`CI` set, as `scripts/test` and
//! `.ci/run` do), where a missing database is a failure, not a pass.

// Test code: an unexpected error should fail the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::{Connection, PgConnection};

/// A database created for one test; dropped with it.
pub struct PgDatabase {
    /// Its URL.
    pub url: String,
    server: String,
    name: String,
}

/// The server URL, or None when PostgreSQL tests are to be skipped.
pub fn server_url() -> Option<String> {
    match std::env::var("LEASH_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("CI").is_none() => {
            eprintln!(
                "skipped: this test needs PostgreSQL; set LEASH_TEST_DATABASE_URL \
                 (e.g. postgres://postgres@127.0.0.1:5432/postgres) to run it"
            );
            None
        }
        _ => panic!(
            "CI is set, so the PostgreSQL tests must run: set LEASH_TEST_DATABASE_URL \
             (e.g. postgres://postgres@127.0.0.1:5432/postgres)"
        ),
    }
}

/// `url` with its database name replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    let mut out = format!("{}/{name}", &base[..path_start]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

impl PgDatabase {
    /// A new empty database, or None when PostgreSQL tests are skipped.
    pub async fn create() -> Option<Self> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let server = server_url()?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let name = format!(
            "leash_t_{}_{nanos:x}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut admin = PgConnection::connect(&server)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to LEASH_TEST_DATABASE_URL: {e}"));
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
        admin.close().await.ok();
        Some(PgDatabase {
            url: with_database(&server, &name),
            server,
            name,
        })
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let (server, name) = (self.server.clone(), self.name.clone());
        // its own thread and runtime: Drop may run inside a test's runtime
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let mut admin = PgConnection::connect(&server).await.ok()?;
                let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .execute(&mut admin)
                    .await
                    .ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(_))) {
            eprintln!("could not drop test database {} (left behind)", self.name);
        }
    }
}

#[test]
fn the_database_name_is_replaced_and_parameters_kept() {
    assert_eq!(
        with_database("postgres://u@h:5432/postgres", "x"),
        "postgres://u@h:5432/x"
    );
    assert_eq!(
        with_database("postgresql://u@h/db?sslmode=disable", "x"),
        "postgresql://u@h/x?sslmode=disable"
    );
    assert_eq!(with_database("postgres://u@h", "x"), "postgres://u@h/x");
}
