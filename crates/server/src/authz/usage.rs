//! Usage records: every decision, written in batches off the decision path.
//!
//! A decision hands its record to a bounded channel (`try_send`: a decision
//! never waits for storage). A background task drains it every
//! [`FLUSH_EVERY`] (or sooner at [`FLUSH_AT`] records), folds the batch into
//! per-token aggregates (exact counts, first and last use) and writes one
//! store job: the aggregates plus the raw log. The raw log is bounded two
//! ways: at most `raw_per_sec` allowed decisions per second go into it
//! (denials and break-glass uses always do), and it keeps only its newest
//! `keep_log` rows. Records the channel could not take are counted in
//! `leash_usage_dropped_total`, never silently.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use leash_store::{Store, UsageRecord, UsageTotal};
use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc;

/// How often buffered usage is written.
pub const FLUSH_EVERY: Duration = Duration::from_millis(250);
/// Write sooner once this many records wait.
pub const FLUSH_AT: usize = 16_384;
/// Records that may wait in memory.
pub const QUEUE: usize = 262_144;

/// How much of the raw log to keep.
#[derive(Debug, Clone, Copy)]
pub struct UsageSettings {
    /// Newest raw records kept.
    pub keep_log: u64,
    /// Most allowed decisions per second written to the raw log.
    pub raw_per_sec: u32,
}

impl Default for UsageSettings {
    fn default() -> Self {
        Self {
            keep_log: 1_000_000,
            raw_per_sec: 2_000,
        }
    }
}

/// One decision to record.
#[derive(Debug, Clone)]
pub struct UsageEvent {
    pub record: UsageRecord,
    /// Break-glass uses always reach the raw log.
    pub break_glass: bool,
}

/// Counters for what happened to usage records.
#[derive(Debug, Clone, Default)]
pub struct UsageCounters {
    pub recorded: Counter,
    pub dropped: Counter,
    pub raw_skipped: Counter,
    pub write_failures: Counter,
}

/// The sending half, held by the decision path.
#[derive(Debug, Clone)]
pub struct UsageRecorder {
    tx: mpsc::Sender<UsageEvent>,
    counters: UsageCounters,
}

impl UsageRecorder {
    /// Start the writer task.
    pub fn start(store: Arc<dyn Store>, settings: UsageSettings, counters: UsageCounters) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(store, settings, counters.clone(), rx));
        Self { tx, counters }
    }

    /// Record one decision without waiting.
    pub fn record(&self, event: UsageEvent) {
        if self.tx.try_send(event).is_err() {
            self.counters.dropped.inc();
        }
    }
}

type Key = (String, String, String, String, String, bool);

async fn run(
    store: Arc<dyn Store>,
    settings: UsageSettings,
    counters: UsageCounters,
    mut rx: mpsc::Receiver<UsageEvent>,
) {
    let mut buf: Vec<UsageEvent> = Vec::with_capacity(FLUSH_AT);
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_flush = tokio::time::Instant::now();
    // the raw-log allowance refills every second
    let mut second = tokio::time::Instant::now();
    let mut allowance = settings.raw_per_sec;
    loop {
        let room = FLUSH_AT.saturating_sub(buf.len()).max(1);
        let closed = tokio::select! {
            n = rx.recv_many(&mut buf, room) => n == 0,
            _ = tick.tick() => false,
        };
        let due = closed || buf.len() >= FLUSH_AT || last_flush.elapsed() >= FLUSH_EVERY;
        if due && !buf.is_empty() {
            last_flush = tokio::time::Instant::now();
            if second.elapsed() >= Duration::from_secs(1) {
                second = tokio::time::Instant::now();
                allowance = settings.raw_per_sec;
            }
            let (totals, log, skipped) = fold(std::mem::take(&mut buf), &mut allowance);
            counters.raw_skipped.inc_by(skipped);
            let n = totals.iter().map(|t| t.count).sum::<u64>();
            match store.record_usage(totals, log, settings.keep_log).await {
                Ok(()) => {
                    counters.recorded.inc_by(n);
                }
                Err(e) => {
                    counters.write_failures.inc();
                    tracing::error!(error = %e, records = n, "could not write usage records");
                }
            }
        }
        if closed {
            return;
        }
    }
}

/// Aggregate a batch; choose which records go to the raw log.
fn fold(batch: Vec<UsageEvent>, allowance: &mut u32) -> (Vec<UsageTotal>, Vec<UsageRecord>, u64) {
    let mut totals: HashMap<Key, UsageTotal, foldhash::fast::RandomState> = HashMap::default();
    let mut log = Vec::new();
    let mut skipped = 0;
    for e in batch {
        let r = e.record;
        let key = (
            r.token_id.clone(),
            r.workload.clone(),
            r.action.clone(),
            r.resource.clone(),
            r.tool.clone(),
            r.allowed,
        );
        totals
            .entry(key)
            .and_modify(|t| {
                t.count += 1;
                t.first_at = t.first_at.min(r.at);
                t.last_at = t.last_at.max(r.at);
            })
            .or_insert_with(|| UsageTotal {
                token_id: r.token_id.clone(),
                workload: r.workload.clone(),
                action: r.action.clone(),
                resource: r.resource.clone(),
                tool: r.tool.clone(),
                allowed: r.allowed,
                count: 1,
                first_at: r.at,
                last_at: r.at,
            });
        if !r.allowed || e.break_glass {
            log.push(r);
        } else if *allowance > 0 {
            *allowance -= 1;
            log.push(r);
        } else {
            skipped += 1;
        }
    }
    (totals.into_values().collect(), log, skipped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(token: &str, allowed: bool, at: i64, break_glass: bool) -> UsageEvent {
        UsageEvent {
            record: UsageRecord {
                at,
                token_id: token.into(),
                workload: "bot".into(),
                action: "read".into(),
                resource: "repo:acme/api".into(),
                tool: String::new(),
                allowed,
                reason: String::new(),
            },
            break_glass,
        }
    }

    #[test]
    fn totals_are_exact_and_the_raw_log_is_bounded() {
        let batch = vec![
            ev("t1", true, 5, false),
            ev("t1", true, 3, false),
            ev("t1", true, 9, false),
            ev("t1", false, 4, false),
            ev("t2", true, 1, true),
        ];
        let mut allowance = 1;
        let (totals, log, skipped) = fold(batch, &mut allowance);
        let t1 = totals
            .iter()
            .find(|t| t.token_id == "t1" && t.allowed)
            .unwrap();
        assert_eq!((t1.count, t1.first_at, t1.last_at), (3, 3, 9));
        assert_eq!(totals.len(), 3);
        // one allowed record fits the allowance; the denial and the
        // break-glass use always go in
        assert_eq!(log.len(), 3);
        assert_eq!(skipped, 2);
        assert_eq!(allowance, 0);
    }
}
