//! Input longer than one chunk: found once, with lines counted from the start.

use leash_scan::ScanContext;
use leash_scan_sources::Options;

use crate::{PRIVATE_KEY, aws_key, scanner, sources_with, write};

fn small_chunks(chunk_size: usize, chunk_overlap: usize) -> Options {
    Options {
        chunk_size,
        chunk_overlap,
        ..Options::default()
    }
}

/// Lines of filler with secrets at known places; returns the text.
fn text_with_secrets(lines: usize, every: usize) -> String {
    let mut text = String::new();
    for i in 0..lines {
        if i % every == every - 1 {
            text.push_str(&format!(
                "line {i}: aws_access_key_id = {}\n",
                aws_key(i as u64)
            ));
        } else {
            text.push_str(&format!(
                "line {i}: nothing to see here, just some text é\n"
            ));
        }
    }
    text
}

/// (rule, line, column, byte range, fingerprint) of each finding.
type Spot = (String, usize, usize, std::ops::Range<usize>, String);

fn spots_whole(text: &str) -> Vec<Spot> {
    scanner()
        .scan(text.as_bytes(), &ScanContext::new())
        .into_iter()
        .map(|f| (f.rule_id, f.line, f.column, f.byte_range, f.fingerprint))
        .collect()
}

fn spots_chunked(text: &str, options: Options) -> Vec<Spot> {
    let report = sources_with(options).scan_reader(text.as_bytes(), &mut ());
    assert_eq!(report.stats.bytes, text.len() as u64);
    report
        .findings
        .into_iter()
        .map(|f| {
            assert_eq!(
                (f.location.line, f.location.column),
                (f.finding.line, f.finding.column)
            );
            let f = f.finding;
            (f.rule_id, f.line, f.column, f.byte_range, f.fingerprint)
        })
        .collect()
}

#[test]
fn a_secret_straddling_a_chunk_boundary_is_found_once_with_the_right_line() {
    // The secret starts 8 bytes before the first boundary, at line 3.
    let chunk = 1024;
    let mut text = String::new();
    text.push_str("first line\nsecond line\n");
    let prefix = "k=";
    let pad = chunk - 8 - text.len() - prefix.len();
    text.push_str(&"x".repeat(pad));
    text.push(' ');
    text.push_str(prefix);
    let start = text.len();
    text.push_str(&aws_key(1));
    text.push('\n');
    // Many more lines and a second secret three chunks on.
    for i in 0..100 {
        text.push_str(&format!("filler {i}\n"));
    }
    text.push_str(&format!("later = {}\n", aws_key(2)));
    assert!(start < chunk && start + 20 > chunk);

    let report = sources_with(small_chunks(chunk, 256)).scan_reader(text.as_bytes(), &mut ());
    assert_eq!(report.findings.len(), 2);
    let first = &report.findings[0];
    assert_eq!(first.finding.secret.expose(), aws_key(1));
    assert_eq!(first.location.line, 3);
    assert_eq!(
        first.location.column,
        start - "first line\nsecond line\n".len() + 1
    );
    assert_eq!(first.finding.byte_range, start..start + 20);
    let second = &report.findings[1];
    assert_eq!(second.finding.secret.expose(), aws_key(2));
    assert_eq!(
        (second.location.line, second.location.column),
        (104, 9),
        "{text:?}"
    );
}

#[test]
fn chunked_scans_equal_whole_scans() {
    let text = text_with_secrets(2000, 37);
    let whole = spots_whole(&text);
    assert_eq!(whole.len(), 2000 / 37);
    for (size, overlap) in [
        (100, 64),
        (333, 100),
        (1000, 200),
        (4096, 1024),
        (50_000, 4096),
    ] {
        assert_eq!(
            spots_chunked(&text, small_chunks(size, overlap)),
            whole,
            "chunk {size}, overlap {overlap}"
        );
    }
}

#[test]
fn a_long_line_is_counted_across_chunks() {
    // One line, many chunks: the column keeps counting.
    let mut text = "é".repeat(3000);
    let start = text.len();
    text.push_str(&format!(" {}", aws_key(3)));
    let report = sources_with(small_chunks(512, 128)).scan_reader(text.as_bytes(), &mut ());
    assert_eq!(report.findings.len(), 1);
    let loc = &report.findings[0].location;
    assert_eq!(
        (loc.line, loc.column, loc.char_column),
        (1, start + 2, 3002)
    );
}

#[test]
fn a_private_key_block_across_a_boundary_is_found_once() {
    let mut text = String::from("config:\n");
    text.push_str(&"# padding line\n".repeat(200));
    let start = text.len();
    text.push_str(PRIVATE_KEY);
    text.push_str(&"# more padding\n".repeat(300));
    let whole = spots_whole(&text);
    assert_eq!(whole.len(), 1);
    assert_eq!(whole[0].1, 202);
    // A boundary falls 100 or 300 bytes into the block, which is owned by
    // the second or third chunk.
    for (size, chunks_before) in [((start + 100) / 2, 2), ((start + 300) / 3, 3)] {
        assert!(start < size * chunks_before && size * chunks_before < start + PRIVATE_KEY.len());
        assert_eq!(spots_chunked(&text, small_chunks(size, 1024)), whole);
    }
}

#[test]
fn files_are_chunked_too() {
    let dir = tempfile::tempdir().unwrap();
    let text = text_with_secrets(500, 50);
    write(dir.path(), "big.txt", &text);
    let whole = spots_whole(&text);
    let report = sources_with(small_chunks(700, 300)).scan_paths(&[dir.path()], &mut ());
    let got: Vec<Spot> = report
        .findings
        .into_iter()
        .map(|f| {
            let f = f.finding;
            (f.rule_id, f.line, f.column, f.byte_range, f.fingerprint)
        })
        .collect();
    assert_eq!(got, whole);
}
