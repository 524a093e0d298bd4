//! The scanning engine: keyword prefilter, bounded windows, regex, filters.

use std::collections::BTreeMap;
use std::ops::Range;

use regex_automata::Input;

use crate::filters;
use crate::rule::{AllowQuery, Check, Reach, Rule, Tier};
use crate::{Finding, ScanContext, ScanReport, ScanStats, Secret};

/// Input whose first this-many bytes hold a NUL is treated as binary.
pub const BINARY_SNIFF_LEN: usize = 8 * 1024;
/// A line window reaches at most this far before a keyword hit…
const WINDOW_BEFORE: usize = 512;
/// …and this far after it. Longer lines are cut; shorter ones are whole.
const WINDOW_AFTER: usize = 4 * 1024;
/// An allowlist's `line` target is capped at this many bytes each side.
const LINE_TARGET_CAP: usize = 4 * 1024;
/// The keyword prefilter maps each position to one of this many one-byte
/// table slots (64 KiB).
const TABLE_BITS: u32 = 16;
const TABLE_SLOTS: usize = 1 << TABLE_BITS;
// `word_slots` cuts slots out of 16-bit lanes: a slot is a `u16`, so it is
// always in bounds without a check.
const _: () = assert!(TABLE_BITS == 16);
/// ORed into every byte: folds ASCII letters to lower case.
const FOLD: u64 = u64::from_le_bytes([0x20; 8]);
/// Then each byte is cut to its low six bits.
const SIX_BITS: u64 = u64::from_le_bytes([0x3f; 8]);
/// Positions the prefilter looks at per step, and the bytes that takes:
/// three overlapping 8-byte words at offsets 0, 5 and 10, five positions
/// from each.
const STEP: usize = 15;
const BLOCK: usize = 18;

/// The table slots of the first five positions of the 8-byte word `word`.
///
/// Each byte is folded (`| 0x20`) and cut to six bits, giving `c`; the slot
/// of position `k` is bits `8k..8k + 16` of `c ^ c >> 3 ^ c >> 6 ^ c >> 11`:
/// a mix of all of bytes `k`, `k + 1` and `k + 2` and the low three bits of
/// byte `k + 3`, and of nothing else. Folding and cutting make some bytes
/// look alike (`_` and DEL, digits and some letters) and the mix lets some
/// quadruples share a slot: that only adds candidates, and every candidate
/// is confirmed on the real bytes.
#[inline(always)]
fn word_slots(word: [u8; 8]) -> [usize; 5] {
    let c = (u64::from_le_bytes(word) | FOLD) & SIX_BITS;
    let mut h = c ^ c >> 3 ^ c >> 6 ^ c >> 11;
    let mut slots = [0; 5];
    for slot in &mut slots {
        *slot = usize::from(h as u16);
        h >>= 8;
    }
    slots
}

/// The table slots of the first [`STEP`] positions of `block`.
#[inline(always)]
fn block_slots(block: &[u8; BLOCK]) -> [usize; STEP] {
    let word = |at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&block[at..at + 8]);
        word_slots(w)
    };
    let (a, b, c) = (word(0), word(5), word(10));
    [
        a[0], a[1], a[2], a[3], a[4], b[0], b[1], b[2], b[3], b[4], c[0], c[1], c[2], c[3], c[4],
    ]
}

/// The slot of a position that starts with these four bytes.
fn slot_of(prefix: [u8; 4]) -> usize {
    let mut word = [0u8; 8];
    word[..4].copy_from_slice(&prefix);
    word_slots(word)[0]
}

