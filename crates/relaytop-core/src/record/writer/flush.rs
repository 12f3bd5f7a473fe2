//! Writing out: the background thread that writes every buffer every quarter second (or at
//! once when one asks), rotation of session files past their size limit.

use std::io::Write as _;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, MutexGuard, Weak};
use std::time::{Duration, Instant};

use crate::record::format::{self, Header, RunFile, to_json};
use crate::record::gzip::Sink;

use super::buffer::{Buffer, admit, push_raw_text, render, shrink_when_idle};
use super::options::{EARLY_FLUSH_BYTES, FLUSH_EVERY};
use super::recorder::{Inner, SessionFile, lock};

impl Inner {
    /// Creates part `part` of a session's file with its header line.
    pub(super) fn create_part(
        &self,
        stem: &str,
        header: &Header,
        part: u32,
    ) -> std::io::Result<(Sink, u64)> {
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
    pub(super) fn file_name(&self, stem: &str, part: u32) -> String {
        let name = format::part_file_name(stem, part);
        if self.options.gzip {
            name + crate::record::gzip::SUFFIX
        } else {
            name
        }
    }

    pub(super) fn add_to_manifest(&self, file: &SessionFile, part: u32) -> std::io::Result<()> {
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
    pub(super) fn write_manifest(&self) -> std::io::Result<()> {
        self.injected_fault()?;
        let m = lock(&self.manifest);
        let text = self
            .redactor
            .redact(serde_json::to_string_pretty(&*m).unwrap_or_default());
        let tmp = self.dir.join(".run.json.tmp");
        std::fs::write(&tmp, text.as_bytes())?;
        std::fs::rename(&tmp, self.dir.join(format::RUN_FILE))
    }

    /// Appends one line to a session's buffer (taps and markers).
    pub(super) fn push(
        &self,
        file: &Arc<SessionFile>,
        at: Duration,
        dir: &str,
        kind: &str,
        data: &str,
    ) {
        if self.finished.load(Ordering::Relaxed) || self.broken.load(Ordering::Relaxed) {
            return;
        }
        self.push_line(file, at, dir, kind, data, false);
    }

    pub(super) fn push_line(
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
    pub(super) fn ask_early_flush(&self, file: &Arc<SessionFile>, mut b: MutexGuard<'_, Buffer>) {
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
    pub(super) fn push_text(&self, file: &Arc<SessionFile>, at: Duration, dir: &str, text: &str) {
        if self.finished.load(Ordering::Relaxed) || self.broken.load(Ordering::Relaxed) {
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
    pub(super) fn flush_all(&self) {
        let files = lock(&self.files).clone();
        for file in files {
            self.flush_one(&file);
        }
    }

    /// Writes one session's buffer out, and updates `run.json` when its file rotated.
    pub(super) fn flush_one(&self, file: &SessionFile) {
        if let Some(part) = self.flush_file(file)
            && let Err(e) = self.add_to_manifest(file, part)
        {
            self.fail(format!(
                "cannot update {}: {e}",
                self.dir.join(format::RUN_FILE).display()
            ));
        }
    }

    /// Stops the recording after a write failed: `what` is kept for the user (the first
    /// failure only), and nothing more is buffered or written; what is on disk stays
    /// replayable up to its last whole line.
    pub(super) fn fail(&self, what: String) {
        let mut failure = lock(&self.failure);
        if failure.is_none() {
            tracing::warn!(error = %what, "the recording stopped");
            *failure = Some(what);
        }
        self.broken.store(true, Ordering::SeqCst);
    }

    /// The test hook's full disk (`RELAYTOP_TEST_DISK_FULL_AFTER_MS`), once its time came.
    pub(super) fn injected_fault(&self) -> std::io::Result<()> {
        match self.full_at {
            Some(at) if Instant::now() >= at => Err(full_disk()),
            _ => Ok(()),
        }
    }

    /// Writes one session's buffer out. Returns the new part number when it rotated.
    pub(super) fn flush_file(&self, file: &SessionFile) -> Option<u32> {
        let mut disk = lock(&file.disk);
        let disk = &mut *disk;
        disk.spare.clear();
        {
            let mut b = lock(&file.buffer);
            std::mem::swap(&mut b.bytes, &mut disk.spare);
            b.flush_asked = false;
        }
        if disk.spare.is_empty() || disk.failed || self.broken.load(Ordering::Relaxed) {
            return None;
        }
        let f = disk.file.as_mut()?;
        disk.lines.clear();
        render(&disk.spare, &mut disk.lines);
        // Lines were scrubbed as they were pushed, except the text frames rendered just now.
        let lines = self.redactor.redact_bytes(&disk.lines);
        if let Err(e) = self.injected_fault().and_then(|()| f.write_lines(&lines)) {
            disk.failed = true;
            let path = self.dir.join(self.file_name(&file.stem, disk.part));
            self.fail(format!("cannot write {}: {e}", path.display()));
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
pub(super) fn flush_loop(inner: &Weak<Inner>, wake: &mpsc::Receiver<Arc<SessionFile>>) {
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

/// The error of a write to a full disk (ENOSPC), as the system gives it.
fn full_disk() -> std::io::Error {
    #[cfg(unix)]
    {
        std::io::Error::from_raw_os_error(28)
    }
    #[cfg(not(unix))]
    {
        std::io::Error::new(std::io::ErrorKind::StorageFull, "No space left on device")
    }
}
