//! Review endpoints: inventory import, usage ingest, the review sweep, the
//! controls-evidence report and removability tests (with canaries).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use leash_core::Run;
use leash_core::scope::Scope;
use leash_review::report::{
    BreakGlass, Churn, ChurnChain, ExposureSignal, FindingCount, Questions, Ratio, RemovalRow,
    Report, Signals, TokenTotals, UsageTotals,
};
use leash_store::{ImportSummary, ImportedCredential, RemovalTest, ReviewOutcome};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::dto::ts;
use super::{ApiJson, ApiQuery};
use crate::error::{ApiError, ApiResult};
use crate::review::IngestOutcome;
use crate::review::removal;
use crate::{App, AppState};

/// Largest import file.
pub const MAX_IMPORT_BODY: usize = 32 * 1024 * 1024;
/// Largest ingest batch.
pub const MAX_INGEST_BODY: usize = 64 * 1024 * 1024;
const OPERATOR: &str = "operator";
/// How often the registry-wide review rules run.
const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ImportQuery {
    /// `auto` (default), `json` or `csv`.
    pub format: Option<String>,
    /// Where the export came from (kept with each record and in the audit log).
    pub source: Option<String>,
}

/// What an import did.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ImportView {
    pub records: u64,
    pub created: u64,
    pub updated: u64,
    /// Records nobody owns (each opened a `shadow_ownership` finding).
    pub unowned: u64,
    pub findings: Vec<i64>,
}

#[utoipa::path(post, path = "/v1/external-tokens/import", tag = "review", params(ImportQuery),
    request_body(content = String, description = "A JSON or CSV export of OAuth grants, API keys or service-account keys"),
    responses((status = 200, body = ImportView), (status = 400, body = crate::error::Problem)))]
pub async fn import(
    State(app): State<AppState>,
    ApiQuery(q): ApiQuery<ImportQuery>,
    body: Bytes,
) -> ApiResult<Json<ImportView>> {
    use leash_review::import::Format;
    let format = match q.format.as_deref().unwrap_or("auto") {
        "auto" => Format::Auto,
        "json" => Format::Json,
        "csv" => Format::Csv,
        other => {
            return Err(ApiError::bad_request(format!(
                "unknown import format `{other}`; use auto, json or csv"
            )));
        }
    };
    let source = q.source.unwrap_or_else(|| "import".into());
    let records = tokio::task::spawn_blocking(move || leash_review::import::parse(&body, format))
        .await
        .map_err(|e| ApiError::internal(format!("the import parser stopped: {e}")))?
        .map_err(|e| ApiError::bad_request(format!("{e}; nothing was imported")))?;
    let n = records.len() as u64;
    let records: Vec<ImportedCredential> = records
        .into_iter()
        .map(|r| ImportedCredential {
            line: r.line,
            name: r.name,
            credential_kind: r.kind.as_str().to_owned(),
            provider: r.provider,
            owner: r.owner,
            scopes: r.scopes,
            issued_at: r.created_at,
            last_used_at: r.last_used_at,
            expires_at: r.expires_at,
            stored_in: r.stored_in,
            fingerprint: r.fingerprint,
            key_id: r.key_id,
            workloads: r.workloads,
        })
        .collect();
    let ImportSummary {
        created,
        updated,
        unowned,
        findings,
    } = app
        .store
        .import_external(records, source, OPERATOR)
        .await
        .map_err(|e| ApiError::from(e).with_suffix("; nothing was imported"))?;
    app.review.forget().await;
    Ok(Json(ImportView {
        records: n,
        created,
        updated,
        unowned,
        findings,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct IngestQuery {
    /// A name for where the lines come from (default `log`).
    pub source: Option<String>,
    /// The file line of the body's first line (default 1), so errors name file lines.
    pub first_line: Option<usize>,
}

#[utoipa::path(post, path = "/v1/usage/ingest", tag = "review", params(IngestQuery),
    request_body(content = String, description = "JSON lines, or an OpenTelemetry (OTLP JSON) logs document"),
    responses((status = 200, body = IngestOutcome), (status = 400, body = crate::error::Problem)))]
pub async fn ingest(
    State(app): State<AppState>,
    ApiQuery(q): ApiQuery<IngestQuery>,
    body: Bytes,
) -> ApiResult<Json<IngestOutcome>> {
    let source = q.source.unwrap_or_else(|| "log".into());
    if source == "decision" || source.is_empty() || source.len() > 100 {
        return Err(ApiError::bad_request(
            "`source` names where the lines come from (1-100 characters, not `decision`)",
        ));
    }
    let first = q.first_line.unwrap_or(1).max(1);
    let lines = body.iter().filter(|b| **b == b'\n').count() as u64
        + u64::from(!body.is_empty() && body.last() != Some(&b'\n'));
    let parse_started = std::time::Instant::now();
    let parsed = tokio::task::spawn_blocking(move || {
        if first == 1 {
            leash_review::logs::parse(&body)
        } else {
            leash_review::logs::parse_lines(&body, first)
        }
    })
    .await
    .map_err(|e| ApiError::internal(format!("the log parser stopped: {e}")))?
    .map_err(|e| ApiError::bad_request(format!("{e}; nothing from this batch was recorded")))?;
    tracing::debug!(
        lines,
        parse_ms = parse_started.elapsed().as_millis() as u64,
        "usage batch parsed"
    );
    let out = app
        .review
        .ingest(app.store.as_ref(), &source, lines, parsed, OPERATOR)
        .await?;
    Ok(Json(out))
}

#[utoipa::path(post, path = "/v1/review/sweep", tag = "review",
    responses((status = 200, body = Object)))]
