//! The recorder: the `Tap` that writes a run's sessions to disk, one JSONL file a session.
//!
//! The session task calls the tap synchronously, so the tap only formats a line, scrubs the
//! secrets out of it and appends it to the session's in-memory buffer (a std `Mutex<Vec<u8>>`
//! held for the append alone, never across an await). One background thread writes every
//! buffer out every quarter second and at the end, so a `kill -9` loses at most that quarter
//! second; it also rotates files past a size limit and keeps `run.json` up to date. A buffer
//! that the disk cannot keep up with stops growing at `MAX_BUFFERED_BYTES`; the lines it
//! refuses are counted and reported in the file by a `dropped` line.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use base64::Engine as _;
use chrono::{DateTime, Utc};

use crate::config::secret::Secret;
use crate::cost::ProviderPricing;
use crate::record::format::{
    self, Header, HeaderConfig, HeaderRun, HeaderSession, RunFile, RunManifest, json_string,
    to_json,
};
use crate::record::gzip::Sink;
use crate::session::event::micros;
use crate::session::tap::{Direction, Tap, TapHandle, Wire};
use crate::session::{EventKind, RunClock, SessionId, SessionInfo, SessionSpec, SessionState};

/// A session file is rotated once it grows past this many bytes (256 MiB).
pub const DEFAULT_ROTATE_BYTES: u64 = 256 << 20;
/// How often buffered lines are written out.
pub const FLUSH_EVERY: Duration = Duration::from_millis(250);
/// Most bytes a session's buffer holds while the disk is behind; later lines are dropped.
pub const MAX_BUFFERED_BYTES: usize = 64 << 20;
/// A session's buffer past this size asks the writer thread for a write now instead of at
/// the next quarter second: a fast stream then writes through two buffers of about this size
/// that keep their allocation (and stay in the CPU's cache), instead of growing a fresh one of
/// tens of MiB every quarter second (`relaytop bench ingest`: docs/PERFORMANCE.md).
pub const EARLY_FLUSH_BYTES: usize = 1 << 20;

/// Where and how runs are recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordOptions {
    /// The directory run directories are made in.
    pub root: PathBuf,
    /// A session's file is rotated past this size (`<session>.1.jsonl`, ...).
    pub rotate_bytes: u64,
    /// Whether binary frames keep their bodies (base64) or only their length.
    pub binary_bodies: bool,
    /// Write `<session>.jsonl.gz` files (gzip, sync-flushed at every write) instead of
    /// `.jsonl`. `rotate_bytes` then counts the lines' bytes before compression.
    pub gzip: bool,
}

impl RecordOptions {
    /// Recording under `root`, with the default rotation size and binary bodies kept.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            rotate_bytes: DEFAULT_ROTATE_BYTES,
            binary_bodies: true,
            gzip: false,
        }
    }

    /// The default root: `$XDG_STATE_HOME/relaytop/recordings` (or the platform's equivalent).
    pub fn default_root() -> PathBuf {
        dirs::state_dir()
            .or_else(dirs::data_local_dir)
            .unwrap_or_else(std::env::temp_dir)
            .join("relaytop")
            .join("recordings")
    }
}

/// What the recording of a run must know about the run.
#[derive(Clone, Debug)]
pub struct RunMeta {
    /// The run's wall-clock start (the zero of every `t_us`).
    pub started_at: DateTime<Utc>,
    /// Where the sessions came from ("default world" or a config path).
    pub source: String,
    /// Every provider's prices, by name.
    pub pricing: std::collections::BTreeMap<String, ProviderPricing>,
    /// Every secret the configuration loaded: scrubbed from everything written.
    pub secrets: Vec<Secret>,
}

/// Which sessions a marker goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MarkerTarget {
    All,
    Session(SessionId),
}

/// Replaces every loaded secret, as written raw or JSON-escaped once or twice (a key inside a
/// chat message inside a frame), by `[REDACTED]`.
#[derive(Clone, Debug, Default)]
struct Redactor {
    needles: Vec<Secret>,
}

