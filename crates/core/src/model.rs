//! The registry's entities and the token record.

use serde::{Deserialize, Serialize};

use crate::scope::Scope;

/// Unix time in milliseconds.
pub type Millis = i64;

/// Longest name accepted for owners, workloads and workflows.
pub const MAX_NAME_LEN: usize = 64;

/// Why an input value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidInput {
    #[error(
        "{what} `{value}` is not a valid name: use 1-64 letters, digits, `.`, `_` or `-`, starting with a letter or digit"
    )]
    Name { what: &'static str, value: String },
    #[error("email `{0}` is not valid: expected something like `alice@example.com`")]
    Email(String),
    #[error("{what} is too long: at most {max} characters")]
    TooLong { what: &'static str, max: usize },
    #[error("{what} has too many entries: at most {max}")]
    TooMany { what: &'static str, max: usize },
    #[error("`{value}` is not a valid {what}; expected one of: {expected}")]
    Choice {
        what: &'static str,
        value: String,
        expected: &'static str,
    },
    /// Anything else, said in full (what was wrong and what to send instead).
    #[error("{0}")]
    Other(String),
}

impl InvalidInput {
    /// An error whose message says what was wrong and what to do.
    pub fn new(message: impl Into<String>) -> Self {
        InvalidInput::Other(message.into())
    }
}

/// Check a registry name (owner, workload, workflow).
pub fn validate_name(what: &'static str, value: &str) -> Result<(), InvalidInput> {
    let ok = !value.is_empty()
        && value.len() <= MAX_NAME_LEN
        && value
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(InvalidInput::Name {
            what,
            value: value.chars().take(80).collect(),
        })
    }
}

/// Check an email address, loosely but without whitespace or oddities.
pub fn validate_email(value: &str) -> Result<(), InvalidInput> {
    let ok = value.len() <= 254
        && !value.chars().any(|c| c.is_whitespace() || c.is_control())
        && value
            .split_once('@')
            .is_some_and(|(l, d)| !l.is_empty() && d.contains('.') && !d.contains('@'));
    if ok {
        Ok(())
    } else {
        Err(InvalidInput::Email(value.chars().take(80).collect()))
    }
}

/// Check a free-text field's length.
pub fn validate_len(what: &'static str, value: &str, max: usize) -> Result<(), InvalidInput> {
    if value.chars().count() > max {
        Err(InvalidInput::TooLong { what, max })
    } else {
        Ok(())
    }
}

macro_rules! string_enum {
    ($(#[$m:meta])* $name:ident, $what:literal { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            /// The stable text form used in the API, the database and the CLI.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }
        }

        impl std::str::FromStr for $name {
            type Err = InvalidInput;
            fn from_str(s: &str) -> Result<Self, InvalidInput> {
                match s {
                    $($text => Ok(Self::$variant),)+
                    _ => Err(InvalidInput::Choice {
                        what: $what,
                        value: s.chars().take(40).collect(),
                        expected: concat!($($text, " "),+),
                    }),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_enum!(
    /// A person or a team.
    OwnerKind, "owner kind" { Person = "person", Team = "team" }
);
string_enum!(
    /// Whether an owner can still hold tokens.
    OwnerStatus, "owner status" { Active = "active", Offboarded = "offboarded" }
);
string_enum!(
    /// Deployment environment of a workload; it sets the TTL cap.
    Environment, "environment" { Dev = "dev", Stage = "stage", Prod = "prod" }
);
string_enum!(
    /// Where a run is in its life.
    RunState, "run state" { Running = "running", Succeeded = "succeeded", Failed = "failed", Cancelled = "cancelled" }
);
string_enum!(
    /// How a token is represented on the wire. `postgres` is a downstream
    /// credential: a PostgreSQL role Leash creates for the token (its
    /// connection string is the secret) and drops when the token ends.
    TokenFormat, "token format" { Jwt = "jwt", Opaque = "opaque", Postgres = "postgres" }
);
string_enum!(
    /// A token's state at a moment.
    TokenStatus, "token status" { Active = "active", Revoked = "revoked", Expired = "expired" }
);
string_enum!(
    /// An event that revokes a token.
    RevocationTrigger, "revocation trigger" {
        RunEnded = "run_ended",
        WorkflowChanged = "workflow_changed",
        OwnerOffboarded = "owner_offboarded",
        ParentRevoked = "parent_revoked",
        Expiry = "expiry",
        Manual = "manual",
        Exposure = "exposure",
        PolicyViolation = "policy_violation",
    }
);

/// An accountable human or team.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub id: i64,
    pub name: String,
    pub email: String,
    pub kind: OwnerKind,
    pub business_owner: bool,
    pub status: OwnerStatus,
    pub created_at: Millis,
    pub offboarded_at: Option<Millis>,
}

/// Something that presents tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workload {
    pub id: i64,
    pub name: String,
    pub owner_id: i64,
    /// Identity matcher: a SPIFFE ID or an OIDC `iss`+`sub` pattern.
    pub identity: Option<String>,
    pub environment: Environment,
    pub scope_ceiling: Vec<Scope>,
    pub created_at: Millis,
}

/// An AI workflow definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workflow {
    pub id: i64,
    pub name: String,
    pub owner_id: i64,
    /// Hex SHA-256 of the definition file.
    pub digest: String,
    pub tools: Vec<String>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// One execution of a workflow by a workload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    pub id: i64,
    pub workflow_id: i64,
    pub workload_id: i64,
    /// The workflow digest when the run started.
    pub digest: String,
    pub state: RunState,
    pub started_at: Millis,
    pub ended_at: Option<Millis>,
}

/// An OAuth client registered for a workload: how the workload proves
/// itself at `/oauth2/token`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Client {
    /// `client_id`.
    pub id: String,
    pub workload_id: i64,
    /// SHA-256 of the client secret (`client_secret_basic` / `client_secret_post`).
    #[serde(skip)]
    pub secret_hash: Option<[u8; 32]>,
    /// Public JWK Set for `private_key_jwt` (RFC 7523) client assertions.
    pub jwks: Option<String>,
    /// A resource server: may call `/oauth2/introspect`.
    #[serde(default)]
    pub can_introspect: bool,
    pub created_at: Millis,
}

/// A trusted external token issuer (OIDC provider, Kubernetes cluster,
/// SPIFFE trust domain) whose JWTs workloads exchange for Leash tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Issuer {
    pub id: i64,
    pub name: String,
    /// The exact `iss` value.
    pub issuer: String,
    /// Where its JWK Set is fetched (cached, refreshed on an unknown `kid`).
    pub jwks_url: Option<String>,
    /// An inline JWK Set / SPIFFE trust bundle instead of a URL.
    pub jwks: Option<String>,
    /// The `aud` its tokens must carry.
    pub audience: String,
    pub created_at: Millis,
}

/// Maps verified claims of an issuer's tokens to a workload: every listed
/// claim must match its glob (`*` any run of characters).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityRule {
    pub id: i64,
    pub workload_id: i64,
    pub issuer_id: i64,
    pub claims: std::collections::BTreeMap<String, String>,
    pub created_at: Millis,
}

