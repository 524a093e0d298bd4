//! Exposures, the external-token inventory and findings in SQLite.

use leash_core::{
    Exposure, ExposureAction, ExternalStatus, ExternalToken, Finding, FindingStatus, InvalidInput,
    Millis, RevocationTrigger, Severity, TokenStatus, validate_len, validate_name,
};
use serde_json::json;

use super::{Root, Writer};
use crate::rows::{self, join_ids};
use crate::sql::{Backend, Conn, Pool, RowRead, Sql};
use crate::{ExposureRecord, NewExposure, NewExternalToken, Revoked, StoreError};

/// Most workloads, workflows or scopes listed on one external token.
const MAX_USERS: usize = 256;

/// The ids of registry entries named in `names`; NotFound for the first unknown one.
fn ids_of(
    what: &'static str,
    names: &[String],
    lookup: impl Fn(&str) -> Option<i64>,
) -> Result<Vec<i64>, StoreError> {
    names
        .iter()
        .map(|n| {
            lookup(n).ok_or_else(|| StoreError::NotFound {
                what,
                key: n.clone(),
            })
        })
        .collect()
}

/// A fingerprint is the lowercase hex SHA-256 of the secret.
pub fn validate_fingerprint(fp: &str) -> Result<(), StoreError> {
    if fp.len() == 64 && fp.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(())
    } else {
        Err(StoreError::Conflict(
            "a fingerprint is the SHA-256 of the secret as 64 lowercase hex characters".into(),
        ))
    }
}

/// One external token by name.
pub(super) async fn external_by_name<B: Backend>(
    pool: &Pool<B>,
    name: &str,
) -> Result<ExternalToken, StoreError> {
    Sql::new("SELECT * FROM external_tokens WHERE name = $1")
        .bind(name)
        .optional(pool)
        .await?
        .map(|r| rows::external(&r))
        .transpose()?
        .ok_or_else(|| StoreError::NotFound {
            what: "external token",
            key: name.to_owned(),
        })
}

impl<B: Backend> Writer<B> {
    pub(super) async fn create_external(
        &mut self,
        new: NewExternalToken,
        actor: &str,
        now: Millis,
    ) -> Result<ExternalToken, StoreError> {
        validate_name("external token", &new.name)?;
        validate_len("kind", &new.kind, 100)?;
        validate_fingerprint(&new.fingerprint)?;
        if let Some(s) = &new.stored_in {
            validate_len("stored_in", s, 500)?;
        }
        if let Some(c) = &new.connector {
            validate_name("connector", c)?;
        }
        for (what, list) in [
            ("workloads", &new.workloads),
            ("workflows", &new.workflows),
            ("scopes", &new.scopes),
        ] {
            if list.len() > MAX_USERS {
                return Err(InvalidInput::TooMany {
                    what,
                    max: MAX_USERS,
                }
                .into());
            }
        }
        for s in &new.scopes {
            validate_len("scope", s, 200)?;
            if s.chars().any(char::is_whitespace) {
                return Err(StoreError::Conflict(format!(
                    "scope `{s}` contains whitespace; list scopes one by one"
                )));
            }
        }
        let (owner_id, workloads, workflows) = {
            let reg = self.registry.read();
            let owner_id = match &new.owner {
                Some(o) => ids_of("owner", std::slice::from_ref(o), |n| {
                    reg.owner_by_name(n).map(|x| x.id)
                })?
                .first()
                .copied(),
                None => None,
            };
            let workloads = ids_of("workload", &new.workloads, |n| {
                reg.workload_by_name(n).map(|x| x.id)
            })?;
            let workflows = ids_of("workflow", &new.workflows, |n| {
                reg.workflow_by_name(n).map(|x| x.id)
            })?;
            (owner_id, workloads, workflows)
        };
        let clash =
            Sql::new("SELECT name FROM external_tokens WHERE name = $1 OR fingerprint = $2")
                .bind(&new.name)
                .bind(&new.fingerprint)
                .optional(&mut self.conn)
                .await?;
        if let Some(row) = clash {
            let name = row.text("name")?;
            return Err(if name == new.name {
                StoreError::Duplicate {
                    what: "external token",
                    name,
                }
            } else {
                StoreError::Conflict(format!(
                    "that fingerprint is already tracked as external token `{name}`"
                ))
            });
        }
        let row = Sql::new(
            "INSERT INTO external_tokens (name, kind, owner_id, fingerprint, workloads, workflows, scopes, stored_in, connector, status, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'active', $10) RETURNING *",
        )
        .bind(&new.name)
        .bind(&new.kind)
        .bind(owner_id)
        .bind(&new.fingerprint)
        .bind(join_ids(&workloads))
        .bind(join_ids(&workflows))
        .bind(new.scopes.join(" "))
        .bind(&new.stored_in)
        .bind(&new.connector)
        .bind(now)
        .one(&mut self.conn)
        .await?;
        let ext = rows::external(&row)?;
        self.append(
            now,
            "external.tracked",
            actor,
            format!("external:{}", ext.name),
            json!({
                "kind": ext.kind,
                "owner": new.owner,
                "fingerprint": ext.fingerprint,
                "workloads": new.workloads,
                "workflows": new.workflows,
                "connector": ext.connector,
            }),
        );
        Ok(ext)
    }

