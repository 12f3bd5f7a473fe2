//! The command line: the arguments of `relaytop` and of each subcommand (clap).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use relaytop::headless::OutputFormat;

/// A terminal monitor for AI-API relay stations: live sessions, heartbeats, latency, cost.
///
/// `relaytop URL --key-env VAR` watches one relay with no configuration file. With no
/// configuration at all, relaytop watches the relays your tools' variables name
/// (OPENAI_BASE_URL, ANTHROPIC_BASE_URL, GOOGLE_GEMINI_BASE_URL with their keys), else its
/// default world: three simulated stations on 127.0.0.1 (a legacy one, a faster new one, and a
/// new-api-shaped one serving every format) with probe sessions on each.
#[derive(Parser, Debug)]
#[command(name = "relaytop", version, about, long_about)]
pub struct Cli {
    /// Configuration file: relaytop TOML, or canary YAML (.yaml, .yml). Without it:
    /// ~/.config/relaytop/config.toml when it exists, else the default simulated world.
    #[arg(long, short = 'c', global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Dashboard: the most frames drawn a second (1 to 120; default 30). Figures alone (not the
    /// selected session's stream) are redrawn at most 10 times a second.
    #[arg(long, value_name = "N")]
    pub fps: Option<u32>,

    /// Dashboard: colour theme, built-in (dark, light, high-contrast, solarized) or a TOML file.
    #[arg(long, value_name = "NAME|PATH")]
    pub theme: Option<String>,

    /// Dashboard: do not capture the mouse (the terminal keeps its own selection).
    #[arg(long)]
    pub no_mouse: bool,

    /// Directory for relaytop's own log files (default: the XDG state dir).
    #[arg(long, global = true, value_name = "DIR")]
    pub log_dir: Option<PathBuf>,

    /// Do not record the run (recording is on by default for the dashboard and headless).
    #[arg(long, global = true)]
    pub no_record: bool,

    /// Where run recordings go (default: the XDG state dir, relaytop/recordings).
    #[arg(long, global = true, value_name = "DIR")]
    pub record_dir: Option<PathBuf>,

    /// Write recordings gzipped (`<session>.jsonl.gz`, flushed every quarter second like
    /// plain ones); replay and export read them as they read plain ones.
    #[arg(long, global = true)]
    pub record_gzip: bool,

    /// Run every provider against an embedded simulated relay instead of its URL (a profile
    /// named like the provider, else the reference case: the baseline legacy, the canary
    /// holysheep). No key is read. Shows what a canary's rules would do before production.
    #[arg(long, global = true)]
    pub simulate: bool,

    /// Run a canary's clock N times faster: stage durations, check intervals and windows are
    /// canary time (a 3-hour rollout takes 90 s at 120). Needs simulated relays. For `bench
    /// soak`: the relay's and the sessions' clocks (default 5).
    #[arg(long, global = true, value_name = "N")]
    pub time_scale: Option<f64>,

    /// Serve Prometheus metrics at http://ADDR/metrics while the dashboard or a headless run
    /// goes (e.g. 127.0.0.1:9464).
    #[arg(long, global = true, value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,

    /// The fleet view: the dashboard fed by this Prometheus server (http://HOST:9090), which
    /// scrapes `relaytop agent`s, instead of local sessions: every location × relay.
    #[arg(long, value_name = "URL")]
    pub prometheus: Option<String>,