pub async fn sweep(State(app): State<AppState>) -> ApiResult<Json<ReviewOutcome>> {
    Ok(Json(
        app.review
            .sweep(app.store.as_ref(), leash_store::now_ms())
            .await?
            .0,
    ))
}

/// Run the registry-wide review rules every minute.
pub async fn sweep_periodically(app: AppState) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    loop {
        tick.tick().await;
        if let Err(e) = app
            .review
            .sweep(app.store.as_ref(), leash_store::now_ms())
            .await
        {
            tracing::error!(error = %e, "the review sweep failed");
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ReportQuery {
    /// `json` (default), `md` or `html`.
    pub format: Option<String>,
}

/// Build the report from the registry as it is now (after a review sweep,
/// so every finding kind is current).
pub async fn build_report(app: &App) -> Result<Report, ApiError> {
    let now = leash_store::now_ms();
    let settings = app.review.settings;
    let started = std::time::Instant::now();
    // the sweep and the registry counts read on two connections at once;
    // findings are counted after the sweep has recorded its own
    let (swept, n) = tokio::join!(
        app.review.sweep(app.store.as_ref(), now),
        app.store.report_numbers(settings, now)
    );
    let ((_, chains), n) = (swept?, n?);
    let finding_counts = app.store.finding_counts().await?;
    let tests = app.store.list_removal_tests(None).await?;
    tracing::debug!(
        ms = started.elapsed().as_millis() as u64,
        "report data read"
    );
    let live = n.leash_live + n.external_active;
    let ratio = |numerator: u64, denominator: u64| Ratio {
        numerator,
        denominator,
    };
    let pct = |p: f64| -> Option<u64> {
        let l = &n.revocation_latencies_ms;
        if l.is_empty() {
            return None;
        }
        let i = ((l.len() as f64 - 1.0) * p).round() as usize;
        l.get(i.min(l.len() - 1)).copied()
    };
    let mut findings: std::collections::BTreeMap<String, FindingCount> = Default::default();
    for (kind, status, count) in &finding_counts {
        let f = findings
            .entry(kind.clone())
            .or_insert_with(|| FindingCount {
                kind: kind.clone(),
                open: 0,
                acknowledged: 0,
                resolved: 0,
            });
        match status.as_str() {
            "open" => f.open += count,
            "acknowledged" => f.acknowledged += count,
            _ => f.resolved += count,
        }
    }
    let mut report = Report {
        generated_at: ts(now),
        tokens: TokenTotals {
            leash_live: n.leash_live,
            leash_total: n.leash_total,
            external_active: n.external_active,
            external_total: n.external_total,
            run_bound_live: n.live_run_bound,
            over_ttl_cap_live: n.live_over_ttl_cap,
            workload_bound_live: n.leash_live,
        },
        signals: Signals {
            owner_coverage: ratio(n.live_owned + n.external_owned, live),
            write_ratio: ratio(n.live_write, n.leash_live),
            write_max_ratio: app.review_config.write_max_ratio.unwrap_or(0.2),
            write_justified: ratio(n.live_write_justified, n.live_write),
            write_approved: ratio(n.live_write_approved, n.live_write),
            exposures: ExposureSignal {
                revocable: n.exposures_revocable,
                revoked_automatically: n.exposures_revoked,
                median_ms: pct(0.5),
                p95_ms: pct(0.95),
                target_ms: 1000,
            },
        },
        questions: Questions {
            owner: ratio(n.live_owned + n.external_owned, live),
            workload: ratio(n.leash_live + n.external_with_workloads, live),
            privileges: ratio(n.leash_live + n.external_with_scopes, live),
            revocation: ratio(n.leash_live + n.external_with_trigger, live),
        },
        churn: Churn {
            threshold_hours: settings.churn_threshold_ms as f64 / 3_600_000.0,
            chains_over_threshold: chains.len() as u64,
            longest: chains
                .iter()
                .take(10)
                .map(|c| ChurnChain {
                    workload: c.workload.clone(),
                    scopes: c.scopes.clone(),
                    tokens: c.tokens,
                    effective_hours: (c.effective_hours() * 100.0).round() / 100.0,
                    first_issued: ts(c.first_issued),
                    last_expires: ts(c.last_end),
                })
                .collect(),
        },
        findings: findings.into_values().collect(),
        removal_tests: tests
            .iter()
            .take(100)
            .map(|t| RemovalRow {
                id: t.id,
                target: t.target.clone(),
                verdict: t.verdict.clone(),
                summary: t.evidence["summary"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                at: ts(t.updated_at),
            })
            .collect(),
        usage: UsageTotals {
            decisions: n.decisions,
            denied: n.denied,
            log_events: n.log_events,
            unknown_refs: n.unknown_refs,
        },
        break_glass: BreakGlass {
            total: n.break_glass_total,
            live: n.break_glass_live,
            overdue: n.break_glass_overdue,
        },
        controls: Vec::new(),
    };
    report.controls = leash_review::report::evaluate(&report);
    Ok(report)
}

#[utoipa::path(get, path = "/v1/report", tag = "review", params(ReportQuery),
    responses((status = 200, description = "The controls-evidence report (JSON, Markdown or HTML)"), (status = 400, body = crate::error::Problem)))]
pub async fn report(
    State(app): State<AppState>,
    ApiQuery(q): ApiQuery<ReportQuery>,
) -> ApiResult<Response> {
    let format = q.format.unwrap_or_else(|| "json".into());
    if !matches!(format.as_str(), "json" | "md" | "html") {
        return Err(ApiError::bad_request(format!(
            "unknown report format `{format}`; use json, md or html"
        )));
    }
    let report = build_report(&app).await?;
    Ok(match format.as_str() {
        "md" => (
            [(header::CONTENT_TYPE, "text/markdown; charset=utf-8")],
            leash_review::report::render_markdown(&report),
        )
            .into_response(),
        "html" => (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            leash_review::report::render_html(&report),
        )
            .into_response(),
        _ => Json(report).into_response(),
    })
}

/// Ask whether a token, a scope or an external credential can go.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRemovalTest {
    /// A token id (`tok_…`), a scope (`repo:acme/api:write`, needs `workflow`)
    /// or an external credential (`external:NAME`).
    pub target: String,
    /// The workflow whose runs are read (for a scope).
    pub workflow: Option<String>,
    /// Only runs by this workload (for a scope).
    pub workload: Option<String>,
    /// How many recent ended runs to read (default 5, at most 100).
    pub runs: Option<u32>,
    /// Also deny the scopes to the workflow's next run and record its outcome.
    #[serde(default)]
    pub canary: bool,
}

