//! The recorder: the `Tap` that writes a run's sessions to disk, one JSONL file a session.
//!
//! The session task calls the tap synchronously, so the tap only formats a line, scrubs the
//! secrets out of it and appends it to the session's in-memory buffer (a std `Mutex<Vec<u8>>`
//! held for the append alone, never across an await) and, the first time since the last
//! write, puts the session on the writer's list. One background thread writes the listed
//! buffers out every quarter second and at the end, so a `kill -9` loses at most that quarter
//! second; it makes a session's file at its first write, keeps at most a few hundred files
//! open (`open_files`), rotates files past a size limit, and rewrites `run.json` at most once
//! a quarter second, before any file it names is made. A buffer
//! that the disk cannot keep up with stops growing at `MAX_BUFFERED_BYTES`; the lines it
//! refuses are counted and reported in the file by a `dropped` line.

mod buffer;
mod flush;
mod open_files;
mod options;
mod recorder;
mod redact;
mod tap;

pub use open_files::DEFAULT_OPEN_FILES;
pub use options::{
    DEFAULT_ROTATE_BYTES, EARLY_FLUSH_BYTES, FLUSH_EVERY, MAX_BUFFERED_BYTES, MarkerTarget,
    RecordOptions, RunMeta,
};
pub use recorder::Recorder;

#[cfg(test)]
mod tests;