impl Redactor {
    fn new(secrets: &[Secret]) -> Self {
        let mut needles: Vec<Secret> = Vec::new();
        for secret in secrets {
            let raw = secret.expose();
            if raw.is_empty() {
                continue;
            }
            let once = json_string(raw);
            let once = &once[1..once.len() - 1];
            let twice = json_string(once);
            let twice = &twice[1..twice.len() - 1];
            for variant in [raw, once, twice] {
                if !needles.iter().any(|n| n.expose() == variant) {
                    needles.push(Secret::new(variant));
                }
            }
        }
        // Longest first, so that a longer variant is not cut by a shorter one inside it.
        needles.sort_by_key(|n| std::cmp::Reverse(n.expose().len()));
        Self { needles }
    }

    /// A binary body with every raw secret replaced (before it is encoded).
    fn redact_bytes<'a>(&self, bytes: &'a [u8]) -> std::borrow::Cow<'a, [u8]> {
        let mut out = std::borrow::Cow::Borrowed(bytes);
        for needle in &self.needles {
            let n = needle.expose().as_bytes();
            if memchr::memmem::find(&out, n).is_none() {
                continue;
            }
            let mut scrubbed = Vec::with_capacity(out.len());
            let mut rest: &[u8] = &out;
            while let Some(i) = memchr::memmem::find(rest, n) {
                scrubbed.extend_from_slice(&rest[..i]);
                scrubbed.extend_from_slice(crate::config::secret::REDACTED.as_bytes());
                rest = &rest[i + n.len()..];
            }
            scrubbed.extend_from_slice(rest);
            out = std::borrow::Cow::Owned(scrubbed);
        }
        out
    }

    fn redact(&self, text: String) -> String {
        let mut text = text;
        for needle in &self.needles {
            if let std::borrow::Cow::Owned(scrubbed) = needle.redact(&text) {
                text = scrubbed;
            }
        }
        text
    }
}