impl IdentityRule {
    /// Do the verified claims satisfy this rule? Claims absent or not
    /// strings never match; a rule with no claims matches nothing.
    pub fn matches(&self, claims: &serde_json::Value) -> bool {
        !self.claims.is_empty()
            && self.claims.iter().all(|(k, pattern)| {
                let v = match claims.get(k) {
                    Some(serde_json::Value::String(s)) => s.clone(),
                    Some(serde_json::Value::Number(n)) => n.to_string(),
                    _ => return false,
                };
                crate::scope::glob_match(pattern, &v)
            })
    }
}

/// How and why a token was revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    pub at: Millis,
    pub trigger: RevocationTrigger,
    pub reason: String,
    /// Sequence number of the audit event that caused the revocation.
    pub event: i64,
}

/// RFC 8693 `act`: the party acting, with every earlier hop nested inside.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub sub: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub act: Option<Box<Actor>>,
}

/// A credential Leash minted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    pub id: String,
    pub format: TokenFormat,
    pub owner_id: i64,
    pub workload_id: i64,
    pub run_id: Option<i64>,
    pub workflow_id: Option<i64>,
    pub scopes: Vec<Scope>,
    pub audience: Vec<String>,
    pub issued_at: Millis,
    pub expires_at: Millis,
    pub parent_id: Option<String>,
    pub justification: Option<String>,
    pub revocation: Option<Revocation>,
    /// Delegation hops from the root token (0 for a root).
    #[serde(default)]
    pub depth: u32,
    /// Who acts with this token, for delegated tokens (RFC 8693 §4.1).
    #[serde(default)]
    pub act: Option<Actor>,
    /// RFC 8693 §4.4: the only party (its `sub`) that may act for this token
    /// in a token exchange.
    #[serde(default)]
    pub may_act: Option<String>,
    /// RFC 9449: JWK SHA-256 thumbprint of the key this token is bound to
    /// (`cnf.jkt`); presenting it needs a DPoP proof signed by that key.
    #[serde(default)]
    pub cnf_jkt: Option<String>,
    /// A break-glass grant: minted outside normal policy for an emergency,
    /// time-boxed (at most an hour), loud, and revoked at its TTL.
    #[serde(default)]
    pub break_glass: bool,
}

