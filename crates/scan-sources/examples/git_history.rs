//! Benchmark: scan the full history of a generated 10,000-commit repository.
//!
//! ```text
//! cargo run --release -p leash-scan-sources --example git_history -- [COMMITS] [--keep DIR]
//! ```
//!
//! Builds a repository with `git fast-import` (no per-commit process):
//! 300 text files of source-like lines in 30 directories; each commit edits
//! one to three files, now and then adds or deletes one; a side branch every
//! 500 commits and a tag every 1,000; secrets planted at a few commits (one
//! of them only on a side branch). Then times
//! [`SourceScanner::scan_git_history`] three times and prints the median,
//! with commits, blobs and bytes scanned, and checks every planted secret
//! was found exactly once, at the commit that planted it.

use std::collections::BTreeMap;
use std::error::Error;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use leash_scan::Scanner;
use leash_scan_sources::{Report, SourceScanner};

/// xorshift64*: deterministic content, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const WORDS: &[&str] = &[
    "let", "value", "config", "request", "handler", "return", "match", "error", "result", "user",
    "token", "scope", "client", "server", "parse", "format", "index", "count", "items", "self",
    "buffer", "write", "read", "await", "async", "struct", "impl", "fn", "pub", "use", "None",
    "Some", "Ok", "Err", "if", "else", "for", "in", "while", "loop", "break", "continue",
];

fn line(rng: &mut Rng) -> String {
    let indent = "    ".repeat(rng.below(4));
    let n = 3 + rng.below(9);
    let words: Vec<&str> = (0..n).map(|_| WORDS[rng.below(WORDS.len())]).collect();
    format!("{indent}{};", words.join(" "))
}

fn file(rng: &mut Rng) -> Vec<String> {
    (0..20 + rng.below(80)).map(|_| line(rng)).collect()
}

/// An AWS access key id shape, distinct per seed.
fn aws_key(seed: u64) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut key = String::from("AKIA");
    for _ in 0..16 {
        key.push(char::from(ALPHABET[rng.below(32)]));
    }
    key
}

struct Planted {
    secret: String,
    path: String,
    /// fast-import mark of the commit that planted it.
    mark: usize,
}

/// Write the fast-import stream for `commits` commits; returns the secrets
/// planted.
fn generate(commits: usize, out: &mut impl Write) -> std::io::Result<Vec<Planted>> {
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    let mut files: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for i in 0..300 {
        files.insert(format!("src/mod{}/file{i}.rs", i % 30), file(&mut rng));
    }
    let mut planted = Vec::new();
    let mut next_file = 300;
    let mut side_branches = 0;
    let data = |out: &mut dyn Write, bytes: &[u8]| -> std::io::Result<()> {
        writeln!(out, "data {}", bytes.len())?;
        out.write_all(bytes)?;
        writeln!(out)
    };
    let write_file = |out: &mut dyn Write, path: &str, lines: &[String]| {
        writeln!(out, "M 100644 inline {path}")?;
        data(out, (lines.join("\n") + "\n").as_bytes())
    };
    for c in 1..=commits {
        let mark = c;
        let time = 1_700_000_000 + c as i64 * 600;
        writeln!(out, "commit refs/heads/main")?;
        writeln!(out, "mark :{mark}")?;
        let who = ["Alice <alice@example.com>", "Bob <bob@example.com>"][c % 2];
        writeln!(out, "author {who} {time} +0000")?;
        writeln!(out, "committer {who} {time} +0000")?;
        data(out, format!("change {c}\n").as_bytes())?;
        if c == 1 {
            for (path, lines) in &files {
                write_file(out, path, lines)?;
            }
        } else {
            for edit in 0..1 + rng.below(3) {
                let keys: Vec<&String> = files.keys().collect();
                let path = keys[rng.below(keys.len())].clone();
                let Some(lines) = files.get_mut(&path) else {
                    continue;
                };
                for _ in 0..1 + rng.below(5) {
                    let at = rng.below(lines.len());
                    lines[at] = line(&mut rng);
                }
                if c % 1_500 == 0 && edit == 0 {
                    let secret = aws_key(c as u64);
                    let at = rng.below(lines.len());
                    lines.insert(at, format!("    let aws_access_key_id = \"{secret}\";"));
                    planted.push(Planted {
                        secret,
                        path: path.clone(),
                        mark,
                    });
                }
                write_file(out, &path, lines)?;
            }
            if c % 50 == 0 {
                let path = format!("src/mod{}/new{next_file}.rs", next_file % 30);
                next_file += 1;
                let lines = file(&mut rng);
                write_file(out, &path, &lines)?;
                files.insert(path, lines);
            }
            if c % 70 == 0 {
                let keys: Vec<String> = files.keys().cloned().collect();
                let path = &keys[rng.below(keys.len())];
                writeln!(out, "D {path}")?;
                files.remove(path);
            }
        }
        writeln!(out)?;
        if c % 1_000 == 0 {
            writeln!(out, "reset refs/tags/v{}\nfrom :{mark}\n", c / 1_000)?;
        }
        if c % 500 == 0 {
            // A side branch of two commits off this one, never merged.
            side_branches += 1;
            let branch = format!("refs/heads/side{side_branches}");
            for s in 0..2 {
                let side_mark = commits + side_branches * 2 + s;
                writeln!(out, "commit {branch}")?;
                writeln!(out, "mark :{side_mark}")?;
                writeln!(out, "author Carol <carol@example.com> {} +0000", time + 60)?;
                writeln!(
                    out,
                    "committer Carol <carol@example.com> {} +0000",
                    time + 60
                )?;
                data(out, b"side work\n")?;
                if s == 0 {
                    writeln!(out, "from :{mark}")?;
                }
                let mut lines = file(&mut rng);
                let path = format!("side/branch{side_branches}_{s}.rs");
                if side_branches == 3 && s == 1 {
                    let secret = aws_key(1_000_000 + side_branches as u64);
                    lines.push(format!("const KEY: &str = \"{secret}\";"));
                    planted.push(Planted {
                        secret,
                        path: path.clone(),
                        mark: side_mark,
                    });
                }
                write_file(out, &path, &lines)?;
                writeln!(out)?;
            }
        }
    }
    Ok(planted)
}

