//! Detection rules and allowlists: what to look for and what to let pass.

use regex_automata::meta::{self, Regex};
use regex_automata::util::syntax;
use regex_automata::{Input, PatternID};

use crate::FindingKind;

/// Largest compiled NFA we accept for one pattern (bytes). Keeps a hostile
/// rule file (`a{1000}{1000}`) from eating memory: it fails to compile instead.
const NFA_SIZE_LIMIT: usize = 4 << 20;
/// Lazy DFA cache per pattern and thread: room for the generic rules' states
/// so they are not rebuilt over and over (memory is taken only as needed).
const LAZY_DFA_CACHE: usize = 8 << 20;

/// Why a rule or a rule file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// The TOML itself does not parse.
    #[error("not valid TOML: {0}")]
    Syntax(String),
    /// One field of one rule is wrong.
    #[error("rule `{rule}`: field `{field}`: {message}")]
    Field {
        /// The rule id (or `#N` when the rule has no id).
        rule: String,
        /// The field, with its position inside arrays (`allowlists[0].regexes[2]`).
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// A top-level field is wrong or unsupported.
    #[error("field `{field}`: {message}")]
    Config {
        /// The field (`extend.path`).
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// One field of a global allowlist is wrong.
    #[error("global allowlist {index}: field `{field}`: {message}")]
    Allowlist {
        /// Position of the allowlist in the file (0 for `[allowlist]`).
        index: usize,
        /// The field.
        field: String,
        /// What is wrong with it.
        message: String,
    },
}

impl RuleError {
    pub(crate) fn field(rule: &str, field: &str, message: impl Into<String>) -> Self {
        RuleError::Field {
            rule: rule.to_string(),
            field: field.to_string(),
            message: message.into(),
        }
    }
}

/// A compiled regular expression together with its source text.
///
/// Patterns use the syntax of the `regex` crate. Character classes `\w`,
/// `\d`, `\s`, `\b` and `(?i)` are ASCII-only (as in Go's RE2, which rule
/// files written for gitleaks assume); a pattern that needs Unicode classes
/// (`\p{L}`) is compiled in Unicode mode instead. Matching is linear in the
/// input: there is no backtracking engine behind it.
#[derive(Clone)]
pub struct Pattern {
    source: String,
    regex: Regex,
}

impl Pattern {
    /// Compile `source`. The error text says what the regex engine refused.
    pub fn new(source: &str) -> Result<Pattern, String> {
        let build = |unicode: bool| {
            meta::Regex::builder()
                .syntax(syntax::Config::new().unicode(unicode).utf8(false))
                .configure(
                    meta::Regex::config()
                        .utf8_empty(false)
                        .nfa_size_limit(Some(NFA_SIZE_LIMIT))
                        .hybrid_cache_capacity(LAZY_DFA_CACHE),
                )
                .build(source)
                .map_err(|e| e.to_string())
        };
        match build(false) {
            Ok(regex) => Ok(Pattern {
                source: source.to_string(),
                regex,
            }),
            Err(ascii_err) => match build(true) {
                Ok(regex) => Ok(Pattern {
                    source: source.to_string(),
                    regex,
                }),
                Err(_) => Err(format!("invalid regular expression: {ascii_err}")),
            },
        }
    }

    /// The source text.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Does the pattern match anywhere in `haystack`?
    pub fn is_match(&self, haystack: &[u8]) -> bool {
        self.regex.is_match(Input::new(haystack))
    }

    pub(crate) fn regex(&self) -> &Regex {
        &self.regex
    }

    /// Number of capture groups, not counting the whole match.
    pub(crate) fn group_count(&self) -> usize {
        self.regex.captures_len().saturating_sub(1)
    }

    pub(crate) fn named_group(&self, name: &str) -> Option<usize> {
        self.regex.group_info().to_index(PatternID::ZERO, name)
    }
}

impl std::fmt::Debug for Pattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pattern({:?})", self.source)
    }
}

/// What an allowlist regex is matched against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RegexTarget {
    /// The secret (the capture group), as gitleaks does by default.
    #[default]
    Secret,
    /// The whole regex match.
    Match,
    /// The line holding the match (capped at a few KiB around it).
    Line,
}

/// How the criteria of one allowlist combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Condition {
    /// Any criterion that matches allows the finding.
    #[default]
    Or,
    /// Every criterion that is set must match.
    And,
}

/// Reasons to let a match pass: gitleaks' allowlist, minus commits (a text
/// scanner has none; an `AND` allowlist that names commits never matches).
#[derive(Debug, Clone, Default)]
pub struct Allowlist {
    /// Free text.
    pub description: String,
    /// Allowed when one of these matches [`Allowlist::regex_target`].
    pub regexes: Vec<Pattern>,
    /// Allowed when the secret contains one of these (ASCII case-insensitive).
    pub stopwords: Vec<String>,
    /// Allowed when the scanned path matches one of these.
    pub paths: Vec<Pattern>,
    /// What [`Allowlist::regexes`] look at.
    pub regex_target: RegexTarget,
    /// How the criteria combine.
    pub condition: Condition,
    /// Commits listed in the rule file (kept so that `AND` keeps its meaning).
    pub commits: Vec<String>,
    /// For a global allowlist: the rule ids it applies to (empty = all).
    pub target_rules: Vec<String>,
}

