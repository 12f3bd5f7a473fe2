//! Session recording and replay (format 1: `shared/spec/RECORDING.md`; relaytop's choices
//! within it: `docs/RECORDING-NOTES.md`).
//!
//! - `writer`: the `Recorder`, a session `Tap` that buffers lines in memory and writes them
//!   from one background thread every quarter second; redaction, markers, rotation.
//! - `gzip`: gzip session files: the writer's sink, the reader's unpacking.
//! - `reader`: finding a run's files, headers, lines from any position; torn and malformed
//!   lines.
//! - `replay`: the `Replay` source: the recording played back as the same `SessionEvent`s,
//!   through the live decoders (one per protocol), with seeks, markers and checkpoints.
//! - `player`: the replay clock (speed, pause, idle limit), pure.
//!
//! The run modes over recordings (`replay --headless`, `export`, `replay --against`) are the
//! binary's (`src/replay_headless.rs`, `src/export.rs`, `src/against.rs`).
//!
//! Engine code: nothing here knows about the terminal UI.

pub mod format;
pub mod gzip;
pub mod player;
pub mod reader;
pub mod replay;
pub mod writer;

pub use player::{Due, Player, Speed};
pub use replay::{FoldState, LineProblem, Marker, Progress, ReadStats, Replay};
pub use writer::{MarkerTarget, RecordOptions, Recorder, RunMeta};
