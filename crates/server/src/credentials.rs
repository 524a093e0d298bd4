//! Downstream PostgreSQL credentials under the token lifecycle.
//!
//! A `postgres` token is a role in the credential database
//! (`leash serve --credential-database URL`). Minting creates the role first
//! and records the token second, dropping the role again if recording fails,
//! so there is never a token without its role nor (short of a crash between
//! the two steps, which the role's `VALID UNTIL` bounds) a role without its
//! token. Ending the token — any revocation trigger, or expiry — ends the
//! role: a background task ([`reap`]) terminates its sessions and drops it,
//! retrying with backoff; after [`CredentialSettings::fail_after`] failed
//! attempts the credential is `drop_failed` (audited, with a finding) and
//! retried every [`CredentialSettings::retry_max`].
//!
//! How the task learns of revocations: the store's feed of committed
//! revocations ([`leash_store::CommitFeed`]), which every revocation path
//! and cascade goes through, plus a scan every
//! [`CredentialSettings::scan_every`] that also finds expiries and anything
//! the feed cannot show (a restart, a receiver that fell behind).

use std::sync::Arc;
use std::time::Duration;

use leash_pgcred::{CredentialDatabase, Dropped, GrantPlan, Password, role_name};
use leash_store::{DropAttempt, MintPlan, NewCredential, Store, now_ms};

use crate::AppState;
use crate::error::ApiError;

/// The audit log's actor for the reaper's work.
const ACTOR: &str = "leash:credentials";
/// Most credentials dropped per pass.
const BATCH: u32 = 64;

/// Where roles are created and how dropping them is retried.
#[derive(Debug, Clone)]
pub struct CredentialSettings {
    /// The database in which Leash creates roles (its role needs CREATEROLE).
    pub admin_url: String,
    /// Where connection strings point, when not at `admin_url`'s host, port
    /// and database.
    pub public_url: Option<String>,
    /// How often the reaper looks for ended credentials without being woken.
    pub scan_every: Duration,
    /// Failed attempts after which a credential is `drop_failed`.
    pub fail_after: u32,
    /// Longest wait between attempts (and the retry period once `drop_failed`).
    pub retry_max: Duration,
}

impl CredentialSettings {
    /// Defaults for a credential database URL.
    pub fn new(admin_url: String) -> Self {
        CredentialSettings {
            admin_url,
            public_url: None,
            scan_every: Duration::from_millis(500),
            fail_after: 3,
            retry_max: Duration::from_secs(60),
        }
    }
}

/// The credential database and the reaper's settings.
pub struct Credentials {
    pub db: CredentialDatabase,
    settings: CredentialSettings,
}

impl Credentials {
    /// Connect to the credential database.
    ///
    /// # Errors
    /// Names the flag to fix when the URL is bad or the database unusable.
    pub async fn connect(settings: CredentialSettings) -> Result<Self, leash_pgcred::SetupError> {
        let db = CredentialDatabase::connect(&settings.admin_url, settings.public_url.as_deref())
            .await?;
        Ok(Credentials { db, settings })
    }
}

/// How long to wait before attempt `failed + 1`: 1 s, 2 s, 4 s, … up to
/// `max`.
pub fn backoff(failed: u32, max: Duration) -> Duration {
    let secs = 1u64 << failed.saturating_sub(1).min(16);
    Duration::from_secs(secs).min(max)
}

/// The answer for a `postgres` mint when no credential database is set.
pub fn not_configured() -> ApiError {
    ApiError::bad_request(
        "format `postgres` needs a credential database: start the server with `leash serve --credential-database postgres://USER@HOST:PORT/DB` (or LEASH_CREDENTIAL_DATABASE_URL), USER having CREATEROLE",
    )
}

