//! The recording format on disk (format 1, `shared/spec/RECORDING.md`): the header line, the
//! event lines `[t_us, dir, kind, data]`, `run.json`, and how session events map to line kinds.
//!
//! Shared by the writer and the reader so that the two cannot disagree. Pure: strings in,
//! strings out.

use std::borrow::Cow;
use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::cost::ProviderPricing;
use crate::session::{EventKind, SessionInfo, SessionState, Timing};

/// The header's `format`.
pub const FORMAT: &str = "relaytop-recording";
/// `run.json`'s `format`.
pub const RUN_FORMAT: &str = "relaytop-run";
/// The format version this code writes and reads; it changes only on an incompatible change.
pub const VERSION: u32 = 1;
/// The name of a run's index file.
pub const RUN_FILE: &str = "run.json";

/// The app string of headers: "relaytop 0.1.0".
pub fn app() -> String {
    format!("relaytop {}", crate::report::VERSION)
}

/// A wall-clock time as headers write it: RFC 3339, UTC, microseconds.
pub fn wall_clock(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Parses a header's or `run.json`'s wall-clock time.
pub fn parse_wall_clock(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// A number of seconds written as an integer when whole (`30`, not `30.0`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Seconds(pub f64);

impl Serialize for Seconds {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let x = self.0;
        if x.fract() == 0.0 && (0.0..9.0e15).contains(&x) {
            s.serialize_u64(x as u64)
        } else {
            s.serialize_f64(x)
        }
    }
}

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        f64::deserialize(d).map(Seconds)
    }
}

/// The session a file records, as its header names it. Secret names may appear, values never.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HeaderSession {
    pub name: String,
    pub provider: String,
    #[serde(default = "relay_v1")]
    pub protocol: String,
    #[serde(default)]
    pub url: String,
    #[serde(default)]
    pub model: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    /// The session's id in its run (relaytop's addition; readers may ignore it).
    #[serde(default)]
    pub id: u32,
    /// `probe` or `chat` (relaytop's addition).
    #[serde(default)]
    pub workload: String,
}

fn relay_v1() -> String {
    "relay-v1".to_owned()
}

/// Backoff settings as the header writes them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HeaderBackoff {
    pub base_ms: u64,
    pub cap_ms: u64,
    pub max_attempts: u32,
}

/// The session's timing, as the header writes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HeaderConfig {
    /// `null` when heartbeats are off.
    pub heartbeat_s: Option<Seconds>,
    pub dead_after_s: Seconds,
    pub backoff: HeaderBackoff,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ws_ping: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handshake_timeout_s: Option<Seconds>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_timeout_s: Option<Seconds>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_after_s: Option<Seconds>,
}

impl HeaderConfig {
    pub fn from_timing(t: &Timing) -> Self {
        let ms = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Self {
            heartbeat_s: t.heartbeat.map(|d| Seconds(d.as_secs_f64())),
            dead_after_s: Seconds(t.dead_after.as_secs_f64()),
            backoff: HeaderBackoff {
                base_ms: ms(t.backoff.base),
                cap_ms: ms(t.backoff.cap),
                max_attempts: t.backoff.max_attempts,
            },
            ws_ping: Some(t.ws_ping),
            handshake_timeout_s: Some(Seconds(t.handshake_timeout.as_secs_f64())),
            response_timeout_s: Some(Seconds(t.response_timeout.as_secs_f64())),
            stable_after_s: Some(Seconds(t.stable_after.as_secs_f64())),
        }
    }
}

/// Which run a file belongs to (relaytop's addition to the header).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HeaderRun {
    pub id: String,
    /// Where the sessions came from ("default world" or a config path).
    #[serde(default)]
    pub source: String,
}

/// Line 1 of every recording file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Header {
    pub format: String,
    pub version: u32,
    pub app: String,
    pub started_at: String,
    pub session: HeaderSession,
    pub config: Option<HeaderConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<HeaderRun>,
    /// 0 for a session's first file, then 1, 2, ... for the files it rotated into.
    #[serde(default)]
    pub part: u32,
    /// The session's provider's prices, so that a lone file still prices its responses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pricing: Option<ProviderPricing>,
    /// The session's provider's objective, so that a lone file judges its requests good as
    /// the run did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slo: Option<crate::config::slo::Slo>,
}

