//! The revocation set: every revoked token that has not yet expired, in
//! memory, so a decision checks revocation without a query.
//!
//! The writer adds a batch's revocations after its COMMIT succeeds and
//! before it acknowledges anyone, so a revocation acknowledged to its caller
//! is already seen by the next decision on this node (no stale cache). A
//! token past its expiry needs no entry (expiry alone refuses it), so the set
//! holds at most the revoked-but-unexpired tokens and is pruned as they
//! expire.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use leash_core::{Millis, Revocation};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, broadcast, watch};

/// One revoked token: why, and until when it must be remembered.
#[derive(Debug, Clone)]
pub struct RevokedEntry {
    pub revocation: Revocation,
    /// The token's own expiry (Unix ms): after it the entry is pruned.
    pub expires_at: Millis,
}

/// One committed revocation, as the revocation feed carries it: ordered by
/// the audit sequence number of the token's own `token.revoked` event, so a
/// consumer that remembers the last `seq` it saw can resume exactly there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationRecord {
    /// Audit sequence number of this token's `token.revoked` event.
    pub seq: i64,
    pub token_id: String,
    /// The token's own expiry (Unix ms): a consumer may forget it after that.
    pub expires_at: Millis,
    pub revocation: Revocation,
}

impl RevocationRecord {
    fn entry(self) -> (String, RevokedEntry) {
        (
            self.token_id,
            RevokedEntry {
                revocation: self.revocation,
                expires_at: self.expires_at,
            },
        )
    }
}

/// What the store tells the rest of the process after each commit: the
/// revocations it made durable (in audit order, before anyone is
/// acknowledged) and the audit sequence number everything up to which is
/// applied here. A receiver that lags behind the broadcast is told so
/// ([`broadcast::error::RecvError::Lagged`]) and reads the gap back with
/// [`crate::Store::revocations_after`].
///
/// On a shared database (PostgreSQL, several replicas) the feed also says
/// how current this process is with the *other* writers' commits: the
/// writer catches up on a wake-up ([`CommitFeed::wake`]: a NOTIFY, a NATS
/// message) or its own tick, and [`CommitFeed::synced_at`] tells whoever
/// must vouch for a decision when that last succeeded.
#[derive(Debug, Clone)]
pub struct CommitFeed {
    revoked: broadcast::Sender<Arc<[RevocationRecord]>>,
    local: broadcast::Sender<Arc<[RevocationRecord]>>,
    head: watch::Sender<i64>,
    remote: broadcast::Sender<Arc<[String]>>,
    sync: Arc<SyncInfo>,
}

#[derive(Debug)]
struct SyncInfo {
    /// Whether other processes write the same database.
    shared: bool,
    /// When this process last read every commit up to the database's head
    /// (Unix ms; 0 before the first time).
    synced_at: AtomicI64,
    /// Why the last attempt to catch up failed, until one succeeds.
    error: Mutex<Option<String>>,
    wake: Notify,
}

/// How many committed batches a slow receiver may fall behind.
const FEED_BACKLOG: usize = 4096;

impl CommitFeed {
    pub(crate) fn new(head: i64, shared: bool, now: Millis) -> Self {
        CommitFeed {
            revoked: broadcast::channel(FEED_BACKLOG).0,
            local: broadcast::channel(FEED_BACKLOG).0,
            head: watch::channel(head).0,
            remote: broadcast::channel(64).0,
            sync: Arc::new(SyncInfo {
                shared,
                synced_at: AtomicI64::new(now),
                error: Mutex::new(None),
                wake: Notify::new(),
            }),
        }
    }

    /// The kinds of audit event other processes committed, one message per
    /// catch-up that found any (so a replica can reload what it keeps
    /// outside the store, such as signing keys after `key.rotated`).
    pub fn subscribe_remote_kinds(&self) -> broadcast::Receiver<Arc<[String]>> {
        self.remote.subscribe()
    }

    pub(crate) fn publish_remote_kinds(&self, kinds: Vec<String>) {
        if !kinds.is_empty() {
            let _ = self.remote.send(kinds.into());
        }
    }

    /// Ask the writer to read other processes' commits now (someone says
    /// the database moved on). Cheap; wake-ups coalesce.
    pub fn wake(&self) {
        self.sync.wake.notify_one();
    }

    pub(crate) async fn woken(&self) {
        self.sync.wake.notified().await
    }

