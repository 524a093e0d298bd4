//! Standard input, through any `impl Read`.

use std::io::{self, Read};

use leash_scan_sources::Source;

use crate::{aws_key, secrets, sources};

#[test]
fn reader_findings_are_located_as_stdin() {
    let text = format!("a\nb\n  token={}\n", aws_key(1));
    let report = sources().scan_reader(text.as_bytes(), &mut ());
    assert_eq!(secrets(&report), vec![aws_key(1)]);
    let f = &report.findings[0];
    assert_eq!(f.location.source, Source::Stdin);
    assert_eq!(f.location.path, "stdin");
    assert_eq!((f.location.line, f.location.column), (3, 9));
    assert_eq!(report.stats.items, 1);
    assert_eq!(report.stats.bytes, text.len() as u64);
}

#[test]
fn binary_input_is_skipped() {
    let mut input = vec![0u8; 16];
    input.extend_from_slice(aws_key(1).as_bytes());
    let report = sources().scan_reader(&input[..], &mut ());
    assert!(report.findings.is_empty());
    assert_eq!(report.stats.skipped_binary, 1);
    assert_eq!(report.stats.items, 0);
}

/// Gives its bytes, then fails.
struct Failing {
    data: io::Cursor<Vec<u8>>,
}

impl Read for Failing {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.data.read(buf)? {
            0 => Err(io::Error::other("pipe broke")),
            n => Ok(n),
        }
    }
}

#[test]
fn a_read_error_keeps_earlier_findings_and_is_reported() {
    let text = format!("key = {}\n", aws_key(2));
    let reader = Failing {
        data: io::Cursor::new(text.into_bytes()),
    };
    let report = sources().scan_reader(reader, &mut ());
    assert_eq!(secrets(&report), vec![aws_key(2)]);
    assert_eq!(report.stats.errors.len(), 1);
    assert_eq!(report.stats.errors[0].path, "stdin");
    assert_eq!(report.stats.errors[0].reason, "pipe broke");
}
