//! Scanning input of any length in bounded memory: overlapping chunks.
//!
//! Input is read into a buffer of at most `overlap + chunk_size + overlap`
//! bytes. Each scan of the buffer *owns* the `chunk_size` bytes in its
//! middle and keeps only the findings that start there; the overlap on each
//! side is context, so a rule's window is never cut short near a boundary.
//! The next buffer starts `overlap` bytes before the end of the owned
//! stretch. Lines and columns are shifted by what was dropped before the
//! buffer, so they count from the start of the input.

use std::io::{self, Read};

use leash_scan::{BINARY_SNIFF_LEN, Finding, ScanContext, Scanner};

use crate::{Options, Progress};

/// What scanning one input gave.
#[derive(Debug, Default)]
pub(crate) struct Scanned {
    /// Findings with line, column and byte range counted from the start of
    /// the input, each with its column in code points.
    pub(crate) findings: Vec<(Finding, usize)>,
    /// Bytes scanned.
    pub(crate) bytes: u64,
    /// The input was binary (a NUL in its first 8 KiB) and not scanned.
    pub(crate) binary: bool,
}

/// Line and column of the first byte of the buffer.
#[derive(Debug, Clone, Copy, Default)]
struct Position {
    /// Newlines before it.
    newlines: usize,
    /// Bytes between the last newline before it and it.
    column_bytes: usize,
    /// The same in code points.
    column_chars: usize,
}

impl Position {
    /// Move past `dropped`.
    fn advance(&mut self, dropped: &[u8]) {
        match dropped.iter().rposition(|&b| b == b'\n') {
            Some(last) => {
                self.newlines += dropped.iter().filter(|&&b| b == b'\n').count();
                let tail = &dropped[last + 1..];
                self.column_bytes = tail.len();
                self.column_chars = chars(tail);
            }
            None => {
                self.column_bytes += dropped.len();
                self.column_chars += chars(dropped);
            }
        }
    }
}

/// Code points in `bytes` (UTF-8 continuation bytes do not count; invalid
/// UTF-8 counts roughly one per byte).
fn chars(bytes: &[u8]) -> usize {
    bytes.iter().filter(|&&b| (b as i8) >= -0x40).count()
}

/// The 1-based code-point column of the byte at `at`, whose 1-based byte
/// column is `column`.
fn char_column(bytes: &[u8], at: usize, column: usize) -> usize {
    let line_start = at.saturating_sub(column.saturating_sub(1));
    bytes.get(line_start..at).map_or(0, chars) + 1
}

/// Read until `buf` holds `want` more bytes or the input ends. Returns
/// whether it ended.
fn fill(reader: &mut dyn Read, buf: &mut Vec<u8>, want: usize) -> io::Result<bool> {
    let got = reader.take(want as u64).read_to_end(buf)?;
    Ok(got < want)
}

