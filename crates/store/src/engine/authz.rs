//! Request-time authorization in SQLite: usage records, violations,
//! approvals, owner credentials and delegates, break-glass expiry.

use leash_core::{
    Approval, ApprovalStatus, Millis, Owner, RevocationTrigger, Severity, TokenStatus,
    ViolationClass, validate_len,
};
use serde_json::json;

use super::exposures::{find_open_finding, insert_finding};
use super::{INSERT_CHUNK, Root, Writer};
use crate::rows::{self, stored_count};
use crate::sql::{Backend, Dialect, Pool, RowRead, Sql};
use crate::{
    NewApproval, NewViolation, Revoked, StoreError, TokenUsage, UsageRecord, UsageTotal,
    ViolationRecord,
};

/// Longest approval request document kept.
const MAX_REQUEST_JSON: usize = 16 * 1024;

/// The `SET` of an upsert into `table` that adds the new `count` and widens
/// `first_at` and `last_at` to cover both rows.
pub(super) fn add_counts(d: Dialect, table: &str) -> String {
    format!(
        "count = {table}.count + excluded.count, first_at = {least}({table}.first_at, excluded.first_at), \
         last_at = {greatest}({table}.last_at, excluded.last_at)",
        least = d.least(),
        greatest = d.greatest(),
    )
}

/// A per-run usage row's key: token, step (the tool), action, resource.
type RunUseKey<'a> = (&'a str, &'a str, &'a str, &'a str);

fn class_severity(class: ViolationClass) -> Severity {
    match class {
        ViolationClass::WorkloadMismatch | ViolationClass::WriteOutsideScope => Severity::High,
        ViolationClass::AfterRun | ViolationClass::UndeclaredTool => Severity::Medium,
    }
}

impl<B: Backend> Writer<B> {
    pub(super) async fn record_usage(
        &mut self,
        totals: Vec<UsageTotal>,
        log: Vec<UsageRecord>,
        keep_log: u64,
    ) -> Result<(), StoreError> {
        let events = totals.iter().map(|t| t.count).sum::<u64>();
        self.write_usage_totals(&totals).await?;
        self.write_usage_runs(&totals).await?;
        if events > 0 {
            self.count_source(&crate::SourceCounts {
                source: "decision".into(),
                events,
                ..Default::default()
            })
            .await?;
        }
        self.write_usage_log(log, keep_log).await
    }

    /// What a removability test reads: allowed uses per run (the token's
    /// run; a decision names no step, its tool stands in). Totals that
    /// differ only in the presenting workload's spelling share a row, so
    /// they are merged first: one statement may not update a row twice.
    async fn write_usage_runs(&mut self, totals: &[UsageTotal]) -> Result<(), StoreError> {
        let mut merged: std::collections::BTreeMap<RunUseKey<'_>, (u64, Millis, Millis)> =
            std::collections::BTreeMap::new();
        for t in totals.iter().filter(|t| t.allowed) {
            merged
                .entry((&t.token_id, &t.tool, &t.action, &t.resource))
                .and_modify(|(count, first, last)| {
                    *count += t.count;
                    *first = (*first).min(t.first_at);
                    *last = (*last).max(t.last_at);
                })
                .or_insert((t.count, t.first_at, t.last_at));
        }
        let rows: Vec<_> = merged.into_iter().collect();
        for chunk in rows.chunks(INSERT_CHUNK / 2) {
            let mut q = Sql::new(
                "INSERT INTO usage_runs (token_id, run, step, action, resource, count, first_at, last_at) \
                 SELECT v.column1, CAST(t.run_id AS TEXT), v.column2, v.column3, v.column4, v.column5, v.column6, v.column7 FROM (",
            );
            q.push_values(
                chunk,
                |mut b, ((token, tool, action, resource), (count, first, last))| {
                    b.push_bind(*token)
                        .push_bind(*tool)
                        .push_bind(*action)
                        .push_bind(*resource)
                        .push_bind(stored_count(*count))
                        .push_bind(*first)
                        .push_bind(*last);
                },
            );
            q.push(
                ") AS v JOIN tokens t ON t.id = v.column1 WHERE t.run_id IS NOT NULL \
                 ON CONFLICT (token_id, run, step, action, resource) DO UPDATE SET ",
            )
            .push(&add_counts(B::DIALECT, "usage_runs"));
            q.run(&mut self.conn).await?;
        }
        Ok(())
    }