/// Check that a `postgres` mint can be served: a credential database is set
/// and every scope maps to a grant.
pub fn check_request(
    app: &crate::App,
    scopes: &[leash_core::scope::Scope],
) -> Result<GrantPlan, ApiError> {
    if app.credentials.is_none() {
        return Err(not_configured());
    }
    GrantPlan::from_scopes(scopes).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// Create the role for `plan.token`, then record the token with it; drop
/// the role again when recording fails. Returns the connection string
/// (shown once). Runs as its own task, so a client that hangs up midway
/// cannot leave a role behind without its record.
pub async fn create_and_record(
    app: &crate::App,
    mut plan: MintPlan,
    actor: &str,
) -> Result<String, ApiError> {
    let creds = app.credentials.clone().ok_or_else(not_configured)?;
    let grants = GrantPlan::from_scopes(&plan.token.scopes)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let role = role_name(&plan.token.id);
    let password =
        Password::generate().map_err(|e| ApiError::internal(format!("{e}; try again")))?;
    let conn = creds.db.connection_string(&role, &password);
    plan.credential = Some(NewCredential {
        role: role.clone(),
        database: creds.db.database().to_owned(),
        password_hash: password.sha256(),
    });
    let store: Arc<dyn Store> = app.store.clone();
    let actor = actor.to_owned();
    let expires_at = plan.token.expires_at;
    let task = tokio::spawn(async move {
        creds
            .db
            .create_role(&role, &password, expires_at, &grants)
            .await
            .map_err(|e| match e {
                leash_pgcred::CreateError::Missing { .. } => ApiError::bad_request(e.to_string()),
                other => ApiError::new(
                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    format!("{other}; no token was issued"),
                ),
            })?;
        if let Err(e) = store.record_mint(plan, &actor).await {
            // nothing records this role: take it back at once
            if let Err(d) = creds.db.drop_role(&role).await {
                tracing::error!(%role, error = %d, "a role whose token was not recorded could not be dropped; it expires at its VALID UNTIL");
            }
            return Err(ApiError::from(e));
        }
        Ok(())
    });
    task.await
        .map_err(|e| ApiError::internal(format!("creating the credential failed: {e}")))??;
    Ok(conn.expose().to_owned())
}

/// Drop the roles of ended tokens, for as long as the server runs: woken by
/// the store's feed of committed revocations, and every `scan_every`
/// regardless (expiry, restarts).
pub async fn reap(app: AppState) {
    let Some(creds) = app.credentials.clone() else {
        return;
    };
    // every committed revocation, cascades included, wakes the reaper at once
    let mut revoked = app.store.commits().subscribe_revocations();
    loop {
        tokio::select! {
            // a receiver that fell behind just scans; a closed feed (the
            // store shutting down) leaves the periodic scan
            r = revoked.recv() => {
                if matches!(r, Err(tokio::sync::broadcast::error::RecvError::Closed)) {
                    tokio::time::sleep(creds.settings.scan_every).await;
                }
            }
            _ = tokio::time::sleep(creds.settings.scan_every) => {}
        }
        // a full batch means more may be due at once (bounded, so that a
        // store that cannot record attempts does not spin the task)
        for _ in 0..16 {
            match reap_due(&app, &creds).await {
                Ok(n) if n >= BATCH as usize => continue,
                Ok(_) => break,
                Err(e) => {
                    tracing::error!(error = %e, "could not read the credentials due for dropping");
                    break;
                }
            }
        }
    }
}

/// One pass: every credential due now. Returns how many were attempted.
async fn reap_due(app: &crate::App, creds: &Credentials) -> Result<usize, leash_store::StoreError> {
    let due = app.store.credentials_due(now_ms(), BATCH).await?;
    for c in &due {
        let attempt = match creds.db.drop_role(&c.role).await {
            Ok(Dropped::Now { sessions_ended }) => DropAttempt::Dropped {
                sessions_ended,
                already_gone: false,
            },
            Ok(Dropped::AlreadyGone) => DropAttempt::Dropped {
                sessions_ended: 0,
                already_gone: true,
            },
            Err(e) => {
                let failed = c.attempts.saturating_add(1);
                let wait = backoff(failed, creds.settings.retry_max);
                let wait = if failed >= creds.settings.fail_after {
                    // given up on quick retries: keep trying, less often
                    creds.settings.retry_max.max(wait)
                } else {
                    wait
                };
                tracing::warn!(role = %c.role, attempt = failed, error = %e.message, "could not drop a credential's role; will retry");
                DropAttempt::Failed {
                    error: e.message,
                    next_attempt_at: now_ms()
                        + i64::try_from(wait.as_millis()).unwrap_or(i64::MAX / 2),
                    fail_after: creds.settings.fail_after,
                }
            }
        };
        match app
            .store
            .record_credential_drop(&c.token_id, attempt, ACTOR)
            .await
        {
            Ok(after) => {
                if after.status == leash_core::CredentialStatus::DropFailed
                    && after.attempts == creds.settings.fail_after
                {
                    tracing::error!(role = %c.role, token = %c.token_id, "a credential's role could not be dropped: drop_failed, finding opened");
                }
            }
            Err(e) => {
                tracing::error!(role = %c.role, error = %e, "could not record a drop attempt")
            }
        }
    }
    Ok(due.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let max = Duration::from_secs(10);
        let waits: Vec<u64> = (1..=6).map(|n| backoff(n, max).as_secs()).collect();
        assert_eq!(waits, vec![1, 2, 4, 8, 10, 10]);
        assert_eq!(backoff(u32::MAX, max), max);
    }
}
