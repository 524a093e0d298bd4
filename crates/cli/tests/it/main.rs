//! End-to-end tests: each starts the real `leash serve` binary on a
//! temporary data directory and talks to it over HTTP and through the CLI.
//! With `LEASH_TEST_SERVER_DATABASE=postgres` every server keeps its
//! registry in a fresh PostgreSQL database instead (on the server at
//! `LEASH_TEST_DATABASE_URL`), so the same suite checks both stores.

// Test helpers fail the test loudly on any unexpected error; that is their job.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod audit;
mod authz;
mod exposures;
mod federation;
mod harness;
mod interop;
mod lifecycle;
mod oauth;
#[path = "../../../store/tests/support/pg.rs"]
mod pg;
mod pgcred;
mod refusals;
mod replicas;
mod review;
mod revocation_stream;
mod scan;
mod ssf;
mod standards;