impl Header {
    /// The session's identity as events label it.
    pub fn info(&self) -> SessionInfo {
        let s = &self.session;
        SessionInfo {
            id: s.id,
            name: s.name.clone(),
            provider: s.provider.clone(),
            model: s.model.clone(),
            protocol: serde_json::from_value(serde_json::Value::String(s.protocol.clone()))
                .unwrap_or_default(),
            url: s.url.clone(),
            workload: s.workload.clone(),
        }
    }

    /// When the file's clock started.
    pub fn started_at(&self) -> Option<DateTime<Utc>> {
        parse_wall_clock(&self.started_at)
    }
}

/// One file of a run, as `run.json` lists it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunFile {
    /// The file name inside the run directory.
    pub path: String,
    pub session: String,
    #[serde(default)]
    pub id: u32,
    #[serde(default)]
    pub provider: String,
    #[serde(default)]
    pub model: String,
    /// 0 for the session's first file, then the rotated ones in order.
    #[serde(default)]
    pub part: u32,
}

/// `run.json`: the files of a run and their shared wall-clock start; rewritten when a file is
/// added and when the run ends.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunManifest {
    pub format: String,
    pub version: u32,
    pub app: String,
    pub run_id: String,
    /// The shared wall-clock start: every file's `t_us` counts from here.
    pub started_at: String,
    #[serde(default)]
    pub source: String,
    pub files: Vec<RunFile>,
    /// Every provider's prices, so that a replay prices responses as the run did.
    #[serde(default)]
    pub pricing: BTreeMap<String, ProviderPricing>,
    /// The run's objectives (`[slo]`), so that a replay counts good requests as the run did.
    /// Absent in older recordings (a replay then judges with none: every completed request
    /// is good).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slo: Option<crate::config::slo::Slos>,
    /// Set when the run ended cleanly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<String>,
    /// How long the run lasted, microseconds (set when it ended cleanly).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_us: Option<u64>,
    /// What ended the run (set when it ended cleanly).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_by: Option<String>,
}

/// Which way a line went: `>`, `<` or `=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    ToRelay,
    FromRelay,
    Local,
}

impl Dir {
    pub fn symbol(self) -> &'static str {
        match self {
            Dir::ToRelay => ">",
            Dir::FromRelay => "<",
            Dir::Local => "=",
        }
    }

    fn parse(s: &str) -> Option<Dir> {
        match s {
            ">" => Some(Dir::ToRelay),
            "<" => Some(Dir::FromRelay),
            "=" => Some(Dir::Local),
            _ => None,
        }
    }
}

/// What one event line says.
#[derive(Clone, Debug, PartialEq)]
pub enum Entry {
    /// A text frame, verbatim.
    Text { dir: Dir, text: String },
    /// A Server-Sent Event with an `event:` name (`sse`), from the relay; one without a name
    /// is a `Text` line (its data).
    SseEvent { event: String, data: String },
    /// A Server-Sent Event the framing refused (`refused`), and why.
    SseRefused { reason: String },
    /// The end of a streamed HTTP response body (`body_end`).
    BodyEnd,
    /// A binary frame (its body, when recorded, is not kept by the reader).
    Binary { dir: Dir, len: u64 },
    /// The upgrade's answer.
    Upgrade { status: u16 },
    /// A close frame, or 1006 for a connection that just ended.
    Close {
        code: u16,
        reason: String,
        requested: bool,
    },
    /// An event the session reported itself (`state`, `backoff`, `ratelimit`, `error`, `event`).
    Event(EventKind),
    /// A point to jump to (`marker`): navigation only, never a session event.
    Marker(String),
    /// The session's recording ends (`end`).
    End { reason: String },
    /// A kind this reader does not know (or a WebSocket ping/pong): skipped.
    Other,
}

/// One parsed event line.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub t_us: u64,
    pub entry: Entry,
}