impl Token {
    /// Active, revoked or expired at `now`. Revocation wins over expiry.
    pub fn status(&self, now: Millis) -> TokenStatus {
        if self.revocation.is_some() {
            TokenStatus::Revoked
        } else if now >= self.expires_at {
            TokenStatus::Expired
        } else {
            TokenStatus::Active
        }
    }

    /// The events that revoke this token, as declared when it was minted.
    pub fn revocation_triggers(&self) -> Vec<RevocationTrigger> {
        declared_triggers(self.run_id.is_some(), self.parent_id.is_some())
    }

    /// True if any scope is write or admin.
    pub fn has_write(&self) -> bool {
        self.scopes.iter().any(Scope::is_write)
    }
}

string_enum!(
    /// Where a leaked secret was seen.
    ExposureSource, "exposure source" {
        Ticket = "ticket", Chat = "chat", Code = "code", Git = "git", Log = "log", Partner = "partner"
    }
);
string_enum!(
    /// What Leash did about an exposure: `revoked` (a live Leash token,
    /// revoked with its descendants), `already_inactive` (a Leash token that
    /// was already revoked or expired), `matched_external` (a tracked
    /// third-party secret: owner told, connector called), `unmatched` (a
    /// secret Leash knows nothing about, recorded for review).
    ExposureAction, "exposure action" {
        Revoked = "revoked",
        AlreadyInactive = "already_inactive",
        MatchedExternal = "matched_external",
        Unmatched = "unmatched",
    }
);
string_enum!(
    /// Lifecycle of a third-party credential Leash tracks but did not mint.
    ExternalStatus, "external token status" {
        Active = "active", Revoked = "revoked", RevocationFailed = "revocation_failed"
    }
);
string_enum!(
    /// How urgent a finding is.
    Severity, "severity" { Low = "low", Medium = "medium", High = "high", Critical = "critical" }
);
impl Severity {
    /// How urgent, as a number: the higher of two severities wins.
    pub fn rank(self) -> u8 {
        match self {
            Severity::Low => 0,
            Severity::Medium => 1,
            Severity::High => 2,
            Severity::Critical => 3,
        }
    }
}

string_enum!(
    /// Where a finding is in review.
    FindingStatus, "finding status" { Open = "open", Acknowledged = "acknowledged", Resolved = "resolved" }
);

string_enum!(
    /// A way of presenting a token that breaks its terms. Each is denied
    /// and opens a finding; the response per class is configurable.
    ViolationClass, "violation class" {
        WorkloadMismatch = "workload_mismatch",
        WriteOutsideScope = "write_outside_scope",
        AfterRun = "after_run",
        UndeclaredTool = "undeclared_tool",
    }
);

impl ViolationClass {
    /// Every class, in the order the API lists them.
    pub const ALL: [ViolationClass; 4] = [
        ViolationClass::WorkloadMismatch,
        ViolationClass::WriteOutsideScope,
        ViolationClass::AfterRun,
        ViolationClass::UndeclaredTool,
    ];

