//! The scanning engine: keyword prefilter, bounded windows, regex, filters.

use std::collections::BTreeMap;
use std::ops::Range;

use aho_corasick::{AhoCorasick, AhoCorasickKind, Anchored, MatchKind, StartKind};
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
/// Trigram table size: three 6-bit codes.
const TRIGRAM_BITS: u32 = 18;
const TRIGRAM_WORDS: usize = 1 << (TRIGRAM_BITS - 6);

/// Finds every keyword occurrence, ASCII case-insensitively.
///
/// A first pass looks at each position's three-byte prefix (case-folded and
/// mapped to 6-bit codes) in a 2^18-bit table of the keywords' first three
/// bytes: one table load per byte, no dependency between positions, so it
/// runs near memory speed. Only positions whose prefix starts some keyword
/// go to an anchored Aho-Corasick automaton, which confirms the longest
/// keyword starting there.
#[derive(Clone)]
struct Prefilter {
    /// Byte -> 6-bit code (case-folded; bytes in no keyword share code 0).
    codes: [u8; 256],
    /// Bit per trigram code: some keyword starts with it.
    starts: Box<[u64; TRIGRAM_WORDS]>,
    /// Anchored automaton over the keywords.
    automaton: AhoCorasick,
}

impl std::fmt::Debug for Prefilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set: u32 = self.starts.iter().map(|w| w.count_ones()).sum();
        f.debug_struct("Prefilter")
            .field("trigrams", &set)
            .field("keywords", &self.automaton.patterns_len())
            .finish()
    }
}

impl Prefilter {
    fn build(keywords: &[String]) -> Option<Prefilter> {
        if keywords.is_empty() || keywords.iter().any(String::is_empty) {
            return None;
        }
        let mut codes = [0u8; 256];
        let mut next = 1u8;
        for b in keywords.iter().flat_map(|k| k.bytes()) {
            let lower = b.to_ascii_lowercase();
            if codes[usize::from(lower)] == 0 && next < 64 {
                codes[usize::from(lower)] = next;
                codes[usize::from(lower.to_ascii_uppercase())] = next;
                next += 1;
            }
        }
        let mut starts = Box::new([0u64; TRIGRAM_WORDS]);
        let mut set = |code: u32| starts[(code >> 6) as usize] |= 1 << (code & 63);
        for k in keywords {
            let c: Vec<u32> = k
                .bytes()
                .map(|b| u32::from(codes[usize::from(b)]))
                .collect();
            // Keywords shorter than three bytes start every trigram they prefix.
            match c.as_slice() {
                [a] => (0..64).for_each(|x| (0..64).for_each(|y| set(a << 12 | x << 6 | y))),
                [a, b] => (0..64).for_each(|y| set(a << 12 | b << 6 | y)),
                [a, b, c, ..] => set(a << 12 | b << 6 | c),
                [] => {}
            }
        }
        let automaton = AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::LeftmostLongest)
            .start_kind(StartKind::Anchored)
            .kind(Some(AhoCorasickKind::DFA))
            .build(keywords)
            .ok()?;
        Some(Prefilter {
            codes,
            starts,
            automaton,
        })
    }

    /// Calls `f(start, end, keyword)` for every position where a keyword
    /// starts (the longest one there), in increasing order.
    fn for_each_hit(&self, bytes: &[u8], mut f: impl FnMut(usize, usize, usize)) {
        let mut confirm = |at: usize| {
            let input = aho_corasick::Input::new(bytes)
                .span(at..bytes.len())
                .anchored(Anchored::Yes);
            if let Some(m) = self.automaton.find(input) {
                f(m.start(), m.end(), m.pattern().as_usize());
            }
        };
        let code = |b: u8| u32::from(self.codes[usize::from(b)]);
        let starts_keyword = |trigram: u32| {
            let word = self.starts[(trigram >> 6) as usize & (TRIGRAM_WORDS - 1)];
            (word >> (trigram & 63)) & 1
        };
        // Eight positions per step, with one branch: the common case is
        // that none of them starts a keyword.
        let mut at = 0;
        while let Some(block) = bytes.get(at..at + 10) {
            let mut c = [0u32; 10];
            for (slot, &b) in c.iter_mut().zip(block) {
                *slot = code(b);
            }
            let mut found = 0u32;
            for k in 0..8 {
                let trigram = c[k] << 12 | c[k + 1] << 6 | c[k + 2];
                found |= (starts_keyword(trigram) as u32) << k;
            }
            while found != 0 {
                confirm(at + found.trailing_zeros() as usize);
                found &= found - 1;
            }
            at += 8;
        }
        while at + 2 < bytes.len() {
            let trigram = code(bytes[at]) << 12 | code(bytes[at + 1]) << 6 | code(bytes[at + 2]);
            if starts_keyword(trigram) != 0 {
                confirm(at);
            }
            at += 1;
        }
        // The last two positions have no full trigram: ask the automaton.
        for at in bytes.len().saturating_sub(2)..bytes.len() {
            confirm(at);
        }
    }
}

/// A set of compiled rules behind one keyword prefilter.
///
/// Building a scanner compiles every regex and the keyword automaton, so
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
                    .filter(|(_, r)| r.keywords.iter().any(|k| hit.contains(k.as_str())))
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
        Scanner {
            rules,
            prefilter,
            keyword_rules,
            unconditional,
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

        let active: Vec<bool> = self
            .rules
            .iter()
            .map(|r| match (&r.path, ctx.path) {
                (None, _) => true,
                (Some(p), Some(path)) => p.is_match(path.as_bytes()),
                (Some(_), None) => false,
            })
            .collect();

        let windows = self.windows(bytes, &active, &mut stats);
        stats.windows = windows.len();

        let mut candidates = Vec::new();
        let mut caps_by_rule: Vec<Option<regex_automata::util::captures::Captures>> =
            vec![None; self.rules.len()];
        for (rule_index, window) in windows {
            let rule = &self.rules[rule_index];
            let Some(pattern) = &rule.regex else { continue };
            let re = pattern.regex();
            let caps = caps_by_rule[rule_index].get_or_insert_with(|| re.create_captures());
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

    /// The regex windows: per rule, overlapping and touching windows merged.
    fn windows(
        &self,
        bytes: &[u8],
        active: &[bool],
        stats: &mut ScanStats,
    ) -> Vec<(usize, Range<usize>)> {
        let len = bytes.len();
        let mut out = Vec::new();
        if let Some(prefilter) = &self.prefilter {
            let mut open: Vec<Option<Range<usize>>> = vec![None; self.rules.len()];
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
                    if !active[r] || self.rules[r].regex.is_none() {
                        continue;
                    }
                    let end = match self.rules[r].reach {
                        Reach::Line => line_end.min(hit_end.saturating_add(WINDOW_AFTER)),
                        Reach::Forward(n) => len.min(hit_end.saturating_add(n)),
                    };
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
            for (r, w) in open.into_iter().enumerate() {
                if let Some(w) = w {
                    out.push((r, w));
                }
            }
        }
        for &r in &self.unconditional {
            if active[r] {
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

    fn path_findings(&self, active: &[bool], ctx: &ScanContext<'_>) -> Vec<Finding> {
        let Some(path) = ctx.path else {
            return Vec::new();
        };
        self.rules
            .iter()
            .zip(active)
            .filter(|(r, on)| **on && r.regex.is_none() && r.path.is_some())
            .map(|(r, _)| make_finding(r, path.as_bytes(), 0, 0, 0..0))
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
