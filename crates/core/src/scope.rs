//! Scopes: `TYPE[:ID_PATTERN]:ACTION`.
//!
//! `tickets:read` is any ticket; `repo:acme/api:write` is one repository;
//! `*` in the id is a glob (`repo:acme/*:write`). The last segment is the
//! action. Actions are classified read / write / admin; anything not known
//! to be read-only counts as write, so an unknown verb is never waved
//! through as harmless.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest scope string accepted.
pub const MAX_SCOPE_LEN: usize = 256;

/// Actions that only read. Everything else is write (or admin).
const READ_ACTIONS: &[&str] = &[
    "read", "list", "get", "view", "describe", "query", "search", "watch", "fetch",
];
/// Actions that administer rather than merely write.
const ADMIN_ACTIONS: &[&str] = &["admin", "manage", "owner", "delete", "grant"];

/// How much an action can change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActionClass {
    Read,
    Write,
    Admin,
}

/// One parsed scope.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scope {
    resource_type: String,
    id_pattern: Option<String>,
    action: String,
}

/// Why a scope string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    #[error(
        "scope `{scope}` is malformed: {why}; write it as TYPE[:ID_PATTERN]:ACTION, e.g. `tickets:read` or `repo:acme/api:write`"
    )]
    Malformed { scope: String, why: &'static str },
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')
}

fn is_id_char(c: char) -> bool {
    c.is_ascii_graphic() && !matches!(c, '"' | '\\' | ',')
}

impl Scope {
    /// The resource type (`repo` in `repo:acme/api:write`).
    pub fn resource_type(&self) -> &str {
        &self.resource_type
    }
    /// The id pattern, if the scope names one.
    pub fn id_pattern(&self) -> Option<&str> {
        self.id_pattern.as_deref()
    }
    /// The action (`write` in `repo:acme/api:write`).
    pub fn action(&self) -> &str {
        &self.action
    }
    /// Read, write or admin.
    pub fn class(&self) -> ActionClass {
        classify_action(&self.action)
    }
    /// True for anything that is not read-only.
    pub fn is_write(&self) -> bool {
        self.class() != ActionClass::Read
    }

    /// Does this scope (as a ceiling or a grant) include everything `other`
    /// grants? Same type, same action (or `*`), and every id `other` can name
    /// is matched by this scope's pattern. Conservative: when in doubt, no.
    pub fn covers(&self, other: &Scope) -> bool {
        if self.resource_type != other.resource_type {
            return false;
        }
        if self.action != "*" && self.action != other.action {
            return false;
        }
        match (&self.id_pattern, &other.id_pattern) {
            (None, _) => true,
            (Some(_), None) => false,
            // Treat `*` in `other` as a literal: each one is then consumed by
            // a wildcard of ours, which could consume any expansion instead.
            (Some(mine), Some(theirs)) => glob_match(mine, theirs),
        }
    }

    /// Does this scope allow `action` on a resource of `resource_type` with
    /// id `resource_id`?
    pub fn allows(&self, resource_type: &str, resource_id: Option<&str>, action: &str) -> bool {
        if self.resource_type != resource_type || (self.action != "*" && self.action != action) {
            return false;
        }
        match (&self.id_pattern, resource_id) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(p), Some(id)) => glob_match(p, id),
        }
    }
}

/// Classify an action verb.
pub fn classify_action(action: &str) -> ActionClass {
    if READ_ACTIONS.contains(&action) {
        ActionClass::Read
    } else if ADMIN_ACTIONS.contains(&action) || action == "*" {
        ActionClass::Admin
    } else {
        ActionClass::Write
    }
}

/// Glob with `*` matching any run of characters (including none).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p = pattern.as_bytes();
    let t = text.as_bytes();
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

impl FromStr for Scope {
    type Err = ScopeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why| ScopeError::Malformed {
            scope: s.chars().take(MAX_SCOPE_LEN).collect(),
            why,
        };
        if s.is_empty() {
            return Err(bad("it is empty"));
        }
        if s.len() > MAX_SCOPE_LEN {
            return Err(bad("it is longer than 256 characters"));
        }
        let first = s.find(':').ok_or_else(|| bad("it has no `:ACTION` part"))?;
        let last = s.rfind(':').unwrap_or(first);
        let resource_type = &s[..first];
        let action = &s[last + 1..];
        let id = if last > first {
            Some(&s[first + 1..last])
        } else {
            None
        };
        if resource_type.is_empty() || !resource_type.chars().all(is_name_char) {
            return Err(bad("the TYPE must be letters, digits, `_`, `-` or `.`"));
        }
        if action.is_empty() || !(action == "*" || action.chars().all(is_name_char)) {
            return Err(bad("the ACTION must be letters, digits, `_`, `-` or `.`"));
        }
        if let Some(id) = id {
            if id.is_empty() {
                return Err(bad("the ID_PATTERN between the colons is empty"));
            }
            if !id.chars().all(is_id_char) {
                return Err(bad(
                    "the ID_PATTERN has whitespace, quotes, commas or control characters",
                ));
            }
        }
        Ok(Scope {
            resource_type: resource_type.to_ascii_lowercase(),
            id_pattern: id.map(str::to_owned),
            action: action.to_ascii_lowercase(),
        })
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.id_pattern {
            Some(id) => write!(f, "{}:{}:{}", self.resource_type, id, self.action),
            None => write!(f, "{}:{}", self.resource_type, self.action),
        }
    }
}