/// What an allowlist is asked about one would-be finding.
pub(crate) struct AllowQuery<'a> {
    pub secret: &'a [u8],
    pub whole: &'a [u8],
    pub line: &'a [u8],
    pub path: Option<&'a str>,
}

impl Allowlist {
    /// Does this allowlist let the candidate pass?
    pub(crate) fn allows(&self, c: &AllowQuery<'_>) -> bool {
        let target = match self.regex_target {
            RegexTarget::Secret => c.secret,
            RegexTarget::Match => c.whole,
            RegexTarget::Line => c.line,
        };
        let regex_hit = || self.regexes.iter().any(|r| r.is_match(target));
        let stopword_hit = || {
            self.stopwords
                .iter()
                .any(|w| contains_ignore_ascii_case(c.secret, w.as_bytes()))
        };
        let path_hit = || match c.path {
            Some(p) => self.paths.iter().any(|r| r.is_match(p.as_bytes())),
            None => false,
        };
        match self.condition {
            Condition::Or => regex_hit() || stopword_hit() || path_hit(),
            Condition::And => {
                let mut any = false;
                if !self.commits.is_empty() {
                    return false;
                }
                if !self.paths.is_empty() {
                    any = true;
                    if !path_hit() {
                        return false;
                    }
                }
                if !self.regexes.is_empty() {
                    any = true;
                    if !regex_hit() {
                        return false;
                    }
                }
                if !self.stopwords.is_empty() {
                    any = true;
                    if !stopword_hit() {
                        return false;
                    }
                }
                any
            }
        }
    }
}

/// ASCII case-insensitive substring test.
pub(crate) fn contains_ignore_ascii_case(haystack: &[u8], needle: &[u8]) -> bool {
    if needle.is_empty() {
        return true;
    }
    haystack
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

/// Extra validation a built-in rule applies to a regex match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    /// Nothing beyond entropy and allowlists.
    None,
    /// `lsh_` token: shape and CRC32 via `leash_token::opaque::parse`.
    LeashOpaque,
    /// JWT the caller's callback claims as a Leash token.
    LeashJwt,
    /// Any other JWT: header must be JSON with `alg` (not `none`), payload
    /// JSON, signature present.
    Jwt,
    /// GitHub/npm scheme: 4-char prefix, 30 base62, 6 base62 CRC32.
    Crc32Base62,
    /// `key = value` assignments; `true` for password-like keys.
    Generic { password: bool },
    /// Password inside a connection string or URL (named groups `user`, `secret`).
    UrlPassword,
    /// PEM / PGP private key block: needs a real body.
    PrivateKey,
    /// Value must be standard base64 of exactly this many bytes.
    Base64Len(usize),
    /// `Authorization: Basic` value: base64 `user:password`, plausible password.
    BasicAuth,
}

/// Overlap priority: when two findings cover the same bytes, the lower tier wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Tier {
    /// Leash's own tokens.
    Leash = 0,
    /// A vendor format or a vendor named in context.
    Specific = 1,
    /// Broad shapes: private keys, JWTs, connection strings, URL credentials.
    Broad = 2,
    /// Generic high-entropy assignments.
    Generic = 3,
}

/// How far around a keyword hit the regex runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reach {
    /// The line holding the hit (capped at a few KiB around it).
    Line,
    /// From the start of the hit's line to this many bytes after the hit,
    /// across lines (private key blocks).
    Forward(usize),
}

/// One detection rule: a regex (and/or a path regex), the keywords that
/// gate it, an entropy floor and allowlists.
///
/// Build your own with [`Rule::new`] and the builder methods, or import
/// gitleaks rules with [`crate::gitleaks::parse_rules`].
#[derive(Debug, Clone)]
pub struct Rule {
    pub(crate) id: String,
    pub(crate) description: String,
    pub(crate) kind: FindingKind,
    pub(crate) regex: Option<Pattern>,
    pub(crate) secret_group: Option<usize>,
    pub(crate) keywords: Vec<String>,
    pub(crate) entropy: Option<f64>,
    pub(crate) path: Option<Pattern>,
    pub(crate) allowlists: Vec<Allowlist>,
    pub(crate) check: Check,
    pub(crate) tier: Tier,
    pub(crate) reach: Reach,
    /// Apply the built-in placeholder and documented-example filters.
    pub(crate) builtin_filters: bool,
}

impl Rule {
    /// A third-party rule with this id and regex. Without keywords the
    /// regex runs over the whole input; with them, only around their hits.
    pub fn new(id: &str, regex: &str) -> Result<Rule, RuleError> {
        let pattern = Pattern::new(regex).map_err(|m| RuleError::field(id, "regex", m))?;
        Ok(Rule::from_parts(id, Some(pattern)))
    }

