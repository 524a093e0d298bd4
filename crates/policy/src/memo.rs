//! Remembered decisions of one policy set.
//!
//! A Cedar evaluation is a pure function of the policies and the request
//! with its entities. The entities come from the token (immutable once
//! minted, apart from its revocation, which the caller checks before every
//! decision and which never reaches Cedar) and from registry records that
//! the caller names by an *epoch*: a number that changes whenever any
//! owner, workload, workflow or run changes. So a decision about the same
//! token, action, resource and tool under the same epoch is the same
//! decision, and is answered from memory.
//!
//! A memo belongs to one [`crate::PolicySet`]: a reload builds a new set
//! with an empty memo, and a copy of a set starts empty too. Decisions that
//! read `context.now` are never remembered (their answer can change with
//! the clock alone).

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::decision::Decision;
use crate::input::DecisionInput;

/// Independent locks, so concurrent decisions rarely wait on each other.
const SHARDS: usize = 16;
/// Most decisions kept per shard; a full shard starts over.
const PER_SHARD: usize = 8192;

type Shard = Mutex<HashMap<Box<[u8]>, Arc<Decision>, foldhash::fast::RandomState>>;

/// Decisions by (epoch, token, action, resource, tool), at most
/// `SHARDS × PER_SHARD` of them (131,072).
pub(crate) struct DecisionMemo {
    shards: Box<[Shard]>,
    hasher: foldhash::fast::RandomState,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl Default for DecisionMemo {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: foldhash::fast::RandomState::default(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }
}

/// A copy starts empty: remembered decisions belong to the set they were
/// made with.
impl Clone for DecisionMemo {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl std::fmt::Debug for DecisionMemo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecisionMemo")
            .field("hits", &self.hits.load(Ordering::Relaxed))
            .field("misses", &self.misses.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// The memo key: every request field Cedar sees besides the records the
/// epoch stands for, each length-prefixed so no two requests share a key
/// whatever bytes their strings hold.
pub(crate) fn key(epoch: u64, input: &DecisionInput<'_>) -> Vec<u8> {
    fn field(out: &mut Vec<u8>, v: Option<&str>) {
        match v {
            Some(s) => {
                out.extend_from_slice(
                    &u32::try_from(s.len()).unwrap_or(u32::MAX - 1).to_le_bytes(),
                );
                out.extend_from_slice(s.as_bytes());
            }
            None => out.extend_from_slice(&u32::MAX.to_le_bytes()),
        }
    }
    let r = &input.resource;
    let mut out = Vec::with_capacity(
        40 + input.token.id.len()
            + input.action.len()
            + r.resource_type.len()
            + r.id.len()
            + r.environment.map_or(0, str::len)
            + input.tool.map_or(0, str::len),
    );
    out.extend_from_slice(&epoch.to_le_bytes());
    out.push(u8::from(input.break_glass));
    field(&mut out, Some(&input.token.id));
    field(&mut out, Some(input.action));
    field(&mut out, Some(r.resource_type));
    field(&mut out, Some(r.id));
    field(&mut out, r.environment);
    field(&mut out, input.tool);
    out
}

impl DecisionMemo {
    fn shard(&self, key: &[u8]) -> &Shard {
        let i = usize::try_from(self.hasher.hash_one(key) % SHARDS as u64).unwrap_or(0);
        &self.shards[i]
    }

    /// The remembered decision for `key`, if any (shared, not copied).
    pub(crate) fn get(&self, key: &[u8]) -> Option<Arc<Decision>> {
        let found = self
            .shard(key)
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned();
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Remember `decision` for `key`.
    pub(crate) fn put(&self, key: Vec<u8>, decision: &Arc<Decision>) {
        let mut shard = self.shard(&key).lock().unwrap_or_else(|e| e.into_inner());
        if shard.len() >= PER_SHARD {
            shard.clear();
        }
        shard.insert(key.into_boxed_slice(), decision.clone());
    }

    /// (hits, misses) so far.
    pub(crate) fn stats(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }
}