/// Finds every keyword occurrence, ASCII case-insensitively.
///
/// Fifteen positions per step: three 8-byte loads and a few shifts and XORs
/// give their table slots ([`word_slots`]), fifteen loads from a 64 KiB
/// table say whether a keyword starts with bytes of that slot, and the step
/// branches once, on whether any of them did (about one step in eight on
/// source code, mostly on real keyword prefixes such as `toke` or `data`).
/// Only then is each marked position compared with the few keywords filed
/// under its slot, longest first.
#[derive(Clone)]
struct Prefilter {
    /// 1 where the first four bytes of some keyword fall (every slot that
    /// its first bytes reach, for keywords shorter than four bytes).
    marked: Box<[u8; TABLE_SLOTS]>,
    /// Keywords filed under slot `h`: `by_slot[offsets[h]..offsets[h + 1]]`,
    /// longest first.
    offsets: Box<[u32]>,
    by_slot: Box<[u32]>,
    keywords: Vec<Box<[u8]>>,
}

impl std::fmt::Debug for Prefilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let marked = self.marked.iter().filter(|&&m| m != 0).count();
        f.debug_struct("Prefilter")
            .field("marked_slots", &marked)
            .field("keywords", &self.keywords.len())
            .finish()
    }
}

impl Prefilter {
    fn build(keywords: &[String]) -> Option<Prefilter> {
        if keywords.is_empty() || keywords.iter().any(String::is_empty) {
            return None;
        }
        // Only the low six bits of a folded byte reach a slot.
        let any_byte = 0..64u8;
        let mut filed: Vec<(usize, usize)> = Vec::new();
        for (index, k) in keywords.iter().enumerate() {
            let mut file = |prefix| filed.push((slot_of(prefix), index));
            // Keywords shorter than four bytes go under every slot whose
            // position starts with them.
            match *k.as_bytes() {
                [a, b, c, d, ..] => file([a, b, c, d]),
                [a, b, c] => any_byte.clone().for_each(|d| file([a, b, c, d])),
                [a, b] => any_byte
                    .clone()
                    .for_each(|c| any_byte.clone().for_each(|d| file([a, b, c, d]))),
                [_] => filed.extend((0..TABLE_SLOTS).map(|slot| (slot, index))),
                [] => {}
            }
        }
        filed.sort_unstable_by_key(|&(slot, k)| (slot, std::cmp::Reverse(keywords[k].len()), k));
        filed.dedup();
        let mut marked = Box::new([0u8; TABLE_SLOTS]);
        let mut offsets = vec![0u32; TABLE_SLOTS + 1];
        for &(slot, _) in &filed {
            marked[slot] = 1;
            offsets[slot + 1] += 1;
        }
        for h in 0..TABLE_SLOTS {
            offsets[h + 1] += offsets[h];
        }
        Some(Prefilter {
            marked,
            offsets: offsets.into_boxed_slice(),
            by_slot: filed.iter().map(|&(_, k)| k as u32).collect(),
            keywords: keywords
                .iter()
                .map(|k| k.as_bytes().to_vec().into_boxed_slice())
                .collect(),
        })
    }

    /// Does any of the first [`STEP`] positions of `block` fall on a marked slot?
    #[inline(always)]
    fn any_marked(&self, block: &[u8; BLOCK]) -> bool {
        block_slots(block)
            .iter()
            .fold(0, |any, &slot| any | self.marked[slot])
            != 0
    }

    /// Reports the keywords starting at the first [`STEP`] positions of
    /// `block`, which sits at `base` in `bytes`.
    #[inline(never)]
    fn confirm_block(
        &self,
        bytes: &[u8],
        block: &[u8; BLOCK],
        base: usize,
        f: &mut impl FnMut(usize, usize, usize),
    ) {
        let slots = block_slots(block);
        let mut candidates = 0u32;
        for (k, &slot) in slots.iter().enumerate() {
            candidates |= u32::from(self.marked[slot]) << k;
        }
        while candidates != 0 {
            let k = candidates.trailing_zeros() as usize;
            candidates &= candidates - 1;
            if let Some((end, keyword)) = self.confirm(bytes, base + k, slots[k]) {
                f(base + k, end, keyword);
            }
        }
    }

    /// The longest keyword filed under `slot` that starts at `at`.
    fn confirm(&self, bytes: &[u8], at: usize, slot: usize) -> Option<(usize, usize)> {
        let filed = self.offsets[slot] as usize..self.offsets[slot + 1] as usize;
        self.by_slot[filed].iter().find_map(|&k| {
            let keyword = &self.keywords[k as usize];
            let end = at.checked_add(keyword.len())?;
            bytes
                .get(at..end)?
                .eq_ignore_ascii_case(keyword)
                .then_some((end, k as usize))
        })
    }

