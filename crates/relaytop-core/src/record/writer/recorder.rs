//! The `Recorder`: the run's directory and `run.json`, a tap handed out per session, markers,
//! and the end of the run.

use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::record::format::{
    self, Header, HeaderConfig, HeaderRun, HeaderSession, RunManifest, json_string,
};
use crate::record::gzip::Members;
use crate::session::event::micros;
use crate::session::tap::{Tap, TapHandle};
use crate::session::{EventKind, RunClock, SessionId, SessionInfo, SessionSpec};

use super::buffer::Buffer;
use super::flush::flush_loop;
use super::open_files::OpenFiles;
use super::options::{MarkerTarget, RecordOptions, RunMeta};
use super::redact::Redactor;
use super::tap::SessionTap;

/// Where a session's file stands on disk. The writer's alone (`Writer::disks`).
#[derive(Debug, Default)]
pub(super) struct Disk {
    /// The current part's file exists: its header is written. A session's file is made at
    /// its first write, not when the session is added (`run.json` already names it).
    pub(super) created: bool,
    pub(super) part: u32,
    /// Bytes of lines written to the current part (before compression).
    pub(super) written: u64,
    /// A write failed: logged once; later lines of this session are lost.
    pub(super) failed: bool,
}

/// One session's recording: what its tap appends to, and what its files are called.
#[derive(Debug)]
pub(super) struct SessionFile {
    pub(super) id: SessionId,
    /// Its place among the run's files: its key in the writer's state.
    pub(super) index: usize,
    pub(super) stem: String,
    pub(super) header: Header,
    pub(super) buffer: Mutex<Buffer>,
}

/// The run's session files, and their stems (each file's name is unique).
#[derive(Debug, Default)]
pub(super) struct Files {
    pub(super) list: Vec<Arc<SessionFile>>,
    pub(super) stems: HashSet<String>,
}

/// What only writing touches, one write-out at a time (the writer thread, `Recorder::flush`,
/// the end), under `Inner::writer`: the sessions' files on disk, the files kept open, and
/// the buffers and compressor every session's write shares.
#[derive(Debug)]
pub(super) struct Writer {
    pub(super) disks: Vec<Disk>,
    pub(super) open: OpenFiles<File>,
    /// A session's buffer as taken on a write (its allocation kept from one write to the next).
    pub(super) spare: Vec<u8>,
    /// The lines rendered from it.
    pub(super) lines: Vec<u8>,
    /// Gzip recordings: the compressor, and the member made of the lines.
    pub(super) gzip: Option<(Members, Vec<u8>)>,
    /// The sessions taken from `Inner::dirty`, being written.
    pub(super) pending: Vec<Arc<SessionFile>>,
}