    /// Fold usage aggregates into the stored ones.
    pub(super) async fn write_usage_totals(
        &mut self,
        totals: &[UsageTotal],
    ) -> Result<(), StoreError> {
        // in key order: neighbouring rows share B-tree pages
        let mut rows: Vec<&UsageTotal> = totals.iter().collect();
        rows.sort_unstable_by(|a, b| {
            (
                &a.token_id,
                &a.workload,
                &a.action,
                &a.resource,
                &a.tool,
                a.allowed,
            )
                .cmp(&(
                    &b.token_id,
                    &b.workload,
                    &b.action,
                    &b.resource,
                    &b.tool,
                    b.allowed,
                ))
        });
        for chunk in rows.chunks(INSERT_CHUNK / 2) {
            let mut q = Sql::new(
                "INSERT INTO usage_totals (token_id, workload, action, resource, tool, allowed, count, first_at, last_at) ",
            );
            q.push_values(chunk, |mut b, t| {
                b.push_bind(&t.token_id)
                    .push_bind(&t.workload)
                    .push_bind(&t.action)
                    .push_bind(&t.resource)
                    .push_bind(&t.tool)
                    .push_bind(t.allowed)
                    .push_bind(stored_count(t.count))
                    .push_bind(t.first_at)
                    .push_bind(t.last_at);
            });
            q.push(
                " ON CONFLICT (token_id, workload, action, resource, tool, allowed) DO UPDATE SET ",
            )
            .push(&add_counts(B::DIALECT, "usage_totals"));
            q.run(&mut self.conn).await?;
        }
        Ok(())
    }

    async fn write_usage_log(
        &mut self,
        log: Vec<UsageRecord>,
        keep_log: u64,
    ) -> Result<(), StoreError> {
        for chunk in log.chunks(INSERT_CHUNK / 2) {
            let mut q = Sql::new(
                "INSERT INTO usage_log (at, token_id, workload, action, resource, tool, allowed, reason) ",
            );
            q.push_values(chunk, |mut b, r| {
                b.push_bind(r.at)
                    .push_bind(&r.token_id)
                    .push_bind(&r.workload)
                    .push_bind(&r.action)
                    .push_bind(&r.resource)
                    .push_bind(&r.tool)
                    .push_bind(r.allowed)
                    .push_bind(&r.reason);
            });
            q.run(&mut self.conn).await?;
        }
        if !log.is_empty() {
            Sql::new("DELETE FROM usage_log WHERE id <= (SELECT MAX(id) FROM usage_log) - $1")
                .bind(stored_count(keep_log))
                .run(&mut self.conn)
                .await?;
        }
        Ok(())
    }

    pub(super) async fn record_violation(
        &mut self,
        v: NewViolation,
        actor: &str,
        now: Millis,
    ) -> Result<ViolationRecord, StoreError> {
        self.flush_tokens().await?;
        let token = Sql::new(select_tokens!("WHERE id = $1"))
            .bind(&v.token_id)
            .optional(&mut self.conn)
            .await?
            .map(|r| rows::token(&r))
            .transpose()?
            .ok_or_else(|| StoreError::NotFound {
                what: "token",
                key: v.token_id.clone(),
            })?;
        let kind = format!("violation.{}", v.class);
        let cause = self.append(
            now,
            "policy.violation",
            actor,
            token.id.clone(),
            json!({"class": v.class, "detail": v.detail, "evidence": v.evidence, "revoke": v.revoke}),
        );
        let revoked = if v.revoke && token.status(now) == TokenStatus::Active {
            let reason = format!("policy violation ({}): {}", v.class, v.detail);
            self.revoke_cascade(
                Root::Token(&token.id),
                RevocationTrigger::PolicyViolation,
                &reason,
                cause,
                actor,
                now,
                false,
            )
            .await?
        } else {
            Revoked::default()
        };
        if let Some(finding) = find_open_finding(&mut self.conn, &kind, &token.id).await? {
            return Ok(ViolationRecord {
                finding,
                repeat: true,
                revoked,
            });
        }
        let summary = if revoked.count > 0 {
            format!(
                "{} — token {} was revoked with {} descendant(s).",
                v.detail, token.id, revoked.cascaded
            )
        } else {
            format!("{} — the request was denied.", v.detail)
        };
        let evidence = json!({
            "class": v.class,
            "event": cause,
            "revoked": revoked.count,
            "request": v.evidence,
        });
        let finding = insert_finding(
            &mut self.conn,
            &kind,
            class_severity(v.class),
            &token.id,
            Some(token.owner_id),
            &summary,
            &evidence,
            now,
        )
        .await?;
        Ok(ViolationRecord {
            finding,
            repeat: false,
            revoked,
        })
    }

