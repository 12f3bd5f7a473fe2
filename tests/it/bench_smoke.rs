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
        "target: relaytop (recording on) >= 0.50 x bare",
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
    // Every run's recording is removed after it: the bench leaves nothing behind.
    assert_eq!(
        std::fs::read_dir(dir.path())
            .map(|d| d.count())
            .unwrap_or(0),
        0
    );
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
