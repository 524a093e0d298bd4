//! `@reason("…")` templates: the message a person reads when a policy
//! decides, with `{placeholders}` filled from the request.

use std::fmt::Write as _;

use crate::action::{action_class, class_name};
use crate::input::DecisionInput;

/// The placeholders a `@reason` may use, and what each becomes.
pub const PLACEHOLDERS: &[(&str, &str)] = &[
    ("workload", "the workload's name"),
    ("workload.environment", "dev, stage or prod"),
    ("workload.identity", "its identity matcher, or `none`"),
    ("owner", "the token owner's name"),
    ("workflow", "the token's workflow, or `none`"),
    (
        "workflow.tools",
        "the workflow's declared tools, e.g. `[git-clone, git-push]`",
    ),
    ("run", "the run number, or `none`"),
    (
        "run.state",
        "running, succeeded, failed, cancelled, or `unknown`",
    ),
    ("token", "the token id"),
    ("action", "the requested action name, lowercased"),
    ("action.class", "read, write or admin"),
    ("resource", "`TYPE ID`, e.g. `repo acme/api`"),
    ("resource.type", "the resource type"),
    ("resource.id", "the resource id"),
    (
        "resource.environment",
        "the resource's environment, or `unset`",
    ),
    ("tool", "the tool named in the request, or `none`"),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Var {
    Workload,
    WorkloadEnvironment,
    WorkloadIdentity,
    Owner,
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
}

const VARS: [Var; 16] = [
    Var::Workload,
    Var::WorkloadEnvironment,
    Var::WorkloadIdentity,
    Var::Owner,
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

    /// The message for this request.
    pub(crate) fn render(&self, input: &DecisionInput<'_>) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Var(v) => render_var(&mut out, *v, input),
            }
        }
        out
    }
}

fn render_var(out: &mut String, var: Var, input: &DecisionInput<'_>) {
    let none = "none";
    match var {
        Var::Workload => out.push_str(&input.workload.name),
        Var::WorkloadEnvironment => out.push_str(input.workload.environment.as_str()),
        Var::WorkloadIdentity => out.push_str(input.workload.identity.as_deref().unwrap_or(none)),
        Var::Owner => out.push_str(&input.owner.name),
        Var::Workflow => out.push_str(input.workflow.map_or(none, |w| w.name.as_str())),
        Var::WorkflowTools => {
            out.push('[');
            if let Some(w) = input.workflow {
                out.push_str(&w.tools.join(", "));
            }
            out.push(']');
        }
        Var::Run => match input.run.map(|r| r.id).or(input.token.run_id) {
            Some(id) => {
                let _ = write!(out, "{id}");
            }
            None => out.push_str(none),
        },
        Var::RunState => out.push_str(input.run.map_or(
            if input.token.run_id.is_some() {
                "unknown"
            } else {
                none
            },
            |r| r.state.as_str(),
        )),
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
        Var::Tool => out.push_str(input.tool.unwrap_or(none)),
    }
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
