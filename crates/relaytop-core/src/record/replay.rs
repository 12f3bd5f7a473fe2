//! The replay source: a recording played back as the same `SessionEvent`s the live run
//! reported, on the original clock (scaled, paused, stepped, seeked, jumped marker to marker).
//!
//! Every session's lines are merged on one timeline. What the relay sent (`<` text lines, and
//! for openai-sse named events, refused events and body ends) goes through the decoder the
//! live session ran (relay/v1 `Decoder`, `SseDecoder`, `RealtimeDecoder`) to derive the events
//! the frames meant; a `=` line is an event the session reported itself, and a `RequestSent`,
//! `RequestFailed` or `Done` one also moves the decoder's request state, as it moved live. The
//! metrics fold rides along, so that `metrics()` is the state at the current position.
//!
//! Seeking restores a checkpoint (the fold copied at a line boundary, its histograms packed)
//! and folds forward to the target. Checkpoints come from an indexing thread that reads the
//! whole recording once in the background (started by the first seek or by
//! `start_indexing`), spread so that they fill a memory budget by the end, and from the play
//! head (the last few, for quick steps back). Until the index gets somewhere, a seek there folds from the nearest point it
//! has. Measured speeds: `docs/RECORDING-NOTES.md`.
//!
//! Over 800 lines: the cursor, its checkpoints and the `Replay` API share private state (the
//! fold, the sources, the index thread's results); the per-protocol decoding is apart in
//! `decoders`.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::config::slo::Slos;
use crate::cost::Pricing;
use crate::metrics::Metrics;
use crate::record::format::{Entry, Record, RunManifest};
use crate::record::player::{Due, Player, Speed};
use crate::record::reader::{self, Item, LineReader, Position, ReadError, SessionRecording};
use crate::report::RunInfo;
use crate::session::{ErrorKind, EventKind, SessionEvent, SessionId, SessionInfo};

mod ahead;
mod decoders;
use ahead::{NoFold, ReadAhead};
use decoders::ProtocolDecoder;

/// Lines between two checkpoints of the index, at least (a seek folds at most about this
/// many lines: ~1 µs each).
pub const CHECKPOINT_LINES: u64 = 8_192;
/// Memory the index's checkpoints together may hold (by default). A checkpoint keeps the
/// metrics fold packed (`Metrics::packed`: its HDR histograms as the buckets that hold
/// samples), about 0.45 MiB for one provider instead of 6 MiB whole, so a 1 GB recording
/// keeps one every 8,192 lines in about 760 MiB for seeks of ~3 ms; less memory, fewer
/// checkpoints, longer seeks.
pub const CHECKPOINT_BUDGET_BYTES: usize = 1 << 30;
/// Lines between two checkpoints kept near the play head (quick steps back).
pub const RECENT_CHECKPOINT_LINES: u64 = 32_768;
/// Checkpoints kept near the play head.
pub const RECENT_CHECKPOINTS: usize = 8;
/// Problems remembered in detail (the rest are only counted).
const PROBLEMS_KEPT: usize = 8;

/// The read buffers of all the session files together (each between 4 and 64 KiB): what a
/// recording of thousands of sessions holds to read them side by side. 4 MiB, not 16: the
/// merge takes a line from each session in turn, so each buffer's next line is touched long
/// after it was read, and 1,000 sessions' 16 KiB outgrew the caches (replay 5 to 10 % faster
/// at 4 KiB each, docs/PERFORMANCE.md).
const READ_BUFFERS_BYTES: usize = 4 << 20;

/// A point to jump to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Marker {
    /// Microseconds on the replay's timeline.
    pub at_us: u64,
    pub session: SessionId,
    pub label: String,
}

/// A line the reader could not use, and where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineProblem {
    pub file: PathBuf,
    /// Line number, counting from 1.
    pub line: u64,
    /// Byte offset of the line's start.
    pub offset: u64,
    pub reason: String,
}

impl std::fmt::Display for LineProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} line {} (byte {}): {}",
            self.file.display(),
            self.line,
            self.offset,
            self.reason
        )
    }
}

/// What reading found besides events: malformed lines, torn ends, read errors.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadStats {
    /// Event lines read.
    pub lines: u64,
    /// Malformed lines skipped.
    pub malformed: u64,
    /// The first few of them.
    pub first_malformed: Vec<LineProblem>,
    /// Sessions whose last line is incomplete: where their reading stopped.
    pub torn: Vec<LineProblem>,
    /// Files that could not be read on.
    pub read_errors: Vec<String>,
    /// `RequestSent` lines whose request number the decoder did not agree with.
    pub request_mismatches: u64,
}

impl ReadStats {
    /// One line per problem, for people.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        for t in &self.torn {
            out.push(format!(
                "{}: stopped at line {} (byte {}): {}",
                t.file.display(),
                t.line,
                t.offset,
                t.reason
            ));
        }
        if self.malformed > 0 {
            let first = self
                .first_malformed
                .first()
                .map(|p| format!(" (first: {p})"))
                .unwrap_or_default();
            out.push(format!(
                "skipped {} malformed line{}{first}",
                self.malformed,
                if self.malformed == 1 { "" } else { "s" }
            ));
        }
        out.extend(self.read_errors.iter().cloned());
        if self.request_mismatches > 0 {
            out.push(format!(
                "{} requests were numbered differently than recorded",
                self.request_mismatches
            ));
        }
        out
    }
}

