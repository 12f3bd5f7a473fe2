//! Server-Sent Events framing (the WHATWG event-stream format), shared by every protocol that
//! streams its answer over HTTP: events split on blank lines with any line ending, across any
//! split of the reads, `event:` names and `data:` lines joined by `\n`, a single data line
//! borrowed, not copied. Bounded: one event may hold at most `MAX_EVENT_BYTES`; a longer one
//! is refused and skipped, never buffered. No I/O.

use std::borrow::Cow;

/// The largest Server-Sent Event accepted (all its lines together): 1 MiB.
pub const MAX_EVENT_BYTES: usize = 1 << 20;

/// One Server-Sent Event: its `event:` name, if any, and its `data:` lines joined by `\n`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SseEvent<'a> {
    pub event: Option<&'a str>,
    /// Borrowed from the buffer when the event had one `data:` line (the usual case).
    pub data: Cow<'a, str>,
}

/// Why an event was refused. Never fatal to a stream: it is counted and the stream goes on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    #[error("a Server-Sent Event over {} KiB was refused", MAX_EVENT_BYTES / 1024)]
    TooLarge,
    #[error("a Server-Sent Event that is not UTF-8 was refused")]
    NotUtf8,
}

/// Splits a byte stream into Server-Sent Events. Lines may end in `\n`, `\r\n` or `\r`;
/// comments (`:`) and the `id:`/`retry:` fields are ignored. Bounded: an event longer than
/// `MAX_EVENT_BYTES` is refused once and its bytes dropped up to the blank line that ends it.
#[derive(Clone, Debug, Default)]
pub struct SseBuffer {
    buf: Vec<u8>,
    /// Bytes of `buf` already handed out.
    consumed: usize,
    /// Dropping the rest of an over-long event.
    skipping: bool,
    /// The stream ended: a last event without its blank line still counts.
    finished: bool,
}

impl SseBuffer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes received and not yet handed out as events.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.consumed
    }

    /// Adds bytes from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.consumed > 0 {
            self.buf.drain(..self.consumed);
            self.consumed = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The stream ended: what is left is the last event, even without its blank line.
    pub fn finish(&mut self) {
        self.finished = true;
    }

    /// The next complete event, if one is buffered.
    pub fn next_event(&mut self) -> Option<Result<SseEvent<'_>, SseError>> {
        let (start, block_len) = loop {
            let start = self.consumed;
            let rest = &self.buf[start..];
            let Some((block_len, consumed_len)) = find_event_end(rest, self.finished) else {
                if rest.len() > MAX_EVENT_BYTES {
                    // Drop what is buffered; keep dropping up to the end of this event.
                    let was_skipping = std::mem::replace(&mut self.skipping, true);
                    self.buf.clear();
                    self.consumed = 0;
                    return (!was_skipping).then_some(Err(SseError::TooLarge));
                }
                return None;
            };
            self.consumed = start + consumed_len;
            if self.skipping {
                self.skipping = false;
                continue;
            }
            if block_len > MAX_EVENT_BYTES {
                return Some(Err(SseError::TooLarge));
            }
            // Only comments or fields without data: nothing to dispatch.
            if has_data_line(&self.buf[start..start + block_len]) {
                break (start, block_len);
            }
        };
        parse_block(&self.buf[start..start + block_len]).transpose()
    }
}

/// Whether an event block has a `data` field.
fn has_data_line(block: &[u8]) -> bool {
    block
        .split(|b| *b == b'\n' || *b == b'\r')
        .any(|line| line == b"data" || line.starts_with(b"data:"))
}

/// Where the first event of `bytes` ends: (bytes of its lines, bytes to consume including the
/// blank line). `None` when no blank line has come yet (and the stream goes on).
fn find_event_end(bytes: &[u8], finished: bool) -> Option<(usize, usize)> {
    let mut line_start = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'\n' || b == b'\r' {
            let line_end = i;
            let mut next = i + 1;
            if b == b'\r' {
                match bytes.get(i + 1) {
                    Some(b'\n') => next = i + 2,
                    Some(_) => {}
                    // A `\r` at the end may be the first half of `\r\n`: wait for more.
                    None if !finished => return None,
                    None => {}
                }
            }
            if line_end == line_start {
                return Some((line_start, next));
            }
            line_start = next;
            i = next;
        } else {
            i += 1;
        }
    }
    if finished && !bytes.is_empty() {
        return Some((bytes.len(), bytes.len()));
    }
    None
}

