//! Policy sets: loaded from named sources (files or API text), checked
//! against the Leash schema in strict mode, and only then usable.

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;

use cedar_policy::{ActionConstraint, Authorizer, Effect, PolicyId, ValidationMode};
use miette::Diagnostic as _;
use serde::{Deserialize, Serialize};

use crate::error::{Diagnostic, PolicyError};
use crate::reason::ReasonTemplate;
use crate::schema::{Needs, compiled};

/// The policies Leash ships, as `(file name, text)`: a base permit, the
/// request-time forbids for production isolation, ended runs and undeclared
/// tools, and the issuance forbids (`Leash::Action::"issue"`) for inactive
/// owners, scopes above the ceiling, lifetimes above the environment's cap
/// and exchanges across environments.
pub const DEFAULT_POLICIES: &[(&str, &str)] = &[
    ("base.cedar", include_str!("../policies/base.cedar")),
    (
        "prod-isolation.cedar",
        include_str!("../policies/prod-isolation.cedar"),
    ),
    (
        "run-ended.cedar",
        include_str!("../policies/run-ended.cedar"),
    ),
    (
        "declared-tools.cedar",
        include_str!("../policies/declared-tools.cedar"),
    ),
    (
        "issue-owner-active.cedar",
        include_str!("../policies/issue-owner-active.cedar"),
    ),
    (
        "issue-scope-ceiling.cedar",
        include_str!("../policies/issue-scope-ceiling.cedar"),
    ),
    (
        "issue-ttl-caps.cedar",
        include_str!("../policies/issue-ttl-caps.cedar"),
    ),
    (
        "issue-environment-isolation.cedar",
        include_str!("../policies/issue-environment-isolation.cedar"),
    ),
];

/// Longest policy source accepted (1 MiB).
pub const MAX_SOURCE_LEN: usize = 1 << 20;

/// Cedar text with the name it is known by: a file name such as
/// `ops.cedar`, or the name an operator gave it through the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicySource {
    pub name: String,
    pub text: String,
}

impl PolicySource {
    /// A named source.
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            text: text.into(),
        }
    }

    /// The shipped default policies, one source per file.
    pub fn defaults() -> Vec<PolicySource> {
        DEFAULT_POLICIES
            .iter()
            .map(|(name, text)| PolicySource::new(*name, *text))
            .collect()
    }
}

/// What Leash knows about one active policy besides its Cedar form.
#[derive(Debug, Clone)]
pub(crate) struct PolicyMeta {
    /// Name of the source it came from.
    pub(crate) source: String,
    /// Load order, so reasons list in the order the policies were written.
    pub(crate) order: usize,
    pub(crate) effect: Effect,
    pub(crate) reason: Option<ReasonTemplate>,
}

/// A validated set of policies, ready to decide requests.
///
/// It can only be built from sources that parse and validate against the
/// Leash schema in strict mode, so a `PolicySet` in hand is always safe to
/// activate.
///
/// Policy ids come from the `@id("…")` annotation; a policy without one is
/// `SOURCE#N` (its 1-based position in the source). Ids are unique across
/// the set. A policy's `@reason("…")` is the message a person reads when it
/// decides; it may use the placeholders in [`crate::PLACEHOLDERS`].
#[derive(Debug, Clone)]
pub struct PolicySet {
    /// The policies that can apply to a request (read, write, admin).
    pub(crate) requests: Partition,
    /// The policies that can apply to an issuance (issue).
    pub(crate) issuance: Partition,
    pub(crate) meta: HashMap<PolicyId, PolicyMeta>,
    pub(crate) authorizer: std::sync::Arc<Authorizer>,
    sources: Vec<PolicySource>,
    warnings: Vec<Diagnostic>,
    /// Decisions already made with this set ([`PolicySet::decide_in_epoch`]).
    pub(crate) memo: crate::memo::DecisionMemo,
}

/// The policies whose action scope can match one kind of decision, and
/// the attributes they read.
///
/// A policy whose scope does not match the action never applies, and
/// Cedar still spends time on it; so a request is evaluated without the
/// issuance policies and the other way round, which cannot change the
/// outcome. The schema has no action groups, so the scope alone says which
/// actions a policy can match.
#[derive(Debug, Clone, Default)]
pub(crate) struct Partition {
    pub(crate) cedar: cedar_policy::PolicySet,
    pub(crate) needs: Needs,
}

impl Partition {
    fn add(&mut self, policy: &cedar_policy::Policy) -> Result<(), String> {
        match policy.to_json() {
            Ok(json) => self.needs.add_policy(&json),
            Err(_) => self.needs = Needs::ALL,
        }
        self.cedar.add(policy.clone()).map_err(|e| e.to_string())
    }
}

