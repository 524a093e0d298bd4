//! End-to-end tests: each starts the real `leash serve` binary on a
//! temporary data directory and talks to it over HTTP and through the CLI.

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
mod refusals;
mod review;
mod scan;
mod standards;