    #[command(flatten)]
    pub watch: WatchArgs,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run without a terminal UI and print a summary at the end; the exit status says how the
    /// sessions ended (below).
    #[command(after_help = relaytop::exit::TABLE)]
    Headless(HeadlessArgs),
    /// Run the embedded relay simulator: every protocol on one port, ordinary keys (for demos,
    /// tests, benchmarks and your own clients).
    Sim(SimArgs),
    /// Replay a recorded run on the dashboard (all sessions on one timeline), or with
    /// --headless print the summary it printed live.
    Replay(ReplayArgs),
    /// Export a recorded run: one row per request (CSV or JSON), or the dashboard as it
    /// looked, as an asciicast v2 file (asciinema) for sharing.
    Export(ExportArgs),
    /// Diagnose a relay URL step by step (URL, DNS, TCP, TLS, upgrade, key, completion,
    /// heartbeat); exit status 0 only when every step passes.
    Check(CheckArgs),
    /// Benchmarks: ingest, scale and accuracy (each against a reference measured in the same
    /// run), and the soak.
    Bench {
        #[command(subcommand)]
        case: BenchCase,
    },
    /// Chat with a relay in a pane: type, watch the reply stream, see its latency and cost.
    Chat(ChatArgs),
    /// Transcribe a WAV file through a relay-v1 provider and print the transcript.
    Transcribe(TranscribeArgs),
    /// Write a commented configuration for the relays found: a URL given here, and the
    /// variables other tools use (OPENAI_BASE_URL, ANTHROPIC_BASE_URL, GOOGLE_GEMINI_BASE_URL
    /// and their keys).
    Init(InitArgs),
    /// Alerts: `alert test NAME` sends a test message through the rule's receivers and prints
    /// what each answered (with --config FILE, or your config.toml).
    Alert {
        #[command(subcommand)]
        action: AlertAction,
    },
    /// Put the same workload on several relays side by side in time (a concurrency sweep or
    /// Poisson rates; prompts of about 100, 1,000 and 10,000 tokens) and report which is
    /// better, how sure that is, the knee and the cost: report.json, report.md and report.html
    /// with charts in --out DIR. Recorded like any run.
    Compare(CompareArgs),
    /// A headless run with no end for a fleet: serves /metrics and /healthz with its location
    /// on every series, keeps recordings within a budget, reloads its config on SIGHUP, and
    /// stops with a summary on SIGTERM or Ctrl-C.
    Agent(AgentArgs),
    /// Print Prometheus alerting and recording rules (YAML) equivalent to the config's
    /// [[alerts]] and [slo] (with --config FILE, or your config.toml).
    Rules,
    /// Print shell completions.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Subcommand, Debug)]
pub enum AlertAction {
    /// Send a test message through the receivers of the alert rule NAME (`[[alerts]]`) and
    /// print each one's answer; exit status 1 when one refused it.
    Test {
        /// The rule's `name`.
        name: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum BenchCase {
    #[command(flatten)]
    Cases(relaytop::bench::BenchCase),
    /// Many probe sessions against an embedded legacy relay (3.2 % drops), accelerated
    /// (`--time-scale`; at 1 a probe every 10 s and the protocol's own timings):
    /// checks that memory stays flat, tasks and file descriptors return to their baseline,
    /// and every drop is followed by a reconnect. Exit status 1 when a check fails.
    Soak(SoakArgs),
}

#[derive(clap::Args, Debug)]
pub struct SoakArgs {
    /// Probe sessions.
    #[arg(long, default_value_t = 1000)]
    pub sessions: u32,
    /// How long the sessions run (e.g. 10m, 1h).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10m")]
    pub duration: Duration,
    /// Wall time between two samples of memory, tasks and file descriptors.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    pub sample_every: Duration,
    /// The first part of the run, not judged (default: a fifth of --duration).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub warm_up: Option<Duration>,
    /// The most resident memory may grow after warm-up, in per cent.
    #[arg(long, value_name = "PCT", default_value_t = 5.0)]
    pub max_growth: f64,
}

#[derive(clap::Args, Debug)]
pub struct AgentArgs {
    /// The `location` label on every series (default: `[agent] location`, else the host's
    /// name).
    #[arg(long, value_name = "NAME", env = "RELAYTOP_LOCATION")]
    pub location: Option<String>,
    /// A constant label on every series, name=value (repeat it; over `[agent] labels`).
    #[arg(long = "label", value_name = "K=V")]
    pub labels: Vec<String>,
    /// Where /metrics and /healthz are served (default: `[agent] listen`, else
    /// 127.0.0.1:9464; --metrics-listen is the same).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Keep the recordings under this size (e.g. 500M, 2G): the oldest go first.
    #[arg(long, value_name = "SIZE", value_parser = byte_size)]
    pub record_max_bytes: Option<u64>,
    /// Delete recordings older than this (e.g. 12h, 7d).
    #[arg(long, value_name = "AGE", value_parser = positive_duration)]
    pub record_max_age: Option<Duration>,
}

/// A size on the command line: 1048576, 500K, 500M, 2G (powers of 1024).
pub fn byte_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (number, unit) = t.split_at(t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len()));
    let factor: u64 = match unit
        .to_ascii_uppercase()
        .trim_end_matches("IB")
        .trim_end_matches('B')
    {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        _ => return Err(format!("{text} is not a size: write e.g. 500M or 2G")),
    };
    let n: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{text} is not a size: write e.g. 500M or 2G"))?;
    if !(n.is_finite() && n > 0.0) {
        return Err(format!("{text}: the size must be above 0"));
    }
    Ok((n * factor as f64) as u64)
}

#[derive(clap::Args, Debug)]
pub struct HeadlessArgs {
    /// Stop after this long (e.g. 30s, 5m, 1h).
    #[arg(long, value_parser = positive_duration, allow_hyphen_values = true)]
    pub duration: Option<Duration>,
    /// Stop after this many completed responses.
    #[arg(long, value_name = "N")]
    pub requests: Option<u64>,
    /// Output format (default: text on a terminal, json otherwise).
    #[arg(long, value_enum)]
    pub format: Option<OutputFormat>,
}

/// A duration on the command line (30s, 5m, 1h): a negative one gets a message saying
/// durations are positive, not clap's "unexpected argument".
pub fn positive_duration(text: &str) -> Result<Duration, String> {
    if text.trim_start().starts_with('-') {
        return Err(format!(
            "durations are positive (e.g. 30s, 5m, 1h), not {text}"
        ));
    }
    humantime::parse_duration(text).map_err(|e| format!("{e} (e.g. 30s, 5m, 1h)"))
}

#[derive(clap::Args, Debug)]
pub struct ChatArgs {
    /// The provider to chat with (default: the configuration's first).
    #[arg(long, value_name = "NAME")]
    pub provider: Option<String>,
    /// The model to ask for (default: the provider's).
    #[arg(long, value_name = "M")]
    pub model: Option<String>,
    /// The system prompt.
    #[arg(long, value_name = "TEXT")]
    pub system: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct TranscribeArgs {
    /// The WAV file to transcribe.
    pub file: PathBuf,
    /// The provider (default: the first relay-v1 one).
    #[arg(long, value_name = "NAME")]
    pub provider: Option<String>,
    /// The transcription model.
    #[arg(long, value_name = "M", default_value = relaytop_core::transcribe::DEFAULT_MODEL)]
    pub model: String,
    /// How long to wait for the transcript.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "60s")]
    pub timeout: Duration,
}

#[derive(clap::Args, Debug)]
pub struct ReplayArgs {
    /// A run directory (with its run.json), or session recording files.
    #[arg(required = true, value_name = "RUN_DIR|FILE")]
    pub paths: Vec<PathBuf>,
    /// Print the summary without the dashboard (also when output is not a terminal).
    #[arg(long)]
    pub headless: bool,
    /// Output format (default: text on a terminal, json otherwise).
    #[arg(long, value_enum)]
    pub format: Option<OutputFormat>,
    /// Playback speed: 0.25 to 64 (e.g. 2x), or max (the default headless; 1x on the
    /// dashboard).
    #[arg(long)]
    pub speed: Option<relaytop_core::record::Speed>,
    /// Play silences longer than this many seconds as this long.
    #[arg(long, value_name = "SECONDS")]
    pub idle_limit: Option<f64>,
    /// Start this many seconds into the recording.
    #[arg(long, value_name = "SECONDS")]
    pub start_at: Option<f64>,
    /// Re-send the recorded requests to this provider (from --config, else the default
    /// world) and compare: latency, errors, drops, cost per 1,000 calls, cost a month.
    #[arg(long, value_name = "PROVIDER")]
    pub against: Option<String>,
    /// With --against: send each request as soon as a connection is free and the provider's
    /// rate limits allow, instead of with the recorded spacing.
    #[arg(long, requires = "against")]
    pub as_fast_as_allowed: bool,
}

#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// A run directory (with its run.json), or session recording files.
    #[arg(required = true, value_name = "RUN_DIR|FILE")]
    pub paths: Vec<PathBuf>,
    #[arg(long, value_enum, default_value = "csv")]
    pub format: ExportFormatArg,
    /// asciicast: the screen's width in columns (20 to 500).
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u16).range(CAST_WIDTH))]
    pub width: u16,
    /// asciicast: the screen's height in rows (8 to 200).
    #[arg(long, default_value_t = 36, value_parser = clap::value_parser!(u16).range(CAST_HEIGHT))]
    pub height: u16,
    /// asciicast: play silences longer than this many seconds as this long (0: as recorded).
    #[arg(long, value_name = "SECONDS", default_value_t = 2.0)]
    pub idle_limit: f64,
    /// asciicast: recorded time between two frames, milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 250)]
    pub frame_ms: u64,
}