/// Split `cedar` by the actions each policy can match.
fn partition(
    cedar: &cedar_policy::PolicySet,
    issue: &cedar_policy::EntityUid,
) -> Result<(Partition, Partition), String> {
    let (mut requests, mut issuance) = (Partition::default(), Partition::default());
    for policy in cedar.policies() {
        let (for_requests, for_issuance) = match policy.action_constraint() {
            ActionConstraint::Any => (true, true),
            ActionConstraint::Eq(a) => (a != *issue, a == *issue),
            ActionConstraint::In(list) => (list.iter().any(|a| a != issue), list.contains(issue)),
        };
        if for_requests {
            requests.add(policy)?;
        }
        if for_issuance {
            issuance.add(policy)?;
        }
    }
    Ok((requests, issuance))
}

impl PolicySet {
    /// The shipped default policies.
    ///
    /// # Errors
    /// Only [`PolicyError::Schema`] / [`PolicyError::Invalid`] on a bug in
    /// the built-in schema or policies.
    pub fn defaults() -> Result<Self, PolicyError> {
        Self::from_sources(PolicySource::defaults())
    }

    /// One source of Cedar text (e.g. a policy posted to the API), alone.
    /// Combine it with [`PolicySource::defaults`] through
    /// [`PolicySet::from_sources`] or [`PolicySet::with_source`] to keep the
    /// shipped rules.
    ///
    /// # Errors
    /// [`PolicyError::Invalid`] with Cedar's diagnostics.
    pub fn from_text(name: &str, text: &str) -> Result<Self, PolicyError> {
        Self::from_sources([PolicySource::new(name, text)])
    }

