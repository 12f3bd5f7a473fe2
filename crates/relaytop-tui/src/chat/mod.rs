//! The chat pane: a conversation with one relay through one chat session, typed in an editor
//! and streamed back. Used by `relaytop chat` (`run`) and by the dashboard's `c`.
//!
//! Pure: `ChatPane` takes key presses, pastes and the session's events (with their times) and
//! says what to do (`ChatEffect`: commands for the session, a file to write or read, leaving);
//! the engine owns the conversation the relay sees (the history, the system prompt, the
//! model), the pane only shows it. The lines it draws are laid out once per change
//! (`layout`), so a long conversation costs only its visible lines per frame.
//!
//! The pane (`pane`) holds the turns (`turn`) and lays them out (`lines`); `editor` is its input,
//! `markdown` renders replies, `run` hosts it as `relaytop chat`.

pub mod editor;
mod lines;
pub mod markdown;
mod pane;
pub mod run;
mod turn;

pub use lines::stats_text;
pub use pane::*;
pub use turn::*;

#[cfg(test)]
mod tests;