    pub(super) async fn create_approval(
        &mut self,
        new: NewApproval,
        actor: &str,
        now: Millis,
    ) -> Result<Approval, StoreError> {
        validate_len("justification", &new.justification, 1000)?;
        if new.justification.trim().is_empty() {
            return Err(StoreError::Conflict(
                "an approval request needs a justification: say why the token needs write access"
                    .into(),
            ));
        }
        let request = new.request.to_string();
        if request.len() > MAX_REQUEST_JSON {
            return Err(StoreError::Conflict(format!(
                "the request is larger than {MAX_REQUEST_JSON} bytes"
            )));
        }
        let (workload_id, owner_id) = {
            let reg = self.registry.read();
            let w = reg
                .workload_by_name(&new.workload)
                .ok_or_else(|| StoreError::NotFound {
                    what: "workload",
                    key: new.workload.clone(),
                })?;
            (w.id, w.owner_id)
        };
        let row = Sql::new(
            "INSERT INTO approvals (kind, workload_id, owner_id, request, justification, requested_by, requested_at, status) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending') RETURNING *",
        )
        .bind(new.kind.as_str())
        .bind(workload_id)
        .bind(owner_id)
        .bind(&request)
        .bind(&new.justification)
        .bind(actor)
        .bind(now)
        .one(&mut self.conn)
        .await?;
        let a = rows::approval(&row)?;
        self.append(
            now,
            "approval.requested",
            actor,
            format!("approval:{}", a.id),
            json!({"kind": a.kind, "workload": new.workload, "justification": a.justification, "request": a.request}),
        );
        Ok(a)
    }

    pub(super) async fn decide_approval(
        &mut self,
        id: i64,
        approve: bool,
        approver: &str,
        note: String,
        actor: &str,
        now: Millis,
    ) -> Result<Approval, StoreError> {
        validate_len("note", &note, 1000)?;
        let current = Sql::new("SELECT * FROM approvals WHERE id = $1")
            .bind(id)
            .optional(&mut self.conn)
            .await?
            .map(|r| rows::approval(&r))
            .transpose()?
            .ok_or_else(|| StoreError::NotFound {
                what: "approval",
                key: id.to_string(),
            })?;
        if current.status != ApprovalStatus::Pending {
            return Err(StoreError::Conflict(format!(
                "approval {id} is already {}; nothing to decide",
                current.status
            )));
        }
        let (approver_id, owner_name) = {
            let reg = self.registry.read();
            let a = reg
                .owner_by_name(approver)
                .ok_or_else(|| StoreError::NotFound {
                    what: "owner",
                    key: approver.to_owned(),
                })?;
            let o = reg
                .owner(current.owner_id)
                .map(|o| o.name.clone())
                .unwrap_or_default();
            (a.id, o)
        };
        let allowed = approver_id == current.owner_id
            || Sql::new("SELECT 1 FROM owner_delegates WHERE owner_id = $1 AND delegate_id = $2")
                .bind(current.owner_id)
                .bind(approver_id)
                .optional(&mut self.conn)
                .await?
                .is_some();
        if !allowed {
            return Err(StoreError::Conflict(format!(
                "`{approver}` may not decide approval {id}: only its owner `{owner_name}` or a delegate named with `leash owner delegate {owner_name} --to PERSON` can"
            )));
        }
        let status = if approve {
            ApprovalStatus::Approved
        } else {
            ApprovalStatus::Denied
        };
        let row = Sql::new(
            "UPDATE approvals SET status = $1, decided_by = $2, decided_at = $3, decision_note = $4 WHERE id = $5 RETURNING *",
        )
        .bind(status.as_str())
        .bind(approver)
        .bind(now)
        .bind(&note)
        .bind(id)
        .one(&mut self.conn)
        .await?;
        self.append(
            now,
            if approve {
                "approval.approved"
            } else {
                "approval.denied"
            },
            actor,
            format!("approval:{id}"),
            json!({"approver": approver, "note": note}),
        );
        rows::approval(&row)
    }