    /// Whether the class revokes by default: a token shown by the wrong
    /// workload, or used to write outside its scope, is treated as stolen.
    pub fn revokes_by_default(self) -> bool {
        matches!(
            self,
            ViolationClass::WorkloadMismatch | ViolationClass::WriteOutsideScope
        )
    }
}

string_enum!(
    /// Where a request for a write-capable or break-glass token is.
    ApprovalStatus, "approval status" {
        Pending = "pending", Approved = "approved", Denied = "denied", Issued = "issued",
    }
);

string_enum!(
    /// What an approval request asks for.
    ApprovalKind, "approval kind" { Mint = "mint", BreakGlass = "break_glass" }
);

/// A request for a token that a person must approve before it is issued.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Approval {
    pub id: i64,
    pub kind: ApprovalKind,
    pub workload_id: i64,
    /// The owner who must approve (or one of their delegates).
    pub owner_id: i64,
    /// The mint request as the requester sent it (JSON; never a secret).
    pub request: serde_json::Value,
    pub justification: String,
    pub requested_by: String,
    pub requested_at: Millis,
    pub status: ApprovalStatus,
    pub decided_by: Option<String>,
    pub decided_at: Option<Millis>,
    /// Why it was approved or denied.
    pub decision_note: Option<String>,
    /// The token issued under it, once claimed.
    pub token_id: Option<String>,
}

/// A leaked secret found somewhere, and what was done about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Exposure {
    pub id: i64,
    pub source: ExposureSource,
    /// Where it was seen: `slack:T1/C2/1700000000.000100`, `jira:SUP-12#comment-7`,
    /// `src/app.py:12`, a GitHub URL, …
    pub location: String,
    /// The detector (scanner rule id) that found it.
    pub detector: String,
    /// Redacted excerpt: never the secret.
    pub excerpt: String,
    /// Hex SHA-256 of the secret.
    pub fingerprint: String,
    /// The Leash token it is, when it is one.
    pub token_id: Option<String>,
    /// The external token it matched, when it matched one.
    pub external_id: Option<i64>,
    pub action: ExposureAction,
    /// When Leash received the text that held it.
    pub detected_at: Millis,
    /// When the token was revoked (durably), for Leash tokens revoked by this exposure.
    pub revoked_at: Option<Millis>,
    /// Tokens revoked, descendants included.
    pub revoked_count: u64,
    /// Audit event recording it.
    pub event: i64,
}

impl Exposure {
    /// Detection to durable revocation, in milliseconds.
    pub fn revocation_latency_ms(&self) -> Option<Millis> {
        self.revoked_at.map(|r| r - self.detected_at)
    }
}

/// A third-party credential Leash did not mint but tracks (imported
/// inventory): matched by fingerprint when it leaks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalToken {
    pub id: i64,
    pub name: String,
    /// Provider and type, e.g. `github-pat`, `aws-access-key`.
    pub kind: String,
    pub owner_id: Option<i64>,
    /// Hex SHA-256 of the secret (the secret itself is never stored).
    pub fingerprint: String,
    /// Workloads that use it (its blast radius, with `workflows`).
    pub workloads: Vec<i64>,
    pub workflows: Vec<i64>,
    pub scopes: Vec<String>,
    /// Where it is kept (vault path, CI secret name, …).
    pub stored_in: Option<String>,
    /// The revocation connector to call when it leaks.
    pub connector: Option<String>,
    pub status: ExternalStatus,
    pub created_at: Millis,
    pub revoked_at: Option<Millis>,
    /// What an import said about it (None for credentials added by hand).
    #[serde(default)]
    pub imported: Option<ImportedFacts>,
    /// When it was last seen used (from an export or from ingested usage).
    #[serde(default)]
    pub last_used_at: Option<Millis>,
}

/// Facts an inventory export gives about a third-party credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportedFacts {
    pub provider: String,
    /// `oauth_grant`, `api_key` or `service_account_key`.
    pub credential_kind: String,
    pub key_id: Option<String>,
    pub issued_at: Option<Millis>,
    pub expires_at: Option<Millis>,
    /// The export it came from.
    pub source: Option<String>,
}

