//! The Leash Cedar schema, parsed once per process, and the entity type
//! names and action ids that every decision reuses.

use std::str::FromStr;
use std::sync::OnceLock;

use cedar_policy::{EntityId, EntityTypeName, EntityUid, Validator};
use leash_core::scope::ActionClass;

use crate::PolicyError;

/// The schema text (Cedar schema syntax, namespace `Leash`).
pub const SCHEMA: &str = include_str!("leash.cedarschema");

/// Every attribute name in [`SCHEMA`], entity and context alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Attr {
    Kind,
    Status,
    Environment,
    Owner,
    Identity,
    Tools,
    Workflow,
    State,
    Run,
    Scopes,
    HasWrite,
    BreakGlass,
    ExpiresAt,
    Workload,
    Type,
    Id,
    Action,
    Tool,
    RunState,
    WorkflowTools,
    Token,
    TokenId,
    Now,
    TtlSecs,
    AboveCeiling,
    OwnerStatus,
    ParentEnvironment,
    ActorEnvironment,
    Justified,
}

/// The names of [`Attr`], in the same order.
pub(crate) const ATTR_NAMES: [&str; 29] = [
    "kind",
    "status",
    "environment",
    "owner",
    "identity",
    "tools",
    "workflow",
    "state",
    "run",
    "scopes",
    "has_write",
    "break_glass",
    "expires_at",
    "workload",
    "type",
    "id",
    "action",
    "tool",
    "run_state",
    "workflow_tools",
    "token",
    "token_id",
    "now",
    "ttl_secs",
    "above_ceiling",
    "owner_status",
    "parent_environment",
    "actor_environment",
    "justified",
];

// `Needs` keeps one bit per attribute name.
const _: () = assert!(ATTR_NAMES.len() <= 32);

impl Attr {
    pub(crate) fn name(self) -> &'static str {
        ATTR_NAMES[self as usize]
    }
}

/// The attribute names a policy set reads, so a decision builds only
/// those attributes, and only entities that have one of them (the
/// principal Workload is always built: it carries its owner as parent for
/// `in`; the Resource too).
///
/// Conservative: strict validation only admits `e.a` and `e has a` where
/// the type of `e` declares `a`, so building every attribute *named* `a`,
/// on every entity and in the context, covers whatever a policy can read.
/// Leaving the others out is unobservable to the policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Needs(u32);

impl Needs {
    pub(crate) const ALL: Needs = Needs(u32::MAX);

    pub(crate) fn has(self, a: Attr) -> bool {
        self.0 & (1 << a as u32) != 0
    }

    pub(crate) fn add_attr(&mut self, name: &str) {
        if let Some(i) = ATTR_NAMES.iter().position(|n| *n == name) {
            self.0 |= 1 << i;
        }
    }

    /// Add every attribute name in a policy's JSON form (`"attr"` of `.`
    /// and `has` nodes: a string, or an array for `has a.b.c`). A policy
    /// that uses `context` other than to read or test one of its attributes
    /// (e.g. compares the whole record) needs everything.
    pub(crate) fn add_policy(&mut self, json: &serde_json::Value) {
        let (mut all, mut read) = (0usize, 0usize);
        self.walk(json, &mut all, &mut read);
        if all != read {
            *self = Needs::ALL;
        }
    }

    /// `all` counts uses of `context`, `read` those that are the `left` of
    /// a `.` or `has`.
    fn walk(&mut self, json: &serde_json::Value, all: &mut usize, read: &mut usize) {
        let is_context =
            |v: &serde_json::Value| v.get("Var").and_then(|v| v.as_str()) == Some("context");
        match json {
            serde_json::Value::Object(map) => {
                if is_context(json) {
                    *all += 1;
                }
                for (key, value) in map {
                    match (key.as_str(), value) {
                        ("attr", serde_json::Value::String(a)) => self.add_attr(a),
                        ("attr", serde_json::Value::Array(list)) => {
                            for a in list.iter().filter_map(serde_json::Value::as_str) {
                                self.add_attr(a);
                            }
                        }
                        (".", v) | ("has", v) if v.get("left").is_some_and(is_context) => {
                            *read += 1;
                            self.walk(v, all, read);
                        }
                        _ => self.walk(value, all, read),
                    }
                }
            }
            serde_json::Value::Array(list) => {
                for v in list {
                    self.walk(v, all, read);
                }
            }
            _ => {}
        }
    }
}