    pub(super) async fn set_external(
        &mut self,
        id: i64,
        status: ExternalStatus,
        detail: String,
        actor: &str,
        now: Millis,
    ) -> Result<ExternalToken, StoreError> {
        validate_len("detail", &detail, 1000)?;
        let revoked_at = (status == ExternalStatus::Revoked).then_some(now);
        let row = Sql::new(
            "UPDATE external_tokens SET status = $1, revoked_at = COALESCE(revoked_at, $2) WHERE id = $3 RETURNING *",
        )
        .bind(status.as_str())
        .bind(revoked_at)
        .bind(id)
        .optional(&mut self.conn)
        .await?
        .ok_or_else(|| StoreError::NotFound {
            what: "external token",
            key: id.to_string(),
        })?;
        let ext = rows::external(&row)?;
        self.append(
            now,
            &format!("external.{}", status.as_str()),
            actor,
            format!("external:{}", ext.name),
            json!({"detail": detail}),
        );
        Ok(ext)
    }

    pub(super) async fn record_exposure(
        &mut self,
        new: NewExposure,
        actor: &str,
        now: Millis,
    ) -> Result<ExposureRecord, StoreError> {
        validate_len("location", &new.location, 1000)?;
        validate_len("detector", &new.detector, 100)?;
        validate_len("excerpt", &new.excerpt, 200)?;
        validate_fingerprint(&new.fingerprint)?;
        self.flush_tokens().await?;

        if let Some(row) =
            Sql::new("SELECT * FROM exposures WHERE fingerprint = $1 AND location = $2")
                .bind(&new.fingerprint)
                .bind(&new.location)
                .optional(&mut self.conn)
                .await?
        {
            // a retried webhook or a re-run scan: already handled
            return Ok(ExposureRecord {
                exposure: rows::exposure(&row)?,
                revoked: Revoked::default(),
                finding: None,
                external: None,
                repeat: true,
            });
        }

        let token = match &new.token_id {
            Some(id) => Some(
                Sql::new(select_tokens!("WHERE id = $1"))
                    .bind(id)
                    .optional(&mut self.conn)
                    .await?
                    .map(|r| rows::token(&r))
                    .transpose()?
                    .ok_or_else(|| StoreError::NotFound {
                        what: "token",
                        key: id.clone(),
                    })?,
            ),
            None => None,
        };
        let external = match token {
            Some(_) => None,
            None => Sql::new("SELECT * FROM external_tokens WHERE fingerprint = $1")
                .bind(&new.fingerprint)
                .optional(&mut self.conn)
                .await?
                .map(|r| rows::external(&r))
                .transpose()?,
        };
        let live = token
            .as_ref()
            .is_some_and(|t| t.status(now) == TokenStatus::Active);
        let action = match (&token, &external) {
            (Some(_), _) if live => ExposureAction::Revoked,
            (Some(_), _) => ExposureAction::AlreadyInactive,
            (None, Some(_)) => ExposureAction::MatchedExternal,
            (None, None) => ExposureAction::Unmatched,
        };

        let exposure_id: i64 = Sql::new(
            "INSERT INTO exposures (source, location, detector, excerpt, fingerprint, token_id, external_id, action, detected_at, revoked_count, event) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0, 0) RETURNING id",
        )
        .bind(new.source.as_str())
        .bind(&new.location)
        .bind(&new.detector)
        .bind(&new.excerpt)
        .bind(&new.fingerprint)
        .bind(&new.token_id)
        .bind(external.as_ref().map(|e| e.id))
        .bind(action.as_str())
        .bind(new.detected_at)
        .one(&mut self.conn)
        .await?
        .int("id")?;

        let subject = match (&new.token_id, &external) {
            (Some(id), _) => id.clone(),
            (None, Some(e)) => format!("external:{}", e.name),
            (None, None) => format!("fingerprint:{}", &new.fingerprint[..16]),
        };
        let cause = self.append(
            now,
            "exposure.detected",
            actor,
            subject.clone(),
            json!({
                "exposure": exposure_id,
                "source": new.source,
                "location": new.location,
                "detector": new.detector,
                "excerpt": new.excerpt,
                "fingerprint": new.fingerprint,
                "action": action,
            }),
        );
        let revoked = match (&new.token_id, live) {
            (Some(id), true) => {
                let reason = format!(
                    "exposed in {} at {} (found by {})",
                    new.source, new.location, new.detector
                );
                self.revoke_cascade(
                    Root::Token(id),
                    RevocationTrigger::Exposure,
                    &reason,
                    cause,
                    actor,
                    now,
                    true,
                )
                .await?
            }
            _ => Revoked::default(),
        };
        let revoked_at = (revoked.count > 0).then_some(now);
        Sql::new(
            "UPDATE exposures SET event = $1, revoked_at = $2, revoked_count = $3 WHERE id = $4",
        )
        .bind(cause)
        .bind(revoked_at)
        .bind(revoked.count as i64)
        .bind(exposure_id)
        .run(&mut self.conn)
        .await?;

        let owner_id = token
            .as_ref()
            .map(|t| t.owner_id)
            .or(external.as_ref().and_then(|e| e.owner_id));
        let (severity, summary) = match action {
            ExposureAction::Revoked => (
                Severity::High,
                format!(
                    "Leash token {subject} was exposed in {} at {}; it was revoked with {} descendant(s). Find out how it leaked.",
                    new.source, new.location, revoked.cascaded
                ),
            ),
            ExposureAction::AlreadyInactive => (
                Severity::Low,
                format!(
                    "Leash token {subject} was exposed in {} at {} after it stopped working; remove the copy.",
                    new.source, new.location
                ),
            ),
            ExposureAction::MatchedExternal => (
                Severity::Critical,
                format!(
                    "Third-party credential {subject} was exposed in {} at {}; rotate it and check its blast radius.",
                    new.source, new.location
                ),
            ),
            ExposureAction::Unmatched => (
                Severity::High,
                format!(
                    "An untracked {} secret was exposed in {} at {}; nobody is known to own it.",
                    new.detector, new.source, new.location
                ),
            ),
        };
        let evidence = json!({
            "exposure": exposure_id,
            "source": new.source,
            "location": new.location,
            "detector": new.detector,
            "excerpt": new.excerpt,
            "fingerprint": new.fingerprint,
            "revoked": revoked.count,
            "event": cause,
        });
        let finding = insert_finding(
            &mut self.conn,
            "exposure",
            severity,
            &subject,
            owner_id,
            &summary,
            &evidence,
            now,
        )
        .await?;
        let exposure = Exposure {
            id: exposure_id,
            source: new.source,
            location: new.location,
            detector: new.detector,
            excerpt: new.excerpt,
            fingerprint: new.fingerprint,
            token_id: new.token_id,
            external_id: external.as_ref().map(|e| e.id),
            action,
            detected_at: new.detected_at,
            revoked_at,
            revoked_count: revoked.count as u64,
            event: cause,
        };
        Ok(ExposureRecord {
            exposure,
            revoked,
            finding: Some(finding),
            external,
            repeat: false,
        })
    }