/// A removability test and its latest verdict.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RemovalView {
    pub id: i64,
    /// `token`, `scope` or `external`.
    pub target_kind: String,
    pub target: String,
    pub workflow: Option<String>,
    pub workload: Option<String>,
    pub scopes: Vec<String>,
    /// `removable`, `needed` or `unknown`.
    pub verdict: String,
    pub summary: String,
    pub evidence: serde_json::Value,
    /// `none`, `armed`, `running`, `passed` or `failed`.
    pub canary: String,
    pub canary_run: Option<i64>,
    pub canary_denied: u64,
    pub updated_at: String,
}

fn removal_view(app: &App, t: &RemovalTest) -> RemovalView {
    let reg = app.store.registry().read();
    RemovalView {
        id: t.id,
        target_kind: t.target_kind.clone(),
        target: t.target.clone(),
        workflow: t
            .workflow_id
            .and_then(|id| reg.workflow(id))
            .map(|w| w.name.clone()),
        workload: t
            .workload_id
            .and_then(|id| reg.workload(id))
            .map(|w| w.name.clone()),
        scopes: t.scopes.clone(),
        verdict: t.verdict.clone(),
        summary: t.evidence["summary"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        evidence: t.evidence.clone(),
        canary: t.canary.clone(),
        canary_run: t.canary_run,
        canary_denied: t.canary_denied,
        updated_at: ts(t.updated_at),
    }
}

fn min_runs(app: &App, window: u32) -> usize {
    app.review_config
        .removal_min_runs
        .unwrap_or(3)
        .min(window)
        .max(1) as usize
}

/// Compute a dry-run verdict for `t` (token and scope targets) into it.
async fn judge_removal(app: &App, t: &mut RemovalTest, window: u32) -> Result<(), ApiError> {
    if t.target_kind == "external" {
        let usage = app.store.token_usage(&t.target, 0).await?;
        let used: u64 = usage
            .totals
            .iter()
            .filter(|u| u.allowed)
            .map(|u| u.count)
            .sum();
        let (verdict, summary) = if used > 0 {
            let mut ws: Vec<&str> = usage
                .totals
                .iter()
                .map(|u| u.workload.as_str())
                .filter(|w| !w.is_empty())
                .collect();
            ws.sort_unstable();
            ws.dedup();
            (
                removal::NEEDED,
                format!(
                    "needed: used {used} time(s) by {}",
                    if ws.is_empty() {
                        "unnamed workloads".into()
                    } else {
                        ws.join(", ")
                    }
                ),
            )
        } else {
            (
                removal::UNKNOWN,
                "unknown: no recorded use; ingest the logs of the workloads that hold it, or wait for it to go stale".into(),
            )
        };
        t.verdict = verdict.into();
        t.evidence = serde_json::json!({"summary": summary, "uses": usage.totals});
        return Ok(());
    }
    let Some(workflow_id) = t.workflow_id else {
        return Err(ApiError::bad_request(
            "a removability test reads the runs of a workflow: name one",
        ));
    };
    let tested: Vec<Scope> = t.scopes.iter().filter_map(|s| s.parse().ok()).collect();
    let runs = app
        .store
        .runs_usage(workflow_id, t.workload_id, window)
        .await?;
    let (verdict, mut evidence) = removal::dry_run(&tested, &runs, min_runs(app, window));
    if t.target_kind == "token" {
        let own = app.store.token_usage(&t.target, 20).await?;
        evidence["token_uses"] = serde_json::json!(own.totals);
    }
    t.verdict = verdict.into();
    t.evidence = evidence;
    t.digest = app
        .store
        .registry()
        .read()
        .workflow(workflow_id)
        .map(|w| w.digest.clone());
    Ok(())
}

#[utoipa::path(post, path = "/v1/removal-tests", tag = "review", request_body = NewRemovalTest,
    responses((status = 201, body = RemovalView), (status = 400, body = crate::error::Problem), (status = 404, body = crate::error::Problem)))]
