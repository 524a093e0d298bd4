//! The credential database: where Leash creates and drops roles.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgDatabaseError, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection};

use crate::grants::{GrantPlan, Tables, quote_ident};
use crate::password::Password;

/// Most sessions one credential may hold at once.
pub const CONNECTION_LIMIT: u32 = 8;
/// How long a statement against the credential database may take.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why creating a role failed.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// A scope names a table or schema the database does not have.
    #[error(
        "scope `{scope}` names {what} `{name}`, which does not exist in database `{database}`; create it first or fix the scope"
    )]
    Missing {
        scope: String,
        what: &'static str,
        name: String,
        database: String,
    },
    #[error("the credential database refused: {0}")]
    Database(String),
    #[error(transparent)]
    Random(#[from] crate::password::RandomError),
}

/// Why dropping a role failed (it may still exist).
#[derive(Debug, Clone, thiserror::Error)]
#[error("could not drop role `{role}`: {message}")]
pub struct DropError {
    pub role: String,
    pub message: String,
}

/// Why the credential database cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("{flag} is not a valid PostgreSQL URL: {why}")]
    BadUrl { flag: &'static str, why: String },
    #[error(
        "cannot use the credential database: {0}; check --credential-database (its role needs CREATEROLE)"
    )]
    Unusable(String),
}

/// What a drop found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// The role existed; its sessions were ended and it is gone.
    Now { sessions_ended: u64 },
    /// There was no such role (already dropped): nothing to do.
    AlreadyGone,
}

/// A connection string, shown once. Never printed by `Debug`.
#[derive(Clone)]
pub struct ConnectionString(String);

impl ConnectionString {
    /// The text: `postgres://ROLE:PASSWORD@HOST:PORT/DB`.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ConnectionString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConnectionString(…)")
    }
}

/// Where clients reach the database the roles are for.
#[derive(Debug, Clone)]
struct Endpoint {
    host: String,
    port: u16,
    database: String,
}

/// The PostgreSQL database in which Leash creates per-token roles, with an
/// administrator connection (a role with CREATEROLE).
#[derive(Debug, Clone)]
pub struct CredentialDatabase {
    pool: PgPool,
    /// The database the roles get CONNECT on and their grants in.
    database: String,
    /// What connection strings point at.
    public: Endpoint,
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn endpoint(opts: &PgConnectOptions) -> Endpoint {
    Endpoint {
        host: opts.get_host().to_owned(),
        port: opts.get_port(),
        database: opts
            .get_database()
            .unwrap_or_else(|| opts.get_username())
            .to_owned(),
    }
}

fn parse(flag: &'static str, url: &str) -> Result<PgConnectOptions, SetupError> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(SetupError::BadUrl {
            flag,
            why: "it must start with postgres:// or postgresql://".into(),
        });
    }
    // the URL may hold a password: say what is wrong, never echo it
    PgConnectOptions::from_str(url).map_err(|e| SetupError::BadUrl {
        flag,
        why: e.to_string(),
    })
}

/// The message of a database error, with PostgreSQL's detail when it has one.
fn describe(e: &sqlx::Error) -> String {
    match e
        .as_database_error()
        .and_then(|d| d.try_downcast_ref::<PgDatabaseError>())
    {
        Some(pg) => match pg.detail() {
            Some(d) => format!("{} ({})", pg.message(), d),
            None => pg.message().to_owned(),
        },
        None => e.to_string(),
    }
}

fn is_code(e: &sqlx::Error, code: &str) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c == code)
}

