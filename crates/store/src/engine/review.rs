//! Review in SQLite: imported inventories, usage from workload logs,
//! findings the review rules raise, the report's counts and removal tests.

use std::collections::{BTreeMap, HashMap, HashSet};

use leash_core::scope::Scope;
use leash_core::{
    Environment, InvalidInput, Millis, OwnerKind, OwnerStatus, Severity, validate_len,
    validate_name,
};
use serde_json::json;

use super::authz::add_counts;
use super::exposures::{find_open_finding, insert_finding};
use super::{INSERT_CHUNK, Writer};
use crate::registry::SharedRegistry;
use crate::rows::{self, scopes_from, stored_count, words};
use crate::sql::{Arg, Backend, Pool, RowRead, Sql};
use crate::{
    ChurnChain, ImportSummary, ImportedCredential, NewFinding, RemovalTest, ReportNumbers,
    ReviewBatch, ReviewOutcome, ReviewSettings, RunUsage, StoreError, UsageRef, UsageRunTotal,
    UsageSubject, validate_fingerprint,
};

/// Most records in one import.
pub const MAX_IMPORT: usize = 100_000;
/// Most distinct values remembered per token as its usual set.
const SEEN_MAX: i64 = 256;
/// Most findings one sweep raises per kind (the rest wait for the next).
const SWEEP_MAX: usize = 10_000;
const DAY_MS: Millis = 86_400_000;

fn line_err(line: usize, msg: impl std::fmt::Display) -> StoreError {
    StoreError::Conflict(format!("line {line}: {msg}"))
}

/// `external:NAME`, the usage key and finding subject of a third-party token.
pub fn external_subject(name: &str) -> String {
    format!("external:{name}")
}

impl<B: Backend> Writer<B> {
    /// The id of the tracked external token `r` is (same name and
    /// fingerprint), None when neither is tracked, or a conflict when its
    /// name or fingerprint is tracked with a different partner.
    async fn tracked_twin(&mut self, r: &ImportedCredential) -> Result<Option<i64>, StoreError> {
        let existing = Sql::new(
            "SELECT id, name, fingerprint FROM external_tokens WHERE fingerprint = $1 OR name = $2",
        )
        .bind(&r.fingerprint)
        .bind(&r.name)
        .all(&mut self.conn)
        .await?;
        let mut same: Option<i64> = None;
        for row in &existing {
            let id = row.int("id")?;
            let name = row.text("name")?;
            let fp = row.text("fingerprint")?;
            if fp == r.fingerprint && name == r.name {
                same = Some(id);
            } else if fp == r.fingerprint {
                return Err(line_err(
                    r.line,
                    format!("this credential is already tracked as `{name}`; use that name"),
                ));
            } else {
                return Err(line_err(
                    r.line,
                    format!(
                        "`{name}` is already tracked with another fingerprint; rename the record"
                    ),
                ));
            }
        }
        Ok(same)
    }

