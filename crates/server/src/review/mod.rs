//! Review: usage from workload logs correlated with what each token is
//! for, findings raised as the usage arrives, removability tests with
//! their canaries, and the numbers behind the report.
//!
//! Ingest folds one batch at a time (a mutex around the [`Engine`]): each
//! batch resolves its token references (cached), runs the per-use rules
//! against each token's declared and usual sets and folds the uses into
//! aggregates. It then takes its turn to write (a second mutex, taken
//! before the engine is let go, so batches are written in the order they
//! were folded) and writes the aggregates with the findings in one store
//! job, so findings are current when the ingest call answers. The next
//! batch folds while this one writes.

pub mod removal;
pub mod rules;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use leash_core::Millis;
use leash_core::scope::Scope;
use leash_review::logs::{TokenRef, UsageEvent};
use leash_store::{
    NewFinding, ReviewBatch, ReviewOutcome, ReviewSettings, SourceCounts, Store, StoreError,
    UsageRef, UsageRunTotal, UsageSubject, UsageTotal,
};
use serde::Serialize;
use tokio::sync::Mutex;

pub use rules::RuleSettings;

/// Most token references remembered (known or unknown) before the cache is cleared.
const CACHE_MAX: usize = 1_000_000;
/// Unknown references shown back to the caller.
const UNKNOWN_SHOWN: usize = 100;

/// What one token is for, and what its use has shown so far.
#[derive(Debug)]
pub struct Tracked {
    pub info: UsageSubject,
    pub state: rules::SeenState,
}

/// The ingest side: resolves references, applies the rules, folds usage.
#[derive(Debug, Default)]
pub struct Engine {
    cache: HashMap<TokenRef, Option<usize>, foldhash::fast::RandomState>,
    tracked: Vec<Tracked>,
}

/// A withheld scope set for one run (a removability canary).
#[derive(Debug, Clone)]
pub struct Canary {
    pub test: i64,
    pub scopes: Vec<Scope>,
    pub denied: Arc<std::sync::atomic::AtomicU64>,
}

/// The review state the server holds.
#[derive(Debug)]
pub struct Review {
    pub settings: ReviewSettings,
    pub rules: RuleSettings,
    engine: Mutex<Engine>,
    /// Held while a folded batch is written: batches are written in fold order.
    write_turn: Mutex<()>,
    /// Canaries by run id.
    canaries: RwLock<HashMap<i64, Canary>>,
}

/// What an ingest did.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct IngestOutcome {
    /// Lines read.
    pub lines: u64,
    /// Usage events found in them.
    pub events: u64,
    /// Events mapped to a known token.
    pub matched: u64,
    /// Events whose token Leash does not know (counted, never dropped silently).
    pub unknown_refs: u64,
    /// Up to 100 of those references (ids or fingerprints) with their lines.
    pub unknown: Vec<UnknownRef>,
    /// Lines that were not usage events.
    pub skipped: u64,
    /// Up to 100 of those lines with why.
    #[schema(value_type = Vec<Object>)]
    pub skipped_lines: Vec<leash_review::logs::Skipped>,
    /// Findings opened by this batch.
    pub findings_opened: Vec<i64>,
    /// Open findings this batch added evidence to.
    pub findings_refreshed: Vec<i64>,
}

/// A token reference Leash does not know.
#[derive(Debug, Clone, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct UnknownRef {
    pub line: usize,
    /// `id` or `fingerprint`.
    pub by: String,
    pub value: String,
}

type TotalKey = (usize, String, String, String, String, bool);
type RunKey = (usize, String, String, String, String);

impl Review {
    pub fn new(settings: ReviewSettings, rules: RuleSettings) -> Self {
        Self {
            settings,
            rules,
            engine: Mutex::new(Engine::default()),
            write_turn: Mutex::new(()),
            canaries: RwLock::new(HashMap::new()),
        }
    }

    /// Forget cached references (after an import: unknown ones may be known now).
    pub async fn forget(&self) {
        let mut e = self.engine.lock().await;
        e.cache.clear();
        e.tracked.clear();
    }

