//! The `relaytop` command: parses the command line and hands off to the library.

mod cli;

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser};

use relaytop::headless::{self, HeadlessOptions, OutputFormat};
use relaytop_core::canary::RunOptions;
use relaytop_core::config::UiConfig;
use relaytop_core::world::World;
use relaytop_sim::{SimProfile, SimServer};
use relaytop_tui::UiOptions;

use crate::cli::{
    AgentArgs, AlertAction, BenchCase, CheckArgs, CheckFormat, Cli, Command, ExportArgs,
    ExportFormatArg, HeadlessArgs, InitArgs, ReplayArgs, SimArgs, SoakArgs, TranscribeArgs,
    WatchArgs,
};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Every session is a socket (and a recorded one a file now and then): the soft limit,
    // often 1,024, would refuse the thousandth session.
    let open_files = relaytop::limits::raise_open_files();
    if let Some(dir) = &cli.log_dir
        && let Err(e) = std::fs::create_dir_all(dir)
    {
        eprintln!(
            "relaytop: cannot use --log-dir {}: {e}; give a directory relaytop can write to, \
             or leave --log-dir out for the default",
            dir.display()
        );
        return ExitCode::FAILURE;
    }
    let _logs = relaytop_core::telemetry::init(cli.log_dir.clone());
    if let Some(dir) = &cli.log_dir
        && _logs.is_none()
    {
        eprintln!(
            "relaytop: cannot write logs to --log-dir {}; give a directory relaytop can write \
             to, or leave --log-dir out for the default",
            dir.display()
        );
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("relaytop: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli, open_files)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("relaytop: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli, open_files: u64) -> anyhow::Result<ExitCode> {
    let (open_files, open_files_limit) = relaytop::limits::recording_open_files(open_files);
    let record = (!cli.no_record).then(|| relaytop_core::record::RecordOptions {
        gzip: cli.record_gzip,
        open_files,
        open_files_limit,
        ..relaytop_core::record::RecordOptions::new(
            cli.record_dir
                .clone()
                .unwrap_or_else(relaytop_core::record::RecordOptions::default_root),
        )
    });
    let run_options = RunOptions {
        simulate: cli.simulate,
        time_scale: cli.time_scale.unwrap_or(1.0),
    };
    if let Some(url) = &cli.prometheus
        && cli.command.is_none()
    {
        let ui = UiOptions {
            fps: cli.fps,
            theme: cli.theme.clone(),
            mouse: cli.no_mouse.then_some(false),
        };
        return run_fleet(url, ui, cli.config.clone()).await;
    }
    match cli.command {
        Some(Command::Agent(args)) => {
            run_agent(cli.config, args, record, run_options, cli.metrics_listen).await
        }
        Some(Command::Rules) => run_rules(cli.config),
        Some(Command::Completions { shell }) => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "relaytop",
                &mut std::io::stdout(),
            );
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Sim(args)) => run_sim(args).await,
        Some(Command::Alert {
            action: AlertAction::Test { name },
        }) => run_alert_test(cli.config, &name).await,
        Some(Command::Init(args)) => run_init(args).await,
        Some(Command::Bench {
            case: BenchCase::Soak(args),
        }) => run_soak(args, cli.time_scale.unwrap_or(5.0)).await,
        Some(Command::Bench {
            case: BenchCase::Cases(case),
        }) => {
            let options = relaytop::bench::BenchOptions {
                no_record: cli.no_record,
                record_dir: cli.record_dir.clone(),
            };
            let mut stdout = std::io::stdout();
            relaytop::bench::run(case, &options, &mut stdout).await?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Check(args)) => run_check(args).await,
        Some(Command::Compare(args)) => run_compare(cli.config, args, record, run_options).await,
        Some(Command::Headless(args)) => {
            run_headless(
                cli.config,
                &cli.watch,
                args,
                record,
                run_options,
                cli.metrics_listen,
            )
            .await
        }
        Some(Command::Replay(args)) if args.against.is_some() => {
            // The new run is recorded only when asked for with --record-dir.
            let record = record.filter(|_| cli.record_dir.is_some());
            run_against(cli.config, args, record, run_options).await
        }
        Some(Command::Replay(args)) => {
            let ui = UiOptions {
                fps: cli.fps,
                theme: cli.theme,
                mouse: cli.no_mouse.then_some(false),
            };
            run_replay(args, ui, cli.config).await
        }
        Some(Command::Chat(args)) => {
            let options = relaytop_tui::chat::run::ChatOptions {
                provider: args.provider,
                model: args.model,
                system: args.system,
                ui: UiOptions {
                    fps: cli.fps,
                    theme: cli.theme,
                    mouse: cli.no_mouse.then_some(false),
                },
            };
            let mut world = load_world(cli.config, run_options).await?;
            world.recording = record;
            relaytop_tui::chat::run::run(world, options).await?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Transcribe(args)) => run_transcribe(cli.config, args, run_options).await,
        Some(Command::Export(args)) => run_export(&args),
        // The dashboard on a terminal; a headless run when output goes to a pipe or a file.
        None if std::io::stdout().is_terminal() && std::io::stdin().is_terminal() => {
            let options = UiOptions {
                fps: cli.fps,
                theme: cli.theme,
                mouse: cli.no_mouse.then_some(false),
            };
            let mut world = load_world_watching(cli.config, &cli.watch, run_options).await?;
            world.recording = record;
            serve_metrics(&mut world, cli.metrics_listen).await?;
            relaytop_tui::run(world, options).await?;
            Ok(ExitCode::SUCCESS)
        }
        None => {
            run_headless(
                cli.config,
                &cli.watch,
                HeadlessArgs {
                    duration: None,
                    requests: None,
                    format: None,
                },
                record,
                run_options,
                cli.metrics_listen,
            )
            .await
        }
    }
}

