//! What a decision is about: the registry records behind the token and the
//! AuthZEN request, or the token about to be issued, borrowed so the server
//! copies nothing per decision.

use leash_core::scope::Scope;
use leash_core::{Environment, Millis, Owner, Run, Token, Workflow, Workload};
use serde::{Deserialize, Serialize};

/// The resource an AuthZEN request names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceRef<'a> {
    /// AuthZEN `resource.type`, e.g. `repo`.
    pub resource_type: &'a str,
    /// AuthZEN `resource.id`, e.g. `acme/api`.
    pub id: &'a str,
    /// AuthZEN `resource.properties.environment`, when given.
    pub environment: Option<&'a str>,
}

impl<'a> ResourceRef<'a> {
    /// A resource with no properties.
    pub fn new(resource_type: &'a str, id: &'a str) -> Self {
        Self {
            resource_type,
            id,
            environment: None,
        }
    }

    /// A resource with the AuthZEN `resource.properties` object (or `null`);
    /// Leash reads its `environment` string and ignores the rest.
    pub fn with_properties(
        resource_type: &'a str,
        id: &'a str,
        properties: Option<&'a serde_json::Value>,
    ) -> Self {
        Self {
            resource_type,
            id,
            environment: properties
                .and_then(|p| p.get("environment"))
                .and_then(serde_json::Value::as_str),
        }
    }
}

/// Everything a policy decision looks at.
///
/// The server fills it after it has found the token, checked that it is
/// active and bound to the presenting workload, and that a scope covers the
/// request ([`crate::scope_covers`]).
#[derive(Debug, Clone, Copy)]
pub struct DecisionInput<'a> {
    /// The token's owner (also the workload's owner).
    pub owner: &'a Owner,
    /// The workload presenting the token (the AuthZEN subject).
    pub workload: &'a Workload,
    /// The token's workflow, when it has one.
    pub workflow: Option<&'a Workflow>,
    /// The token's run, when it has one. When the token names a run that is
    /// not given here, the run counts as ended.
    pub run: Option<&'a Run>,
    /// The presented token.
    pub token: &'a Token,
    /// Whether the token is a break-glass grant (time-boxed emergency
    /// access); exposed to policies as `context.token.break_glass`.
    pub break_glass: bool,
    /// AuthZEN `action.name`, as sent.
    pub action: &'a str,
    /// AuthZEN `resource`.
    pub resource: ResourceRef<'a>,
    /// AuthZEN `context.tool`, when sent.
    pub tool: Option<&'a str>,
    /// The decision time (Unix ms), exposed as `context.now`.
    pub now: Millis,
}

/// How a token is asked for; policies see it as `context.kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IssuanceKind {
    /// Minted through the registry API or the CLI.
    Mint,
    /// RFC 8693 token exchange, including delegation to an actor.
    Exchange,
    /// OAuth 2.0 client credentials grant.
    ClientCredentials,
    /// Issued for an external identity token (workload identity federation).
    Federated,
    /// A time-boxed emergency grant.
    BreakGlass,
}

impl IssuanceKind {
    /// The name policies compare against: `mint`, `exchange`,
    /// `client_credentials`, `federated` or `break_glass`.
    pub fn as_str(self) -> &'static str {
        match self {
            IssuanceKind::Mint => "mint",
            IssuanceKind::Exchange => "exchange",
            IssuanceKind::ClientCredentials => "client_credentials",
            IssuanceKind::Federated => "federated",
            IssuanceKind::BreakGlass => "break_glass",
        }
    }
}