pub async fn create_removal_test(
    State(app): State<AppState>,
    ApiJson(b): ApiJson<NewRemovalTest>,
) -> ApiResult<(StatusCode, Json<RemovalView>)> {
    let window = b.runs.unwrap_or(5);
    if !(1..=100).contains(&window) {
        return Err(ApiError::bad_request("`runs` is between 1 and 100"));
    }
    let target = b.target.trim().to_owned();
    let (workflow_id, workload_id) =
        {
            let reg = app.store.registry().read();
            let wf = match &b.workflow {
                Some(n) => Some(reg.workflow_by_name(n).map(|w| w.id).ok_or_else(|| {
                    ApiError::not_found(format!("workflow `{n}` does not exist"))
                })?),
                None => None,
            };
            let wl = match &b.workload {
                Some(n) => Some(reg.workload_by_name(n).map(|w| w.id).ok_or_else(|| {
                    ApiError::not_found(format!("workload `{n}` does not exist"))
                })?),
                None => None,
            };
            (wf, wl)
        };
    let mut t = RemovalTest {
        id: 0,
        target_kind: String::new(),
        target: target.clone(),
        workflow_id,
        workload_id,
        scopes: Vec::new(),
        verdict: removal::UNKNOWN.into(),
        evidence: serde_json::json!({}),
        canary: "none".into(),
        canary_run: None,
        canary_denied: 0,
        digest: None,
        created_at: 0,
        updated_at: 0,
    };
    if target.starts_with("tok_") {
        let token = app.store.get_token(&target).await?;
        let Some(wf) = token.workflow_id else {
            return Err(ApiError::bad_request(format!(
                "token `{target}` serves no workflow, so there are no runs to read; test one of its scopes with `workflow` instead"
            )));
        };
        t.target_kind = "token".into();
        t.workflow_id = Some(wf);
        t.workload_id = Some(token.workload_id);
        t.scopes = token.scopes.iter().map(ToString::to_string).collect();
    } else if let Some(name) = target.strip_prefix("external:") {
        if b.canary {
            return Err(ApiError::bad_request(
                "a canary denies scopes to a workflow's next run; Leash cannot deny a third-party credential",
            ));
        }
        let known = app
            .store
            .usage_subject(leash_store::UsageRef::Id(name.to_owned()))
            .await?;
        if known.is_none() {
            return Err(ApiError::not_found(format!(
                "external token `{name}` is not in the inventory"
            )));
        }
        t.target_kind = "external".into();
    } else {
        let scope: Scope = target.parse().map_err(|e| {
            ApiError::bad_request(format!(
                "`{target}` is neither a token id (tok_…), an external credential (external:NAME) nor a scope: {e}"
            ))
        })?;
        if t.workflow_id.is_none() {
            return Err(ApiError::bad_request(format!(
                "testing scope `{target}` needs `workflow`: the runs it reads"
            )));
        }
        t.target_kind = "scope".into();
        t.scopes = vec![scope.to_string()];
    }
    judge_removal(&app, &mut t, window).await?;
    if b.canary {
        t.canary = "armed".into();
    }
    t.evidence["window"] = serde_json::json!(window);
    let saved = app.store.save_removal_test(t, OPERATOR).await?;
    Ok((StatusCode::CREATED, Json(removal_view(&app, &saved))))
}

