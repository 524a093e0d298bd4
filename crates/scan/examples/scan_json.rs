//! Scan files with the built-in rules and print one JSON line per finding:
//! `{"file": …, "line": …, "rule": …}`. No secret, redacted or not, is
//! printed: this is what `scripts/compare-scanners` reads.
//!
//! ```text
//! cargo run --release -p leash-scan --example scan_json -- [--root=DIR] [--files=LIST] [--leash-jwt-kid=KID] [FILE…]
//! ```
//!
//! Files come from the arguments and from `LIST` (one path a line); with
//! `--root`, relative paths are taken from `DIR` and printed as given. With
//! `--leash-jwt-kid`, a JWT whose header names that `kid` counts as a Leash
//! token (a stand-in for the key ring, for the test corpus). A last line on
//! standard error gives files, bytes and seconds.

use std::error::Error;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use leash_scan::{ScanContext, Scanner};

/// Does the JWT's header name `kid`?
fn header_names_kid(token: &str, kid: &str) -> bool {
    let header = token.split('.').next().unwrap_or_default();
    URL_SAFE_NO_PAD
        .decode(header)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .is_some_and(|v| v.get("kid").and_then(|k| k.as_str()) == Some(kid))
}

fn main() -> Result<(), Box<dyn Error>> {
    let (flags, mut files): (Vec<String>, Vec<String>) =
        std::env::args().skip(1).partition(|a| a.starts_with("--"));
    let flag = |name: &str| {
        flags
            .iter()
            .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
    };
    if let Some(list) = flag("--files") {
        files.extend(std::fs::read_to_string(list)?.lines().map(str::to_string));
    }
    let root = flag("--root").map(PathBuf::from);
    let kid = flag("--leash-jwt-kid").map(str::to_string);
    let check = |token: &str| kid.as_deref().is_some_and(|k| header_names_kid(token, k));

    let start = Instant::now();
    let scanner = Scanner::builtin();
    let out = std::io::stdout();
    let mut out = std::io::BufWriter::new(out.lock());
    let mut bytes = 0;
    for file in &files {
        let path = root
            .as_ref()
            .map_or_else(|| PathBuf::from(file), |r| r.join(file));
        let text = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        bytes += text.len();
        let mut ctx = ScanContext::new().with_path(file);
        if kid.is_some() {
            ctx = ctx.with_leash_jwt_check(&check);
        }
        for finding in scanner.scan(&text, &ctx) {
            let line =
                serde_json::json!({"file": file, "line": finding.line, "rule": finding.rule_id});
            writeln!(out, "{line}")?;
        }
    }
    out.flush()?;
    eprintln!(
        "{}",
        serde_json::json!({"files": files.len(), "bytes": bytes, "seconds": start.elapsed().as_secs_f64()})
    );
    Ok(())
}