/// Why a line is not a valid event line.
#[derive(Debug, thiserror::Error)]
pub enum LineError {
    #[error("not a JSON array [t_us, dir, kind, data]: {0}")]
    Json(#[from] serde_json::Error),
    #[error("unknown direction {0:?}")]
    Dir(String),
    #[error("`{kind}` line with unexpected data: {error}")]
    Data {
        kind: String,
        error: serde_json::Error,
    },
}

#[derive(Deserialize)]
struct CloseData<'a> {
    code: u16,
    #[serde(default, borrow)]
    reason: Cow<'a, str>,
    #[serde(default)]
    requested: bool,
}

#[derive(Deserialize)]
struct LenData {
    #[serde(default)]
    len: u64,
}

#[derive(Deserialize)]
struct SseData {
    event: String,
    data: String,
}

#[derive(Deserialize)]
struct RefusedData {
    #[serde(default)]
    reason: String,
}

#[derive(Deserialize)]
struct StatusData {
    status: u16,
}

#[derive(Deserialize)]
struct EndData {
    #[serde(default)]
    reason: String,
}

/// A text line as relaytop writes it (`[t,"<","text","..."]`), read without the general
/// parser: most lines are these. `None` when the line is not exactly of that shape.
fn parse_text_line(line: &[u8]) -> Option<Record> {
    let rest = line.strip_prefix(b"[")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 19 {
        return None;
    }
    let t_us: u64 = std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()?;
    let rest = &rest[digits..];
    let (dir, rest) = if let Some(r) = rest.strip_prefix(b",\"<\",\"text\",") {
        (Dir::FromRelay, r)
    } else if let Some(r) = rest.strip_prefix(b",\">\",\"text\",") {
        (Dir::ToRelay, r)
    } else {
        return None;
    };
    let data = rest.strip_suffix(b"]")?;
    let text = match unescape_json_string(data) {
        Some(text) => text,
        None => serde_json::from_slice(data).ok()?,
    };
    Some(Record {
        t_us,
        entry: Entry::Text { dir, text },
    })
}

/// A byte cursor over a line as relaytop's own writer makes it, for the fast paths of
/// `parse_local_line`: each step takes exactly the piece it expects or gives up (`None`),
/// and the line goes to serde_json, so that what is accepted and refused stays serde_json's.
struct Exact<'a>(&'a [u8]);

impl<'a> Exact<'a> {
    /// The bytes `piece`, verbatim.
    fn lit(&mut self, piece: &[u8]) -> Option<()> {
        self.0 = self.0.strip_prefix(piece)?;
        Some(())
    }

    /// A JSON unsigned integer that fits a `u64` (no sign, fraction, exponent or leading
    /// zero: serde_json refuses a leading zero, and the others it reads otherwise).
    fn uint(&mut self) -> Option<u64> {
        let digits = self.0.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 || (digits > 1 && self.0[0] == b'0') {
            return None;
        }
        if matches!(self.0.get(digits), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        let mut n: u64 = 0;
        for &d in &self.0[..digits] {
            n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
        }
        self.0 = &self.0[digits..];
        Some(n)
    }

    /// A JSON string literal without escapes or control characters, its text borrowed.
    fn plain_str(&mut self) -> Option<&'a str> {
        let rest = self.0.strip_prefix(b"\"")?;
        let len = rest.iter().position(|&b| b == b'"')?;
        let inner = &rest[..len];
        if inner.iter().any(|&b| b == b'\\' || b < 0x20) {
            return None;
        }
        let text = std::str::from_utf8(inner).ok()?;
        self.0 = &rest[len + 1..];
        Some(text)
    }

    /// Nothing left.
    fn end(&self) -> Option<()> {
        self.0.is_empty().then_some(())
    }
}

