//! The properties every parser of outside input keeps, for any bytes: shared by the cargo-fuzz
//! targets (fuzz/fuzz_targets/*.rs) and the short proptest run in tests/parser_properties.rs.
//! Each function panics when a property breaks.
#![allow(dead_code)]

use std::time::Duration;

use relaytop_core::config::ConfigError;
use relaytop_core::config::secret::{Secret, SecretError};
use relaytop_core::protocol::openai_chat::decode::SseDecoder;
use relaytop_core::protocol::openai_chat::{self, SseBuffer, StreamData};
use relaytop_core::protocol::openai_realtime::decode::RealtimeDecoder;
use relaytop_core::protocol::openai_realtime::{ClientEvent, ServerEvent};
use relaytop_core::protocol::relay_v1::decode::Decoder;
use relaytop_core::protocol::relay_v1::{ClientFrame, ServerFrame};
use relaytop_core::record::format;
use relaytop_core::record::reader::{Item, LineReader, Position};
use relaytop_core::session::EventKind;

/// Frames in one input are separated by this byte (never in UTF-8 text).
pub const FRAME_SEPARATOR: u8 = 0xff;

fn frames(data: &[u8]) -> impl Iterator<Item = &str> {
    data.split(|b| *b == FRAME_SEPARATOR)
        .filter_map(|f| std::str::from_utf8(f).ok())
}

/// A Response can never report more `Done`s than requests went out, nor a `Done` without one.
fn check_events(events: &[EventKind], requests: u64) {
    let done = events
        .iter()
        .filter(|e| matches!(e, EventKind::Done(_)))
        .count() as u64;
    assert!(
        done <= requests,
        "{done} responses done for {requests} requests"
    );
}

/// relay/v1: parsing any text never panics; a server or client frame that parses is written
/// back as text that parses to the same frame; the decoder turns any frames into events (a
/// malformed one into `Malformed`), never panicking.
pub fn relay_v1(data: &[u8]) {
    let mut decoder = Decoder::new();
    let mut events = Vec::new();
    let mut requests = 0;
    for (i, text) in frames(data).enumerate() {
        if let Ok(frame) = ServerFrame::parse(text)
            && !matches!(frame, ServerFrame::Unknown { .. })
        {
            let again = frame.to_text();
            let back = ServerFrame::parse(&again)
                .unwrap_or_else(|e| panic!("{text:?} → {again:?} does not parse: {e}"));
            assert_eq!(back, frame, "{text:?} → {again:?}");
        }
        if let Ok(frame) = ClientFrame::parse(text) {
            let again = frame.to_text();
            let back = ClientFrame::parse(&again)
                .unwrap_or_else(|e| panic!("{text:?} → {again:?} does not parse: {e}"));
            assert_eq!(back, frame, "{text:?} → {again:?}");
        }
        let now = Duration::from_millis(i as u64 * 10);
        if i % 7 == 0 && decoder.in_flight().is_none() {
            let (_, sent) = decoder.request_sent(now, "gpt-4.1", 7);
            events.push(sent);
            requests += 1;
        }
        let before = events.len();
        decoder.on_text(now, text, &mut |e| events.push(e));
        if ServerFrame::parse(text).is_err() {
            assert!(
                matches!(events.get(before), Some(EventKind::Malformed { .. })),
                "{text:?} is not a frame and was not reported as malformed"
            );
        }
    }
    check_events(&events, requests);
}

/// The SSE framing: any bytes fed whole or cut at `cuts` give the same events; the decoder
/// too; every event's data goes through the chunk parser without a panic.
pub fn sse(data: &[u8], cuts: &[usize]) {
    fn all(buffer: &mut SseBuffer, out: &mut Vec<String>) {
        while let Some(event) = buffer.next_event() {
            out.push(match event {
                Ok(e) => {
                    let _ = StreamData::parse(e.event, &e.data);
                    format!("{:?} {:?}", e.event, e.data)
                }
                Err(e) => format!("refused: {e}"),
            });
        }
    }
    let mut whole = SseBuffer::new();
    let mut whole_events = Vec::new();
    whole.push(data);
    all(&mut whole, &mut whole_events);
    whole.finish();
    all(&mut whole, &mut whole_events);

    let mut points: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
    points.sort_unstable();
    let mut pieces = Vec::new();
    let mut from = 0;
    for p in points.into_iter().chain([data.len()]) {
        pieces.push(&data[from..p]);
        from = p;
    }
    let mut split = SseBuffer::new();
    let mut split_events = Vec::new();
    for piece in &pieces {
        split.push(piece);
        all(&mut split, &mut split_events);
    }
    split.finish();
    all(&mut split, &mut split_events);
    assert_eq!(whole_events, split_events, "cut into {pieces:?}");

    // The session's decoder: the same events and the same taps, whole or in pieces.
    let decode = |pieces: &[&[u8]]| {
        let mut decoder = SseDecoder::new();
        let mut events = Vec::new();
        let mut taps = Vec::new();
        let (_, sent) = decoder.request_sent(Duration::ZERO, "gpt-4.1", 7);
        events.push(sent);
        let now = Duration::from_millis(5);
        for piece in pieces {
            decoder.on_bytes(now, piece, &mut |e| events.push(e), &mut |w| {
                taps.push(format!("{w:?}"))
            });
        }
        decoder.on_end(now, &mut |e| events.push(e), &mut |w| {
            taps.push(format!("{w:?}"))
        });
        check_events(&events, 1);
        (events, taps)
    };
    assert_eq!(decode(&[data]), decode(&pieces), "cut into {pieces:?}");
    let _ = openai_chat::parse_error_body(data);
}

