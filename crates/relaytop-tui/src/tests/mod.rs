//! Dashboard tests: a fixed fixture of session events and a fixed clock, drawn on a
//! `TestBackend` and compared with insta snapshots (main screen, help, every pane, at 80x24
//! and 200x50); key and mouse handling; the README's key list against the key table.

mod accounts;
mod alerts;
mod canary;
mod fixture;
mod key_table;
mod keys;
mod recording;
mod screen_text;
mod screens;