    /// Calls `f(start, end, keyword)` for every position where a keyword
    /// starts (the longest one there), in increasing order.
    fn for_each_hit(&self, bytes: &[u8], mut f: impl FnMut(usize, usize, usize)) {
        let mut at = 0;
        while let Some(block) = bytes.get(at..at + BLOCK) {
            if let Ok(block) = <&[u8; BLOCK]>::try_from(block)
                && self.any_marked(block)
            {
                self.confirm_block(bytes, block, at, &mut f);
            }
            at += STEP;
        }
        // Fewer than BLOCK bytes are left: run them zero-padded. Padding can
        // only add candidates, and `confirm` reads the real bytes.
        let rest = bytes.get(at..).unwrap_or_default();
        let mut padded = [0u8; STEP + BLOCK];
        padded[..rest.len()].copy_from_slice(rest);
        for skip in [0, STEP] {
            if skip < rest.len()
                && let Some(block) = padded.get(skip..skip + BLOCK)
                && let Ok(block) = <&[u8; BLOCK]>::try_from(block)
            {
                self.confirm_block(bytes, block, at + skip, &mut f);
            }
        }
    }
}

/// A set of compiled rules behind one keyword prefilter.
///
/// Building a scanner compiles every regex and the keyword table, so
/// build it once and share it: `scan` takes `&self` and `Scanner` is
/// `Send + Sync`.
#[derive(Debug, Clone)]
pub struct Scanner {
    rules: Vec<Rule>,
    prefilter: Option<Prefilter>,
    /// For each prefilter pattern, the rules its hit triggers: every rule
    /// with a keyword that is a substring of it (so a longer keyword found
    /// in place of a shorter one still triggers the shorter one's rules).
    keyword_rules: Vec<Vec<usize>>,
    /// Rules with a regex but no keywords: they run over the whole input.
    unconditional: Vec<usize>,
    /// Rules limited to some paths (regex or path-only): when there are
    /// none, every rule is active on every input and nothing is looked up.
    path_rules: Vec<usize>,
}

/// A regex match that passed its rule's checks, before overlap resolution.
struct Candidate {
    rule: usize,
    tier: Tier,
    secret: Range<usize>,
}

