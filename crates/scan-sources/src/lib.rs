//! The IO edge of `leash scan`: walk files, directories, stdin and git
//! history, run a [`leash_scan::Scanner`] over what they hold, and say
//! where each secret was found.
//!
//! [`leash_scan`] is pure: bytes in, findings out. This crate reads the
//! bytes (never from the network), and turns each [`Finding`] into a
//! [`LocatedFinding`]: the finding plus a [`Location`] (file path and line,
//! `stdin`, or the git commit, author and path that first introduced the
//! secret). [`report::to_json`] and [`report::to_sarif`] render a
//! [`Report`] for the CLI to print; neither ever holds a raw secret.
//!
//! # Design
//!
//! * **Memory stays bounded whatever the input.** Input longer than
//!   [`Options::chunk_size`] is scanned in chunks that overlap by
//!   [`Options::chunk_overlap`] bytes on each side (more than the scanner's
//!   largest window, 32 KiB for private-key blocks). Each chunk keeps only
//!   the findings that start in its own stretch, so a secret straddling a
//!   boundary is found once, with line and column counted from the start of
//!   the input.
//! * **A bad item is not a failed scan.** A file that cannot be read becomes
//!   an [`ItemError`] in [`Stats::errors`] and the walk goes on. Only git
//!   history has fatal errors ([`GitError`]: not a repository, a missing or
//!   corrupt object).
//! * **Git history scans every blob once.** Commits reachable from any ref
//!   (branches, tags, notes, stash) and `HEAD` are visited parents first;
//!   trees and blobs already seen are skipped, so each blob is scanned at
//!   the oldest commit and path that introduced it. A secret that stays in
//!   a file while the file changes (new blobs, same path) is reported once
//!   per path, at the oldest commit.
//! * **Progress is a hook, not a dependency.** Every scan takes a
//!   [`Progress`]; the CLI draws bars with it, tests pass `&mut ()`.
//!
//! # Example
//!
//! ```
//! use leash_scan::Scanner;
//! use leash_scan_sources::{report, Source, SourceScanner};
//!
//! let scanner = Scanner::builtin();
//! let sources = SourceScanner::new(&scanner);
//! let input = "line one\nexport AWS_ACCESS_KEY_ID=AKIAU24HYBUZOFA3YVCK\n";
//! let report = sources.scan_reader(input.as_bytes(), &mut ());
//!
//! assert_eq!(report.findings.len(), 1);
//! let found = &report.findings[0];
//! assert_eq!(found.finding.rule_id, "aws-access-key-id");
//! assert_eq!(found.location.source, Source::Stdin);
//! assert_eq!((found.location.line, found.location.column), (2, 26));
//!
//! // Output never carries the raw secret.
//! let json = report::to_json(&report).to_string();
//! assert!(json.contains("AKIA…(20 chars)"));
//! assert!(!json.contains("AKIAU24HYBUZOFA3YVCK"));
//! ```

mod chunk;
mod git;
pub mod report;
mod walk;

use std::io::Read;
use std::path::Path;

use leash_scan::{Finding, LeashJwtCheck, Scanner};
use serde::Serialize;

pub use git::GitError;

/// Default size above which input is scanned in chunks: 64 MiB.
pub const DEFAULT_CHUNK_SIZE: usize = 64 * 1024 * 1024;
/// Default overlap on each side of a chunk: 256 KiB, well above the
/// scanner's largest window (32 KiB forward for private-key blocks).
pub const DEFAULT_CHUNK_OVERLAP: usize = 256 * 1024;

/// How sources are walked and read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Honour `.gitignore`, `.ignore`, `.git/info/exclude` and the global
    /// git excludes file when walking directories (default `true`). They
    /// apply whether or not the directory is inside a git repository.
    pub ignore_files: bool,
    /// Walk hidden files and directories (default `true`: `.env` files are
    /// where secrets live). `.git` directories are never walked.
    pub hidden: bool,
    /// Follow symbolic links while walking (default `false`: a link is
    /// skipped, so nothing outside the tree is read through one).
    pub follow_symlinks: bool,
    /// Skip files whose extension marks a binary format (images, archives,
    /// compiled code, fonts, media) without reading them (default `true`).
    /// Other binary input is still skipped when its first 8 KiB hold a NUL.
    pub skip_binary_extensions: bool,
    /// Input longer than this is scanned in chunks of this many bytes
    /// (default [`DEFAULT_CHUNK_SIZE`]).
    pub chunk_size: usize,
    /// Bytes of context read on each side of a chunk (default
    /// [`DEFAULT_CHUNK_OVERLAP`]). A secret is found in chunked input as in
    /// whole input as long as it and the text its rule looks at fit in the
    /// overlap; keep it above 33 KiB.
    pub chunk_overlap: usize,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            ignore_files: true,
            hidden: true,
            follow_symlinks: false,
            skip_binary_extensions: true,
            chunk_size: DEFAULT_CHUNK_SIZE,
            chunk_overlap: DEFAULT_CHUNK_OVERLAP,
        }
    }
}