/// `relaytop agent`: the world run with no end, for Prometheus (`relaytop::agent`).
async fn run_agent(
    config: Option<PathBuf>,
    args: AgentArgs,
    record: Option<relaytop_core::record::RecordOptions>,
    run_options: RunOptions,
    metrics_listen: Option<SocketAddr>,
) -> anyhow::Result<ExitCode> {
    use relaytop_core::fleet::retention::Budget;
    let config = config.or_else(user_config);
    let mut world = load_world(config.clone(), run_options).await?;
    let settings = world.config.agent.clone();
    let location = args
        .location
        .or(settings.location)
        .unwrap_or_else(relaytop::agent::default_location);
    let mut labels: Vec<String> = settings
        .labels
        .iter()
        .filter(|(k, _)| {
            !args
                .labels
                .iter()
                .any(|l| l.split('=').next() == Some(k.as_str()))
        })
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    labels.extend(args.labels);
    world.metric_labels = relaytop::agent::metric_labels(&location, &labels)?;
    let listen = match (args.listen.or(metrics_listen), &settings.listen) {
        (Some(listen), _) => listen,
        (None, Some(text)) => text
            .parse()
            .map_err(|e| anyhow::anyhow!("[agent] listen = \"{text}\": {e}"))?,
        (None, None) => SocketAddr::from(([127, 0, 0, 1], 9464)),
    };
    let max_age = match (args.record_max_age, &settings.record_max_age) {
        (Some(age), _) => Some(age),
        (None, Some(text)) => Some(
            humantime::parse_duration(text)
                .map_err(|e| anyhow::anyhow!("[agent] record_max_age = \"{text}\": {e}"))?,
        ),
        (None, None) => None,
    };
    let budget = Budget {
        max_bytes: args.record_max_bytes.or(settings.record_max_bytes),
        max_age,
    };
    // The files being written are never deleted: each session's rotates at a small share of
    // the budget, so that what is written now stays well within it and older parts can go.
    let sessions = world.config.sessions.len() as u64;
    world.recording = record.map(|mut r| {
        if let Some(max) = budget.max_bytes {
            r.rotate_bytes = r
                .rotate_bytes
                .min((max / (4 * (sessions + 1))).max(64 << 10));
        }
        r
    });
    let signals = relaytop::agent::Signals::new()?;
    let url = world.serve_metrics(listen).await?;
    eprintln!(
        "relaytop agent: location {location}; Prometheus metrics at {url}, health at http://{}/healthz",
        url.trim_start_matches("http://")
            .trim_end_matches("/metrics")
    );
    let options = relaytop::agent::AgentOptions {
        config,
        run_options,
        budget,
    };
    let mut stdout = std::io::BufWriter::new(std::io::stdout());
    let result = relaytop::agent::run(&world, &options, signals, &mut stdout).await;
    drop(stdout);
    if let Some(dir) = world.recording_dir() {
        eprintln!("relaytop agent: recorded to {}", dir.display());
    }
    world.stop().await;
    result?;
    Ok(ExitCode::SUCCESS)
}