    /// The defaults, overlaid with every `*.cedar` file in `dir` (not
    /// recursive, in file-name order). A file named like a default
    /// (`prod-isolation.cedar`, …) replaces that default, so an operator
    /// can change or switch off (with an empty file) a shipped rule; other
    /// files add to them.
    ///
    /// # Errors
    /// [`PolicyError::Read`] when the directory or a file cannot be read,
    /// [`PolicyError::Invalid`] with Cedar's diagnostics.
    pub fn from_dir(dir: &Path) -> Result<Self, PolicyError> {
        let read_err = |path: &Path, source| PolicyError::Read {
            path: path.to_owned(),
            source,
        };
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| read_err(dir, e))? {
            let path = entry.map_err(|e| read_err(dir, e))?.path();
            if path.extension().is_some_and(|e| e == "cedar") && path.is_file() {
                files.push(path);
            }
        }
        files.sort();
        let mut sources = PolicySource::defaults();
        for path in files {
            let text = std::fs::read_to_string(&path).map_err(|e| read_err(&path, e))?;
            let name = path.file_name().map_or_else(
                || path.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            );
            match sources.iter_mut().find(|s| s.name == name) {
                Some(existing) => existing.text = text,
                None => sources.push(PolicySource::new(name, text)),
            }
        }
        Self::from_sources(sources)
    }

    /// Parse and validate `sources` as one set. Every problem in every
    /// source is reported, not just the first.
    ///
    /// # Errors
    /// [`PolicyError::Invalid`] listing each problem with its source, policy
    /// id, line and column.
    pub fn from_sources(
        sources: impl IntoIterator<Item = PolicySource>,
    ) -> Result<Self, PolicyError> {
        let compiled = compiled()?;
        let sources: Vec<PolicySource> = sources.into_iter().collect();
        let mut diagnostics = Vec::new();
        let mut cedar = cedar_policy::PolicySet::new();
        let mut meta: HashMap<PolicyId, PolicyMeta> = HashMap::new();

        for (index, source) in sources.iter().enumerate() {
            if source.name.trim().is_empty() {
                diagnostics.push(Diagnostic::in_source(
                    "(unnamed)",
                    "a policy source needs a name, e.g. `ops.cedar`",
                ));
                continue;
            }
            if sources[..index].iter().any(|s| s.name == source.name) {
                diagnostics.push(Diagnostic::in_source(
                    &source.name,
                    "two policy sources have this name; give each a different name",
                ));
                continue;
            }
            if source.text.len() > MAX_SOURCE_LEN {
                diagnostics.push(Diagnostic::in_source(
                    &source.name,
                    format!(
                        "the source is {} bytes, above the limit of {MAX_SOURCE_LEN}; split it into smaller files",
                        source.text.len()
                    ),
                ));
                continue;
            }
            add_source(source, &mut cedar, &mut meta, &mut diagnostics);
        }
        if !diagnostics.is_empty() {
            return Err(PolicyError::Invalid { diagnostics });
        }

        let text_of = |id: &PolicyId| {
            meta.get(id)
                .and_then(|m| sources.iter().find(|s| s.name == m.source))
        };
        let locate = |id: &PolicyId, d: &dyn miette::Diagnostic, message: String| {
            let message = without_policy_prefix(&message, id);
            let mut help = d.help().map(|h| without_policy_prefix(&h.to_string(), id));
            if message.starts_with("unrecognized action") {
                help = Some(ACTION_HELP.to_owned());
            }
            let mut out = match text_of(id) {
                Some(src) => {
                    let diag = Diagnostic::in_source(&src.name, message);
                    match first_label_offset(d) {
                        Some(offset) => diag.at_offset(&src.text, offset),
                        None => diag,
                    }
                }
                None => Diagnostic::in_source("(unknown source)", message),
            };
            out = out.with_policy(id.to_string()).with_help(help);
            out
        };

        let result = compiled.validator.validate(&cedar, ValidationMode::Strict);
        let mut request_only: HashMap<&PolicyId, bool> = HashMap::new();
        for e in result.validation_errors() {
            let mut d = locate(e.policy_id(), e, e.to_string());
            // Cedar reports a problem once per action it applies to; once is enough.
            let seen = diagnostics.iter().any(|o: &Diagnostic| {
                (&o.source, &o.policy_id, o.line, o.column)
                    == (&d.source, &d.policy_id, d.line, d.column)
            });
            if seen {
                continue;
            }
            // A policy naming no action that only fails for `issue`: Cedar's
            // help is about the issue context (e.g. "did you mean `kind`?");
            // say how to limit the policy instead, in full once per policy.
            match request_only.get(e.policy_id()) {
                Some(true) => d.help = Some(REQUEST_ONLY_HELP_AGAIN.to_owned()),
                Some(false) => {}
                None => {
                    let fits = valid_for_requests_only(&cedar, e.policy_id());
                    if fits {
                        d.help = Some(REQUEST_ONLY_HELP.to_owned());
                    }
                    request_only.insert(e.policy_id(), fits);
                }
            }
            diagnostics.push(d);
        }
        let warnings = result
            .validation_warnings()
            .map(|w| {
                let mut d = locate(w.policy_id(), w, w.to_string());
                d.message = format!("warning: {}", d.message);
                d
            })
            .collect();
        if !diagnostics.is_empty() {
            return Err(PolicyError::Invalid { diagnostics });
        }
        let (requests, issuance) =
            partition(&cedar, &compiled.issue).map_err(|message| PolicyError::Invalid {
                diagnostics: vec![Diagnostic::in_source("(policy set)", message)],
            })?;
        Ok(Self {
            requests,
            issuance,
            meta,
            authorizer: std::sync::Arc::new(Authorizer::new()),
            sources,
            warnings,
            memo: crate::memo::DecisionMemo::default(),
        })
    }

    /// A new set with `source` added, or replacing the source of the same
    /// name; this set is unchanged.
    ///
    /// # Errors
    /// [`PolicyError::Invalid`] when the result does not validate.
    pub fn with_source(&self, source: PolicySource) -> Result<Self, PolicyError> {
        let mut sources = self.sources.clone();
        match sources.iter_mut().find(|s| s.name == source.name) {
            Some(existing) => *existing = source,
            None => sources.push(source),
        }
        Self::from_sources(sources)
    }

    /// A new set without the source named `name` (unchanged if absent).
    ///
    /// # Errors
    /// [`PolicyError::Invalid`] only if the remaining sources do not
    /// validate, which cannot happen for sources that validated together.
    pub fn without_source(&self, name: &str) -> Result<Self, PolicyError> {
        Self::from_sources(self.sources.iter().filter(|s| s.name != name).cloned())
    }

    /// The sources this set was built from, in load order.
    pub fn sources(&self) -> &[PolicySource] {
        &self.sources
    }

    /// The ids of the active policies, in load order.
    pub fn policy_ids(&self) -> Vec<&str> {
        let mut ids: Vec<(&PolicyId, &PolicyMeta)> = self.meta.iter().collect();
        ids.sort_by_key(|(_, m)| m.order);
        ids.into_iter()
            .map(|(id, _)| AsRef::<str>::as_ref(id))
            .collect()
    }

    /// Number of policies.
    pub fn len(&self) -> usize {
        self.meta.len()
    }

    /// True when the set has no policies (every request is then denied).
    pub fn is_empty(&self) -> bool {
        self.meta.is_empty()
    }

    /// Cedar's validation warnings (e.g. a policy that can never apply);
    /// they do not stop activation.
    pub fn warnings(&self) -> &[Diagnostic] {
        &self.warnings
    }
}