    pub(super) async fn import_external(
        &mut self,
        records: Vec<ImportedCredential>,
        source: String,
        actor: &str,
        now: Millis,
    ) -> Result<ImportSummary, StoreError> {
        if records.is_empty() {
            return Err(StoreError::Conflict(
                "the import holds no records; nothing was imported".into(),
            ));
        }
        if records.len() > MAX_IMPORT {
            return Err(InvalidInput::TooMany {
                what: "records in one import",
                max: MAX_IMPORT,
            }
            .into());
        }
        validate_len("import source", &source, 500)?;
        // Check every record before writing any.
        struct Checked {
            owner_id: Option<i64>,
            workloads: Vec<i64>,
        }
        let mut checked = Vec::with_capacity(records.len());
        {
            let reg = self.registry.read();
            let by_email: HashMap<&str, i64> = reg
                .owners()
                .into_iter()
                .map(|o| (o.email.as_str(), o.id))
                .collect();
            for r in &records {
                validate_name("external token", &r.name).map_err(|e| line_err(r.line, e))?;
                validate_fingerprint(&r.fingerprint).map_err(|e| line_err(r.line, e))?;
                for s in &r.scopes {
                    validate_len("scope", s, 200).map_err(|e| line_err(r.line, e))?;
                }
                if let Some(s) = &r.stored_in {
                    validate_len("stored_in", s, 500).map_err(|e| line_err(r.line, e))?;
                }
                let owner_id = match &r.owner {
                    None => None,
                    Some(o) => Some(
                        reg.owner_by_name(o)
                            .map(|x| x.id)
                            .or_else(|| by_email.get(o.as_str()).copied())
                            .ok_or_else(|| {
                                line_err(
                                    r.line,
                                    format!(
                                        "owner `{o}` is not registered (by name or email); add it with `leash owner add` or leave the owner empty"
                                    ),
                                )
                            })?,
                    ),
                };
                let workloads = r
                    .workloads
                    .iter()
                    .map(|w| {
                        reg.workload_by_name(w).map(|x| x.id).ok_or_else(|| {
                            line_err(
                                r.line,
                                format!("workload `{w}` is not registered; add it with `leash workload add` or drop it from the record"),
                            )
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                checked.push(Checked {
                    owner_id,
                    workloads,
                });
            }
        }
        // Conflicts with what is tracked, and between records of this
        // import, are found before anything is written: a refused import
        // leaves nothing behind.
        let mut names: HashMap<&str, &str> = HashMap::new();
        let mut fingerprints: HashMap<&str, &str> = HashMap::new();
        for r in &records {
            self.tracked_twin(r).await?;
            let earlier = [
                (names.insert(&r.name, &r.fingerprint), &r.fingerprint),
                (fingerprints.insert(&r.fingerprint, &r.name), &r.name),
            ];
            for (seen, mine) in earlier {
                if seen.is_some_and(|other| other != mine) {
                    return Err(line_err(
                        r.line,
                        format!(
                            "`{}` appears earlier in this import with another fingerprint or name; each credential once, under one name",
                            r.name
                        ),
                    ));
                }
            }
        }
        let mut summary = ImportSummary::default();
        for (r, c) in records.iter().zip(&checked) {
            let same = self.tracked_twin(r).await?;
            let kind = format!("{}-{}", r.provider, r.credential_kind);
            let workloads = c
                .workloads
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(" ");
            let scopes = r.scopes.join(" ");
            match same {
                Some(id) => {
                    Sql::built(format!(
                        "UPDATE external_tokens SET kind = $1, owner_id = $2, workloads = $3, scopes = $4, stored_in = $5, \
                         provider = $6, credential_kind = $7, key_id = $8, issued_at = $9, expires_at = $10, \
                         last_used_at = {}(COALESCE(last_used_at, 0), COALESCE($11, 0)), imported_from = $12 WHERE id = $13",
                        B::DIALECT.greatest()
                    ))
                    .bind(&kind)
                    .bind(c.owner_id)
                    .bind(&workloads)
                    .bind(&scopes)
                    .bind(&r.stored_in)
                    .bind(&r.provider)
                    .bind(&r.credential_kind)
                    .bind(&r.key_id)
                    .bind(r.issued_at)
                    .bind(r.expires_at)
                    .bind(r.last_used_at)
                    .bind(&source)
                    .bind(id)
                    .run(&mut self.conn)
                    .await?;
                    summary.updated += 1;
                }
                None => {
                    Sql::new(
                        "INSERT INTO external_tokens (name, kind, owner_id, fingerprint, workloads, workflows, scopes, \
                         stored_in, connector, status, created_at, provider, credential_kind, key_id, issued_at, \
                         expires_at, last_used_at, imported_from) \
                         VALUES ($1, $2, $3, $4, $5, '', $6, $7, NULL, 'active', $8, $9, $10, $11, $12, $13, $14, $15)",
                    )
                    .bind(&r.name)
                    .bind(&kind)
                    .bind(c.owner_id)
                    .bind(&r.fingerprint)
                    .bind(&workloads)
                    .bind(&scopes)
                    .bind(&r.stored_in)
                    .bind(now)
                    .bind(&r.provider)
                    .bind(&r.credential_kind)
                    .bind(&r.key_id)
                    .bind(r.issued_at)
                    .bind(r.expires_at)
                    .bind(r.last_used_at)
                    .bind(&source)
                    .run(&mut self.conn)
                    .await?;
                    summary.created += 1;
                }
            }
            if c.owner_id.is_none() {
                summary.unowned += 1;
            }
        }
        self.append(
            now,
            "external.imported",
            actor,
            format!("import:{source}"),
            json!({"source": source, "created": summary.created, "updated": summary.updated, "unowned": summary.unowned}),
        );
        let findings: Vec<NewFinding> = records
            .iter()
            .zip(&checked)
            .filter(|(_, c)| c.owner_id.is_none())
            .map(|(r, _)| {
                unowned_finding(&r.name, &r.provider, &r.credential_kind, &r.scopes, &source)
            })
            .collect();
        let outcome = self.upsert_findings(findings, actor, now).await?;
        summary.findings = outcome.opened;
        Ok(summary)
    }

    /// Open each finding, or refresh the open one of its kind and subject.
    pub(super) async fn upsert_findings(
        &mut self,
        findings: Vec<NewFinding>,
        actor: &str,
        now: Millis,
    ) -> Result<ReviewOutcome, StoreError> {
        let mut out = ReviewOutcome::default();
        for f in findings {
            validate_len("finding summary", &f.summary, 2_000)?;
            match find_open_finding(&mut self.conn, &f.kind, &f.subject).await? {
                Some(open) => {
                    let severity = if f.severity.rank() > open.severity.rank() {
                        f.severity
                    } else {
                        open.severity
                    };
                    Sql::new(
                        "UPDATE findings SET severity = $1, summary = $2, evidence = $3, owner_id = COALESCE($4, owner_id) WHERE id = $5",
                    )
                    .bind(severity.as_str())
                    .bind(&f.summary)
                    .bind(merge_evidence(&open.evidence, f.evidence).to_string())
                    .bind(f.owner_id)
                    .bind(open.id)
                    .run(&mut self.conn)
                    .await?;
                    out.refreshed.push(open.id);
                }
                None => {
                    let finding = insert_finding(
                        &mut self.conn,
                        &f.kind,
                        f.severity,
                        &f.subject,
                        f.owner_id,
                        &f.summary,
                        &f.evidence,
                        now,
                    )
                    .await?;
                    self.append(
                        now,
                        "finding.opened",
                        actor,
                        format!("finding:{}", finding.id),
                        json!({"kind": f.kind, "severity": f.severity, "subject": f.subject}),
                    );
                    out.opened.push(finding.id);
                }
            }
        }
        Ok(out)
    }

    pub(super) async fn record_review(
        &mut self,
        batch: ReviewBatch,
        actor: &str,
        now: Millis,
    ) -> Result<ReviewOutcome, StoreError> {
        self.write_usage_totals(&batch.totals).await?;
        let mut runs: Vec<&UsageRunTotal> = batch.runs.iter().collect();
        runs.sort_unstable_by(|a, b| {
            (&a.token_id, &a.run, &a.step, &a.action, &a.resource).cmp(&(
                &b.token_id,
                &b.run,
                &b.step,
                &b.action,
                &b.resource,
            ))
        });
        for chunk in runs.chunks(INSERT_CHUNK / 2) {
            let mut q = Sql::new(
                "INSERT INTO usage_runs (token_id, run, step, action, resource, count, first_at, last_at) ",
            );
            q.push_values(chunk, |mut b, t| {
                b.push_bind(&t.token_id)
                    .push_bind(&t.run)
                    .push_bind(&t.step)
                    .push_bind(&t.action)
                    .push_bind(&t.resource)
                    .push_bind(stored_count(t.count))
                    .push_bind(t.first_at)
                    .push_bind(t.last_at);
            });
            q.push(" ON CONFLICT (token_id, run, step, action, resource) DO UPDATE SET ")
                .push(&add_counts(B::DIALECT, "usage_runs"));
            q.run(&mut self.conn).await?;
        }
        for (id, at) in &batch.last_used {
            Sql::built(format!(
                "UPDATE external_tokens SET last_used_at = {}(COALESCE(last_used_at, 0), $1) WHERE id = $2",
                B::DIALECT.greatest()
            ))
            .bind(*at)
            .bind(*id)
            .run(&mut self.conn)
            .await?;
        }
        if let Some(s) = &batch.source {
            self.count_source(s).await?;
        }
        self.upsert_findings(batch.findings, actor, now).await
    }

    pub(super) async fn count_source(&mut self, s: &crate::SourceCounts) -> Result<(), StoreError> {
        let n = stored_count;
        Sql::new(
            "INSERT INTO usage_sources (source, events, unknown_refs, skipped) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (source) DO UPDATE SET events = usage_sources.events + excluded.events, \
             unknown_refs = usage_sources.unknown_refs + excluded.unknown_refs, \
             skipped = usage_sources.skipped + excluded.skipped",
        )
        .bind(&s.source)
        .bind(n(s.events))
        .bind(n(s.unknown_refs))
        .bind(n(s.skipped))
        .run(&mut self.conn)
        .await?;
        Ok(())
    }

    pub(super) async fn save_removal_test(
        &mut self,
        t: RemovalTest,
        actor: &str,
        now: Millis,
    ) -> Result<RemovalTest, StoreError> {
        validate_len("removal test target", &t.target, 500)?;
        let scopes = t.scopes.join(" ");
        let evidence = t.evidence.to_string();
        let denied = i64::try_from(t.canary_denied).unwrap_or(i64::MAX);
        let row = if t.id == 0 {
            Sql::new(
                "INSERT INTO removal_tests (target_kind, target, workflow_id, workload_id, scopes, verdict, evidence, \
                 canary, canary_run, canary_denied, digest, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING *",
            )
            .bind(&t.target_kind)
            .bind(&t.target)
            .bind(t.workflow_id)
            .bind(t.workload_id)
            .bind(&scopes)
            .bind(&t.verdict)
            .bind(&evidence)
            .bind(&t.canary)
            .bind(t.canary_run)
            .bind(denied)
            .bind(&t.digest)
            .bind(now)
            .bind(now)
            .one(&mut self.conn)
            .await?
        } else {
            Sql::new(
                "UPDATE removal_tests SET verdict = $1, evidence = $2, canary = $3, canary_run = $4, canary_denied = $5, \
                 digest = $6, updated_at = $7 WHERE id = $8 RETURNING *",
            )
            .bind(&t.verdict)
            .bind(&evidence)
            .bind(&t.canary)
            .bind(t.canary_run)
            .bind(denied)
            .bind(&t.digest)
            .bind(now)
            .bind(t.id)
            .optional(&mut self.conn)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                what: "removal test",
                key: t.id.to_string(),
            })?
        };
        let saved = rows::removal_test(&row)?;
        self.append(
            now,
            "removal_test.verdict",
            actor,
            format!("removal_test:{}", saved.id),
            json!({"target": saved.target, "verdict": saved.verdict, "canary": saved.canary, "run": saved.canary_run}),
        );
        Ok(saved)
    }
}

/// Most items kept in a finding's evidence list.
const EVIDENCE_ITEMS: usize = 50;

/// New evidence replaces the old, except that `items` lists accumulate
/// (oldest first, deduplicated, at most 50).
pub fn merge_evidence(old: &serde_json::Value, mut new: serde_json::Value) -> serde_json::Value {
    if let (Some(old_items), Some(new_items)) = (
        old.get("items").and_then(|v| v.as_array()),
        new.get("items").and_then(|v| v.as_array()),
    ) {
        let mut items = old_items.clone();
        for i in new_items {
            if items.len() >= EVIDENCE_ITEMS {
                break;
            }
            if !items.contains(i) {
                items.push(i.clone());
            }
        }
        if let Some(obj) = new.as_object_mut() {
            obj.insert("items".into(), serde_json::Value::Array(items));
        }
    }
    new
}

fn unowned_finding(
    name: &str,
    provider: &str,
    kind: &str,
    scopes: &[String],
    source: &str,
) -> NewFinding {
    NewFinding {
        kind: "shadow_ownership".into(),
        severity: Severity::High,
        subject: external_subject(name),
        owner_id: None,
        summary: format!(
            "Imported {provider} {kind} `{name}` has no owner: nobody can be named to approve, rotate or retire it. Name an owner."
        ),
        evidence: json!({"reason": "no_owner", "scopes": scopes, "source": source}),
    }
}

pub(super) async fn get_removal_test<B: Backend>(
    pool: &Pool<B>,
    id: i64,
) -> Result<RemovalTest, StoreError> {
    Sql::new("SELECT * FROM removal_tests WHERE id = $1")
        .bind(id)
        .optional(pool)
        .await?
        .map(|r| rows::removal_test(&r))
        .transpose()?
        .ok_or_else(|| StoreError::NotFound {
            what: "removal test",
            key: id.to_string(),
        })
}

pub(super) async fn list_removal_tests<B: Backend>(
    pool: &Pool<B>,
    workflow_id: Option<i64>,
) -> Result<Vec<RemovalTest>, StoreError> {
    let rows =
        match workflow_id {
            Some(w) => Sql::new(
                "SELECT * FROM removal_tests WHERE workflow_id = $1 ORDER BY id DESC LIMIT 1000",
            )
            .bind(w)
            .all(pool)
            .await?,
            None => {
                Sql::new("SELECT * FROM removal_tests ORDER BY id DESC LIMIT 1000")
                    .all(pool)
                    .await?
            }
        };
    rows.iter().map(rows::removal_test).collect()
}

/// Rows per `IN (…)` lookup.
const LOOKUP_CHUNK: usize = 400;
/// Rows per page of a JSON-paged table scan.
const SCAN_PAGE: i64 = 20_000;

/// A Leash token's subject from the columns review needs (not the whole row).
/// `id, owner_id, workload_id, run_id, workflow_id, scopes, hex(secret_hash)` of a token.
type TokenSubjectRow = (
    String,
    i64,
    i64,
    Option<i64>,
    Option<i64>,
    String,
    Option<String>,
);

fn subject_of_token(row: TokenSubjectRow, reg: &crate::registry::Registry) -> UsageSubject {
    let (id, owner_id, workload_id, run, workflow_id, scopes, _) = row;
    let mut workloads = Vec::new();
    let mut identities = Vec::new();
    if let Some(w) = reg.workload(workload_id) {
        workloads.push(w.name.clone());
        if let Some(i) = &w.identity {
            identities.push((i.clone(), w.name.clone()));
        }
    }
    UsageSubject {
        subject: id,
        external_id: None,
        owner_id: Some(owner_id),
        workloads,
        identities,
        tools: workflow_id
            .and_then(|id| reg.workflow(id))
            .map(|w| w.tools.clone())
            .unwrap_or_default(),
        scopes: scopes.split_whitespace().map(str::to_owned).collect(),
        run,
        workload_token: true,
        ..Default::default()
    }
}

fn subject_of_external(
    row: &impl RowRead,
    registry: &SharedRegistry,
) -> Result<UsageSubject, StoreError> {
    let name = row.text("name")?;
    let ids = row.text("workloads")?;
    let scopes = row.text("scopes")?;
    let kind = row.opt_text("credential_kind")?;
    let reg = registry.read();
    let declared: Vec<_> = ids
        .split_whitespace()
        .filter_map(|v| v.parse::<i64>().ok())
        .filter_map(|id| reg.workload(id))
        .collect();
    Ok(UsageSubject {
        subject: external_subject(&name),
        external_id: Some(row.int("id")?),
        owner_id: row.opt_int("owner_id")?,
        workload_token: !declared.is_empty() || kind.as_deref() == Some("service_account_key"),
        workloads: declared.iter().map(|w| w.name.clone()).collect(),
        identities: declared
            .iter()
            .filter_map(|w| w.identity.clone().map(|i| (i, w.name.clone())))
            .collect(),
        scopes: words(&scopes),
        ..Default::default()
    })
}

/// Rows of `sql` (ending in `IN `) for `keys`, looked up in chunks.
async fn rows_in<'k, B: Backend, T>(
    pool: &Pool<B>,
    sql: &'static str,
    keys: &'k [T],
) -> Result<Vec<B::Row>, StoreError>
where
    &'k T: Into<Arg<'k>>,
{
    let mut out = Vec::new();
    for chunk in keys.chunks(LOOKUP_CHUNK) {
        let mut q = Sql::new(sql);
        q.push_list(chunk);
        out.extend(q.all(pool).await?);
    }
    Ok(out)
}

/// Keys per statement of [`json_rows_in`].
const JSON_LOOKUP_CHUNK: usize = 10_000;

/// The rows of `table` whose `key` is one of `keys`, as one JSON array of
/// arrays of `cols` per 10,000 keys (hex keys decoded to bytes first when
/// `hex_keys`; in `order` where the dialect needs to be told). The keys go in as one JSON array too: one statement and
/// one result per 10,000 keys, instead of a row copied column by column
/// across the connection's thread for every match, so large lookups cost a
/// fraction of what [`rows_in`] does.
async fn json_rows_in<B: Backend, R: serde::de::DeserializeOwned>(
    pool: &Pool<B>,
    cols: &str,
    table: &str,
    key: &str,
    hex_keys: bool,
    order: Option<&str>,
    keys: &[String],
) -> Result<Vec<R>, StoreError> {
    let d = B::DIALECT;
    let sql = format!(
        "SELECT {} AS found FROM {table} WHERE {key} IN ({})",
        d.json_rows(cols, order),
        d.json_array_values(1, hex_keys)
    );
    let mut out = Vec::new();
    for chunk in keys.chunks(JSON_LOOKUP_CHUNK) {
        let found = Sql::built(sql.clone())
            .bind(serde_json::to_string(chunk).map_err(|e| StoreError::Corrupt(e.to_string()))?)
            .one(pool)
            .await?
            .text("found")?;
        let rows: Vec<R> =
            serde_json::from_str(&found).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        out.extend(rows);
    }
    Ok(out)
}

/// Resolve many token references at once (a handful of indexed lookups per
/// 400 references), with what earlier usage showed for each.
pub(super) async fn usage_subjects<B: Backend>(
    pool: &Pool<B>,
    registry: &SharedRegistry,
    refs: Vec<UsageRef>,
) -> Result<Vec<Option<UsageSubject>>, StoreError> {
    let mut ids: Vec<String> = Vec::new();
    // secret hashes as lowercase hex (SHA-256: 64 digits)
    let mut hashes: Vec<String> = Vec::new();
    let mut names: Vec<String> = Vec::new();
    let mut fps: Vec<String> = Vec::new();
    for r in &refs {
        match r {
            UsageRef::Id(id) if id.starts_with("tok_") => ids.push(id.clone()),
            UsageRef::Id(name) => {
                names.push(name.strip_prefix("external:").unwrap_or(name).to_owned())
            }
            UsageRef::Fingerprint(fp) => {
                if fp.len() == 64 && fp.bytes().all(|b| b.is_ascii_hexdigit()) {
                    hashes.push(fp.to_ascii_lowercase());
                }
                fps.push(fp.clone());
            }
        }
    }
    let mut by_id: HashMap<String, UsageSubject> = HashMap::new();
    let mut by_hash: HashMap<String, String> = HashMap::new();
    let token_cols = format!(
        "id, owner_id, workload_id, run_id, workflow_id, scopes, {}",
        B::DIALECT.hex("secret_hash")
    );
    let mut rows: Vec<TokenSubjectRow> =
        json_rows_in(pool, &token_cols, "tokens", "id", false, None, &ids).await?;
    rows.extend(
        json_rows_in::<B, TokenSubjectRow>(
            pool,
            &token_cols,
            "tokens",
            "secret_hash",
            true,
            None,
            &hashes,
        )
        .await?,
    );
    {
        let reg = registry.read();
        for row in rows {
            let hash = row.6.as_deref().map(str::to_ascii_lowercase);
            let s = subject_of_token(row, &reg);
            if let Some(h) = hash {
                by_hash.insert(h, s.subject.clone());
            }
            by_id.insert(s.subject.clone(), s);
        }
    }
    let mut by_name: HashMap<String, UsageSubject> = HashMap::new();
    let mut by_fp: HashMap<String, String> = HashMap::new();
    for row in rows_in(pool, "SELECT * FROM external_tokens WHERE name IN ", &names)
        .await?
        .into_iter()
        .chain(
            rows_in(
                pool,
                "SELECT * FROM external_tokens WHERE fingerprint IN ",
                &fps,
            )
            .await?,
        )
    {
        let s = subject_of_external(&row, registry)?;
        let name = row.text("name")?;
        by_fp.insert(row.text("fingerprint")?, name.clone());
        by_name.insert(name, s);
    }
    // runs that ended
    let runs: Vec<i64> = by_id.values().filter_map(|s| s.run).collect();
    let mut ended: HashMap<i64, Millis> = HashMap::new();
    for row in rows_in(
        pool,
        "SELECT id, ended_at FROM runs WHERE ended_at IS NOT NULL AND id IN ",
        &runs,
    )
    .await?
    {
        ended.insert(row.int("id")?, row.int("ended_at")?);
    }
    for s in by_id.values_mut() {
        s.run_ended_at = s.run.and_then(|r| ended.get(&r).copied());
    }
    // what earlier usage showed
    let subjects: Vec<String> = by_id
        .values()
        .chain(by_name.values())
        .map(|s| s.subject.clone())
        .collect();
    let mut seen: HashMap<String, UsageSubject> = HashMap::new();
    // in key order (SQLite reads them so through the primary key)
    let used: Vec<(String, String, String, String, i64)> = json_rows_in(
        pool,
        "token_id, workload, tool, resource, count",
        "usage_totals",
        "token_id",
        false,
        Some("token_id, workload, action, resource, tool, allowed"),
        &subjects,
    )
    .await?;
    for (token_id, workload, tool, resource, count) in used {
        let e = seen.entry(token_id).or_default();
        e.seen_events += u64::try_from(count).unwrap_or(0);
        for (list, v) in [
            (&mut e.seen_workloads, workload),
            (&mut e.seen_tools, tool),
            (&mut e.seen_resources, resource),
        ] {
            if !v.is_empty() && list.len() < SEEN_MAX as usize && !list.contains(&v) {
                list.push(v);
            }
        }
    }
    let fill = |mut s: UsageSubject| {
        if let Some(x) = seen.get(&s.subject) {
            s.seen_events = x.seen_events;
            s.seen_workloads = x.seen_workloads.clone();
            s.seen_tools = x.seen_tools.clone();
            s.seen_resources = x.seen_resources.clone();
        }
        s
    };
    Ok(refs
        .iter()
        .map(|r| {
            let found = match r {
                UsageRef::Id(id) if id.starts_with("tok_") => by_id.get(id),
                UsageRef::Id(name) => by_name.get(name.strip_prefix("external:").unwrap_or(name)),
                UsageRef::Fingerprint(fp) => by_hash
                    .get(&fp.to_ascii_lowercase())
                    .and_then(|id| by_id.get(id))
                    .or_else(|| by_fp.get(fp).and_then(|n| by_name.get(n))),
            };
            found.cloned().map(fill)
        })
        .collect())
}

pub(super) async fn usage_subject<B: Backend>(
    pool: &Pool<B>,
    registry: &SharedRegistry,
    r: UsageRef,
) -> Result<Option<UsageSubject>, StoreError> {
    Ok(usage_subjects(pool, registry, vec![r])
        .await?
        .into_iter()
        .next()
        .flatten())
}

/// Back-to-back reissues of one workload and scope set whose effective
/// access spans longer than the threshold. Root tokens only (delegated ones
/// live inside their parent's span).
pub(super) async fn churn_chains<B: Backend>(
    pool: &Pool<B>,
    registry: &SharedRegistry,
    settings: ReviewSettings,
    now: Millis,
) -> Result<Vec<ChurnChain>, StoreError> {
    churn_chains_paged(pool, registry, settings, now, SCAN_PAGE).await
}

async fn churn_chains_paged<B: Backend>(
    pool: &Pool<B>,
    registry: &SharedRegistry,
    settings: ReviewSettings,
    now: Millis,
    page_rows: i64,
) -> Result<Vec<ChurnChain>, StoreError> {
    let threshold = settings.churn_threshold_ms;
    // One sequential pass over the root tokens (in the table's own order),
    // scope sets interned, then sorted here: cheaper than an SQL sort of
    // every row by (workload, scopes, issued).
    struct Root {
        workload_id: i64,
        scopes: u32,
        issued: Millis,
        ends: Millis,
        owner_id: i64,
        id: Box<str>,
    }
    /// `id, owner_id, workload_id, scopes, issued_at, ends` of a root token.
    #[derive(serde::Deserialize)]
    struct RootRow<'a>(
        #[serde(borrow)] std::borrow::Cow<'a, str>,
        i64,
        i64,
        #[serde(borrow)] std::borrow::Cow<'a, str>,
        Millis,
        Millis,
    );
    let mut scope_sets: HashMap<String, u32> = HashMap::new();
    let mut roots: Vec<Root> = Vec::new();
    // pages in key order, each one JSON document built by the database
    let d = B::DIALECT;
    let sql = format!(
        "SELECT {} AS page FROM \
         (SELECT id, owner_id, workload_id, scopes, issued_at, {}(expires_at, COALESCE(revoked_at, expires_at)) AS ends \
          FROM tokens WHERE id > $1 AND parent_id IS NULL AND break_glass = {} ORDER BY id LIMIT $2) AS roots",
        d.json_rows(
            "id, owner_id, workload_id, scopes, issued_at, ends",
            Some("id")
        ),
        d.least(),
        d.boolean(false),
    );
    let mut after = String::new();
    loop {
        let page = Sql::built(sql.clone())
            .bind(after.as_str())
            .bind(page_rows)
            .one(pool)
            .await?
            .text("page")?;
        let rows: Vec<RootRow<'_>> =
            serde_json::from_str(&page).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let Some(last) = rows.last() else { break };
        after = last.0.to_string();
        for RootRow(id, owner_id, workload_id, scopes, issued, ends) in rows {
            let next = scope_sets.len() as u32;
            let scopes = match scope_sets.get(scopes.as_ref()) {
                Some(i) => *i,
                None => {
                    scope_sets.insert(scopes.into_owned(), next);
                    next
                }
            };
            roots.push(Root {
                workload_id,
                scopes,
                issued,
                ends,
                owner_id,
                id: id.into(),
            });
        }
    }
    roots.sort_unstable_by_key(|r| (r.workload_id, r.scopes, r.issued));
    let names: HashMap<u32, &str> = scope_sets.iter().map(|(k, v)| (*v, k.as_str())).collect();
    let mut out = Vec::new();
    let flush = |c: Option<(ChurnChain, u32)>, out: &mut Vec<ChurnChain>| {
        if let Some((c, _)) = c
            && c.tokens > 1
            && c.last_end.min(now.max(c.first_issued)) - c.first_issued > threshold
        {
            out.push(c);
        }
    };
    let mut cur: Option<(ChurnChain, u32)> = None;
    for r in &roots {
        let continues = cur.as_ref().is_some_and(|(c, scopes)| {
            c.workload_id == r.workload_id
                && *scopes == r.scopes
                && r.issued <= c.last_end + settings.churn_gap_ms
        });
        if continues {
            if let Some((c, _)) = cur.as_mut() {
                c.tokens += 1;
                c.last_end = c.last_end.max(r.ends);
                c.last_token = r.id.to_string();
            }
        } else {
            flush(cur.take(), &mut out);
            cur = Some((
                ChurnChain {
                    workload_id: r.workload_id,
                    workload: String::new(),
                    owner_id: r.owner_id,
                    scopes: names
                        .get(&r.scopes)
                        .map(|s| s.split_whitespace().map(str::to_owned).collect())
                        .unwrap_or_default(),
                    tokens: 1,
                    first_issued: r.issued,
                    last_end: r.ends,
                    first_token: r.id.to_string(),
                    last_token: r.id.to_string(),
                },
                r.scopes,
            ));
        }
    }
    flush(cur.take(), &mut out);
    let reg = registry.read();
    for c in &mut out {
        c.workload = reg
            .workload(c.workload_id)
            .map(|w| w.name.clone())
            .unwrap_or_else(|| c.workload_id.to_string());
    }
    out.sort_by(|a, b| b.effective_hours().total_cmp(&a.effective_hours()));
    Ok(out)
}

