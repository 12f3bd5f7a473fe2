//! Shared helpers for integration tests: simulators on 127.0.0.1 port 0, session specs with
//! short timings, and bounded waits on the event stream.
#![allow(dead_code)]

pub mod proxy;
pub mod rogue;

use std::net::SocketAddr;
use std::time::Duration;

use relaytop_core::config::secret::{Secret, SecretError};
use relaytop_core::session::{
    self, BackoffPolicy, EventKind, Protocol, RunClock, SessionEvent, SessionHandle, SessionInfo,
    SessionSpec, Timing, Workload,
};
use relaytop_sim::{SimProfile, SimServer};

/// A recognizable key: tests grep outputs for it. Shaped like a real key (the simulator
/// checks the shape), but too short to be mistaken for a committed secret.
pub const TEST_KEY: &str = "hs_live_TESTKEYrelaytop0001";

/// Reads `RELAYTOP_TEST_KEY` as `TEST_KEY`; no other variable is set.
pub fn test_key(var: &str) -> Result<Secret, SecretError> {
    match var {
        "RELAYTOP_TEST_KEY" => Ok(Secret::new(TEST_KEY)),
        other => Err(SecretError::NotSet { var: other.into() }),
    }
}

/// A configuration (as file `name`) of one relay/v1 provider `relay` at `url` (its key in
/// `RELAYTOP_TEST_KEY`) and `count` sessions `probe` sending every 50 ms, with heartbeats
/// every 200 ms and a quick backoff.
pub fn probe_config(url: &str, count: u32, name: &str) -> relaytop_core::config::Config {
    let text = format!(
        r#"
[defaults]
heartbeat_s = 0.2
dead_after_s = 2
backoff = {{ base_ms = 40, cap_ms = 150 }}

[[providers]]
name = "relay"
url = "{url}"
api_key_env = "RELAYTOP_TEST_KEY"
model = "gpt-4.1"

[[sessions]]
name = "probe"
provider = "relay"
count = {count}
interval_s = 0.05
"#
    );
    relaytop_core::config::file::parse(&text, name, &test_key).expect("config")
}

/// Quick timings so that every rule shows within a second or two.
pub fn fast_timing() -> Timing {
    Timing {
        heartbeat: Some(Duration::from_millis(200)),
        ws_ping: true,
        dead_after: Duration::from_millis(1500),
        handshake_timeout: Duration::from_secs(2),
        response_timeout: Duration::from_secs(10),
        stable_after: Duration::from_secs(5),
        backoff: BackoffPolicy {
            base: Duration::from_millis(50),
            cap: Duration::from_millis(200),
            max_attempts: 10,
        },
        // The older rows test the stop (what `relaytop check` and a config that turns the
        // watch off get); the watch rows set these (fault_matrix/keep_watching.rs).
        watch: None,
        recheck: None,
    }
}

pub fn probe(interval_ms: u64) -> Workload {
    Workload::Probe {
        interval: Duration::from_millis(interval_ms),
        prompt: "Say hello.".into(),
        max_tokens: None,
    }
}

pub fn chat() -> Workload {
    Workload::Chat { system: None }
}

pub fn spec(url: &str, workload: Workload, timing: Timing) -> SessionSpec {
    SessionSpec {
        info: SessionInfo {
            id: 0,
            name: "test-session".into(),
            provider: "sim".into(),
            model: "gpt-4.1".into(),
            protocol: Protocol::RelayV1,
            url: url.into(),
            workload: "probe".into(),
        },
        api_key: Some(Secret::new(TEST_KEY)),
        auth: Default::default(),
        workload,
        timing,
        seed: Some(7),
        tap: None,
        limits: None,
        resolver: None,
    }
}

pub async fn sim(profile: SimProfile) -> SimServer {
    let any_port: SocketAddr = ([127, 0, 0, 1], 0).into();
    SimServer::start(any_port, profile)
        .await
        .expect("simulator starts on 127.0.0.1")
}

/// A session under test and every event it has reported so far.
pub struct Watched {
    pub handle: SessionHandle,
    pub rx: relaytop_core::session::EventReceiver,
    pub seen: Vec<SessionEvent>,
    pub clock: RunClock,
}

pub fn watch(spec: SessionSpec) -> Watched {
    let clock = RunClock::new();
    let (tx, rx) = relaytop_core::session::stream::channel(4096);
    let handle = session::spawn(spec, clock, tx);
    Watched {
        handle,
        rx,
        seen: Vec::new(),
        clock,
    }
}

impl Watched {
    /// Waits (at most `limit`) for an event matching `pred`; returns it.
    pub async fn wait_for(
        &mut self,
        limit: Duration,
        pred: impl Fn(&EventKind) -> bool,
    ) -> Option<SessionEvent> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(event)) => {
                    self.seen.push(event.clone());
                    if pred(&event.kind) {
                        return Some(event);
                    }
                }
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// Collects events for `period`.
    pub async fn collect_for(&mut self, period: Duration) {
        let _ = self.wait_for(period, |_| false).await;
    }

    pub fn count(&self, pred: impl Fn(&EventKind) -> bool) -> usize {
        self.seen.iter().filter(|e| pred(&e.kind)).count()
    }

    /// A readable list of what happened, for assertion messages.
    pub fn story(&self) -> String {
        self.seen
            .iter()
            .filter(|e| !matches!(e.kind, EventKind::Chunk { .. }))
            .map(|e| format!("{:>8.1} ms {:?}", e.at_us as f64 / 1000.0, e.kind))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// The variables other tools use that relaytop reads when it has no configuration
/// (`config::starter::from_environment`): a test's relaytop never sees the machine's own, so
/// it never leaves loopback.
pub const TOOL_VARIABLES: [&str; 10] = [
    "OPENAI_BASE_URL",
    "OPENAI_API_BASE",
    "OPENAI_API_KEY",
    "ANTHROPIC_BASE_URL",
    "ANTHROPIC_AUTH_TOKEN",
    "ANTHROPIC_API_KEY",
    "GOOGLE_GEMINI_BASE_URL",
    "GEMINI_BASE_URL",
    "GEMINI_API_KEY",
    "GOOGLE_API_KEY",
];

/// `command` without the machine's `TOOL_VARIABLES`.
pub fn without_tool_variables(command: &mut std::process::Command) -> &mut std::process::Command {
    for var in TOOL_VARIABLES {
        command.env_remove(var);
    }
    command
}
