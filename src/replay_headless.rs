//! `relaytop replay --headless`: plays a recording without a screen and prints the summary
//! the live run printed (the same `Report`, built from the same events).
//!
//! As fast as possible by default; with a speed it keeps the recorded pace (an ndjson stream
//! then comes out as it did live). Ctrl-C ends a paced replay early with the summary so far.

use std::io::Write;
use std::time::Duration;

use serde::Serialize;

use crate::headless::OutputFormat;
use relaytop_core::record::player::Speed;
use relaytop_core::record::replay::Replay;
use relaytop_core::report::Report;
use relaytop_core::session::{EventKind, SessionEvent};

/// How a recording is replayed headless.
#[derive(Clone, Debug)]
pub struct ReplayOptions {
    pub format: OutputFormat,
    pub speed: Speed,
    /// Silences longer than this play as this long.
    pub idle_limit: Option<Duration>,
    /// Start here: everything before is folded, not streamed or waited for.
    pub start_at: Option<Duration>,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        Self {
            format: OutputFormat::Text,
            speed: Speed::AsFastAsPossible,
            idle_limit: None,
            start_at: None,
        }
    }
}

/// One ndjson line, as the live run writes it.
#[derive(Serialize)]
struct EventLine<'a> {
    at_ms: f64,
    session: &'a str,
    provider: &'a str,
    #[serde(flatten)]
    event: &'a EventKind,
}

/// Plays `replay` to its end (or Ctrl-C) and prints the summary to `out`; returns it.
pub async fn run(
    replay: &mut Replay,
    options: &ReplayOptions,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<Report> {
    let clock = tokio::time::Instant::now();
    let now = || clock.elapsed();
    replay.play_forward_only();
    replay.set_idle_limit(options.idle_limit);
    replay.set_speed(now(), options.speed);
    if let Some(start) = options.start_at {
        replay.seek_to(now(), relaytop_core::session::event::micros(start));
    }
    let infos = replay.sessions().to_vec();
    // The recorded account readings, folded as the live run did (its thresholds are in them).
    let mut accounts =
        relaytop_core::account::Accounts::new(infos.clone(), replay.metrics().pricing().clone());
    let write_event = |event: &SessionEvent,
                       accounts: &mut relaytop_core::account::Accounts,
                       out: &mut (dyn Write + Send)| {
        let _alerts = accounts.apply(event);
        if options.format != OutputFormat::Ndjson {
            return Ok::<(), anyhow::Error>(());
        }
        let Some(info) = infos.get(event.session as usize) else {
            return Ok(());
        };
        let line = EventLine {
            at_ms: event.at_us as f64 / 1000.0,
            session: &info.name,
            provider: &info.provider,
            event: &event.kind,
        };
        serde_json::to_writer(&mut *out, &line)?;
        out.write_all(b"\n")?;
        Ok(())
    };

    if options.speed == Speed::AsFastAsPossible {
        replay.play_to_end(|event| write_event(event, &mut accounts, out))?;
    } else {
        let ctrl_c = tokio::signal::ctrl_c();
        tokio::pin!(ctrl_c);
        loop {
            while let Some(event) = replay.poll(now()) {
                write_event(&event, &mut accounts, out)?;
            }
            out.flush()?;
            let Some(wake) = replay.next_wake(now()) else {
                break;
            };
            let sleep = tokio::time::sleep_until(clock + wake);
            tokio::select! {
                _ = sleep => {}
                _ = &mut ctrl_c => break,
            }
        }
    }

    let mut report = Report::build(replay.metrics(), replay.run_info());
    report.accounts = accounts.summaries();
    match options.format {
        OutputFormat::Text => write!(out, "{}", report.to_text())?,
        OutputFormat::Json => writeln!(out, "{}", report.to_json_pretty())?,
        OutputFormat::Ndjson => {
            #[derive(Serialize)]
            struct Summary<'a> {
                summary: &'a Report,
            }
            serde_json::to_writer(&mut *out, &Summary { summary: &report })?;
            out.write_all(b"\n")?;
        }
    }
    out.flush()?;
    Ok(report)
}