/// One session of the replay.
#[derive(Debug)]
struct Source {
    recording: SessionRecording,
    info: SessionInfo,
    /// When this session's clock started on the replay's timeline.
    offset_us: u64,
    /// The size of each of its files when opened.
    part_sizes: Vec<u64>,
}

/// What the replay folds the events it hands out (or skips by a seek) into, kept in its
/// checkpoints: the metrics by default; a consumer that shows more than the metrics (the
/// dashboard's stream text and event log) folds its own state, which always has the metrics
/// inside, so that a seek lands it exactly where playing there would have.
pub trait FoldState: std::fmt::Debug + Send + 'static {
    fn apply(&mut self, event: &SessionEvent);
    fn metrics(&self) -> &Metrics;
    /// Approximate heap bytes, for the checkpoint budget.
    fn heap_bytes(&self) -> usize;
    fn clone_box(&self) -> Box<dyn FoldState>;
    /// A copy for a checkpoint, as small as it can be while reading and folding the same (the
    /// metrics' histograms packed: `Metrics::packed`). By default a plain copy.
    fn packed(&self) -> Box<dyn FoldState> {
        self.clone_box()
    }
    /// For the consumer to get its own type back.
    fn as_any(&self) -> &dyn std::any::Any;
}

impl FoldState for Metrics {
    fn apply(&mut self, event: &SessionEvent) {
        Metrics::apply(self, event);
    }

    fn metrics(&self) -> &Metrics {
        self
    }

    fn heap_bytes(&self) -> usize {
        let sessions: usize = self.sessions().map(|s| s.heap_bytes()).sum();
        let providers: usize = self.providers().iter().map(|p| p.heap_bytes()).sum();
        sessions + providers + self.totals().heap_bytes()
    }

    fn clone_box(&self) -> Box<dyn FoldState> {
        Box::new(self.clone())
    }

    fn packed(&self) -> Box<dyn FoldState> {
        Box::new(Metrics::packed(self))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl Clone for Box<dyn FoldState> {
    fn clone(&self) -> Self {
        self.clone_box()
    }
}

/// The state of the fold at a line boundary: what a checkpoint keeps.
#[derive(Clone, Debug)]
struct Fold {
    decoders: Vec<ProtocolDecoder>,
    /// Per session: where its next unread line starts.
    positions: Vec<Position>,
    /// Per session: nothing more to read.
    finished: Vec<bool>,
    /// The metrics (or a consumer's state holding them).
    state: Box<dyn FoldState>,
    /// The time of the last line applied.
    applied_until: Option<u64>,
    /// The time of the last event folded into the metrics (handed out or skipped by a seek).
    delivered_until: Option<u64>,
    stats: ReadStats,
}

impl Fold {
    fn new(sources: &[Source], pricing: &Pricing, slos: &Slos) -> Self {
        let n = sources.len();
        Self {
            decoders: sources
                .iter()
                .map(|s| ProtocolDecoder::for_protocol(s.info.protocol))
                .collect(),
            positions: vec![Position::START; n],
            finished: vec![false; n],
            state: Box::new(
                Metrics::new(
                    sources.iter().map(|s| s.info.clone()).collect(),
                    pricing.clone(),
                )
                .with_slos(slos.clone()),
            ),
            applied_until: None,
            delivered_until: None,
            stats: ReadStats::default(),
        }
    }

    /// A copy to keep in a checkpoint: the state packed (`FoldState::packed`).
    fn packed(&self) -> Self {
        Self {
            decoders: self.decoders.clone(),
            positions: self.positions.clone(),
            finished: self.finished.clone(),
            state: self.state.packed(),
            applied_until: self.applied_until,
            delivered_until: self.delivered_until,
            stats: self.stats.clone(),
        }
    }

    /// Approximate heap bytes, for the checkpoint budget.
    fn heap_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.state.heap_bytes()
            + self.decoders.len() * (std::mem::size_of::<ProtocolDecoder>() + 64)
            + self.positions.len() * std::mem::size_of::<Position>()
    }
}

/// Reads and folds the merged timeline.
struct Cursor {
    sources: Arc<[Source]>,
    readers: Vec<Option<LineReader>>,
    /// Per session: its next line, read ahead.
    heads: Vec<Option<Record>>,
    /// The sessions whose next line is read ahead, by that line's time (then session): the
    /// next line of the merged timeline is the top. Filled on first use after a restore.
    queue: BinaryHeap<Reverse<(u64, usize)>>,
    /// `queue` holds every session that has a next line.
    queued: bool,
    /// Each session reader's buffer: the readers of a many-session recording share a budget.
    read_buffer: usize,
    fold: Fold,
    /// Events of the last line applied, not yet handed out.
    pending: VecDeque<SessionEvent>,
    /// Markers met since the owner last took them.
    found_markers: Vec<Marker>,
    /// Checkpoints taken while playing and seeking (0 lines: none), the newest last.
    recent: VecDeque<Checkpoint>,
    recent_every: u64,
    recent_last_lines: u64,
    /// Read, parse and decode on a thread of their own (`ahead`), this thread only folding:
    /// for a replay played once forward (`Replay::play_forward_only`).
    read_ahead: bool,
    /// The reading thread, started by the first line wanted.
    ahead: Option<ReadAhead>,
}

impl Cursor {
    fn new(sources: Arc<[Source]>, fold: Fold) -> Self {
        let n = sources.len();
        Self {
            sources,
            readers: (0..n).map(|_| None).collect(),
            heads: vec![None; n],
            queue: BinaryHeap::with_capacity(n),
            queued: false,
            read_buffer: (READ_BUFFERS_BYTES / n.max(1)).clamp(4 << 10, 64 << 10),
            fold,
            pending: VecDeque::new(),
            found_markers: Vec::new(),
            recent: VecDeque::new(),
            recent_every: 0,
            recent_last_lines: 0,
            read_ahead: false,
            ahead: None,
        }
    }