/// Parse one source into `cedar`, recording metadata or diagnostics.
fn add_source(
    source: &PolicySource,
    cedar: &mut cedar_policy::PolicySet,
    meta: &mut HashMap<PolicyId, PolicyMeta>,
    diagnostics: &mut Vec<Diagnostic>,
) {
    let parsed = match cedar_policy::PolicySet::from_str(&source.text) {
        Ok(p) => p,
        Err(errors) => {
            for e in errors.iter() {
                let d = Diagnostic::in_source(&source.name, e.to_string())
                    .with_help(e.help().map(|h| h.to_string()));
                diagnostics.push(match first_label_offset(e) {
                    Some(offset) => d.at_offset(&source.text, offset),
                    None => d,
                });
            }
            return;
        }
    };
    for t in parsed.templates() {
        let d = Diagnostic::in_source(
            &source.name,
            "policy templates (with `?principal` or `?resource` slots) are not supported; write a static policy naming the entity",
        );
        diagnostics.push(match t.annotation("id") {
            Some(id) => d.with_policy(id),
            None => d,
        });
    }
    // `from_str` names policies `policy0`, `policy1`, … in source order.
    let mut policies: Vec<&cedar_policy::Policy> = parsed.policies().collect();
    policies.sort_by_key(|p| {
        AsRef::<str>::as_ref(p.id())
            .strip_prefix("policy")
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or(usize::MAX)
    });
    for (i, policy) in policies.into_iter().enumerate() {
        let id = match policy.annotation("id") {
            Some(id) if id.trim().is_empty() => {
                diagnostics.push(
                    Diagnostic::in_source(
                        &source.name,
                        "`@id(\"\")` is empty; give the policy a name",
                    )
                    .with_policy(format!("{}#{}", source.name, i + 1)),
                );
                continue;
            }
            Some(id) => id.to_owned(),
            None => format!("{}#{}", source.name, i + 1),
        };
        let policy_id = PolicyId::new(&id);
        if let Some(other) = meta.get(&policy_id) {
            diagnostics.push(
                Diagnostic::in_source(
                    &source.name,
                    format!(
                        "the id is already used by a policy in `{}`; policy ids must be unique",
                        other.source
                    ),
                )
                .with_policy(&id),
            );
            continue;
        }
        let reason = match policy.annotation("reason").map(ReasonTemplate::parse) {
            Some(Ok(t)) => Some(t),
            Some(Err(message)) => {
                diagnostics.push(Diagnostic::in_source(&source.name, message).with_policy(&id));
                continue;
            }
            None => None,
        };
        if let Err(e) = cedar.add(policy.new_id(policy_id.clone())) {
            diagnostics.push(Diagnostic::in_source(&source.name, e.to_string()).with_policy(&id));
            continue;
        }
        let order = meta.len();
        meta.insert(
            policy_id,
            PolicyMeta {
                source: source.name.clone(),
                order,
                effect: policy.effect(),
                reason,
            },
        );
    }
}

const ACTION_HELP: &str = "Leash's actions are the request classes `Leash::Action::\"read\"`, `\"write\"` and `\"admin\"` (the requested action name is `context.action`, e.g. `context.action == \"delete\"`), and `Leash::Action::\"issue\"` for token issuance";

const REQUEST_ONLY_HELP: &str = "this policy applies to every action, including `Leash::Action::\"issue\"` (token issuance, whose resource is the Workload and whose context differs); if it is about requests, limit it with `action in [Leash::Action::\"read\", Leash::Action::\"write\", Leash::Action::\"admin\"]` and it validates";

const REQUEST_ONLY_HELP_AGAIN: &str =
    "limit the policy to the request actions (see the first problem in it)";

/// Whether policy `id`, which names no action, would validate if it were
/// limited to the request actions: then its errors come from the `issue`
/// action only, and the fix is to say so.
fn valid_for_requests_only(cedar: &cedar_policy::PolicySet, id: &PolicyId) -> bool {
    let Some(policy) = cedar.policy(id) else {
        return false;
    };
    if policy.action_constraint() != cedar_policy::ActionConstraint::Any {
        return false;
    }
    let Ok(mut json) = policy.to_json() else {
        return false;
    };
    let action = |id: &str| serde_json::json!({"type": "Leash::Action", "id": id});
    json["action"] = serde_json::json!({
        "op": "in",
        "entities": [action("read"), action("write"), action("admin")],
    });
    let Ok(limited) = cedar_policy::Policy::from_json(Some(id.clone()), json) else {
        return false;
    };
    let mut set = cedar_policy::PolicySet::new();
    let Ok(compiled) = compiled() else {
        return false;
    };
    set.add(limited).is_ok()
        && compiled
            .validator
            .validate(&set, ValidationMode::Strict)
            .validation_passed()
}

