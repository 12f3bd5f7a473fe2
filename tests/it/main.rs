//! The integration tests, one binary (one link instead of two dozen): each module is a
//! subject (a run mode, a protocol behaviour, a fault), and every test starts its own servers
//! on 127.0.0.1, port 0. The counting-allocator tests (`fault_big_frame_memory.rs`,
//! `metrics_memory.rs`) are binaries of their own: a global allocator is the whole process's.
#![allow(clippy::unwrap_used)] // test code: a panic is a failure with its place

#[path = "../support/formats.rs"]
mod formats;
#[path = "../support/parser_properties.rs"]
mod properties;
#[path = "../support/pty.rs"]
mod pty;
#[path = "../report_fixture/mod.rs"]
mod report_fixture;
#[path = "../support/mod.rs"]
mod support;
#[path = "../support/tapped.rs"]
mod tapped;

mod account;
mod alerts;
mod anthropic_messages_format;
mod bench_smoke;
mod canary;
mod chat;
mod check;
mod compare;
mod crash_safety;
mod fault_matrix;
mod fault_proxy;
mod fleet;
mod gemini_format;
mod headless_report;
mod mixed_world;
mod openai_fixtures;
mod openai_responses_format;
mod openai_transports;
mod parser_properties;
mod protocols;
mod record_gzip;
mod record_many;
mod record_redaction;
mod record_replay;
mod record_roundtrip;
mod replay_against;
mod replay_dashboard;
mod secrets;
mod secrets_all_modes;
mod serving_figures;
mod session_engine;
mod sim_server;
mod start_from_url;
