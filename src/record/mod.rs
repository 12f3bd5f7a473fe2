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
//! - `headless`: `relaytop replay --headless`: the summary the live run printed.
//! - `export`: one row per request, CSV or JSON.
//! - `against`: `relaytop replay --against`: the recorded requests re-sent to another
//!   provider, and the two compared.
//!
//! Engine code: nothing here knows about the terminal UI.

pub mod against;
pub mod export;
pub mod format;
pub mod gzip;
pub mod headless;
pub mod player;
pub mod reader;
pub mod replay;
pub mod writer;

pub use player::{Due, Player, Speed};
pub use replay::{FoldState, LineProblem, Marker, Progress, ReadStats, Replay};
pub use writer::{MarkerTarget, RecordOptions, Recorder, RunMeta};
