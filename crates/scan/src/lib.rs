//! Exposure detection: find Leash tokens and third-party credentials in text.
//!
//! This is the engine behind `leash scan PATH…` and the webhook endpoints
//! that look at tickets, chats and CI logs. It does no IO: callers pass the
//! bytes (and, optionally, the path they came from) and get findings back.
//!
//! * **Leash's own tokens are recognised with certainty.** An opaque
//!   `lsh_…` token is reported only when its CRC32 checksum is valid; a
//!   JWT-shaped string is reported as a Leash token only when the caller's
//!   callback (which verifies signature and `kid` against its key ring) says so.
//! * **Third-party credentials** come from [`builtin::rules`] (over a hundred
//!   formats, GitHub and npm tokens checksum-validated) and from gitleaks rule
//!   files ([`gitleaks::parse_rules`]).
//! * **Every human-readable output is redacted**: a [`Secret`] prints as at
//!   most its first four characters, `…` and its length; the raw value is only
//!   reachable through [`Secret::expose`].
//!
//! # Design: keywords first, regexes only near them
//!
//! Every rule names keywords (`ghp_`, `sk-ant-api03-`, `password`, …). A
//! scan first finds every keyword occurrence, ASCII case-insensitively: each
//! position's first bytes are mixed (shifts and XORs on 64-bit words) into a
//! slot of a table marking the keywords' first bytes (one load per byte,
//! one branch per fifteen bytes), and only positions on a marked slot are
//! compared with the few keywords filed there. A rule's regex
//! then runs only where one of its keywords was hit, and only over a bounded
//! window: the enclosing line, capped at a few KiB for very long lines, or
//! up to 32 KiB forward for multi-line private key blocks. Regexes are
//! `regex_automata::meta` regexes: finite automata, no backtracking, so time
//! stays linear in the input whatever the rules and the text. Input with a
//! NUL byte in its first 8 KiB is skipped as binary.
//!
//! Matches then pass per-rule checks (checksums, JWT structure, entropy,
//! placeholders, documented example keys, allowlists), and where two
//! findings cover the same bytes the more specific rule wins (Leash tokens,
//! then vendor formats, then broad shapes, then generic assignments).
//!
//! # Example
//!
//! ```
//! use leash_scan::{FindingKind, ScanContext, Scanner};
//!
//! let scanner = Scanner::builtin();
//! let text = b"deploy failed, retrying with DIGITALOCEAN_TOKEN=dop_v1_\
//! a4c123b1612dd272d1371c17149d439536b3216fdaeeb975729fae923d5a4fd1";
//! let findings = scanner.scan(text, &ScanContext::new());
//! assert_eq!(findings.len(), 1);
//! let f = &findings[0];
//! assert_eq!(f.rule_id, "digitalocean-pat");
//! assert_eq!(f.kind, FindingKind::ThirdParty);
//! assert_eq!((f.line, f.column), (1, 49));
//! assert_eq!(f.redacted, "dop_…(71 chars)");
//! assert_eq!(format!("{}", f.secret), "dop_…(71 chars)");
//! assert!(f.secret.expose().starts_with("dop_v1_a4c1"));
//!
//! // A Leash opaque token whose checksum does not match is not a finding.
//! let typo = b"token: lsh_Q7rT2mVx9KpL4nZc8WbY1sHd6FjA3eKs4gfFC3";
//! assert!(scanner.scan(typo, &ScanContext::new()).is_empty());
//! ```

pub mod builtin;
mod filters;
pub mod gitleaks;
mod rule;
mod scanner;

use std::ops::Range;

use serde::Serialize;

pub use filters::{redact, shannon_entropy};
pub use rule::{Allowlist, Condition, Pattern, RegexTarget, Rule, RuleError};
pub use scanner::{BINARY_SNIFF_LEN, Scanner};

impl Scanner {
    /// A scanner with every built-in rule (Leash tokens and third-party formats).
    pub fn builtin() -> Scanner {
        Scanner::new(builtin::rules())
    }

