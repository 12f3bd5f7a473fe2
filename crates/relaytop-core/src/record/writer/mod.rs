//! The recorder: the `Tap` that writes a run's sessions to disk, one JSONL file a session.
//!
//! The session task calls the tap synchronously, so the tap only formats a line, scrubs the
//! secrets out of it and appends it to the session's in-memory buffer (a std `Mutex<Vec<u8>>`
//! held for the append alone, never across an await). One background thread writes every
//! buffer out every quarter second and at the end, so a `kill -9` loses at most that quarter
//! second; it also rotates files past a size limit and keeps `run.json` up to date. A buffer
//! that the disk cannot keep up with stops growing at `MAX_BUFFERED_BYTES`; the lines it
//! refuses are counted and reported in the file by a `dropped` line.

mod buffer;
mod flush;
mod options;
mod recorder;
mod redact;
mod tap;

pub use options::{
    DEFAULT_ROTATE_BYTES, EARLY_FLUSH_BYTES, FLUSH_EVERY, MAX_BUFFERED_BYTES, MarkerTarget,
    RecordOptions, RunMeta,
};
pub use recorder::Recorder;

#[cfg(test)]
mod tests;