/// A session-reported line as relaytop writes the most frequent ones, read without the
/// general parser (which reads an event's data into a `serde_json::Value` or serde's buffered
/// content first): `state` lines `{"to":"open"}`, `{"to":"closed"}`,
/// `{"to":"streaming","request":N}`, `{"to":"connecting","attempt":N}`, and `request_sent`
/// events. `None` for anything else (another shape, order or spelling, an escape), which the
/// caller leaves to the general parser: the fast path only ever reads what it would read, the
/// same way (`local_lines_read_the_same_by_either_path`).
fn parse_local_line(line: &[u8]) -> Option<Record> {
    let mut p = Exact(line);
    p.lit(b"[")?;
    let t_us = p.uint()?;
    p.lit(b",\"=\",\"")?;
    let kind = if p.lit(b"state\",{\"to\":").is_some() {
        let state = match p.plain_str()? {
            "open" => SessionState::Open,
            "closed" => SessionState::Closed,
            "streaming" => {
                p.lit(b",\"request\":")?;
                SessionState::Streaming { request: p.uint()? }
            }
            "connecting" => {
                p.lit(b",\"attempt\":")?;
                SessionState::Connecting {
                    attempt: u32::try_from(p.uint()?).ok()?,
                }
            }
            _ => return None,
        };
        EventKind::State(state)
    } else {
        p.lit(b"event\",{\"type\":\"request_sent\",\"request\":")?;
        let request = p.uint()?;
        p.lit(b",\"model\":")?;
        let model = p.plain_str()?.to_owned();
        p.lit(b",\"prompt_tokens_estimate\":")?;
        let prompt_tokens_estimate = p.uint()?;
        EventKind::RequestSent {
            request,
            model,
            prompt_tokens_estimate,
        }
    };
    p.lit(b"}]")?;
    p.end()?;
    Some(Record {
        t_us,
        entry: Entry::Event(kind),
    })
}

/// A JSON string literal (quotes included) unescaped, for what relaytop's own writer makes of
/// a frame: `None` for anything else (a `\u` escape, a control character, text after the
/// closing quote, bytes that are not UTF-8), which the caller leaves to serde_json, so that
/// what is accepted and refused is serde_json's. Without a `Deserializer` and its growing
/// scratch buffer per line: a third of a replay's parsing (docs/PERFORMANCE.md, issue #22).
fn unescape_json_string(data: &[u8]) -> Option<String> {
    let inner = data.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
    let mut out = Vec::with_capacity(inner.len());
    // One pass, byte by byte: a frame is short and full of escaped quotes, where a
    // vectorised search restarting after each escape costs more than it saves.
    let mut bytes = inner.iter();
    while let Some(&b) = bytes.next() {
        match b {
            b'\\' => out.push(match bytes.next()? {
                b'"' => b'"',
                b'\\' => b'\\',
                b'/' => b'/',
                b'b' => 0x08,
                b'f' => 0x0c,
                b'n' => b'\n',
                b'r' => b'\r',
                b't' => b'\t',
                _ => return None,
            }),
            // A quote before the end, or a raw control character (not allowed in JSON).
            b'"' | 0..0x20 => return None,
            _ => out.push(b),
        }
    }
    String::from_utf8(out).ok()
}

/// Parses one event line (without its newline).
pub fn parse_line(line: &[u8]) -> Result<Record, LineError> {
    if let Some(record) = parse_text_line(line) {
        return Ok(record);
    }
    if let Some(record) = parse_local_line(line) {
        return Ok(record);
    }
    parse_general(line)
}

/// Parses one event line with serde_json, whatever its shape (`parse_line` without its fast
/// paths).
fn parse_general(line: &[u8]) -> Result<Record, LineError> {
    let (t_us, dir, kind, data): (u64, Cow<'_, str>, Cow<'_, str>, &RawValue) =
        serde_json::from_slice(line)?;
    let dir = Dir::parse(&dir).ok_or_else(|| LineError::Dir(dir.to_string()))?;
    let raw = data.get();
    let bad = |error| LineError::Data {
        kind: kind.to_string(),
        error,
    };
    let entry = match kind.as_ref() {
        "text" => Entry::Text {
            dir,
            text: serde_json::from_str::<String>(raw).map_err(bad)?,
        },
        "sse" => {
            let e: SseData = serde_json::from_str(raw).map_err(bad)?;
            Entry::SseEvent {
                event: e.event,
                data: e.data,
            }
        }
        "refused" => Entry::SseRefused {
            reason: serde_json::from_str::<RefusedData>(raw)
                .map_err(bad)?
                .reason,
        },
        "body_end" => Entry::BodyEnd,
        "binary" => Entry::Binary {
            dir,
            len: serde_json::from_str::<LenData>(raw).map_err(bad)?.len,
        },
        "upgrade" => Entry::Upgrade {
            status: serde_json::from_str::<StatusData>(raw).map_err(bad)?.status,
        },
        "close" => {
            let c: CloseData<'_> = serde_json::from_str(raw).map_err(bad)?;
            Entry::Close {
                code: c.code,
                reason: c.reason.into_owned(),
                requested: c.requested,
            }
        }
        "state" => Entry::Event(EventKind::State(decode_state(raw).map_err(bad)?)),
        "backoff" => Entry::Event(tagged(raw, "backing_off", &[("max_attempts", 0)]).map_err(bad)?),
        "ratelimit" => Entry::Event(tagged(raw, "rate_limited", &[]).map_err(bad)?),
        "error" => Entry::Event(tagged(raw, "error", &[]).map_err(bad)?),
        "event" => Entry::Event(serde_json::from_str::<EventKind>(raw).map_err(bad)?),
        "marker" => Entry::Marker(match serde_json::from_str::<String>(raw) {
            Ok(label) => label,
            // Another writer might store an object; keep what can be shown.
            Err(_) => raw.to_owned(),
        }),
        "end" => Entry::End {
            reason: serde_json::from_str::<EndData>(raw)
                .map(|e| e.reason)
                .unwrap_or_default(),
        },
        _ => Entry::Other,
    };
    Ok(Record { t_us, entry })
}

