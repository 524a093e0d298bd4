//! Usage records: every decision, counted in memory and written in batches
//! off the decision path.
//!
//! A decision folds itself into per-token aggregates (exact counts, first
//! and last use) under a short lock: when its key (token, presenting
//! workload, action, resource, tool, allowed) was seen since the last write
//! nothing is allocated, so a PEP asking again about what its agent does
//! costs a hash and a probe. The raw log is bounded two ways: at most
//! `raw_per_sec` allowed decisions per second go into it (denials and
//! break-glass uses always do), and it keeps only its newest `keep_log`
//! rows. A background task writes what gathered every [`FLUSH_EVERY`] (or
//! sooner at [`FLUSH_AT`] keys or raw records) as one store job. What
//! memory cannot hold ([`QUEUE`] keys or raw records waiting) is counted in
//! `leash_usage_dropped_total`, never silently.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hashbrown::HashTable;
use leash_core::Millis;
use leash_store::{Store, UsageRecord, UsageTotal};
use prometheus_client::metrics::counter::Counter;
use tokio::sync::Notify;

/// How often gathered usage is written.
pub const FLUSH_EVERY: Duration = Duration::from_millis(250);
/// Write sooner once this many keys or raw records wait.
pub const FLUSH_AT: usize = 16_384;
/// Keys, and raw records, that may wait in memory.
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

/// One decision to record, borrowed from the request.
#[derive(Debug, Clone, Copy)]
pub struct Use<'a> {
    pub at: Millis,
    pub token_id: &'a str,
    /// The workload that presented the token (the AuthZEN subject id).
    pub workload: &'a str,
    pub action: &'a str,
    pub resource_type: &'a str,
    pub resource_id: &'a str,
    /// `""` when the request named no tool.
    pub tool: &'a str,
    pub allowed: bool,
    /// The first reason's kind, and its policy when a policy decided.
    pub reason: (&'a str, Option<&'a str>),
    /// Break-glass uses always reach the raw log.
    pub break_glass: bool,
}

impl Use<'_> {
    fn resource(&self) -> String {
        format!("{}:{}", self.resource_type, self.resource_id)
    }

    fn record(&self) -> UsageRecord {
        UsageRecord {
            at: self.at,
            token_id: self.token_id.to_owned(),
            workload: self.workload.to_owned(),
            action: self.action.to_owned(),
            resource: self.resource(),
            tool: self.tool.to_owned(),
            allowed: self.allowed,
            reason: match self.reason {
                (kind, Some(policy)) => format!("{kind}:{policy}"),
                (kind, None) => kind.to_owned(),
            },
        }
    }
}

/// Counters for what happened to usage records.
#[derive(Debug, Clone, Default)]
pub struct UsageCounters {
    pub recorded: Counter,
    pub dropped: Counter,
    pub raw_skipped: Counter,
    pub write_failures: Counter,
}

/// One aggregate with its key's hash and where its resource's type ends.
struct Entry {
    hash: u64,
    type_len: usize,
    total: UsageTotal,
}

impl Entry {
    fn is(&self, u: &Use<'_>) -> bool {
        let t = &self.total;
        let r = t.resource.as_bytes();
        t.allowed == u.allowed
            && self.type_len == u.resource_type.len()
            && r.len() == u.resource_type.len() + 1 + u.resource_id.len()
            && r.starts_with(u.resource_type.as_bytes())
            && r.ends_with(u.resource_id.as_bytes())
            && t.token_id == u.token_id
            && t.action == u.action
            && t.workload == u.workload
            && t.tool == u.tool
    }
}

/// What gathered since the last write.
#[derive(Default)]
struct Pending {
    totals: HashTable<Entry>,
    raw: Vec<UsageRecord>,
    /// The second the raw-log allowance is counted in, and what it used.
    second: Millis,
    raw_used: u32,
    /// Allowed decisions left out of the raw log.
    skipped: u64,
}

struct Shared {
    pending: Mutex<Pending>,
    hasher: foldhash::fast::RandomState,
    settings: UsageSettings,
    counters: UsageCounters,
    due: Notify,
    closed: AtomicBool,
}

impl Shared {
    fn hash(&self, u: &Use<'_>) -> u64 {
        let mut h = self.hasher.build_hasher();
        for part in [
            u.token_id,
            u.workload,
            u.action,
            u.resource_type,
            u.resource_id,
            u.tool,
        ] {
            h.write(part.as_bytes());
            h.write_u8(0xff);
        }
        h.write_u8(u8::from(u.allowed));
        h.finish()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The recording half, held by the decision path; dropping it writes what
/// is left and stops the writer.
pub struct UsageRecorder {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for UsageRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UsageRecorder")
            .field("settings", &self.shared.settings)
            .finish_non_exhaustive()
    }
}

impl Drop for UsageRecorder {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.due.notify_one();
    }
}

impl UsageRecorder {
    /// Start the writer task.
    pub fn start(store: Arc<dyn Store>, settings: UsageSettings, counters: UsageCounters) -> Self {
        let shared = Arc::new(Shared {
            pending: Mutex::default(),
            hasher: foldhash::fast::RandomState::default(),
            settings,
            counters,
            due: Notify::new(),
            closed: AtomicBool::new(false),
        });
        tokio::spawn(run(store, shared.clone()));
        Self { shared }
    }

