//! `relaytop bench ingest` runs end to end on a small response and prints its table; no
//! timing is asserted (benchmarks are not timed tests).

use relaytop::bench::BenchOptions;
use relaytop::bench::ingest::{self, IngestArgs};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_runs_and_reports_every_client() {
    let dir = tempfile::tempdir().expect("temp dir");
    let args = IngestArgs {
        frames: 10_000,
        runs: 1,
        serve: None,
        blocks: false,
        binaries: vec![env!("CARGO_BIN_EXE_relaytop").into()],
        node: None,
        bare_binary: Some(env!("CARGO_BIN_EXE_relaytop").into()),
    };
    let options = BenchOptions {
        no_record: false,
        record_dir: Some(dir.path().to_owned()),
    };
    let mut out = Vec::new();
    let result = ingest::run(&args, &options, &mut out)
        .await
        .expect("the bench runs");
    let text = String::from_utf8(out).expect("text");
    for line in [
        "bare tokio-tungstenite+serde_json",
        "relaytop, recording on",
        "relaytop, recording off",
        "recording on ",
        "x >= 0.7x (",
        "recording off ",
        "x >= 0.8x (",
        "bare client (own process)",
        "relaytop, recording on",
        "relaytop, recording off",
    ] {
        assert!(text.contains(line), "no `{line}` in:\n{text}");
    }
    assert_eq!(result.frames, 10_000);
    assert!(result.bare > 0.0 && result.no_recording > 0.0);
    assert!(result.recording.is_some_and(|r| r > 0.0));
    // The whole-process runs: the bare client's process and relaytop's, each measured.
    let whole = &result.whole;
    assert!(whole.bare.success && whole.bare.wall > std::time::Duration::ZERO);
    assert_eq!(whole.builds.len(), 1);
    let (_, on, off) = &whole.builds[0];
    assert!(on.is_some_and(|c| c.success && c.cpu > std::time::Duration::ZERO));
    assert!(off.success && off.wall > std::time::Duration::ZERO);
    // What the blaster spent serving each client is measured beside it (Linux: its thread's
    // CPU from /proc; 10 ms ticks, so it may read 0 for so short a run).
    assert!(whole.bare.server_cpu.is_some() && off.server_cpu.is_some());
    assert!(text.contains("server CPU ms"), "{text}");
    // Every run's recording is removed after it: the bench leaves nothing behind.
    assert_eq!(
        std::fs::read_dir(dir.path())
            .map(|d| d.count())
            .unwrap_or(0),
        0
    );
}

/// The block blaster (`bench ingest --blocks`) writes every chunk as a well-formed WebSocket
/// frame, across block boundaries (10,000 frames: several 64 KiB blocks, the last partial),
/// then `done`: the bare client reads exactly them, and relaytop's headless run completes
/// the response with every token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_blaster_serves_every_frame_to_both_clients() {
    use relaytop::bench::{bare, blaster::Blaster};
    let blaster = Blaster::start_blocks(([127, 0, 0, 1], 0).into(), 10_000)
        .await
        .expect("the block blaster starts");
    let b = bare::run(blaster.url())
        .await
        .expect("the bare client runs");
    assert_eq!(b.chunks, 10_000);
    assert_eq!(b.chars, 10_000 * " token".len() as u64);
    assert!(b.done, "the bare client read no `done`");
    assert_eq!(blaster.sent(), 10_000);
    for record in [None, Some(tempfile::tempdir().expect("temp dir"))] {
        let (_, tokens) = ingest::relaytop_once(
            blaster.url(),
            10_000,
            record.as_ref().map(|d| d.path().to_owned()),
        )
        .await
        .expect("relaytop completes the response");
        // Every token of the response; a next request may have started (and finished)
        // before the run stopped, as the blaster's count below allows.
        assert!(tokens >= 10_000, "{tokens} tokens");
    }
    // At least each run's response (a session may start its next request before the run
    // ends: the blaster answers it too, until the client closes).
    assert!(blaster.sent() >= 30_000);
    blaster.stop();
}

/// `relaytop bench ingest --blocks`: every client, in process and as a process of its own,
/// reads from the block blaster, and the header says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_runs_against_the_block_blaster() {
    let args = IngestArgs {
        frames: 10_000,
        runs: 1,
        serve: None,
        blocks: true,
        binaries: vec![env!("CARGO_BIN_EXE_relaytop").into()],
        node: None,
        bare_binary: Some(env!("CARGO_BIN_EXE_relaytop").into()),
    };
    let options = BenchOptions {
        no_record: true,
        record_dir: None,
    };
    let mut out = Vec::new();
    let result = ingest::run(&args, &options, &mut out)
        .await
        .expect("the bench runs against the block blaster");
    let text = String::from_utf8(out).expect("text");
    assert!(
        text.contains("(blaster: pre-encoded frames in 64 KiB blocks)"),
        "no blaster named in:\n{text}"
    );
    assert!(result.bare > 0.0 && result.no_recording > 0.0);
    assert!(result.whole.bare.success);
    assert!(result.whole.builds[0].2.success);
}

/// `relaytop bench scale --cases process` runs the binary as a user does (recording on) and
/// reports every figure of every build; no figure is asserted but the sessions' count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_runs_the_binary_as_users_run_it() {
    use relaytop::bench::scale::{self, ScaleArgs, ScaleCases};
    let args = ScaleArgs {
        sessions: 8,
        heartbeat_s: 1.0,
        idle_s: 1.0,
        chunks: 5,
        binary: vec![env!("CARGO_BIN_EXE_relaytop").into()],
        rounds: 1,
        probe_interval_s: 1.0,
        cases: ScaleCases::Process,
    };
    let mut out = Vec::new();
    let result = scale::run(&args, &BenchOptions::default(), &mut out)
        .await
        .expect("the bench runs");
    assert!(result.is_none(), "no in-process case was asked for");
    let text = String::from_utf8(out).expect("text");
    for line in [
        "whole process (recording on): 8 sessions",
        "open-file errors, 8/8 files in run.json",
        "idle CPU %",
    ] {
        assert!(text.contains(line), "no `{line}` in:\n{text}");
    }
}
