//! Downstream PostgreSQL credentials (`--format postgres`) against this
//! machine's PostgreSQL: each test has its own credential database (on the
//! server at `LEASH_TEST_DATABASE_URL`; skipped with a reason when unset,
//! failing under CI) and a Leash server that creates roles in it.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};

use crate::harness::{Leash, stderr, stdout};
use crate::pg::PgDatabase;

/// A credential database with `orders` (id, item) and `secrets` (x), and a
/// server creating roles there; `shop-bot` (dev) may hold `pg:public.*:…`.
async fn setup(extra: &[&str]) -> Option<(PgDatabase, Leash)> {
    let db = PgDatabase::create().await?;
    let mut c = PgConnection::connect(&db.url).await.unwrap();
    sqlx::raw_sql(
        "CREATE TABLE orders (id int PRIMARY KEY, item text); INSERT INTO orders VALUES (1, 'tea'); \
         CREATE TABLE secrets (x int); INSERT INTO secrets VALUES (42);",
    )
    .execute(&mut c)
    .await
    .unwrap();
    c.close().await.unwrap();
    let mut flags = vec!["--credential-database", db.url.as_str()];
    flags.extend_from_slice(extra);
    let l = Leash::start_with(&flags).await;
    l.ok(
        "/v1/owners",
        json!({"name": "alice", "email": "alice@acme.io", "business_owner": true}),
    )
    .await;
    l.ok(
        "/v1/workloads",
        json!({"name": "shop-bot", "owner": "alice", "environment": "dev",
               "scope_ceiling": ["pg:public.*:read", "pg:public.*:write", "pg:nowhere.*:read", "tickets:read"]}),
    )
    .await;
    Some((db, l))
}

async fn mint_pg(l: &Leash, scopes: &[&str], extra: Value) -> Value {
    let mut body = json!({"workload": "shop-bot", "scopes": scopes, "ttl": "10m",
                          "format": "postgres", "justification": "test writes"});
    if let (Some(b), Some(x)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(x.clone());
    }
    l.mint(body).await
}

/// Whether a role exists on the test server.
async fn role_exists(role: &str) -> bool {
    let url = crate::pg::server_url().unwrap();
    let mut c = PgConnection::connect(&url).await.unwrap();
    let row: Option<(i32,)> = sqlx::query_as("SELECT 1 FROM pg_roles WHERE rolname = $1")
        .bind(role)
        .fetch_optional(&mut c)
        .await
        .unwrap();
    row.is_some()
}