impl Scanner {
    /// A scanner for exactly these rules.
    pub fn new(rules: Vec<Rule>) -> Scanner {
        let mut keywords: Vec<String> = Vec::new();
        for rule in &rules {
            for k in &rule.keywords {
                if !keywords.contains(k) {
                    keywords.push(k.clone());
                }
            }
        }
        let keyword_rules: Vec<Vec<usize>> = keywords
            .iter()
            .map(|hit| {
                rules
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| {
                        r.regex.is_some() && r.keywords.iter().any(|k| hit.contains(k.as_str()))
                    })
                    .map(|(i, _)| i)
                    .collect()
            })
            .collect();
        let prefilter = Prefilter::build(&keywords);
        let unconditional = rules
            .iter()
            .enumerate()
            .filter(|(_, r)| r.regex.is_some() && (r.keywords.is_empty() || prefilter.is_none()))
            .map(|(i, _)| i)
            .collect();
        let path_rules = rules
            .iter()
            .enumerate()
            .filter(|(_, r)| r.path.is_some())
            .map(|(i, _)| i)
            .collect();
        Scanner {
            rules,
            prefilter,
            keyword_rules,
            unconditional,
            path_rules,
        }
    }

    /// The rules, in the order they were given.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Find secrets in `bytes`. Binary input (a NUL byte in the first 8 KiB)
    /// gives no findings; use [`Scanner::scan_report`] to tell it apart.
    pub fn scan(&self, bytes: &[u8], ctx: &ScanContext<'_>) -> Vec<Finding> {
        self.scan_report(bytes, ctx).findings
    }

    /// Find secrets in `bytes`, with what the scan did.
    pub fn scan_report(&self, bytes: &[u8], ctx: &ScanContext<'_>) -> ScanReport {
        let mut stats = ScanStats {
            bytes: bytes.len(),
            ..ScanStats::default()
        };
        let sniff = &bytes[..bytes.len().min(BINARY_SNIFF_LEN)];
        if sniff.contains(&0) {
            stats.skipped_binary = true;
            return ScanReport {
                findings: Vec::new(),
                stats,
            };
        }

        // Rules whose path pattern rejects this input (or that need a path
        // and have none); usually there are no path rules at all.
        let inactive: Vec<usize> = self
            .path_rules
            .iter()
            .copied()
            .filter(|&r| match (&self.rules[r].path, ctx.path) {
                (Some(p), Some(path)) => !p.is_match(path.as_bytes()),
                _ => true,
            })
            .collect();
        let active = |r: usize| !inactive.contains(&r);

        let windows = self.windows(bytes, &active, &mut stats);
        stats.windows = windows.len();

        let mut candidates = Vec::new();
        // Windows come grouped by rule: one set of capture slots per group.
        let mut caps: Option<(usize, regex_automata::util::captures::Captures)> = None;
        for (rule_index, window) in windows {
            let rule = &self.rules[rule_index];
            let Some(pattern) = &rule.regex else { continue };
            let re = pattern.regex();
            let caps = match &mut caps {
                Some((r, c)) if *r == rule_index => c,
                slot => &mut slot.insert((rule_index, re.create_captures())).1,
            };
            let mut input = Input::new(bytes).span(window.clone());
            loop {
                re.search_captures(&input, caps);
                let Some(m) = caps.get_match() else { break };
                if let Some(secret) = self.accept(rule, bytes, caps, ctx) {
                    candidates.push(Candidate {
                        rule: rule_index,
                        tier: rule.tier,
                        secret,
                    });
                }
                let next = if m.is_empty() { m.end() + 1 } else { m.end() };
                if next > window.end {
                    break;
                }
                input.set_start(next);
            }
        }

        let kept = resolve_overlaps(candidates);
        let mut findings = self.path_findings(&active, ctx);
        findings.extend(self.to_findings(bytes, kept));
        ScanReport { findings, stats }
    }

    /// The regex windows, grouped by rule and in input order within a rule,
    /// overlapping and touching windows of a rule merged.
    fn windows(
        &self,
        bytes: &[u8],
        active: &impl Fn(usize) -> bool,
        stats: &mut ScanStats,
    ) -> Vec<(usize, Range<usize>)> {
        let len = bytes.len();
        let mut out: Vec<(usize, Range<usize>)> = Vec::new();
        if let Some(prefilter) = &self.prefilter {
            // Each rule's open window, merged with the next one while they
            // touch: memory stays bounded by the rules, however many hits.
            let mut open: Vec<Option<Range<usize>>> = Vec::new();
            let mut lines = LineCache::default();
            prefilter.for_each_hit(bytes, |hit_start, hit_end, keyword| {
                stats.keyword_hits += 1;
                let line = lines.bounds(bytes, hit_start);
                // Windows take in the newlines around the line: regexes may
                // consume one as the character before or after a token.
                let start = line
                    .start
                    .saturating_sub(1)
                    .max(hit_start.saturating_sub(WINDOW_BEFORE));
                let line_end = len.min(line.end + 1);
                for &r in &self.keyword_rules[keyword] {
                    if !active(r) {
                        continue;
                    }
                    let end = match self.rules[r].reach {
                        Reach::Line => line_end.min(hit_end.saturating_add(WINDOW_AFTER)),
                        Reach::Forward(n) => len.min(hit_end.saturating_add(n)),
                    };
                    if open.is_empty() {
                        open.resize(self.rules.len(), None);
                    }
                    match &mut open[r] {
                        Some(w) if start <= w.end => w.end = w.end.max(end),
                        slot => {
                            if let Some(done) = slot.replace(start..end) {
                                out.push((r, done));
                            }
                        }
                    }
                }
            });
            out.extend(
                open.into_iter()
                    .enumerate()
                    .filter_map(|(r, w)| Some((r, w?))),
            );
            // Grouped by rule, in input order within a rule (the sort is stable).
            out.sort_by_key(|(r, _)| *r);
        }
        for &r in &self.unconditional {
            if active(r) {
                out.push((r, 0..len));
            }
        }
        out
    }

    /// Run a rule's checks on one regex match; the secret's span if it passes.
    fn accept(
        &self,
        rule: &Rule,
        bytes: &[u8],
        caps: &regex_automata::util::captures::Captures,
        ctx: &ScanContext<'_>,
    ) -> Option<Range<usize>> {
        let whole = caps.get_match()?.range();
        let span = self
            .secret_span(rule, caps)
            .unwrap_or_else(|| whole.clone());
        let secret = &bytes[span.clone()];
        if secret.is_empty() {
            return None;
        }
        let certain = match rule.check {
            Check::None => false,
            Check::LeashOpaque => {
                let text = std::str::from_utf8(secret).ok()?;
                leash_token::opaque::parse(text).ok()?;
                true
            }
            Check::LeashJwt => {
                let callback = ctx.is_leash_jwt?;
                filters::jwt_alg(secret)?;
                let text = std::str::from_utf8(secret).ok()?;
                if !callback(text) {
                    return None;
                }
                true
            }
            Check::Jwt => {
                if !filters::plausible_jwt(secret) {
                    return None;
                }
                false
            }
            Check::Crc32Base62 => {
                if !filters::crc32_base62_valid(secret) {
                    return None;
                }
                true
            }
            Check::Generic { password } => {
                let key = named(rule, caps, "key")?;
                let before = |at: usize| at.checked_sub(1).map_or(b'\n', |i| bytes[i]);
                let assignment = filters::Assignment {
                    key: &bytes[key.clone()],
                    value: secret,
                    quoted: matches!(before(span.start), b'"' | b'\'' | b'`'),
                    before_key: before(key.start),
                    after_value: bytes.get(span.end).copied().unwrap_or(b'\n'),
                };
                if !filters::plausible_assignment(&assignment, password) {
                    return None;
                }
                false
            }
            Check::UrlPassword => {
                let user = named(rule, caps, "user").map_or(&b""[..], |r| &bytes[r]);
                if !filters::plausible_url_password(user, secret) {
                    return None;
                }
                false
            }
            Check::PrivateKey => {
                // The body check replaces the placeholder filter: armor
                // headers legitimately hold `<`, `>` and `...`.
                if !filters::plausible_private_key(secret) {
                    return None;
                }
                true
            }
            Check::BasicAuth => {
                if !filters::plausible_basic_auth(secret) {
                    return None;
                }
                false
            }
            Check::Base64Len(n) => {
                if !filters::is_base64_of_len(secret, n) {
                    return None;
                }
                false
            }
        };
        if let Some(min) = rule.entropy
            && filters::shannon_entropy(secret) < min
        {
            return None;
        }
        if rule.builtin_filters
            && !certain
            && (filters::is_placeholder(secret) || filters::is_checksum_invalid_token(secret))
        {
            return None;
        }
        if !rule.allowlists.is_empty() {
            let line = line_around(bytes, whole.clone());
            let query = AllowQuery {
                secret,
                whole: &bytes[whole],
                line: &bytes[line],
                path: ctx.path,
            };
            if rule.allowlists.iter().any(|a| a.allows(&query)) {
                return None;
            }
        }
        Some(span)
    }

    /// The secret inside a match: the rule's group, the group named
    /// `secret`, or (gitleaks' rule) the first non-empty group.
    fn secret_span(
        &self,
        rule: &Rule,
        caps: &regex_automata::util::captures::Captures,
    ) -> Option<Range<usize>> {
        if let Some(g) = rule.secret_group {
            return caps.get_group(g).map(|s| s.range());
        }
        if let Some(r) = named(rule, caps, "secret") {
            return Some(r);
        }
        (1..caps.group_len())
            .filter_map(|g| caps.get_group(g))
            .find(|s| !s.is_empty())
            .map(|s| s.range())
    }

    fn path_findings(
        &self,
        active: &impl Fn(usize) -> bool,
        ctx: &ScanContext<'_>,
    ) -> Vec<Finding> {
        let Some(path) = ctx.path else {
            return Vec::new();
        };
        self.path_rules
            .iter()
            .copied()
            .filter(|&r| active(r) && self.rules[r].regex.is_none())
            .map(|r| make_finding(&self.rules[r], path.as_bytes(), 0, 0, 0..0))
            .collect()
    }

    /// Line and column for each kept candidate, in input order.
    fn to_findings(&self, bytes: &[u8], mut kept: Vec<Candidate>) -> Vec<Finding> {
        kept.sort_by_key(|c| (c.secret.start, c.rule));
        let mut line = 1;
        let mut line_start = 0;
        let mut counted = 0;
        let mut out = Vec::with_capacity(kept.len());
        for c in kept {
            for (i, &b) in bytes[counted..c.secret.start].iter().enumerate() {
                if b == b'\n' {
                    line += 1;
                    line_start = counted + i + 1;
                }
            }
            counted = c.secret.start;
            let column = c.secret.start - line_start + 1;
            let rule = &self.rules[c.rule];
            out.push(make_finding(
                rule,
                &bytes[c.secret.clone()],
                line,
                column,
                c.secret,
            ));
        }
        out
    }
}