    /// Keeps a checkpoint now and then while lines are applied (between lines, with every
    /// event handed out), the last `RECENT_CHECKPOINTS` of them.
    fn keep_recent(&mut self) {
        let lines = self.fold.stats.lines;
        if self.recent_every == 0
            || !self.pending.is_empty()
            || lines < self.recent_last_lines.saturating_add(self.recent_every)
        {
            return;
        }
        self.recent_last_lines = lines;
        if self.recent.len() >= RECENT_CHECKPOINTS {
            self.recent.pop_front();
        }
        let fold = self.fold.packed();
        self.recent.push_back(Checkpoint {
            applied_until: fold.applied_until,
            bytes: fold.heap_bytes(),
            fold,
        });
    }

    /// Bytes of the recording read so far (all sessions).
    fn bytes_read(&self) -> u64 {
        self.sources
            .iter()
            .zip(&self.fold.positions)
            .map(|(source, pos)| source.part_sizes.iter().take(pos.part).sum::<u64>() + pos.offset)
            .sum()
    }

    /// Goes back (or forward) to a checkpoint.
    fn restore(&mut self, fold: Fold) {
        // The reading thread read on from where it was: it goes, and the next line wanted
        // starts another from the restored positions.
        self.ahead = None;
        self.fold = fold;
        self.recent_last_lines = self.fold.stats.lines;
        self.readers.iter_mut().for_each(|r| *r = None);
        self.heads.iter_mut().for_each(|h| *h = None);
        self.queue.clear();
        self.queued = false;
        self.pending.clear();
    }

    /// The time of session `s`'s next line, reading it if needed.
    fn head_time(&mut self, s: usize) -> Option<u64> {
        let offset = self.sources[s].offset_us;
        if let Some(head) = &self.heads[s] {
            return Some(head.t_us.saturating_add(offset));
        }
        if self.fold.finished[s] {
            return None;
        }
        let source = &self.sources[s];
        let buffer = self.read_buffer;
        let reader = self.readers[s].get_or_insert_with(|| {
            LineReader::new(source.recording.parts.clone(), self.fold.positions[s])
                .with_buffer(buffer)
        });
        let file = |r: &LineReader| r.path().map(Path::to_path_buf).unwrap_or_default();
        loop {
            match reader.next_item() {
                Ok(Item::Record { record, at }) => {
                    self.fold.positions[s] = at;
                    let t = record.t_us.saturating_add(offset);
                    self.heads[s] = Some(record);
                    return Some(t);
                }
                Ok(Item::Malformed { at, reason }) => {
                    let stats = &mut self.fold.stats;
                    stats.malformed += 1;
                    if stats.first_malformed.len() < PROBLEMS_KEPT {
                        stats.first_malformed.push(LineProblem {
                            file: file(reader),
                            line: at.line,
                            offset: at.offset,
                            reason,
                        });
                    }
                    self.fold.positions[s] = reader.position();
                }
                Ok(Item::Torn { at }) => {
                    self.fold.stats.torn.push(LineProblem {
                        file: file(reader),
                        line: at.line,
                        offset: at.offset,
                        reason: "the last line is incomplete (the run was cut short)".into(),
                    });
                    self.fold.positions[s] = at;
                    self.fold.finished[s] = true;
                    return None;
                }
                Ok(Item::End) => {
                    self.fold.positions[s] = reader.position();
                    self.fold.finished[s] = true;
                    return None;
                }
                Err(e) => {
                    let stats = &mut self.fold.stats;
                    if stats.read_errors.len() < PROBLEMS_KEPT {
                        stats
                            .read_errors
                            .push(format!("{}: {e}", file(reader).display()));
                    }
                    self.fold.finished[s] = true;
                    return None;
                }
            }
        }
    }

    /// The session whose line comes next, and its time (ties: the lower session first). Its
    /// entry stays at the top of the queue: the caller takes its head and calls `requeue`.
    fn next_line(&mut self) -> Option<(usize, u64)> {
        if !self.queued {
            self.queued = true;
            self.queue.clear();
            for s in 0..self.sources.len() {
                if let Some(t) = self.head_time(s) {
                    self.queue.push(Reverse((t, s)));
                }
            }
        }
        self.queue.peek().map(|&Reverse((t, s))| (s, t))
    }

    /// Reads session `s`'s next line ahead (after its head was taken) and moves it down the
    /// queue from the top, where `next_line` left it: one sift, not a pop and a push.
    fn requeue(&mut self, s: usize) {
        let next = self.head_time(s);
        if let Some(mut top) = self.queue.peek_mut() {
            debug_assert_eq!(top.0.1, s, "requeue follows next_line");
            match next {
                Some(t) => *top = Reverse((t, s)),
                None => {
                    std::collections::binary_heap::PeekMut::pop(top);
                }
            }
        }
    }

    /// The time of the next event, applying the lines before it (lines that make no event,
    /// and the line that makes it, whose events wait in `pending`).
    fn next_time(&mut self) -> Option<u64> {
        loop {
            if let Some(e) = self.pending.front() {
                return Some(e.at_us);
            }
            if !self.apply_next_line() {
                return None;
            }
        }
    }

