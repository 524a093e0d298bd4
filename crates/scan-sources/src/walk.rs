//! Files and directories, walked with the `ignore` crate.

use std::fs::File;
use std::path::Path;

use ignore::WalkBuilder;

use crate::{ItemError, Progress, Report, Source, SourceScanner, Stage, has_binary_extension};

pub(crate) fn scan_paths<P: AsRef<Path>>(
    sources: &SourceScanner<'_>,
    paths: &[P],
    progress: &mut dyn Progress,
) -> Report {
    let mut report = Report::default();
    let (stdin, paths): (Vec<&Path>, Vec<&Path>) = paths
        .iter()
        .map(AsRef::as_ref)
        .partition(|p| *p == Path::new("-"));
    if !stdin.is_empty() {
        report.merge(sources.scan_stdin(progress));
    }
    let Some((first, rest)) = paths.split_first() else {
        return report;
    };
    progress.stage(Stage::Files);
    let options = sources.options();
    let mut builder = WalkBuilder::new(first);
    for path in rest {
        builder.add(path);
    }
    builder
        .hidden(!options.hidden)
        .ignore(options.ignore_files)
        .git_ignore(options.ignore_files)
        .git_exclude(options.ignore_files)
        .git_global(options.ignore_files)
        .parents(options.ignore_files)
        .require_git(false)
        .follow_links(options.follow_symlinks)
        .sort_by_file_name(|a, b| a.cmp(b))
        .filter_entry(|entry| {
            let is_dir = entry.file_type().is_some_and(|t| t.is_dir());
            !(is_dir && entry.file_name() == ".git")
        });
    for entry in builder.build() {
        let entry = match entry {
            Ok(entry) => entry,
            Err(error) => {
                report.stats.errors.push(walk_error(&error));
                continue;
            }
        };
        let Some(file_type) = entry.file_type() else {
            continue;
        };
        let path = entry.path();
        // A link named on the command line is read; links met while
        // walking are followed only when asked (then the walker resolves
        // them and reports a regular file).
        let is_file = file_type.is_file()
            || (file_type.is_symlink()
                && entry.depth() == 0
                && std::fs::metadata(path).is_ok_and(|m| m.is_file()));
        if !is_file {
            continue;
        }
        let name = path.to_string_lossy();
        if options.skip_binary_extensions && has_binary_extension(&name) {
            report.stats.skipped_binary += 1;
            progress.item_done(&name);
            continue;
        }
        match File::open(path) {
            Ok(mut file) => {
                sources.scan_stream(&mut file, Source::File, &name, &mut report, progress);
            }
            Err(error) => report.stats.errors.push(ItemError {
                path: name.to_string(),
                reason: error.to_string(),
            }),
        }
        progress.item_done(&name);
    }
    report
}

/// An `ignore` error as a path and a reason.
fn walk_error(error: &ignore::Error) -> ItemError {
    fn split(error: &ignore::Error) -> (Option<String>, String) {
        match error {
            ignore::Error::WithPath { path, err } => {
                let (_, reason) = split(err);
                (Some(path.to_string_lossy().into_owned()), reason)
            }
            ignore::Error::WithDepth { err, .. } | ignore::Error::WithLineNumber { err, .. } => {
                split(err)
            }
            ignore::Error::Loop { child, .. } => (
                Some(child.to_string_lossy().into_owned()),
                error.to_string(),
            ),
            other => (None, other.to_string()),
        }
    }
    let (path, reason) = split(error);
    ItemError {
        path: path.unwrap_or_default(),
        reason,
    }
}
