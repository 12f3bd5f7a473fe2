//! The in-memory buffer of a session: lines admitted (or dropped when the disk is behind),
//! frames kept raw and rendered to JSON lines when written out.

use std::io::Write as _;
use std::time::Duration;

use crate::session::event::micros;

use super::options::MAX_BUFFERED_BYTES;

/// Takes a line of about `len` bytes at `at` into `b`: its time (never before the last
/// line's), or `None` when the session's file has ended or the buffer is full (the line is
/// counted as dropped, and a `dropped` line reports it before the next line that fits).
pub(super) fn admit(b: &mut Buffer, at: Duration, len: usize) -> Option<u64> {
    if b.ended {
        return None;
    }
    let t = micros(at).max(b.last_t);
    b.last_t = t;
    if b.bytes.len() + len + 64 > MAX_BUFFERED_BYTES {
        b.dropped += 1;
        return None;
    }
    if b.dropped > 0 {
        let dropped = std::mem::take(&mut b.dropped);
        let _ = writeln!(
            b.bytes,
            "[{t},\"=\",\"dropped\",{{\"lines\":{dropped},\"why\":\"the disk fell behind\"}}]"
        );
    }
    Some(t)
}

/// A buffer kept between flushes is freed when a flush used less than an eighth of it (and it
/// is larger than this): what a session that has gone quiet keeps allocated.
pub(super) const KEEP_IDLE_BUFFER_BYTES: usize = 64 << 10;

/// A session's buffer holding at least this much when written out is busy: it is swapped
/// with the writer's spare rather than copied, so that both keep their allocations.
pub(super) const BUSY_BUFFER_BYTES: usize = 64 << 10;

/// A quiet session's buffer is freed after a write when it has grown past this: 10,000
/// sessions that each once received a long answer would otherwise keep that much each.
pub(super) const QUIET_BUFFER_BYTES: usize = 4 << 10;

/// Takes a session's buffered lines (`bytes`, the session's buffer, locked) into the
/// writer's `spare` (empty): a busy session's buffer is swapped with it (both keep their
/// allocations: a fast stream writes through two buffers that stay in the CPU's cache), a
/// quiet one's lines are copied, and its buffer freed when it has grown larger than a quiet
/// session needs.
pub(super) fn take_lines(bytes: &mut Vec<u8>, spare: &mut Vec<u8>) {
    if bytes.len() >= BUSY_BUFFER_BYTES {
        std::mem::swap(bytes, spare);
        return;
    }
    spare.extend_from_slice(bytes);
    bytes.clear();
    if bytes.capacity() > QUIET_BUFFER_BYTES {
        *bytes = Vec::new();
    }
}

/// Frees `buffer` (just written out, not yet cleared) when it was mostly unused.
pub(super) fn shrink_when_idle(buffer: &mut Vec<u8>) {
    if buffer.capacity() > KEEP_IDLE_BUFFER_BYTES && buffer.len() < buffer.capacity() / 8 {
        *buffer = Vec::new();
    }
}

/// Starts a text frame kept raw in a session's buffer, where every other entry is a line,
/// which starts with `[`: this byte, the time (`u64`, little-endian), the direction byte, the
/// length (`u32`, little-endian) and the text.
pub(super) const RAW_TEXT: u8 = 0;
/// Bytes of a raw text frame before its text.
pub(super) const RAW_TEXT_HEAD: usize = 14;

/// Appends a text frame, raw, to a session's buffer (see `RAW_TEXT`).
pub(super) fn push_raw_text(bytes: &mut Vec<u8>, t: u64, dir: u8, text: &str) {
    // Frames are far smaller than 4 GiB (`connect::MAX_MESSAGE_BYTES`); a longer one would be
    // cut, not misread.
    let len = u32::try_from(text.len()).unwrap_or(u32::MAX);
    bytes.reserve(RAW_TEXT_HEAD + len as usize);
    bytes.push(RAW_TEXT);
    bytes.extend_from_slice(&t.to_le_bytes());
    bytes.push(dir);
    bytes.extend_from_slice(&len.to_le_bytes());
    bytes.extend_from_slice(&text.as_bytes()[..len as usize]);
}

/// Starts an SSE event kept raw in a session's buffer (as `RAW_TEXT`): this byte, the time,
/// the direction byte, the event name's length and the data's (`u32`s, little-endian), the
/// name and the data.
pub(super) const RAW_SSE: u8 = 1;
/// Bytes of a raw SSE event before its name.
pub(super) const RAW_SSE_HEAD: usize = 18;

/// Appends an SSE event, raw, to a session's buffer (see `RAW_SSE`).
pub(super) fn push_raw_sse(bytes: &mut Vec<u8>, t: u64, dir: u8, event: &str, data: &str) {
    // As `push_raw_text`: an event's parts are far smaller than 4 GiB (the SSE framing
    // refuses events over 1 MiB).
    let event_len = u32::try_from(event.len()).unwrap_or(u32::MAX);
    let data_len = u32::try_from(data.len()).unwrap_or(u32::MAX);
    bytes.reserve(RAW_SSE_HEAD + event_len as usize + data_len as usize);
    bytes.push(RAW_SSE);
    bytes.extend_from_slice(&t.to_le_bytes());
    bytes.push(dir);
    bytes.extend_from_slice(&event_len.to_le_bytes());
    bytes.extend_from_slice(&data_len.to_le_bytes());
    bytes.extend_from_slice(&event.as_bytes()[..event_len as usize]);
    bytes.extend_from_slice(&data.as_bytes()[..data_len as usize]);
}

