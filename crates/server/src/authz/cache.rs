//! Verified tokens by the SHA-256 of their text.
//!
//! Verifying an Ed25519 signature costs ~53 µs, more than a whole decision
//! may; so a token is verified (or looked up by its opaque hash) once and
//! kept here with its registry record. Revocation is *not* cached: every
//! decision asks the store's [`leash_store::RevocationSet`], which the writer
//! updates before it acknowledges a revocation. The key is a digest, so the
//! cache holds no secret and a lookup compares no secret.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, RwLock};

use leash_core::{Millis, Token};

/// The keys are SHA-256 digests, already uniformly distributed: their first
/// eight bytes are the hash (no second hash per lookup).
#[derive(Debug, Default)]
struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // `[u8; 32]` hashes as its length prefix then its bytes
        if let Some(b) = bytes.get(..8)
            && bytes.len() == 32
        {
            let mut first = [0u8; 8];
            first.copy_from_slice(b);
            self.0 = u64::from_le_bytes(first);
        }
    }
    fn write_usize(&mut self, _: usize) {}
}

type DigestMap<V> = HashMap<[u8; 32], V, BuildHasherDefault<DigestHasher>>;

/// Bounded map of verified tokens.
#[derive(Debug)]
pub struct TokenCache {
    map: RwLock<DigestMap<Arc<Token>>>,
    capacity: usize,
}

impl TokenCache {
    /// A cache that holds at most `capacity` tokens.
    pub fn new(capacity: usize) -> Self {
        Self {
            map: RwLock::new(DigestMap::with_capacity_and_hasher(
                capacity.min(65_536),
                BuildHasherDefault::default(),
            )),
            capacity: capacity.max(1),
        }
    }

    /// The token whose text hashes to `key`, if cached.
    pub fn get(&self, key: &[u8; 32]) -> Option<Arc<Token>> {
        self.map
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()
    }

    /// Remember a verified token. When full, expired entries go first; if
    /// that frees nothing, the cache starts over (a miss only costs a
    /// verification).
    pub fn insert(&self, key: [u8; 32], token: Arc<Token>, now: Millis) {
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        if map.len() >= self.capacity {
            map.retain(|_, t| t.expires_at > now);
            if map.len() >= self.capacity {
                map.clear();
            }
        }
        map.insert(key, token);
    }

    /// How many tokens are cached.
    pub fn len(&self) -> usize {
        self.map.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(id: &str, expires_at: Millis) -> Arc<Token> {
        Arc::new(Token {
            id: id.into(),
            format: leash_core::TokenFormat::Jwt,
            owner_id: 1,
            workload_id: 1,
            run_id: None,
            workflow_id: None,
            scopes: vec![],
            audience: vec![],
            issued_at: 0,
            expires_at,
            parent_id: None,
            justification: None,
            revocation: None,
            depth: 0,
            act: None,
            may_act: None,
            cnf_jkt: None,
            break_glass: false,
        })
    }

    #[test]
    fn bounded_and_expired_entries_leave_first() {
        let c = TokenCache::new(2);
        c.insert([1; 32], token("a", 10), 0);
        c.insert([2; 32], token("b", 100), 0);
        // full: "a" has expired at 50 and makes room
        c.insert([3; 32], token("c", 100), 50);
        assert!(c.get(&[1; 32]).is_none());
        assert_eq!(c.get(&[2; 32]).map(|t| t.id.clone()).as_deref(), Some("b"));
        assert_eq!(c.len(), 2);
        // full of live tokens: start over
        c.insert([4; 32], token("d", 100), 50);
        assert_eq!(c.len(), 1);
    }
}