    pub(super) async fn set_finding(
        &mut self,
        id: i64,
        status: FindingStatus,
        note: String,
        actor: &str,
        now: Millis,
    ) -> Result<Finding, StoreError> {
        validate_len("note", &note, 1000)?;
        let row = Sql::new("UPDATE findings SET status = $1 WHERE id = $2 RETURNING *")
            .bind(status.as_str())
            .bind(id)
            .optional(&mut self.conn)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                what: "finding",
                key: id.to_string(),
            })?;
        let f = rows::finding(&row)?;
        self.append(
            now,
            "finding.status",
            actor,
            format!("finding:{id}"),
            json!({"status": status, "note": note}),
        );
        Ok(f)
    }
}

/// Open a finding.
#[allow(clippy::too_many_arguments)]
pub(super) async fn insert_finding<B: Backend>(
    conn: &mut Conn<B>,
    kind: &str,
    severity: Severity,
    subject: &str,
    owner_id: Option<i64>,
    summary: &str,
    evidence: &serde_json::Value,
    now: Millis,
) -> Result<Finding, StoreError> {
    let row = Sql::new(
        "INSERT INTO findings (kind, severity, subject, owner_id, summary, evidence, status, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, 'open', $7) RETURNING *",
    )
    .bind(kind)
    .bind(severity.as_str())
    .bind(subject)
    .bind(owner_id)
    .bind(summary)
    .bind(evidence.to_string())
    .bind(now)
    .one(conn)
    .await?;
    rows::finding(&row)
}

