//! The audit log: append-only events, each hash-chained to the one before.
//!
//! `hash = SHA-256(prev_hash ‖ len‖time ‖ len‖kind ‖ len‖actor ‖ len‖subject ‖ len‖data)`
//! with every field length-prefixed (u64 big-endian), so no two different
//! events share an encoding. The sequence number is *not* hashed: it is the
//! row's position, and the chain links (`prev_hash`) are what fix the order.
//! That lets verification tell an edited row (its own hash is wrong) from a
//! deleted one (a link points at nothing) from a reordered one (a link points
//! at a row that is elsewhere).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::model::Millis;

/// The hash before the first event.
pub const GENESIS: [u8; 32] = [0u8; 32];

/// One audit record as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub seq: i64,
    pub time: Millis,
    pub kind: String,
    pub actor: String,
    pub subject: String,
    /// JSON text, hashed exactly as stored.
    pub data: String,
    #[serde(with = "hex32")]
    pub prev_hash: [u8; 32],
    #[serde(with = "hex32")]
    pub hash: [u8; 32],
}

mod hex32 {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = String::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(&s, &mut out).map_err(serde::de::Error::custom)?;
        Ok(out)
    }
}

/// Compute an event's hash from its content and the previous hash.
pub fn event_hash(
    prev: &[u8; 32],
    time: Millis,
    kind: &str,
    actor: &str,
    subject: &str,
    data: &str,
) -> [u8; 32] {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(prev);
    ctx.update(&8u64.to_be_bytes());
    ctx.update(&time.to_be_bytes());
    for field in [kind, actor, subject, data] {
        ctx.update(&(field.len() as u64).to_be_bytes());
        ctx.update(field.as_bytes());
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// A not-yet-chained event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    pub time: Millis,
    pub kind: String,
    pub actor: String,
    pub subject: String,
    pub data: String,
}

/// The tip of the chain: where the next event attaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainHead {
    pub seq: i64,
    pub hash: [u8; 32],
}

impl ChainHead {
    /// An empty log.
    pub const EMPTY: ChainHead = ChainHead {
        seq: 0,
        hash: GENESIS,
    };

    /// Chain one event onto the head, advancing it.
    pub fn append(&mut self, e: NewEvent) -> Event {
        let hash = event_hash(&self.hash, e.time, &e.kind, &e.actor, &e.subject, &e.data);
        let ev = Event {
            seq: self.seq + 1,
            time: e.time,
            kind: e.kind,
            actor: e.actor,
            subject: e.subject,
            data: e.data,
            prev_hash: self.hash,
            hash,
        };
        self.seq = ev.seq;
        self.hash = hash;
        ev
    }
}

/// What verification found wrong, naming the row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum ChainBreak {
    #[error("event {seq} was edited: its content no longer matches its hash")]
    Edited { seq: i64 },
    #[error(
        "events {from} to {to} were deleted: event {next} links to a predecessor that is missing"
    )]
    Deleted { from: i64, to: i64, next: i64 },
    #[error("event {seq} is out of order: it links to event {links_to}, not to event {previous}")]
    Reordered {
        seq: i64,
        links_to: i64,
        previous: i64,
    },
    #[error("event {seq} links to an event that is not in the log (deleted and renumbered)")]
    Unlinked { seq: i64 },
}

/// Summary of a clean verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ChainSummary {
    pub events: u64,
    pub head_seq: i64,
    #[serde(with = "hex32")]
    pub head_hash: [u8; 32],
}

/// Most breaks reported before verification stops listing them.
pub const MAX_BREAKS: usize = 100;

/// Streaming verifier. Pass 1 feeds every event's hash to [`ChainVerifier::index`];
/// pass 2 feeds the events in storage order (ascending `seq`) to
/// [`ChainVerifier::check`]. Memory is one hash per event, not the events.
#[derive(Debug, Default)]
pub struct ChainVerifier {
    by_hash: HashMap<[u8; 32], i64>,
    prev: Option<ChainHead>,
    count: u64,
    breaks: Vec<ChainBreak>,
}