    /// Correlate parsed usage events and write them with the findings they raise.
    pub async fn ingest(
        &self,
        store: &dyn Store,
        source: &str,
        lines: u64,
        parsed: leash_review::logs::Parsed,
        actor: &str,
    ) -> Result<IngestOutcome, StoreError> {
        let mut engine = self.engine.lock().await;
        let started = std::time::Instant::now();
        if engine.cache.len() > CACHE_MAX {
            engine.cache.clear();
            engine.tracked.clear();
        }
        let mut out = IngestOutcome {
            lines,
            events: parsed.events.len() as u64,
            skipped: parsed.skipped_count as u64,
            skipped_lines: parsed.skipped,
            ..Default::default()
        };
        let mut totals: HashMap<TotalKey, UsageTotal, foldhash::fast::RandomState> =
            HashMap::default();
        let mut runs: HashMap<RunKey, UsageRunTotal, foldhash::fast::RandomState> =
            HashMap::default();
        let mut last_used: HashMap<i64, Millis> = HashMap::new();
        let mut findings: HashMap<(String, String), NewFinding> = HashMap::new();
        // resolve every new reference of the batch at once
        let mut new_refs: Vec<TokenRef> = Vec::new();
        {
            let mut pending: std::collections::HashSet<&TokenRef> = Default::default();
            for ev in &parsed.events {
                if !engine.cache.contains_key(&ev.token) && pending.insert(&ev.token) {
                    new_refs.push(ev.token.clone());
                }
            }
        }
        if !new_refs.is_empty() {
            let found = store
                .usage_subjects(
                    new_refs
                        .iter()
                        .map(|r| match r {
                            TokenRef::Id(id) => UsageRef::Id(id.clone()),
                            TokenRef::Fingerprint(fp) => UsageRef::Fingerprint(fp.clone()),
                        })
                        .collect(),
                )
                .await?;
            for (r, info) in new_refs.into_iter().zip(found) {
                let idx = info.map(|info| {
                    engine.tracked.push(Tracked {
                        state: rules::SeenState::from_subject(&info),
                        info,
                    });
                    engine.tracked.len() - 1
                });
                engine.cache.insert(r, idx);
            }
        }
        let resolved = started.elapsed();
        for ev in parsed.events {
            let idx = engine.cache.get(&ev.token).copied().flatten();
            let Some(idx) = idx else {
                out.unknown_refs += 1;
                if out.unknown.len() < UNKNOWN_SHOWN {
                    let (by, value) = match &ev.token {
                        TokenRef::Id(v) => ("id", v.clone()),
                        TokenRef::Fingerprint(v) => ("fingerprint", v.clone()),
                    };
                    out.unknown.push(UnknownRef {
                        line: ev.line,
                        by: by.into(),
                        value,
                    });
                }
                continue;
            };
            out.matched += 1;
            // a run that ended since the token was first seen
            if let Some(run) = engine.tracked[idx].info.run
                && engine.tracked[idx].info.run_ended_at.is_none()
                && store.registry().read().running_run(run).is_none()
            {
                let ended = store.get_run(run).await?.ended_at;
                engine.tracked[idx].info.run_ended_at = ended;
            }
            let tracked = &mut engine.tracked[idx];
            for f in rules::check(&self.rules, &tracked.info, &mut tracked.state, &ev) {
                let key = (f.kind.clone(), f.subject.clone());
                match findings.get_mut(&key) {
                    Some(prev) => merge_items(prev, f),
                    None => {
                        findings.insert(key, f);
                    }
                }
            }
            fold(
                idx,
                &tracked.info,
                &ev,
                &mut totals,
                &mut runs,
                &mut last_used,
            );
        }
        let folded = started.elapsed();
        // take the turn to write before letting the next batch fold
        let turn = self.write_turn.lock().await;
        drop(engine);
        let waited = started.elapsed();
        let batch = ReviewBatch {
            totals: totals.into_values().collect(),
            runs: runs.into_values().collect(),
            last_used: last_used.into_iter().collect(),
            source: Some(SourceCounts {
                source: source.to_owned(),
                events: out.events,
                unknown_refs: out.unknown_refs,
                skipped: out.skipped,
            }),
            findings: findings.into_values().collect(),
        };
        let ReviewOutcome { opened, refreshed } = store.record_review(batch, actor).await?;
        drop(turn);
        tracing::debug!(
            events = out.events,
            resolve_ms = resolved.as_millis() as u64,
            fold_ms = (folded - resolved).as_millis() as u64,
            turn_wait_ms = (waited - folded).as_millis() as u64,
            write_ms = (started.elapsed() - waited).as_millis() as u64,
            "usage batch recorded"
        );
        out.findings_opened = opened;
        out.findings_refreshed = refreshed;
        Ok(out)
    }