/// Wait (generously: no timing is asserted) until `role` is gone.
async fn until_dropped(l: &Leash, role: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while role_exists(role).await {
        assert!(
            Instant::now() < deadline,
            "role {role} was never dropped; log:\n{}",
            l.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn credential_of(l: &Leash, token_id: &str) -> Value {
    let (s, list) = l.get("/v1/credentials?limit=1000").await;
    assert!(s.is_success(), "{list}");
    list.as_array()
        .unwrap()
        .iter()
        .find(|c| c["token_id"] == token_id)
        .cloned()
        .unwrap_or_else(|| panic!("no credential for {token_id}: {list}"))
}

async fn until_status(l: &Leash, token_id: &str, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let c = credential_of(l, token_id).await;
        if c["status"] == status {
            return c;
        }
        assert!(
            Instant::now() < deadline,
            "credential never became {status}: {c}; log:\n{}",
            l.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn pg_code(e: &sqlx::Error) -> String {
    e.as_database_error()
        .and_then(|d| d.code())
        .map(|c| c.into_owned())
        .unwrap_or_default()
}

#[tokio::test]
async fn pg_credential_reads_granted_tables_and_writes_only_with_write_scope() {
    let Some((db, l)) = setup(&[]).await else {
        return;
    };
    // through the CLI: the connection string alone on stdout
    let out = l.cli(&[
        "mint",
        "--format",
        "postgres",
        "--workload",
        "shop-bot",
        "--scope",
        "pg:public.orders:read",
        "--ttl",
        "10m",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let conn_str = stdout(&out).trim().to_owned();
    assert!(conn_str.starts_with("postgres://leash_"), "{conn_str}");
    let db_name = db.url.rsplit('/').next().unwrap().to_owned();
    assert!(
        conn_str.ends_with(&format!("@127.0.0.1:5432/{db_name}")),
        "{conn_str}"
    );
    let password = conn_str
        .split_once("://")
        .and_then(|(_, r)| r.split_once('@'))
        .and_then(|(u, _)| u.split_once(':'))
        .map(|(_, p)| p.to_owned())
        .unwrap();
    assert!(
        password.len() >= 32 && password.bytes().all(|b| b.is_ascii_alphanumeric()),
        "{password}"
    );

    let mut c = PgConnection::connect(&conn_str).await.unwrap();
    let item: (String,) = sqlx::query_as("SELECT item FROM orders WHERE id = 1")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(item.0, "tea");
    let denied = sqlx::query("SELECT x FROM secrets")
        .execute(&mut c)
        .await
        .unwrap_err();
    assert_eq!(pg_code(&denied), "42501", "{denied}");
    let denied = sqlx::query("INSERT INTO orders VALUES (2, 'cake')")
        .execute(&mut c)
        .await
        .unwrap_err();
    assert_eq!(
        pg_code(&denied),
        "42501",
        "read scope may not insert: {denied}"
    );
    c.close().await.ok();

    // a write scope (justified; this server issues writes without approval)
    let w = mint_pg(&l, &["pg:public.orders:write"], json!({})).await;
    assert_eq!(w["format"], "postgres");
    let role = w["credential"]["role"].as_str().unwrap().to_owned();
    assert_eq!(w["credential"]["database"], db_name.as_str());
    let mut c = PgConnection::connect(w["token"].as_str().unwrap())
        .await
        .unwrap();
    sqlx::query("INSERT INTO orders VALUES (2, 'cake')")
        .execute(&mut c)
        .await
        .unwrap();
    assert!(
        sqlx::query("SELECT x FROM secrets")
            .execute(&mut c)
            .await
            .is_err()
    );
    c.close().await.ok();

    // explain and the credential list name the role, never the password
    let e = l.explain(w["id"].as_str().unwrap()).await;
    assert_eq!(e["format"], "postgres");
    assert_eq!(e["credential"]["role"], role.as_str());
    assert_eq!(e["credential"]["status"], "active");
    let secret = w["token"].as_str().unwrap();
    let w_password = secret
        .split('@')
        .next()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap();
    let out = l.cli(&["credentials", "list", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let listed = stdout(&out);
    assert!(listed.contains(&role), "{listed}");
    for shown in [
        listed,
        e.to_string(),
        stdout(&l.cli(&["explain", w["id"].as_str().unwrap()])),
    ] {
        assert!(
            !shown.contains(w_password) && !shown.contains(&password),
            "{shown}"
        );
    }
    let text = stdout(&l.cli(&["explain", w["id"].as_str().unwrap()]));
    assert!(text.contains(&format!("role {role}")), "{text}");
    end_all(&l).await;
}

/// Revoke every live credential of the server and wait for its role to
/// go: roles are cluster-wide and would outlive the test's database.
async fn end_all(l: &Leash) {
    let (_, list) = l.get("/v1/credentials?status=active").await;
    for c in list.as_array().unwrap() {
        l.ok(
            "/v1/revocations",
            json!({"token_or_id": c["token_id"], "reason": "test over"}),
        )
        .await;
        until_dropped(l, c["role"].as_str().unwrap()).await;
    }
}

#[tokio::test]
async fn pg_credential_revoked_by_hand_ends_its_sessions_and_its_role() {
    let Some((_db, l)) = setup(&[]).await else {
        return;
    };
    let m = mint_pg(&l, &["pg:public.orders:read"], json!({})).await;
    let conn_str = m["token"].as_str().unwrap().to_owned();
    let role = m["credential"]["role"].as_str().unwrap().to_owned();
    assert!(role_exists(&role).await);
    let mut open = PgConnection::connect(&conn_str).await.unwrap();
    sqlx::query("SELECT 1").execute(&mut open).await.unwrap();

    let out = l.cli(&["revoke", m["id"].as_str().unwrap(), "--reason", "task done"]);
    assert!(out.status.success(), "{}", stderr(&out));
    until_dropped(&l, &role).await;
    assert!(
        sqlx::query("SELECT 1").execute(&mut open).await.is_err(),
        "the open session was terminated"
    );
    assert!(PgConnection::connect(&conn_str).await.is_err());
    let c = until_status(&l, m["id"].as_str().unwrap(), "dropped").await;
    assert_eq!(c["token_status"], "revoked");
    let e = l.explain(m["id"].as_str().unwrap()).await;
    assert_eq!(e["credential"]["status"], "dropped");
    let (_, events) = l.get("/v1/audit/events?limit=1000").await;
    let dropped = events
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "credential.dropped" && e["subject"] == m["id"])
        .unwrap_or_else(|| panic!("no credential.dropped event: {events}"));
    assert!(dropped.to_string().contains(&role));
}

#[tokio::test]
async fn pg_credential_dies_with_its_run_and_with_its_parent() {
    let Some((_db, l)) = setup(&[]).await else {
        return;
    };
    l.ok(
        "/v1/workflows",
        json!({"name": "restock", "owner": "alice", "definition": "steps: [read]", "tools": []}),
    )
    .await;
    let run = l.start_run("restock", "shop-bot").await;
    let in_run = mint_pg(&l, &["pg:public.orders:read"], json!({"run": run})).await;
    let run_role = in_run["credential"]["role"].as_str().unwrap().to_owned();
    // a JWT parent and a postgres child delegated from it
    let parent = l
        .mint(json!({"workload": "shop-bot", "scopes": ["pg:public.*:read"], "ttl": "10m"}))
        .await;
    let child = mint_pg(
        &l,
        &["pg:public.orders:read"],
        json!({"parent": parent["id"], "ttl": "5m"}),
    )
    .await;
    let child_role = child["credential"]["role"].as_str().unwrap().to_owned();
    let mut open = PgConnection::connect(child["token"].as_str().unwrap())
        .await
        .unwrap();

    l.ok(
        &format!("/v1/runs/{run}/end"),
        json!({"status": "succeeded"}),
    )
    .await;
    until_dropped(&l, &run_role).await;
    assert!(
        role_exists(&child_role).await,
        "only the run's credential ends"
    );
    until_status(&l, in_run["id"].as_str().unwrap(), "dropped").await;

    l.ok(
        "/v1/revocations",
        json!({"token_or_id": parent["id"], "reason": "orchestrator done"}),
    )
    .await;
    until_dropped(&l, &child_role).await;
    assert!(sqlx::query("SELECT 1").execute(&mut open).await.is_err());
    let c = until_status(&l, child["id"].as_str().unwrap(), "dropped").await;
    assert_eq!(c["token_status"], "revoked");
    let e = l.explain(child["id"].as_str().unwrap()).await;
    assert_eq!(e["revoked"]["trigger"], "parent_revoked");
}

#[tokio::test]
async fn pg_credential_is_dropped_when_its_token_expires() {
    let Some((_db, l)) = setup(&[]).await else {
        return;
    };
    let m = mint_pg(&l, &["pg:public.orders:read"], json!({"ttl": "2s"})).await;
    let role = m["credential"]["role"].as_str().unwrap().to_owned();
    until_dropped(&l, &role).await;
    let c = until_status(&l, m["id"].as_str().unwrap(), "dropped").await;
    assert_eq!(c["token_status"], "expired");
}

#[tokio::test]
async fn pg_credential_that_cannot_be_dropped_is_reported_and_retried() {
    let Some((_db, l)) = setup(&["--credential-retry-max", "1s"]).await else {
        return;
    };
    let m = mint_pg(&l, &["pg:public.orders:read"], json!({})).await;
    let id = m["id"].as_str().unwrap().to_owned();
    let role = m["credential"]["role"].as_str().unwrap().to_owned();
    // the obstacle: the role owns a table in another database, where
    // Leash's DROP OWNED does not reach, so DROP ROLE fails
    let other = PgDatabase::create().await.unwrap();
    let mut o = PgConnection::connect(&other.url).await.unwrap();
    sqlx::raw_sql("CREATE TABLE obstacle (x int)")
        .execute(&mut o)
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ALTER TABLE obstacle OWNER TO \"{role}\""
    )))
    .execute(&mut o)
    .await
    .unwrap();

    l.ok(
        "/v1/revocations",
        json!({"token_or_id": id, "reason": "done"}),
    )
    .await;
    let c = until_status(&l, &id, "drop_failed").await;
    assert!(c["attempts"].as_u64().unwrap() >= 3, "{c}");
    let err = c["last_error"].as_str().unwrap();
    assert!(err.contains("cannot be dropped"), "{err}");
    assert!(role_exists(&role).await);
    // it can no longer log in, even before it is dropped
    let nologin: (bool,) = {
        let mut a = PgConnection::connect(&crate::pg::server_url().unwrap())
            .await
            .unwrap();
        sqlx::query_as("SELECT NOT rolcanlogin FROM pg_roles WHERE rolname = $1")
            .bind(&role)
            .fetch_one(&mut a)
            .await
            .unwrap()
    };
    assert!(nologin.0);
    let (_, events) = l.get("/v1/audit/events?limit=1000").await;
    let failed: Vec<&Value> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "credential.drop_failed" && e["subject"] == id.as_str())
        .collect();
    assert_eq!(failed.len(), 1, "one event when it gives up: {events}");
    let (_, findings) = l.get("/v1/findings?status=open").await;
    let finding = findings
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "credential.drop_failed" && f["subject"] == id.as_str())
        .unwrap_or_else(|| panic!("no finding: {findings}"));
    assert_eq!(c["finding"], finding["id"]);
    let e = l.explain(&id).await;
    assert_eq!(e["credential"]["status"], "drop_failed");

    // the obstacle goes: a later retry drops the role
    sqlx::raw_sql("DROP TABLE obstacle")
        .execute(&mut o)
        .await
        .unwrap();
    o.close().await.ok();
    until_dropped(&l, &role).await;
    let c = until_status(&l, &id, "dropped").await;
    assert!(c["last_error"].is_null(), "{c}");
}

#[tokio::test]
async fn pg_credential_scopes_that_cannot_be_grants_are_refused() {
    let Some((_db, l)) = setup(&[]).await else {
        return;
    };
    for (scopes, says) in [
        (vec!["pg:bad;name:read"], "pg:SCHEMA.TABLE:read"),
        (vec!["pg:public.orders:admin"], "pg:SCHEMA.TABLE:read"),
        (vec!["tickets:read"], "pg:SCHEMA.TABLE:read"),
        (vec!["pg:public.missing:read"], "does not exist"),
        (vec!["pg:nowhere.*:read"], "does not exist"),
    ] {
        let (s, v) = l
            .post(
                "/v1/tokens",
                json!({"workload": "shop-bot", "scopes": scopes, "ttl": "5m", "format": "postgres"}),
            )
            .await;
        assert_eq!(s, 400, "{scopes:?}: {v}");
        let detail = v["detail"].as_str().unwrap();
        assert!(detail.contains(says), "{scopes:?}: {detail}");
        assert!(detail.contains(scopes[0]), "{scopes:?}: {detail}");
    }
    // nothing was recorded for the refused mints
    let (_, tokens) = l.get("/v1/tokens?workload=shop-bot").await;
    assert_eq!(tokens.as_array().unwrap().len(), 0, "{tokens}");
    let (_, creds) = l.get("/v1/credentials").await;
    assert_eq!(creds.as_array().unwrap().len(), 0, "{creds}");

    // a server without a credential database says which flag it needs
    let plain = Leash::start().await;
    plain
        .ok("/v1/owners", json!({"name": "bob", "email": "bob@acme.io"}))
        .await;
    plain.ok("/v1/workloads", json!({"name": "w", "owner": "bob", "environment": "dev", "scope_ceiling": ["pg:public.*:read"]})).await;
    let (s, v) = plain
        .post(
            "/v1/tokens",
            json!({"workload": "w", "scopes": ["pg:public.orders:read"], "ttl": "5m", "format": "postgres"}),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .contains("--credential-database"),
        "{v}"
    );
}