/// The asciicast screen's widths: wider than the widest real terminal costs memory and time
/// for nothing (65535 x 65535 asked for 206 GB; 4000 x 2000 took 52 s and 2 GB).
pub const CAST_WIDTH: std::ops::RangeInclusive<i64> = 20..=500;
/// The asciicast screen's heights (see `CAST_WIDTH`).
pub const CAST_HEIGHT: std::ops::RangeInclusive<i64> = 8..=200;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormatArg {
    /// One row per request.
    Csv,
    /// One object per request.
    Json,
    /// The dashboard, drawn (asciicast v2, for asciinema).
    Asciicast,
}

#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// The relay URL: https://HOST/v1 (chat completions), https://HOST/v1/messages,
    /// https://HOST/v1/responses, https://HOST/v1beta (Gemini), wss://HOST/v1/realtime,
    /// wss://HOST/v1/stream (relay/v1).
    pub url: String,
    /// The wire protocol (default: from the URL's scheme and path).
    #[arg(long, value_enum)]
    pub protocol: Option<ProtocolArg>,
    /// The environment variable holding the key (never the key itself).
    #[arg(long, value_name = "VAR")]
    pub key_env: Option<String>,
    /// The model of the test completion (default: one of the protocol's family).
    #[arg(long)]
    pub model: Option<String>,
    /// How the key travels, when not the protocol's own way (a relay that wants Bearer on
    /// /v1/messages, Gemini's ?key=).
    #[arg(long, value_enum)]
    pub auth: Option<AuthArg>,
    /// Limit on each step (e.g. 10s).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    pub timeout: Duration,
    /// Also leave a connection idle this many seconds to find an idle cut-off.
    #[arg(long, value_name = "SECONDS")]
    pub idle: Option<u64>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: CheckFormat,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum ProtocolArg {
    RelayV1,
    OpenaiSse,
    OpenaiRealtime,
    AnthropicMessages,
    OpenaiResponses,
    Gemini,
}