impl std::fmt::Display for IssuanceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything an issuance decision (`Leash::Action::"issue"`) looks at: a
/// token about to be issued to `workload`.
///
/// The server fills it once its built-in rules
/// ([`leash_core::issuance::check_mint`], and for exchange
/// [`leash_core::issuance::check_delegation`]) have passed; the policies
/// can then only refuse more.
#[derive(Debug, Clone, Copy)]
pub struct IssuanceInput<'a> {
    /// The workload's owner.
    pub owner: &'a Owner,
    /// The workload the token is for (principal and resource).
    pub workload: &'a Workload,
    /// How the token is asked for.
    pub kind: IssuanceKind,
    /// The requested scopes.
    pub scopes: &'a [Scope],
    /// The requested lifetime, in seconds.
    pub ttl_secs: u64,
    /// The requested scopes that the workload's scope ceiling does not
    /// cover ([`crate::scopes_above_ceiling`]); empty when all are covered.
    pub above_ceiling: &'a [Scope],
    /// The run the token is for, when the server found it.
    pub run: Option<&'a Run>,
    /// The id of the run the token is for, when it is for one. A run named
    /// here but not given in `run` counts as ended.
    pub run_id: Option<i64>,
    /// For exchange and delegation: the environment of the workload that
    /// holds the subject (parent) token.
    pub parent_environment: Option<Environment>,
    /// For delegation with an actor token: the environment of the actor's
    /// workload.
    pub actor_environment: Option<Environment>,
    /// Whether the request carries a non-blank justification.
    pub justified: bool,
    /// The decision time (Unix ms), exposed as `context.now`.
    pub now: Millis,
}

/// What one decision is about: a request, or a token about to be issued.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Subject<'a> {
    Request(&'a DecisionInput<'a>),
    Issue(&'a IssuanceInput<'a>),
}

impl<'a> Subject<'a> {
    pub(crate) fn owner(self) -> &'a Owner {
        match self {
            Subject::Request(i) => i.owner,
            Subject::Issue(i) => i.owner,
        }
    }

    pub(crate) fn workload(self) -> &'a Workload {
        match self {
            Subject::Request(i) => i.workload,
            Subject::Issue(i) => i.workload,
        }
    }

    pub(crate) fn run(self) -> Option<&'a Run> {
        match self {
            Subject::Request(i) => i.run,
            Subject::Issue(i) => i.run,
        }
    }

    /// The run the token is (or will be) bound to, found or not.
    pub(crate) fn run_id(self) -> Option<i64> {
        match self {
            Subject::Request(i) => i.token.run_id,
            Subject::Issue(i) => i.run_id,
        }
    }

    /// `running`, `ended` or `none`, as `context.run_state` says.
    pub(crate) fn run_state(self) -> &'static str {
        match (self.run(), self.run_id()) {
            (Some(run), _) if run.state == leash_core::RunState::Running => "running",
            (Some(_), _) | (None, Some(_)) => "ended",
            (None, None) => "none",
        }
    }
}

/// The resource environment as policies see it: lowercased, with the long
/// names (`production`, `staging`, `development`) mapped to Leash's
/// `prod`, `stage` and `dev`; `""` when unset.
pub fn normalize_environment(value: Option<&str>) -> std::borrow::Cow<'static, str> {
    use std::borrow::Cow;
    let Some(v) = value else {
        return Cow::Borrowed("");
    };
    let v = v.trim();
    let known = [
        ("prod", Environment::Prod),
        ("production", Environment::Prod),
        ("stage", Environment::Stage),
        ("staging", Environment::Stage),
        ("dev", Environment::Dev),
        ("development", Environment::Dev),
    ];
    match known.iter().find(|(name, _)| v.eq_ignore_ascii_case(name)) {
        Some((_, env)) => Cow::Borrowed(env.as_str()),
        None => Cow::Owned(v.to_ascii_lowercase()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environments_normalize() {
        assert_eq!(normalize_environment(None), "");
        assert_eq!(normalize_environment(Some("Production")), "prod");
        assert_eq!(normalize_environment(Some(" prod ")), "prod");
        assert_eq!(normalize_environment(Some("STAGING")), "stage");
        assert_eq!(normalize_environment(Some("qa")), "qa");
    }

    #[test]
    fn resource_properties_give_the_environment() {
        let props = serde_json::json!({"environment": "prod", "other": 1});
        let r = ResourceRef::with_properties("repo", "acme/api", Some(&props));
        assert_eq!(r.environment, Some("prod"));
        let r = ResourceRef::with_properties("repo", "acme/api", None);
        assert_eq!(r.environment, None);
        let odd = serde_json::json!({"environment": 3});
        assert_eq!(
            ResourceRef::with_properties("repo", "x", Some(&odd)).environment,
            None
        );
    }
}