/// What a scan is doing, for progress displays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Walking files and directories.
    Files,
    /// Reading stdin.
    Stdin,
    /// Listing the commits reachable from the refs (no total known yet).
    ListingCommits,
    /// Scanning the blobs of each commit; the total is known.
    ScanningCommits,
}

/// Receives progress events. Every method has a no-op default, and `()`
/// implements it, so `&mut ()` means "no progress display".
///
/// Items are files (directory walks), the input (stdin) or commits (git
/// history). Bytes count what was scanned, reported as it is scanned, so a
/// huge file moves a byte counter chunk by chunk.
pub trait Progress {
    /// A new stage starts.
    fn stage(&mut self, _stage: Stage) {}
    /// The number of items, once known (commits, after listing them).
    fn total_items(&mut self, _items: u64) {}
    /// This many more bytes were scanned.
    fn bytes_scanned(&mut self, _bytes: u64) {}
    /// One item is done: a file path, `stdin`, or a commit id.
    fn item_done(&mut self, _item: &str) {}
    /// A secret was found (already redacted in all its printable forms).
    fn found(&mut self, _finding: &LocatedFinding) {}
}

impl Progress for () {}

/// Where the input came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// A file in the file system.
    File,
    /// Standard input.
    Stdin,
    /// A blob in git history.
    Git,
}

/// The commit that first introduced a blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitInfo {
    /// Full hex commit id.
    pub id: String,
    /// Author name, as recorded.
    pub author_name: String,
    /// Author email, as recorded.
    pub author_email: String,
    /// Author time, RFC 3339 with the recorded offset
    /// (`2024-05-01T12:00:00+02:00`).
    pub time: String,
    /// Author time, seconds since the Unix epoch.
    pub seconds: i64,
}

/// Where a finding is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// File, stdin or git.
    pub source: Source,
    /// The file path as walked, `stdin`, or the path inside the repository
    /// (forward slashes).
    pub path: String,
    /// 1-based line (0 for rules that match on the path alone).
    pub line: usize,
    /// 1-based byte column, as in [`Finding::column`].
    pub column: usize,
    /// 1-based column in Unicode code points (for SARIF).
    pub char_column: usize,
    /// The commit that introduced the blob (git only).
    pub commit: Option<CommitInfo>,
}

/// A finding and where it is. `finding.line`, `finding.column` and
/// `finding.byte_range` count from the start of the file, input or blob,
/// also when it was scanned in chunks.
#[derive(Debug, Clone)]
pub struct LocatedFinding {
    /// What was found.
    pub finding: Finding,
    /// Where.
    pub location: Location,
}

/// An item that could not be scanned; the scan went on without it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ItemError {
    /// The path (or `stdin`).
    pub path: String,
    /// Why, as the operating system or walker said it.
    pub reason: String,
}

/// Counts of a scan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Items scanned: files, stdin, or git blobs.
    pub items: u64,
    /// Bytes scanned.
    pub bytes: u64,
    /// Items skipped as binary (by extension or a NUL in the first 8 KiB).
    pub skipped_binary: u64,
    /// Commits visited (git history only).
    pub commits: Option<u64>,
    /// Items that could not be read.
    pub errors: Vec<ItemError>,
}

/// Everything a scan found, in the order it was found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The findings.
    pub findings: Vec<LocatedFinding>,
    /// What the scan did.
    pub stats: Stats,
}

impl Report {
    /// Append another report (for `leash scan - DIR --git REPO`).
    pub fn merge(&mut self, other: Report) {
        self.findings.extend(other.findings);
        self.stats.items += other.stats.items;
        self.stats.bytes += other.stats.bytes;
        self.stats.skipped_binary += other.stats.skipped_binary;
        self.stats.commits = match (self.stats.commits, other.stats.commits) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
        };
        self.stats.errors.extend(other.stats.errors);
    }
}

/// Runs a [`Scanner`] over files, directories, stdin and git history.
#[derive(Clone)]
pub struct SourceScanner<'a> {
    scanner: &'a Scanner,
    options: Options,
    leash_jwt_check: Option<LeashJwtCheck<'a>>,
}

impl<'a> SourceScanner<'a> {
    /// With default [`Options`] and no Leash JWT check.
    pub fn new(scanner: &'a Scanner) -> SourceScanner<'a> {
        SourceScanner {
            scanner,
            options: Options::default(),
            leash_jwt_check: None,
        }
    }

    /// With these options.
    pub fn with_options(mut self, options: Options) -> SourceScanner<'a> {
        self.options = options;
        self
    }

