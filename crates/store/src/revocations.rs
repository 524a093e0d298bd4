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

/// One revoked token: why, and until when it must be remembered.
#[derive(Debug, Clone)]
pub struct RevokedEntry {
    pub revocation: Revocation,
    /// The token's own expiry (Unix ms): after it the entry is pruned.
    pub expires_at: Millis,
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
