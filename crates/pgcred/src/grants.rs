//! Scopes to PostgreSQL grants (pure: no IO).
//!
//! `pg:SCHEMA.TABLE:read` is `SELECT` on one table, `pg:SCHEMA.TABLE:write`
//! adds `INSERT, UPDATE, DELETE`; `pg:SCHEMA.*:read|write` is the same on
//! every table in the schema (`… ON ALL TABLES IN SCHEMA`). Every role also
//! gets `CONNECT` on the database and `USAGE` on each schema it names.
//!
//! Identifiers come from requests, so they are held to a strict pattern
//! (`[A-Za-z_][A-Za-z0-9_]*`, at most 63 bytes) and always double-quoted
//! in statements; nothing else from a scope reaches SQL text.

use std::collections::BTreeMap;

use leash_core::scope::Scope;

/// The scope type a PostgreSQL credential's scopes have.
pub const SCOPE_TYPE: &str = "pg";

/// Longest PostgreSQL identifier (`NAMEDATALEN - 1`).
pub const MAX_IDENT: usize = 63;

/// What a valid scope looks like, for error messages.
pub const SCOPE_HELP: &str = "a PostgreSQL credential's scopes look like `pg:SCHEMA.TABLE:read`, `pg:SCHEMA.TABLE:write`, `pg:SCHEMA.*:read` or `pg:SCHEMA.*:write`, where SCHEMA and TABLE are letters, digits and `_` (not starting with a digit, at most 63)";

/// Why a scope cannot become a grant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    #[error("scope `{scope}` cannot be a PostgreSQL grant: {why}; {SCOPE_HELP}")]
    Unmappable { scope: String, why: &'static str },
    #[error("a PostgreSQL credential needs at least one scope; {SCOPE_HELP}")]
    Empty,
}

/// Is `s` an identifier Leash accepts in a scope?
pub fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    first_ok && s.len() <= MAX_IDENT && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `name` as a double-quoted SQL identifier (inner quotes doubled). Names
/// from scopes never hold a quote ([`is_identifier`]); the database name
/// comes from the operator's URL and may.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Which tables of a schema a grant covers.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tables {
    /// One table (or view).
    One(String),
    /// Every table in the schema.
    All,
}

/// One grant: tables of a schema, read or read-write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub schema: String,
    pub tables: Tables,
    /// `INSERT, UPDATE, DELETE` besides `SELECT`.
    pub write: bool,
    /// The scope it came from (the first one, when several map to it).
    pub source: String,
}

impl Grant {
    /// The privileges this grant gives.
    pub fn privileges(&self) -> &'static str {
        if self.write {
            "SELECT, INSERT, UPDATE, DELETE"
        } else {
            "SELECT"
        }
    }
}

/// The grants a set of scopes maps to (one per table or schema, the wider
/// of read and write when both are asked for).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantPlan {
    grants: Vec<Grant>,
}

impl GrantPlan {
    /// Map scopes; every one must be a `pg:` scope that maps.
    ///
    /// # Errors
    /// [`GrantError`] naming the first scope that does not map, and what a
    /// valid one looks like.
    pub fn from_scopes(scopes: &[Scope]) -> Result<GrantPlan, GrantError> {
        if scopes.is_empty() {
            return Err(GrantError::Empty);
        }
        let mut map: BTreeMap<(String, Tables), (bool, String)> = BTreeMap::new();
        for s in scopes {
            let bad = |why| GrantError::Unmappable {
                scope: s.to_string(),
                why,
            };
            if s.resource_type() != SCOPE_TYPE {
                return Err(bad("its type is not `pg`"));
            }
            let write = match s.action() {
                "read" => false,
                "write" => true,
                _ => return Err(bad("its action is neither `read` nor `write`")),
            };
            let id = s
                .id_pattern()
                .ok_or_else(|| bad("it names no SCHEMA.TABLE"))?;
            let (schema, table) = id
                .split_once('.')
                .ok_or_else(|| bad("its id is not SCHEMA.TABLE"))?;
            if !is_identifier(schema) {
                return Err(bad("its schema is not a plain identifier"));
            }
            let tables = if table == "*" {
                Tables::All
            } else if is_identifier(table) {
                Tables::One(table.to_owned())
            } else {
                return Err(bad(
                    "its table is neither a plain identifier nor `*` (globs other than a whole `*` are not grants)",
                ));
            };
            let w = map
                .entry((schema.to_owned(), tables))
                .or_insert_with(|| (false, s.to_string()));
            w.0 |= write;
        }
        Ok(GrantPlan {
            grants: map
                .into_iter()
                .map(|((schema, tables), (write, source))| Grant {
                    schema,
                    tables,
                    write,
                    source,
                })
                .collect(),
        })
    }

