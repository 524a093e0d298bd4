//! The audit chain detects edited, deleted and reordered rows, online and offline.

use serde_json::{Value, json};
use sqlx::{Connection, PgConnection, SqliteConnection};

use crate::harness::{Leash, stdout};

async fn populated() -> Leash {
    let l = Leash::start().await;
    let run = l.fixture().await;
    for _ in 0..3 {
        l.mint(
            json!({"workload": "triage-bot", "run": run, "scopes": ["tickets:read"], "ttl": "10m"}),
        )
        .await;
    }
    l.post(
        &format!("/v1/runs/{run}/end"),
        json!({"status": "succeeded"}),
    )
    .await;
    l
}

/// Run `sql` (statements separated by `; `) on the server's database,
/// SQLite or PostgreSQL, with the server stopped.
async fn tamper(l: &mut Leash, sql: &str) {
    l.kill();
    match l.database_url() {
        Some(url) => {
            let mut c = PgConnection::connect(url).await.unwrap();
            for stmt in sql.split("; ") {
                sqlx::query(sqlx::AssertSqlSafe(stmt.to_owned()))
                    .execute(&mut c)
                    .await
                    .unwrap();
            }
            c.close().await.unwrap();
        }
        None => {
            let url = format!("sqlite://{}", l.data().join("leash.db").display());
            let mut c = SqliteConnection::connect(&url).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
                .execute(&mut c)
                .await
                .unwrap();
            c.close().await.unwrap();
        }
    }
}

fn verify_offline(l: &Leash) -> (bool, String, Value) {
    let data = l.data();
    let place = match l.database_url() {
        Some(url) => ["--database", url],
        None => ["--data", data.to_str().unwrap()],
    };
    let o = l.cli(&["audit", "verify", place[0], place[1]]);
    let j = l.cli(&["audit", "verify", "--json", place[0], place[1]]);
    (
        o.status.success(),
        stdout(&o),
        serde_json::from_slice(&j.stdout).unwrap(),
    )
}

#[tokio::test]
async fn a_clean_log_verifies_online_and_offline() {
    let mut l = populated().await;
    let (_, online) = l.get("/v1/audit/verify").await;
    assert_eq!(online["ok"], true);
    // on PostgreSQL the first signing key is created in the database, audited
    let key_created = i64::from(l.database_url().is_some());
    assert_eq!(
        online["events"],
        11 + key_created,
        "3 registry + run start + 3 mints + run end + 3 revocations (+ key.created): {online}"
    );
    l.kill();
    let (ok, text, v) = verify_offline(&l);
    assert!(ok, "{text}");
    assert_eq!(v["head_hash"], online["head_hash"]);
}

#[tokio::test]
async fn an_edited_row_is_named() {
    let mut l = populated().await;
    tamper(
        &mut l,
        "UPDATE events SET data = '{\"status\":\"failed\"}' WHERE seq = 8",
    )
    .await;
    let (ok, text, v) = verify_offline(&l);
    assert!(!ok);
    assert!(text.contains("event 8 was edited"), "{text}");
    assert_eq!(v["problems"][0]["problem"], "edited");
    assert_eq!(v["problems"][0]["seq"], 8);
}

#[tokio::test]
async fn a_deleted_row_is_named() {
    let mut l = populated().await;
    tamper(&mut l, "DELETE FROM events WHERE seq = 6").await;
    let (ok, text, v) = verify_offline(&l);
    assert!(!ok);
    assert!(text.contains("events 6 to 6 were deleted"), "{text}");
    assert_eq!(v["problems"][0]["problem"], "deleted");
    // and online, after a restart on the tampered file
    l.restart().await;
    let (_, online) = l.get("/v1/audit/verify").await;
    assert_eq!(online["ok"], false);
    assert_eq!(online["problems"][0]["seq"], 6);
}

#[tokio::test]
async fn reordered_rows_are_named() {
    let mut l = populated().await;
    tamper(&mut l, "UPDATE events SET seq = CASE seq WHEN 5 THEN -6 WHEN 6 THEN -5 END WHERE seq IN (5, 6); UPDATE events SET seq = -seq WHERE seq < 0").await;
    let (ok, text, v) = verify_offline(&l);
    assert!(!ok);
    assert!(text.contains("event 5 is out of order"), "{text}");
    assert_eq!(v["problems"][0]["problem"], "reordered");
}

#[tokio::test]
async fn offline_verify_of_a_missing_directory_says_so() {
    let l = Leash::start().await;
    let o = l.cli(&["audit", "verify", "--data", "/nonexistent/leash"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("does not exist"));
}
