//! Decisions and the reasons a person reads.

use leash_core::scope::Scope;
use leash_core::{Revocation, TokenStatus};
use serde::{Deserialize, Serialize};

/// What decided, or what stood in the way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasonKind {
    /// A Cedar permit policy allowed the request.
    Permit,
    /// A Cedar forbid policy denied it.
    Forbid,
    /// No permit policy applied.
    NoPermit,
    /// A policy could not be evaluated; Leash denies rather than guess.
    EvaluationError,
    /// The token is revoked or expired (checked by the server).
    TokenInactive,
    /// The token is bound to another workload (checked by the server).
    WorkloadMismatch,
    /// No scope of the token covers the request (checked by the server).
    ScopeNotCovered,
    /// A removability test withholds the scope from this run (a canary).
    Canary,
}

/// One reason for a decision, written for the person who must act on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    pub kind: ReasonKind,
    /// The policy id, for reasons that come from a policy.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub policy: Option<String>,
    /// What happened and what to do about it.
    pub message: String,
}

impl Reason {
    /// A reason from a check outside Cedar.
    pub fn new(kind: ReasonKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            policy: None,
            message: message.into(),
        }
    }

    /// The token is revoked or expired at the decision time (the server
    /// checks [`leash_core::Token::status`] before asking the policies).
    pub fn token_inactive(
        token_id: &str,
        status: TokenStatus,
        revocation: Option<&Revocation>,
    ) -> Self {
        let message = match (status, revocation) {
            (TokenStatus::Revoked, Some(r)) => format!(
                "token `{token_id}` is revoked ({}: {}); mint a new token",
                r.trigger, r.reason
            ),
            (TokenStatus::Revoked, None) => {
                format!("token `{token_id}` is revoked; mint a new token")
            }
            (TokenStatus::Expired, _) => {
                format!("token `{token_id}` has expired; mint a new token")
            }
            (TokenStatus::Active, _) => format!("token `{token_id}` is active"),
        };
        Self::new(ReasonKind::TokenInactive, message)
    }

    /// The presenting workload is not the one the token is bound to.
    pub fn workload_mismatch(token_id: &str, bound_to: &str, presented_by: &str) -> Self {
        Self::new(
            ReasonKind::WorkloadMismatch,
            format!(
                "token `{token_id}` is bound to workload `{bound_to}` but was presented by `{presented_by}`; each workload must use its own token"
            ),
        )
    }

    /// No scope of the token covers the request.
    pub fn scope_not_covered(
        token_id: &str,
        scopes: &[Scope],
        action: &str,
        resource_type: &str,
        resource_id: Option<&str>,
    ) -> Self {
        let action = crate::action::normalize_action(action);
        let held: Vec<String> = scopes.iter().map(ToString::to_string).collect();
        let (target, needed) = match resource_id {
            Some(id) => (
                format!("{resource_type} `{id}`"),
                format!("{resource_type}:{id}:{action}"),
            ),
            None => (
                resource_type.to_owned(),
                format!("{resource_type}:{action}"),
            ),
        };
        Self::new(
            ReasonKind::ScopeNotCovered,
            format!(
                "no scope of token `{token_id}` covers `{action}` on {target} (it holds [{}]); mint a token with scope `{needed}`",
                held.join(", ")
            ),
        )
    }
}

/// The answer to one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub allow: bool,
    /// On allow, the permits that allowed it; on deny, everything that
    /// stood in the way (never empty on deny).
    pub reasons: Vec<Reason>,
}

impl Decision {
    /// A denial for one reason (a failed server-side check).
    pub fn deny(reason: Reason) -> Self {
        Self {
            allow: false,
            reasons: vec![reason],
        }
    }

    /// The AuthZEN 1.0 evaluation response:
    /// `{"decision": bool, "context": {"reason": "…", "reasons": [{kind, policy?, message}]}}`,
    /// where `reason` is the first message (for people and simple clients).
    pub fn to_authzen(&self) -> serde_json::Value {
        serde_json::json!({"decision": self.allow, "context": self.authzen_context()})
    }

    /// The response's `context`, borrowed from the decision (serialized
    /// as is: nothing copied per answer).
    pub fn authzen_context(&self) -> AuthzenContext<'_> {
        AuthzenContext {
            reason: self.reasons.first().map(|r| r.message.as_str()),
            reasons: &self.reasons,
        }
    }
}

/// An AuthZEN response's `context`: `{"reason": "…", "reasons": [...]}`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct AuthzenContext<'a> {
    /// The first reason's message.
    pub reason: Option<&'a str>,
    pub reasons: &'a [Reason],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_side_reasons_say_what_to_do() {
        let scopes: Vec<Scope> = vec!["repo:acme/api:read".parse().unwrap()];
        let r = Reason::scope_not_covered("t1", &scopes, "Push", "repo", Some("acme/api"));
        assert_eq!(
            r.message,
            "no scope of token `t1` covers `push` on repo `acme/api` (it holds [repo:acme/api:read]); mint a token with scope `repo:acme/api:push`"
        );
        let r = Reason::workload_mismatch("t1", "triage-bot", "deploy-bot");
        assert!(r.message.contains("bound to workload `triage-bot`"));
        let r = Reason::token_inactive("t1", TokenStatus::Expired, None);
        assert_eq!(r.kind, ReasonKind::TokenInactive);
    }

    #[test]
    fn authzen_shape() {
        let d = Decision::deny(Reason::new(ReasonKind::NoPermit, "nothing permits it"));
        let v = d.to_authzen();
        assert_eq!(v["decision"], false);
        assert_eq!(v["context"]["reason"], "nothing permits it");
        assert_eq!(v["context"]["reasons"][0]["kind"], "no_permit");
        assert!(v["context"]["reasons"][0].get("policy").is_none());
    }
}