    /// Folds the next pending event into the metrics and hands it out.
    fn deliver(&mut self) -> Option<SessionEvent> {
        let event = self.pending.pop_front()?;
        self.fold.state.apply(&event);
        self.fold.delivered_until = Some(event.at_us);
        Some(event)
    }

    /// Applies the next line (reading ahead: the next batch of lines): its events go to
    /// `pending`. False at the end.
    fn apply_next_line(&mut self) -> bool {
        if self.read_ahead {
            return self.apply_read_ahead();
        }
        self.keep_recent();
        let Some((s, t)) = self.next_line() else {
            return false;
        };
        let Some(record) = self.heads[s].take() else {
            self.queue.pop();
            return false;
        };
        if let Some(reader) = &self.readers[s] {
            self.fold.positions[s] = reader.position();
        }
        self.requeue(s);
        self.fold.applied_until = Some(t);
        self.fold.stats.lines += 1;
        let session = SessionId::try_from(s).unwrap_or(SessionId::MAX);
        let at = Duration::from_micros(t);
        let decoder = &mut self.fold.decoders[s];
        match record.entry {
            Entry::Event(kind) => {
                match &kind {
                    EventKind::RequestSent {
                        request,
                        model,
                        prompt_tokens_estimate,
                    } => {
                        let number = decoder.request_sent(at, model, *prompt_tokens_estimate);
                        if number != *request {
                            self.fold.stats.request_mismatches += 1;
                        }
                    }
                    EventKind::RequestFailed { kind, reason, .. } => {
                        // The session reported the failure itself; the decoder's copy goes.
                        decoder.end_request(*kind, reason);
                    }
                    EventKind::Done(_) => {
                        // A response the session ended itself (an SSE cancel): the same.
                        decoder.end_request(ErrorKind::Other, "ended by the session");
                    }
                    _ => {}
                }
                self.pending.push_back(SessionEvent {
                    session,
                    at_us: t,
                    kind,
                });
            }
            Entry::Marker(label) => self.found_markers.push(Marker {
                at_us: t,
                session,
                label,
            }),
            entry => {
                let pending = &mut self.pending;
                decoder.on_line(at, &entry, &mut |kind| {
                    pending.push_back(SessionEvent {
                        session,
                        at_us: t,
                        kind,
                    });
                });
            }
        }
        true
    }

    /// Takes the reading thread's next batch of lines, starting the thread if needed (from
    /// this cursor's positions and decoders). False at the end.
    fn apply_read_ahead(&mut self) -> bool {
        if self.ahead.is_none() {
            let fold = Fold {
                decoders: self.fold.decoders.clone(),
                positions: self.fold.positions.clone(),
                finished: self.fold.finished.clone(),
                state: NoFold::boxed(),
                applied_until: self.fold.applied_until,
                delivered_until: self.fold.delivered_until,
                stats: self.fold.stats.clone(),
            };
            // Lines already read ahead here are read again there, from their positions.
            self.readers.iter_mut().for_each(|r| *r = None);
            self.heads.iter_mut().for_each(|h| *h = None);
            self.queue.clear();
            self.queued = false;
            match ReadAhead::start(Cursor::new(self.sources.clone(), fold)) {
                Some(ahead) => self.ahead = Some(ahead),
                None => {
                    tracing::debug!("no thread to read a replay ahead: reading in place");
                    self.read_ahead = false;
                    return self.apply_next_line();
                }
            }
        }
        let Some(batch) = self.ahead.as_mut().and_then(ReadAhead::next) else {
            return false;
        };
        if batch.broken {
            self.fold.stats.read_errors.push(
                "the replay stopped reading early (its reading thread failed): the figures \
                 cover the recording up to there; run it again, and report it if it repeats"
                    .into(),
            );
            return false;
        }
        self.fold.stats.lines = batch.lines;
        if let Some(stats) = batch.stats {
            self.fold.stats = stats;
        }
        if batch.applied_until.is_some() {
            self.fold.applied_until = batch.applied_until;
        }
        self.found_markers.extend(batch.markers);
        if self.pending.is_empty() {
            // The batch's buffer becomes the queue: no event moved.
            self.pending = VecDeque::from(batch.events);
        } else {
            self.pending.extend(batch.events);
        }
        true
    }

    /// Hands out the next event (folding it into the metrics).
    fn next_event(&mut self) -> Option<SessionEvent> {
        self.next_time()?;
        self.deliver()
    }

    /// Folds every event still pending into the metrics.
    fn drain(&mut self) {
        while self.deliver().is_some() {}
    }