/// The fields of one event block (its lines, without the blank line).
fn parse_block(block: &[u8]) -> Result<Option<SseEvent<'_>>, SseError> {
    let text = std::str::from_utf8(block).map_err(|_| SseError::NotUtf8)?;
    let mut event = None;
    let mut data: Option<Cow<'_, str>> = None;
    for line in text.split(['\n', '\r']).filter(|l| !l.is_empty()) {
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "data" => {
                data = Some(match data {
                    None => Cow::Borrowed(value),
                    Some(before) => {
                        let mut joined = before.into_owned();
                        joined.push('\n');
                        joined.push_str(value);
                        Cow::Owned(joined)
                    }
                });
            }
            "event" => event = Some(value),
            _ => {}
        }
    }
    Ok(data.map(|data| SseEvent { event, data }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(input: &[&[u8]]) -> Vec<Result<(Option<String>, String), SseError>> {
        let mut buffer = SseBuffer::new();
        let mut out = Vec::new();
        for piece in input {
            buffer.push(piece);
            while let Some(event) = buffer.next_event() {
                out.push(event.map(|e| (e.event.map(str::to_owned), e.data.into_owned())));
            }
        }
        buffer.finish();
        while let Some(event) = buffer.next_event() {
            out.push(event.map(|e| (e.event.map(str::to_owned), e.data.into_owned())));
        }
        out
    }

    #[test]
    fn events_split_on_blank_lines_with_any_line_ending() {
        let got = events(&[b"data: a\n\ndata: b\r\n\r\ndata: c\r\rdata:d\n\n"]);
        let data: Vec<String> = got.into_iter().map(|e| e.unwrap().1).collect();
        assert_eq!(data, ["a", "b", "c", "d"]);
    }

    #[test]
    fn events_survive_any_split_across_reads() {
        let stream =
            b": comment\nevent: error\ndata: {\"x\":1}\r\n\r\ndata: line1\ndata: line2\n\n";
        for cut in 0..stream.len() {
            let got = events(&[&stream[..cut], &stream[cut..]]);
            assert_eq!(
                got,
                vec![
                    Ok((Some("error".into()), "{\"x\":1}".into())),
                    Ok((None, "line1\nline2".into()))
                ],
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn a_last_event_without_its_blank_line_still_counts() {
        assert_eq!(
            events(&[b"data: [DONE]"]),
            vec![Ok((None, "[DONE]".into()))]
        );
    }

    #[test]
    fn single_data_lines_are_borrowed() {
        let mut buffer = SseBuffer::new();
        buffer.push(b"data: hello\n\n");
        let event = buffer.next_event().unwrap().unwrap();
        assert!(matches!(event.data, Cow::Borrowed("hello")));
    }

    #[test]
    fn over_long_events_are_refused_and_skipped() {
        let mut buffer = SseBuffer::new();
        buffer.push(b"data: ");
        let big = vec![b'x'; 256 * 1024];
        let mut refused = 0;
        for _ in 0..5 {
            buffer.push(&big);
            while let Some(e) = buffer.next_event() {
                assert_eq!(e, Err(SseError::TooLarge));
                refused += 1;
            }
            assert!(buffer.pending() <= MAX_EVENT_BYTES + big.len());
        }
        buffer.push(b"\n\ndata: after\n\n");
        let mut after = Vec::new();
        while let Some(e) = buffer.next_event() {
            after.push(e.map(|e| e.data.into_owned()));
        }
        assert_eq!(refused, 1, "refused once");
        assert_eq!(after, vec![Ok("after".to_owned())]);
    }
}