    /// On a shared database, when this process last had every commit up
    /// to the database's head (Unix ms; 0 if it never had); None when it is
    /// its database's only writer. Lock-free: decisions ask it every time.
    pub fn synced_at(&self) -> Option<Millis> {
        self.sync
            .shared
            .then(|| self.sync.synced_at.load(Ordering::Acquire))
    }

    /// Why the latest attempt to catch up failed, until one succeeds.
    pub fn sync_error(&self) -> Option<String> {
        self.sync
            .error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Record a catch-up attempt: success at `now`, or why it failed.
    pub(crate) fn synced(&self, outcome: Result<Millis, String>) {
        let mut error = self.sync.error.lock().unwrap_or_else(|e| e.into_inner());
        match outcome {
            Ok(now) => {
                self.sync.synced_at.fetch_max(now, Ordering::AcqRel);
                *error = None;
            }
            Err(why) => *error = Some(why),
        }
    }

    /// Every revocation committed from now on, one message per batch.
    pub fn subscribe_revocations(&self) -> broadcast::Receiver<Arc<[RevocationRecord]>> {
        self.revoked.subscribe()
    }

    /// The revocations this process's own writer committed (not those it
    /// read from other replicas), one message per batch: what it announces
    /// to the others.
    pub fn subscribe_local_revocations(&self) -> broadcast::Receiver<Arc<[RevocationRecord]>> {
        self.local.subscribe()
    }

    /// The audit sequence number applied here, updated after each commit.
    pub fn head(&self) -> watch::Receiver<i64> {
        self.head.subscribe()
    }

    /// The audit sequence number applied here now.
    pub fn head_seq(&self) -> i64 {
        *self.head.borrow()
    }

    pub(crate) fn publish(
        &self,
        set: &RevocationSet,
        records: Vec<RevocationRecord>,
        head: i64,
        local: bool,
    ) {
        if !records.is_empty() {
            set.extend(records.iter().cloned().map(RevocationRecord::entry));
            let records: Arc<[RevocationRecord]> = records.into();
            // nobody listening is fine: the set above is what decisions read
            if local {
                let _ = self.local.send(records.clone());
            }
            let _ = self.revoked.send(records);
        }
        self.head.send_if_modified(|h| {
            let moved = head > *h;
            if moved {
                *h = head;
            }
            moved
        });
    }
}

/// Revoked, unexpired tokens by id. Cheap to clone (shared). Token ids are
/// not secret and not attacker-chosen (Leash mints them), so the map uses a
/// fast non-cryptographic hash.
#[derive(Debug, Clone, Default)]
pub struct RevocationSet(Arc<RwLock<HashMap<String, RevokedEntry, foldhash::fast::RandomState>>>);

impl RevocationSet {
    /// The revocation of token `id`, if it is revoked.
    pub fn get(&self, id: &str) -> Option<Revocation> {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .map(|e| e.revocation.clone())
    }

    /// Whether token `id` is revoked.
    pub fn contains(&self, id: &str) -> bool {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(id)
    }

    /// How many tokens the set holds.
    pub fn len(&self) -> usize {
        self.0.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// True when no unexpired token is revoked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Add committed revocations.
    pub(crate) fn extend(&self, entries: impl IntoIterator<Item = (String, RevokedEntry)>) {
        let mut map = self.0.write().unwrap_or_else(|e| e.into_inner());
        map.extend(entries);
    }

    /// Add revocations heard from elsewhere (another replica, through
    /// NATS) ahead of this process reading them from the database. Only
    /// ever adds: a revocation is never undone.
    pub fn insert_records(&self, records: &[RevocationRecord]) {
        self.extend(records.iter().cloned().map(RevocationRecord::entry));
    }

    /// Forget tokens that expired before `now`; returns how many.
    pub fn prune(&self, now: Millis) -> usize {
        let mut map = self.0.write().unwrap_or_else(|e| e.into_inner());
        let before = map.len();
        map.retain(|_, e| e.expires_at > now);
        before - map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leash_core::RevocationTrigger;

    #[test]
    fn entries_are_seen_then_pruned_at_expiry() {
        let set = RevocationSet::default();
        let r = Revocation {
            at: 1,
            trigger: RevocationTrigger::Manual,
            reason: "x".into(),
            event: 7,
        };
        set.extend([(
            "t1".to_owned(),
            RevokedEntry {
                revocation: r.clone(),
                expires_at: 100,
            },
        )]);
        assert_eq!(set.get("t1"), Some(r));
        assert!(!set.contains("t2"));
        assert_eq!(set.prune(99), 0);
        assert_eq!(set.prune(100), 1);
        assert!(set.is_empty());
    }
}