pub(super) async fn review_sweep<B: Backend>(
    pool: &Pool<B>,
    registry: &SharedRegistry,
    settings: ReviewSettings,
    now: Millis,
) -> Result<(Vec<NewFinding>, Vec<ChurnChain>), StoreError> {
    let mut out = Vec::new();
    // stale external tokens
    let stale_before = now - Millis::from(settings.stale_days) * DAY_MS;
    let rows = Sql::new(
        "SELECT id, name, owner_id, provider, credential_kind, last_used_at, COALESCE(issued_at, created_at) AS since \
         FROM external_tokens WHERE status = 'active' AND COALESCE(last_used_at, issued_at, created_at) < $1 ORDER BY id LIMIT $2",
    )
    .bind(stale_before)
    .bind(SWEEP_MAX as i64)
    .all(pool)
    .await?;
    for row in rows {
        let name = row.text("name")?;
        let last = row.opt_int("last_used_at")?;
        let since = row.int("since")?;
        let idle_days = (now - last.unwrap_or(since)) / DAY_MS;
        out.push(NewFinding {
            kind: "stale_external".into(),
            severity: Severity::Medium,
            subject: external_subject(&name),
            owner_id: row.opt_int("owner_id")?,
            summary: format!(
                "External token `{name}` has not been used for {idle_days} days (threshold {} days); revoke it or say why it stays.",
                settings.stale_days
            ),
            evidence: json!({"last_used_at": last, "since": since, "idle_days": idle_days, "threshold_days": settings.stale_days}),
        });
    }
    // shadow ownership: externals with no or an offboarded owner; team
    // owners with no business owner that hold live tokens
    let (offboarded, teams): (HashSet<i64>, Vec<(i64, String)>) = {
        let reg = registry.read();
        let owners = reg.owners();
        (
            owners
                .iter()
                .filter(|o| o.status == OwnerStatus::Offboarded)
                .map(|o| o.id)
                .collect(),
            owners
                .iter()
                .filter(|o| {
                    o.kind == OwnerKind::Team
                        && !o.business_owner
                        && o.status == OwnerStatus::Active
                })
                .map(|o| (o.id, o.name.clone()))
                .collect(),
        )
    };
    let rows = Sql::new(
        "SELECT name, owner_id, scopes FROM external_tokens WHERE status = 'active' ORDER BY id LIMIT $1",
    )
    .bind(SWEEP_MAX as i64 * 10)
    .all(pool)
    .await?;
    for row in rows {
        let owner = row.opt_int("owner_id")?;
        let name = row.text("name")?;
        let scopes = row.text("scopes")?;
        let reason = match owner {
            None => "no_owner",
            Some(id) if offboarded.contains(&id) => "owner_offboarded",
            Some(_) => continue,
        };
        out.push(NewFinding {
            kind: "shadow_ownership".into(),
            severity: Severity::High,
            subject: external_subject(&name),
            owner_id: owner,
            summary: if reason == "no_owner" {
                format!("External token `{name}` has no owner: nobody can be named for it. Name an owner.")
            } else {
                format!("External token `{name}` belongs to an offboarded owner; name a new owner or revoke it.")
            },
            evidence: json!({"reason": reason, "scopes": scopes.split_whitespace().collect::<Vec<_>>()}),
        });
    }
    for (id, name) in teams {
        let live = Sql::new(
            "SELECT COUNT(*) AS n FROM tokens WHERE owner_id = $1 AND revoked_at IS NULL AND expires_at > $2",
        )
        .bind(id)
        .bind(now)
        .one(pool)
        .await?
        .int("n")?;
        let ext = Sql::new(
            "SELECT COUNT(*) AS n FROM external_tokens WHERE owner_id = $1 AND status = 'active'",
        )
        .bind(id)
        .one(pool)
        .await?
        .int("n")?;
        if live + ext == 0 {
            continue;
        }
        out.push(NewFinding {
            kind: "shadow_ownership".into(),
            severity: Severity::Medium,
            subject: format!("owner:{name}"),
            owner_id: Some(id),
            summary: format!(
                "Owner `{name}` is a platform team with no business owner, yet holds {live} live token(s) and {ext} external credential(s); name a business owner."
            ),
            evidence: json!({"reason": "team_without_business_owner", "live_tokens": live, "external_tokens": ext}),
        });
    }
    // reissue churn
    let threshold_h = settings.churn_threshold_ms as f64 / 3_600_000.0;
    let t = std::time::Instant::now();
    let chains = churn_chains(pool, registry, settings, now).await?;
    tracing::debug!(
        churn_ms = t.elapsed().as_millis() as u64,
        "churn chains read"
    );
    for c in chains.iter().take(SWEEP_MAX) {
        let hours = c.effective_hours();
        out.push(NewFinding {
            kind: "reissue_churn".into(),
            severity: if hours > threshold_h * 7.0 {
                Severity::High
            } else {
                Severity::Medium
            },
            subject: format!("workload:{}:{}", c.workload, c.scopes.join(" ")),
            owner_id: Some(c.owner_id),
            summary: format!(
                "Workload `{}` was re-issued `{}` {} times back to back: effective access spans {hours:.2} h although each token is short-lived (threshold {threshold_h:.2} h).",
                c.workload,
                c.scopes.join(" "),
                c.tokens,
            ),
            evidence: json!({
                "workload": c.workload, "scopes": c.scopes, "tokens": c.tokens,
                "first_issued": c.first_issued, "last_end": c.last_end,
                "effective_hours": (hours * 100.0).round() / 100.0, "threshold_hours": threshold_h,
                "effective_seconds": (c.last_end - c.first_issued) / 1000,
                "first_token": c.first_token, "last_token": c.last_token,
            }),
        });
    }
    // unused privilege over the last N ended runs of each workflow and workload
    let pairs =
        Sql::new("SELECT DISTINCT workflow_id, workload_id FROM runs WHERE state <> 'running' ORDER BY workflow_id, workload_id")
            .all(pool)
            .await?;
    for row in pairs {
        let workflow_id = row.int("workflow_id")?;
        let workload_id = row.int("workload_id")?;
        let runs = runs_usage(pool, workflow_id, Some(workload_id), settings.unused_runs).await?;
        if runs.len() < settings.unused_runs as usize {
            continue;
        }
        let mut granted: BTreeMap<String, usize> = BTreeMap::new();
        let mut used: HashSet<String> = HashSet::new();
        for run in &runs {
            let mut scopes_in_run: Vec<Scope> = Vec::new();
            for (_, scopes) in &run.tokens {
                for s in scopes {
                    if let Ok(sc) = s.parse::<Scope>()
                        && !scopes_in_run.contains(&sc)
                    {
                        *granted.entry(s.clone()).or_default() += 1;
                        scopes_in_run.push(sc);
                    }
                }
            }
            for u in &run.uses {
                for sc in &scopes_in_run {
                    if scope_allows(sc, &u.resource, &u.action) {
                        used.insert(sc.to_string());
                    }
                }
            }
        }
        let unused: Vec<&String> = granted.keys().filter(|s| !used.contains(*s)).collect();
        if unused.is_empty() {
            continue;
        }
        let (workflow, workload, owner_id) = {
            let reg = registry.read();
            (
                reg.workflow(workflow_id)
                    .map(|w| w.name.clone())
                    .unwrap_or_default(),
                reg.workload(workload_id)
                    .map(|w| w.name.clone())
                    .unwrap_or_default(),
                reg.workload(workload_id).map(|w| w.owner_id),
            )
        };
        let suggested: Vec<&String> = granted.keys().filter(|s| used.contains(*s)).collect();
        let any_write = unused
            .iter()
            .any(|s| s.parse::<Scope>().is_ok_and(|sc| sc.is_write()));
        out.push(NewFinding {
            kind: "unused_privilege".into(),
            severity: if any_write { Severity::High } else { Severity::Low },
            subject: format!("workflow:{workflow}:{workload}"),
            owner_id,
            summary: format!(
                "Workload `{workload}` was granted {} in workflow `{workflow}` and used none of it in the last {} runs; right-size it to {}.",
                unused.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", "),
                runs.len(),
                if suggested.is_empty() { "no scopes".to_owned() } else { suggested.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(" ") },
            ),
            evidence: json!({
                "workflow": workflow, "workload": workload,
                "runs": runs.iter().map(|r| r.run).collect::<Vec<_>>(),
                "unused": unused, "used": suggested, "suggested_scopes": suggested,
            }),
        });
    }
    Ok((out, chains))
}

