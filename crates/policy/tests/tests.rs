//! Integration tests for leash-policy, one binary grouped by theme.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod policy;