    /// Mark an approved request issued with `token_id` (inside a mint).
    pub(super) async fn claim_approval(
        &mut self,
        id: i64,
        workload_id: i64,
        token_id: &str,
    ) -> Result<(), StoreError> {
        let done = Sql::new(
            "UPDATE approvals SET status = 'issued', token_id = $1 WHERE id = $2 AND status = 'approved' AND workload_id = $3",
        )
        .bind(token_id)
        .bind(id)
        .bind(workload_id)
        .run(&mut self.conn)
        .await?;
        if done == 1 {
            return Ok(());
        }
        let status = Sql::new("SELECT status FROM approvals WHERE id = $1")
            .bind(id)
            .optional(&mut self.conn)
            .await?
            .map(|r| r.text("status"))
            .transpose()?;
        Err(match status {
            None => StoreError::NotFound {
                what: "approval",
                key: id.to_string(),
            },
            Some(s) if s == "approved" => {
                StoreError::Conflict(format!("approval {id} is for another workload"))
            }
            Some(s) => StoreError::Conflict(format!(
                "approval {id} is {s}; only an approved request can be issued, once"
            )),
        })
    }

    /// Live write-capable tokens of a workload (including this batch's).
    pub(super) async fn live_write_tokens(
        &mut self,
        workload_id: i64,
        now: Millis,
    ) -> Result<u64, StoreError> {
        self.flush_tokens().await?;
        let n = Sql::built(format!(
            "SELECT COUNT(*) AS n FROM tokens WHERE workload_id = $1 AND has_write = {} AND revoked_at IS NULL AND expires_at > $2",
            B::DIALECT.boolean(true)
        ))
        .bind(workload_id)
        .bind(now)
        .one(&mut self.conn)
        .await?
        .int("n")?;
        Ok(rows::count(n))
    }

    pub(super) async fn create_owner_credential(
        &mut self,
        owner: &str,
        hash: [u8; 32],
        actor: &str,
        now: Millis,
    ) -> Result<Owner, StoreError> {
        let o = self.active_owner_for("credential", owner)?;
        Sql::new(
            "INSERT INTO owner_credentials (owner_id, secret_hash, created_at) VALUES ($1, $2, $3)",
        )
        .bind(o.id)
        .bind(hash.to_vec())
        .bind(now)
        .run(&mut self.conn)
        .await?;
        self.append(
            now,
            "owner.credential_created",
            actor,
            format!("owner:{owner}"),
            json!({}),
        );
        Ok(o)
    }