/// Does `scope` allow `action` on a logged `TYPE:ID` (or `TYPE`) resource?
pub fn scope_allows(scope: &Scope, resource: &str, action: &str) -> bool {
    let (ty, id) = match resource.split_once(':') {
        Some((t, i)) => (t, Some(i)),
        None => (resource, None),
    };
    scope.allows(ty, id, action)
}

pub(super) async fn runs_usage<B: Backend>(
    pool: &Pool<B>,
    workflow_id: i64,
    workload_id: Option<i64>,
    last: u32,
) -> Result<Vec<RunUsage>, StoreError> {
    let runs = Sql::new(
        "SELECT * FROM runs WHERE workflow_id = $1 AND ($2 IS NULL OR workload_id = $2) AND state <> 'running' \
         ORDER BY id DESC LIMIT $3",
    )
    .bind(workflow_id)
    .bind(workload_id)
    .bind(last)
    .all(pool)
    .await?;
    let mut out = Vec::with_capacity(runs.len());
    for row in runs {
        let run = rows::run(&row)?;
        let tokens =
            Sql::new("SELECT id, scopes FROM tokens WHERE run_id = $1 ORDER BY id LIMIT 1000")
                .bind(run.id)
                .all(pool)
                .await?
                .iter()
                .map(|r| {
                    Ok((
                        r.text("id")?,
                        scopes_from(&r.text("scopes")?)?
                            .iter()
                            .map(ToString::to_string)
                            .collect(),
                    ))
                })
                .collect::<Result<Vec<(String, Vec<String>)>, StoreError>>()?;
        let mut uses = Vec::new();
        for (id, _) in &tokens {
            let found = Sql::new(
                "SELECT * FROM usage_runs WHERE token_id = $1 \
                 ORDER BY first_at, run, step, action, resource LIMIT 1000",
            )
            .bind(id)
            .all(pool)
            .await?;
            for r in &found {
                uses.push(rows::usage_run_total(r)?);
            }
        }
        out.push(RunUsage {
            run: run.id,
            state: run.state.to_string(),
            started_at: run.started_at,
            ended_at: run.ended_at,
            digest: run.digest,
            tokens,
            uses,
        });
    }
    Ok(out)
}

