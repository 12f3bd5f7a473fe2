//! Writing out: the background thread that writes every buffer every quarter second (or at
//! once when one asks), rotation of session files past their size limit.

use std::fs::File;
use std::io::Write as _;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, MutexGuard, Weak};
use std::time::{Duration, Instant};

use crate::record::format::{self, RunFile, to_json};
use crate::session::tap::{Direction, Staged, Wire};

use super::buffer::{
    Buffer, admit, push_raw_sse, push_raw_text, render, shrink_when_idle, take_lines,
};
use super::options::{EARLY_FLUSH_BYTES, FLUSH_EVERY};
use super::recorder::{Disk, Inner, SessionFile, Writer, lock};

impl Inner {
    /// The file name of part `part` of a session's file (`.jsonl`, or `.jsonl.gz`).
    pub(super) fn file_name(&self, stem: &str, part: u32) -> String {
        let name = format::part_file_name(stem, part);
        if self.options.gzip {
            name + crate::record::gzip::SUFFIX
        } else {
            name
        }
    }

    /// Names part `part` of a session's file in `run.json`, which the writer rewrites before
    /// it makes that file (and at the end): adding 10,000 sessions writes it once, not 10,000
    /// times.
    pub(super) fn add_to_manifest(&self, file: &SessionFile, part: u32) {
        lock(&self.manifest).files.push(RunFile {
            path: self.file_name(&file.stem, part),
            session: file.header.session.name.clone(),
            id: file.id,
            provider: file.header.session.provider.clone(),
            model: file.header.session.model.clone(),
            part,
        });
        self.manifest_dirty.store(true, Ordering::SeqCst);
    }

    /// Rewrites `run.json` (through a temporary file, so that it is always whole).
    /// Holds the manifest's lock throughout, so that two writers never share the temporary.
    pub(super) fn write_manifest(&self) -> std::io::Result<()> {
        self.injected_fault()?;
        let m = lock(&self.manifest);
        self.manifest_dirty.store(false, Ordering::SeqCst);
        let text = self
            .redactor
            .redact(serde_json::to_string_pretty(&*m).unwrap_or_default());
        let tmp = self.dir.join(".run.json.tmp");
        let written = std::fs::write(&tmp, text.as_bytes())
            .and_then(|()| std::fs::rename(&tmp, self.dir.join(format::RUN_FILE)));
        if written.is_err() {
            self.manifest_dirty.store(true, Ordering::SeqCst);
        }
        written
    }

    /// Rewrites `run.json` if sessions or parts were added since it was last written.
    pub(super) fn write_manifest_if_changed(&self) -> std::io::Result<()> {
        if self.manifest_dirty.load(Ordering::SeqCst) {
            self.write_manifest()
        } else {
            Ok(())
        }
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
        self.queue(file, b);
    }

    /// Puts `file` on the list the writer visits once its buffer (`b`, locked) has lines,
    /// and asks the writer thread to write it out now once the buffer has grown past
    /// `EARLY_FLUSH_BYTES` (once until it has).
    pub(super) fn queue(&self, file: &Arc<SessionFile>, mut b: MutexGuard<'_, Buffer>) {
        if !b.queued {
            b.queued = true;
            lock(&self.dirty).push(file.clone());
        }
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
        self.queue(file, b);
    }

    /// Frames a session staged (text frames and SSE events), copied raw into its buffer under
    /// one lock, as `push_text` copies one; the writer thread renders and scrubs them.
    pub(super) fn push_staged(&self, file: &Arc<SessionFile>, frames: &Staged) {
        if self.finished.load(Ordering::Relaxed) || self.broken.load(Ordering::Relaxed) {
            return;
        }
        let mut b = lock(&file.buffer);
        for (at, direction, wire) in frames.iter() {
            let dir = match direction {
                Direction::ToRelay => b'>',
                Direction::FromRelay => b'<',
            };
            match wire {
                Wire::Text(text) => {
                    if let Some(t) = admit(&mut b, at, text.len() + 16) {
                        push_raw_text(&mut b.bytes, t, dir, text);
                    }
                }
                Wire::SseEvent { event, data } => {
                    if let Some(t) = admit(&mut b, at, event.len() + data.len() + 48) {
                        push_raw_sse(&mut b.bytes, t, dir, event, data);
                    }
                }
                // `Staged` holds only the two above; anything else was shown as it came.
                _ => {}
            }
        }
        self.queue(file, b);
    }