    pub(super) async fn add_delegate(
        &mut self,
        owner: &str,
        delegate: &str,
        actor: &str,
        now: Millis,
    ) -> Result<(), StoreError> {
        let o = self.active_owner_for("delegation", owner)?;
        let d = self.active_owner_for("delegation", delegate)?;
        if o.id == d.id {
            return Err(StoreError::Conflict(
                "an owner already approves for themselves; name someone else".into(),
            ));
        }
        Sql::new(
            "INSERT INTO owner_delegates (owner_id, delegate_id, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(o.id)
        .bind(d.id)
        .bind(now)
        .run(&mut self.conn)
        .await?;
        self.append(
            now,
            "owner.delegate_added",
            actor,
            format!("owner:{owner}"),
            json!({"delegate": delegate}),
        );
        Ok(())
    }

    pub(super) async fn revoke_due_break_glass(
        &mut self,
        due: Millis,
        actor: &str,
        now: Millis,
    ) -> Result<Revoked, StoreError> {
        self.flush_tokens().await?;
        let ids = Sql::built(format!(
            "SELECT id FROM tokens WHERE break_glass = {} AND revoked_at IS NULL AND expires_at > $1 AND expires_at <= $2 ORDER BY id",
            B::DIALECT.boolean(true)
        ))
        .bind(now)
        .bind(due)
        .all(&mut self.conn)
        .await?
        .iter()
        .map(|r| r.text("id"))
        .collect::<Result<Vec<_>, _>>()?;
        if ids.is_empty() {
            return Ok(Revoked::default());
        }
        let cause = self.append(
            now,
            "break_glass.expired",
            actor,
            "break-glass".into(),
            json!({"tokens": ids}),
        );
        self.revoke_cascade(
            Root::BreakGlassDue(due),
            RevocationTrigger::Expiry,
            "the break-glass grant reached its TTL",
            cause,
            actor,
            now,
            false,
        )
        .await
    }
}

pub(super) async fn token_usage<B: Backend>(
    pool: &Pool<B>,
    token_id: &str,
    recent: u32,
) -> Result<TokenUsage, StoreError> {
    let totals =
        Sql::new("SELECT * FROM usage_totals WHERE token_id = $1 ORDER BY last_at DESC LIMIT 1000")
            .bind(token_id)
            .all(pool)
            .await?
            .iter()
            .map(rows::usage_total)
            .collect::<Result<Vec<_>, StoreError>>()?;
    let recent = Sql::new("SELECT * FROM usage_log WHERE token_id = $1 ORDER BY id DESC LIMIT $2")
        .bind(token_id)
        .bind(recent)
        .all(pool)
        .await?
        .iter()
        .map(rows::usage_record)
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(TokenUsage { totals, recent })
}

pub(super) async fn get_approval<B: Backend>(
    pool: &Pool<B>,
    id: i64,
) -> Result<Approval, StoreError> {
    Sql::new("SELECT * FROM approvals WHERE id = $1")
        .bind(id)
        .optional(pool)
        .await?
        .map(|r| rows::approval(&r))
        .transpose()?
        .ok_or_else(|| StoreError::NotFound {
            what: "approval",
            key: id.to_string(),
        })
}

pub(super) async fn list_approvals<B: Backend>(
    pool: &Pool<B>,
    status: Option<ApprovalStatus>,
    before: Option<i64>,
    limit: u32,
) -> Result<Vec<Approval>, StoreError> {
    let mut q = Sql::new("SELECT * FROM approvals WHERE 1 = 1");
    if let Some(s) = status {
        q.push(" AND status = ").push_bind(s.as_str());
    }
    if let Some(b) = before {
        q.push(" AND id < ").push_bind(b);
    }
    q.push(" ORDER BY id DESC LIMIT ")
        .push_bind(i64::from(limit));
    q.all(pool).await?.iter().map(rows::approval).collect()
}

pub(super) async fn owner_by_credential<B: Backend>(
    pool: &Pool<B>,
    hash: [u8; 32],
) -> Result<Owner, StoreError> {
    Sql::new(
        "SELECT o.* FROM owners o JOIN owner_credentials c ON c.owner_id = o.id WHERE c.secret_hash = $1",
    )
    .bind(hash.to_vec())
    .optional(pool)
    .await?
    .map(|r| rows::owner(&r))
    .transpose()?
    .ok_or_else(|| StoreError::NotFound {
        what: "owner credential",
        key: "(presented)".into(),
    })
}

pub(super) async fn delegates_of<B: Backend>(
    pool: &Pool<B>,
    owner_id: i64,
) -> Result<Vec<String>, StoreError> {
    Sql::new(
        "SELECT o.name FROM owner_delegates d JOIN owners o ON o.id = d.delegate_id WHERE d.owner_id = $1 ORDER BY o.name",
    )
    .bind(owner_id)
    .all(pool)
    .await?
    .iter()
    .map(|r| r.text("name"))
    .collect()
}