impl From<ProtocolArg> for relaytop_core::session::Protocol {
    fn from(p: ProtocolArg) -> Self {
        match p {
            ProtocolArg::RelayV1 => Self::RelayV1,
            ProtocolArg::OpenaiSse => Self::OpenaiSse,
            ProtocolArg::OpenaiRealtime => Self::OpenaiRealtime,
            ProtocolArg::AnthropicMessages => Self::AnthropicMessages,
            ProtocolArg::OpenaiResponses => Self::OpenaiResponses,
            ProtocolArg::Gemini => Self::Gemini,
        }
    }
}

/// How the key travels, when not the protocol's own way.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum AuthArg {
    Bearer,
    XApiKey,
    XGoogApiKey,
    Query,
}

impl From<AuthArg> for relaytop_core::session::AuthStyle {
    fn from(a: AuthArg) -> Self {
        match a {
            AuthArg::Bearer => Self::Bearer,
            AuthArg::XApiKey => Self::XApiKey,
            AuthArg::XGoogApiKey => Self::XGoogApiKey,
            AuthArg::Query => Self::Query,
        }
    }
}

/// `relaytop URL`: watch one relay with no configuration file.
#[derive(clap::Args, Debug)]
pub struct WatchArgs {
    /// Watch this relay with no configuration file: a base (https://relay.example/v1) or an
    /// endpoint (…/v1/messages, …/v1/responses, …/v1beta/…, wss://…/v1/realtime). The protocol
    /// comes from the path, else from asking the relay.
    #[arg(value_name = "URL")]
    pub url: Option<String>,
    /// The environment variable holding the relay's key (never the key itself).
    #[arg(long, value_name = "VAR")]
    pub key_env: Option<String>,
    /// The wire protocol (default: from the URL's path, else by asking the relay).
    #[arg(long, value_enum)]
    pub protocol: Option<ProtocolArg>,
    /// The model to probe (default: a small one of the protocol's family).
    #[arg(long, value_name = "M")]
    pub model: Option<String>,
    /// How the key travels, when not the protocol's own way.
    #[arg(long, value_enum)]
    pub auth: Option<AuthArg>,
    /// Probe sessions on the relay (default 2).
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub probes: u32,
    /// Seconds between one probe's prompts (default 5).
    #[arg(long, value_name = "SECONDS", default_value_t = 5.0)]
    pub interval: f64,
}

