//! AuthZEN action names, their classes, and scope coverage.
//!
//! AuthZEN action names are free strings. Leash matches them the way scopes
//! are written: ASCII case does not matter (a scope's type and action are
//! lowercased when parsed), and the class comes from
//! [`leash_core::scope::classify_action`], so an unknown verb is a write.

use std::borrow::Cow;

use leash_core::scope::{ActionClass, Scope, classify_action};

/// The action name as scopes and policies see it: ASCII-lowercased.
pub fn normalize_action(name: &str) -> Cow<'_, str> {
    lowercase(name)
}

/// The class of an AuthZEN action name: read verbs are read, admin verbs
/// admin, anything else write. Agrees with the class of a scope whose action
/// is `name`.
pub fn action_class(name: &str) -> ActionClass {
    classify_action(&lowercase(name))
}

/// The Cedar action id (`Leash::Action::"…"`) for a class.
pub fn class_name(class: ActionClass) -> &'static str {
    match class {
        ActionClass::Read => "read",
        ActionClass::Write => "write",
        ActionClass::Admin => "admin",
    }
}

/// The first of `token_scopes` that covers the action named `action_name`
/// on the resource `resource_type` / `resource_id`, or `None` when none does
/// (the request must then be denied).
///
/// A scope `TYPE[:ID]:ACTION` covers an action named ACTION on a resource of
/// that type, and, when the scope names an id pattern, only on resources
/// whose id the pattern matches (`*` globs). A scope action `*` covers every
/// action. Type and action compare ASCII case-insensitively.
///
/// ```
/// use leash_core::scope::Scope;
/// use leash_policy::scope_covers;
///
/// let scopes: Vec<Scope> = vec!["tickets:read".parse()?, "repo:acme/*:write".parse()?];
/// let hit = scope_covers(&scopes, "write", "repo", Some("acme/api"));
/// assert_eq!(hit.map(|s| s.to_string()).as_deref(), Some("repo:acme/*:write"));
/// assert!(scope_covers(&scopes, "write", "repo", Some("evil/api")).is_none());
/// assert!(scope_covers(&scopes, "delete", "tickets", Some("42")).is_none());
/// # Ok::<(), leash_core::scope::ScopeError>(())
/// ```
pub fn scope_covers<'a>(
    token_scopes: &'a [Scope],
    action_name: &str,
    resource_type: &str,
    resource_id: Option<&str>,
) -> Option<&'a Scope> {
    let action = lowercase(action_name);
    let resource_type = lowercase(resource_type);
    token_scopes
        .iter()
        .find(|s| s.allows(&resource_type, resource_id, &action))
}

/// The scopes in `wanted` that no scope of `ceiling` covers
/// ([`Scope::covers`], the rule [`leash_core::issuance::check_mint`]
/// applies), in request order: `context.above_ceiling` of an issuance.
/// An empty ceiling covers nothing.
///
/// ```
/// use leash_core::scope::Scope;
/// use leash_policy::scopes_above_ceiling;
///
/// let ceiling: Vec<Scope> = vec!["repo:acme/*:write".parse()?];
/// let wanted: Vec<Scope> = vec!["repo:acme/api:write".parse()?, "repo:evil/x:write".parse()?];
/// let above = scopes_above_ceiling(&ceiling, &wanted);
/// assert_eq!(above, vec!["repo:evil/x:write".parse::<Scope>()?]);
/// # Ok::<(), leash_core::scope::ScopeError>(())
/// ```
pub fn scopes_above_ceiling(ceiling: &[Scope], wanted: &[Scope]) -> Vec<Scope> {
    wanted
        .iter()
        .filter(|w| !ceiling.iter().any(|c| c.covers(w)))
        .cloned()
        .collect()
}

fn lowercase(s: &str) -> Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(s.to_ascii_lowercase())
    } else {
        Cow::Borrowed(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn scopes(list: &[&str]) -> Vec<Scope> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn classes() {
        assert_eq!(action_class("read"), ActionClass::Read);
        assert_eq!(action_class("List"), ActionClass::Read);
        assert_eq!(action_class("push"), ActionClass::Write);
        assert_eq!(action_class("delete"), ActionClass::Admin);
        assert_eq!(action_class("*"), ActionClass::Admin);
        assert_eq!(action_class(""), ActionClass::Write);
    }

    #[test]
    fn coverage_follows_the_scope_grammar() {
        let s = scopes(&["tickets:read", "repo:acme/*:write", "db:*"]);
        assert_eq!(
            scope_covers(&s, "read", "tickets", Some("42")).map(ToString::to_string),
            Some("tickets:read".into())
        );
        assert!(scope_covers(&s, "READ", "Tickets", None).is_some());
        assert!(scope_covers(&s, "write", "tickets", Some("42")).is_none());
        assert!(scope_covers(&s, "write", "repo", Some("acme/api")).is_some());
        assert!(scope_covers(&s, "write", "repo", None).is_none());
        assert!(scope_covers(&s, "read", "repo", Some("acme/api")).is_none());
        assert!(scope_covers(&s, "drop", "db", Some("main")).is_some());
        assert!(scope_covers(&[], "read", "tickets", None).is_none());
    }

    #[test]
    fn above_ceiling_agrees_with_the_mint_rule() {
        let ceiling = scopes(&["tickets:read", "repo:acme/*:write"]);
        let wanted = scopes(&["tickets:read", "repo:evil/x:write", "repo:acme/api:admin"]);
        let above = scopes_above_ceiling(&ceiling, &wanted);
        assert_eq!(above, scopes(&["repo:evil/x:write", "repo:acme/api:admin"]));
        assert_eq!(
            above.first(),
            leash_core::scope::first_uncovered(&ceiling, &wanted)
        );
        assert!(scopes_above_ceiling(&ceiling, &scopes(&["tickets:read"])).is_empty());
        assert_eq!(scopes_above_ceiling(&[], &wanted), wanted);
    }

    proptest! {
        /// A request action is classified exactly as a scope with that
        /// action is by leash_core::scope.
        #[test]
        fn classification_agrees_with_scopes(
            name in prop_oneof![
                "[A-Za-z0-9_.-]{1,12}",
                prop::sample::select(vec![
                    "read", "list", "get", "view", "describe", "query", "search", "watch",
                    "fetch", "admin", "manage", "owner", "delete", "grant", "write", "push",
                ]).prop_map(String::from),
                "(READ|Read|LiSt|GET|Delete|ADMIN|Grant)",
            ]
        ) {
            let scope: Scope = format!("t:{name}").parse().unwrap();
            prop_assert_eq!(action_class(&name), scope.class());
            prop_assert_eq!(action_class(&name), classify_action(&name.to_ascii_lowercase()));
            prop_assert_eq!(
                scope_covers(std::slice::from_ref(&scope), &name, "t", None).is_some(),
                true
            );
        }

        #[test]
        fn any_string_is_classified_like_its_lowercase(name in ".{0,20}") {
            prop_assert_eq!(action_class(&name), classify_action(&name.to_ascii_lowercase()));
        }
    }
}