/// Everything derived from the schema once.
pub(crate) struct Compiled {
    pub(crate) validator: Validator,
    pub(crate) owner: EntityTypeName,
    pub(crate) workload: EntityTypeName,
    pub(crate) workflow: EntityTypeName,
    pub(crate) run: EntityTypeName,
    pub(crate) token: EntityTypeName,
    pub(crate) resource: EntityTypeName,
    read: EntityUid,
    write: EntityUid,
    admin: EntityUid,
    pub(crate) issue: EntityUid,
}

impl Compiled {
    pub(crate) fn schema(&self) -> &cedar_policy::Schema {
        self.validator.schema()
    }

    pub(crate) fn action(&self, class: ActionClass) -> &EntityUid {
        match class {
            ActionClass::Read => &self.read,
            ActionClass::Write => &self.write,
            ActionClass::Admin => &self.admin,
        }
    }

    pub(crate) fn uid(&self, ty: &EntityTypeName, id: &str) -> EntityUid {
        EntityUid::from_type_name_and_id(ty.clone(), EntityId::new(id))
    }
}

fn compile() -> Result<Compiled, String> {
    let (schema, _warnings) =
        cedar_policy::Schema::from_cedarschema_str(SCHEMA).map_err(|e| e.to_string())?;
    let ty = |name: &str| EntityTypeName::from_str(name).map_err(|e| e.to_string());
    let action_ty = ty("Leash::Action")?;
    let action = |id: &str| EntityUid::from_type_name_and_id(action_ty.clone(), EntityId::new(id));
    Ok(Compiled {
        owner: ty("Leash::Owner")?,
        workload: ty("Leash::Workload")?,
        workflow: ty("Leash::Workflow")?,
        run: ty("Leash::Run")?,
        token: ty("Leash::Token")?,
        resource: ty("Leash::Resource")?,
        read: action("read"),
        write: action("write"),
        admin: action("admin"),
        issue: action("issue"),
        validator: Validator::new(schema),
    })
}

/// The process-wide compiled schema.
pub(crate) fn compiled() -> Result<&'static Compiled, PolicyError> {
    static COMPILED: OnceLock<Result<Compiled, String>> = OnceLock::new();
    COMPILED
        .get_or_init(compile)
        .as_ref()
        .map_err(|e| PolicyError::Schema(e.clone()))
}

/// The Leash schema as a Cedar [`cedar_policy::Schema`], for tools that
/// validate entities or requests themselves.
///
/// # Errors
/// [`PolicyError::Schema`] only if the built-in schema is broken (a bug).
pub fn cedar_schema() -> Result<&'static cedar_policy::Schema, PolicyError> {
    compiled().map(Compiled::schema)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_parses_and_declares_four_actions() {
        let c = compiled().unwrap();
        assert_eq!(c.schema().actions().count(), 4);
        assert_eq!(c.issue.to_string(), r#"Leash::Action::"issue""#);
        assert_eq!(
            c.action(ActionClass::Write).to_string(),
            r#"Leash::Action::"write""#
        );
        assert_eq!(c.schema().entity_types().count(), 6);
    }

    #[test]
    fn attribute_names_match_the_schema() {
        // Every `name:` / `name?:` declaration inside a `{ … }` block.
        let mut declared: Vec<&str> = SCHEMA
            .lines()
            .map(|l| l.split("//").next().unwrap_or_default().trim())
            .filter(|l| l.ends_with(',') && l.contains(':') && !l.contains('['))
            .filter(|l| !l.starts_with("context:"))
            .map(|l| l.split([':', '?']).next().unwrap().trim())
            .collect();
        declared.sort();
        declared.dedup();
        let mut known = ATTR_NAMES.to_vec();
        known.sort();
        assert_eq!(declared, known);
        assert_eq!(Attr::Now.name(), "now");
        assert_eq!(Attr::Kind.name(), "kind");
    }

    #[test]
    fn needs_follow_attribute_names() {
        let mut n = Needs::default();
        n.add_policy(
            &serde_json::json!({"has": {"left": {"Var": "context"}, "attr": ["token", "run"]}}),
        );
        assert!(n.has(Attr::Token) && n.has(Attr::Run) && !n.has(Attr::State));
        n.add_policy(&serde_json::json!([{".": {"left": {"Var": "principal"}, "attr": "state"}}]));
        assert!(n.has(Attr::State));
        n.add_attr("nonsense");
        assert!(!n.has(Attr::Kind));
        // The whole context record compared: everything is needed.
        n.add_policy(
            &serde_json::json!({"==": {"left": {"Var": "context"}, "right": {"Record": {}}}}),
        );
        assert_eq!(n, Needs::ALL);
    }
}
