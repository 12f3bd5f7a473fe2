//! Tests of the writer's lines: raw text frames rendered and escaped as serde_json would,
//! redaction of escaped forms.

use crate::config::secret::Secret;
use crate::record::format::json_string;

use super::buffer::{escape_json_into, push_raw_sse, push_raw_text, render};
use super::redact::Redactor;

#[test]
fn raw_text_frames_render_as_the_lines_serde_json_would_write() {
    let texts = [
        "",
        r#"{"type":"chunk","content":" token"}"#,
        "quote \" backslash \\ slash / tab \t newline \n cr \r bell \u{7} nul \u{0} bs \u{8} ff \u{c} us \u{1f} del \u{7f}",
        "unicode: é 中文 🦀 \u{2028}",
    ];
    let mut buffer = Vec::new();
    let mut expected = String::new();
    for (i, text) in texts.iter().enumerate() {
        let t = u64::MAX - i as u64;
        let dir = if i % 2 == 0 { "<" } else { ">" };
        push_raw_text(&mut buffer, t, dir.as_bytes()[0], text);
        // Lines pushed in between pass through as they are.
        let line = format!("[{i},\"=\",\"marker\",{}]\n", json_string("a\nb"));
        buffer.extend_from_slice(line.as_bytes());
        expected.push_str(&format!(
            "[{t},\"{dir}\",\"text\",{}]\n",
            serde_json::to_string(text).unwrap()
        ));
        expected.push_str(&line);
    }
    let mut out = Vec::new();
    render(&buffer, &mut out);
    assert_eq!(String::from_utf8(out).unwrap(), expected);
}

#[test]
fn raw_sse_events_render_as_the_lines_the_tap_wrote_one_by_one() {
    let events = [
        ("", ""),
        (
            "message_delta",
            r#"{"type":"content_block_delta","delta":{"text":"hé"}}"#,
        ),
        ("ev\"il\n", "data with \u{0} nul, \t tab, 🦀 and \u{2028}"),
    ];
    let mut buffer = Vec::new();
    let mut expected = String::new();
    for (i, (event, data)) in events.iter().enumerate() {
        let t = 1_000 + i as u64;
        let dir = if i % 2 == 0 { "<" } else { ">" };
        push_raw_sse(&mut buffer, t, dir.as_bytes()[0], event, data);
        push_raw_text(&mut buffer, t, b'<', data);
        // What the tap wrote for an SSE event before it was staged (`SessionTap::wire`).
        let line = format!(
            "[{t},\"{dir}\",\"sse\",{{\"event\":{},\"data\":{}}}]\n",
            json_string(event),
            json_string(data)
        );
        expected.push_str(&line);
        expected.push_str(&format!("[{t},\"<\",\"text\",{}]\n", json_string(data)));
    }
    let mut out = Vec::new();
    render(&buffer, &mut out);
    assert_eq!(String::from_utf8(out).unwrap(), expected);
}

#[test]
fn every_character_is_escaped_as_serde_json_escapes_it() {
    let mut all: String = (0u32..0x250).filter_map(char::from_u32).collect();
    all.push_str("\u{2028}\u{fffd}🦀");
    for text in [all.as_str(), &all[0x20..], "\"\"\\\\", "plain"] {
        let mut out = b"prefix".to_vec();
        escape_json_into(&mut out, text.as_bytes());
        let json = serde_json::to_string(text).unwrap();
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            format!("prefix{}", &json[1..json.len() - 1])
        );
    }
}

#[test]
fn redaction_covers_escaped_forms() {
    let r = Redactor::new(&[Secret::new("k\"ey-12345678"), Secret::new("")]);
    let raw = "a k\"ey-12345678 b".to_owned();
    assert_eq!(r.redact(raw), "a [REDACTED] b");
    let once = json_string("a k\"ey-12345678 b");
    assert!(!r.redact(once.clone()).contains("ey-1234"), "{once}");
    let twice = json_string(&once);
    assert!(!r.redact(twice.clone()).contains("ey-1234"), "{twice}");
}