fn git(dir: &Path, args: &[&str]) -> Result<String, Box<dyn Error>> {
    let out = Command::new("git")
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .args(args)
        .output()?;
    if !out.status.success() {
        return Err(format!("git {args:?}: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Create the repository; returns the planted secrets with their commit ids.
fn build(repo: &Path, commits: usize) -> Result<Vec<(Planted, String)>, Box<dyn Error>> {
    std::fs::create_dir_all(repo)?;
    git(repo, &["init", "-q", "--bare", "-b", "main"])?;
    let marks = repo.join("marks");
    let mut child = Command::new("git")
        .current_dir(repo)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .args(["fast-import", "--quiet"])
        .arg(format!("--export-marks={}", marks.display()))
        .stdin(Stdio::piped())
        .spawn()?;
    let stdin = child.stdin.take().ok_or("no stdin for git fast-import")?;
    let mut writer = std::io::BufWriter::new(stdin);
    let planted = generate(commits, &mut writer)?;
    writer.flush()?;
    drop(writer);
    if !child.wait()?.success() {
        return Err("git fast-import failed".into());
    }
    let marks = std::fs::read_to_string(&marks)?;
    let ids: BTreeMap<usize, String> = marks
        .lines()
        .filter_map(|l| {
            let (mark, id) = l.split_once(' ')?;
            Some((mark.trim_start_matches(':').parse().ok()?, id.to_owned()))
        })
        .collect();
    planted
        .into_iter()
        .map(|p| {
            let id = ids.get(&p.mark).cloned().ok_or("mark missing")?;
            Ok((p, id))
        })
        .collect()
}

fn check(report: &Report, planted: &[(Planted, String)]) -> Result<(), Box<dyn Error>> {
    for (p, commit) in planted {
        let found: Vec<_> = report
            .findings
            .iter()
            .filter(|f| f.finding.secret.expose() == p.secret)
            .collect();
        if found.len() != 1 {
            return Err(format!("{} found {} times", p.path, found.len()).into());
        }
        let loc = &found[0].location;
        let at = loc.commit.as_ref().map(|c| c.id.as_str());
        if loc.path != p.path || at != Some(commit.as_str()) {
            return Err(
                format!("{} at {:?} {:?}, planted at {commit}", p.path, loc.path, at).into(),
            );
        }
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let mut commits = 10_000;
    let mut keep: Option<PathBuf> = None;
    while let Some(arg) = args.next() {
        if arg == "--keep" {
            keep = Some(args.next().ok_or("--keep DIR")?.into());
        } else {
            commits = arg.parse()?;
        }
    }
    let temp = tempfile::tempdir()?;
    let repo = keep.unwrap_or_else(|| temp.path().join("bench.git"));

    let started = Instant::now();
    let planted = build(&repo, commits)?;
    let build_time = started.elapsed();
    let size = git(&repo, &["count-objects", "-v"])?;
    let pack_kib = size
        .lines()
        .find_map(|l| l.strip_prefix("size-pack: "))
        .unwrap_or("?");
    println!(
        "built {} in {:.1}s (pack {pack_kib} KiB)",
        repo.display(),
        build_time.as_secs_f64()
    );

    let scanner = Scanner::builtin();
    let sources = SourceScanner::new(&scanner);
    let mut times: Vec<Duration> = Vec::new();
    let mut last = None;
    for run in 1..=3 {
        let started = Instant::now();
        let report = sources.scan_git_history(&repo, &mut ())?;
        let took = started.elapsed();
        println!("run {run}: {:.3}s", took.as_secs_f64());
        times.push(took);
        last = Some(report);
    }
    let report = last.ok_or("no run")?;
    check(&report, &planted)?;
    times.sort();
    let median = times[1].as_secs_f64();
    let stats = &report.stats;
    println!(
        "commits {}, blobs scanned {}, skipped binary {}, bytes {} ({:.1} MiB), findings {} (planted {}, all found once at the right commit)",
        stats.commits.unwrap_or(0),
        stats.items,
        stats.skipped_binary,
        stats.bytes,
        stats.bytes as f64 / (1024.0 * 1024.0),
        report.findings.len(),
        planted.len(),
    );
    println!(
        "median of 3: {median:.3}s ({:.0} commits/s, {:.1} MiB/s)",
        stats.commits.unwrap_or(0) as f64 / median,
        stats.bytes as f64 / (1024.0 * 1024.0) / median
    );
    Ok(())
}
