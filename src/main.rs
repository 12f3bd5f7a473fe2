//! The `relaytop` command: parses the command line and hands off to the library.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand};

use relaytop::headless::{self, HeadlessOptions, OutputFormat};
use relaytop::sim::{SimProfile, SimServer};
use relaytop::world::World;

/// A terminal monitor for AI-API relay stations: live sessions, heartbeats, latency, cost.
///
/// With no configuration, relaytop runs its default world: two simulated relays on
/// 127.0.0.1 (a legacy one and a faster new one) with probe sessions on both.
#[derive(Parser, Debug)]
#[command(name = "relaytop", version, about, long_about)]
struct Cli {
    /// Configuration file (relaytop TOML). Without it: the default simulated world.
    #[arg(long, short = 'c', global = true, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Directory for relaytop's own log files (default: the XDG state dir).
    #[arg(long, global = true, value_name = "DIR")]
    log_dir: Option<PathBuf>,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run without a terminal UI and print a summary at the end.
    Headless(HeadlessArgs),
    /// Run an embedded relay/v1 simulator (for demos, tests and benchmarks).
    Sim(SimArgs),
    /// Print shell completions.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(clap::Args, Debug)]
struct HeadlessArgs {
    /// Stop after this long (e.g. 30s, 5m, 1h).
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Stop after this many completed responses.
    #[arg(long, value_name = "N")]
    requests: Option<u64>,
    /// Output format (default: text on a terminal, json otherwise).
    #[arg(long, value_enum)]
    format: Option<OutputFormat>,
}

#[derive(clap::Args, Debug)]
struct SimArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8765")]
    listen: SocketAddr,
    /// A named profile (default, legacy, holysheep) or a TOML file of simulator knobs.
    #[arg(long, default_value = "default")]
    profile: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _logs = relaytop::telemetry::init(cli.log_dir.clone());
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
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("relaytop: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
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
        Some(Command::Headless(args)) => run_headless(cli.config, args).await,
        // Until the dashboard exists, the default is a headless run.
        None => {
            run_headless(
                cli.config,
                HeadlessArgs {
                    duration: None,
                    requests: None,
                    format: None,
                },
            )
            .await
        }
    }
}

async fn run_headless(config: Option<PathBuf>, args: HeadlessArgs) -> anyhow::Result<ExitCode> {
    let format = args.format.unwrap_or(if std::io::stdout().is_terminal() {
        OutputFormat::Text
    } else {
        OutputFormat::Json
    });
    let world = World::load(config.as_deref()).await?;
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
    let mut stdout = std::io::BufWriter::new(std::io::stdout());
    let result = headless::run(&world, &options, &mut stdout).await;
    drop(stdout);
    world.stop().await;
    result.map(|_| ExitCode::SUCCESS)
}

async fn run_sim(args: SimArgs) -> anyhow::Result<ExitCode> {
    let profile = match SimProfile::named(&args.profile) {
        Some(p) => p,
        None => SimProfile::from_toml_file(std::path::Path::new(&args.profile))?,
    };
    let server = SimServer::start(args.listen, profile)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.listen))?;
    eprintln!(
        "relaytop sim: relay/v1 on {} (profile {}); Ctrl-C to stop",
        server.url(),
        args.profile
    );
    tokio::signal::ctrl_c().await?;
    server.stop().await;
    Ok(ExitCode::SUCCESS)
}