fn named(
    rule: &Rule,
    caps: &regex_automata::util::captures::Captures,
    name: &str,
) -> Option<Range<usize>> {
    let index = rule.regex.as_ref()?.named_group(name)?;
    caps.get_group(index).map(|s| s.range())
}

fn make_finding(
    rule: &Rule,
    secret: &[u8],
    line: usize,
    column: usize,
    byte_range: Range<usize>,
) -> Finding {
    let text = String::from_utf8_lossy(secret).into_owned();
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, secret);
    let secret = Secret::new(text);
    Finding {
        rule_id: rule.id.clone(),
        kind: rule.kind,
        description: rule.description.clone(),
        line,
        column,
        byte_range,
        redacted: secret.redacted(),
        fingerprint: hex::encode(digest.as_ref()),
        entropy: filters::shannon_entropy(secret.expose().as_bytes()),
        secret,
    }
}

/// Keep one finding per stretch of bytes: the lowest tier wins, then the
/// longest secret, then the earlier rule.
fn resolve_overlaps(mut candidates: Vec<Candidate>) -> Vec<Candidate> {
    candidates.sort_by(|a, b| {
        a.tier
            .cmp(&b.tier)
            .then((b.secret.end - b.secret.start).cmp(&(a.secret.end - a.secret.start)))
            .then(a.rule.cmp(&b.rule))
            .then(a.secret.start.cmp(&b.secret.start))
    });
    // Kept spans, start -> end; they never overlap each other.
    let mut taken: BTreeMap<usize, usize> = BTreeMap::new();
    let mut kept = Vec::new();
    for c in candidates {
        let overlaps = taken
            .range(..c.secret.end)
            .next_back()
            .is_some_and(|(_, &end)| end > c.secret.start);
        if !overlaps {
            taken.insert(c.secret.start, c.secret.end);
            kept.push(c);
        }
    }
    kept
}