    /// Folds every event before `target_us`; the next one is at or after it.
    fn fold_until(&mut self, target_us: u64) {
        while self.next_time().is_some_and(|t| t < target_us) {
            self.deliver();
        }
    }
}

/// A checkpoint: the fold after every line up to `applied_until`.
struct Checkpoint {
    applied_until: Option<u64>,
    fold: Fold,
    bytes: usize,
}

/// What the indexing thread shares.
#[derive(Default)]
struct Shared {
    checkpoints: Mutex<Vec<Checkpoint>>,
    markers: Mutex<BTreeSet<Marker>>,
    progress: Mutex<Progress>,
    stop: AtomicBool,
}

/// How far indexing got.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Time of the last line indexed.
    pub indexed_until_us: Option<u64>,
    /// The whole recording is indexed: every marker is known, seeks are quick everywhere.
    pub done: bool,
    /// What reading the whole recording found (once done).
    pub stats: Option<ReadStats>,
    /// Checkpoints kept, the lines between two of them, and the memory they hold.
    pub checkpoints: usize,
    pub spacing_lines: u64,
    pub checkpoint_bytes: usize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Why a replay cannot be opened.
pub type OpenError = ReadError;

/// A recording being replayed.
pub struct Replay {
    sources: Arc<[Source]>,
    infos: Vec<SessionInfo>,
    pricing: Pricing,
    /// The run's objectives, as its `run.json` keeps them (none in older recordings).
    slos: Slos,
    manifest: Option<RunManifest>,
    started_at: DateTime<Utc>,
    source_label: String,
    end_us: u64,
    initial: Fold,
    cursor: Cursor,
    player: Player,
    shared: Arc<Shared>,
    indexer: Option<JoinHandle<()>>,
    indexing_started: bool,
    /// `play_forward_only`: a seek forward folds on from here, with no index.
    forward_only: bool,
    checkpoint_lines: u64,
    checkpoint_budget: usize,
    /// Gzip files unpacked for this replay (removed when it goes).
    _unpacked: crate::record::gzip::Unpacked,
}

impl std::fmt::Debug for Replay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replay")
            .field("sessions", &self.infos.len())
            .field("end_us", &self.end_us)
            .finish_non_exhaustive()
    }
}

impl Replay {
    /// Opens a run directory, its `run.json`, or session files, merging every session on one
    /// timeline. Reads the headers and the files' tails only.
    pub fn open(paths: &[PathBuf]) -> Result<Replay, OpenError> {
        let found = reader::discover(paths)?;
        let mut pricing_map = found
            .manifest
            .as_ref()
            .map(|m| m.pricing.clone())
            .unwrap_or_default();
        let mut sources = Vec::with_capacity(found.sessions.len());
        let mut end_us = 0u64;
        for (i, (recording, offset_us)) in
            found.sessions.into_iter().zip(found.offsets_us).enumerate()
        {
            let mut info = recording.header.info();
            info.id = SessionId::try_from(i).unwrap_or(SessionId::MAX);
            if let Some(p) = &recording.header.pricing {
                pricing_map
                    .entry(info.provider.clone())
                    .or_insert_with(|| p.clone());
            }
            if let Some(last) = recording.parts.last()
                && let Ok(Some(t)) = reader::last_time(last)
            {
                end_us = end_us.max(t.saturating_add(offset_us));
            }
            let part_sizes = recording
                .parts
                .iter()
                .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
                .collect();
            sources.push(Source {
                part_sizes,
                recording,
                info,
                offset_us,
            });
        }
        let pricing = Pricing::from(pricing_map);
        let sources: Arc<[Source]> = sources.into();
        // The tokenizer tables its sessions' models count with build on their own thread
        // while the first lines are read, as a live run's do, not inside the first count.
        crate::tokenize::warm_up_for(sources.iter().map(|s| s.info.model.as_str()));
        let manifest = found.manifest;
        let started_at = manifest
            .as_ref()
            .and_then(|m| crate::record::format::parse_wall_clock(&m.started_at))
            .unwrap_or(found.started_at);
        let source_label = manifest
            .as_ref()
            .map(|m| m.source.clone())
            .or_else(|| {
                sources
                    .first()
                    .and_then(|s| s.recording.header.run.as_ref())
                    .map(|r| r.source.clone())
            })
            .unwrap_or_default();
        // The run's objectives; session files opened without their run.json, each provider's
        // from its sessions' headers.
        let slos = manifest
            .as_ref()
            .and_then(|m| m.slo.clone())
            .unwrap_or_else(|| Slos {
                providers: sources
                    .iter()
                    .filter_map(|s| Some((s.info.provider.clone(), s.recording.header.slo?)))
                    .collect(),
                ..Slos::default()
            });
        let mut initial = Fold::new(&sources, &pricing, &slos);
        initial.stats.read_errors.extend(found.notes);
        let mut cursor = Cursor::new(sources.clone(), initial.clone());
        cursor.recent_every = RECENT_CHECKPOINT_LINES;
        Ok(Replay {
            infos: sources.iter().map(|s| s.info.clone()).collect(),
            cursor,
            sources,
            pricing,
            slos,
            manifest,
            started_at,
            source_label,
            end_us,
            initial,
            player: Player::default(),
            shared: Arc::new(Shared::default()),
            indexer: None,
            indexing_started: false,
            forward_only: false,
            checkpoint_lines: CHECKPOINT_LINES,
            checkpoint_budget: CHECKPOINT_BUDGET_BYTES,
            _unpacked: found.unpacked,
        })
    }

    /// Lines between two checkpoints, at least (before indexing starts; tests use small
    /// recordings). Checkpoints near the play head come as often.
    pub fn set_checkpoint_lines(&mut self, lines: u64) {
        if !self.indexing_started {
            self.checkpoint_lines = lines.max(1);
            self.cursor.recent_every = lines.max(1);
        }
    }

    /// Played once from start to end, never sought back (headless, export, against): keeps
    /// no checkpoints near the play head, which would pack every session's metrics every
    /// `RECENT_CHECKPOINT_LINES` lines for nothing, and reads, parses and decodes the lines
    /// on a thread of its own while the caller's thread folds (`ahead`). A seek still works
    /// (forward by folding on, back from the start).
    pub fn play_forward_only(&mut self) {
        self.cursor.recent_every = 0;
        self.cursor.recent.clear();
        self.cursor.read_ahead = true;
        self.forward_only = true;
    }