#[utoipa::path(get, path = "/v1/removal-tests", tag = "review",
    responses((status = 200, body = [RemovalView])))]
pub async fn list_removal_tests(State(app): State<AppState>) -> ApiResult<Json<Vec<RemovalView>>> {
    let list = app.store.list_removal_tests(None).await?;
    Ok(Json(list.iter().map(|t| removal_view(&app, t)).collect()))
}

#[utoipa::path(get, path = "/v1/removal-tests/{id}", tag = "review",
    responses((status = 200, body = RemovalView), (status = 404, body = crate::error::Problem)))]
pub async fn get_removal_test(
    State(app): State<AppState>,
    Path(id): Path<i64>,
) -> ApiResult<Json<RemovalView>> {
    Ok(Json(removal_view(
        &app,
        &app.store.get_removal_test(id).await?,
    )))
}

fn canary_of(t: &RemovalTest) -> crate::review::Canary {
    crate::review::Canary {
        test: t.id,
        scopes: t.scopes.iter().filter_map(|s| s.parse().ok()).collect(),
        denied: Arc::new(AtomicU64::new(t.canary_denied)),
    }
}

/// Restore running canaries after a restart.
pub async fn load_canaries(app: &App) {
    match app.store.list_removal_tests(None).await {
        Ok(tests) => {
            for t in tests.iter().filter(|t| t.canary == "running") {
                if let Some(run) = t.canary_run {
                    app.review.set_canary(run, canary_of(t));
                }
            }
        }
        Err(e) => tracing::error!(error = %e, "could not load removability canaries"),
    }
}

