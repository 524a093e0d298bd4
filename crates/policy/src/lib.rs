//! Policy for Leash: the Cedar schema, the shipped policies, the decision
//! behind the OpenID AuthZEN endpoints, and the issuance guardrails checked
//! whenever a token is minted or exchanged.
//!
//! This crate is pure: no network, no async, no clock (the caller passes
//! `now`). The server finds the token, checks it is active, bound to the
//! presenting workload and scoped for the request ([`scope_covers`]), then
//! asks [`PolicyEngine::decide`]. Before it issues a token it runs the
//! built-in rules ([`leash_core::issuance::check_mint`]), then asks
//! [`PolicyEngine::decide_issuance`]. `leash policy test FILE` runs the same
//! steps over sample requests and issuances ([`samples`]).
//!
//! One policy set holds both kinds of policies, so operators manage one
//! directory; the action tells them apart.
//!
//! # Shape of a request decision
//!
//! * **Principal** is the [`leash_core::Workload`] presenting the token
//!   (`Leash::Workload::"triage-bot"`), the AuthZEN subject. The workload is
//!   the stable, named thing policies are written about (`principal.environment`,
//!   `principal in Leash::Owner::"team-ai"`); the token is per task and is in
//!   the context as `context.token` (an entity: `context.token.has_write`,
//!   `context.token.break_glass`, …).
//! * **Action** is one of three, `Leash::Action::"read"`, `"write"` or
//!   `"admin"`: the class of the AuthZEN action name, classified like scopes
//!   ([`leash_core::scope::classify_action`]: read verbs read, admin verbs
//!   admin, anything else write). The lowercased name is `context.action`.
//!   Three fixed actions keep the schema closed (strict validation works)
//!   and need no action hierarchy at evaluation time.
//! * **Resource** is `Leash::Resource::"TYPE:ID"` with `type`, `id` and
//!   `environment` (from the AuthZEN resource property `environment`,
//!   normalized to dev / stage / prod, `""` when absent).
//! * **Context** also carries `tool?`, `run_state` (`running`, `ended` or
//!   `none`), `workflow_tools?` (present when the token has a workflow),
//!   `workflow?`, `run?`, `token_id` and `now`.
//!
//! # Shape of an issuance decision
//!
//! * **Action** is `Leash::Action::"issue"`.
//! * **Principal** and **resource** are both the Workload the token is for
//!   (`principal.environment`, `principal in Leash::Owner::"team-ai"`).
//!   Using the Workload as resource, rather than a new entity type, keeps
//!   the schema small and lets `resource.environment` mean the same
//!   environment for every action.
//! * **Context** ([`IssuanceInput`]) is what is asked for: `kind` (`mint`,
//!   `exchange`, `client_credentials`, `federated`, `break_glass`),
//!   `scopes`, `has_write`, `ttl_secs`, `above_ceiling` (the requested
//!   scopes the workload's ceiling does not cover, computed by
//!   [`scopes_above_ceiling`]: wildcard coverage is not expressible in
//!   Cedar), `owner_status`, `run_state`, `parent_environment?` and
//!   `actor_environment?` (exchange and delegation), `justified` and `now`.
//!
//! The built-in rules stay a floor: a policy can refuse more, never allow
//! what they refuse. The shipped issuance forbids repeat the floor in
//! Cedar (`issue-owner-active`, `issue-scope-ceiling`,
//! `issue-ttl-caps-{dev,stage,prod}`) so an operator sees, and can tighten,
//! the whole rule set in one place, and add `issue-environment-isolation`
//! (no exchange across environments).
//!
//! A policy that names no action applies to all four; if it reads request
//! attributes (`context.token`, `resource.type`, …) it does not validate
//! and must say `action in [Leash::Action::"read", Leash::Action::"write",
//! Leash::Action::"admin"]` (the diagnostic says so).
//!
//! See [`SCHEMA`] for the full schema.
//!
//! # Speed
//!
//! The schema is parsed once per process; entity type names and action ids
//! are built once. When a set is loaded, Leash splits it by the actions
//! each policy's scope can match (a request is never evaluated against
//! `action == Leash::Action::"issue"` policies, nor an issuance against
//! request-only ones: such a policy cannot apply, so this changes no
//! outcome), and notes every attribute name each part reads (`.a` or
//! `has a`). A decision then builds only those attributes, and only the
//! entities left with any (the principal Workload, which carries its owner
//! as parent for `in`, and for a request the Resource, always). Strict
//! validation only admits `e.a` where `e`'s type declares `a`, so this is
//! unobservable to policies. With the defaults that is two small entities
//! and three context fields for a request, one entity and four context
//! fields (five with a parent token) for an issuance. No JSON, no parsing
//! and no per-request schema validation (the shapes are fixed by this crate
//! and a test checks them against the schema); the engine reads the active
//! set with one atomic load. `benches/decide.rs` measures it.
//!
//! # Policy sets
//!
//! A [`PolicySet`] is built from named sources (the shipped
//! [`DEFAULT_POLICIES`], a directory of `*.cedar` files, text posted to the
//! API), validated against the schema in strict mode, and only then exists.
//! Each policy has an `@id` and a `@reason` whose `{placeholders}`
//! ([`PLACEHOLDERS`]) are filled from the request, so a denial reads e.g.
//! "production resources only from production workloads: workload
//! `triage-bot` is dev; …". [`PolicyEngine::replace`], [`PolicyEngine::update`]
//! and [`PolicyEngine::reload_from_dir`] swap sets atomically; a refused set
//! leaves the old one active.
//!
//! # Example
//!
//! ```
//! use leash_core::{Environment, Owner, OwnerKind, OwnerStatus, Token, TokenFormat, Workload};
//! use leash_core::scope::Scope;
//! use leash_policy::{
//!     DecisionInput, IssuanceInput, IssuanceKind, PolicyEngine, ReasonKind, ResourceRef,
//!     scope_covers, scopes_above_ceiling,
//! };
//!
//! let owner = Owner {
//!     id: 1, name: "team-ai".into(), email: "ai@example.com".into(), kind: OwnerKind::Team,
//!     business_owner: true, status: OwnerStatus::Active, created_at: 0, offboarded_at: None,
//! };
//! let workload = Workload {
//!     id: 2, name: "triage-bot".into(), owner_id: 1, identity: None,
//!     environment: Environment::Dev, scope_ceiling: vec![], created_at: 0,
//! };
//! let token = Token {
//!     id: "tok-1".into(), format: TokenFormat::Jwt, owner_id: 1, workload_id: 2,
//!     run_id: None, workflow_id: None, scopes: vec!["repo:acme/*:write".parse()?],
//!     audience: vec![], issued_at: 0, expires_at: i64::MAX, parent_id: None,
//!     justification: None, revocation: None, depth: 0, act: None, may_act: None, cnf_jkt: None,
//!     break_glass: false,
//! };
//! let props = serde_json::json!({"environment": "prod"});
//! let resource = ResourceRef::with_properties("repo", "acme/api", Some(&props));
//!
//! // The server's own checks come first.
//! assert!(scope_covers(&token.scopes, "write", "repo", Some("acme/api")).is_some());
//!
//! let engine = PolicyEngine::with_defaults()?;
//! let decision = engine.decide(&DecisionInput {
//!     owner: &owner, workload: &workload, workflow: None, run: None, token: &token,
//!     break_glass: false, action: "write", resource, tool: None, now: 0,
//! });
//! assert!(!decision.allow);
//! assert_eq!(decision.reasons[0].kind, ReasonKind::Forbid);
//! assert_eq!(decision.reasons[0].policy.as_deref(), Some("prod-only-from-prod"));
//! assert!(decision.reasons[0].message.contains("workload `triage-bot` is dev"));
//!
//! // Issuance: after leash_core::issuance::check_mint has passed.
//! let scopes: Vec<Scope> = vec!["repo:acme/api:write".parse()?];
//! let above = scopes_above_ceiling(&workload.scope_ceiling, &scopes);
//! let decision = engine.decide_issuance(&IssuanceInput {
//!     owner: &owner, workload: &workload, kind: IssuanceKind::Exchange,
//!     scopes: &scopes, ttl_secs: 600, above_ceiling: &above, run: None, run_id: None,
//!     parent_environment: Some(Environment::Prod), actor_environment: None,
//!     justified: true, now: 0,
//! });
//! assert!(!decision.allow);
//! let ids: Vec<_> = decision.reasons.iter().filter_map(|r| r.policy.as_deref()).collect();
//! assert_eq!(ids, ["issue-scope-ceiling", "issue-environment-isolation"]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod action;
mod decision;
mod engine;
mod error;
mod input;
mod memo;
mod policies;
mod reason;
pub mod samples;
mod schema;

pub use action::{action_class, class_name, normalize_action, scope_covers, scopes_above_ceiling};
pub use decision::{AuthzenContext, Decision, Reason, ReasonKind};
pub use engine::PolicyEngine;
pub use error::{Diagnostic, PolicyError};
pub use input::{DecisionInput, IssuanceInput, IssuanceKind, ResourceRef, normalize_environment};
pub use policies::{DEFAULT_POLICIES, MAX_SOURCE_LEN, PolicySet, PolicySource};
pub use reason::PLACEHOLDERS;
pub use schema::{SCHEMA, cedar_schema};
