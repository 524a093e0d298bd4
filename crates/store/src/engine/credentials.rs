//! Downstream PostgreSQL credentials: the durable record of each role Leash
//! created for a `postgres` token, and of every attempt to drop it.

use leash_core::{CredentialStatus, DatabaseCredential, Millis, Severity, Token, validate_len};
use serde_json::json;

use super::Writer;
use super::exposures::insert_finding;
use crate::rows;
use crate::sql::{Backend, Pool, Sql};
use crate::{DropAttempt, NewCredential, StoreError};

/// The finding kind opened when a credential cannot be dropped.
pub const DROP_FAILED_FINDING: &str = "credential.drop_failed";
/// Longest drop error kept.
const MAX_ERROR: usize = 1000;

impl<B: Backend> Writer<B> {
    /// Record the role created for `token` (in the mint's transaction).
    pub(super) async fn insert_credential(
        &mut self,
        token: &Token,
        c: &NewCredential,
        now: Millis,
    ) -> Result<(), StoreError> {
        Sql::new(
            "INSERT INTO db_credentials (token_id, role, database, password_hash, status, attempts, created_at, expires_at, next_attempt_at) \
             VALUES ($1, $2, $3, $4, 'active', 0, $5, $6, $5)",
        )
        .bind(&token.id)
        .bind(&c.role)
        .bind(&c.database)
        .bind(c.password_hash.to_vec())
        .bind(now)
        .bind(token.expires_at)
        .run(&mut self.conn)
        .await?;
        Ok(())
    }

    pub(super) async fn record_credential_drop(
        &mut self,
        token_id: &str,
        attempt: DropAttempt,
        actor: &str,
        now: Millis,
    ) -> Result<DatabaseCredential, StoreError> {
        let c = Sql::new("SELECT * FROM db_credentials WHERE token_id = $1")
            .bind(token_id)
            .optional(&mut self.conn)
            .await?
            .map(|r| rows::credential(&r))
            .transpose()?
            .ok_or_else(|| StoreError::NotFound {
                what: "credential",
                key: token_id.to_owned(),
            })?;
        if c.status == CredentialStatus::Dropped {
            return Ok(c);
        }
        match attempt {
            DropAttempt::Dropped {
                sessions_ended,
                already_gone,
            } => {
                let row = Sql::new(
                    "UPDATE db_credentials SET status = 'dropped', dropped_at = $1, last_error = NULL \
                     WHERE token_id = $2 RETURNING *",
                )
                .bind(now)
                .bind(token_id)
                .one(&mut self.conn)
                .await?;
                self.append(
                    now,
                    "credential.dropped",
                    actor,
                    token_id.to_owned(),
                    json!({
                        "role": c.role, "database": c.database,
                        "sessions_ended": sessions_ended, "already_gone": already_gone,
                        "failed_attempts": c.attempts, "finding": c.finding_id,
                    }),
                );
                rows::credential(&row)
            }
            DropAttempt::Failed {
                error,
                next_attempt_at,
                fail_after,
            } => {
                let error: String = error.chars().take(MAX_ERROR).collect();
                validate_len("drop error", &error, MAX_ERROR)?;
                let attempts = c.attempts.saturating_add(1);
                let gives_up = c.status == CredentialStatus::Active && attempts >= fail_after;
                let mut finding_id = c.finding_id;
                if gives_up {
                    let owner_id = Sql::new("SELECT owner_id FROM tokens WHERE id = $1")
                        .bind(token_id)
                        .optional(&mut self.conn)
                        .await?
                        .map(|r| crate::sql::RowRead::int(&r, "owner_id"))
                        .transpose()?;
                    let event = self.append(
                        now,
                        "credential.drop_failed",
                        actor,
                        token_id.to_owned(),
                        json!({"role": c.role, "database": c.database, "attempts": attempts, "error": error}),
                    );
                    let summary = format!(
                        "PostgreSQL role `{}` in database `{}` of ended token {token_id} could not be dropped after {attempts} attempts: {error}. It can no longer log in if the first step (NOLOGIN) succeeded; Leash keeps retrying. Remove what blocks DROP ROLE (objects it owns in other databases, missing privileges).",
                        c.role, c.database
                    );
                    let f = insert_finding(
                        &mut self.conn,
                        DROP_FAILED_FINDING,
                        Severity::High,
                        token_id,
                        owner_id,
                        &summary,
                        &json!({"role": c.role, "database": c.database, "attempts": attempts, "error": error, "event": event}),
                        now,
                    )
                    .await?;
                    finding_id = Some(f.id);
                }
                let status = if gives_up {
                    CredentialStatus::DropFailed
                } else {
                    c.status
                };
                let row = Sql::new(
                    "UPDATE db_credentials SET status = $1, attempts = $2, last_error = $3, next_attempt_at = $4, finding_id = $5 \
                     WHERE token_id = $6 RETURNING *",
                )
                .bind(status.as_str())
                .bind(i64::from(attempts))
                .bind(error)
                .bind(next_attempt_at)
                .bind(finding_id)
                .bind(token_id)
                .one(&mut self.conn)
                .await?;
                rows::credential(&row)
            }
        }
    }
}

pub(super) async fn credentials_due<B: Backend>(
    pool: &Pool<B>,
    now: Millis,
    limit: u32,
) -> Result<Vec<DatabaseCredential>, StoreError> {
    Sql::new(
        "SELECT c.* FROM db_credentials c JOIN tokens t ON t.id = c.token_id \
         WHERE c.status <> 'dropped' AND c.next_attempt_at <= $1 \
           AND (t.revoked_at IS NOT NULL OR t.expires_at <= $1) \
         ORDER BY c.next_attempt_at LIMIT $2",
    )
    .bind(now)
    .bind(limit)
    .all(pool)
    .await?
    .iter()
    .map(rows::credential)
    .collect()
}

pub(super) async fn get_credential<B: Backend>(
    pool: &Pool<B>,
    token_id: &str,
) -> Result<Option<DatabaseCredential>, StoreError> {
    Sql::new("SELECT * FROM db_credentials WHERE token_id = $1")
        .bind(token_id)
        .optional(pool)
        .await?
        .map(|r| rows::credential(&r))
        .transpose()
}

pub(super) async fn list_credentials<B: Backend>(
    pool: &Pool<B>,
    status: Option<CredentialStatus>,
    after: Option<String>,
    limit: u32,
) -> Result<Vec<DatabaseCredential>, StoreError> {
    Sql::new(
        "SELECT * FROM db_credentials WHERE token_id > $1 AND ($2 IS NULL OR status = $2) ORDER BY token_id LIMIT $3",
    )
    .bind(after.unwrap_or_default())
    .bind(status.map(|s| s.as_str()))
    .bind(limit)
    .all(pool)
    .await?
    .iter()
    .map(rows::credential)
    .collect()
}