pub(super) async fn finding_counts<B: Backend>(
    pool: &Pool<B>,
) -> Result<Vec<(String, String, u64)>, StoreError> {
    let mut out = Vec::new();
    for row in Sql::new(
        "SELECT kind, status, COUNT(*) AS n FROM findings GROUP BY kind, status ORDER BY kind, status",
    )
    .all(pool)
    .await?
    {
        out.push((row.text("kind")?, row.text("status")?, rows::count(row.int("n")?)));
    }
    Ok(out)
}

pub(super) async fn report_numbers<B: Backend>(
    pool: &Pool<B>,
    registry: &SharedRegistry,
    caps: leash_core::issuance::TtlCaps,
    now: Millis,
) -> Result<ReportNumbers, StoreError> {
    let mut n = ReportNumbers::default();
    let u = |v: i64| u64::try_from(v).unwrap_or(0);
    let (active_owners, env_of): (HashSet<i64>, HashMap<i64, Environment>) = {
        let reg = registry.read();
        (
            reg.owners()
                .iter()
                .filter(|o| o.status == OwnerStatus::Active)
                .map(|o| o.id)
                .collect(),
            reg.workloads()
                .iter()
                .map(|w| (w.id, w.environment))
                .collect(),
        )
    };
    n.leash_total = u(Sql::new("SELECT COUNT(*) AS n FROM tokens")
        .one(pool)
        .await?
        .int("n")?);
    // live tokens grouped by what the report asks of them
    let rows = Sql::new(
        "SELECT owner_id, workload_id, run_id IS NOT NULL AS bound, has_write, justification IS NOT NULL AS justified, \
         parent_id IS NOT NULL AS delegated, break_glass, \
         id IN (SELECT token_id FROM approvals WHERE token_id IS NOT NULL) AS approved, \
         (expires_at - issued_at) / 1000 AS ttl, COUNT(*) AS n \
         FROM tokens WHERE revoked_at IS NULL AND expires_at > $1 \
         GROUP BY owner_id, workload_id, bound, has_write, justified, delegated, break_glass, approved, ttl",
    )
    .bind(now)
    .all(pool)
    .await?;
    for row in rows {
        let count = u(row.int("n")?);
        let owner = row.int("owner_id")?;
        let workload = row.int("workload_id")?;
        let bound = row.flag("bound")?;
        let write = row.flag("has_write")?;
        let justified = row.flag("justified")?;
        let delegated = row.flag("delegated")?;
        let break_glass = row.flag("break_glass")?;
        let approved = row.flag("approved")?;
        let ttl = row.int("ttl")?;
        n.leash_live += count;
        if active_owners.contains(&owner) {
            n.live_owned += count;
        }
        if bound {
            n.live_run_bound += count;
        }
        let cap = env_of
            .get(&workload)
            .map(|e| caps.cap(*e))
            .unwrap_or(caps.prod);
        if !break_glass && u(ttl) > cap {
            n.live_over_ttl_cap += count;
        }
        if write {
            n.live_write += count;
            if justified {
                n.live_write_justified += count;
            }
            // delegated tokens only narrow an approved parent
            if approved || delegated {
                n.live_write_approved += count;
            }
        }
    }
    let rows = Sql::new(
        "SELECT status, owner_id IS NOT NULL AND owner_id IN (SELECT id FROM owners WHERE status = 'active') AS owned, \
         workloads <> '' AS has_workloads, scopes <> '' AS has_scopes, \
         connector IS NOT NULL OR expires_at IS NOT NULL AS has_trigger, COUNT(*) AS n FROM external_tokens \
         GROUP BY status, owned, has_workloads, has_scopes, has_trigger",
    )
    .all(pool)
    .await?;
    for row in rows {
        let count = u(row.int("n")?);
        let status = row.text("status")?;
        n.external_total += count;
        if status != "active" {
            continue;
        }
        n.external_active += count;
        if row.flag("owned")? {
            n.external_owned += count;
        }
        if row.flag("has_workloads")? {
            n.external_with_workloads += count;
        }
        if row.flag("has_scopes")? {
            n.external_with_scopes += count;
        }
        if row.flag("has_trigger")? {
            n.external_with_trigger += count;
        }
    }
    // exposures Leash could revoke: its own live tokens, or tracked ones with a connector
    let rows = Sql::new(
        "SELECT action, revoked_at, detected_at FROM exposures WHERE action IN ('revoked', 'matched_external') ORDER BY id",
    )
    .all(pool)
    .await?;
    for row in rows {
        let action = row.text("action")?;
        let revoked_at = row.opt_int("revoked_at")?;
        let detected = row.int("detected_at")?;
        if action == "matched_external" && revoked_at.is_none() {
            // a third-party secret with no connector: the owner was told
            continue;
        }
        n.exposures_revocable += 1;
        if let Some(at) = revoked_at {
            n.exposures_revoked += 1;
            n.revocation_latencies_ms.push(u(at - detected));
        }
    }
    n.revocation_latencies_ms.sort_unstable();
    for row in Sql::new("SELECT source, events, unknown_refs FROM usage_sources")
        .all(pool)
        .await?
    {
        let source = row.text("source")?;
        let events = u(row.int("events")?);
        if source == "decision" {
            n.decisions += events;
        } else {
            n.log_events += events;
            n.unknown_refs += u(row.int("unknown_refs")?);
        }
    }
    let d = B::DIALECT;
    n.denied = u(Sql::built(format!(
        "SELECT CAST(SUM(count) AS BIGINT) AS n FROM usage_totals WHERE allowed = {}",
        d.boolean(false)
    ))
    .one(pool)
    .await?
    .opt_int("n")?
    .unwrap_or(0));
    let bg = Sql::built(format!(
        "SELECT COUNT(*) AS total, \
         SUM(CASE WHEN revoked_at IS NULL AND expires_at > $1 THEN 1 ELSE 0 END) AS live, \
         SUM(CASE WHEN revoked_at IS NULL AND expires_at <= $1 THEN 1 ELSE 0 END) AS overdue \
         FROM tokens WHERE break_glass = {}",
        d.boolean(true)
    ))
    .bind(now)
    .one(pool)
    .await?;
    n.break_glass_total = u(bg.int("total")?);
    n.break_glass_live = u(bg.opt_int("live")?.unwrap_or(0));
    n.break_glass_overdue = u(bg.opt_int("overdue")?.unwrap_or(0));
    Ok(n)
}