    /// Memory the index's checkpoints may hold (before indexing starts): more memory, denser
    /// checkpoints, quicker seeks.
    pub fn set_checkpoint_budget(&mut self, bytes: usize) {
        if !self.indexing_started {
            self.checkpoint_budget = bytes;
        }
    }

    /// The sessions, by id (ids count from 0 in the replay).
    pub fn sessions(&self) -> &[SessionInfo] {
        &self.infos
    }

    /// The prices the run used.
    pub fn pricing(&self) -> &Pricing {
        &self.pricing
    }

    /// The objectives the run judged its requests by (none for an older recording).
    pub fn slos(&self) -> &Slos {
        &self.slos
    }

    /// `run.json`, when a run directory was opened.
    pub fn manifest(&self) -> Option<&RunManifest> {
        self.manifest.as_ref()
    }

    /// The wall-clock time of the timeline's zero.
    pub fn started_at(&self) -> DateTime<Utc> {
        self.started_at
    }

    /// The time of the last line (from the files' tails), microseconds.
    pub fn end_us(&self) -> u64 {
        self.end_us
    }

    /// The run's length: as the run reported it when it ended cleanly, else the last line.
    pub fn duration_us(&self) -> u64 {
        self.manifest
            .as_ref()
            .and_then(|m| m.duration_us)
            .unwrap_or(self.end_us)
    }

    /// What the report says about the run, as the live run said it.
    pub fn run_info(&self) -> RunInfo {
        RunInfo {
            started_at: self.started_at,
            duration_us: self.duration_us(),
            source: self.source_label.clone(),
            ended_by: match &self.manifest {
                Some(m) => m.ended_by.clone().unwrap_or_else(|| {
                    "the recording ends (the run did not finish cleanly)".into()
                }),
                None => "the recording ends (no run.json says how the run ended)".into(),
            },
        }
    }

    /// The metrics at the current position (every event handed out, or skipped by a seek).
    pub fn metrics(&self) -> &Metrics {
        self.cursor.fold.state.metrics()
    }

    /// The folded state at the current position: the metrics, or what `fold_into` gave.
    pub fn state(&self) -> &dyn FoldState {
        self.cursor.fold.state.as_ref()
    }

    /// Folds into `state` (which must hold fresh metrics of these sessions and prices) from
    /// now on, checkpoints included. Only before anything is played or indexed: false (and
    /// nothing changed) after.
    pub fn fold_into(&mut self, state: Box<dyn FoldState>) -> bool {
        let fresh = self.cursor.fold.stats.lines == 0
            && self.cursor.fold.delivered_until.is_none()
            && self.cursor.pending.is_empty();
        if self.indexing_started || !fresh {
            return false;
        }
        self.initial.state = state.clone_box();
        self.cursor.fold.state = state;
        true
    }

    /// Folds nothing from now on: for a consumer that keeps figures of its own and never
    /// reads the replay's metrics (`relaytop export`), whose thread then only hands events
    /// out. As `fold_into`: only before anything is played or indexed (false after).
    pub fn fold_nothing(&mut self) -> bool {
        self.fold_into(NoFold::boxed())
    }

    /// Each session's heartbeat interval, as its header says (`None`: no heartbeats).
    pub fn heartbeats(&self) -> Vec<Option<Duration>> {
        self.sources
            .iter()
            .map(|s| {
                let config = s.recording.header.config.as_ref()?;
                let every = config.heartbeat_s.as_ref()?.0;
                Duration::try_from_secs_f64(every)
                    .ok()
                    .filter(|d| !d.is_zero())
            })
            .collect()
    }

    /// Malformed lines, torn ends and read errors met so far.
    pub fn read_stats(&self) -> &ReadStats {
        &self.cursor.fold.stats
    }

    /// Whether every event has been handed out.
    pub fn at_end(&mut self) -> bool {
        self.next_time().is_none()
    }

    /// The time of what comes next (an event, or a line that may make events), if anything.
    pub fn next_time(&mut self) -> Option<u64> {
        let next = self.cursor.next_time();
        self.take_markers();
        next
    }

    /// The next event, at once (no clock): for reports and exports.
    pub fn next_event(&mut self) -> Option<SessionEvent> {
        let event = self.cursor.next_event();
        self.take_markers();
        event
    }

    /// Every event from here to the end, at once (no clock), as `next_event` hands them out
    /// one by one (each folded into the metrics first), but lent to `each` where it waits
    /// rather than moved out: for reports that play a whole recording. Stops at the first
    /// error of `each` (the events after that one stay to be handed out).
    pub fn play_to_end<E>(
        &mut self,
        mut each: impl FnMut(&SessionEvent) -> Result<(), E>,
    ) -> Result<(), E> {
        while self.next_time().is_some() {
            let cursor = &mut self.cursor;
            let mut handed = 0;
            let mut result = Ok(());
            for event in &cursor.pending {
                cursor.fold.state.apply(event);
                cursor.fold.delivered_until = Some(event.at_us);
                handed += 1;
                result = each(event);
                if result.is_err() {
                    break;
                }
            }
            cursor.pending.drain(..handed);
            result?;
        }
        Ok(())
    }

    // ---- playing on a clock ----