    /// With the callback that recognises Leash JWTs (see
    /// [`leash_scan::ScanContext::with_leash_jwt_check`]).
    pub fn with_leash_jwt_check(mut self, check: LeashJwtCheck<'a>) -> SourceScanner<'a> {
        self.leash_jwt_check = Some(check);
        self
    }

    /// The options in use.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// Scan files and directories (recursively, per [`Options`]). A path
    /// `-` reads stdin. Paths that do not exist or cannot be read are
    /// reported in [`Stats::errors`].
    pub fn scan_paths<P: AsRef<Path>>(&self, paths: &[P], progress: &mut dyn Progress) -> Report {
        walk::scan_paths(self, paths, progress)
    }

    /// Scan everything `reader` gives, reported as [`Source::Stdin`]. A read
    /// error ends the input: findings before it are kept and the error is
    /// reported in [`Stats::errors`].
    pub fn scan_reader(&self, reader: impl Read, progress: &mut dyn Progress) -> Report {
        let mut reader = reader;
        progress.stage(Stage::Stdin);
        let mut report = Report::default();
        self.scan_stream(&mut reader, Source::Stdin, "stdin", &mut report, progress);
        progress.item_done("stdin");
        report
    }

    /// Scan standard input.
    pub fn scan_stdin(&self, progress: &mut dyn Progress) -> Report {
        self.scan_reader(std::io::stdin().lock(), progress)
    }

    /// Scan every blob reachable from any ref or `HEAD` of the repository
    /// at `repo` (a work tree, its `.git`, or a bare repository), once each,
    /// reported at the oldest commit and path that introduced it. A secret
    /// already reported at a path is not reported again for later versions
    /// of the file there. Submodules, symbolic links and binary blobs are
    /// skipped; refs to bare trees or blobs are ignored.
    pub fn scan_git_history(
        &self,
        repo: &Path,
        progress: &mut dyn Progress,
    ) -> Result<Report, GitError> {
        git::scan_history(self, repo, progress)
    }

    fn context<'c>(&self, path: Option<&'c str>) -> leash_scan::ScanContext<'c>
    where
        'a: 'c,
    {
        let mut ctx = leash_scan::ScanContext::new();
        if let Some(path) = path {
            ctx = ctx.with_path(path);
        }
        if let Some(check) = self.leash_jwt_check {
            ctx = ctx.with_leash_jwt_check(check);
        }
        ctx
    }

    /// Scan one stream into `report` (findings, counts, a read error).
    fn scan_stream(
        &self,
        reader: &mut dyn Read,
        source: Source,
        path: &str,
        report: &mut Report,
        progress: &mut dyn Progress,
    ) {
        let ctx_path = (source != Source::Stdin).then_some(path);
        let ctx = self.context(ctx_path);
        let (scanned, error) =
            chunk::scan_stream(self.scanner, &ctx, &self.options, reader, progress);
        self.record(scanned, source, path, None, report, progress);
        if let Some(error) = error {
            report.stats.errors.push(ItemError {
                path: path.to_owned(),
                reason: error.to_string(),
            });
        }
    }

    /// Add one scanned item's outcome to `report`.
    fn record(
        &self,
        scanned: chunk::Scanned,
        source: Source,
        path: &str,
        commit: Option<&CommitInfo>,
        report: &mut Report,
        progress: &mut dyn Progress,
    ) {
        if scanned.binary {
            report.stats.skipped_binary += 1;
            return;
        }
        report.stats.items += 1;
        report.stats.bytes += scanned.bytes;
        for (finding, char_column) in scanned.findings {
            let located = LocatedFinding {
                location: Location {
                    source,
                    path: path.to_owned(),
                    line: finding.line,
                    column: finding.column,
                    char_column,
                    commit: commit.cloned(),
                },
                finding,
            };
            progress.found(&located);
            report.findings.push(located);
        }
    }
}

impl std::fmt::Debug for SourceScanner<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceScanner")
            .field("rules", &self.scanner.rules().len())
            .field("options", &self.options)
            .field("leash_jwt_check", &self.leash_jwt_check.is_some())
            .finish()
    }
}

/// File extensions skipped without reading when
/// [`Options::skip_binary_extensions`] is on (compared ASCII
/// case-insensitively).
pub const BINARY_EXTENSIONS: &[&str] = &[
    "png", "jpg", "jpeg", "gif", "bmp", "ico", "webp", "tif", "tiff", "psd", "heic", "avif", "zip",
    "gz", "tgz", "bz2", "xz", "zst", "7z", "rar", "jar", "war", "ear", "class", "dex", "apk",
    "ipa", "so", "dylib", "dll", "exe", "o", "obj", "a", "lib", "rlib", "pyc", "pyo", "wasm",
    "woff", "woff2", "ttf", "otf", "eot", "mp3", "mp4", "m4a", "mov", "avi", "mkv", "wav", "flac",
    "ogg", "webm", "pdf", "iso", "dmg",
];

/// Whether `path`'s extension is in [`BINARY_EXTENSIONS`].
pub fn has_binary_extension(path: &str) -> bool {
    let name = path.rsplit(['/', '\\']).next().unwrap_or(path);
    match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => BINARY_EXTENSIONS
            .iter()
            .any(|b| b.eq_ignore_ascii_case(ext)),
        _ => false,
    }
}