/// `relaytop rules`: the config's alerts and SLOs as Prometheus rules, on stdout.
fn run_rules(config: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let Some(path) = config.or_else(user_config) else {
        anyhow::bail!(
            "no configuration: give --config FILE (relaytop TOML with [[alerts]] and [slo])"
        );
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    // The rules need no key and no receiver: no variable is read. The stand-in passes the
    // checks a webhook URL gets, so a config with receivers prints its rules anywhere.
    let config = relaytop_core::config::file::parse(&text, &path.display().to_string(), &|_| {
        Ok(relaytop_core::config::secret::Secret::new(
            "https://rules.invalid/not-read",
        ))
    })?;
    let yaml = relaytop_core::fleet::rules::to_yaml(&config);
    let _ = std::io::Write::write_all(&mut std::io::stdout(), yaml.as_bytes());
    Ok(ExitCode::SUCCESS)
}

/// `relaytop --prometheus URL`: the fleet view on a terminal, else the fleet once as text.
async fn run_fleet(url: &str, ui: UiOptions, config: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let mut client = relaytop_core::fleet::promql::Client::new(url)?;
    if let Some(dir) = std::env::var_os("RELAYTOP_RECORD_PROMQL") {
        client = client.recording_to(dir.into());
    }
    if std::io::stdout().is_terminal() && std::io::stdin().is_terminal() {
        let ui_config = find_ui_config(config)?;
        relaytop_tui::fleet::run(client, ui, ui_config).await?;
        return Ok(ExitCode::SUCCESS);
    }
    let fleet = client.fleet(relaytop_tui::fleet::DEFAULT_WINDOW).await?;
    let _ = std::io::Write::write_all(&mut std::io::stdout(), fleet.to_text().as_bytes());
    Ok(ExitCode::SUCCESS)
}

async fn run_soak(args: SoakArgs, time_scale: f64) -> anyhow::Result<ExitCode> {
    let options = relaytop::bench::soak::SoakOptions {
        sessions: args.sessions,
        duration: args.duration,
        time_scale,
        sample_every: args.sample_every,
        warm_up: args.warm_up.unwrap_or(args.duration / 5),
        max_growth_pct: args.max_growth,
    };
    let report = relaytop::bench::soak::run(options, &mut std::io::stdout()).await?;
    Ok(if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn run_headless(
    config: Option<PathBuf>,
    watch: &WatchArgs,
    args: HeadlessArgs,
    record: Option<relaytop_core::record::RecordOptions>,
    run_options: RunOptions,
    metrics_listen: Option<SocketAddr>,
) -> anyhow::Result<ExitCode> {
    let format = args.format.unwrap_or(if std::io::stdout().is_terminal() {
        OutputFormat::Text
    } else {
        OutputFormat::Json
    });
    let mut world = load_world_watching(config, watch, run_options).await?;
    world.recording = record;
    serve_metrics(&mut world, metrics_listen).await?;
    if format == OutputFormat::Text {
        eprintln!(
            "relaytop: {} sessions on {} providers ({}); Ctrl-C for the summary",
            world.config.sessions.len(),
            world.config.providers.len(),
            world.config.source
        );
    }
    let options = HeadlessOptions {
        duration: args.duration,
        requests: args.requests,
        format,
    };
    // On the thread blocking on `main`'s future, not on a worker: the sessions have the
    // runtime's workers to themselves, and this run folds their events on a core of its own
    // when there is one. (On a worker, tokio would run it on the very worker of the session
    // that woke it, one after the other.) The event stream wakes it once a batch, not once
    // an event, so a wake of another thread costs little (docs/PERFORMANCE.md, ingest).
    let mut stdout = std::io::BufWriter::new(std::io::stdout());
    let result = headless::run_with_status(&world, &options, &mut stdout).await;
    drop(stdout);
    // stderr: stdout stays the summary alone.
    match (world.recording_dir(), world.recording_failure()) {
        (Some(dir), Some(failure)) => eprintln!(
            "relaytop: warning: the recording failed ({failure}); the partial recording is in {} \
             (it replays up to the failure)",
            dir.display()
        ),
        (Some(dir), None) if result.is_ok() => {
            eprintln!("relaytop: recorded to {}", dir.display());
        }
        _ => {}
    }
    world.stop().await;
    let (_, status) = result?;
    for name in &status.stopped_auth_or_quota {
        eprintln!("relaytop: session {name} was refused for its key or quota (exit status 3)");
    }
    if status.stopped_auth_or_quota.is_empty() && status.all_down {
        eprintln!("relaytop: every session was down at the end (exit status 4)");
    }
    Ok(status.exit_code())
}

/// `relaytop transcribe FILE`: the transcript on stdout, what was sent and how long it took
/// on stderr.
async fn run_transcribe(
    config: Option<PathBuf>,
    args: TranscribeArgs,
    run_options: RunOptions,
) -> anyhow::Result<ExitCode> {
    use relaytop_core::session::{Protocol, Workload};
    // The file first: a wrong path fails at once, before any relay is started.
    let wav = relaytop_core::transcribe::read_wav(&args.file)?;
    let world = load_world(config, run_options).await?;
    let spec = relaytop_core::ondemand::find_provider(
        &world.config,
        args.provider.as_deref(),
        Some(Protocol::RelayV1),
    )
    .map(|provider| {
        relaytop_core::ondemand::provider_session(
            &world.config,
            provider,
            "transcribe".into(),
            None,
            Workload::OnDemand,
        )
    });
    let result = match spec {
        Ok(spec) => {
            eprintln!(
                "relaytop: sending {}, {}, to {} for transcription ({})",
                args.file.display(),
                wav.describe(),
                spec.info.provider,
                args.model
            );
            relaytop_core::transcribe::transcribe(spec, wav.bytes, args.model, args.timeout)
                .await
                .map_err(anyhow::Error::from)
        }
        Err(e) => Err(e),
    };
    world.stop().await;
    let transcript = result?;
    println!("{}", transcript.text);
    eprintln!(
        "relaytop: transcribed in {:.0} ms ({})",
        transcript.total.as_secs_f64() * 1000.0,
        transcript.model
    );
    Ok(ExitCode::SUCCESS)
}

async fn run_replay(
    args: ReplayArgs,
    ui: UiOptions,
    config: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    use relaytop::replay_headless::{self as replay_headless, ReplayOptions};
    let mut replay = relaytop_core::record::Replay::open(&args.paths)?;
    if let Some(start_at) = args.start_at
        && start_at * 1e6 > replay.end_us().max(replay.duration_us()) as f64
    {
        eprintln!(
            "relaytop: warning: --start-at {start_at} is past the end of the recording ({:.1} s \
             long): nothing is replayed; give a smaller --start-at",
            replay.end_us().max(replay.duration_us()) as f64 / 1e6
        );
    }
    let seconds = |s: f64, what: &str| {
        Duration::try_from_secs_f64(s)
            .map_err(|_| anyhow::anyhow!("{what} must be a number of seconds >= 0, not {s}"))
    };
    let terminal = std::io::stdout().is_terminal() && std::io::stdin().is_terminal();
    if !args.headless && !terminal {
        eprintln!("relaytop: not a terminal: replaying headless (--headless says so)");
    }
    if !args.headless && terminal {
        let options = relaytop_tui::replay::ReplayOptions {
            speed: args
                .speed
                .unwrap_or(relaytop_core::record::Speed::Times(1.0)),
            idle_limit: args
                .idle_limit
                .map(|s| seconds(s, "--idle-limit"))
                .transpose()?,
            start_at: args
                .start_at
                .map(|s| seconds(s, "--start-at"))
                .transpose()?,
        };
        let ui_config = find_ui_config(config)?;
        let warnings = relaytop_tui::replay::run(replay, &ui, &ui_config, &options).await?;
        for warning in warnings {
            eprintln!("relaytop: {warning}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let options = ReplayOptions {
        format: args.format.unwrap_or(if std::io::stdout().is_terminal() {
            OutputFormat::Text
        } else {
            OutputFormat::Json
        }),
        speed: args
            .speed
            .unwrap_or(relaytop_core::record::Speed::AsFastAsPossible),
        idle_limit: args
            .idle_limit
            .map(|s| seconds(s, "--idle-limit"))
            .transpose()?,
        start_at: args
            .start_at
            .map(|s| seconds(s, "--start-at"))
            .transpose()?,
    };
    let mut stdout = std::io::BufWriter::new(std::io::stdout());
    replay_headless::run(&mut replay, &options, &mut stdout).await?;
    drop(stdout);
    for warning in replay.read_stats().warnings() {
        eprintln!("relaytop: {warning}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `relaytop replay RUN --against PROVIDER`: the recorded requests re-sent, and compared.
async fn run_against(
    config: Option<PathBuf>,
    args: ReplayArgs,
    record: Option<relaytop_core::record::RecordOptions>,
    run_options: RunOptions,
) -> anyhow::Result<ExitCode> {
    use relaytop::against::{self, AgainstOptions, Comparison, Pacing};
    use relaytop_core::record::Speed;
    let target = args.against.clone().unwrap_or_default();
    if args.start_at.is_some() {
        anyhow::bail!("--start-at does not apply to --against: every recorded request is re-sent");
    }
    let format = args.format.unwrap_or(if std::io::stdout().is_terminal() {
        OutputFormat::Text
    } else {
        OutputFormat::Json
    });
    let idle_limit = args
        .idle_limit
        .map(|s| {
            Duration::try_from_secs_f64(s).map_err(|_| {
                anyhow::anyhow!("--idle-limit must be a number of seconds >= 0, not {s}")
            })
        })
        .transpose()?;
    let pacing = match (args.as_fast_as_allowed, args.speed) {
        (true, _) | (false, Some(Speed::AsFastAsPossible)) => Pacing::AsFastAsAllowed,
        (false, Some(Speed::Times(x))) => Pacing::Recorded {
            speed: x,
            idle_limit,
        },
        (false, None) => Pacing::Recorded {
            speed: 1.0,
            idle_limit,
        },
    };
    let recorded = against::read_recording(&args.paths)?;
    let world = load_world(config, run_options).await?;
    let provider = against::target(&world, &target)?.clone();
    if recorded.requests.is_empty() {
        anyhow::bail!(
            "the recording has no request to re-send ({} requests recorded)",
            recorded.report.totals.figures.requests
        );
    }
    eprintln!(
        "relaytop: re-sending {} recorded requests to {} ({}); Ctrl-C for the comparison so far",
        relaytop_core::report::count(recorded.requests.len() as u64),
        provider.name,
        provider.url
    );
    let options = AgainstOptions {
        pacing,
        record,
        progress: true,
        ..AgainstOptions::default()
    };
    let result = against::run(&recorded, &world, &target, &options).await;
    world.stop().await;
    let now = result?;
    if let Some(dir) = &now.recorded_to {
        eprintln!("relaytop: the new run is recorded in {}", dir.display());
    }
    let comparison = Comparison::build(&recorded, &now, &provider, pacing);
    let text = match format {
        OutputFormat::Text => comparison.to_text(pacing),
        OutputFormat::Json | OutputFormat::Ndjson => comparison.to_json_pretty() + "\n",
    };
    let _ = std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes());
    Ok(ExitCode::SUCCESS)
}

/// `relaytop compare PROVIDER…`: the same load on several relays, and a verdict.
async fn run_compare(
    config: Option<PathBuf>,
    args: cli::CompareArgs,
    record: Option<relaytop_core::record::RecordOptions>,
    run_options: RunOptions,
) -> anyhow::Result<ExitCode> {
    use relaytop::compare::{self, CompareOptions, Load};
    let load = if !args.rate.is_empty() {
        if let Some(bad) = args.rate.iter().find(|r| !(r.is_finite() && **r > 0.0)) {
            anyhow::bail!("--rate: rates are requests a second above 0, not {bad}");
        }
        Load::Rate(args.rate.clone())
    } else if args.concurrency.is_empty() {
        Load::Concurrency(vec![1, 2, 4, 8])
    } else {
        if args.concurrency.contains(&0) {
            anyhow::bail!("--concurrency: levels are 1 or more");
        }
        Load::Concurrency(args.concurrency.clone())
    };
    let world = load_world(config, run_options).await?;
    for name in &args.providers {
        relaytop::against::target(&world, name)?;
    }
    let out = args.out.clone().unwrap_or_else(compare::default_out);
    let options = CompareOptions {
        relays: args.providers.clone(),
        load,
        stage: args.stage,
        input_tokens: args.input_tokens.clone(),
        max_tokens: args.max_tokens.max(1),
        max_cost_usd: args.max_cost,
        max_requests: args.max_requests,
        duration: args.duration,
        seed: args.seed,
        record,
        progress: !args.quiet,
        ..CompareOptions::default()
    };
    eprintln!(
        "relaytop: comparing {} ({} levels of {} each); Ctrl-C stops and reports",
        args.providers.join(", "),
        options.load.levels().len(),
        humantime::format_duration(options.stage)
    );
    let result = compare::compare(&world, &options, &out).await;
    world.stop().await;
    let report = result?;
    for line in &report.verdict {
        println!("{line}");
    }
    println!("ended: {}", report.ended_by);
    if let Some(dir) = &report.recorded_to {
        eprintln!("relaytop: recorded in {dir}");
    }
    println!("report: {}", out.join("report.html").display());
    Ok(ExitCode::SUCCESS)
}

fn run_export(args: &ExportArgs) -> anyhow::Result<ExitCode> {
    use relaytop::export::{ExportFormat, export};
    let mut replay = relaytop_core::record::Replay::open(&args.paths)?;
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    let written = match args.format {
        ExportFormatArg::Csv => export(&mut replay, ExportFormat::Csv, &mut stdout),
        ExportFormatArg::Json => export(&mut replay, ExportFormat::Json, &mut stdout),
        ExportFormatArg::Asciicast => {
            let idle_limit = Duration::try_from_secs_f64(args.idle_limit).map_err(|_| {
                anyhow::anyhow!(
                    "--idle-limit must be a number of seconds >= 0, not {}",
                    args.idle_limit
                )
            })?;
            let options = relaytop_tui::asciicast::CastOptions {
                width: args.width,
                height: args.height,
                frame: Duration::from_millis(args.frame_ms.max(1)),
                idle_limit: (!idle_limit.is_zero()).then_some(idle_limit),
                ..Default::default()
            };
            match relaytop_tui::asciicast::export(&mut replay, &options, &mut stdout) {
                Ok(summary) => Ok(summary.frames),
                Err(e) => match e.downcast::<std::io::Error>() {
                    Ok(io) => Err(io),
                    Err(other) => return Err(other),
                },
            }
        }
    };
    match written {
        // `relaytop export ... | head`: the reader had enough.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(ExitCode::SUCCESS),
        other => other?,
    };
    drop(stdout);
    for warning in replay.read_stats().warnings() {
        eprintln!("relaytop: {warning}");
    }
    Ok(ExitCode::SUCCESS)
}

/// The world to run: `--config`, else the user's `~/.config/relaytop/config.toml` when it
/// exists, else the default world. A user file with only `[ui]` settings (no providers or
/// sessions) dresses the default world.
/// Loads the world (see `find_world`) and prints its start-up notes to stderr, once.
async fn load_world(config: Option<PathBuf>, options: RunOptions) -> anyhow::Result<World> {
    load_world_watching(config, &WatchArgs::default(), options).await
}

/// The world of a run: `--config`, else `relaytop URL`, else the user's config file, else the
/// relays the environment names, else the default simulated world.
async fn load_world_watching(
    config: Option<PathBuf>,
    watch: &WatchArgs,
    options: RunOptions,
) -> anyhow::Result<World> {
    if let Some(url) = &watch.url {
        if config.is_some() {
            anyhow::bail!("give a URL or --config, not both");
        }
        let mut notes = Vec::new();
        let found = relaytop::start::resolve(&watch_request(url, watch), &mut notes).await?;
        return world_of(&[found], watch, notes, &options)
            .await
            .inspect(warn_of_limits);
    }
    if config.is_none() && user_config().is_none() {
        let (found, notes) =
            relaytop_core::config::starter::from_environment(&|var| std::env::var(var).ok());
        if !found.is_empty() {
            return world_of(&found, watch, notes, &options)
                .await
                .inspect(warn_of_limits);
        }
        for note in notes {
            eprintln!("relaytop: {note}");
        }
    }
    let world = find_world(config, &options).await?;
    for note in &world.notes {
        eprintln!("relaytop: {}", note.render(&world.config.source));
    }
    warn_of_limits(&world);
    Ok(world)
}

/// Says at start when a provider's limits will hold its sessions back (`limit_warnings`).
fn warn_of_limits(world: &World) {
    for warning in world.config.limit_warnings() {
        eprintln!("relaytop: warning: {warning}");
    }
}

fn watch_request(url: &str, watch: &WatchArgs) -> relaytop::start::WatchRequest {
    relaytop::start::WatchRequest {
        url: url.to_owned(),
        key_env: watch.key_env.clone(),
        protocol: watch.protocol.map(Into::into),
        model: watch.model.clone(),
        auth: watch.auth.map(Into::into),
    }
}

/// A world watching `found` (from a URL or the environment), named for what it watches.
async fn world_of(
    found: &[relaytop_core::config::starter::Watch],
    watch: &WatchArgs,
    notes: Vec<String>,
    options: &RunOptions,
) -> anyhow::Result<World> {
    use relaytop_core::config::starter;
    if !(watch.interval.is_finite() && watch.interval >= 0.05) {
        anyhow::bail!(
            "--interval {} is not a probe interval: give the seconds between one probe's prompts \
             (at least 0.05)",
            watch.interval
        );
    }
    for note in notes {
        eprintln!("relaytop: {note}");
    }
    let text = starter::to_toml(found, watch.probes.max(1), watch.interval, false);
    let source = starter::source_of(found);
    World::from_toml(&text, &source, options, &relaytop_sim::Embedded).await
}

/// The user's configuration file, when there is one.
/// `relaytop alert test NAME`: the rule from `--config` (or the user's config.toml).
async fn run_alert_test(config: Option<PathBuf>, name: &str) -> anyhow::Result<ExitCode> {
    let Some(path) = config.or_else(user_config) else {
        anyhow::bail!(
            "no configuration with alerts: give --config FILE (relaytop TOML with [[alerts]])"
        );
    };
    let config = relaytop_core::config::file::load(&path)?;
    let mut stdout = std::io::stdout();
    let all = relaytop::alert_cmd::test(&config, name, &mut stdout).await?;
    Ok(if all {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn user_config() -> Option<PathBuf> {
    dirs::config_dir()
        .map(|dir| dir.join("relaytop").join("config.toml"))
        .filter(|path| path.is_file())
}

async fn run_init(args: InitArgs) -> anyhow::Result<ExitCode> {
    use relaytop_core::config::starter;
    let (mut found, notes) = starter::from_environment(&|var| std::env::var(var).ok());
    let mut notes = notes;
    if let Some(url) = &args.watch.url {
        found.insert(
            0,
            relaytop::start::resolve(&watch_request(url, &args.watch), &mut notes).await?,
        );
    }
    for note in &notes {
        eprintln!("relaytop: {note}");
    }
    let text = starter::to_toml(&found, args.watch.probes.max(1), args.watch.interval, true);
    let written = relaytop::start::write_init(&text, args.output.as_deref(), args.force)?;
    if written != "standard output" {
        let names: Vec<&str> = found.iter().map(|w| w.name.as_str()).collect();
        eprintln!(
            "relaytop: wrote {written} ({}); run `relaytop` to watch",
            if names.is_empty() {
                "an example to fill in: no relay found".to_owned()
            } else {
                format!("relays: {}", names.join(", "))
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn find_world(config: Option<PathBuf>, options: &RunOptions) -> anyhow::Result<World> {
    if config.is_some() {
        return World::load_with(config.as_deref(), options, &relaytop_sim::Embedded).await;
    }
    let Some(path) = user_config() else {
        return World::load_with(None, options, &relaytop_sim::Embedded).await;
    };
    match ui_only(&path) {
        Some(ui) => {
            let mut world = World::load_with(None, options, &relaytop_sim::Embedded).await?;
            world.config.ui = ui;
            Ok(world)
        }
        None => World::load_with(Some(&path), options, &relaytop_sim::Embedded).await,
    }
}

/// The dashboard settings for a replay: `[ui]` of `--config` (relaytop TOML), else of the
/// user's config file when there is one, else the defaults.
fn find_ui_config(config: Option<PathBuf>) -> anyhow::Result<UiConfig> {
    let path = match config {
        Some(path) => path,
        None => match dirs::config_dir()
            .map(|dir| dir.join("relaytop").join("config.toml"))
            .filter(|path| path.is_file())
        {
            Some(path) => path,
            None => return Ok(UiConfig::default()),
        },
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let file: relaytop_core::config::file::ConfigFile =
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(file.ui)
}

/// The `[ui]` table of a file that has nothing else (`None` otherwise, or when the file does
/// not parse: the full loader then says what is wrong, and where).
fn ui_only(path: &std::path::Path) -> Option<UiConfig> {
    let text = std::fs::read_to_string(path).ok()?;
    let file: relaytop_core::config::file::ConfigFile = toml::from_str(&text).ok()?;
    (file.providers.is_empty() && file.sessions.is_empty()).then_some(file.ui)
}

/// `--metrics-listen`: serves the world's Prometheus metrics while it runs.
async fn serve_metrics(world: &mut World, listen: Option<SocketAddr>) -> anyhow::Result<()> {
    if let Some(listen) = listen {
        let url = world.serve_metrics(listen).await?;
        eprintln!("relaytop: Prometheus metrics at {url}");
    }
    Ok(())
}

async fn run_check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let mut options = relaytop::check::CheckOptions::new(args.url);
    options.protocol = args.protocol.map(Into::into);
    options.key_env = args.key_env;
    options.auth = args.auth.map(Into::into).unwrap_or_default();
    options.model = args.model;
    options.timeout = args.timeout;
    options.idle = args.idle.map(Duration::from_secs);
    let report = relaytop::check::run(&options).await;
    let text = match args.format {
        CheckFormat::Text => report.to_text(),
        CheckFormat::Json => report.to_json() + "\n",
    };
    // A closed pipe (`| head`) is not an error of the check.
    let _ = std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes());
    Ok(if report.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn run_sim(args: SimArgs) -> anyhow::Result<ExitCode> {
    let profile = match SimProfile::named(&args.profile) {
        Some(p) => p,
        None => SimProfile::from_toml_file(std::path::Path::new(&args.profile))?,
    };
    let account = profile.account_kind.clone().map(|kind| {
        let routes = match kind.as_str() {
            "new-api" => "/api/usage/token, /v1/dashboard/billing/subscription and /usage",
            "openai-billing" => "/v1/dashboard/billing/subscription and /usage",
            "openrouter" => "/api/v1/key and /api/v1/credits",
            "litellm" => "/key/info",
            _ => "/user/balance",
        };
        format!(
            "; account: {kind} ({routes}), ${:.2}, billed {}× list price",
            profile.account_balance_usd, profile.bill_multiplier
        )
    });
    let server = SimServer::start(args.listen, profile)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.listen))?;
    let protocol: relaytop_core::session::Protocol = args.protocol.into();
    let url = relaytop_core::world::SimulatedRelay::url(&server, protocol);
    let root = relaytop_core::config::station::station_root(&server.sse_base_url());
    eprintln!(
        "relaytop sim: {} on {url} (profile {}); this port serves every format: \
         {root}/v1 (chat completions, Messages, Responses), {root} (Gemini), \
         {} (relay/v1), {} (Realtime); keys sk-…, sk-ant-…, AIza… or hs_live_…{}; Ctrl-C to stop",
        protocol.label(),
        args.profile,
        server.url(),
        server.realtime_url(),
        account.unwrap_or_default(),
    );
    tokio::signal::ctrl_c().await?;
    server.stop().await;
    Ok(ExitCode::SUCCESS)
}