/// The `t_us` of a line, read from its first bytes without parsing the rest.
pub fn line_time(line: &[u8]) -> Option<u64> {
    let mut i = 0;
    while i < line.len() && line[i].is_ascii_whitespace() {
        i += 1;
    }
    if line.get(i) != Some(&b'[') {
        return None;
    }
    i += 1;
    while i < line.len() && line[i].is_ascii_whitespace() {
        i += 1;
    }
    let start = i;
    let mut t: u64 = 0;
    while let Some(d) = line.get(i).filter(|c| c.is_ascii_digit()) {
        t = t.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
        i += 1;
    }
    (i > start).then_some(t)
}

/// Deserializes an object written without its `type` tag as the `EventKind` variant `tag`,
/// filling in `defaults` that other writers may leave out (the spec's own backoff example has
/// no `max_attempts`).
fn tagged(raw: &str, tag: &str, defaults: &[(&str, u64)]) -> Result<EventKind, serde_json::Error> {
    let mut value: serde_json::Value = serde_json::from_str(raw)?;
    if let Some(map) = value.as_object_mut() {
        map.insert("type".into(), tag.into());
        for (field, default) in defaults {
            map.entry(*field).or_insert_with(|| (*default).into());
        }
    }
    serde_json::from_value(value)
}

/// A `state` line's data: `{"to":"connecting","attempt":1}`.
fn decode_state(raw: &str) -> Result<SessionState, serde_json::Error> {
    let mut value: serde_json::Value = serde_json::from_str(raw)?;
    if let Some(map) = value.as_object_mut()
        && let Some(to) = map.remove("to")
    {
        map.insert("state".into(), to);
    }
    serde_json::from_value(value)
}

/// The kind and data of the line that records a session-reported event.
pub fn encode_event(kind: &EventKind) -> (&'static str, String) {
    match kind {
        EventKind::State(state) => {
            let mut value = serde_json::to_value(state).unwrap_or_default();
            let mut out = String::from("{");
            if let Some(map) = value.as_object_mut() {
                // `to` first, as the spec shows it.
                if let Some(to) = map.remove("state") {
                    out.push_str("\"to\":");
                    out.push_str(&to.to_string());
                }
                for (key, v) in map.iter() {
                    if out.len() > 1 {
                        out.push(',');
                    }
                    out.push_str(&json_string(key));
                    out.push(':');
                    out.push_str(&v.to_string());
                }
            }
            out.push('}');
            ("state", out)
        }
        EventKind::BackingOff { .. } => ("backoff", untagged(kind)),
        EventKind::RateLimited { .. } => ("ratelimit", untagged(kind)),
        EventKind::Error { .. } => ("error", untagged(kind)),
        other => ("event", to_json(other)),
    }
}

/// An event serialized without its `type` tag (the line's kind says it).
fn untagged(kind: &EventKind) -> String {
    let mut value = serde_json::to_value(kind).unwrap_or_default();
    if let Some(map) = value.as_object_mut() {
        map.remove("type");
    }
    value.to_string()
}

