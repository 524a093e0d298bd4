//! Rendering a [`Report`]: JSON and SARIF 2.1.0, as values for the CLI to
//! print. Pure functions, no IO. Neither output ever holds a raw secret:
//! only the redacted form (`ghp_…(40 chars)`) and its SHA-256.
//!
//! # JSON (`leash scan --format json`)
//!
//! ```text
//! {
//!   "findings": [{
//!     "rule_id": "github-pat",
//!     "kind": "third_party",            // or "leash_opaque", "leash_jwt"
//!     "description": "GitHub personal access token (classic, checksum valid)",
//!     "location": {
//!       "source": "git",                // or "file", "stdin"
//!       "path": "config/ci.env",        // as walked; "stdin"; path in the repository
//!       "line": 3, "column": 14,        // 1-based; byte column; 0 for path-only rules
//!       "commit": "9fceb02…",           // git only: the commit that introduced the blob
//!       "author": {"name": "…", "email": "…"},   // git only
//!       "time": "2024-05-01T12:00:00+02:00"      // git only: author time, RFC 3339
//!     },
//!     "redacted": "ghp_…(40 chars)",
//!     "fingerprint": "<hex sha256 of the secret>",
//!     "entropy": 5.2
//!   }],
//!   "stats": {
//!     "items": 12, "bytes": 34567, "skipped_binary": 1,
//!     "commits": 40,                    // git only
//!     "errors": [{"path": "…", "reason": "…"}]
//!   },
//!   "secrets_found": 1
//! }
//! ```
//!
//! # SARIF
//!
//! One run of tool `leash-scan`, its `rules` the rules that fired; one
//! result per finding with `level: "error"`, the redacted secret in
//! `message.text`, the path as a relative URI with forward slashes,
//! `region.startLine`/`startColumn` (columns in code points,
//! `columnKind: "unicodeCodePoints"`), `partialFingerprints."secretSha256/v1"`,
//! and, for git, the commit, author and time in `properties`.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::{Location, Report, Source};

/// The SARIF schema URI written in `$schema`.
pub const SARIF_SCHEMA: &str = "https://json.schemastore.org/sarif-2.1.0.json";
/// The key of the secret's SHA-256 in SARIF `partialFingerprints`.
pub const SARIF_FINGERPRINT_KEY: &str = "secretSha256/v1";

/// The report as JSON, in the shape documented on this module.
pub fn to_json(report: &Report) -> Value {
    let findings: Vec<Value> = report
        .findings
        .iter()
        .map(|f| {
            json!({
                "rule_id": f.finding.rule_id,
                "kind": f.finding.kind,
                "description": f.finding.description,
                "location": location_json(&f.location),
                "redacted": f.finding.redacted,
                "fingerprint": f.finding.fingerprint,
                "entropy": f.finding.entropy,
            })
        })
        .collect();
    let mut stats = Map::new();
    stats.insert("items".into(), json!(report.stats.items));
    stats.insert("bytes".into(), json!(report.stats.bytes));
    stats.insert("skipped_binary".into(), json!(report.stats.skipped_binary));
    if let Some(commits) = report.stats.commits {
        stats.insert("commits".into(), json!(commits));
    }
    stats.insert("errors".into(), json!(report.stats.errors));
    json!({
        "findings": findings,
        "stats": stats,
        "secrets_found": report.findings.len(),
    })
}

fn location_json(location: &Location) -> Value {
    let mut out = Map::new();
    out.insert("source".into(), json!(location.source));
    out.insert("path".into(), json!(location.path));
    out.insert("line".into(), json!(location.line));
    out.insert("column".into(), json!(location.column));
    if let Some(commit) = &location.commit {
        out.insert("commit".into(), json!(commit.id));
        out.insert(
            "author".into(),
            json!({"name": commit.author_name, "email": commit.author_email}),
        );
        out.insert("time".into(), json!(commit.time));
    }
    Value::Object(out)
}