/// Cedar starts many messages with "for policy `ID`, "; the diagnostic
/// already names the policy.
fn without_policy_prefix(message: &str, id: &PolicyId) -> String {
    let prefix = format!("for policy `{id}`, ");
    message.strip_prefix(&prefix).unwrap_or(message).to_owned()
}

fn first_label_offset(d: &dyn miette::Diagnostic) -> Option<usize> {
    d.labels()?.next().map(|l| l.offset())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Attr;

    #[test]
    fn defaults_load_with_their_ids_in_order() {
        let set = PolicySet::defaults().unwrap();
        assert_eq!(
            set.policy_ids(),
            vec![
                "base-permit",
                "prod-only-from-prod",
                "no-writes-after-run",
                "declared-tools-only",
                "issue-owner-active",
                "issue-scope-ceiling",
                "issue-ttl-caps-dev",
                "issue-ttl-caps-stage",
                "issue-ttl-caps-prod",
                "issue-environment-isolation",
            ]
        );
        assert!(set.warnings().is_empty(), "{:?}", set.warnings());
        // The defaults read only the principal, the resource and the context.
        let needs = |names: &[&str]| {
            let mut n = Needs::default();
            for a in names {
                n.add_attr(a);
            }
            n
        };
        assert_eq!(
            set.requests.needs,
            needs(&["environment", "run_state", "tool", "workflow_tools"])
        );
        assert_eq!(
            set.issuance.needs,
            needs(&[
                "environment",
                "owner_status",
                "above_ceiling",
                "ttl_secs",
                "parent_environment"
            ])
        );
        // Each decision evaluates only the policies that can apply to it;
        // the base permit names no action and is in both.
        assert_eq!(set.requests.cedar.policies().count(), 4);
        assert_eq!(set.issuance.cedar.policies().count(), 7);
    }

    #[test]
    fn sets_build_the_entities_their_policies_read() {
        let set = PolicySet::from_text(
            "o.cedar",
            "forbid (principal, action, resource) when { context has run && context.run.state == \"x\" };",
        )
        .unwrap();
        assert!(set.requests.needs.has(Attr::Run) && set.requests.needs.has(Attr::State));
        assert!(!set.requests.needs.has(Attr::Owner) && !set.requests.needs.has(Attr::Tools));
        let set = PolicySet::from_text(
            "o.cedar",
            "forbid (principal, action, resource) when { principal.owner.status == \"offboarded\" };",
        )
        .unwrap();
        assert!(set.requests.needs.has(Attr::Owner) && set.requests.needs.has(Attr::Status));
        assert!(!set.requests.needs.has(Attr::Run));
        let set = PolicySet::from_text(
            "o.cedar",
            "forbid (principal, action, resource) when { context == context };",
        )
        .unwrap();
        assert_eq!(set.requests.needs, Needs::ALL);
        assert_eq!(set.issuance.needs, Needs::ALL);
    }

    #[test]
    fn policies_without_id_are_named_by_source_and_position() {
        let set = PolicySet::from_text(
            "ops.cedar",
            "permit(principal, action, resource);\nforbid(principal, action, resource) when { context.now < 0 };",
        )
        .unwrap();
        assert_eq!(set.policy_ids(), vec!["ops.cedar#1", "ops.cedar#2"]);
    }

    #[test]
    fn duplicate_ids_name_both_sources() {
        let p = "@id(\"x\") permit(principal, action, resource);";
        let err = PolicySet::from_sources([
            PolicySource::new("a.cedar", p),
            PolicySource::new("b.cedar", p),
        ])
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("b.cedar: policy `x`: the id is already used by a policy in `a.cedar`"),
            "{text}"
        );
    }

    #[test]
    fn templates_are_refused() {
        let err = PolicySet::from_text(
            "t.cedar",
            "permit(principal == ?principal, action, resource);",
        )
        .unwrap_err();
        assert!(err.to_string().contains("templates"), "{err}");
    }

    #[test]
    fn bad_reason_placeholders_are_refused() {
        let err = PolicySet::from_text(
            "r.cedar",
            "@reason(\"workload {wrkload}\") forbid(principal, action, resource);",
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("unknown placeholder `{wrkload}`"),
            "{err}"
        );
    }
}