    /// Writes out every buffer that has lines (and `run.json` first when it changed),
    /// rotating files past the size limit. Returns when everything buffered before the call
    /// is written: one write-out runs at a time.
    pub(super) fn flush_all(&self) {
        let mut writer = lock(&self.writer);
        self.manifest_now();
        let w = &mut *writer;
        std::mem::swap(&mut *lock(&self.dirty), &mut w.pending);
        let mut pending = std::mem::take(&mut w.pending);
        for file in pending.drain(..) {
            self.write_out(w, &file);
        }
        w.pending = pending;
    }

    /// Writes one session's buffer out now (it asked: `EARLY_FLUSH_BYTES`).
    pub(super) fn flush_one(&self, file: &SessionFile) {
        let mut writer = lock(&self.writer);
        self.write_out(&mut writer, file);
    }

    /// `run.json`, when it changed; a failure stops the recording.
    fn manifest_now(&self) {
        if let Err(e) = self.write_manifest_if_changed() {
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

    /// Writes one session's buffer out: makes its file (header first) at its first write,
    /// reopens it in append mode when it was closed to keep the open files within their cap,
    /// and rotates it past the size limit.
    pub(super) fn write_out(&self, w: &mut Writer, file: &SessionFile) {
        let Writer {
            disks,
            open,
            spare,
            lines,
            gzip,
            ..
        } = w;
        if disks.len() <= file.index {
            disks.resize_with(file.index + 1, Disk::default);
        }
        let disk = &mut disks[file.index];
        spare.clear();
        {
            let mut b = lock(&file.buffer);
            b.queued = false;
            b.flush_asked = false;
            take_lines(&mut b.bytes, spare);
        }
        if spare.is_empty() || disk.failed || self.broken.load(Ordering::Relaxed) {
            return;
        }
        lines.clear();
        if !disk.created {
            let mut header = file.header.clone();
            header.part = disk.part;
            lines.extend_from_slice(to_json(&header).as_bytes());
            lines.push(b'\n');
        }
        render(spare, lines);
        // Lines were scrubbed as they were pushed, except the header and the text frames
        // rendered just now.
        let scrubbed = self.redactor.redact_bytes(lines);
        let path = self.dir.join(self.file_name(&file.stem, disk.part));
        let mut opened = None;
        let written = self.injected_fault().and_then(|()| {
            let bytes: &[u8] = match gzip {
                Some((members, member)) => {
                    members.member(&scrubbed, member)?;
                    member
                }
                None => &scrubbed,
            };
            if open.get_mut(file.index).is_none() {
                opened = Some(self.open_part(&path, disk.created)?);
            }
            match opened.as_mut().or(open.get_mut(file.index)) {
                Some(f) => f.write_all(bytes),
                None => Ok(()),
            }
        });
        if let Err(e) = written {
            disk.failed = true;
            self.fail(format!("cannot write {}: {e}", path.display()));
            return;
        }
        disk.created = true;
        disk.written += scrubbed.len() as u64;
        drop(scrubbed);
        // Closed past the cap: the least recently written, or this one at once.
        if opened.is_some() {
            open.set_cap(self.options.open_files_for(lock(&self.files).list.len()));
        }
        drop(open.wrote(file.index, opened, self.clock.now()));
        // A busy session's lines keep their buffers (a new one is grown page by page all over
        // again: `relaytop bench ingest`); once it has gone quiet the memory goes back.
        shrink_when_idle(spare);
        shrink_when_idle(lines);
        if let Some((_, member)) = gzip {
            shrink_when_idle(member);
        }
        if disk.written >= self.options.rotate_bytes {
            drop(open.close(file.index));
            disk.part += 1;
            disk.created = false;
            disk.written = 0;
            self.add_to_manifest(file, disk.part);
        }
    }

    /// Opens a part of a session's file to write: a new one (`run.json` names it first), or
    /// the one it was writing, in append mode.
    fn open_part(&self, path: &std::path::Path, created: bool) -> std::io::Result<File> {
        if created {
            std::fs::OpenOptions::new().append(true).open(path)
        } else {
            self.write_manifest_if_changed()?;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
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