impl Default for WatchArgs {
    /// What the command line gives when none of these is set.
    fn default() -> Self {
        Self {
            url: None,
            key_env: None,
            protocol: None,
            model: None,
            auth: None,
            probes: 2,
            interval: 5.0,
        }
    }
}

/// `relaytop init`: write a commented configuration.
#[derive(clap::Args, Debug)]
pub struct InitArgs {
    /// Where to write it (default: ~/.config/relaytop/config.toml); `-` for standard output.
    #[arg(long, short = 'o', value_name = "PATH")]
    pub output: Option<String>,
    /// Replace an existing file.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub watch: WatchArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum CheckFormat {
    Text,
    Json,
}

#[derive(clap::Args, Debug)]
pub struct SimArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8765")]
    pub listen: SocketAddr,
    /// A named profile (default, legacy, holysheep, openai, newapi) or a TOML file of
    /// simulator knobs.
    #[arg(long, default_value = "default")]
    pub profile: String,
    /// The protocol whose URL is printed; the one port serves them all.
    #[arg(long, value_enum, default_value = "relay-v1")]
    pub protocol: ProtocolArg,
}

/// `relaytop compare`: the same load on several relays, and a verdict.
#[derive(clap::Args, Debug)]
pub struct CompareArgs {
    /// The providers to compare (names in --config, else the default world's).
    #[arg(required = true, value_name = "PROVIDER")]
    pub providers: Vec<String>,
    /// Closed loop: the levels of requests in flight at once (default 1,2,4,8).
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "N,N,…",
        conflicts_with = "rate"
    )]
    pub concurrency: Vec<u32>,
    /// Open loop: Poisson arrivals at these rates, requests a second (e.g. 2,5,10).
    #[arg(long, value_delimiter = ',', value_name = "R,R,…")]
    pub rate: Vec<f64>,
    /// How long each load level runs.
    #[arg(long, value_parser = positive_duration, default_value = "20s")]
    pub stage: Duration,
    /// Prompt sizes in tokens, taken in turn by the requests.
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "N,N,…",
        default_value = "100,1000,10000"
    )]
    pub input_tokens: Vec<u32>,
    /// `max_tokens` asked of every request (replies are checked against it).
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub max_tokens: u32,
    /// Stop when this much has been spent over all relays, US $.
    #[arg(long, value_name = "USD")]
    pub max_cost: Option<f64>,
    /// Stop after this many requests over all relays.
    #[arg(long, value_name = "N")]
    pub max_requests: Option<u64>,
    /// Stop after this much load time in all (e.g. 90s).
    #[arg(long, value_parser = positive_duration)]
    pub duration: Option<Duration>,
    /// The report directory (default: a new one under the state directory, printed).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Seed of the arrivals, the prompts' prefixes and the bootstrap.
    #[arg(long, default_value_t = 21)]
    pub seed: u64,
    /// No progress lines on stderr.
    #[arg(long)]
    pub quiet: bool,
}
