//! `@reason("…")` templates: the message a person reads when a policy
//! decides, with `{placeholders}` filled from the request.

use std::fmt::Write as _;

use leash_core::duration::format_duration;

use crate::action::{action_class, class_name};
use crate::input::{DecisionInput, IssuanceInput, Subject};

/// The placeholders a `@reason` may use, and what each becomes.
///
/// Request-time decisions and issuance decisions (`Leash::Action::"issue"`)
/// fill the same placeholders; where one has no meaning for a decision it
/// reads `none` (or `[]` for a list).
pub const PLACEHOLDERS: &[(&str, &str)] = &[
    ("workload", "the workload's name"),
    ("workload.environment", "dev, stage or prod"),
    ("workload.identity", "its identity matcher, or `none`"),
    (
        "workload.scope_ceiling",
        "the workload's scope ceiling, e.g. `[tickets:read, repo:acme/*:write]`",
    ),
    ("owner", "the token owner's name"),
    ("owner.status", "active or offboarded"),
    (
        "workflow",
        "the token's workflow, or `none` (issuance: `none`)",
    ),
    (
        "workflow.tools",
        "the workflow's declared tools, e.g. `[git-clone, git-push]`",
    ),
    ("run", "the run number, or `none`"),
    (
        "run.state",
        "running, succeeded, failed, cancelled, or `unknown`",
    ),
    (
        "token",
        "the token id (issuance: `none`, there is no token yet)",
    ),
    (
        "action",
        "the requested action name, lowercased (issuance: `issue`)",
    ),
    ("action.class", "read, write or admin (issuance: `issue`)"),
    (
        "resource",
        "`TYPE ID`, e.g. `repo acme/api` (issuance: `workload NAME`)",
    ),
    ("resource.type", "the resource type (issuance: `workload`)"),
    (
        "resource.id",
        "the resource id (issuance: the workload's name)",
    ),
    (
        "resource.environment",
        "the resource's environment, or `unset` (issuance: the workload's)",
    ),
    ("tool", "the tool named in the request, or `none`"),
    (
        "kind",
        "how the token is asked for: mint, exchange, client_credentials, federated or break_glass (requests: `request`)",
    ),
    (
        "scopes",
        "the requested scopes (requests: the token's), e.g. `[tickets:read]`",
    ),
    (
        "above_ceiling",
        "the requested scopes above the workload's scope ceiling, e.g. `[repo:evil/x:write]` (requests: `[]`)",
    ),
    (
        "ttl",
        "the requested lifetime, e.g. `2h30m` (requests: the token's remaining lifetime)",
    ),
    (
        "parent_environment",
        "the environment of the parent token's workload in an exchange, or `none`",
    ),
    (
        "actor_environment",
        "the environment of the actor token's workload in a delegation, or `none`",
    ),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Var {
    Workload,
    WorkloadEnvironment,
    WorkloadIdentity,
    WorkloadScopeCeiling,
    Owner,
    OwnerStatus,
    Workflow,
    WorkflowTools,
    Run,
    RunState,
    Token,
    Action,
    ActionClass,
    Resource,
    ResourceType,
    ResourceId,
    ResourceEnvironment,
    Tool,
    Kind,
    Scopes,
    AboveCeiling,
    Ttl,
    ParentEnvironment,
    ActorEnvironment,
}

/// The variable of each of [`PLACEHOLDERS`], in the same order.
const VARS: [Var; 24] = [
    Var::Workload,
    Var::WorkloadEnvironment,
    Var::WorkloadIdentity,
    Var::WorkloadScopeCeiling,
    Var::Owner,
    Var::OwnerStatus,
    Var::Workflow,
    Var::WorkflowTools,
    Var::Run,
    Var::RunState,
    Var::Token,
    Var::Action,
    Var::ActionClass,
    Var::Resource,
    Var::ResourceType,
    Var::ResourceId,
    Var::ResourceEnvironment,
    Var::Tool,
    Var::Kind,
    Var::Scopes,
    Var::AboveCeiling,
    Var::Ttl,
    Var::ParentEnvironment,
    Var::ActorEnvironment,
];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Var(Var),
}

/// A parsed `@reason` annotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReasonTemplate {
    parts: Vec<Part>,
}

impl ReasonTemplate {
    /// Parse `text`; `{name}` is a placeholder, `{{` and `}}` are literal
    /// braces. Unknown placeholders are refused with the list of known ones.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut rest = text;
        while let Some(i) = rest.find(['{', '}']) {
            lit.push_str(&rest[..i]);
            let tail = &rest[i..];
            if let Some(after) = tail.strip_prefix("{{") {
                lit.push('{');
                rest = after;
            } else if let Some(after) = tail.strip_prefix("}}") {
                lit.push('}');
                rest = after;
            } else if let Some(after) = tail.strip_prefix('{') {
                let end = after.find('}').ok_or_else(|| {
                    format!("`@reason` has a `{{` with no closing `}}`: {text:?}")
                })?;
                let name = &after[..end];
                let var = PLACEHOLDERS
                    .iter()
                    .position(|(n, _)| *n == name)
                    .and_then(|i| VARS.get(i).copied())
                    .ok_or_else(|| {
                        let known: Vec<&str> = PLACEHOLDERS.iter().map(|(n, _)| *n).collect();
                        format!(
                            "`@reason` uses unknown placeholder `{{{name}}}`; known placeholders: {}",
                            known.join(", ")
                        )
                    })?;
                if !lit.is_empty() {
                    parts.push(Part::Text(std::mem::take(&mut lit)));
                }
                parts.push(Part::Var(var));
                rest = &after[end + 1..];
            } else {
                return Err(format!(
                    "`@reason` has a `}}` with no opening `{{` (write `}}}}` for a brace): {text:?}"
                ));
            }
        }
        lit.push_str(rest);
        if !lit.is_empty() {
            parts.push(Part::Text(lit));
        }
        Ok(Self { parts })
    }

    /// The message for this decision.
    pub(crate) fn render(&self, subject: Subject<'_>) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Var(v) => render_var(&mut out, *v, subject),
            }
        }
        out
    }
}