impl CredentialDatabase {
    /// Connect to the credential database at `admin_url` and check that
    /// its role may create roles. Connection strings point at the same
    /// host, port and database, or at `public_url`'s when given (a proxy, a
    /// name clients resolve differently).
    ///
    /// # Errors
    /// [`SetupError`] when a URL is malformed, the database cannot be
    /// reached, or its role has neither CREATEROLE nor SUPERUSER.
    pub async fn connect(
        admin_url: &str,
        public_url: Option<&str>,
    ) -> Result<CredentialDatabase, SetupError> {
        let opts = parse("--credential-database", admin_url)?
            .disable_statement_logging()
            .options([(
                "statement_timeout",
                STATEMENT_TIMEOUT.as_millis().to_string(),
            )]);
        let public = match public_url {
            Some(u) => endpoint(&parse("--credential-host-url", u)?),
            None => endpoint(&opts),
        };
        let database = endpoint(&opts).database;
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(opts)
            .await
            .map_err(|e| SetupError::Unusable(describe(&e)))?;
        let may: (bool,) = sqlx::query_as(
            "SELECT rolcreaterole OR rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user",
        )
        .fetch_one(&pool)
        .await
        .map_err(|e| SetupError::Unusable(describe(&e)))?;
        if !may.0 {
            return Err(SetupError::Unusable(
                "its role has neither CREATEROLE nor SUPERUSER".into(),
            ));
        }
        Ok(CredentialDatabase {
            pool,
            database,
            public,
        })
    }

    /// The database roles are created for.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// The host and port connection strings name.
    pub fn host_port(&self) -> (&str, u16) {
        (&self.public.host, self.public.port)
    }

    /// The connection string for `role` with `password`.
    pub fn connection_string(&self, role: &str, password: &Password) -> ConnectionString {
        let db = percent_encode(&self.public.database);
        let host = &self.public.host;
        let text = if host.starts_with('/') {
            // a Unix socket directory: libpq takes it as the `host` parameter
            format!(
                "postgres://{role}:{}@/{db}?host={}&port={}",
                password.expose(),
                percent_encode(host),
                self.public.port
            )
        } else if host.contains(':') {
            format!(
                "postgres://{role}:{}@[{host}]:{}/{db}",
                password.expose(),
                self.public.port
            )
        } else {
            format!(
                "postgres://{role}:{}@{host}:{}/{db}",
                password.expose(),
                self.public.port
            )
        };
        ConnectionString(text)
    }