    /// Run the registry-wide rules and record what they find; with the
    /// reissue-churn chains (longest first).
    pub async fn sweep(
        &self,
        store: &dyn Store,
        now: Millis,
    ) -> Result<(ReviewOutcome, Vec<leash_store::ChurnChain>), StoreError> {
        let (findings, chains) = store.review_sweep(self.settings, now).await?;
        let outcome = store
            .record_review(
                ReviewBatch {
                    findings,
                    ..Default::default()
                },
                "leash",
            )
            .await?;
        Ok((outcome, chains))
    }

    /// The canary withholding scopes from `run`, if any.
    pub fn canary(&self, run: i64) -> Option<Canary> {
        self.canaries
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&run)
            .cloned()
    }

    fn canaries_mut(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<i64, Canary>> {
        self.canaries.write().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set_canary(&self, run: i64, canary: Canary) {
        self.canaries_mut().insert(run, canary);
    }

    pub fn take_canary(&self, run: i64) -> Option<Canary> {
        self.canaries_mut().remove(&run)
    }
}

/// Fold `f` into `prev` (same kind and subject in one batch) the way the
/// store folds a refresh into an open finding.
fn merge_items(prev: &mut NewFinding, f: NewFinding) {
    if f.severity.rank() > prev.severity.rank() {
        prev.severity = f.severity;
    }
    prev.summary = f.summary;
    prev.evidence = leash_store::merge_evidence(&prev.evidence, f.evidence);
}

fn fold(
    idx: usize,
    info: &UsageSubject,
    ev: &UsageEvent,
    totals: &mut HashMap<TotalKey, UsageTotal, foldhash::fast::RandomState>,
    runs: &mut HashMap<RunKey, UsageRunTotal, foldhash::fast::RandomState>,
    last_used: &mut HashMap<i64, Millis>,
) {
    let workload = ev
        .workload
        .as_deref()
        .map(|w| rules::canonical_workload(info, w))
        .unwrap_or_default();
    let action = ev.action.clone().unwrap_or_default();
    let resource = ev.resource.clone().unwrap_or_default();
    let tool = ev.tool.clone().unwrap_or_default();
    let allowed = ev.allowed.unwrap_or(true);
    let t = totals
        .entry((
            idx,
            workload.clone(),
            action.clone(),
            resource.clone(),
            tool.clone(),
            allowed,
        ))
        .or_insert_with(|| UsageTotal {
            token_id: info.subject.clone(),
            workload,
            action: action.clone(),
            resource: resource.clone(),
            tool: tool.clone(),
            allowed,
            count: 0,
            first_at: ev.at,
            last_at: ev.at,
        });
    t.count += 1;
    t.first_at = t.first_at.min(ev.at);
    t.last_at = t.last_at.max(ev.at);
    // a Leash token's run is its own; others carry the logged run. Uses
    // outside any run say nothing about what a workflow needs.
    let run = match info.run {
        Some(r) => Some(r.to_string()),
        None => ev.run.clone(),
    };
    if allowed && let Some(run) = run {
        let step = ev
            .step
            .clone()
            .or_else(|| ev.tool.clone())
            .unwrap_or_default();
        let r = runs
            .entry((
                idx,
                run.clone(),
                step.clone(),
                action.clone(),
                resource.clone(),
            ))
            .or_insert_with(|| UsageRunTotal {
                token_id: info.subject.clone(),
                run,
                step,
                action,
                resource,
                count: 0,
                first_at: ev.at,
                last_at: ev.at,
            });
        r.count += 1;
        r.first_at = r.first_at.min(ev.at);
        r.last_at = r.last_at.max(ev.at);
    }
    if let Some(id) = info.external_id {
        let e = last_used.entry(id).or_insert(ev.at);
        *e = (*e).max(ev.at);
    }
}
