//! The dashboard's state: a pure fold of session events (metrics, stream text, event log,
//! cost by model) plus what the person is looking at (focus, selection, sort, filters, time
//! window, scroll positions, freeze, theme, help).
//!
//! Nothing here reads a clock or touches the terminal: the loop in `ui/mod.rs` passes the
//! time in (`set_now`), and key and mouse events arrive as values. `prepare` fits the view to
//! the screen (which rows are visible, where scrolled text stands) before each frame, so that
//! drawing is a pure read. Tests drive an `App` with a fixture and a fixed clock.
//!
//! `state` holds the `App` and folds events into it, `data` is the fold of events, `view` the
//! values of what is looked at, `fit` fits the view to the screen, `input` takes keys and the
//! mouse.

mod data;
mod fit;
mod input;
mod state;
mod view;

pub use data::*;
pub use state::*;
pub use view::*;