/// Renders a session's buffer as the recording's lines: lines as they are, a raw text frame
/// as its `[t,"<","text","…"]` line, a raw SSE event as its
/// `[t,"<","sse",{"event":"…","data":"…"}]` line.
pub(super) fn render(buffer: &[u8], out: &mut Vec<u8>) {
    let mut rest = buffer;
    while let Some(&first) = rest.first() {
        if first == RAW_SSE && rest.len() >= RAW_SSE_HEAD {
            let (head, tail) = rest.split_at(RAW_SSE_HEAD);
            let event_len = le_u32(&head[10..14]);
            let data_len = le_u32(&head[14..18]);
            let (event, tail) = tail.split_at(event_len.min(tail.len()));
            let (data, after) = tail.split_at(data_len.min(tail.len()));
            out.reserve(event.len() + data.len() + 48);
            line_start(out, head, b"sse\",{\"event\":\"");
            escape_json_into(out, event);
            out.extend_from_slice(b"\",\"data\":\"");
            escape_json_into(out, data);
            out.extend_from_slice(b"\"}]\n");
            rest = after;
        } else if first == RAW_TEXT && rest.len() >= RAW_TEXT_HEAD {
            let (head, tail) = rest.split_at(RAW_TEXT_HEAD);
            let (text, after) = tail.split_at(le_u32(&head[10..14]).min(tail.len()));
            out.reserve(text.len() + 40);
            line_start(out, head, b"text\",\"");
            escape_json_into(out, text);
            out.extend_from_slice(b"\"]\n");
            rest = after;
        } else {
            let end = memchr::memchr(b'\n', rest).map_or(rest.len(), |i| i + 1);
            out.extend_from_slice(&rest[..end]);
            rest = &rest[end..];
        }
    }
}

/// Writes a raw entry's line up to its kind: `[`, the time and direction of its `head` (as
/// `RAW_TEXT` and `RAW_SSE` lay them out), then `kind` (the kind's name and what follows).
fn line_start(out: &mut Vec<u8>, head: &[u8], kind: &[u8]) {
    let t = u64::from_le_bytes(head[1..9].try_into().unwrap_or_default());
    out.push(b'[');
    out.extend_from_slice(itoa::Buffer::new().format(t).as_bytes());
    out.extend_from_slice(b",\"");
    out.push(head[9]);
    out.extend_from_slice(b"\",\"");
    out.extend_from_slice(kind);
}

/// A little-endian `u32` length from its 4 bytes.
fn le_u32(bytes: &[u8]) -> usize {
    u32::from_le_bytes(bytes.try_into().unwrap_or_default()) as usize
}

/// How each byte is escaped in a JSON string: 0 not at all, `0xff` as `\u00XX`, else as a
/// backslash and this byte.
pub(super) static JSON_ESCAPES: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut byte = 0;
    while byte < 0x20 {
        table[byte] = 0xff;
        byte += 1;
    }
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table[b'\n' as usize] = b'n';
    table[b'\r' as usize] = b'r';
    table[b'\t' as usize] = b't';
    table[0x08] = b'b';
    table[0x0c] = b'f';
    table
};

/// Appends `text` escaped as the inside of a JSON string, as serde_json escapes it.
///
/// A frame is JSON, full of quotes at no fixed places, so a branch a byte on whether to
/// escape it is mispredicted every few bytes: each byte is written with no branch (its
/// escaped form takes one more byte), into room for the worst case. A control byte other
/// than the usual five (`\u00XX`, six bytes) sends the frame to the plain loop instead.
pub(super) fn escape_json_into(out: &mut Vec<u8>, text: &[u8]) {
    let start = out.len();
    out.resize(start + 2 * text.len() + 2, 0);
    let room = &mut out[start..];
    let (mut written, mut rare) = (0, false);
    for &byte in text {
        let escape = JSON_ESCAPES[usize::from(byte)];
        rare |= escape == 0xff;
        let escaped = escape != 0;
        room[written] = if escaped { b'\\' } else { byte };
        room[written + 1] = escape;
        written += 1 + usize::from(escaped);
    }
    out.truncate(start + written);
    if rare {
        out.truncate(start);
        escape_json_into_slowly(out, text);
    }
}

/// `escape_json_into`, a byte at a time, for text with control bytes in it.
pub(super) fn escape_json_into_slowly(out: &mut Vec<u8>, text: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for &byte in text {
        match JSON_ESCAPES[usize::from(byte)] {
            0 => out.push(byte),
            0xff => {
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(byte >> 4)]);
                out.push(HEX[usize::from(byte & 0xf)]);
            }
            short => out.extend_from_slice(&[b'\\', short]),
        }
    }
}

/// Lines waiting to be written, and what the tap needs to keep the file in order.
#[derive(Debug, Default)]
pub(super) struct Buffer {
    pub(super) bytes: Vec<u8>,
    /// The last `t_us` written: lines never go back in time.
    pub(super) last_t: u64,
    /// The `end` line is written: later lines are ignored.
    pub(super) ended: bool,
    /// Lines refused because the buffer was full, not yet reported.
    pub(super) dropped: u64,
    /// The writer thread was asked to write this buffer out early and has not yet.
    pub(super) flush_asked: bool,
    /// The session is on the writer's list of buffers to write (`Inner::dirty`).
    pub(super) queued: bool,
}