/// The open finding of `kind` about `subject`, if there is one.
pub(super) async fn find_open_finding<B: Backend>(
    conn: &mut Conn<B>,
    kind: &str,
    subject: &str,
) -> Result<Option<Finding>, StoreError> {
    Sql::new(
        "SELECT * FROM findings WHERE kind = $1 AND subject = $2 AND status = 'open' ORDER BY id DESC LIMIT 1",
    )
    .bind(kind)
    .bind(subject)
    .optional(conn)
    .await?
    .map(|r| rows::finding(&r))
    .transpose()
}

/// One row by id, or NotFound naming `what`.
async fn by_id<B: Backend, T>(
    pool: &Pool<B>,
    sql: &'static str,
    what: &'static str,
    id: i64,
    from_row: fn(&B::Row) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    Sql::new(sql)
        .bind(id)
        .optional(pool)
        .await?
        .map(|r| from_row(&r))
        .transpose()?
        .ok_or_else(|| StoreError::NotFound {
            what,
            key: id.to_string(),
        })
}

pub(super) async fn get_external<B: Backend>(
    pool: &Pool<B>,
    id: i64,
) -> Result<ExternalToken, StoreError> {
    let sql = "SELECT * FROM external_tokens WHERE id = $1";
    by_id(pool, sql, "external token", id, rows::external).await
}

pub(super) async fn list_external<B: Backend>(
    pool: &Pool<B>,
    after: i64,
    limit: u32,
) -> Result<Vec<ExternalToken>, StoreError> {
    Sql::new("SELECT * FROM external_tokens WHERE id > $1 ORDER BY id LIMIT $2")
        .bind(after)
        .bind(limit)
        .all(pool)
        .await?
        .iter()
        .map(rows::external)
        .collect()
}

pub(super) async fn get_exposure<B: Backend>(
    pool: &Pool<B>,
    id: i64,
) -> Result<Exposure, StoreError> {
    by_id(
        pool,
        "SELECT * FROM exposures WHERE id = $1",
        "exposure",
        id,
        rows::exposure,
    )
    .await
}

pub(super) async fn list_exposures<B: Backend>(
    pool: &Pool<B>,
    before: Option<i64>,
    limit: u32,
) -> Result<Vec<Exposure>, StoreError> {
    Sql::new("SELECT * FROM exposures WHERE id < $1 ORDER BY id DESC LIMIT $2")
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit)
        .all(pool)
        .await?
        .iter()
        .map(rows::exposure)
        .collect()
}

pub(super) async fn get_finding<B: Backend>(
    pool: &Pool<B>,
    id: i64,
) -> Result<Finding, StoreError> {
    by_id(
        pool,
        "SELECT * FROM findings WHERE id = $1",
        "finding",
        id,
        rows::finding,
    )
    .await
}

pub(super) async fn list_findings<B: Backend>(
    pool: &Pool<B>,
    status: Option<FindingStatus>,
    before: Option<i64>,
    limit: u32,
) -> Result<Vec<Finding>, StoreError> {
    Sql::new(
        "SELECT * FROM findings WHERE id < $1 AND ($2 IS NULL OR status = $2) ORDER BY id DESC LIMIT $3",
    )
    .bind(before.unwrap_or(i64::MAX))
    .bind(status.map(|s| s.as_str()))
    .bind(limit)
    .all(pool)
    .await?
    .iter()
    .map(rows::finding)
    .collect()
}