pub(super) struct Inner {
    pub(super) dir: PathBuf,
    pub(super) clock: RunClock,
    pub(super) options: RecordOptions,
    pub(super) redactor: Redactor,
    pub(super) manifest: Mutex<RunManifest>,
    /// `manifest` changed since `run.json` was written: the writer writes it before its next
    /// write of session lines (so that a session's file never exists unnamed for long) and at
    /// the end; never once per session added (that made starting 10,000 sessions quadratic).
    pub(super) manifest_dirty: AtomicBool,
    pub(super) files: Mutex<Files>,
    /// Sessions whose buffers got lines since their last write: the writer visits only those.
    pub(super) dirty: Mutex<Vec<Arc<SessionFile>>>,
    pub(super) writer: Mutex<Writer>,
    pub(super) finished: AtomicBool,
    /// To the writer thread: a session file to write out now. Dropped to stop the thread.
    pub(super) wake: Mutex<Option<mpsc::Sender<Arc<SessionFile>>>>,
    pub(super) flusher: Mutex<Option<JoinHandle<()>>>,
    /// Set at the first write that failed (a full disk): nothing more is recorded.
    pub(super) broken: AtomicBool,
    /// What failed first, for the user.
    pub(super) failure: Mutex<Option<String>>,
    /// The test hook's moment from which every write fails (`RELAYTOP_TEST_DISK_FULL_AFTER_MS`).
    pub(super) full_at: Option<std::time::Instant>,
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
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
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
            slo: Some(run.slo),
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
            manifest_dirty: AtomicBool::new(false),
            files: Mutex::new(Files::default()),
            dirty: Mutex::new(Vec::new()),
            writer: Mutex::new(Writer {
                disks: Vec::new(),
                open: OpenFiles::new(options.open_files),
                spare: Vec::new(),
                lines: Vec::new(),
                gzip: options.gzip.then(|| (Members::default(), Vec::new())),
                pending: Vec::new(),
            }),
            finished: AtomicBool::new(false),
            wake: Mutex::new(Some(wake_tx)),
            flusher: Mutex::new(None),
            broken: AtomicBool::new(false),
            failure: Mutex::new(None),
            full_at: test_disk_full_at(),
        });
        inner.write_manifest()?;
        let weak = Arc::downgrade(&inner);
        let handle = std::thread::Builder::new()
            .name("relaytop-recorder".into())
            .spawn(move || flush_loop(&weak, &wake_rx))?;
        *lock(&inner.flusher) = Some(handle);
        Ok(Self { inner })
    }

    /// What made the recording stop, once a write failed (a full disk, a removed directory):
    /// from then on nothing more is recorded, and the run goes on without it.
    pub fn failure(&self) -> Option<String> {
        if !self.inner.broken.load(Ordering::Relaxed) {
            return None;
        }
        lock(&self.inner.failure).clone()
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
        let (run_id, source, started_at, pricing, slo) = {
            let m = lock(&inner.manifest);
            (
                m.run_id.clone(),
                m.source.clone(),
                m.started_at.clone(),
                m.pricing.get(&info.provider).cloned(),
                m.slo.as_ref().map(|s| *s.of(&info.provider)),
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
            slo,
        };
        let mut files = lock(&inner.files);
        let base = format::sanitize(&info.name);
        let mut stem = base.clone();
        let mut n = 0u32;
        while files.stems.contains(&stem) {
            n += 1;
            stem = if n == 1 {
                format!("{base}-{}", info.id)
            } else {
                format!("{base}-{}-{n}", info.id)
            };
        }
        files.stems.insert(stem.clone());
        let session = Arc::new(SessionFile {
            id: info.id,
            index: files.list.len(),
            stem,
            header,
            buffer: Mutex::new(Buffer::default()),
        });
        files.list.push(session.clone());
        drop(files);
        inner.add_to_manifest(&session, 0);
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
        let file = lock(&self.inner.files)
            .list
            .iter()
            .find(|f| f.id == session)
            .cloned();
        if let Some(file) = file {
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
        let files = lock(&self.inner.files).list.clone();
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
        let files = lock(&inner.files).list.clone();
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
        if let Err(e) = inner.write_manifest() {
            inner.fail(format!(
                "cannot write {}: {e}",
                inner.dir.join(format::RUN_FILE).display()
            ));
        }
        // Every write went to the files whole (gzip members too): closing them is all.
        let closed: Vec<(usize, File)> = lock(&inner.writer).open.close_all().collect();
        drop(closed);
        match lock(&inner.failure).clone() {
            Some(failure) => Err(std::io::Error::other(failure)),
            None => Ok(inner.dir.clone()),
        }
    }
}

/// A test hook, in debug builds only: `RELAYTOP_TEST_DISK_FULL_AFTER_MS=N` makes every write
/// of a recording fail as a full disk does, N ms after the recorder starts (tests/it checks
/// that the run and its summary survive it). Release builds never read it.
fn test_disk_full_at() -> Option<std::time::Instant> {
    if !cfg!(debug_assertions) {
        return None;
    }
    let ms: u64 = std::env::var("RELAYTOP_TEST_DISK_FULL_AFTER_MS")
        .ok()?
        .parse()
        .ok()?;
    Some(std::time::Instant::now() + Duration::from_millis(ms))
}