/// The line around a match, capped at [`LINE_TARGET_CAP`] bytes each side.
fn line_around(bytes: &[u8], m: Range<usize>) -> Range<usize> {
    let lo = m.start.saturating_sub(LINE_TARGET_CAP);
    let hi = bytes.len().min(m.end.saturating_add(LINE_TARGET_CAP));
    let start = bytes[lo..m.start]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(lo, |i| lo + i + 1);
    let end = bytes[m.end..hi]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(hi, |i| m.end + i);
    start..end
}

/// Bounds of the line holding the latest keyword hit; hits arrive in
/// increasing order, so each byte is looked at a bounded number of times.
#[derive(Default)]
struct LineCache {
    current: Option<Range<usize>>,
}

impl LineCache {
    fn bounds(&mut self, bytes: &[u8], at: usize) -> Range<usize> {
        if let Some(line) = &self.current
            && line.start <= at
            && at <= line.end
        {
            return line.clone();
        }
        // The previous line ended before `at`, so the new one starts after it.
        let floor = self.current.as_ref().map_or(0, |l| l.end);
        let start = bytes[floor..at]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(floor, |i| floor + i + 1);
        let end = bytes[at..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(bytes.len(), |i| at + i);
        let line = start..end;
        self.current = Some(line.clone());
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Every (start, end, keyword) a plain search finds: at each position,
    /// the longest keyword (earliest on ties) that starts there.
    fn naive_hits(keywords: &[String], text: &[u8]) -> Vec<(usize, usize, usize)> {
        (0..text.len())
            .filter_map(|at| {
                keywords
                    .iter()
                    .enumerate()
                    .filter(|(_, k)| {
                        text.get(at..at + k.len())
                            .is_some_and(|s| s.eq_ignore_ascii_case(k.as_bytes()))
                    })
                    .max_by_key(|(i, k)| (k.len(), std::cmp::Reverse(*i)))
                    .map(|(i, k)| (at, at + k.len(), i))
            })
            .collect()
    }

    fn prefilter_hits(prefilter: &Prefilter, text: &[u8]) -> Vec<(usize, usize, usize)> {
        let mut hits = Vec::new();
        prefilter.for_each_hit(text, |start, end, k| hits.push((start, end, k)));
        hits
    }

    #[test]
    fn prefilter_finds_keywords_of_every_length_at_every_offset() {
        let keywords: Vec<String> = ["q", "Zx", "hf_", "ghp_", "PASSWORD", "password=", "pass"]
            .iter()
            .map(|k| k.to_string())
            .collect();
        let prefilter = Prefilter::build(&keywords).unwrap();
        for pad in 0..40 {
            for k in &keywords {
                let text = format!("{}{}", ".".repeat(pad), k.to_uppercase());
                assert_eq!(
                    prefilter_hits(&prefilter, text.as_bytes()),
                    naive_hits(&keywords, text.as_bytes()),
                    "{text:?}"
                );
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        // Keywords of one byte are left to the test above: each is filed
        // under all 65,536 slots, which makes a build slow in debug mode.
        #[test]
        fn prefilter_agrees_with_a_plain_search(
            keywords in proptest::collection::vec("[a-cA-C_~.=\\x7f-]{2,6}", 1..12),
            text in proptest::collection::vec(
                prop_oneof![Just(b'a'), Just(b'B'), Just(b'c'), Just(b'_'), Just(b'~'), Just(0x7f), any::<u8>()],
                0..200,
            ),
        ) {
            let prefilter = Prefilter::build(&keywords).unwrap();
            prop_assert_eq!(prefilter_hits(&prefilter, &text), naive_hits(&keywords, &text));
        }
    }

    #[test]
    fn overlap_keeps_the_stronger_tier() {
        let c = |rule, tier, secret| Candidate { rule, tier, secret };
        let kept = resolve_overlaps(vec![
            c(0, Tier::Generic, 0..30),
            c(1, Tier::Specific, 5..25),
            c(2, Tier::Generic, 40..50),
        ]);
        let rules: Vec<usize> = kept.iter().map(|c| c.rule).collect();
        assert_eq!(rules, vec![1, 2]);
    }

    #[test]
    fn line_cache_walks_forward() {
        let text = b"one\ntwo two\nthree";
        let mut lc = LineCache::default();
        assert_eq!(lc.bounds(text, 1), 0..3);
        assert_eq!(lc.bounds(text, 5), 4..11);
        assert_eq!(lc.bounds(text, 9), 4..11);
        assert_eq!(lc.bounds(text, 14), 12..17);
        assert_eq!(line_around(text, 5..7), 4..11);
    }
}
