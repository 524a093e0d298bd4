//! The Leash Cedar schema, parsed once per process, and the entity type
//! names and action ids that every decision reuses.

use std::str::FromStr;
use std::sync::OnceLock;

use cedar_policy::{EntityId, EntityTypeName, EntityUid, Validator};
use leash_core::scope::ActionClass;

use crate::PolicyError;

/// The schema text (Cedar schema syntax, namespace `Leash`).
pub const SCHEMA: &str = include_str!("leash.cedarschema");

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
    fn the_schema_parses_and_declares_three_actions() {
        let c = compiled().unwrap();
        assert_eq!(c.schema().actions().count(), 3);
        assert_eq!(
            c.action(ActionClass::Write).to_string(),
            r#"Leash::Action::"write""#
        );
        assert_eq!(c.schema().entity_types().count(), 6);
    }
}