    /// The grants, ordered by schema then table (`*` last).
    pub fn grants(&self) -> &[Grant] {
        &self.grants
    }

    /// The schemas named, each once, in order.
    pub fn schemas(&self) -> Vec<&str> {
        let mut out: Vec<&str> = self.grants.iter().map(|g| g.schema.as_str()).collect();
        out.dedup();
        out
    }

    /// The `GRANT` statements for `role` in `database`: CONNECT, USAGE on
    /// each schema, then each table grant. Every name is quoted.
    pub fn statements(&self, role: &str, database: &str) -> Vec<String> {
        let role = quote_ident(role);
        let mut out = vec![format!(
            "GRANT CONNECT ON DATABASE {} TO {role}",
            quote_ident(database)
        )];
        for s in self.schemas() {
            out.push(format!(
                "GRANT USAGE ON SCHEMA {} TO {role}",
                quote_ident(s)
            ));
        }
        for g in &self.grants {
            let on = match &g.tables {
                Tables::One(t) => format!("TABLE {}.{}", quote_ident(&g.schema), quote_ident(t)),
                Tables::All => format!("ALL TABLES IN SCHEMA {}", quote_ident(&g.schema)),
            };
            out.push(format!("GRANT {} ON {on} TO {role}", g.privileges()));
        }
        out
    }
}

/// The role for a token: `leash_` and 20 hex characters of the SHA-256 of
/// the token id (lower case, so it needs no quoting in psql, and unique
/// enough: 80 bits).
pub fn role_name(token_id: &str) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token_id.as_bytes());
    format!("leash_{}", &hex::encode(d.as_ref())[..20])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn scopes(list: &[&str]) -> Vec<Scope> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn read_write_and_schema_scopes_map_to_grants() {
        let plan = GrantPlan::from_scopes(&scopes(&[
            "pg:public.orders:read",
            "pg:public.orders:write",
            "pg:sales.*:read",
            "pg:public.items:read",
        ]))
        .unwrap();
        assert_eq!(
            plan.statements("leash_ab", "shop"),
            vec![
                r#"GRANT CONNECT ON DATABASE "shop" TO "leash_ab""#,
                r#"GRANT USAGE ON SCHEMA "public" TO "leash_ab""#,
                r#"GRANT USAGE ON SCHEMA "sales" TO "leash_ab""#,
                r#"GRANT SELECT ON TABLE "public"."items" TO "leash_ab""#,
                r#"GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE "public"."orders" TO "leash_ab""#,
                r#"GRANT SELECT ON ALL TABLES IN SCHEMA "sales" TO "leash_ab""#,
            ]
        );
    }

    #[test]
    fn scopes_that_cannot_be_grants_are_refused_with_the_valid_shape() {
        for bad in [
            "pg:bad;name:read",
            "pg:public.orders;drop:read",
            "pg:public:read",
            "pg:read",
            "pg:public.ord*:read",
            "pg:public.orders:admin",
            "pg:9lives.x:read",
            "tickets:read",
            "pg:public.\u{e9}t\u{e9}:read",
        ] {
            let Ok(s) = bad.parse::<Scope>() else {
                continue; // refused already by the scope grammar
            };
            let err = GrantPlan::from_scopes(&[s]).unwrap_err().to_string();
            assert!(err.contains("pg:SCHEMA.TABLE:read"), "{bad}: {err}");
            assert!(err.contains(bad), "{bad}: {err}");
        }
        assert_eq!(GrantPlan::from_scopes(&[]), Err(GrantError::Empty));
    }

    #[test]
    fn identifiers_are_strict_and_quoting_doubles_quotes() {
        assert!(is_identifier("orders_2026"));
        assert!(is_identifier("_x"));
        for bad in ["", "1x", "a-b", "a b", "a\"b", "a.b", &"a".repeat(64)] {
            assert!(!is_identifier(bad), "{bad}");
        }
        assert_eq!(quote_ident(r#"we"ird"#), r#""we""ird""#);
    }

    #[test]
    fn role_names_are_stable_short_and_plain() {
        let r = role_name("tok_0AbCdEfGhIjKlMnOpQrStU");
        assert_eq!(r, role_name("tok_0AbCdEfGhIjKlMnOpQrStU"));
        assert_ne!(r, role_name("tok_0AbCdEfGhIjKlMnOpQrStV"));
        assert_eq!(r.len(), 26);
        assert!(r.starts_with("leash_") && is_identifier(&r));
    }
}