    /// Count one decision (never waits for storage).
    pub fn record(&self, u: Use<'_>) {
        let s = &*self.shared;
        let hash = s.hash(&u);
        let mut p = s.lock();
        let mut due = false;
        if let Some(e) = p.totals.find_mut(hash, |e| e.is(&u)) {
            let t = &mut e.total;
            t.count += 1;
            t.first_at = t.first_at.min(u.at);
            t.last_at = t.last_at.max(u.at);
        } else if p.totals.len() >= QUEUE {
            s.counters.dropped.inc();
        } else {
            let total = UsageTotal {
                token_id: u.token_id.to_owned(),
                workload: u.workload.to_owned(),
                action: u.action.to_owned(),
                resource: u.resource(),
                tool: u.tool.to_owned(),
                allowed: u.allowed,
                count: 1,
                first_at: u.at,
                last_at: u.at,
            };
            let entry = Entry {
                hash,
                type_len: u.resource_type.len(),
                total,
            };
            p.totals.insert_unique(hash, entry, |e| e.hash);
            due |= p.totals.len() == FLUSH_AT;
        }
        let second = u.at.div_euclid(1000);
        if p.second != second {
            p.second = second;
            p.raw_used = 0;
        }
        let logged = if !u.allowed || u.break_glass {
            true
        } else if p.raw_used < s.settings.raw_per_sec {
            p.raw_used += 1;
            true
        } else {
            p.skipped += 1;
            false
        };
        if logged {
            if p.raw.len() >= QUEUE {
                s.counters.dropped.inc();
            } else {
                p.raw.push(u.record());
                due |= p.raw.len() == FLUSH_AT;
            }
        }
        drop(p);
        if due {
            s.due.notify_one();
        }
    }
}

/// Take what gathered: the aggregates, the raw records, how many allowed
/// decisions the raw log left out.
fn take(p: &mut Pending) -> (Vec<UsageTotal>, Vec<UsageRecord>, u64) {
    let totals = p.totals.drain().map(|e| e.total).collect();
    let raw = std::mem::take(&mut p.raw);
    (totals, raw, std::mem::take(&mut p.skipped))
}

async fn run(store: Arc<dyn Store>, shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shared.due.notified() => {}
        }
        let closed = shared.closed.load(Ordering::Acquire);
        let (totals, log, skipped) = take(&mut shared.lock());
        shared.counters.raw_skipped.inc_by(skipped);
        if !totals.is_empty() || !log.is_empty() {
            let n = totals.iter().map(|t| t.count).sum::<u64>();
            match store
                .record_usage(totals, log, shared.settings.keep_log)
                .await
            {
                Ok(()) => {
                    shared.counters.recorded.inc_by(n);
                }
                Err(e) => {
                    shared.counters.write_failures.inc();
                    tracing::error!(error = %e, records = n, "could not write usage records");
                }
            }
        }
        if closed {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(raw_per_sec: u32) -> Shared {
        Shared {
            pending: Mutex::default(),
            hasher: foldhash::fast::RandomState::default(),
            settings: UsageSettings {
                keep_log: 10,
                raw_per_sec,
            },
            counters: UsageCounters::default(),
            due: Notify::new(),
            closed: AtomicBool::new(false),
        }
    }

    fn use_of<'a>(token: &'a str, allowed: bool, at: Millis, break_glass: bool) -> Use<'a> {
        Use {
            at,
            token_id: token,
            workload: "bot",
            action: "read",
            resource_type: "repo",
            resource_id: "acme/api",
            tool: "",
            allowed,
            reason: ("permit", None),
            break_glass,
        }
    }

    #[test]
    fn totals_are_exact_and_the_raw_log_is_bounded() {
        let recorder = UsageRecorder {
            shared: Arc::new(shared(1)),
        };
        for u in [
            use_of("t1", true, 5, false),
            use_of("t1", true, 3, false),
            use_of("t1", true, 9, false),
            use_of("t1", false, 4, false),
            use_of("t2", true, 1, true),
            // the same key split differently between type and id is another key
            Use {
                resource_type: "repo:acme",
                resource_id: "api",
                ..use_of("t1", true, 6, false)
            },
        ] {
            recorder.record(u);
        }
        let (totals, log, skipped) = take(&mut recorder.shared.lock());
        let t1 = totals
            .iter()
            .find(|t| t.token_id == "t1" && t.allowed && t.count > 1)
            .unwrap();
        assert_eq!((t1.count, t1.first_at, t1.last_at), (3, 3, 9));
        assert_eq!(t1.resource, "repo:acme/api");
        assert_eq!(totals.len(), 4);
        // one allowed record fits the allowance; the denial and the
        // break-glass use always go in
        assert_eq!(log.len(), 3);
        assert_eq!(log[0].reason, "permit");
        assert_eq!(skipped, 3);
        // taken: nothing is left to write twice
        let (totals, log, _) = take(&mut recorder.shared.lock());
        assert!(totals.is_empty() && log.is_empty());
    }

    #[test]
    fn the_allowance_refills_each_second() {
        let recorder = UsageRecorder {
            shared: Arc::new(shared(2)),
        };
        for at in [1_000, 1_100, 1_200, 2_000, 2_500, 2_600] {
            recorder.record(use_of("t1", true, at, false));
        }
        let (totals, log, skipped) = take(&mut recorder.shared.lock());
        assert_eq!(totals.len(), 1);
        assert_eq!(totals[0].count, 6);
        let at: Vec<_> = log.iter().map(|r| r.at).collect();
        assert_eq!(at, [1_000, 1_100, 2_000, 2_500]);
        assert_eq!(skipped, 2);
    }
}