const NONE: &str = "none";

fn render_var(out: &mut String, var: Var, subject: Subject<'_>) {
    let workload = subject.workload();
    match var {
        Var::Workload => out.push_str(&workload.name),
        Var::WorkloadEnvironment => out.push_str(workload.environment.as_str()),
        Var::WorkloadIdentity => out.push_str(workload.identity.as_deref().unwrap_or(NONE)),
        Var::WorkloadScopeCeiling => push_list(out, &workload.scope_ceiling),
        Var::Owner => out.push_str(&subject.owner().name),
        Var::OwnerStatus => out.push_str(subject.owner().status.as_str()),
        Var::Run => match subject.run().map(|r| r.id).or(subject.run_id()) {
            Some(id) => {
                let _ = write!(out, "{id}");
            }
            None => out.push_str(NONE),
        },
        Var::RunState => out.push_str(subject.run().map_or(
            if subject.run_id().is_some() {
                "unknown"
            } else {
                NONE
            },
            |r| r.state.as_str(),
        )),
        _ => match subject {
            Subject::Request(input) => render_request_var(out, var, input),
            Subject::Issue(input) => render_issue_var(out, var, input),
        },
    }
}

fn render_request_var(out: &mut String, var: Var, input: &DecisionInput<'_>) {
    match var {
        Var::Workflow => out.push_str(input.workflow.map_or(NONE, |w| w.name.as_str())),
        Var::WorkflowTools => push_list(out, input.workflow.map_or(&[][..], |w| &w.tools)),
        Var::Token => out.push_str(&input.token.id),
        Var::Action => out.push_str(&crate::action::normalize_action(input.action)),
        Var::ActionClass => out.push_str(class_name(action_class(input.action))),
        Var::Resource => {
            let _ = write!(
                out,
                "{} {}",
                input.resource.resource_type, input.resource.id
            );
        }
        Var::ResourceType => out.push_str(input.resource.resource_type),
        Var::ResourceId => out.push_str(input.resource.id),
        Var::ResourceEnvironment => {
            out.push_str(input.resource.environment.unwrap_or("unset"));
        }
        Var::Tool => out.push_str(input.tool.unwrap_or(NONE)),
        Var::Kind => out.push_str("request"),
        Var::Scopes => push_list(out, &input.token.scopes),
        Var::AboveCeiling => out.push_str("[]"),
        Var::Ttl => {
            let left_ms = input.token.expires_at.saturating_sub(input.now).max(0);
            out.push_str(&format_duration(left_ms.unsigned_abs() / 1000));
        }
        // No parent or actor in a request; the shared ones are rendered by
        // `render_var`.
        _ => out.push_str(NONE),
    }
}

fn render_issue_var(out: &mut String, var: Var, input: &IssuanceInput<'_>) {
    match var {
        Var::WorkflowTools => push_list::<String>(out, &[]),
        Var::AboveCeiling => push_list(out, input.above_ceiling),
        Var::Action | Var::ActionClass => out.push_str("issue"),
        Var::Resource => {
            let _ = write!(out, "workload {}", input.workload.name);
        }
        Var::ResourceType => out.push_str("workload"),
        Var::ResourceId => out.push_str(&input.workload.name),
        Var::ResourceEnvironment => out.push_str(input.workload.environment.as_str()),
        Var::Kind => out.push_str(input.kind.as_str()),
        Var::Scopes => push_list(out, input.scopes),
        Var::Ttl => out.push_str(&format_duration(input.ttl_secs)),
        Var::ParentEnvironment => {
            out.push_str(input.parent_environment.map_or(NONE, |e| e.as_str()));
        }
        Var::ActorEnvironment => {
            out.push_str(input.actor_environment.map_or(NONE, |e| e.as_str()));
        }
        // Workflow, token and tool, and the shared ones rendered by
        // `render_var`.
        _ => out.push_str(NONE),
    }
}

/// `[a, b]`.
fn push_list<T: std::fmt::Display>(out: &mut String, items: &[T]) {
    out.push('[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let _ = write!(out, "{item}");
    }
    out.push(']');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_placeholder_has_a_variable() {
        assert_eq!(PLACEHOLDERS.len(), VARS.len());
        for (name, _) in PLACEHOLDERS {
            assert!(
                ReasonTemplate::parse(&format!("x {{{name}}} y")).is_ok(),
                "{name}"
            );
        }
    }

    #[test]
    fn parses_text_placeholders_and_escaped_braces() {
        let t = ReasonTemplate::parse("a {{b}} {workload}!").unwrap();
        assert_eq!(
            t.parts,
            vec![
                Part::Text("a {b} ".into()),
                Part::Var(Var::Workload),
                Part::Text("!".into())
            ]
        );
    }

    #[test]
    fn refuses_unknown_placeholders_and_stray_braces() {
        let e = ReasonTemplate::parse("workload {wrkload}").unwrap_err();
        assert!(e.contains("unknown placeholder `{wrkload}`"), "{e}");
        assert!(e.contains("workload.environment"), "{e}");
        assert!(ReasonTemplate::parse("open { only").is_err());
        assert!(ReasonTemplate::parse("close } only").is_err());
    }
}