impl Serialize for Scope {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Scope {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Is every scope in `wanted` covered by some scope in `ceiling`? Returns
/// the first one that is not.
pub fn first_uncovered<'a>(ceiling: &[Scope], wanted: &'a [Scope]) -> Option<&'a Scope> {
    wanted.iter().find(|w| !ceiling.iter().any(|c| c.covers(w)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn s(x: &str) -> Scope {
        x.parse().unwrap()
    }

    #[test]
    fn parses_the_three_shapes() {
        assert_eq!(s("tickets:read").id_pattern(), None);
        assert_eq!(s("repo:acme/api:write").id_pattern(), Some("acme/api"));
        assert_eq!(
            s("db:postgres://x:5432/y:read").id_pattern(),
            Some("postgres://x:5432/y")
        );
        assert_eq!(s("repo:acme/api:write").action(), "write");
    }

    #[test]
    fn refuses_malformed_scopes_with_a_reason() {
        for bad in [
            "",
            "repo",
            ":read",
            "repo:",
            "repo::write",
            "re po:read",
            "repo:a b:write",
            "repo:x:wr!te",
        ] {
            let err = bad.parse::<Scope>().unwrap_err().to_string();
            assert!(err.contains("TYPE[:ID_PATTERN]:ACTION"), "{bad}: {err}");
        }
        assert!("a".repeat(300).parse::<Scope>().is_err());
    }

    #[test]
    fn classifies_actions_unknown_is_write() {
        assert_eq!(s("tickets:read").class(), ActionClass::Read);
        assert_eq!(s("tickets:comment").class(), ActionClass::Write);
        assert_eq!(s("repo:admin").class(), ActionClass::Admin);
    }

    #[test]
    fn ceiling_coverage() {
        assert!(s("repo:write").covers(&s("repo:acme/api:write")));
        assert!(s("repo:acme/*:write").covers(&s("repo:acme/x*:write")));
        assert!(!s("repo:acme/*:write").covers(&s("repo:write")));
        assert!(!s("repo:acme/*:read").covers(&s("repo:acme/api:write")));
        assert!(!s("repo:a*b:read").covers(&s("repo:a*:read")));
        assert!(s("repo:*").covers(&s("repo:x:delete")));
    }

    #[test]
    fn allows_requests() {
        assert!(s("repo:acme/*:write").allows("repo", Some("acme/api"), "write"));
        assert!(!s("repo:acme/*:write").allows("repo", Some("evil/api"), "write"));
        assert!(!s("repo:acme/*:write").allows("repo", None, "write"));
        assert!(s("tickets:read").allows("tickets", Some("42"), "read"));
    }

    proptest! {
        #[test]
        fn display_roundtrips(t in "[a-z][a-z0-9_]{0,8}", id in proptest::option::of("[a-z0-9/*._-]{1,12}"), a in "[a-z]{1,8}") {
            let text = match &id { Some(i) => format!("{t}:{i}:{a}"), None => format!("{t}:{a}") };
            let scope: Scope = text.parse().unwrap();
            prop_assert_eq!(scope.to_string(), text);
        }

        #[test]
        fn coverage_is_sound(pat in "[ab*]{0,6}", sub in "[ab*]{0,6}", fill in "[ab]{0,4}") {
            let c = Scope { resource_type: "r".into(), id_pattern: Some(pat), action: "x".into() };
            let w = Scope { resource_type: "r".into(), id_pattern: Some(sub.clone()), action: "x".into() };
            if c.covers(&w) {
                // every concrete id the narrower scope allows, the wider allows too
                let concrete = sub.replace('*', &fill);
                prop_assert!(c.allows("r", Some(&concrete), "x"));
            }
        }

        #[test]
        fn parser_never_panics(text in ".{0,300}") {
            let _ = text.parse::<Scope>();
        }
    }
}
