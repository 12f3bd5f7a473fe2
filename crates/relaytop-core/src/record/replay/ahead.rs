//! Reading ahead on a thread of its own, for a replay played once from start to end
//! (`Replay::play_forward_only`: headless, export, against): the session files are read,
//! parsed, merged and decoded there, and the events handed over in batches, while the
//! caller's thread folds them into the metrics and writes its output. On two cores that is
//! the two halves of a replay's work side by side (docs/PERFORMANCE.md, issue #22).
//!
//! The reading thread runs the same `Cursor` code as reading in place (a cursor whose fold
//! folds nothing), so the events, their order, the markers and the read statistics are the
//! same. Memory stays bounded: at most `BATCHES_AHEAD` batches of `BATCH_EVENTS` events wait.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use super::{Cursor, FoldState, Marker, ReadStats};
use crate::cost::Pricing;
use crate::metrics::Metrics;
use crate::session::SessionEvent;

/// Events in one hand-over (a batch is sent sooner when the recording ends).
pub(super) const BATCH_EVENTS: usize = 2_048;
/// Room for the events of the line that fills a batch (a line makes a few at most).
const BATCH_SLACK: usize = 16;
/// Batches that may wait for the folding thread.
pub(super) const BATCHES_AHEAD: usize = 4;

/// What the reading thread hands over: the events of whole lines, in timeline order.
#[derive(Debug, Default)]
pub(super) struct Batch {
    pub(super) events: Vec<SessionEvent>,
    pub(super) markers: Vec<Marker>,
    /// The time of the last line read into this batch.
    pub(super) applied_until: Option<u64>,
    /// Lines read so far.
    pub(super) lines: u64,
    /// The read statistics, when a problem was met since the last batch (and with the last).
    pub(super) stats: Option<ReadStats>,
    /// Nothing more to read.
    pub(super) done: bool,
    /// The reading thread ended without finishing (it panicked): nothing else in the batch.
    pub(super) broken: bool,
}

/// The reading thread, seen from the folding one.
#[derive(Debug)]
pub(super) struct ReadAhead {
    /// `None` once dropped (a thread waiting to send then fails and ends).
    batches: Option<Receiver<Batch>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    done: bool,
}

impl ReadAhead {
    /// Starts reading with `cursor` (its reading state: readers, heads, decoders, positions)
    /// on a thread of its own. `None` when no thread can be started (the caller reads in
    /// place).
    pub(super) fn start(cursor: Cursor) -> Option<ReadAhead> {
        let (tx, rx) = sync_channel(BATCHES_AHEAD);
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("relaytop-replay-read".into())
            .spawn(move || read(cursor, &tx, &stopping))
            .ok()?;
        Some(ReadAhead {
            batches: Some(rx),
            stop,
            thread: Some(thread),
            done: false,
        })
    }

    /// The next batch, waiting for it; `None` once everything was handed over.
    pub(super) fn next(&mut self) -> Option<Batch> {
        let batches = self.batches.as_ref().filter(|_| !self.done)?;
        match batches.recv() {
            Ok(batch) => {
                self.done = batch.done;
                Some(batch)
            }
            Err(_) => {
                // The thread ended without saying so (it panicked): what it read is handed
                // over, and the replay says the rest is not.
                tracing::warn!("the replay's reading thread stopped early");
                self.done = true;
                Some(Batch {
                    done: true,
                    broken: true,
                    ..Batch::default()
                })
            }
        }
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Unblocks a thread waiting to send: its send fails.
        drop(self.batches.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A fold that folds nothing: the reading thread's cursor only reads and decodes.
#[derive(Debug)]
pub(super) struct NoFold(Metrics);

impl NoFold {
    pub(super) fn boxed() -> Box<dyn FoldState> {
        Box::new(NoFold(Metrics::new(Vec::new(), Pricing::default())))
    }
}

impl FoldState for NoFold {
    fn apply(&mut self, _event: &SessionEvent) {}

    fn metrics(&self) -> &Metrics {
        &self.0
    }

    fn heap_bytes(&self) -> usize {
        0
    }

    fn clone_box(&self) -> Box<dyn FoldState> {
        NoFold::boxed()
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// The reading thread: whole lines into batches until the recording ends or the replay goes.
fn read(mut cursor: Cursor, tx: &SyncSender<Batch>, stop: &AtomicBool) {
    let mut problems = problems_of(&cursor.fold.stats);
    loop {
        let mut batch = Batch::default();
        // The cursor's queue of events becomes the batch: only pushed to, it starts its
        // buffer, so that handing it over moves no event.
        cursor.pending = VecDeque::with_capacity(BATCH_EVENTS + BATCH_SLACK);
        while cursor.pending.len() < BATCH_EVENTS {
            if !cursor.apply_next_line() {
                batch.done = true;
                break;
            }
            batch.markers.append(&mut cursor.found_markers);
        }
        batch.events = Vec::from(std::mem::take(&mut cursor.pending));
        batch.applied_until = cursor.fold.applied_until;
        batch.lines = cursor.fold.stats.lines;
        let now = problems_of(&cursor.fold.stats);
        if batch.done || now != problems {
            problems = now;
            batch.stats = Some(cursor.fold.stats.clone());
        }
        let done = batch.done;
        if tx.send(batch).is_err() || done || stop.load(Ordering::Relaxed) {
            return;
        }
    }
}

/// How many problems reading has met: a batch carries the statistics when this changes.
fn problems_of(stats: &ReadStats) -> (u64, usize, usize, u64) {
    (
        stats.malformed,
        stats.torn.len(),
        stats.read_errors.len(),
        stats.request_mismatches,
    )
}