#[cfg(test)]
mod tests {
    // Test code: an unexpected error should fail the test loudly.
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use crate::engine::SqlStore;
    use crate::test_pg::PgDatabase;
    use crate::{PgStore, SqliteStore, StoreConfig};

    /// A SQLite store, and a pool that writes rows straight into its tables.
    async fn sqlite() -> (tempfile::TempDir, SqliteStore, Pool<sqlx::Sqlite>) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path(), StoreConfig::default())
            .await
            .unwrap();
        let path = dir.path().join("leash.db");
        let raw = sqlx::SqlitePool::connect_with(crate::sqlite::connect_options(&path))
            .await
            .unwrap();
        (dir, store, Pool(raw))
    }

    /// The same on a fresh PostgreSQL database (None when skipped).
    async fn postgres() -> Option<(PgDatabase, PgStore, Pool<sqlx::Postgres>)> {
        let db = PgDatabase::create().await?;
        let store = PgStore::open(&db.url, StoreConfig::default())
            .await
            .unwrap();
        let raw = sqlx::PgPool::connect(&db.url).await.unwrap();
        Some((db, store, Pool(raw)))
    }

    /// Each named `async fn(&SqlStore<B>, &Pool<B>)` once per backend.
    macro_rules! on_every_backend {
        ($($name:ident),* $(,)?) => {$(
            mod $name {
                #[tokio::test]
                async fn sqlite() {
                    let (_dir, store, raw) = super::sqlite().await;
                    super::$name(&store, &raw).await
                }
                #[tokio::test]
                async fn postgres() {
                    if let Some((_db, store, raw)) = super::postgres().await {
                        super::$name(&store, &raw).await
                    }
                }
            }
        )*};
    }

    on_every_backend!(
        chains_are_the_same_whatever_the_page_size,
        many_references_resolve_in_chunks_by_id_and_fingerprint,
    );

    /// A root token row written straight into the table.
    async fn token<B: Backend>(
        pool: &Pool<B>,
        id: &str,
        workload: i64,
        scopes: &str,
        issued: i64,
        hash: Option<[u8; 32]>,
    ) {
        Sql::new(
            "INSERT INTO tokens (id, format, secret_hash, owner_id, workload_id, scopes, audience, issued_at, expires_at, has_write) \
             VALUES ($1, 'opaque', $2, 7, $3, $4, 'api', $5, $6, $7)",
        )
        .bind(id)
        .bind(hash.map(|h| h.to_vec()))
        .bind(workload)
        .bind(scopes)
        .bind(issued)
        .bind(issued + 600_000)
        .bind(false)
        .run(pool)
        .await
        .unwrap();
    }

    async fn plan(pool: &Pool<sqlx::Sqlite>, sql: &str) -> String {
        let rows = Sql::built(format!("EXPLAIN QUERY PLAN {sql}"))
            .bind("x")
            .bind("y")
            .all(pool)
            .await
            .unwrap();
        rows.iter()
            .map(|r| r.text("detail").unwrap())
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn chains_are_the_same_whatever_the_page_size<B: Backend>(
        store: &SqlStore<B>,
        raw: &Pool<B>,
    ) {
        let pool = &store.reads;
        let hour = 3_600_000;
        // workload 1: six back-to-back 10-minute tokens (a 1 h chain), then a
        // gap, then two more; workload 2: one token; scopes with a quote and
        // a backslash come back exactly (JSON escapes)
        for i in 0..6 {
            token(
                raw,
                &format!("tok_a{i}"),
                1,
                "tickets:read",
                i * 600_000,
                None,
            )
            .await;
        }
        token(raw, "tok_b0", 1, "tickets:read", 10 * hour, None).await;
        token(raw, "tok_b1", 1, "tickets:read", 10 * hour + 600_000, None).await;
        token(raw, "tok_c0", 2, r#"odd:"x\y":read"#, 0, None).await;
        token(raw, "tok_c1", 2, r#"odd:"x\y":read"#, 600_000, None).await;
        let settings = ReviewSettings {
            churn_gap_ms: 60_000,
            churn_threshold_ms: 15 * 60_000,
            ..Default::default()
        };
        let now = 100 * hour;
        let whole = churn_chains_paged(pool, &store.registry, settings, now, 10_000)
            .await
            .unwrap();
        for page in [1, 2, 3, 7] {
            let paged = churn_chains_paged(pool, &store.registry, settings, now, page)
                .await
                .unwrap();
            assert_eq!(
                format!("{paged:?}"),
                format!("{whole:?}"),
                "page size {page}"
            );
        }
        // the 1 h chain first, then the two 20-minute ones; nothing else
        let got: Vec<_> = whole
            .iter()
            .map(|c| {
                (
                    c.workload_id,
                    c.tokens,
                    c.last_end - c.first_issued,
                    c.first_token.as_str(),
                    c.last_token.as_str(),
                    c.scopes.clone(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    1,
                    6,
                    hour,
                    "tok_a0",
                    "tok_a5",
                    vec!["tickets:read".to_owned()]
                ),
                (
                    1,
                    2,
                    20 * 60_000,
                    "tok_b0",
                    "tok_b1",
                    vec!["tickets:read".to_owned()]
                ),
                (
                    2,
                    2,
                    20 * 60_000,
                    "tok_c0",
                    "tok_c1",
                    vec![r#"odd:"x\y":read"#.to_owned()]
                ),
            ]
        );
    }

    async fn many_references_resolve_in_chunks_by_id_and_fingerprint<B: Backend>(
        store: &SqlStore<B>,
        raw: &Pool<B>,
    ) {
        let pool = &store.reads;
        token(
            raw,
            "tok_known",
            1,
            "tickets:read repo:acme/api:write",
            5,
            Some([7; 32]),
        )
        .await;
        // more unknown references than one statement takes, the known ones last
        let mut refs: Vec<UsageRef> = (0..JSON_LOOKUP_CHUNK + 5)
            .map(|i| UsageRef::Id(format!("tok_unknown{i}")))
            .collect();
        refs.push(UsageRef::Id("tok_known".into()));
        refs.push(UsageRef::Fingerprint(hex::encode([7u8; 32])));
        refs.push(UsageRef::Fingerprint(hex::encode([8u8; 32])));
        refs.push(UsageRef::Fingerprint("not hex".into()));
        refs.push(UsageRef::Fingerprint(hex::encode([7u8; 32]).to_uppercase()));
        let found = usage_subjects(pool, &store.registry, refs.clone())
            .await
            .unwrap();
        assert_eq!(found.len(), refs.len());
        let n = JSON_LOOKUP_CHUNK + 5;
        assert!(found[..n].iter().all(Option::is_none));
        for s in [&found[n], &found[n + 1]] {
            let s = s.as_ref().unwrap();
            assert_eq!(s.subject, "tok_known");
            assert_eq!(s.owner_id, Some(7));
            assert_eq!(s.scopes, ["tickets:read", "repo:acme/api:write"]);
        }
        assert!(found[n + 2].is_none() && found[n + 3].is_none());
        assert_eq!(found[n + 4].as_ref().unwrap().subject, "tok_known");
    }

    /// SQLite's query plans (PostgreSQL's planner chooses by statistics).
    #[tokio::test]
    async fn lookups_use_their_indexes() {
        let (_dir, store, _raw) = sqlite().await;
        let pool = &store.reads;
        let open = plan(
            pool,
            "SELECT * FROM findings WHERE kind = $1 AND subject = $2 AND status = 'open' ORDER BY id DESC LIMIT 1",
        )
        .await;
        assert!(open.contains("USING INDEX findings_open"), "{open}");
        let denied = plan(
            pool,
            "SELECT SUM(count) FROM usage_totals WHERE allowed = 0 AND $1 <> $2",
        )
        .await;
        assert!(denied.contains("usage_totals_denied"), "{denied}");
        let by_id = plan(
            pool,
            "SELECT id FROM tokens WHERE id IN (SELECT (value) FROM json_each($1)) AND $2 <> ''",
        )
        .await;
        assert!(by_id.contains("SEARCH tokens USING PRIMARY KEY"), "{by_id}");
    }
}
