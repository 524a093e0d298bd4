//! Integration tests for leash-scan-sources, one binary grouped by theme.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

mod chunks;
mod git;
mod output;
mod reader;
mod walk;

use std::path::Path;
use std::sync::OnceLock;

use leash_scan::Scanner;
use leash_scan_sources::{Options, Report, SourceScanner};

/// One scanner for all tests: building it compiles every rule.
pub fn scanner() -> &'static Scanner {
    static SCANNER: OnceLock<Scanner> = OnceLock::new();
    SCANNER.get_or_init(Scanner::builtin)
}

pub fn sources() -> SourceScanner<'static> {
    SourceScanner::new(scanner())
}

pub fn sources_with(options: Options) -> SourceScanner<'static> {
    SourceScanner::new(scanner()).with_options(options)
}

/// A well-formed, high-entropy AWS access key id, different for each seed.
pub fn aws_key(seed: u64) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut key = String::from("AKIA");
    for _ in 0..16 {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        key.push(char::from(ALPHABET[(state >> 59) as usize]));
    }
    key
}

/// A PEM private key block (from leash-scan's own examples): a multi-line
/// finding whose rule looks up to 32 KiB forward.
pub const PRIVATE_KEY: &str = "-----BEGIN PRIVATE KEY-----\nNkLC7jbd1zyw7jqzb5ALwyRx6Cq3xPfv8KLeNNaY6tSK8zFhS8cDpdKWV8r2dKuy\nAaxW5XJhg/l16xc5gmUvaJIUnH38sIheI28+4MpH3D204S1CmJ7AUl9SCxW8xUmr\nyqP/16RzLittyZc8EAC9B12FqHvKBIc3phNz4ymzRxzijv6xStCwnMnZCAFHrGj9\nH2l/5i3Cj3V94LxbFzD6MCi/BOophuO6nLtT8i1pqSfWC/UHx3ryXqecq7eAxBhp\nU4p9unmUcWpZ7lCAzz+kLcA2jk2OiTo2kW/YBcRQfmHl0/9jPiYftp0VrDQxK4Fh\no0YlBGgk0C030nkDXkaJvI45xHspEo7Eo101PzYo0F3b+T7azgDGBwt2wVqCwytI\n2AsSlI0fdGo4MZlYEoMGPcJdeRDI/YNQIzCfQ2xe5ma/bvOe9PdynwSk8Y8iu+h8\npmLr3wghTIyn42hPkpcp/7h/rBk6ivhpZjk164NtSivIyEPHj3AGpHmQymbr8U83\nD/XA7l7ZO5TTtg==\n-----END PRIVATE KEY-----\n";

/// Write `contents` to `dir/rel`, creating parent directories.
pub fn write(dir: &Path, rel: &str, contents: impl AsRef<[u8]>) {
    let path = dir.join(rel);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(path, contents).unwrap();
}

/// The raw secrets found, sorted.
pub fn secrets(report: &Report) -> Vec<String> {
    let mut out: Vec<String> = report
        .findings
        .iter()
        .map(|f| f.finding.secret.expose().to_owned())
        .collect();
    out.sort();
    out
}

#[test]
fn synthetic_secrets_are_findings() {
    for seed in 0..20 {
        let key = aws_key(seed);
        let found = scanner().scan(format!("id = {key}\n").as_bytes(), &Default::default());
        assert_eq!(found.len(), 1, "{key}");
        assert_eq!(found[0].rule_id, "aws-access-key-id");
    }
    let found = scanner().scan(PRIVATE_KEY.as_bytes(), &Default::default());
    assert_eq!(found.len(), 1);
}
