//! Replay of a 1 GB recording: how long it takes to open and hand out its first events, to
//! index it (the background pass that makes seeks quick), and to seek; how many events a
//! second a headless replay folds; and the dashboard's replay screen: open and draw the first
//! frame (250x56), and seek with the dashboard's state folded along (what a seek key costs,
//! the state handed to the panes and a frame drawn).
//!
//! `cargo bench --bench replay` generates the recording in a temporary directory (one session
//! file of about 1 GiB, shaped like a long probe session: a request a second, 25 chunks each,
//! heartbeats, a drop and reconnect every ten minutes), measures, and deletes it. Set
//! `RELAYTOP_BENCH_MB` to use another size, `RELAYTOP_BENCH_BUDGET_MB` for another checkpoint
//! budget (default 1 GiB). Numbers are for a warm page cache (the file was just written, and
//! synced so that its writeback is over).
#![allow(clippy::unwrap_used)] // test code: a panic is a failure with its place

use std::time::{Duration, Instant};

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use relaytop::bench::recording::{self, Until};
use relaytop_core::record::{Replay, Speed};
use relaytop_tui::render;
use relaytop_tui::replay::ReplayDriver;

const TARGETS: [&str; 3] = [
    "open + first 100 events",
    "dashboard: open + first frame",
    "seek (indexed)",
];

