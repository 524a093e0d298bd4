//! A small Server-Sent Events parser (the WHATWG `text/event-stream`
//! grammar): `id:`, `event:`, multi-line `data:`, comments, `retry:`, and
//! lines ending in LF, CRLF or a lone CR, split anywhere across chunks.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The last event id in force when the event was dispatched (the value a
    /// reconnect sends as `Last-Event-ID`), if any was ever set.
    pub id: Option<String>,
    /// The event type; `message` when the event named none.
    pub event: String,
    /// The data lines joined with `\n`.
    pub data: String,
}

/// Why a stream could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    #[error("an event-stream line is longer than {0} bytes")]
    LineTooLong(usize),
    #[error("an event-stream line is not UTF-8")]
    NotUtf8,
}

/// Incremental parser: feed it bytes as they arrive, take events out.
#[derive(Debug, Default)]
pub struct SseParser {
    buf: Vec<u8>,
    /// The previous chunk ended in CR: a LF at the start of the next one
    /// belongs to that line ending.
    after_cr: bool,
    started: bool,
    event: String,
    data: String,
    has_data: bool,
    last_id: Option<String>,
    retry_ms: Option<u64>,
}

/// Longest line accepted (an event is one revocation record, well below it).
pub const MAX_LINE: usize = 64 * 1024;

impl SseParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// The last event id seen so far (also from events not yet dispatched).
    pub fn last_id(&self) -> Option<&str> {
        self.last_id.as_deref()
    }

    /// The reconnection delay the server asked for with `retry:`, if any.
    pub fn retry_ms(&self) -> Option<u64> {
        self.retry_ms
    }

    /// Feed bytes; returns the events they complete.
    pub fn push(&mut self, mut bytes: &[u8]) -> Result<Vec<SseEvent>, SseError> {
        let mut out = Vec::new();
        if self.after_cr {
            self.after_cr = false;
            if let Some(rest) = bytes.strip_prefix(b"\n") {
                bytes = rest;
            }
        }
        while let Some(i) = bytes.iter().position(|b| *b == b'\n' || *b == b'\r') {
            self.buf.extend_from_slice(&bytes[..i]);
            if self.buf.len() > MAX_LINE {
                return Err(SseError::LineTooLong(MAX_LINE));
            }
            let line = std::mem::take(&mut self.buf);
            self.line(&line, &mut out)?;
            if bytes[i] == b'\r' {
                match bytes.get(i + 1) {
                    Some(b'\n') => bytes = &bytes[i + 2..],
                    Some(_) => bytes = &bytes[i + 1..],
                    None => {
                        self.after_cr = true;
                        bytes = &[];
                    }
                }
            } else {
                bytes = &bytes[i + 1..];
            }
        }
        self.buf.extend_from_slice(bytes);
        if self.buf.len() > MAX_LINE {
            return Err(SseError::LineTooLong(MAX_LINE));
        }
        Ok(out)
    }

    fn line(&mut self, raw: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        let mut line = std::str::from_utf8(raw).map_err(|_| SseError::NotUtf8)?;
        if !self.started {
            self.started = true;
            line = line.strip_prefix('\u{feff}').unwrap_or(line);
        }
        if line.is_empty() {
            self.dispatch(out);
            return Ok(());
        }
        if line.starts_with(':') {
            return Ok(()); // a comment
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => value.clone_into(&mut self.event),
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "id" if !value.contains('\0') => self.last_id = Some(value.to_owned()),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                self.retry_ms = value.parse().ok();
            }
            _ => {} // unknown fields are ignored
        }
        Ok(())
    }

    fn dispatch(&mut self, out: &mut Vec<SseEvent>) {
        let event = std::mem::take(&mut self.event);
        if !self.has_data {
            return;
        }
        self.has_data = false;
        out.push(SseEvent {
            id: self.last_id.clone(),
            event: if event.is_empty() {
                "message".to_owned()
            } else {
                event
            },
            data: std::mem::take(&mut self.data),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut p = SseParser::new();
        chunks.iter().flat_map(|c| p.push(c).unwrap()).collect()
    }

    fn ev(id: Option<&str>, event: &str, data: &str) -> SseEvent {
        SseEvent {
            id: id.map(str::to_owned),
            event: event.to_owned(),
            data: data.to_owned(),
        }
    }

    #[test]
    fn fields_comments_and_multiline_data() {
        let got = all(&[
            b": hello\nid: 7\nevent: revoked\ndata: {\"a\":\ndata:1}\n\n:keep-alive\n\ndata: x\n\n",
        ]);
        assert_eq!(
            got,
            vec![
                ev(Some("7"), "revoked", "{\"a\":\n1}"),
                ev(Some("7"), "message", "x")
            ]
        );
    }

    #[test]
    fn crlf_and_lone_cr_split_across_chunks() {
        let got = all(&[
            b"id: 1\r",
            b"\nevent: head\r\ndata: {}\r",
            b"\r",
            b"\nid: 2\rdata: y\r\r",
        ]);
        assert_eq!(
            got,
            vec![ev(Some("1"), "head", "{}"), ev(Some("2"), "message", "y")]
        );
    }

    #[test]
    fn every_split_point_gives_the_same_events() {
        let text: &[u8] = b"\xef\xbb\xbfid: 10\r\nevent: revoked\r\ndata: one\r\ndata: two\r\n\r\nevent: head\nid: 11\ndata: {\"head\":11}\n\n";
        let whole = all(&[text]);
        assert_eq!(whole.len(), 2);
        assert_eq!(whole[0], ev(Some("10"), "revoked", "one\ntwo"));
        for i in 0..text.len() {
            assert_eq!(all(&[&text[..i], &text[i..]]), whole, "split at {i}");
        }
    }

    #[test]
    fn event_without_data_is_not_dispatched_but_its_id_sticks() {
        let mut p = SseParser::new();
        assert!(p.push(b"id: 5\nevent: head\n\n").unwrap().is_empty());
        assert_eq!(p.last_id(), Some("5"));
        assert_eq!(
            p.push(b"data: z\n\n").unwrap(),
            vec![ev(Some("5"), "message", "z")]
        );
    }

    #[test]
    fn field_without_colon_and_value_without_space() {
        let got = all(&[b"data\ndata:x\nretry: 250\nretry: soon\n\n"]);
        assert_eq!(got, vec![ev(None, "message", "\nx")]);
    }

    #[test]
    fn id_with_nul_is_ignored_and_overlong_lines_are_refused() {
        let mut p = SseParser::new();
        p.push(b"id: 3\nid: a\0b\ndata: q\n\n").unwrap();
        assert_eq!(p.last_id(), Some("3"));
        assert_eq!(p.retry_ms(), None);
        let long = vec![b'a'; MAX_LINE + 1];
        assert_eq!(p.push(&long), Err(SseError::LineTooLong(MAX_LINE)));
    }
}