/// Takes a line of about `len` bytes at `at` into `b`: its time (never before the last
/// line's), or `None` when the session's file has ended or the buffer is full (the line is
/// counted as dropped, and a `dropped` line reports it before the next line that fits).
fn admit(b: &mut Buffer, at: Duration, len: usize) -> Option<u64> {
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
const KEEP_IDLE_BUFFER_BYTES: usize = 64 << 10;

/// Frees `buffer` (just written out, not yet cleared) when it was mostly unused.
fn shrink_when_idle(buffer: &mut Vec<u8>) {
    if buffer.capacity() > KEEP_IDLE_BUFFER_BYTES && buffer.len() < buffer.capacity() / 8 {
        *buffer = Vec::new();
    }
}

/// Starts a text frame kept raw in a session's buffer, where every other entry is a line,
/// which starts with `[`: this byte, the time (`u64`, little-endian), the direction byte, the
/// length (`u32`, little-endian) and the text.
const RAW_TEXT: u8 = 0;
/// Bytes of a raw text frame before its text.
const RAW_TEXT_HEAD: usize = 14;

/// Appends a text frame, raw, to a session's buffer (see `RAW_TEXT`).
fn push_raw_text(bytes: &mut Vec<u8>, t: u64, dir: u8, text: &str) {
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

/// Renders a session's buffer as the recording's lines: lines as they are, a raw text frame
/// as its `[t,"<","text","…"]` line.
fn render(buffer: &[u8], out: &mut Vec<u8>) {
    let mut rest = buffer;
    while let Some(&first) = rest.first() {
        if first == RAW_TEXT && rest.len() >= RAW_TEXT_HEAD {
            let (head, tail) = rest.split_at(RAW_TEXT_HEAD);
            let t = u64::from_le_bytes(head[1..9].try_into().unwrap_or_default());
            let dir = head[9];
            let len = u32::from_le_bytes(head[10..14].try_into().unwrap_or_default()) as usize;
            let (text, after) = tail.split_at(len.min(tail.len()));
            out.reserve(text.len() + 40);
            out.push(b'[');
            out.extend_from_slice(itoa::Buffer::new().format(t).as_bytes());
            out.extend_from_slice(b",\"");
            out.push(dir);
            out.extend_from_slice(b"\",\"text\",\"");
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

/// How each byte is escaped in a JSON string: 0 not at all, `0xff` as `\u00XX`, else as a
/// backslash and this byte.
static JSON_ESCAPES: [u8; 256] = {
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
fn escape_json_into(out: &mut Vec<u8>, text: &[u8]) {
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
fn escape_json_into_slowly(out: &mut Vec<u8>, text: &[u8]) {
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
struct Buffer {
    bytes: Vec<u8>,
    /// The last `t_us` written: lines never go back in time.
    last_t: u64,
    /// The `end` line is written: later lines are ignored.
    ended: bool,
    /// Lines refused because the buffer was full, not yet reported.
    dropped: u64,
    /// The writer thread was asked to write this buffer out early and has not yet.
    flush_asked: bool,
}

/// The file a session is being written to.
#[derive(Debug)]
struct Disk {
    file: Option<Sink>,
    part: u32,
    written: u64,
    /// The buffer swapped in on the last flush (keeps its allocation).
    spare: Vec<u8>,
    /// The lines rendered from it (keeps its allocation too).
    lines: Vec<u8>,
    /// A write failed: logged once; later lines of this session are lost.
    failed: bool,
}

#[derive(Debug)]
struct SessionFile {
    id: SessionId,
    stem: String,
    header: Header,
    buffer: Mutex<Buffer>,
    disk: Mutex<Disk>,
}

struct Inner {
    dir: PathBuf,
    clock: RunClock,
    options: RecordOptions,
    redactor: Redactor,
    manifest: Mutex<RunManifest>,
    files: Mutex<Vec<Arc<SessionFile>>>,
    finished: AtomicBool,
    /// To the writer thread: a session file to write out now. Dropped to stop the thread.
    wake: Mutex<Option<mpsc::Sender<Arc<SessionFile>>>>,
    flusher: Mutex<Option<JoinHandle<()>>>,
}

/// Records a run: makes its directory, hands out one tap a session, writes in the background.
/// Cheap to clone; every clone records the same run.
#[derive(Clone)]
pub struct Recorder {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

/// Locks a mutex, taking the data of one poisoned by a panic elsewhere (the data here is
/// bytes and counters: always usable).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Recorder {
    /// Makes the run directory `<root>/<run-id>/` (run id from the UTC start) with its
    /// `run.json`, and starts the writer thread. `clock` is the run's clock (markers and the
    /// end are stamped with it).
    pub fn start(options: &RecordOptions, run: RunMeta, clock: RunClock) -> std::io::Result<Self> {
        std::fs::create_dir_all(&options.root)?;
        let base = format::run_id(&run.started_at);
        let mut n = 1;
        let (dir, run_id) = loop {
            let run_id = if n == 1 {
                base.clone()
            } else {
                format!("{base}-{n}")
            };
            let dir = options.root.join(&run_id);
            match std::fs::create_dir(&dir) {
                Ok(()) => break (dir, run_id),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 1000 => n += 1,
                Err(e) => return Err(e),
            }
        };
        let manifest = RunManifest {
            format: format::RUN_FORMAT.to_owned(),
            version: format::VERSION,
            app: format::app(),
            run_id,
            started_at: format::wall_clock(&run.started_at),
            source: run.source,
            files: Vec::new(),
            pricing: run.pricing,
            ended_at: None,
            duration_us: None,
            ended_by: None,
        };
        let (wake_tx, wake_rx) = mpsc::channel();
        let inner = Arc::new(Inner {
            dir,
            clock,
            options: options.clone(),
            redactor: Redactor::new(&run.secrets),
            manifest: Mutex::new(manifest),
            files: Mutex::new(Vec::new()),
            finished: AtomicBool::new(false),
            wake: Mutex::new(Some(wake_tx)),
            flusher: Mutex::new(None),
        });
        inner.write_manifest()?;
        let weak = Arc::downgrade(&inner);
        let handle = std::thread::Builder::new()
            .name("relaytop-recorder".into())
            .spawn(move || flush_loop(&weak, &wake_rx))?;
        *lock(&inner.flusher) = Some(handle);
        Ok(Self { inner })
    }

    /// The run directory (`<root>/<run-id>`).
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The run id (the run directory's name).
    pub fn run_id(&self) -> String {
        lock(&self.inner.manifest).run_id.clone()
    }

    /// Opens a file for `spec`'s session (its id must be the one the supervisor will give it)
    /// and sets `spec.tap` to write to it. `api_key_env` names the key's variable in the header.
    pub fn attach(&self, spec: &mut SessionSpec, api_key_env: Option<&str>) -> std::io::Result<()> {
        let tap = self.tap(&spec.info, &spec.timing, api_key_env)?;
        spec.tap = Some(tap);
        Ok(())
    }

    /// A tap recording the session `info` into a new file of this run.
    pub fn tap(
        &self,
        info: &SessionInfo,
        timing: &crate::session::Timing,
        api_key_env: Option<&str>,
    ) -> std::io::Result<TapHandle> {
        let inner = &self.inner;
        let (run_id, source, started_at, pricing) = {
            let m = lock(&inner.manifest);
            (
                m.run_id.clone(),
                m.source.clone(),
                m.started_at.clone(),
                m.pricing.get(&info.provider).cloned(),
            )
        };
        let header = Header {
            format: format::FORMAT.to_owned(),
            version: format::VERSION,
            app: format::app(),
            started_at,
            session: HeaderSession {
                name: info.name.clone(),
                provider: info.provider.clone(),
                protocol: info.protocol.label().to_owned(),
                url: info.url.clone(),
                model: info.model.clone(),
                api_key_env: api_key_env.map(str::to_owned),
                id: info.id,
                workload: info.workload.clone(),
            },
            config: Some(HeaderConfig::from_timing(timing)),
            run: Some(HeaderRun { id: run_id, source }),
            part: 0,
            pricing,
        };
        let mut files = lock(&inner.files);
        let base = format::sanitize(&info.name);
        let taken = |stem: &str| files.iter().any(|f| f.stem == stem);
        let mut stem = base.clone();
        let mut n = 0u32;
        while taken(&stem) {
            n += 1;
            stem = if n == 1 {
                format!("{base}-{}", info.id)
            } else {
                format!("{base}-{}-{n}", info.id)
            };
        }
        let (file, written) = inner.create_part(&stem, &header, 0)?;
        let session = Arc::new(SessionFile {
            id: info.id,
            stem,
            header,
            buffer: Mutex::new(Buffer::default()),
            disk: Mutex::new(Disk {
                file: Some(file),
                part: 0,
                written,
                spare: Vec::new(),
                lines: Vec::new(),
                failed: false,
            }),
        });
        files.push(session.clone());
        drop(files);
        inner.add_to_manifest(&session, 0)?;
        Ok(TapHandle(Arc::new(SessionTap {
            inner: self.inner.clone(),
            file: session,
        })))
    }

    /// Writes every buffered line out now (the writer thread does it every quarter second).
    pub fn flush(&self) {
        self.inner.flush_all();
    }

    /// Records an event that a session did not report through its own tap, in session
    /// `session`'s file, as its tap would: whatever reports on a session's behalf on the run's
    /// event stream without that tap at hand must call it, or a replay will not reproduce the
    /// event. (The canary's markers go through the session's tap, `Supervisor::tap`.)
    pub fn event(&self, session: SessionId, at: Duration, kind: &EventKind) {
        let files = lock(&self.inner.files).clone();
        if let Some(file) = files.into_iter().find(|f| f.id == session) {
            SessionTap {
                inner: self.inner.clone(),
                file,
            }
            .event(at, kind);
        }
    }

    /// Writes a `marker` line (a point to jump to in replay) to one session or all, now.
    pub fn marker(&self, target: MarkerTarget, label: &str) {
        let at = self.inner.clock.now();
        let files = lock(&self.inner.files).clone();
        for file in files {
            if target == MarkerTarget::All || target == MarkerTarget::Session(file.id) {
                self.inner
                    .push(&file, at, "=", "marker", &json_string(label));
            }
        }
    }

    /// Ends the recording: an `end` line for every session still going (`reason` is what
    /// ended the run), everything written out, the writer thread stopped and `run.json`
    /// completed with the duration. Later taps are ignored. Returns the run directory.
    pub fn finish(&self, ended_by: &str, duration: Duration) -> std::io::Result<PathBuf> {
        let inner = &self.inner;
        if inner.finished.swap(true, Ordering::SeqCst) {
            return Ok(inner.dir.clone());
        }
        let files = lock(&inner.files).clone();
        let end = format!("{{\"reason\":{}}}", json_string(ended_by));
        for file in &files {
            inner.push_line(file, duration, "=", "end", &end, true);
        }
        // Stop the writer thread; it writes out what is left before it ends.
        drop(lock(&inner.wake).take());
        if let Some(handle) = lock(&inner.flusher).take()
            && handle.join().is_err()
        {
            tracing::warn!("the recorder's writer thread panicked");
        }
        inner.flush_all();
        {
            let mut m = lock(&inner.manifest);
            m.duration_us = Some(micros(duration));
            m.ended_by = Some(ended_by.to_owned());
            m.ended_at = format::parse_wall_clock(&m.started_at).map(|start| {
                let end = start
                    + chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::zero());
                format::wall_clock(&end)
            });
        }
        inner.write_manifest()?;
        for file in &files {
            let disk = lock(&file.disk);
            let mut disk = disk;
            if let Some(f) = &mut disk.file {
                let _ = f.finish();
            }
        }
        Ok(inner.dir.clone())
    }
}

impl Inner {
    /// Creates part `part` of a session's file with its header line.
    fn create_part(&self, stem: &str, header: &Header, part: u32) -> std::io::Result<(Sink, u64)> {
        let mut header = header.clone();
        header.part = part;
        let mut line = self.redactor.redact(to_json(&header));
        line.push('\n');
        let path = self.dir.join(self.file_name(stem, part));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)?;
        let mut sink = Sink::new(file, self.options.gzip);
        sink.write_lines(line.as_bytes())?;
        Ok((sink, line.len() as u64))
    }

    /// The file name of part `part` of a session's file (`.jsonl`, or `.jsonl.gz`).
    fn file_name(&self, stem: &str, part: u32) -> String {
        let name = format::part_file_name(stem, part);
        if self.options.gzip {
            name + crate::record::gzip::SUFFIX
        } else {
            name
        }
    }

    fn add_to_manifest(&self, file: &SessionFile, part: u32) -> std::io::Result<()> {
        {
            let mut m = lock(&self.manifest);
            m.files.push(RunFile {
                path: self.file_name(&file.stem, part),
                session: file.header.session.name.clone(),
                id: file.id,
                provider: file.header.session.provider.clone(),
                model: file.header.session.model.clone(),
                part,
            });
        }
        self.write_manifest()
    }

    /// Rewrites `run.json` (through a temporary file, so that it is always whole).
    /// Holds the manifest's lock throughout, so that two writers never share the temporary.
    fn write_manifest(&self) -> std::io::Result<()> {
        let m = lock(&self.manifest);
        let text = self
            .redactor
            .redact(serde_json::to_string_pretty(&*m).unwrap_or_default());
        let tmp = self.dir.join(".run.json.tmp");
        std::fs::write(&tmp, text.as_bytes())?;
        std::fs::rename(&tmp, self.dir.join(format::RUN_FILE))
    }

    /// Appends one line to a session's buffer (taps and markers).
    fn push(&self, file: &Arc<SessionFile>, at: Duration, dir: &str, kind: &str, data: &str) {
        if self.finished.load(Ordering::Relaxed) {
            return;
        }
        self.push_line(file, at, dir, kind, data, false);
    }

    fn push_line(
        &self,
        file: &Arc<SessionFile>,
        at: Duration,
        dir: &str,
        kind: &str,
        data: &str,
        end: bool,
    ) {
        let body = self
            .redactor
            .redact(format!(",\"{dir}\",\"{kind}\",{data}]\n"));
        let mut b = lock(&file.buffer);
        let Some(t) = admit(&mut b, at, body.len()) else {
            return;
        };
        let _ = write!(b.bytes, "[{t}");
        b.bytes.extend_from_slice(body.as_bytes());
        if end {
            b.ended = true;
        }
        self.ask_early_flush(file, b);
    }

    /// Asks the writer thread to write `file` out now when its buffer (`b`, locked) has
    /// grown past `EARLY_FLUSH_BYTES`, once until it has.
    fn ask_early_flush(&self, file: &Arc<SessionFile>, mut b: MutexGuard<'_, Buffer>) {
        if b.bytes.len() < EARLY_FLUSH_BYTES || b.flush_asked {
            return;
        }
        b.flush_asked = true;
        drop(b);
        if let Some(wake) = lock(&self.wake).as_ref() {
            let _ = wake.send(file.clone());
        }
    }

    /// A text frame, the hot path of a fast stream (`relaytop bench ingest`): copied raw into
    /// the session's buffer with its time and direction; the writer thread makes it a line
    /// (`render`) and scrubs the secrets out of it there, off the session's task.
    fn push_text(&self, file: &Arc<SessionFile>, at: Duration, dir: &str, text: &str) {
        if self.finished.load(Ordering::Relaxed) {
            return;
        }
        let mut b = lock(&file.buffer);
        let Some(t) = admit(&mut b, at, text.len() + 16) else {
            return;
        };
        push_raw_text(
            &mut b.bytes,
            t,
            dir.as_bytes().first().copied().unwrap_or(b'<'),
            text,
        );
        self.ask_early_flush(file, b);
    }

    /// Writes every buffer out, rotating files past the size limit.
    fn flush_all(&self) {
        let files = lock(&self.files).clone();
        for file in files {
            self.flush_one(&file);
        }
    }

    /// Writes one session's buffer out, and updates `run.json` when its file rotated.
    fn flush_one(&self, file: &SessionFile) {
        if let Some(part) = self.flush_file(file)
            && let Err(e) = self.add_to_manifest(file, part)
        {
            tracing::warn!(error = %e, "cannot update run.json");
        }
    }

    /// Writes one session's buffer out. Returns the new part number when it rotated.
    fn flush_file(&self, file: &SessionFile) -> Option<u32> {
        let mut disk = lock(&file.disk);
        let disk = &mut *disk;
        disk.spare.clear();
        {
            let mut b = lock(&file.buffer);
            std::mem::swap(&mut b.bytes, &mut disk.spare);
            b.flush_asked = false;
        }
        if disk.spare.is_empty() || disk.failed {
            return None;
        }
        let f = disk.file.as_mut()?;
        disk.lines.clear();
        render(&disk.spare, &mut disk.lines);
        // Lines were scrubbed as they were pushed, except the text frames rendered just now.
        let lines = self.redactor.redact_bytes(&disk.lines);
        if let Err(e) = f.write_lines(&lines) {
            tracing::warn!(session = %file.header.session.name, error = %e,
                "cannot write the recording; this session's later lines are lost");
            disk.failed = true;
            return None;
        }
        disk.written += lines.len() as u64;
        drop(lines);
        // A busy session keeps its buffers (a new one is grown page by page all over again:
        // `relaytop bench ingest`); one that has gone quiet gives the memory back.
        shrink_when_idle(&mut disk.spare);
        shrink_when_idle(&mut disk.lines);
        if disk.written < self.options.rotate_bytes {
            return None;
        }
        let part = disk.part + 1;
        match self.create_part(&file.stem, &file.header, part) {
            Ok((new, written)) => {
                if let Some(mut old) = disk.file.replace(new)
                    && let Err(e) = old.finish()
                {
                    tracing::warn!(session = %file.header.session.name, error = %e, "cannot close a rotated recording file");
                }
                disk.part = part;
                disk.written = written;
                Some(part)
            }
            Err(e) => {
                // Keep writing to the big file rather than lose lines.
                tracing::warn!(session = %file.header.session.name, error = %e, "cannot rotate the recording");
                disk.written = 0;
                None
            }
        }
    }
}

impl Drop for Inner {
    /// A recorder dropped without `finish` (a panic, an early return) still writes out what
    /// it holds; `run.json` then has no end, and replay reads to the last whole line.
    fn drop(&mut self) {
        if !self.finished.load(Ordering::SeqCst) {
            self.flush_all();
        }
    }
}

/// The writer thread: every buffer every `FLUSH_EVERY`, a buffer that asks for it at once,
/// and everything once more when the recorder stops (the channel is dropped).
fn flush_loop(inner: &Weak<Inner>, wake: &mpsc::Receiver<Arc<SessionFile>>) {
    let mut next_all = Instant::now() + FLUSH_EVERY;
    loop {
        let (early, last) =
            match wake.recv_timeout(next_all.saturating_duration_since(Instant::now())) {
                Ok(file) => (Some(file), false),
                Err(RecvTimeoutError::Timeout) => (None, false),
                Err(RecvTimeoutError::Disconnected) => (None, true),
            };
        let Some(inner) = inner.upgrade() else {
            return;
        };
        match early {
            Some(file) if Instant::now() < next_all => inner.flush_one(&file),
            _ => {
                inner.flush_all();
                next_all = Instant::now() + FLUSH_EVERY;
            }
        }
        if last {
            return;
        }
    }
}

/// The tap of one session.
struct SessionTap {
    inner: Arc<Inner>,
    file: Arc<SessionFile>,
}

impl SessionTap {
    fn push(&self, at: Duration, dir: &str, kind: &str, data: &str) {
        self.inner.push(&self.file, at, dir, kind, data);
    }

    fn marker(&self, at: Duration, label: &str) {
        self.push(at, "=", "marker", &json_string(label));
    }
}

impl Tap for SessionTap {
    fn wire(&self, at: Duration, direction: Direction, wire: Wire<'_>) {
        let dir = match direction {
            Direction::ToRelay => ">",
            Direction::FromRelay => "<",
        };
        match wire {
            Wire::Text(text) => self.inner.push_text(&self.file, at, dir, text),
            Wire::SseEvent { event, data } => {
                let data = format!(
                    "{{\"event\":{},\"data\":{}}}",
                    json_string(event),
                    json_string(data)
                );
                self.push(at, dir, "sse", &data);
            }
            Wire::SseRefused { reason } => {
                let data = format!("{{\"reason\":{}}}", json_string(reason));
                self.push(at, dir, "refused", &data);
            }
            Wire::BodyEnd => self.push(at, dir, "body_end", "{}"),
            Wire::Binary(bytes) => {
                let data = if self.inner.options.binary_bodies {
                    let body = self.inner.redactor.redact_bytes(bytes);
                    format!(
                        "{{\"len\":{},\"b64\":\"{}\"}}",
                        bytes.len(),
                        base64::engine::general_purpose::STANDARD.encode(&*body)
                    )
                } else {
                    format!("{{\"len\":{},\"omitted\":true}}", bytes.len())
                };
                self.push(at, dir, "binary", &data);
            }
            Wire::Upgrade { status } => {
                self.push(at, dir, "upgrade", &format!("{{\"status\":{status}}}"));
            }
            Wire::Close { code, reason } => {
                let data = format!(
                    "{{\"code\":{code},\"reason\":{},\"requested\":{}}}",
                    json_string(reason),
                    direction == Direction::ToRelay
                );
                self.push(at, dir, "close", &data);
            }
        }
    }

    fn event(&self, at: Duration, kind: &EventKind) {
        let (line_kind, data) = format::encode_event(kind);
        self.push(at, "=", line_kind, &data);
        match kind {
            EventKind::BackingOff { attempt, .. } => {
                self.marker(at, &format!("reconnect {attempt}"));
            }
            EventKind::RateLimited { wait_ms, .. } => {
                self.marker(at, &format!("rate limited: wait {wait_ms} ms"));
            }
            EventKind::Marker { label } => self.marker(at, label),
            EventKind::State(SessionState::Closed) => {
                self.inner
                    .push_line(&self.file, at, "=", "end", r#"{"reason":"closed"}"#, true);
            }
            EventKind::State(SessionState::Stopped { reason }) => {
                let data = format!(
                    "{{\"reason\":\"stopped\",\"detail\":{}}}",
                    json_string(reason)
                );
                self.inner
                    .push_line(&self.file, at, "=", "end", &data, true);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