/// Something a human must review.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub id: i64,
    /// `exposure`, and more kinds as review grows.
    pub kind: String,
    pub severity: Severity,
    /// What it is about: a token id, an external token, a fingerprint.
    pub subject: String,
    /// Accountable owner, when one is known.
    pub owner_id: Option<i64>,
    pub summary: String,
    pub evidence: serde_json::Value,
    pub status: FindingStatus,
    pub created_at: Millis,
}

string_enum!(
    /// Where a downstream database credential is: `active` (the role
    /// exists), `dropped` (its sessions ended and the role is gone),
    /// `drop_failed` (dropping failed several times: a finding is open and
    /// Leash keeps retrying, less often).
    CredentialStatus, "credential status" {
        Active = "active", Dropped = "dropped", DropFailed = "drop_failed"
    }
);

/// A PostgreSQL role Leash created for a `postgres` token. The password is
/// never stored: only its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseCredential {
    pub token_id: String,
    /// The role's name (`leash_…`).
    pub role: String,
    /// The database its grants are in.
    pub database: String,
    /// SHA-256 of the password.
    #[serde(skip)]
    pub password_hash: [u8; 32],
    pub status: CredentialStatus,
    /// Failed drop attempts so far.
    pub attempts: u32,
    /// Why the last drop attempt failed.
    pub last_error: Option<String>,
    pub created_at: Millis,
    /// The token's expiry (the role's `VALID UNTIL`).
    pub expires_at: Millis,
    /// When the next drop attempt is due (once the token is revoked or expired).
    pub next_attempt_at: Millis,
    pub dropped_at: Option<Millis>,
    /// The finding opened when dropping kept failing.
    pub finding_id: Option<i64>,
}

/// Triggers every token declares, plus the run and parent ones when bound.
pub fn declared_triggers(has_run: bool, has_parent: bool) -> Vec<RevocationTrigger> {
    let mut t = vec![RevocationTrigger::Expiry];
    if has_run {
        t.push(RevocationTrigger::RunEnded);
        t.push(RevocationTrigger::WorkflowChanged);
    }
    t.push(RevocationTrigger::OwnerOffboarded);
    if has_parent {
        t.push(RevocationTrigger::ParentRevoked);
    }
    t.extend([
        RevocationTrigger::Exposure,
        RevocationTrigger::PolicyViolation,
        RevocationTrigger::Manual,
    ]);
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_emails() {
        assert!(validate_name("owner", "team-ai.ops_1").is_ok());
        for bad in ["", "-x", "a b", "x/y", &"a".repeat(65)] {
            assert!(validate_name("owner", bad).is_err(), "{bad}");
        }
        assert!(validate_email("a@b.io").is_ok());
        for bad in ["a", "@b.io", "a@b", "a b@c.io", "a@b@c.io"] {
            assert!(validate_email(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn enums_roundtrip_and_explain_choices() {
        assert_eq!("prod".parse::<Environment>().unwrap(), Environment::Prod);
        let err = "production".parse::<Environment>().unwrap_err().to_string();
        assert!(err.contains("dev stage prod"), "{err}");
    }

    #[test]
    fn status_prefers_revoked() {
        let mut t = Token {
            id: "t".into(),
            format: TokenFormat::Jwt,
            owner_id: 1,
            workload_id: 1,
            run_id: None,
            workflow_id: None,
            scopes: vec![],
            audience: vec![],
            issued_at: 0,
            expires_at: 10,
            parent_id: None,
            justification: None,
            revocation: None,
            depth: 0,
            act: None,
            may_act: None,
            cnf_jkt: None,
            break_glass: false,
        };
        assert_eq!(t.status(5), TokenStatus::Active);
        assert_eq!(t.status(10), TokenStatus::Expired);
        t.revocation = Some(Revocation {
            at: 3,
            trigger: RevocationTrigger::Manual,
            reason: "x".into(),
            event: 1,
        });
        assert_eq!(t.status(20), TokenStatus::Revoked);
    }
}