    /// The next event if it is due at `now` (the caller's monotonic time), else `None`.
    pub fn poll(&mut self, now: Duration) -> Option<SessionEvent> {
        let next = self.next_time()?;
        if self.player.due(now, next) != Due::Now {
            return None;
        }
        self.player.played(now, next);
        self.cursor.deliver()
    }

    /// When to poll next: `Some(now)` if an event is due, `None` when paused or at the end.
    pub fn next_wake(&mut self, now: Duration) -> Option<Duration> {
        let next = self.next_time()?;
        match self.player.due(now, next) {
            Due::Now => Some(now),
            Due::At(at) => Some(at),
            Due::Paused => None,
        }
    }

    /// Where the replay is on the timeline at `now`, microseconds.
    pub fn position_us(&mut self, now: Duration) -> u64 {
        let next = self.next_time();
        self.player.position_us(now, next)
    }

    /// The next event whatever its time (step while paused); the clock moves to it.
    pub fn step(&mut self, now: Duration) -> Option<SessionEvent> {
        let event = self.next_event()?;
        self.player.jump(now, event.at_us);
        Some(event)
    }

    pub fn speed(&self) -> Speed {
        self.player.speed()
    }

    pub fn set_speed(&mut self, now: Duration, speed: Speed) {
        self.player.set_speed(now, speed);
    }

    pub fn faster(&mut self, now: Duration) {
        let s = self.player.speed().faster();
        self.player.set_speed(now, s);
    }

    pub fn slower(&mut self, now: Duration) {
        let s = self.player.speed().slower();
        self.player.set_speed(now, s);
    }

    pub fn is_paused(&self) -> bool {
        self.player.is_paused()
    }

    pub fn pause(&mut self, now: Duration) {
        self.player.pause(now);
    }

    pub fn resume(&mut self, now: Duration) {
        self.player.resume(now);
    }

    pub fn toggle_pause(&mut self, now: Duration) {
        if self.player.is_paused() {
            self.player.resume(now);
        } else {
            self.player.pause(now);
        }
    }

    /// Long silences play as at most `limit` (asciinema's idle-time limit); `None`: as recorded.
    pub fn set_idle_limit(&mut self, limit: Option<Duration>) {
        self.player.set_idle_limit(limit);
    }

    pub fn idle_limit(&self) -> Option<Duration> {
        self.player.idle_limit()
    }

    // ---- seeking ----

    /// Goes to `target_us`: every event before it folded (not handed out), the next event the
    /// first at or after it.
    pub fn seek_to(&mut self, now: Duration, target_us: u64) {
        if !self.forward_only {
            self.start_indexing();
        }
        let before = |c: &Checkpoint| c.applied_until.is_none_or(|t| t < target_us);
        let recent = self
            .cursor
            .recent
            .iter()
            .filter(|c| before(c))
            .max_by_key(|c| c.applied_until);
        let checkpoint = {
            let checkpoints = lock(&self.shared.checkpoints);
            let i = checkpoints.partition_point(before);
            let indexed = i.checked_sub(1).and_then(|i| checkpoints.get(i));
            let best = match (indexed, recent) {
                (Some(a), Some(b)) if b.applied_until > a.applied_until => Some(b),
                (Some(a), _) => Some(a),
                (None, b) => b,
            };
            best.map(|c| (c.applied_until, c.fold.clone()))
        };
        // The current state is usable when nothing at or after the target was folded.
        let current = self.cursor.fold.delivered_until;
        let current_usable = current.is_none_or(|t| t < target_us);
        match checkpoint {
            Some((at, fold)) if !current_usable || at > current => self.cursor.restore(fold),
            None if !current_usable => self.cursor.restore(self.initial.clone()),
            _ => {}
        }
        self.cursor.fold_until(target_us);
        self.take_markers();
        self.player.jump(now, target_us);
    }

    /// Moves by `delta_us` (negative: back) from the current position.
    pub fn seek_by(&mut self, now: Duration, delta_us: i64) {
        let pos = self.position_us(now);
        let target = pos
            .saturating_add_signed(delta_us)
            .min(self.end_us.saturating_add(1));
        self.seek_to(now, target);
    }

    /// Back to the start: nothing folded.
    pub fn seek_to_start(&mut self, now: Duration) {
        self.cursor.restore(self.initial.clone());
        self.player.jump(now, 0);
    }

    /// To the end: everything folded.
    pub fn seek_to_end(&mut self, now: Duration) {
        self.seek_to(now, u64::MAX);
        let end = self
            .cursor
            .fold
            .delivered_until
            .unwrap_or(0)
            .max(self.end_us);
        self.player.jump(now, end);
    }

    /// Jumps to the first marker after the current position (and returns it).
    pub fn next_marker(&mut self, now: Duration) -> Option<Marker> {
        let pos = self.position_us(now);
        self.take_markers();
        let known = lock(&self.shared.markers)
            .iter()
            .find(|m| m.at_us > pos)
            .cloned();
        let indexed_past = {
            let p = lock(&self.shared.progress);
            p.done || p.indexed_until_us.is_some_and(|t| t > pos)
        };
        let scanned = if indexed_past {
            None
        } else {
            self.scan_for_marker(pos)
        };
        let marker = match (known, scanned) {
            (Some(k), Some(s)) => Some(k.min(s)),
            (k, s) => k.or(s),
        }?;
        self.seek_to(now, marker.at_us);
        Some(marker)
    }