/// OpenAI Realtime: any text parses or is an error; a client event that parses is written
/// back as text that parses to the same event; the decoder never panics.
pub fn realtime(data: &[u8]) {
    let mut decoder = RealtimeDecoder::new();
    let mut events = Vec::new();
    let mut requests = 0;
    for (i, text) in frames(data).enumerate() {
        let _ = ServerEvent::parse(text);
        if let Ok(event) = ClientEvent::parse(text) {
            let again = event.to_text();
            let back = ClientEvent::parse(&again)
                .unwrap_or_else(|e| panic!("{text:?} → {again:?} does not parse: {e}"));
            assert_eq!(back, event, "{text:?} → {again:?}");
        }
        let now = Duration::from_millis(i as u64 * 10);
        if i % 5 == 0 && decoder.in_flight().is_none() {
            let (_, sent) = decoder.request_sent(now, "gpt-realtime", 7);
            events.push(sent);
            requests += 1;
        }
        decoder.on_text(now, text, &mut |e| events.push(e));
    }
    check_events(&events, requests);
}

/// A recording file of any bytes: reading never fails or panics on the content; every line
/// is a record, skipped, malformed or (only the last, only without its newline) torn; the
/// positions go forward; the tail reader agrees.
pub fn recording(data: &[u8], dir: &std::path::Path) {
    for line in data.split(|b| *b == b'\n') {
        let parsed = format::parse_line(line.trim_ascii());
        if let Ok(record) = &parsed {
            assert_eq!(
                format::line_time(line.trim_ascii()),
                Some(record.t_us),
                "the time of {line:?}"
            );
        }
    }
    let path = dir.join("session.jsonl");
    std::fs::write(&path, data).expect("write the recording");
    let _ = relaytop_core::record::reader::read_header(&path);
    let tail = relaytop_core::record::reader::last_time(&path).expect("the tail reads");

    let lines = data.split(|b| *b == b'\n').count();
    let mut reader = LineReader::new(vec![path.clone()].into(), Position::START);
    let mut last = None::<Position>;
    let mut last_record_time = None;
    let mut torn = false;
    for _ in 0..=lines + 1 {
        let item = reader.next_item().expect("reading a file that exists");
        let at = match &item {
            Item::Record { record, at } => {
                last_record_time = Some(record.t_us);
                *at
            }
            Item::Malformed { at, reason } => {
                assert!(!reason.is_empty());
                *at
            }
            Item::Torn { at } => {
                assert!(
                    !data.ends_with(b"\n"),
                    "a torn line in a file that ends with a newline, at {at:?}"
                );
                torn = true;
                *at
            }
            Item::End => break,
        };
        assert!(!torn || matches!(item, Item::Torn { .. }));
        if let Some(before) = last {
            assert!(
                at.offset > before.offset && at.line > before.line,
                "{at:?} after {before:?}"
            );
        }
        assert!(at.offset < data.len() as u64);
        last = Some(at);
        if torn {
            assert_eq!(reader.next_item().expect("after a torn line"), Item::End);
            break;
        }
    }
    assert_eq!(reader.next_item().expect("at the end"), Item::End);
    if tail.is_some() && !torn {
        // The tail reader finds the last whole event line; the line reader read it too.
        assert!(
            last_record_time.is_some(),
            "the tail found {tail:?}, the reader nothing"
        );
    }
}

fn key(_var: &str) -> Result<Secret, SecretError> {
    Ok(Secret::new("hs_live_FUZZfuzzFUZZfuzz0001"))
}

/// A configuration error says which file, and, when it is about a place, a place in the text.
fn check_error(error: &ConfigError, path: &str, text: &str) {
    let shown = error.to_string();
    assert!(shown.starts_with(path), "{shown}");
    assert!(shown.len() > path.len() + 2, "an empty message: {shown}");
    if let ConfigError::At { line, column, .. } = error {
        // YAML counts a lone `\r` as a line break too (the fuzzer's first finding).
        let lines = text
            .replace("\r\n", "\n")
            .split(['\n', '\r'])
            .count()
            .max(1);
        assert!(
            (1..=lines).contains(line) && *column >= 1,
            "{shown} is outside the text ({lines} lines)"
        );
    }
}

/// relaytop's TOML: any text gives a configuration or an error that says where.
pub fn config_toml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = relaytop_core::config::file::parse(text, "fuzz.toml", &key) {
        check_error(&e, "fuzz.toml", text);
    }
}

/// The canary YAML: any text gives a configuration or an error that says where.
pub fn canary_yaml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = relaytop_core::canary::yaml::parse(text, "fuzz.yaml", &key, &|_| None) {
        check_error(&e, "fuzz.yaml", text);
    }
}