/// A value as JSON. Cannot fail for what lines carry (string keys, no non-finite floats);
/// writes `null` if it ever did.
pub fn to_json<T: Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned())
}

/// A JSON string literal.
pub fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned())
}

/// A session name as a file name: letters, digits, `.`, `-` and `_` kept, anything else `_`,
/// at most 64 characters, never empty, never starting with `.`.
pub fn sanitize(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if out.starts_with('.') {
        out.replace_range(0..1, "_");
    }
    if out.is_empty() {
        out.push_str("session");
    }
    out
}

/// A run id from its UTC start: `2026-11-25T09-30-00Z`.
pub fn run_id(started_at: &DateTime<Utc>) -> String {
    started_at.format("%Y-%m-%dT%H-%M-%SZ").to_string()
}

/// The file name of part `part` of a session file stem: `s.jsonl`, `s.1.jsonl`, ...
pub fn part_file_name(stem: &str, part: u32) -> String {
    if part == 0 {
        format!("{stem}.jsonl")
    } else {
        format!("{stem}.{part}.jsonl")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::ErrorKind;
    use proptest::prelude::*;

    proptest! {
        /// The text fast path reads what serde_json reads, and refuses what it refuses.
        #[test]
        fn text_unescaped_as_serde_json_does(text in "(?s)\\PC{0,80}|[\\x00-\\x7f]{0,40}") {
            let written = json_string(&text);
            let ours = unescape_json_string(written.as_bytes());
            // serde_json writes control characters as \u escapes, left to it.
            prop_assert!(ours.is_some() || written.contains("\\u"), "{written}");
            if let Some(ours) = ours {
                prop_assert_eq!(ours, text);
            }
        }

        #[test]
        fn any_bytes_unescaped_only_as_serde_json_would(data in proptest::collection::vec(
            prop_oneof![Just(b'"'), Just(b'\\'), Just(b'n'), Just(b'u'), Just(b'0'), Just(0x01u8), Just(0xc3u8), Just(0xa9u8), any::<u8>()],
            0..24,
        )) {
            let mut quoted = b"\"".to_vec();
            quoted.extend_from_slice(&data);
            quoted.push(b'"');
            for candidate in [&data[..], &quoted[..]] {
                if let Some(ours) = unescape_json_string(candidate) {
                    let theirs: Result<String, _> = serde_json::from_slice(candidate);
                    prop_assert_eq!(Some(ours), theirs.ok(), "{:?}", candidate);
                }
            }
        }
    }

    #[test]
    fn text_lines_read_the_same_by_either_path() {
        for text in [
            r#"{"type":"chunk","content":"Hel"}"#,
            "a \"quoted\" \\ back\tslash\n/ and é 中 🙂",
            "\u{1}\u{1f} control",
            "",
        ] {
            let line = format!("[5,\"<\",\"text\",{}]", json_string(text));
            let fast = parse_text_line(line.as_bytes()).expect("the fast path reads it");
            assert_eq!(
                fast.entry,
                Entry::Text {
                    dir: Dir::FromRelay,
                    text: text.to_owned()
                }
            );
        }
        // A raw control character or a stray quote is malformed, as serde_json says.
        assert!(parse_line(b"[5,\"<\",\"text\",\"a\x01b\"]").is_err());
        assert!(parse_line(br#"[5,"<","text","a"b"]"#).is_err());
        assert!(parse_line(br#"[5,"<","text","a\"]"#).is_err());
    }

    #[test]
    fn local_lines_read_the_same_by_either_path() {
        let mut lines: Vec<String> = [
            EventKind::State(SessionState::Open),
            EventKind::State(SessionState::Closed),
            EventKind::State(SessionState::Streaming { request: 0 }),
            EventKind::State(SessionState::Streaming { request: u64::MAX }),
            EventKind::State(SessionState::Connecting { attempt: 1 }),
            EventKind::State(SessionState::Connecting { attempt: u32::MAX }),
            EventKind::RequestSent {
                request: 17,
                model: "gpt-4.1".into(),
                prompt_tokens_estimate: 7,
            },
            EventKind::RequestSent {
                request: 1,
                model: "é 中".into(),
                prompt_tokens_estimate: 0,
            },
        ]
        .iter()
        .map(|kind| {
            let (k, data) = encode_event(kind);
            format!("[1000000,\"=\",\"{k}\",{data}]")
        })
        .collect();
        let fast_count = lines.len();
        for (i, line) in lines.iter().enumerate() {
            let fast = parse_local_line(line.as_bytes());
            assert!(fast.is_some(), "line {i} takes the fast path: {line}");
            assert_eq!(fast, parse_general(line.as_bytes()).ok(), "{line}");
        }
        // Shapes the fast path leaves to serde_json, which reads or refuses them.
        lines.extend(
            [
                r#"[007,"=","state",{"to":"open"}]"#,
                r#"[7,"=","state",{"to":"streaming","request":01}]"#,
                r#"[7,"=","state",{"to":"streaming","request":1.0}]"#,
                r#"[7,"=","state",{"to":"streaming","request":1e3}]"#,
                r#"[7,"=","state",{"to":"streaming","request":-1}]"#,
                r#"[7,"=","state",{"to":"streaming","request":18446744073709551616}]"#,
                r#"[7,"=","state",{"to":"connecting","attempt":4294967296}]"#,
                r#"[7,"=","state",{"to":"streaming"}]"#,
                r#"[7,"=","state",{"to":"open","x":1}]"#,
                r#"[7,"=","state",{"to":"op\u0065n"}]"#,
                r#"[7,"=","state",{"to":"backing_off","attempt":1,"max_attempts":2,"until_us":3}]"#,
                r#"[7,"=","state",{"to":"open"}] "#,
                r#"[7,"=","state",{"to":"open"}],"#,
                r#"[7, "=","state",{"to":"open"}]"#,
                r#"[7,"=","event",{"type":"request_sent","request":2,"model":"a\"b","prompt_tokens_estimate":3}]"#,
                r#"[7,"=","event",{"type":"request_sent","model":"m","request":2,"prompt_tokens_estimate":3}]"#,
                r#"[7,"=","event",{"type":"request_sent","request":2,"model":"m","prompt_tokens_estimate":3,"x":0}]"#,
                r#"[7,"=","event",{"type":"request_sent","request":2,"model":"m\u0001","prompt_tokens_estimate":3}]"#,
                "[7,\"=\",\"event\",{\"type\":\"request_sent\",\"request\":2,\"model\":\"a\tb\",\"prompt_tokens_estimate\":3}]",
            ]
            .map(String::from),
        );
        let mut bytes: Vec<Vec<u8>> = lines.iter().map(|l| l.clone().into_bytes()).collect();
        // Not UTF-8 inside the model's name.
        bytes.push(
            b"[7,\"=\",\"event\",{\"type\":\"request_sent\",\"request\":2,\"model\":\"\xff\",\"prompt_tokens_estimate\":3}]"
                .to_vec(),
        );
        for (i, line) in bytes.iter().enumerate() {
            let general = parse_general(line);
            match parse_local_line(line) {
                Some(fast) => assert_eq!(Some(fast), general.ok(), "{line:?}"),
                None => assert!(i >= fast_count, "{line:?}"),
            }
            // Whichever path reads it, `parse_line` reads what the general parser reads.
            assert_eq!(parse_line(line).ok(), parse_general(line).ok(), "{line:?}");
        }
    }

    #[test]
    fn spec_lines_parse() {
        let lines: [&[u8]; 6] = [
            br#"[0,"=","state",{"to":"connecting","attempt":1}]"#,
            br#"[41230,"<","upgrade",{"status":101}]"#,
            br#"[233100,"<","text","{\"type\":\"chunk\",\"content\":\"Hel\"}"]"#,
            br#"[61000000,"<","close",{"code":1012,"reason":"restart","requested":false}]"#,
            br#"[61740000,"=","marker","reconnect 1"]"#,
            br#"[3600000000,"=","end",{"reason":"quit"}]"#,
        ];
        let records: Vec<Record> = lines.iter().map(|l| parse_line(l).unwrap()).collect();
        assert_eq!(
            records[0].entry,
            Entry::Event(EventKind::State(SessionState::Connecting { attempt: 1 }))
        );
        assert_eq!(records[1].entry, Entry::Upgrade { status: 101 });
        assert_eq!(
            records[2].entry,
            Entry::Text {
                dir: Dir::FromRelay,
                text: r#"{"type":"chunk","content":"Hel"}"#.into()
            }
        );
        assert!(matches!(records[3].entry, Entry::Close { code: 1012, .. }));
        assert_eq!(records[4].entry, Entry::Marker("reconnect 1".into()));
        assert_eq!(records[5].t_us, 3_600_000_000);
        // The spec's backoff line has no max_attempts: read as 0 (unknown).
        let backoff = parse_line(br#"[1,"=","backoff",{"attempt":1,"delay_ms":734,"cause":"x"}]"#);
        assert!(matches!(
            backoff.unwrap().entry,
            Entry::Event(EventKind::BackingOff {
                max_attempts: 0,
                delay_ms: 734,
                ..
            })
        ));
        assert_eq!(
            parse_line(br#"[5,"<","ping",{}]"#).unwrap().entry,
            Entry::Other
        );
    }

    #[test]
    fn sse_lines_parse() {
        let entry = |line: &[u8]| parse_line(line).unwrap().entry;
        assert_eq!(
            entry(br#"[1,"<","sse",{"event":"error","data":"{\"message\":\"x\"}"}]"#),
            Entry::SseEvent {
                event: "error".into(),
                data: r#"{"message":"x"}"#.into()
            }
        );
        assert_eq!(
            entry(br#"[2,"<","refused",{"reason":"too big"}]"#),
            Entry::SseRefused {
                reason: "too big".into()
            }
        );
        assert_eq!(entry(br#"[3,"<","body_end",{}]"#), Entry::BodyEnd);
    }

    #[test]
    fn events_round_trip() {
        let kinds = [
            EventKind::State(SessionState::BackingOff {
                attempt: 2,
                max_attempts: 10,
                until_us: 99,
                watch: None,
            }),
            EventKind::State(SessionState::Open),
            EventKind::BackingOff {
                attempt: 1,
                max_attempts: 10,
                delay_ms: 734,
                cause: "close 1012".into(),
            },
            EventKind::RateLimited {
                wait_ms: 1500,
                cause: "slow down".into(),
            },
            EventKind::Error {
                kind: ErrorKind::Network,
                message: "refused".into(),
                retryable: true,
                retry_after_ms: Some(3),
            },
            EventKind::Pong { rtt_us: 42 },
            EventKind::Marker {
                label: "reconnect (asked)".into(),
            },
        ];
        for kind in kinds {
            let (k, data) = encode_event(&kind);
            let line = format!("[7,\"=\",\"{k}\",{data}]");
            let record = parse_line(line.as_bytes()).unwrap();
            assert_eq!(record.entry, Entry::Event(kind.clone()), "{line}");
        }
        let (k, data) = encode_event(&EventKind::State(SessionState::Connecting { attempt: 1 }));
        assert_eq!(
            (k, data.as_str()),
            ("state", r#"{"to":"connecting","attempt":1}"#)
        );
    }

    #[test]
    fn times_and_names() {
        assert_eq!(line_time(b"[233100,\"<\""), Some(233_100));
        assert_eq!(line_time(b" [ 7 ,"), Some(7));
        assert_eq!(line_time(b"{\"format\""), None);
        assert_eq!(line_time(b"[,"), None);
        assert_eq!(sanitize("probe-legacy-1"), "probe-legacy-1");
        assert_eq!(sanitize("a/b c:d"), "a_b_c_d");
        assert_eq!(sanitize(".."), "_.");
        assert_eq!(sanitize(""), "session");
        assert_eq!(part_file_name("s", 0), "s.jsonl");
        assert_eq!(part_file_name("s", 2), "s.2.jsonl");
        let t = parse_wall_clock("2026-11-25T09:30:00.123456Z").unwrap();
        assert_eq!(run_id(&t), "2026-11-25T09-30-00Z");
        assert_eq!(wall_clock(&t), "2026-11-25T09:30:00.123456Z");
        assert_eq!(serde_json::to_string(&Seconds(30.0)).unwrap(), "30");
        assert_eq!(serde_json::to_string(&Seconds(0.2)).unwrap(), "0.2");
    }
}