/// A run started: an armed canary of its workflow now withholds its scopes from it.
pub async fn arm_canary(app: &App, run: &Run) -> Result<(), ApiError> {
    let tests = app.store.list_removal_tests(Some(run.workflow_id)).await?;
    // the oldest armed test applies; the others wait for later runs
    if let Some(t) = tests
        .into_iter()
        .rev()
        .find(|t| t.canary == "armed" && t.workload_id.is_none_or(|w| w == run.workload_id))
    {
        let mut t = t;
        t.canary = "running".into();
        t.canary_run = Some(run.id);
        let saved = app.store.save_removal_test(t, OPERATOR).await?;
        app.review.set_canary(run.id, canary_of(&saved));
    }
    Ok(())
}

/// A run ended: record how its canary went.
pub async fn finish_canary(app: &App, run: &Run) -> Result<(), ApiError> {
    let Some(c) = app.review.take_canary(run.id) else {
        return Ok(());
    };
    let mut t = app.store.get_removal_test(c.test).await?;
    let denied = c.denied.load(Ordering::Relaxed);
    let (verdict, summary) = removal::canary_verdict(run.id, run.state.as_str(), denied, &t.scopes);
    t.verdict = verdict.into();
    t.canary = if verdict == removal::REMOVABLE {
        "passed".into()
    } else {
        "failed".into()
    };
    t.canary_denied = denied;
    t.evidence["summary"] = serde_json::json!(summary);
    t.evidence["canary"] =
        serde_json::json!({"run": run.id, "state": run.state.as_str(), "denied": denied});
    app.store.save_removal_test(t, OPERATOR).await?;
    Ok(())
}

/// The workflow's definition changed: compute its removability verdicts again.
pub async fn rerun_for_workflow(app: &App, workflow_id: i64) {
    let tests = match app.store.list_removal_tests(Some(workflow_id)).await {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "could not list removability tests to re-run");
            return;
        }
    };
    for mut t in tests {
        if matches!(t.canary.as_str(), "armed" | "running") {
            continue;
        }
        let window = t.evidence["window"]
            .as_u64()
            .and_then(|w| u32::try_from(w).ok())
            .unwrap_or(5);
        let result = async {
            judge_removal(app, &mut t, window).await?;
            t.evidence["window"] = serde_json::json!(window);
            t.evidence["rerun"] = serde_json::json!("workflow definition changed");
            app.store.save_removal_test(t, "leash").await?;
            Ok::<(), ApiError>(())
        }
        .await;
        if let Err(e) = result {
            tracing::error!(error = ?e, "could not re-run a removability test");
        }
    }
}