    /// Create `role` (LOGIN, `password`, `VALID UNTIL valid_until_ms`,
    /// [`CONNECTION_LIMIT`]) with the grants of `plan`, in one transaction:
    /// either the role exists with every grant, or nothing was created.
    ///
    /// # Errors
    /// [`CreateError::Missing`] when a table or schema does not exist;
    /// [`CreateError::Database`] when PostgreSQL refuses.
    pub async fn create_role(
        &self,
        role: &str,
        password: &Password,
        valid_until_ms: i64,
        plan: &GrantPlan,
    ) -> Result<(), CreateError> {
        let verifier = password.scram_verifier()?;
        let until =
            time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(valid_until_ms) * 1_000_000)
                .ok()
                .and_then(|t| {
                    t.format(&time::format_description::well_known::Rfc3339)
                        .ok()
                })
                .ok_or_else(|| {
                    CreateError::Database("the token's expiry is out of range".into())
                })?;
        let db = |e: sqlx::Error| CreateError::Database(describe(&e));
        let mut conn = self.pool.acquire().await.map_err(db)?;
        let mut tx = conn.begin().await.map_err(db)?;
        for g in plan.grants() {
            let schema: Option<(i32,)> =
                sqlx::query_as("SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1")
                    .bind(&g.schema)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db)?;
            if schema.is_none() {
                return Err(CreateError::Missing {
                    scope: g.source.clone(),
                    what: "schema",
                    name: g.schema.clone(),
                    database: self.database.clone(),
                });
            }
            if let Tables::One(t) = &g.tables {
                let table: Option<(i32,)> = sqlx::query_as(
                    "SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                     WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p', 'v', 'm', 'f')",
                )
                .bind(&g.schema)
                .bind(t)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
                if table.is_none() {
                    return Err(CreateError::Missing {
                        scope: g.source.clone(),
                        what: "table",
                        name: format!("{}.{t}", g.schema),
                        database: self.database.clone(),
                    });
                }
            }
        }
        // CREATE ROLE takes no bound parameters: the name is a checked
        // identifier, quoted; the verifier is base64 and `$:` and the time
        // RFC 3339, neither of which can hold a quote
        let create = format!(
            "CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS \
             CONNECTION LIMIT {CONNECTION_LIMIT} PASSWORD '{verifier}' VALID UNTIL '{until}'",
            quote_ident(role)
        );
        sqlx::query(sqlx::AssertSqlSafe(create))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        for stmt in plan.statements(role, &self.database) {
            sqlx::query(sqlx::AssertSqlSafe(stmt))
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        tx.commit().await.map_err(db)?;
        Ok(())
    }

    /// End `role`: refuse new logins, terminate every session it has, then
    /// `DROP OWNED BY` (its privileges here) and `DROP ROLE`. Idempotent: a
    /// role that does not exist is [`Dropped::AlreadyGone`].
    ///
    /// # Errors
    /// [`DropError`] with PostgreSQL's reason when a step fails (the role
    /// may then still exist, though it can no longer log in once the
    /// first step succeeded).
    pub async fn drop_role(&self, role: &str) -> Result<Dropped, DropError> {
        let fail = |e: sqlx::Error| DropError {
            role: role.to_owned(),
            message: describe(&e),
        };
        let exists: Option<(i32,)> =
            sqlx::query_as("SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1")
                .bind(role)
                .fetch_optional(&self.pool)
                .await
                .map_err(fail)?;
        if exists.is_none() {
            return Ok(Dropped::AlreadyGone);
        }
        let q = quote_ident(role);
        // no new sessions from here on, then end the open ones
        match sqlx::query(sqlx::AssertSqlSafe(format!("ALTER ROLE {q} NOLOGIN")))
            .execute(&self.pool)
            .await
        {
            Ok(_) => {}
            Err(e) if is_code(&e, "42704") => return Ok(Dropped::AlreadyGone),
            Err(e) => return Err(fail(e)),
        }
        let ended: Vec<(bool,)> = sqlx::query_as(
            "SELECT pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity WHERE usename = $1",
        )
        .bind(role)
        .fetch_all(&self.pool)
        .await
        .map_err(fail)?;
        let sessions_ended = ended.iter().filter(|(ok,)| *ok).count() as u64;
        // terminated backends exit asynchronously: wait briefly for them
        for _ in 0..50 {
            let left: (i64,) = sqlx::query_as(
                "SELECT count(*) FROM pg_catalog.pg_stat_activity WHERE usename = $1",
            )
            .bind(role)
            .fetch_one(&self.pool)
            .await
            .map_err(fail)?;
            if left.0 == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut conn = self.pool.acquire().await.map_err(fail)?;
        let mut tx = conn.begin().await.map_err(fail)?;
        let dropped = async {
            sqlx::query(sqlx::AssertSqlSafe(format!("DROP OWNED BY {q}")))
                .execute(&mut *tx)
                .await?;
            sqlx::query(sqlx::AssertSqlSafe(format!("DROP ROLE {q}")))
                .execute(&mut *tx)
                .await?;
            Ok::<_, sqlx::Error>(())
        }
        .await;
        match dropped {
            Ok(()) => {
                tx.commit().await.map_err(fail)?;
                Ok(Dropped::Now { sessions_ended })
            }
            Err(e) if is_code(&e, "42704") => Ok(Dropped::AlreadyGone),
            Err(e) => Err(fail(e)),
        }
    }

    /// Whether `role` exists (for tests and checks).
    ///
    /// # Errors
    /// [`DropError`] when the database cannot be asked.
    pub async fn role_exists(&self, role: &str) -> Result<bool, DropError> {
        let row: Option<(i32,)> =
            sqlx::query_as("SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1")
                .bind(role)
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| DropError {
                    role: role.to_owned(),
                    message: describe(&e),
                })?;
        Ok(row.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_are_percent_encoded() {
        assert_eq!(percent_encode("shop"), "shop");
        assert_eq!(percent_encode("my db/x"), "my%20db%2Fx");
    }
}
