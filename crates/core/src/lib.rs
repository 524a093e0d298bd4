//! Leash's domain: owners, workloads, workflows, runs and the tokens minted
//! for them, with the rules that keep every token under control.
//!
//! This crate is pure — no IO, no async, no clock. Callers pass the current
//! time in (as Unix milliseconds) so every rule is deterministic and easy to
//! test. Storage, HTTP and the CLI are thin edges around it.
//!
//! The key design choice: issuance is a pure function of the registry state
//! ([`issuance::check_mint`]), so the same rule runs in the HTTP handler (for
//! a fast, precise refusal) and again in the store's single writer (so that a
//! run that ended a microsecond earlier can never receive a token).
//!
//! ```
//! use leash_core::scope::Scope;
//!
//! let ceiling: Scope = "repo:acme/*:write".parse().unwrap();
//! let wanted: Scope = "repo:acme/api:write".parse().unwrap();
//! assert!(ceiling.covers(&wanted));
//! assert!(wanted.is_write());
//! assert!(!ceiling.covers(&"repo:other/api:write".parse().unwrap()));
//! ```

pub mod audit;
pub mod duration;
pub mod issuance;
pub mod model;
pub mod scope;

pub use model::*;
