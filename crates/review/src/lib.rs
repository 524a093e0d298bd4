//! Review: what Leash needs to prove control, as pure functions.
//!
//! - [`import`] parses exports of third-party credentials (OAuth app grants,
//!   static API keys, service-account keys) in JSON or CSV into inventory
//!   records, refusing a whole file when one line is bad;
//! - [`logs`] parses workload logs (JSON lines, OpenTelemetry log records)
//!   into usage events keyed by token id or fingerprint;
//! - [`report`] renders the controls-evidence report (JSON, Markdown, HTML
//!   with inline charts and no external assets).
//!
//! No IO and no async: the server and the CLI feed bytes in and store what
//! comes out.
#![forbid(unsafe_code)]

pub mod import;
pub mod logs;
pub mod report;
