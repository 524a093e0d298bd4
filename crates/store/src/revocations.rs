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
use std::sync::{Arc, RwLock};

use leash_core::{Millis, Revocation};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, watch};

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
#[derive(Debug, Clone)]
pub struct CommitFeed {
    revoked: broadcast::Sender<Arc<[RevocationRecord]>>,
    head: watch::Sender<i64>,
}

/// How many committed batches a slow receiver may fall behind.
const FEED_BACKLOG: usize = 4096;

impl CommitFeed {
    pub(crate) fn new(head: i64) -> Self {
        CommitFeed {
            revoked: broadcast::channel(FEED_BACKLOG).0,
            head: watch::channel(head).0,
        }
    }

    /// Every revocation committed from now on, one message per batch.
    pub fn subscribe_revocations(&self) -> broadcast::Receiver<Arc<[RevocationRecord]>> {
        self.revoked.subscribe()
    }

    /// The audit sequence number applied here, updated after each commit.
    pub fn head(&self) -> watch::Receiver<i64> {
        self.head.subscribe()
    }

    /// The audit sequence number applied here now.
    pub fn head_seq(&self) -> i64 {
        *self.head.borrow()
    }

    pub(crate) fn publish(&self, set: &RevocationSet, records: Vec<RevocationRecord>, head: i64) {
        if !records.is_empty() {
            set.extend(records.iter().cloned().map(RevocationRecord::entry));
            // nobody listening is fine: the set above is what decisions read
            let _ = self.revoked.send(records.into());
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