fn main() {
    let mb: u64 = std::env::var("RELAYTOP_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("cannot make a temp dir: {e}");
            std::process::exit(1);
        }
    };
    let run = dir.path().join("2026-11-25T03-00-00Z");
    let t = Instant::now();
    let written =
        recording::generate(&run, 1, Until::Bytes(mb << 20)).expect("generate the recording");
    let (bytes, end_us) = (written.bytes, written.end_us);
    println!(
        "generated {:.0} MiB ({} s of recording) in {:.1} s",
        bytes as f64 / (1 << 20) as f64,
        end_us / 1_000_000,
        t.elapsed().as_secs_f64()
    );

    // Open and the first events.
    let t = Instant::now();
    let mut replay = Replay::open(std::slice::from_ref(&run)).expect("open");
    let open = t.elapsed();
    if let Some(budget) = std::env::var("RELAYTOP_BENCH_BUDGET_MB")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        replay.set_checkpoint_budget(budget << 20);
        println!("checkpoint budget {budget} MiB");
    }
    let mut n = 0;
    while n < 100 && replay.next_event().is_some() {
        n += 1;
    }
    let first = t.elapsed();
    report("open", open);
    report("open + first 100 events", first);

    // A seek before any index: folds from the start.
    let now = Duration::ZERO;
    let t = Instant::now();
    replay.seek_to(now, end_us / 10);
    report(
        "cold seek to 10 % (no index yet: folds from the start)",
        t.elapsed(),
    );

    // The background index.
    let t = Instant::now();
    replay.wait_indexed();
    let indexing = t.elapsed();
    let progress = replay.indexing();
    println!(
        "{:<56} {:>10.1} ms  ({:.0} MiB/s, {} checkpoints every {} lines, {:.0} MiB)",
        "index the whole recording (background)",
        ms(indexing),
        bytes as f64 / (1 << 20) as f64 / indexing.as_secs_f64(),
        progress.checkpoints,
        progress.spacing_lines,
        progress.checkpoint_bytes as f64 / (1 << 20) as f64
    );

    // Seeks with the index: spread over the recording, forwards and backwards.
    let mut times = Vec::new();
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    for _ in 0..100 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let target = x % end_us.max(1);
        let t = Instant::now();
        replay.seek_to(now, target);
        let e = replay.next_event();
        times.push(t.elapsed());
        assert!(e.is_some_and(|e| e.at_us >= target));
    }
    times.sort();
    report("seek (indexed), median of 100", times[times.len() / 2]);
    report(
        "seek (indexed), 90th percentile of 100",
        times[times.len() * 9 / 10],
    );
    report("seek (indexed), slowest of 100", times[times.len() - 1]);

    let mut steps = Vec::new();
    for i in 0..20 {
        let t = Instant::now();
        replay.seek_by(now, if i % 2 == 0 { 10_000_000 } else { -10_000_000 });
        steps.push(t.elapsed());
    }
    steps.sort();
    report(
        "seek +/-10 s (indexed), slowest of 20",
        steps[steps.len() - 1],
    );

    let t = Instant::now();
    replay.seek_to_start(now);
    let found = replay.next_marker(now);
    report("next marker from the start (indexed)", t.elapsed());
    assert!(found.is_some());

    drop(replay);

    // Headless throughput: every event handed out (and folded into the metrics), once.
    let t = Instant::now();
    let mut replay = Replay::open(std::slice::from_ref(&run)).expect("open");
    let mut events = 0u64;
    while replay.next_event().is_some() {
        events += 1;
    }
    let all = t.elapsed();
    println!(
        "{:<56} {:>10.1} ms  ({} events, {:.0} events/s, {:.0} MiB/s)",
        "headless replay, every event",
        ms(all),
        events,
        events as f64 / all.as_secs_f64(),
        bytes as f64 / (1 << 20) as f64 / all.as_secs_f64()
    );
    drop(replay);

    // The dashboard: open, play what is due at the start, draw the first frame.
    let mut firsts = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        let replay = Replay::open(std::slice::from_ref(&run)).expect("open");
        let mut driver = ReplayDriver::new(replay).expect("a fresh replay");
        let mut app = driver.app();
        driver.play(&mut app, now, 4_096);
        driver.sync(&mut app, now);
        draw(&mut app);
        firsts.push(t.elapsed());
    }
    firsts.sort();
    report("dashboard: open + first frame, median of 10", firsts[5]);
    report("dashboard: open + first frame, slowest of 10", firsts[9]);

    // The dashboard's seeks: its whole state (stream text, event log, spend by model) is
    // folded along and checkpointed; a seek hands it to the panes and a frame is drawn.
    let replay = Replay::open(std::slice::from_ref(&run)).expect("open");
    let mut driver = ReplayDriver::new(replay).expect("a fresh replay");
    let mut app = driver.app();
    let t = Instant::now();
    driver.replay_mut().wait_indexed();
    let progress = driver.replay().indexing();
    println!(
        "{:<56} {:>10.1} ms  ({} checkpoints, {:.0} MiB)",
        "dashboard: index with the dashboard's state",
        ms(t.elapsed()),
        progress.checkpoints,
        progress.checkpoint_bytes as f64 / (1 << 20) as f64
    );
    driver.replay_mut().set_speed(now, Speed::Times(1.0));
    let mut seeks = Vec::new();
    let mut frames = Vec::new();
    let mut handovers = Vec::new();
    for _ in 0..40 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let target = x % end_us.max(1);
        let t = Instant::now();
        driver.seek_to(&mut app, now, target);
        let seeked = t.elapsed();
        draw(&mut app);
        seeks.push(t.elapsed());
        frames.push(t.elapsed() - seeked);
        // The same seek again folds nothing: what is left is handing the state over.
        let t = Instant::now();
        driver.seek_to(&mut app, now, target);
        handovers.push(t.elapsed());
    }
    seeks.sort();
    frames.sort();
    handovers.sort();
    report("dashboard: seek + frame (indexed), median of 40", seeks[20]);
    report(
        "dashboard: seek + frame (indexed), slowest of 40",
        seeks[39],
    );
    println!(
        "{:<56} {:>10.1} ms  (slowest {:.1} ms; the frame: {:.1} ms, slowest {:.1} ms)",
        "  of which the state handed to the panes, median",
        ms(handovers[20]),
        ms(handovers[39]),
        ms(frames[20]),
        ms(frames[39])
    );

    println!(
        "targets: {} < 300 ms, {} < 300 ms, {} < 50 ms",
        TARGETS[0], TARGETS[1], TARGETS[2]
    );
}

/// One frame of the dashboard at 250x56, off-screen.
fn draw(app: &mut relaytop_tui::app::App) {
    let mut terminal = Terminal::new(TestBackend::new(250, 56)).expect("a test terminal");
    terminal
        .draw(|frame| {
            app.prepare(frame.area());
            render::draw(frame, app);
        })
        .expect("drawing to memory");
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn report(what: &str, d: Duration) {
    println!("{what:<56} {:>10.1} ms", ms(d));
}