impl ChainVerifier {
    /// Start a verification.
    pub fn new() -> Self {
        Self::default()
    }

    /// Pass 1: remember where each hash sits.
    pub fn index(&mut self, seq: i64, hash: [u8; 32]) {
        self.by_hash.insert(hash, seq);
    }

    /// Pass 2: check one event against its predecessor.
    pub fn check(&mut self, e: &Event) {
        let prev = self.prev.unwrap_or(ChainHead::EMPTY);
        let own = event_hash(&e.prev_hash, e.time, &e.kind, &e.actor, &e.subject, &e.data);
        let found = if own != e.hash {
            Some(ChainBreak::Edited { seq: e.seq })
        } else if e.prev_hash != prev.hash {
            Some(match self.by_hash.get(&e.prev_hash) {
                Some(&links_to) => ChainBreak::Reordered {
                    seq: e.seq,
                    links_to,
                    previous: prev.seq,
                },
                None if e.seq > prev.seq + 1 => ChainBreak::Deleted {
                    from: prev.seq + 1,
                    to: e.seq - 1,
                    next: e.seq,
                },
                None => ChainBreak::Unlinked { seq: e.seq },
            })
        } else if e.seq != prev.seq + 1 {
            // links fine but numbering jumps: rows renumbered after a cut
            Some(ChainBreak::Unlinked { seq: e.seq })
        } else {
            None
        };
        if let Some(b) = found
            && self.breaks.len() < MAX_BREAKS
        {
            self.breaks.push(b);
        }
        self.count += 1;
        self.prev = Some(ChainHead {
            seq: e.seq,
            hash: e.hash,
        });
    }

    /// The verdict.
    pub fn finish(self) -> Result<ChainSummary, Vec<ChainBreak>> {
        let head = self.prev.unwrap_or(ChainHead::EMPTY);
        if self.breaks.is_empty() {
            Ok(ChainSummary {
                events: self.count,
                head_seq: head.seq,
                head_hash: head.hash,
            })
        } else {
            Err(self.breaks)
        }
    }
}

/// Verify a whole log given in storage order (ascending `seq`). Reports
/// the breaks found, first one first.
pub fn verify_chain(events: &[Event]) -> Result<ChainSummary, Vec<ChainBreak>> {
    let mut v = ChainVerifier::new();
    for e in events {
        v.index(e.seq, e.hash);
    }
    for e in events {
        v.check(e);
    }
    v.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(n: usize) -> Vec<Event> {
        let mut head = ChainHead::EMPTY;
        (0..n)
            .map(|i| {
                head.append(NewEvent {
                    time: i as i64,
                    kind: "k".into(),
                    actor: "op".into(),
                    subject: format!("s{i}"),
                    data: "{}".into(),
                })
            })
            .collect()
    }

    #[test]
    fn clean_log_verifies() {
        let l = log(5);
        let s = verify_chain(&l).unwrap();
        assert_eq!(s.events, 5);
        assert_eq!(s.head_seq, 5);
        assert!(verify_chain(&[]).is_ok());
    }

    #[test]
    fn detects_edit_delete_reorder() {
        let mut l = log(6);
        l[2].subject = "tampered".into();
        assert_eq!(
            verify_chain(&l).unwrap_err()[0],
            ChainBreak::Edited { seq: 3 }
        );

        let mut l = log(6);
        l.remove(3);
        assert_eq!(
            verify_chain(&l).unwrap_err()[0],
            ChainBreak::Deleted {
                from: 4,
                to: 4,
                next: 5
            }
        );

        let mut l = log(6);
        l.swap(2, 3);
        let (a, b) = (l[2].seq, l[3].seq);
        l[2].seq = b;
        l[3].seq = a;
        assert_eq!(
            verify_chain(&l).unwrap_err()[0],
            ChainBreak::Reordered {
                seq: 3,
                links_to: 4,
                previous: 2
            }
        );
    }

    #[test]
    fn hash_is_field_delimited() {
        let a = event_hash(&GENESIS, 1, "ab", "c", "", "");
        let b = event_hash(&GENESIS, 1, "a", "bc", "", "");
        assert_ne!(a, b);
    }
}
