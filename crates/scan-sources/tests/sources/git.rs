//! Git history: every blob once, at the commit and path that introduced it.

use std::path::Path;
use std::process::Command;

use leash_scan_sources::{GitError, LocatedFinding, Progress, Source, Stage};

use crate::{aws_key, sources};

/// Run git in `dir` with a fixed identity and date and no user config.
fn git(dir: &Path, author: (&str, &str), date: &str, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", author.0)
        .env("GIT_AUTHOR_EMAIL", author.1)
        .env("GIT_COMMITTER_NAME", author.0)
        .env("GIT_COMMITTER_EMAIL", author.1)
        .env("GIT_AUTHOR_DATE", date)
        .env("GIT_COMMITTER_DATE", date)
        .args([
            "-c",
            "init.defaultBranch=main",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(["-c", "tag.gpgsign=false"])
        .args(args)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

const ALICE: (&str, &str) = ("Alice Example", "alice@example.com");
const BOB: (&str, &str) = ("Bob Example", "bob@example.com");

struct Repo {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    commits: Vec<String>,
}

/// 1: README, config without secret, a binary file with a secret.
/// 2: secret k1 added to app/config.env (line 2).
/// 3: app/config.env moved to config/app.env; a submodule gitlink added.
/// 4: config/app.env deleted; the same bytes copied to backup/config.env.
/// 5 (branch `feature`, from 2): secret k2 in feature.txt (line 3), by Bob.
/// 6 (only under tag `v0.1`, from 1): secret k3 in tagged.txt.
/// 7 (branch `feature`): feature.txt edited, k2 still in it.
fn history() -> Option<Repo> {
    if Command::new("git").arg("--version").output().is_err() {
        eprintln!("skipped: no git CLI");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("repo");
    std::fs::create_dir(&path).unwrap();
    let p = path.as_path();
    let mut commits = Vec::new();
    let commit = |commits: &mut Vec<String>, author, date: &str, message: &str| {
        git(p, author, date, &["commit", "-q", "-m", message]);
        commits.push(git(p, author, date, &["rev-parse", "HEAD"]));
    };
    let d1 = "2024-01-01T10:00:00+00:00";
    git(p, ALICE, d1, &["init", "-q"]);
    crate::write(p, "README.md", "# demo\n");
    crate::write(p, "app/config.env", "PORT=80\n");
    let mut binary = b"\x00\x01binary".to_vec();
    binary.extend_from_slice(format!(" {}\n", aws_key(40)).as_bytes());
    crate::write(p, "bin.dat", binary);
    git(p, ALICE, d1, &["add", "-A"]);
    commit(&mut commits, ALICE, d1, "one");

    let d2 = "2024-01-02T10:00:00+02:00";
    let with_secret = format!("PORT=80\nAWS_ACCESS_KEY_ID={}\n", aws_key(41));
    crate::write(p, "app/config.env", &with_secret);
    git(p, ALICE, d2, &["add", "-A"]);
    commit(&mut commits, ALICE, d2, "two");

    let d3 = "2024-01-03T10:00:00+00:00";
    std::fs::create_dir(p.join("config")).unwrap();
    git(p, ALICE, d3, &["mv", "app/config.env", "config/app.env"]);
    let gitlink = format!("160000,{},vendor/sub", commits[0]);
    git(
        p,
        ALICE,
        d3,
        &["update-index", "--add", "--cacheinfo", &gitlink],
    );
    commit(&mut commits, ALICE, d3, "three");

    let d4 = "2024-01-04T10:00:00+00:00";
    git(p, ALICE, d4, &["rm", "-q", "config/app.env"]);
    crate::write(p, "backup/config.env", &with_secret);
    git(p, ALICE, d4, &["add", "-A"]);
    commit(&mut commits, ALICE, d4, "four");

    let d5 = "2024-01-05T10:00:00+00:00";
    git(
        p,
        BOB,
        d5,
        &["checkout", "-q", "-b", "feature", &commits[1]],
    );
    crate::write(p, "feature.txt", format!("x\ny\nkey = {}\n", aws_key(42)));
    git(p, BOB, d5, &["add", "feature.txt"]);
    commit(&mut commits, BOB, d5, "five");

    let d6 = "2024-01-06T10:00:00+00:00";
    git(p, ALICE, d6, &["checkout", "-q", "--detach", &commits[0]]);
    crate::write(p, "tagged.txt", format!("{}\n", aws_key(43)));
    git(p, ALICE, d6, &["add", "tagged.txt"]);
    commit(&mut commits, ALICE, d6, "six");
    git(p, ALICE, d6, &["tag", "-a", "v0.1", "-m", "release"]);

    let d7 = "2024-01-07T10:00:00+00:00";
    git(p, BOB, d7, &["checkout", "-q", "feature"]);
    crate::write(
        p,
        "feature.txt",
        format!("x\ny\nkey = {}\nmore\n", aws_key(42)),
    );
    git(p, BOB, d7, &["add", "feature.txt"]);
    commit(&mut commits, BOB, d7, "seven");
    git(p, ALICE, d7, &["checkout", "-q", "main"]);
    Some(Repo {
        _dir: dir,
        path,
        commits,
    })
}

fn by_secret<'r>(findings: &'r [LocatedFinding], secret: &str) -> &'r LocatedFinding {
    let matching: Vec<&LocatedFinding> = findings
        .iter()
        .filter(|f| f.finding.secret.expose() == secret)
        .collect();
    assert_eq!(matching.len(), 1, "{secret} found {} times", matching.len());
    matching[0]
}

fn assert_history(repo: &Repo, repo_path: &Path) {
    let mut progress = Recording::default();
    let report = sources()
        .scan_git_history(repo_path, &mut progress)
        .unwrap();
    assert_eq!(report.findings.len(), 3, "{:#?}", report.findings);
    assert_eq!(report.stats.commits, Some(7));
    assert_eq!(report.stats.skipped_binary, 1);
    assert!(report.stats.errors.is_empty());

    let k1 = by_secret(&report.findings, &aws_key(41));
    assert_eq!(k1.location.source, Source::Git);
    assert_eq!(k1.location.path, "app/config.env");
    assert_eq!((k1.location.line, k1.location.column), (2, 19));
    let c = k1.location.commit.as_ref().unwrap();
    assert_eq!(c.id, repo.commits[1]);
    assert_eq!((c.author_name.as_str(), c.author_email.as_str()), ALICE);
    assert_eq!(c.time, "2024-01-02T10:00:00+02:00");
    assert_eq!(c.seconds, 1_704_182_400);

    let k2 = by_secret(&report.findings, &aws_key(42));
    assert_eq!(k2.location.path, "feature.txt");
    assert_eq!(k2.location.line, 3);
    let c = k2.location.commit.as_ref().unwrap();
    assert_eq!(c.id, repo.commits[4]);
    assert_eq!(c.author_name, BOB.0);

    let k3 = by_secret(&report.findings, &aws_key(43));
    assert_eq!(k3.location.path, "tagged.txt");
    assert_eq!(k3.location.commit.as_ref().unwrap().id, repo.commits[5]);

    assert_eq!(progress.total, Some(7));
    assert_eq!(progress.items, 7);
    assert_eq!(
        progress.stages,
        vec![Stage::ListingCommits, Stage::ScanningCommits]
    );
}

#[derive(Default)]
struct Recording {
    stages: Vec<Stage>,
    total: Option<u64>,
    items: u64,
}

impl Progress for Recording {
    fn stage(&mut self, stage: Stage) {
        self.stages.push(stage);
    }
    fn total_items(&mut self, items: u64) {
        self.total = Some(items);
    }
    fn item_done(&mut self, _: &str) {
        self.items += 1;
    }
}

#[test]
fn each_secret_once_at_the_commit_and_path_that_introduced_it() {
    let Some(repo) = history() else { return };
    assert_history(&repo, &repo.path);
    // The .git directory itself works too.
    assert_history(&repo, &repo.path.join(".git"));
}

#[test]
fn a_bare_clone_gives_the_same_findings() {
    let Some(repo) = history() else { return };
    let bare = repo.path.with_file_name("bare.git");
    let parent = repo.path.parent().unwrap();
    git(
        parent,
        ALICE,
        "2024-02-01T00:00:00+00:00",
        &["clone", "-q", "--bare", "repo", "bare.git"],
    );
    assert_history(&repo, &bare);
}

#[test]
fn a_directory_that_is_not_a_repository_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = sources().scan_git_history(dir.path(), &mut ()).unwrap_err();
    assert!(matches!(err, GitError::Open { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains(&*dir.path().to_string_lossy()),
        "{message}"
    );
    assert!(
        message.contains("not") || message.contains("cannot"),
        "{message}"
    );
}

#[test]
fn a_repository_without_commits_has_no_findings() {
    if Command::new("git").arg("--version").output().is_err() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    git(
        dir.path(),
        ALICE,
        "2024-01-01T00:00:00+00:00",
        &["init", "-q"],
    );
    let report = sources().scan_git_history(dir.path(), &mut ()).unwrap();
    assert!(report.findings.is_empty());
    assert_eq!(report.stats.commits, Some(0));
}

#[test]
fn a_dangling_symbolic_ref_is_an_item_error_not_a_failure() {
    let Some(repo) = history() else { return };
    git(
        &repo.path,
        ALICE,
        "2024-02-01T00:00:00+00:00",
        &[
            "symbolic-ref",
            "refs/remotes/origin/HEAD",
            "refs/remotes/origin/gone",
        ],
    );
    let report = sources().scan_git_history(&repo.path, &mut ()).unwrap();
    assert_eq!(report.findings.len(), 3);
    assert_eq!(report.stats.errors.len(), 1, "{:?}", report.stats.errors);
    assert_eq!(report.stats.errors[0].path, "refs/remotes/origin/HEAD");
}
