//! Walking files and directories.

use leash_scan_sources::{Options, Source};

use crate::{aws_key, secrets, sources, sources_with, write};

/// A tree with secrets in plain, ignored, hidden and `.git` places.
fn tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, ".gitignore", "ignored/\n*.log\n");
    write(d, "a.txt", format!("hello\n\nkey = {}\n", aws_key(1)));
    write(d, "ignored/b.txt", format!("key = {}\n", aws_key(2)));
    write(d, "c.log", format!("key = {}\n", aws_key(3)));
    write(d, ".env", format!("AWS_ACCESS_KEY_ID={}\n", aws_key(4)));
    write(d, "sub/deeper/d.txt", format!("x\ny\nz = {}\n", aws_key(5)));
    write(d, ".git/config", format!("key = {}\n", aws_key(6)));
    dir
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[test]
fn honours_gitignore_and_walks_hidden_files_by_default() {
    let dir = tree();
    let report = sources().scan_paths(&[dir.path()], &mut ());
    assert_eq!(
        secrets(&report),
        sorted(vec![aws_key(1), aws_key(4), aws_key(5)])
    );
    assert!(report.stats.errors.is_empty(), "{:?}", report.stats.errors);
    // .gitignore, a.txt, .env, d.txt
    assert_eq!(report.stats.items, 4);

    let a = report
        .findings
        .iter()
        .find(|f| f.finding.secret.expose() == aws_key(1))
        .unwrap();
    assert_eq!(a.location.source, Source::File);
    assert_eq!(a.location.path, dir.path().join("a.txt").to_string_lossy());
    assert_eq!((a.location.line, a.location.column), (3, 7));
    assert!(a.location.commit.is_none());
}

#[test]
fn ignore_files_can_be_turned_off_but_git_dirs_stay_out() {
    let dir = tree();
    let options = Options {
        ignore_files: false,
        ..Options::default()
    };
    let report = sources_with(options).scan_paths(&[dir.path()], &mut ());
    let expected: Vec<String> = (1..=5).map(aws_key).collect();
    assert_eq!(secrets(&report), sorted(expected));
}

#[test]
fn hidden_files_can_be_left_out() {
    let dir = tree();
    let options = Options {
        hidden: false,
        ..Options::default()
    };
    let report = sources_with(options).scan_paths(&[dir.path()], &mut ());
    assert_eq!(secrets(&report), sorted(vec![aws_key(1), aws_key(5)]));
}

#[test]
fn a_file_named_directly_is_scanned_even_if_ignored() {
    let dir = tree();
    let report = sources().scan_paths(&[dir.path().join("c.log")], &mut ());
    assert_eq!(secrets(&report), vec![aws_key(3)]);
}

#[test]
fn binary_files_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut nul = b"\x00\x01\x02binary header\n".to_vec();
    nul.extend_from_slice(format!("key = {}\n", aws_key(7)).as_bytes());
    write(d, "blob.dat", &nul);
    write(d, "logo.PNG", format!("key = {}\n", aws_key(8)));
    write(d, "ok.txt", format!("key = {}\n", aws_key(9)));

    let report = sources().scan_paths(&[d], &mut ());
    assert_eq!(secrets(&report), vec![aws_key(9)]);
    assert_eq!(report.stats.skipped_binary, 2);
    assert_eq!(report.stats.items, 1);

    // Without the extension list, only the NUL sniff applies.
    let options = Options {
        skip_binary_extensions: false,
        ..Options::default()
    };
    let report = sources_with(options).scan_paths(&[d], &mut ());
    assert_eq!(secrets(&report), sorted(vec![aws_key(8), aws_key(9)]));
    assert_eq!(report.stats.skipped_binary, 1);
}

#[test]
fn a_missing_path_is_an_item_error_and_the_walk_goes_on() {
    let dir = tree();
    let missing = dir.path().join("no-such-dir");
    let report = sources().scan_paths(&[missing.as_path(), &dir.path().join("a.txt")], &mut ());
    assert_eq!(secrets(&report), vec![aws_key(1)]);
    assert_eq!(report.stats.errors.len(), 1);
    let error = &report.stats.errors[0];
    assert_eq!(error.path, missing.to_string_lossy());
    assert!(error.reason.contains("No such file"), "{}", error.reason);
}

#[cfg(unix)]
#[test]
fn an_unreadable_file_is_an_item_error() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "ok.txt", format!("key = {}\n", aws_key(1)));
    write(dir.path(), "secret.txt", format!("key = {}\n", aws_key(2)));
    let locked = dir.path().join("secret.txt");
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
    if std::fs::read(&locked).is_ok() {
        eprintln!("skipped: running with privileges that read a mode-000 file (root)");
        return;
    }
    let report = sources().scan_paths(&[dir.path()], &mut ());
    assert_eq!(secrets(&report), vec![aws_key(1)]);
    assert_eq!(report.stats.errors.len(), 1);
    assert_eq!(report.stats.errors[0].path, locked.to_string_lossy());
    assert!(report.stats.errors[0].reason.contains("ermission denied"));
}

#[cfg(unix)]
#[test]
fn symlinks_out_of_the_tree_are_not_followed_by_default() {
    let outside = tempfile::tempdir().unwrap();
    write(
        outside.path(),
        "creds.txt",
        format!("key = {}\n", aws_key(1)),
    );
    write(
        outside.path(),
        "dir/more.txt",
        format!("key = {}\n", aws_key(2)),
    );
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "ok.txt", format!("key = {}\n", aws_key(3)));
    std::os::unix::fs::symlink(
        outside.path().join("creds.txt"),
        dir.path().join("link.txt"),
    )
    .unwrap();
    std::os::unix::fs::symlink(outside.path().join("dir"), dir.path().join("linkdir")).unwrap();

    let report = sources().scan_paths(&[dir.path()], &mut ());
    assert_eq!(secrets(&report), vec![aws_key(3)]);

    let options = Options {
        follow_symlinks: true,
        ..Options::default()
    };
    let report = sources_with(options).scan_paths(&[dir.path()], &mut ());
    assert_eq!(
        secrets(&report),
        sorted(vec![aws_key(1), aws_key(2), aws_key(3)])
    );
}

#[derive(Default)]
struct Counting {
    items: Vec<String>,
    bytes: u64,
    found: usize,
}

impl leash_scan_sources::Progress for Counting {
    fn bytes_scanned(&mut self, bytes: u64) {
        self.bytes += bytes;
    }
    fn item_done(&mut self, item: &str) {
        self.items.push(item.to_owned());
    }
    fn found(&mut self, _: &leash_scan_sources::LocatedFinding) {
        self.found += 1;
    }
}

#[test]
fn progress_sees_every_item_and_byte() {
    let dir = tree();
    let mut progress = Counting::default();
    let report = sources().scan_paths(&[dir.path()], &mut progress);
    assert_eq!(progress.items.len(), 4);
    assert_eq!(progress.bytes, report.stats.bytes);
    assert_eq!(progress.found, report.findings.len());
}