    /// A rule that matches on the path alone (e.g. `\.p12$`): it reports the
    /// path itself when a scan's [`crate::ScanContext`] carries a matching path.
    pub fn path_only(id: &str, path: &str) -> Result<Rule, RuleError> {
        let pattern = Pattern::new(path).map_err(|m| RuleError::field(id, "path", m))?;
        let mut rule = Rule::from_parts(id, None);
        rule.path = Some(pattern);
        Ok(rule)
    }

    pub(crate) fn from_parts(id: &str, regex: Option<Pattern>) -> Rule {
        Rule {
            id: id.to_string(),
            description: String::new(),
            kind: FindingKind::ThirdParty,
            regex,
            secret_group: None,
            keywords: Vec::new(),
            entropy: None,
            path: None,
            allowlists: Vec::new(),
            check: Check::None,
            tier: Tier::Specific,
            reach: Reach::Line,
            builtin_filters: false,
        }
    }

    /// Set the description shown with findings.
    pub fn with_description(mut self, description: &str) -> Rule {
        self.description = description.to_string();
        self
    }

    /// Only run the regex near these keywords (matched ASCII case-insensitively).
    pub fn with_keywords<S: AsRef<str>>(mut self, keywords: &[S]) -> Rule {
        self.keywords = keywords
            .iter()
            .map(|k| k.as_ref().to_ascii_lowercase())
            .filter(|k| !k.is_empty())
            .collect();
        self
    }

    /// Drop matches whose secret has a lower Shannon entropy (bits per byte).
    pub fn with_entropy(mut self, min_bits: f64) -> Rule {
        self.entropy = Some(min_bits);
        self
    }

    /// Use capture group `group` as the secret (default: the first non-empty group,
    /// or the whole match when the regex has none).
    pub fn with_secret_group(mut self, group: usize) -> Result<Rule, RuleError> {
        let groups = self.regex.as_ref().map_or(0, Pattern::group_count);
        if group > groups {
            return Err(RuleError::field(
                &self.id,
                "secretGroup",
                format!("group {group} does not exist: the regex has {groups} capture group(s)"),
            ));
        }
        self.secret_group = Some(group);
        Ok(self)
    }

    /// Only apply the rule to paths matching `path`.
    pub fn with_path(mut self, path: &str) -> Result<Rule, RuleError> {
        let pattern = Pattern::new(path).map_err(|m| RuleError::field(&self.id, "path", m))?;
        self.path = Some(pattern);
        Ok(self)
    }

    /// Add an allowlist.
    pub fn with_allowlist(mut self, allowlist: Allowlist) -> Rule {
        self.allowlists.push(allowlist);
        self
    }

    /// Also apply Leash's built-in filters for placeholders (`your_api_key`,
    /// `xxxx…`, `${VAR}`, …) and documented example keys.
    pub fn with_placeholder_filters(mut self) -> Rule {
        self.builtin_filters = true;
        self
    }

    /// The rule id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The description.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// What its findings are.
    pub fn kind(&self) -> FindingKind {
        self.kind
    }

    /// The regex source, if the rule has one.
    pub fn regex(&self) -> Option<&str> {
        self.regex.as_ref().map(Pattern::as_str)
    }

    /// The keywords that gate the regex (lowercase).
    pub fn keywords(&self) -> &[String] {
        &self.keywords
    }

    /// The allowlists.
    pub fn allowlists(&self) -> &[Allowlist] {
        &self.allowlists
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_are_ascii_like_re2() {
        let p = Pattern::new(r"^\w+$").unwrap();
        assert!(p.is_match(b"abc_123"));
        assert!(!p.is_match("abcé".as_bytes()));
        // A Unicode-only construct still compiles, in Unicode mode.
        let p = Pattern::new(r"\p{Greek}+").unwrap();
        assert!(p.is_match("αβγ".as_bytes()));
    }

    #[test]
    fn invalid_regex_is_an_error_naming_the_rule_and_field() {
        let err = Rule::new("aws-key", "AKIA[").unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("rule `aws-key`: field `regex`: invalid regular expression"));
        let err = Rule::new("r", "(a)")
            .unwrap()
            .with_secret_group(2)
            .unwrap_err();
        assert!(err.to_string().contains("field `secretGroup`"));
    }

    #[test]
    fn and_allowlist_needs_every_criterion() {
        let al = Allowlist {
            regexes: vec![Pattern::new("^x").unwrap()],
            paths: vec![Pattern::new(r"\.md$").unwrap()],
            condition: Condition::And,
            ..Allowlist::default()
        };
        let c = |path| AllowQuery {
            secret: b"xyz",
            whole: b"xyz",
            line: b"xyz",
            path,
        };
        assert!(al.allows(&c(Some("a.md"))));
        assert!(!al.allows(&c(Some("a.rs"))));
        assert!(!al.allows(&c(None)));
    }
}