    /// Jumps to the last marker before the current position (and returns it).
    pub fn previous_marker(&mut self, now: Duration) -> Option<Marker> {
        let pos = self.position_us(now);
        let marker = lock(&self.shared.markers)
            .iter()
            .rev()
            .find(|m| m.at_us < pos)
            .cloned()?;
        self.seek_to(now, marker.at_us);
        Some(marker)
    }

    /// Every marker known so far (all of them once indexing is done), in time order.
    pub fn markers(&self) -> Vec<Marker> {
        lock(&self.shared.markers).iter().cloned().collect()
    }

    /// How far the background indexing got.
    pub fn indexing(&self) -> Progress {
        lock(&self.shared.progress).clone()
    }

    /// Starts reading the whole recording in the background, for quick seeks and the full
    /// list of markers. Seeking starts it too. Does nothing if it has started.
    pub fn start_indexing(&mut self) {
        if self.indexing_started {
            return;
        }
        self.indexing_started = true;
        let cursor = Cursor::new(self.sources.clone(), self.initial.clone());
        let shared = self.shared.clone();
        let spacing = self.checkpoint_lines;
        let budget = self.checkpoint_budget;
        let total_bytes = self
            .sources
            .iter()
            .map(|s| s.part_sizes.iter().sum::<u64>())
            .sum();
        let spawned = std::thread::Builder::new()
            .name("relaytop-replay-index".into())
            .spawn(move || index(cursor, &shared, spacing, budget, total_bytes));
        match spawned {
            Ok(handle) => self.indexer = Some(handle),
            Err(e) => tracing::warn!(error = %e, "cannot start indexing the recording"),
        }
    }

    /// Waits until indexing is done (benchmarks and tests).
    pub fn wait_indexed(&mut self) {
        self.start_indexing();
        if let Some(handle) = self.indexer.take()
            && handle.join().is_err()
        {
            tracing::warn!("the replay's indexing thread panicked");
        }
    }

    fn take_markers(&mut self) {
        if !self.cursor.found_markers.is_empty() {
            let mut markers = lock(&self.shared.markers);
            markers.extend(self.cursor.found_markers.drain(..));
        }
    }

    /// Reads ahead (without folding) for the first marker after `after_us`.
    fn scan_for_marker(&mut self, after_us: u64) -> Option<Marker> {
        let mut best: Option<Marker> = None;
        for (s, source) in self.sources.iter().enumerate() {
            if self.cursor.fold.finished[s] && self.cursor.heads[s].is_none() {
                continue;
            }
            let mut reader = LineReader::new(
                source.recording.parts.clone(),
                self.cursor.fold.positions[s],
            );
            while let Ok(item) = reader.next_item() {
                let Item::Record { record, .. } = item else {
                    if matches!(item, Item::Malformed { .. }) {
                        continue;
                    }
                    break;
                };
                let t = record.t_us.saturating_add(source.offset_us);
                if best.as_ref().is_some_and(|b| t >= b.at_us) {
                    break;
                }
                if let Entry::Marker(label) = record.entry
                    && t > after_us
                {
                    best = Some(Marker {
                        at_us: t,
                        session: SessionId::try_from(s).unwrap_or(SessionId::MAX),
                        label,
                    });
                    break;
                }
            }
        }
        best
    }
}

impl Drop for Replay {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(handle) = self.indexer.take() {
            let _ = handle.join();
        }
    }
}

/// The indexing thread: folds the whole recording once, keeping checkpoints and markers.
fn index(mut cursor: Cursor, shared: &Shared, min_spacing: u64, budget: usize, file_bytes: u64) {
    let mut spacing = min_spacing;
    let mut since = 0u64;
    let mut total = 0usize;
    loop {
        if shared.stop.load(Ordering::Relaxed) {
            return;
        }
        if !cursor.apply_next_line() {
            break;
        }
        cursor.drain();
        if !cursor.found_markers.is_empty() {
            lock(&shared.markers).extend(cursor.found_markers.drain(..));
        }
        since += 1;
        if since < spacing {
            continue;
        }
        since = 0;
        let fold = cursor.fold.packed();
        let bytes = fold.heap_bytes();
        let mut checkpoints = lock(&shared.checkpoints);
        checkpoints.push(Checkpoint {
            applied_until: fold.applied_until,
            fold,
            bytes,
        });
        total += bytes;
        if total > budget && checkpoints.len() > 2 {
            // Over the budget after all: keep every other one (the first always).
            let mut i = 0;
            checkpoints.retain(|_| {
                i += 1;
                i % 2 == 1
            });
            total = checkpoints.iter().map(|c| c.bytes).sum();
        }
        // The spacing that spreads what the budget still holds over the lines still to come
        // (estimated from the bytes read so far), keeping a tenth for checkpoints that grow.
        let read = cursor.bytes_read().max(1);
        let lines = cursor.fold.stats.lines;
        let lines_left = (lines as f64 * file_bytes as f64 / read as f64 - lines as f64).max(0.0);
        let average = (total / checkpoints.len().max(1)).max(1);
        let slots_left = ((budget as f64 * 0.9 - total as f64) / average as f64).max(1.0);
        spacing = min_spacing.max((lines_left / slots_left).ceil() as u64);
        let mut p = lock(&shared.progress);
        p.checkpoints = checkpoints.len();
        p.spacing_lines = spacing;
        p.checkpoint_bytes = total;
        p.indexed_until_us = cursor.fold.applied_until;
    }
    let mut p = lock(&shared.progress);
    p.indexed_until_us = cursor.fold.applied_until;
    p.stats = Some(cursor.fold.stats.clone());
    p.done = true;
}