    /// The built-in rules plus `extra`. An extra rule whose id equals a
    /// built-in one replaces it.
    pub fn builtin_with(extra: Vec<Rule>) -> Scanner {
        let mut rules: Vec<Rule> = builtin::rules()
            .into_iter()
            .filter(|b| !extra.iter().any(|e| e.id() == b.id()))
            .collect();
        rules.extend(extra);
        Scanner::new(rules)
    }
}

/// What a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// A checksum-valid Leash opaque token (`lsh_…`).
    LeashOpaque,
    /// A JWT the caller's key ring recognises as a Leash access token.
    LeashJwt,
    /// Anything else: a third-party credential.
    ThirdParty,
}

/// A matched secret. It never prints itself: `Debug`, `Display` and
/// `Serialize` all give the redacted form; [`Secret::expose`] gives the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub(crate) fn new(raw: String) -> Secret {
        Secret(raw)
    }

    /// The raw secret. Call this only to act on it (revoke, compare, hash),
    /// never to show it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// At most the first four characters, `…`, and the length in characters.
    pub fn redacted(&self) -> String {
        filters::redact(&self.0)
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({})", self.redacted())
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.redacted())
    }
}

/// One secret found in the input.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// The rule that found it (`github-pat`, `leash-opaque`, …).
    pub rule_id: String,
    /// Leash token or third-party credential.
    pub kind: FindingKind,
    /// The rule's description.
    pub description: String,
    /// 1-based line of the secret's first byte (0 for path-only rules).
    pub line: usize,
    /// 1-based byte column of the secret's first byte (0 for path-only rules).
    pub column: usize,
    /// Byte offsets of the secret in the input.
    pub byte_range: Range<usize>,
    /// The secret; prints redacted.
    pub secret: Secret,
    /// The redacted form, for display.
    pub redacted: String,
    /// Hex SHA-256 of the secret's bytes as they appear in the input.
    pub fingerprint: String,
    /// Shannon entropy of the secret, bits per byte.
    pub entropy: f64,
}

/// Callback deciding whether a JWT-shaped string is a Leash token.
pub type LeashJwtCheck<'a> = &'a dyn Fn(&str) -> bool;

/// What the caller knows about the input.
#[derive(Clone, Copy, Default)]
pub struct ScanContext<'a> {
    /// Where the bytes came from, for rules and allowlists with `path`.
    pub path: Option<&'a str>,
    /// Says whether a JWT-shaped string is a Leash token (the caller checks
    /// signature and `kid` against its key ring). Without it, no finding is
    /// ever [`FindingKind::LeashJwt`].
    pub is_leash_jwt: Option<LeashJwtCheck<'a>>,
}

impl<'a> ScanContext<'a> {
    /// No path, no JWT callback.
    pub fn new() -> ScanContext<'a> {
        ScanContext::default()
    }

    /// With the path the bytes came from.
    pub fn with_path(mut self, path: &'a str) -> ScanContext<'a> {
        self.path = Some(path);
        self
    }

    /// With the callback that recognises Leash JWTs.
    pub fn with_leash_jwt_check(mut self, check: LeashJwtCheck<'a>) -> ScanContext<'a> {
        self.is_leash_jwt = Some(check);
        self
    }
}

impl std::fmt::Debug for ScanContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScanContext")
            .field("path", &self.path)
            .field("is_leash_jwt", &self.is_leash_jwt.is_some())
            .finish()
    }
}

/// What a scan did, besides finding things.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ScanStats {
    /// Bytes of input.
    pub bytes: usize,
    /// The input looked binary and was not scanned.
    pub skipped_binary: bool,
    /// Keyword hits of the prefilter.
    pub keyword_hits: usize,
    /// Regex windows run (after merging overlapping ones).
    pub windows: usize,
}

/// Findings and stats of one scan.
#[derive(Debug, Clone, Serialize)]
pub struct ScanReport {
    /// The findings, in input order.
    pub findings: Vec<Finding>,
    /// What the scan did.
    pub stats: ScanStats,
}