/// Scan everything `reader` gives. A read error ends the input: what was
/// read before it is scanned, and the error is returned beside the result.
pub(crate) fn scan_stream(
    scanner: &Scanner,
    ctx: &ScanContext<'_>,
    options: &Options,
    reader: &mut dyn Read,
    progress: &mut dyn Progress,
) -> (Scanned, Option<io::Error>) {
    let size = options.chunk_size.max(1);
    let overlap = options.chunk_overlap;
    let mut out = Scanned::default();
    let mut buf: Vec<u8> = Vec::new();
    let mut error = None;
    // Absolute offset of buf[0], and where the owned stretch starts.
    let mut base = 0u64;
    let mut owned_from = 0u64;
    let mut position = Position::default();
    // End of the last finding kept, so a finding is never kept twice.
    let mut kept_until = 0u64;

    // Sniff before reading more: a huge binary file is not read whole.
    let mut ended = match fill(reader, &mut buf, BINARY_SNIFF_LEN) {
        Ok(ended) => ended,
        Err(e) => {
            error = Some(e);
            true
        }
    };
    if buf.contains(&0) {
        out.binary = true;
        return (out, error);
    }

    loop {
        let lead = to_usize(owned_from - base);
        let target = lead + size + overlap;
        if !ended && buf.len() < target {
            let want = target - buf.len();
            match fill(reader, &mut buf, want) {
                Ok(e) => ended = e,
                Err(e) => {
                    error = Some(e);
                    ended = true;
                }
            }
        }
        let first = base == 0;
        if !first {
            // Binary-ness was decided on the first bytes of the input; a
            // NUL near the start of a later buffer must not hide it.
            let sniff = buf.len().min(BINARY_SNIFF_LEN);
            for b in &mut buf[..sniff] {
                if *b == 0 {
                    *b = b' ';
                }
            }
        }
        // The sniff may have read more than one buffer's worth.
        let last = ended && buf.len() <= target;
        let view = &buf[..buf.len().min(target)];
        let owned_to = if last {
            u64::MAX
        } else {
            owned_from + size as u64
        };
        for mut f in scanner.scan(view, ctx) {
            if f.line == 0 {
                // A rule on the path alone: once per input.
                if first && owned_from == 0 {
                    out.findings.push((f, 0));
                }
                continue;
            }
            let start = base + f.byte_range.start as u64;
            let end = base + f.byte_range.end as u64;
            if start < owned_from || start >= owned_to || start < kept_until {
                continue;
            }
            let char_column = if f.line == 1 {
                position.column_chars
                    + char_column(view, f.byte_range.start, f.byte_range.start + 1)
            } else {
                char_column(view, f.byte_range.start, f.column)
            };
            if f.line == 1 {
                f.column += position.column_bytes;
            }
            f.line += position.newlines;
            f.byte_range = to_usize(start)..to_usize(end);
            kept_until = kept_until.max(end);
            out.findings.push((f, char_column));
        }
        let scanned_to = owned_to.min(base + view.len() as u64);
        let scanned = scanned_to.saturating_sub(owned_from);
        out.bytes += scanned;
        progress.bytes_scanned(scanned);
        if last {
            return (out, error);
        }
        let next_base = base.max(owned_to.saturating_sub(overlap as u64));
        let drop = to_usize(next_base - base);
        position.advance(&buf[..drop]);
        buf.drain(..drop);
        base = next_base;
        owned_from = owned_to;
    }
}

/// Scan bytes already in memory (a git blob): whole when they fit in one
/// chunk, else through [`scan_stream`].
pub(crate) fn scan_bytes(
    scanner: &Scanner,
    ctx: &ScanContext<'_>,
    options: &Options,
    bytes: &[u8],
    progress: &mut dyn Progress,
) -> Scanned {
    if bytes.len() > options.chunk_size.saturating_add(options.chunk_overlap) {
        let mut reader = bytes;
        // Reading a slice cannot fail.
        return scan_stream(scanner, ctx, options, &mut reader, progress).0;
    }
    let report = scanner.scan_report(bytes, ctx);
    if report.stats.skipped_binary {
        return Scanned {
            binary: true,
            ..Scanned::default()
        };
    }
    progress.bytes_scanned(bytes.len() as u64);
    let findings = report
        .findings
        .into_iter()
        .map(|f| {
            let column = if f.line == 0 {
                0
            } else {
                char_column(bytes, f.byte_range.start, f.column)
            };
            (f, column)
        })
        .collect();
    Scanned {
        findings,
        bytes: bytes.len() as u64,
        binary: false,
    }
}

/// Offsets within one buffer fit in `usize`; saturate rather than panic if
/// a 32-bit build ever sees more.
fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn position_tracks_lines_and_columns() {
        let mut p = Position::default();
        p.advance(b"ab\ncd");
        assert_eq!((p.newlines, p.column_bytes, p.column_chars), (1, 2, 2));
        p.advance("é".as_bytes());
        assert_eq!((p.newlines, p.column_bytes, p.column_chars), (1, 4, 3));
        p.advance(b"x\n\nyz");
        assert_eq!((p.newlines, p.column_bytes, p.column_chars), (3, 2, 2));
    }

    #[test]
    fn chars_counts_code_points() {
        assert_eq!(chars("aé€😀".as_bytes()), 4);
    }
}
