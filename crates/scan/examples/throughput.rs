//! Measure scanning throughput on one core.
//!
//! ```text
//! cargo run --release -p leash-scan --example throughput -- DIR [EXTENSION] [--concat] [--runs=N]
//! cargo run --release -p leash-scan --example throughput -- --files=LIST [--runs=N]
//! ```
//!
//! Reads every text file under `DIR` (optionally only `*.EXTENSION`), or
//! every file named in `LIST` (one path a line), into memory first, then
//! times `Scanner::scan_report` over each file in turn on the current
//! thread (or, with `--concat`, over all of them joined into one buffer),
//! `N` times (default 3). Prints MB/s for each run and their median, by
//! wall clock and by the thread's own CPU time (Linux
//! `/proc/thread-self/schedstat`, which other processes sharing the core do
//! not inflate), then findings, keyword hits and windows.

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

/// Nanoseconds this thread has spent on a CPU, where Linux tells.
fn cpu_nanos() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    stat.split_whitespace().next()?.parse().ok()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

fn main() -> Result<(), Box<dyn Error>> {
    let (flags, args): (Vec<String>, Vec<String>) =
        std::env::args().skip(1).partition(|a| a.starts_with("--"));
    let concat = flags.iter().any(|f| f == "--concat");
    let flag = |name: &str| {
        flags
            .iter()
            .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
    };
    let runs: usize = flag("--runs").map_or(Ok(3), str::parse)?;
    let mut paths = Vec::new();
    if let Some(list) = flag("--files") {
        paths.extend(std::fs::read_to_string(list)?.lines().map(PathBuf::from));
    } else {
        let mut args = args.into_iter();
        let dir = PathBuf::from(
            args.next()
                .ok_or("usage: throughput DIR [EXTENSION] [--concat] [--runs=N] | --files=LIST")?,
        );
        let ext = args.next();
        collect(&dir, ext.as_deref(), &mut paths)?;
        paths.sort();
    }

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

    #[allow(clippy::cast_precision_loss, reason = "a throughput figure")]
    let mb = total as f64 / 1e6;
    let (mut wall_rates, mut cpu_rates) = (Vec::new(), Vec::new());
    let (mut findings, mut hits, mut windows) = (0, 0, 0);
    let mut per_rule = std::collections::BTreeMap::<String, usize>::new();
    for run in 0..runs.max(1) {
        let (start, cpu_start) = (Instant::now(), cpu_nanos());
        (findings, hits, windows) = (0, 0, 0);
        per_rule.clear();
        for (path, bytes) in &files {
            let report = scanner.scan_report(bytes, &ScanContext::new().with_path(path));
            findings += report.findings.len();
            hits += report.stats.keyword_hits;
            windows += report.stats.windows;
            for f in report.findings {
                *per_rule.entry(f.rule_id).or_default() += 1;
            }
        }
        let wall = start.elapsed().as_secs_f64();
        #[allow(clippy::cast_precision_loss, reason = "a throughput figure")]
        let cpu = cpu_start
            .zip(cpu_nanos())
            .map(|(a, b)| b.saturating_sub(a) as f64 / 1e9);
        wall_rates.push(mb / wall);
        let cpu_text = cpu.map_or(String::new(), |c| {
            cpu_rates.push(mb / c);
            format!(", {:.0} MB/s by CPU time", mb / c)
        });
        println!(
            "run {}: {mb:.1} MB in {wall:.3} s: {:.0} MB/s{cpu_text}",
            run + 1,
            mb / wall
        );
    }
    let cpu_text = if cpu_rates.is_empty() {
        String::new()
    } else {
        format!(", {:.0} MB/s by CPU time", median(cpu_rates))
    };
    println!(
        "scanned {} buffer(s), {mb:.1} MB: median {:.0} MB/s on one core{cpu_text}",
        files.len(),
        median(wall_rates)
    );
    println!("{findings} findings, {hits} keyword hits, {windows} regex windows");
    for (rule, n) in per_rule {
        println!("  {rule}: {n}");
    }
    Ok(())
}
