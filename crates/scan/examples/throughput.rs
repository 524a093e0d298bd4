//! Measure scanning throughput on one core.
//!
//! ```text
//! cargo run --release -p leash-scan --example throughput -- DIR [EXTENSION] [--concat]
//! ```
//!
//! Reads every text file under `DIR` (optionally only `*.EXTENSION`) into
//! memory first, then times `Scanner::scan_report` over each file in turn on
//! the current thread (or, with `--concat`, over all of them joined into one
//! buffer). Prints MB/s, findings, keyword hits and windows.

use std::error::Error;
use std::path::{Path, PathBuf};
use std::time::Instant;

use leash_scan::{BINARY_SNIFF_LEN, ScanContext, Scanner};

fn collect(dir: &Path, ext: Option<&str>, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let path = entry.path();
        if kind.is_dir() {
            collect(&path, ext, out)?;
        } else if kind.is_file() && ext.is_none_or(|e| path.extension().is_some_and(|x| x == e)) {
            out.push(path);
        }
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn Error>> {
    let (flags, args): (Vec<String>, Vec<String>) =
        std::env::args().skip(1).partition(|a| a.starts_with("--"));
    let concat = flags.iter().any(|f| f == "--concat");
    let mut args = args.into_iter();
    let dir = PathBuf::from(
        args.next()
            .ok_or("usage: throughput DIR [EXTENSION] [--concat]")?,
    );
    let ext = args.next();
    let mut paths = Vec::new();
    collect(&dir, ext.as_deref(), &mut paths)?;
    paths.sort();

    let mut files = Vec::with_capacity(paths.len());
    for path in paths {
        let bytes = std::fs::read(&path)?;
        if !bytes[..bytes.len().min(BINARY_SNIFF_LEN)].contains(&0) {
            files.push((path.to_string_lossy().into_owned(), bytes));
        }
    }
    if concat {
        let mut all = Vec::new();
        for (_, bytes) in files.drain(..) {
            all.extend_from_slice(&bytes);
            all.push(b'\n');
        }
        files.push(("(all files)".to_string(), all));
    }
    let total: usize = files.iter().map(|(_, b)| b.len()).sum();

    let build = Instant::now();
    let scanner = Scanner::builtin();
    println!(
        "built {} rules in {:.1?}",
        scanner.rules().len(),
        build.elapsed()
    );

    let start = Instant::now();
    let (mut findings, mut hits, mut windows) = (0, 0, 0);
    let mut per_rule = std::collections::BTreeMap::<String, usize>::new();
    for (path, bytes) in &files {
        let report = scanner.scan_report(bytes, &ScanContext::new().with_path(path));
        findings += report.findings.len();
        hits += report.stats.keyword_hits;
        windows += report.stats.windows;
        for f in report.findings {
            *per_rule.entry(f.rule_id).or_default() += 1;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    #[allow(clippy::cast_precision_loss, reason = "a throughput figure")]
    let mb = total as f64 / 1e6;
    println!(
        "scanned {} buffer(s), {mb:.1} MB in {secs:.3} s: {:.0} MB/s on one core",
        files.len(),
        mb / secs
    );
    println!("{findings} findings, {hits} keyword hits, {windows} regex windows");
    for (rule, n) in per_rule {
        println!("  {rule}: {n}");
    }
    Ok(())
}