/// The report as a SARIF 2.1.0 log with one run.
pub fn to_sarif(report: &Report) -> Value {
    // Rules that fired, by id, each with the index results refer to.
    let mut fired: BTreeMap<&str, &str> = BTreeMap::new();
    for f in &report.findings {
        fired.insert(&f.finding.rule_id, &f.finding.description);
    }
    let index: BTreeMap<&str, usize> = fired.keys().enumerate().map(|(i, id)| (*id, i)).collect();
    let rules: Vec<Value> = fired
        .iter()
        .map(|(id, description)| {
            json!({
                "id": id,
                "shortDescription": {"text": description},
            })
        })
        .collect();
    let results: Vec<Value> = report
        .findings
        .iter()
        .map(|f| {
            let location = &f.location;
            let mut physical = Map::new();
            physical.insert(
                "artifactLocation".into(),
                json!({"uri": artifact_uri(location)}),
            );
            if location.line > 0 {
                physical.insert(
                    "region".into(),
                    json!({
                        "startLine": location.line,
                        "startColumn": location.char_column.max(1),
                    }),
                );
            }
            let mut properties = Map::new();
            properties.insert("kind".into(), json!(f.finding.kind));
            properties.insert("source".into(), json!(location.source));
            if let Some(commit) = &location.commit {
                properties.insert("commit".into(), json!(commit.id));
                properties.insert("author".into(), json!(commit.author_name));
                properties.insert("authorEmail".into(), json!(commit.author_email));
                properties.insert("time".into(), json!(commit.time));
            }
            json!({
                "ruleId": f.finding.rule_id,
                "ruleIndex": index.get(f.finding.rule_id.as_str()),
                "level": "error",
                "message": {
                    "text": format!("{}: {}", f.finding.description, f.finding.redacted),
                },
                "locations": [{"physicalLocation": physical}],
                "partialFingerprints": {SARIF_FINGERPRINT_KEY: f.finding.fingerprint},
                "properties": properties,
            })
        })
        .collect();
    json!({
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {
                "driver": {
                    "name": "leash-scan",
                    "version": env!("CARGO_PKG_VERSION"),
                    "rules": rules,
                },
            },
            "columnKind": "unicodeCodePoints",
            "results": results,
        }],
    })
}

/// The location's path as a SARIF URI: relative with forward slashes
/// (`./` dropped), `file://` for absolute paths, percent-encoded.
pub fn artifact_uri(location: &Location) -> String {
    let mut path = location.path.clone();
    if location.source == Source::File && std::path::MAIN_SEPARATOR != '/' {
        path = path.replace(std::path::MAIN_SEPARATOR, "/");
    }
    let mut rest = path.as_str();
    while let Some(stripped) = rest.strip_prefix("./") {
        rest = stripped;
    }
    let encoded = percent_encode(rest);
    if location.source == Source::File && rest.starts_with('/') {
        format!("file://{encoded}")
    } else {
        encoded
    }
}

/// Percent-encode everything but unreserved characters, `/` and the
/// sub-delimiters that are safe in a path.
fn percent_encode(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for &b in path.as_bytes() {
        let keep = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'/'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b'@'
            );
        if keep {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(source: Source, path: &str) -> Location {
        Location {
            source,
            path: path.to_owned(),
            line: 1,
            column: 1,
            char_column: 1,
            commit: None,
        }
    }

    #[test]
    fn uris_are_relative_with_forward_slashes_and_encoded() {
        assert_eq!(
            artifact_uri(&at(Source::File, "./src/a b.env")),
            "src/a%20b.env"
        );
        assert_eq!(artifact_uri(&at(Source::File, "/etc/x")), "file:///etc/x");
        assert_eq!(
            artifact_uri(&at(Source::Git, "dir/ü#.txt")),
            "dir/%C3%BC%23.txt"
        );
        assert_eq!(artifact_uri(&at(Source::Stdin, "stdin")), "stdin");
    }
}
