//! `relaytop replay RUN --against PROVIDER`: re-sends a recording's requests to another
//! provider and compares the two, recorded and now (latency, errors, drops, tokens, cost per
//! 1,000 calls and the monthly cost at the recorded volume).
//!
//! Three parts: reading the requests out of a recording (`read_recording`: every request's
//! messages and `max_tokens`, from the frames the sessions sent, in recorded order), the
//! pacing (`Pacer`, a pure state machine over `now`: the recorded spacing, or as fast as the
//! target's rate limits allow, holding back after a 429), and the run (`run`: a pool of
//! on-demand sessions against the target, as many as the recording had requests in flight at
//! once) whose `Report` is set beside the recording's in a `Comparison`.
//!
//! Choices (docs/REPLAY-AGAINST.md): the whole recording is compared with the target, every
//! recorded provider together; requests go out with the target's model; a model the target
//! does not price is counted at $0 and marked; failed requests are not retried.

use std::fmt::Write as _;
use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use relaytop_core::config::file::Provider;
use relaytop_core::metrics::Metrics;
use relaytop_core::numbers::money_grouped as money2;
use relaytop_core::protocol::openai_realtime::ClientEvent;
use relaytop_core::protocol::openai_sse::ChatRequest;
use relaytop_core::protocol::relay_v1::{ChatMessage, ClientFrame, Role};
use relaytop_core::record::format::{Dir, Entry};
use relaytop_core::record::reader::{self, Item, LineReader, Position};
use relaytop_core::record::replay::Replay;
use relaytop_core::record::{RecordOptions, Recorder, RunMeta};
use relaytop_core::report::{Figures, Report, RunInfo, count, human_duration};
use relaytop_core::session::ratelimit::SlidingWindow;
use relaytop_core::session::{
    EventKind, Protocol, RunClock, SessionCommand, SessionInfo, SessionSpec, SessionState, Timing,
    Workload,
};
use relaytop_core::supervisor::Supervisor;
use relaytop_core::world::World;

/// Requests read from one recording, at most (the rest are left out, and the comparison says
/// so).
pub const MAX_REQUESTS: usize = 200_000;
/// Characters of messages kept over all requests, at most.
pub const MAX_MESSAGE_BYTES: usize = 256 << 20;
/// Connections the pool opens, at most (the target's `max_connections` may allow fewer).
pub const MAX_POOL: u32 = 256;
/// Hours in the month the projection uses (365 × 24 / 12).
pub const HOURS_PER_MONTH: f64 = 730.0;
/// With no connection up for this long, the run ends (the comparison says why).
const NO_CONNECTION_LIMIT: Duration = Duration::from_secs(60);
/// A request with no outcome after this long frees its session anyway.
const LOST_AFTER: Duration = Duration::from_secs(180);

/// One recorded request, ready to re-send.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordedRequest {
    /// When it was sent, microseconds since the recording's start.
    pub at_us: u64,
    /// The recorded session's name and provider.
    pub session: String,
    pub provider: String,
    pub messages: Vec<ChatMessage>,
    pub max_tokens: Option<u32>,
}

/// What `read_recording` found: the requests and the recording's own report.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// Every request whose body the recording shows, in recorded order.
    pub requests: Vec<RecordedRequest>,
    /// The recording's report (the replay's, equal to the live run's).
    pub report: Report,
    /// The most requests in flight at once.
    pub concurrency: u32,
    /// The recording's length, microseconds.
    pub duration_us: u64,
    /// The recorded providers, in the order first seen.
    pub providers: Vec<String>,
    /// Recorded requests that cannot be re-sent (an audio transcription, a body that does not
    /// parse) or were left out past `MAX_REQUESTS`/`MAX_MESSAGE_BYTES`.
    pub not_resent: u64,
    /// What the reading noticed (torn or malformed lines, requests left out).
    pub notes: Vec<String>,
}

/// A request body a session sent, by protocol.
#[derive(Default)]
struct BodyState {
    /// The last request body seen, waiting for its `request_sent`.
    last: Option<(Vec<ChatMessage>, Option<u32>)>,
    /// openai-realtime: the conversation's turns so far (the server keeps them).
    conversation: Vec<ChatMessage>,
    /// openai-realtime: a one-shot's items (named `relaytop_*`) since the last response.
    oneshot: Vec<ChatMessage>,
}

impl BodyState {
    fn frame(&mut self, protocol: Protocol, text: &str) {
        match protocol {
            Protocol::RelayV1 => {
                if let Ok(ClientFrame::ChatCompletion {
                    messages,
                    max_tokens,
                    ..
                }) = serde_json::from_str::<ClientFrame>(text)
                {
                    self.last = Some((messages, max_tokens));
                }
            }
            Protocol::OpenaiSse => {
                if let Ok(request) = serde_json::from_str::<ChatRequest>(text) {
                    self.last = Some((request.messages, request.max_tokens));
                }
            }
            Protocol::OpenaiRealtime => match serde_json::from_str::<ClientEvent>(text) {
                Ok(ClientEvent::ConversationItemCreate { item }) => {
                    let role = match item.role.as_deref() {
                        Some("assistant") => Role::Assistant,
                        Some("system") => Role::System,
                        _ => Role::User,
                    };
                    let message = ChatMessage::new(role, item.text());
                    if item.id.is_some() {
                        self.oneshot.push(message);
                    } else {
                        self.conversation.push(message);
                    }
                }
                Ok(ClientEvent::ResponseCreate { response }) => {
                    let max_tokens = response
                        .and_then(|r| r.max_output_tokens)
                        .and_then(|m| m.limit());
                    let messages = if self.oneshot.is_empty() {
                        self.conversation.clone()
                    } else {
                        std::mem::take(&mut self.oneshot)
                    };
                    self.last = Some((messages, max_tokens));
                }
                _ => {}
            },
        }
    }

    /// A new connection: a Realtime server starts a fresh conversation.
    fn reconnected(&mut self) {
        self.conversation.clear();
        self.oneshot.clear();
        self.last = None;
    }
}

/// Reads the requests out of a recording (run directory or session files), in recorded
/// order, and replays it as fast as possible for its report and its concurrency.
pub fn read_recording(paths: &[PathBuf]) -> anyhow::Result<Recorded> {
    let mut replay = Replay::open(paths)?;
    // The report, and the most requests in flight at once.
    let sessions = replay.sessions().len();
    let mut in_flight = vec![false; sessions];
    let (mut now_in_flight, mut concurrency) = (0u32, 0u32);
    let set = |busy: &mut bool, to: bool, now: &mut u32| {
        if *busy != to {
            *busy = to;
            if to {
                *now += 1;
            } else {
                *now = now.saturating_sub(1);
            }
        }
    };
    while let Some(event) = replay.next_event() {
        let Some(busy) = in_flight.get_mut(event.session as usize) else {
            continue;
        };
        match &event.kind {
            EventKind::RequestSent { .. } => set(busy, true, &mut now_in_flight),
            EventKind::Done { .. } | EventKind::RequestFailed { .. } => {
                set(busy, false, &mut now_in_flight);
            }
            EventKind::State(state) if !state.is_up() => set(busy, false, &mut now_in_flight),
            _ => {}
        }
        concurrency = concurrency.max(now_in_flight);
    }
    let report = Report::build(replay.metrics(), replay.run_info());
    let mut notes: Vec<String> = replay.read_stats().warnings();
    let duration_us = replay.duration_us();

    // The bodies: each `request_sent` takes the request body its session sent just before.
    let found = reader::discover(paths)?;
    let mut requests = Vec::new();
    let mut not_resent = 0u64;
    let mut bytes = 0usize;
    let mut providers: Vec<String> = Vec::new();
    for (recording, offset_us) in found.sessions.iter().zip(&found.offsets_us) {
        let info = recording.header.info();
        if !providers.contains(&info.provider) {
            providers.push(info.provider.clone());
        }
        let mut lines = LineReader::new(recording.parts.clone(), Position::START);
        let mut body = BodyState::default();
        loop {
            let item = lines
                .next_item()
                .with_context(|| format!("cannot read the recording of {}", info.name))?;
            let record = match item {
                Item::Record { record, .. } => record,
                Item::Malformed { .. } => continue,
                Item::Torn { .. } | Item::End => break,
            };
            match record.entry {
                Entry::Text {
                    dir: Dir::ToRelay,
                    text,
                } => body.frame(info.protocol, &text),
                Entry::Upgrade { .. } if info.protocol == Protocol::OpenaiRealtime => {
                    body.reconnected();
                }
                Entry::Event(EventKind::RequestSent { .. }) => match body.last.take() {
                    Some((messages, max_tokens))
                        if requests.len() < MAX_REQUESTS && bytes < MAX_MESSAGE_BYTES =>
                    {
                        bytes += messages.iter().map(|m| m.content.len()).sum::<usize>();
                        requests.push(RecordedRequest {
                            at_us: record.t_us.saturating_add(*offset_us),
                            session: info.name.clone(),
                            provider: info.provider.clone(),
                            messages,
                            max_tokens,
                        });
                    }
                    _ => not_resent += 1,
                },
                _ => {}
            }
        }
    }
    // One timeline; a stable sort keeps each session's order and puts ties by session.
    requests.sort_by_key(|r| r.at_us);
    if not_resent > 0 {
        notes.push(format!(
            "{} recorded requests are not re-sent (no chat body in the recording: audio, or \
             past the first {} requests)",
            count(not_resent),
            count(MAX_REQUESTS as u64)
        ));
    }
    Ok(Recorded {
        requests,
        report,
        concurrency,
        duration_us,
        providers,
        not_resent,
        notes,
    })
}

/// How the requests are spaced.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Pacing {
    /// The recorded spacing, `speed` times faster; gaps longer than `idle_limit` shortened to
    /// it.
    Recorded {
        speed: f64,
        idle_limit: Option<Duration>,
    },
    /// Each request as soon as a connection is free and the target's rate limits allow.
    AsFastAsAllowed,
}

impl Pacing {
    fn describe(&self) -> String {
        match self {
            Pacing::Recorded { speed, idle_limit } => {
                let mut s = if (*speed - 1.0).abs() < 1e-9 {
                    "with the recorded spacing".to_owned()
                } else {
                    format!("with the recorded spacing at {speed}x")
                };
                if let Some(limit) = idle_limit {
                    let _ = write!(s, ", silences cut to {:.1} s", limit.as_secs_f64());
                }
                s
            }
            Pacing::AsFastAsAllowed => "as fast as the target's rate limits allow".to_owned(),
        }
    }
}

/// When each request is due, from the first (at zero), for the recorded spacing.
pub fn schedule(at_us: &[u64], speed: f64, idle_limit: Option<Duration>) -> Vec<Duration> {
    let speed = if speed.is_finite() && speed > 0.0 {
        speed
    } else {
        1.0
    };
    let mut due = Vec::with_capacity(at_us.len());
    let mut t = Duration::ZERO;
    let mut previous = at_us.first().copied().unwrap_or(0);
    for &at in at_us {
        let mut gap = Duration::from_micros(at.saturating_sub(previous));
        if let Some(limit) = idle_limit {
            gap = gap.min(limit);
        }
        t += gap.div_f64(speed);
        due.push(t);
        previous = at;
    }
    due
}

/// What the pacer says at `now`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pace {
    /// Send request number `n` (in recorded order) now.
    Send(usize),
    /// Nothing before this time.
    WaitUntil(Duration),
    /// Every request has gone.
    Done,
}

/// The pacing of a re-sent recording, pure: times are offsets the caller passes in.
///
/// It hands out requests in recorded order, each no earlier than its due time (none in
/// `AsFastAsAllowed`), within the target's sliding window of sends, and none while a 429
/// (or a relay's `rate_limited`) asked to wait. The caller asks only when a connection is free.
#[derive(Clone, Debug)]
pub struct Pacer {
    /// Due times (empty: as fast as allowed).
    due: Vec<Duration>,
    total: usize,
    next: usize,
    window: SlidingWindow,
    hold_until: Duration,
}

impl Pacer {
    /// Requests due at `due` (from `schedule`, offset by the start), within `per_minute`
    /// sends in any `window`.
    pub fn recorded(due: Vec<Duration>, per_minute: u32, window: Duration) -> Self {
        Self {
            total: due.len(),
            due,
            next: 0,
            window: SlidingWindow::new(per_minute, window),
            hold_until: Duration::ZERO,
        }
    }

    /// `total` requests as fast as `per_minute` sends in any `window` allow.
    pub fn as_fast_as_allowed(total: usize, per_minute: u32, window: Duration) -> Self {
        Self {
            due: Vec::new(),
            total,
            next: 0,
            window: SlidingWindow::new(per_minute, window),
            hold_until: Duration::ZERO,
        }
    }

    /// The next request to send at `now`, or when to ask again. Takes a slot of the window
    /// when it says `Send`.
    pub fn poll(&mut self, now: Duration) -> Pace {
        if self.next >= self.total {
            return Pace::Done;
        }
        let mut at = self.hold_until;
        if let Some(&due) = self.due.get(self.next) {
            at = at.max(due);
        }
        if now < at {
            return Pace::WaitUntil(at);
        }
        match self.window.try_acquire(now) {
            Ok(()) => {
                self.next += 1;
                Pace::Send(self.next - 1)
            }
            Err(free_at) => Pace::WaitUntil(free_at.max(now)),
        }
    }

    /// The relay asked to wait (a 429, a `rate_limited` frame): nothing goes out before
    /// `until`.
    pub fn hold(&mut self, until: Duration) {
        self.hold_until = self.hold_until.max(until);
    }

    /// A request handed out could not be sent: it goes again next.
    pub fn give_back(&mut self) {
        self.next = self.next.saturating_sub(1);
    }

    /// Requests handed out so far.
    pub fn sent(&self) -> usize {
        self.next
    }

    pub fn total(&self) -> usize {
        self.total
    }
}

/// How `run` goes.
#[derive(Clone, Debug)]
pub struct AgainstOptions {
    pub pacing: Pacing,
    /// Record the new run too (its own run directory).
    pub record: Option<RecordOptions>,
    /// A one-line progress indicator on stderr (when it is a terminal).
    pub progress: bool,
    /// After the last request went out, how long to wait for the outstanding responses.
    pub drain: Duration,
    /// How long the pool may take to connect before the requests start anyway.
    pub connect_wait: Duration,
}

impl Default for AgainstOptions {
    fn default() -> Self {
        Self {
            pacing: Pacing::Recorded {
                speed: 1.0,
                idle_limit: None,
            },
            record: None,
            progress: false,
            drain: Duration::from_secs(120),
            connect_wait: Duration::from_secs(10),
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct PoolSession {
    up: bool,
    ended: bool,
    busy: Option<Duration>,
}

/// What the new run did.
#[derive(Clone, Debug)]
pub struct NowRun {
    pub report: Report,
    /// Connections in the pool.
    pub pool: u32,
    /// Requests sent, of those to send.
    pub sent: u64,
    pub to_send: u64,
    /// Ctrl-C ended it early.
    pub interrupted: bool,
    /// Where the new run was recorded.
    pub recorded_to: Option<PathBuf>,
    pub notes: Vec<String>,
}

/// The target provider of `world`, or an error naming the ones it has.
pub fn target<'w>(world: &'w World, name: &str) -> anyhow::Result<&'w Provider> {
    world
        .config
        .providers
        .iter()
        .find(|p| p.name == name)
        .ok_or_else(|| {
            let names: Vec<&str> = world
                .config
                .providers
                .iter()
                .map(|p| p.name.as_str())
                .collect();
            anyhow::anyhow!(
                "no provider `{name}` in {} (it has: {}); name one of them, or pass the \
                 configuration that has it with --config FILE",
                world.config.source,
                names.join(", ")
            )
        })
}

/// Re-sends `recorded`'s requests to provider `target` of `world` and reports the new run.
pub async fn run(
    recorded: &Recorded,
    world: &World,
    target_name: &str,
    options: &AgainstOptions,
) -> anyhow::Result<NowRun> {
    let provider = target(world, target_name)?.clone();
    let mut notes = Vec::new();
    let wanted = recorded.concurrency.max(1);
    let pool = wanted.min(provider.max_connections.max(1)).min(MAX_POOL);
    if pool < wanted {
        notes.push(format!(
            "the recording had {wanted} requests in flight at once; {} allows {pool} \
             connections, so the pool has {pool}",
            provider.name
        ));
    }
    let clock = RunClock::new();
    let started_at = chrono::Utc::now();
    let recorder = match &options.record {
        Some(record) => Some(Recorder::start(
            record,
            RunMeta {
                started_at,
                source: format!("replay --against {}", provider.name),
                pricing: world.config.pricing(),
                secrets: world.config.secrets(),
            },
            clock,
        )?),
        None => None,
    };
    let (mut supervisor, mut events) = Supervisor::new(clock);
    let mut infos = Vec::new();
    for n in 1..=pool {
        let mut spec = SessionSpec {
            info: SessionInfo {
                id: n - 1,
                name: format!("{}-against-{n}", provider.name),
                provider: provider.name.clone(),
                model: provider.model.clone(),
                protocol: provider.protocol,
                url: provider.url.clone(),
                workload: "replay".into(),
            },
            api_key: provider.api_key.clone(),
            workload: Workload::OnDemand,
            timing: Timing::default(),
            seed: None,
            tap: None,
            limits: provider.limits.clone(),
            resolver: None,
        };
        if let Some(recorder) = &recorder {
            recorder.attach(&mut spec, provider.api_key_env.as_deref())?;
        }
        infos.push(spec.info.clone());
        supervisor.start(spec);
    }
    let mut metrics = Metrics::new(infos, world.config.pricing().into());
    let mut sessions = vec![PoolSession::default(); pool as usize];
    let mut stop_reason: Option<String> = None;
    let progress = options.progress && std::io::stderr().is_terminal();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut interrupted = false;

    let fold = |event: relaytop_core::session::SessionEvent,
                metrics: &mut Metrics,
                sessions: &mut [PoolSession],
                stop_reason: &mut Option<String>,
                pacer: Option<&mut Pacer>| {
        metrics.apply(&event);
        world.observe(&event);
        let Some(s) = sessions.get_mut(event.session as usize) else {
            return;
        };
        match &event.kind {
            EventKind::State(state) => {
                s.up = state.is_up();
                if let SessionState::Stopped { reason } = state {
                    stop_reason.get_or_insert_with(|| reason.clone());
                }
                if matches!(state, SessionState::Stopped { .. } | SessionState::Closed) {
                    s.ended = true;
                    s.busy = None;
                }
            }
            EventKind::Done { .. } | EventKind::RequestFailed { .. } => s.busy = None,
            EventKind::RateLimited { wait_ms, .. } => {
                if let Some(pacer) = pacer {
                    pacer.hold(event.at() + Duration::from_millis(*wait_ms));
                }
            }
            _ => {}
        }
    };

    // The pool connects first: the recorded requests went over open connections.
    let connect_deadline = tokio::time::Instant::now() + options.connect_wait;
    while !sessions.iter().all(|s| s.up || s.ended) {
        tokio::select! {
            event = events.recv() => match event {
                Some(event) => fold(event, &mut metrics, &mut sessions, &mut stop_reason, None),
                None => break,
            },
            _ = tokio::time::sleep_until(connect_deadline) => break,
            _ = &mut ctrl_c => { interrupted = true; break; }
        }
    }

    let start = clock.now();
    let per_minute = provider.requests_per_minute;
    let minute = Duration::from_secs(60);
    let mut pacer = match options.pacing {
        Pacing::Recorded { speed, idle_limit } => {
            let at: Vec<u64> = recorded.requests.iter().map(|r| r.at_us).collect();
            let due = schedule(&at, speed, idle_limit)
                .into_iter()
                .map(|d| start + d)
                .collect();
            Pacer::recorded(due, per_minute, minute)
        }
        Pacing::AsFastAsAllowed => {
            Pacer::as_fast_as_allowed(recorded.requests.len(), per_minute, minute)
        }
    };
    let commander = supervisor.commander();
    let mut next_session = 0usize;
    let mut last_send = clock.now();
    let mut last_progress = Duration::ZERO;
    let mut last_up = clock.now();
    while !interrupted {
        let now = clock.now();
        // Free sessions whose request never ended.
        for s in &mut sessions {
            if s.busy
                .is_some_and(|since| now.saturating_sub(since) > LOST_AFTER)
            {
                s.busy = None;
            }
        }
        let mut wake = now + Duration::from_millis(250);
        loop {
            let n = sessions.len();
            let Some(k) = (0..n)
                .map(|k| (next_session + k) % n)
                .find(|&k| sessions[k].up && sessions[k].busy.is_none())
            else {
                break;
            };
            match pacer.poll(now) {
                Pace::Send(i) => {
                    let request = &recorded.requests[i];
                    let command = SessionCommand::SendMessages {
                        messages: request.messages.clone(),
                        max_tokens: request.max_tokens,
                    };
                    let id = u32::try_from(k).unwrap_or(u32::MAX);
                    if commander.command(id, command) {
                        sessions[k].busy = Some(now);
                        next_session = (k + 1) % n;
                        last_send = now;
                    } else {
                        sessions[k].up = false;
                        pacer.give_back();
                    }
                }
                Pace::WaitUntil(at) => {
                    wake = wake.min(at);
                    break;
                }
                Pace::Done => break,
            }
        }
        let all_sent = pacer.sent() >= pacer.total();
        let none_busy = sessions.iter().all(|s| s.busy.is_none());
        if all_sent && none_busy {
            break;
        }
        if all_sent && now.saturating_sub(last_send) > options.drain {
            notes.push(format!(
                "some responses had not ended {} after the last request; the figures leave \
                 them out",
                human_duration(options.drain.as_micros() as u64)
            ));
            break;
        }
        if sessions.iter().any(|s| s.up) {
            last_up = now;
        } else if now.saturating_sub(last_up) > NO_CONNECTION_LIMIT {
            notes.push(format!(
                "no connection to {} for {}{}: {} of {} requests sent",
                provider.name,
                human_duration(NO_CONNECTION_LIMIT.as_micros() as u64),
                stop_reason
                    .as_ref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default(),
                pacer.sent(),
                pacer.total()
            ));
            break;
        }
        if sessions.iter().all(|s| s.ended) {
            notes.push(format!(
                "every connection to {} ended{}: {} of {} requests sent",
                provider.name,
                stop_reason
                    .as_ref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default(),
                pacer.sent(),
                pacer.total()
            ));
            break;
        }
        if progress && now.saturating_sub(last_progress) >= Duration::from_millis(250) {
            last_progress = now;
            let c = &metrics.totals().counts;
            eprint!(
                "\rrelaytop: {} of {} sent to {}, {} completed, {} failed   ",
                count(pacer.sent() as u64),
                count(pacer.total() as u64),
                provider.name,
                count(c.responses_completed),
                count(c.requests_failed)
            );
        }
        let sleep = tokio::time::sleep_until(clock.instant_at(wake.max(now)));
        tokio::select! {
            event = events.recv() => {
                let Some(event) = event else { break };
                fold(event, &mut metrics, &mut sessions, &mut stop_reason, Some(&mut pacer));
                while let Ok(event) = events.try_recv() {
                    fold(event, &mut metrics, &mut sessions, &mut stop_reason, Some(&mut pacer));
                }
            }
            _ = sleep => {}
            _ = &mut ctrl_c => interrupted = true,
        }
    }
    if progress {
        eprint!("\r{:78}\r", "");
    }
    let duration = clock.now().saturating_sub(start);
    let mut closing = Vec::new();
    supervisor
        .shutdown(Duration::from_secs(2), &mut events, |event| {
            closing.push(event.clone());
        })
        .await;
    for event in closing {
        fold(event, &mut metrics, &mut sessions, &mut stop_reason, None);
    }
    let ended_by = if interrupted {
        "ctrl-c".to_owned()
    } else if pacer.sent() >= pacer.total() {
        "every recorded request re-sent".to_owned()
    } else {
        "the target's connections ended".to_owned()
    };
    let recorded_to = match &recorder {
        Some(recorder) => Some(recorder.finish(&ended_by, clock.now())?),
        None => None,
    };
    let run = RunInfo {
        started_at,
        duration_us: relaytop_core::session::event::micros(duration),
        source: format!("replay --against {}", provider.name),
        ended_by,
    };
    Ok(NowRun {
        report: Report::build(&metrics, run),
        pool,
        sent: pacer.sent() as u64,
        to_send: pacer.total() as u64,
        interrupted,
        recorded_to,
        notes,
    })
}

/// One side of the comparison.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Side {
    /// The provider(s): the recorded ones, or the target.
    pub providers: Vec<String>,
    /// The model(s) the requests went out with.
    pub models: Vec<String>,
    pub requests: u64,
    pub completed: u64,
    pub failed: u64,
    pub errors: u64,
    pub drops: u64,
    pub ttft_p50_ms: Option<f64>,
    pub ttft_p99_ms: Option<f64>,
    pub total_p50_ms: Option<f64>,
    pub total_p99_ms: Option<f64>,
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub cost_usd: f64,
    /// Some of the cost was priced from estimated tokens (the relay sent no usage).
    pub cost_estimated: bool,
    /// Models without a price: their responses count $0, and the costs are too low.
    pub unpriced_models: Vec<String>,
    /// In the billing currency; null when the providers bill in different ones.
    pub cost_billed: Option<f64>,
    pub billing_currency: String,
    /// Spend per 1,000 completed calls, US $.
    pub cost_per_1000_calls_usd: Option<f64>,
    /// The same in the billing currency.
    pub cost_per_1000_calls_billed: Option<f64>,
    /// This side's spend per request sent, times the requests of a month at the recorded
    /// volume, US $.
    pub monthly_cost_usd: Option<f64>,
    pub monthly_cost_billed: Option<f64>,
}

/// Now against recorded: a ratio (`now / recorded`) for each figure where both have one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub ttft_p50_ratio: Option<f64>,
    pub ttft_p99_ratio: Option<f64>,
    pub total_p50_ratio: Option<f64>,
    pub total_p99_ratio: Option<f64>,
    pub cost_per_1000_calls_ratio: Option<f64>,
    /// `now.monthly_cost_usd - recorded.monthly_cost_usd` (negative: a saving).
    pub monthly_cost_delta_usd: Option<f64>,
    /// Error rate (errors / requests), each side.
    pub error_rate_recorded: f64,
    pub error_rate_now: f64,
    pub drop_rate_recorded: f64,
    pub drop_rate_now: f64,
}

/// The recording compared.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordingSummary {
    pub started_at: String,
    pub duration_s: f64,
    pub source: String,
    /// Requests sent in the recording (all of them, re-sent or not).
    pub requests: u64,
    /// Requests re-sent (those whose body the recording shows).
    pub requests_resent: u64,
    /// `requests` per hour of the recording.
    pub calls_per_hour: f64,
    /// `calls_per_hour × 730`.
    pub calls_per_month: f64,
    /// The most requests in flight at once.
    pub concurrency: u32,
}

/// The target and how it was driven.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TargetSummary {
    pub provider: String,
    pub model: String,
    pub protocol: String,
    /// "recorded" or "as_fast_as_allowed".
    pub pacing: String,
    /// Playback speed of the recorded spacing (1 in `as_fast_as_allowed`).
    pub speed: f64,
    pub idle_limit_s: Option<f64>,
    /// Connections in the pool.
    pub connections: u32,
    pub duration_s: f64,
    pub interrupted: bool,
    /// Where the new run was recorded, if it was.
    pub recorded_to: Option<String>,
}

/// `relaytop replay RUN --against PROVIDER`'s answer (schema: docs/REPLAY-AGAINST.md).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub relaytop: String,
    pub recording: RecordingSummary,
    pub target: TargetSummary,
    pub recorded: Side,
    /// The recorded side, provider by provider (the recording's traffic on each).
    pub recorded_by_provider: Vec<Side>,
    pub now: Side,
    pub change: Change,
    pub notes: Vec<String>,
}

fn ratio(now: Option<f64>, recorded: Option<f64>) -> Option<f64> {
    match (now, recorded) {
        (Some(n), Some(r)) if r > 0.0 => Some(round(n / r, 4)),
        _ => None,
    }
}

fn round(x: f64, decimals: i32) -> f64 {
    let f = 10f64.powi(decimals);
    (x * f).round() / f
}

fn side(f: &Figures, providers: Vec<String>, models: Vec<String>, per_month: f64) -> Side {
    let per_request = |total: f64| (f.requests > 0).then(|| total / f.requests as f64);
    let per_completed =
        |total: f64| (f.completed > 0).then(|| round(total / f.completed as f64 * 1000.0, 6));
    Side {
        providers,
        models,
        requests: f.requests,
        completed: f.completed,
        failed: f.failed,
        errors: f.errors,
        drops: f.drops,
        ttft_p50_ms: f.ttft_ms.p50,
        ttft_p99_ms: f.ttft_ms.p99,
        total_p50_ms: f.total_ms.p50,
        total_p99_ms: f.total_ms.p99,
        tokens_in: f.tokens_in,
        tokens_out: f.tokens_out,
        cost_usd: f.cost_usd,
        cost_estimated: f.cost_estimated,
        unpriced_models: f.unpriced_models.clone(),
        cost_billed: f.cost_billed,
        billing_currency: f.billing_currency.clone(),
        cost_per_1000_calls_usd: f.cost_per_1000_calls_usd,
        cost_per_1000_calls_billed: f.cost_billed.and_then(per_completed),
        monthly_cost_usd: per_request(f.cost_usd).map(|c| round(c * per_month, 2)),
        monthly_cost_billed: f
            .cost_billed
            .and_then(per_request)
            .map(|c| round(c * per_month, 2)),
    }
}

impl Comparison {
    /// The recorded run's figures beside the new run's.
    pub fn build(
        recorded: &Recorded,
        now: &NowRun,
        target: &Provider,
        pacing: Pacing,
    ) -> Comparison {
        let r = &recorded.report;
        let hours = recorded.duration_us as f64 / 3.6e9;
        let calls_per_hour = if hours > 0.0 {
            r.totals.figures.requests as f64 / hours
        } else {
            0.0
        };
        let per_month = calls_per_hour * HOURS_PER_MONTH;
        let mut models: Vec<String> = Vec::new();
        for s in &r.sessions {
            if !models.contains(&s.model) {
                models.push(s.model.clone());
            }
        }
        let recorded_side = side(
            &r.totals.figures,
            recorded.providers.clone(),
            models,
            per_month,
        );
        let recorded_by_provider = r
            .providers
            .iter()
            .map(|p| {
                let mut models: Vec<String> = Vec::new();
                for s in r.sessions.iter().filter(|s| s.provider == p.name) {
                    if !models.contains(&s.model) {
                        models.push(s.model.clone());
                    }
                }
                side(&p.figures, vec![p.name.clone()], models, per_month)
            })
            .collect();
        let now_side = side(
            &now.report.totals.figures,
            vec![target.name.clone()],
            vec![target.model.clone()],
            per_month,
        );
        let mut notes = recorded.notes.clone();
        notes.extend(now.notes.iter().cloned());
        if recorded.providers.len() > 1 {
            notes.push(format!(
                "the recording has {} providers ({}); their traffic is compared with {} as a \
                 whole",
                recorded.providers.len(),
                recorded.providers.join(", "),
                target.name
            ));
        }
        if recorded_side.models.iter().any(|m| *m != target.model) {
            notes.push(format!(
                "requests went to {} with its model {} (recorded: {})",
                target.name,
                target.model,
                recorded_side.models.join(", ")
            ));
        }
        for (label, s) in [("recorded", &recorded_side), ("now", &now_side)] {
            if !s.unpriced_models.is_empty() {
                notes.push(format!(
                    "{label}: no price for {} (responses counted at $0; costs are too low: add \
                     prices under [providers.billing.prices])",
                    s.unpriced_models.join(", ")
                ));
            }
            if s.cost_estimated {
                notes.push(format!(
                    "{label}: some costs are priced from estimated tokens (the relay sent no usage)"
                ));
            }
        }
        if now.interrupted || now.sent < now.to_send {
            notes.push(format!(
                "only {} of {} requests were re-sent: the figures are of those",
                count(now.sent),
                count(now.to_send)
            ));
        }
        let rate = |n: u64, d: u64| {
            if d > 0 {
                round(n as f64 / d as f64, 6)
            } else {
                0.0
            }
        };
        let rf = &r.totals.figures;
        let nf = &now.report.totals.figures;
        let change = Change {
            ttft_p50_ratio: ratio(now_side.ttft_p50_ms, recorded_side.ttft_p50_ms),
            ttft_p99_ratio: ratio(now_side.ttft_p99_ms, recorded_side.ttft_p99_ms),
            total_p50_ratio: ratio(now_side.total_p50_ms, recorded_side.total_p50_ms),
            total_p99_ratio: ratio(now_side.total_p99_ms, recorded_side.total_p99_ms),
            cost_per_1000_calls_ratio: ratio(
                now_side.cost_per_1000_calls_usd,
                recorded_side.cost_per_1000_calls_usd,
            ),
            monthly_cost_delta_usd: match (
                now_side.monthly_cost_usd,
                recorded_side.monthly_cost_usd,
            ) {
                (Some(n), Some(r)) => Some(round(n - r, 2)),
                _ => None,
            },
            error_rate_recorded: rate(rf.errors, rf.requests),
            error_rate_now: rate(nf.errors, nf.requests),
            drop_rate_recorded: rf.drop_rate,
            drop_rate_now: nf.drop_rate,
        };
        let (pacing_name, speed, idle_limit_s) = match pacing {
            Pacing::Recorded { speed, idle_limit } => {
                ("recorded", speed, idle_limit.map(|d| d.as_secs_f64()))
            }
            Pacing::AsFastAsAllowed => ("as_fast_as_allowed", 1.0, None),
        };
        Comparison {
            relaytop: relaytop_core::report::VERSION.to_owned(),
            recording: RecordingSummary {
                started_at: r.run.started_at.clone(),
                duration_s: round(recorded.duration_us as f64 / 1e6, 3),
                source: r.run.source.clone(),
                requests: rf.requests,
                requests_resent: recorded.requests.len() as u64,
                calls_per_hour: round(calls_per_hour, 3),
                calls_per_month: round(per_month, 1),
                concurrency: recorded.concurrency,
            },
            target: TargetSummary {
                provider: target.name.clone(),
                model: target.model.clone(),
                protocol: target.protocol.label().to_owned(),
                pacing: pacing_name.to_owned(),
                speed,
                idle_limit_s,
                connections: now.pool,
                duration_s: now.report.run.duration_s,
                interrupted: now.interrupted,
                recorded_to: now.recorded_to.as_ref().map(|p| p.display().to_string()),
            },
            recorded: recorded_side,
            recorded_by_provider,
            now: now_side,
            change,
            notes,
        }
    }

    /// Indented JSON.
    pub fn to_json_pretty(&self) -> String {
        // Strings, numbers, options and vecs of them: serializing cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// The side-by-side table for people: recorded (and each recorded provider, when there
    /// are several), now, and the change from recorded to now.
    pub fn to_text(&self, pacing: Pacing) -> String {
        let (r, n) = (&self.recorded, &self.now);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "relaytop replay --against {}: {} recorded requests ({}; {}, {} calls an hour), \
             re-sent {} over {} connections in {}",
            self.target.provider,
            count(self.recording.requests),
            r.providers.join(", "),
            human_duration((self.recording.duration_s * 1e6) as u64),
            count(self.recording.calls_per_hour.round() as u64),
            pacing.describe(),
            self.target.connections,
            human_duration((self.target.duration_s * 1e6) as u64),
        );
        let _ = writeln!(out);
        let ms = |x: Option<f64>| x.map_or("-".to_owned(), |v| format!("{v:.1} ms"));
        let pct = |x: Option<f64>| {
            x.map_or(String::new(), |v| {
                let d = (v - 1.0) * 100.0;
                format!("{}{d:.0} %", if d > 0.0 { "+" } else { "" })
            })
        };
        let money = |usd: Option<f64>, billed: Option<f64>, currency: &str, est: bool| {
            let tilde = if est { "~" } else { "" };
            match (usd, billed) {
                (Some(u), Some(b)) if currency != "USD" => {
                    format!("{tilde}${u:.4} ({b:.4} {currency})")
                }
                (Some(u), _) => format!("{tilde}${u:.4}"),
                (None, _) => "-".to_owned(),
            }
        };
        let monthly = |usd: Option<f64>, billed: Option<f64>, currency: &str| match (usd, billed) {
            (Some(u), Some(b)) if currency != "USD" => {
                format!("${} ({} {currency})", money2(u), money2(b))
            }
            (Some(u), _) => format!("${}", money2(u)),
            (None, _) => "-".to_owned(),
        };
        // The columns: recorded, each recorded provider when there are several, now.
        let mut sides: Vec<(String, &Side)> = vec![("recorded".to_owned(), r)];
        if self.recorded_by_provider.len() > 1 {
            for p in &self.recorded_by_provider {
                let name = p.providers.join(", ");
                sides.push((format!("recorded: {name}"), p));
            }
        }
        sides.push((format!("now ({})", self.target.provider), n));
        let c = &self.change;
        type Cell<'a> = Box<dyn Fn(&Side) -> String + 'a>;
        let lines: Vec<(String, Cell, String)> = vec![
            (
                "requests".into(),
                Box::new(|s: &Side| count(s.requests)),
                String::new(),
            ),
            (
                "completed".into(),
                Box::new(|s: &Side| count(s.completed)),
                String::new(),
            ),
            (
                "failed".into(),
                Box::new(|s: &Side| count(s.failed)),
                String::new(),
            ),
            (
                "errors".into(),
                Box::new(|s: &Side| count(s.errors)),
                format!(
                    "{:.1} % -> {:.1} % of requests",
                    c.error_rate_recorded * 100.0,
                    c.error_rate_now * 100.0
                ),
            ),
            (
                "drops".into(),
                Box::new(|s: &Side| count(s.drops)),
                format!(
                    "{:.1} % -> {:.1} % of connections",
                    c.drop_rate_recorded * 100.0,
                    c.drop_rate_now * 100.0
                ),
            ),
            (
                "TTFT p50".into(),
                Box::new(|s: &Side| ms(s.ttft_p50_ms)),
                pct(c.ttft_p50_ratio),
            ),
            (
                "TTFT p99".into(),
                Box::new(|s: &Side| ms(s.ttft_p99_ms)),
                pct(c.ttft_p99_ratio),
            ),
            (
                "total p50".into(),
                Box::new(|s: &Side| ms(s.total_p50_ms)),
                pct(c.total_p50_ratio),
            ),
            (
                "total p99".into(),
                Box::new(|s: &Side| ms(s.total_p99_ms)),
                pct(c.total_p99_ratio),
            ),
            (
                "tokens in / out".into(),
                Box::new(|s: &Side| format!("{} / {}", count(s.tokens_in), count(s.tokens_out))),
                String::new(),
            ),
            (
                "cost".into(),
                Box::new(|s: &Side| {
                    money(
                        Some(s.cost_usd),
                        s.cost_billed,
                        &s.billing_currency,
                        s.cost_estimated,
                    )
                }),
                String::new(),
            ),
            (
                "cost / 1,000 calls".into(),
                Box::new(|s: &Side| {
                    money(
                        s.cost_per_1000_calls_usd,
                        s.cost_per_1000_calls_billed,
                        &s.billing_currency,
                        s.cost_estimated,
                    )
                }),
                pct(c.cost_per_1000_calls_ratio),
            ),
            (
                format!(
                    "a month at {} calls",
                    count(self.recording.calls_per_month.round() as u64)
                ),
                Box::new(|s: &Side| {
                    monthly(
                        s.monthly_cost_usd,
                        s.monthly_cost_billed,
                        &s.billing_currency,
                    )
                }),
                c.monthly_cost_delta_usd.map_or(String::new(), |d| {
                    format!("{}${}", if d < 0.0 { "-" } else { "+" }, money2(d.abs()))
                }),
            ),
        ];
        let mut rows: Vec<Vec<String>> = Vec::with_capacity(lines.len() + 1);
        let mut head = vec![String::new()];
        head.extend(sides.iter().map(|(name, _)| name.clone()));
        head.push("change".into());
        rows.push(head);
        for (label, cell, change) in &lines {
            let mut row = vec![label.clone()];
            row.extend(sides.iter().map(|(_, s)| cell(s)));
            row.push(change.clone());
            rows.push(row);
        }
        let columns = sides.len() + 2;
        let mut widths = vec![0usize; columns];
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        for row in &rows {
            let mut line = String::new();
            for (i, (cell, w)) in row.iter().zip(&widths).enumerate() {
                if i == 0 {
                    let _ = write!(line, "{cell:<w$}");
                } else if i + 1 == columns {
                    let _ = write!(line, "  {cell}");
                } else {
                    let _ = write!(line, "  {cell:>w$}");
                }
            }
            let _ = writeln!(out, "{}", line.trim_end());
        }
        if self.recorded_by_provider.len() > 1 {
            let _ = writeln!(
                out,
                "\n(change: now against all the recorded traffic; a month: all of it at each \
                 column's cost per request)"
            );
        }
        if !self.notes.is_empty() {
            let _ = writeln!(out);
            for note in &self.notes {
                let _ = writeln!(out, "note: {note}");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    #[test]
    fn the_schedule_keeps_the_recorded_spacing_scaled_and_cut() {
        let at = [1_000_000, 1_500_000, 11_500_000, 12_000_000];
        assert_eq!(
            schedule(&at, 1.0, None),
            [
                s(0),
                Duration::from_millis(500),
                Duration::from_millis(10_500),
                s(11)
            ]
        );
        assert_eq!(
            schedule(&at, 2.0, Some(s(2))),
            [
                s(0),
                Duration::from_millis(250),
                Duration::from_millis(1250),
                Duration::from_millis(1500)
            ]
        );
    }

    #[test]
    fn recorded_pacing_waits_for_each_due_time() {
        let mut p = Pacer::recorded(vec![s(0), s(2), s(2)], 6000, s(60));
        assert_eq!(p.poll(s(0)), Pace::Send(0));
        assert_eq!(p.poll(s(1)), Pace::WaitUntil(s(2)));
        assert_eq!(p.poll(s(2)), Pace::Send(1));
        assert_eq!(p.poll(s(2)), Pace::Send(2));
        assert_eq!(p.poll(s(3)), Pace::Done);
    }

    #[test]
    fn as_fast_as_allowed_honours_the_rate_limit() {
        // 3 a minute: three at once, then each as its slot frees.
        let mut p = Pacer::as_fast_as_allowed(6, 3, s(60));
        assert_eq!(p.poll(s(0)), Pace::Send(0));
        assert_eq!(p.poll(s(0)), Pace::Send(1));
        assert_eq!(p.poll(s(1)), Pace::Send(2));
        assert_eq!(p.poll(s(1)), Pace::WaitUntil(s(60)));
        assert_eq!(p.poll(s(59)), Pace::WaitUntil(s(60)));
        assert_eq!(p.poll(s(60)), Pace::Send(3));
        assert_eq!(
            p.poll(s(60)),
            Pace::Send(4),
            "both sends of second 0 left the window"
        );
        assert_eq!(
            p.poll(s(60)),
            Pace::WaitUntil(s(61)),
            "the one of second 1 has not"
        );
        assert_eq!(p.poll(s(61)), Pace::Send(5));
        assert_eq!(p.poll(s(61)), Pace::Done);
        assert_eq!(p.sent(), 6);
    }

    #[test]
    fn a_429_holds_every_request_back() {
        let mut p = Pacer::as_fast_as_allowed(3, 6000, s(60));
        assert_eq!(p.poll(s(0)), Pace::Send(0));
        p.hold(s(4));
        assert_eq!(p.poll(s(1)), Pace::WaitUntil(s(4)));
        p.hold(s(2));
        assert_eq!(
            p.poll(s(3)),
            Pace::WaitUntil(s(4)),
            "a shorter wait does not cut it"
        );
        assert_eq!(p.poll(s(4)), Pace::Send(1));
        p.give_back();
        assert_eq!(p.poll(s(4)), Pace::Send(1), "a request not sent goes again");
    }

    #[test]
    fn realtime_bodies_are_rebuilt_from_items() {
        let mut b = BodyState::default();
        let item = |id: Option<&str>, text: &str| {
            serde_json::to_string(&ClientEvent::message(id.map(str::to_owned), "user", text))
                .unwrap()
        };
        let create = r#"{"type":"response.create","response":{"max_output_tokens":12}}"#;
        b.frame(Protocol::OpenaiRealtime, &item(None, "hi"));
        b.frame(Protocol::OpenaiRealtime, create);
        let (m, max) = b.last.take().unwrap();
        assert_eq!((m.len(), max), (1, Some(12)));
        b.frame(
            Protocol::OpenaiRealtime,
            &item(Some("relaytop_1_0"), "probe"),
        );
        b.frame(Protocol::OpenaiRealtime, create);
        let (m, _) = b.last.take().unwrap();
        assert_eq!(m[0].content, "probe", "a one-shot is alone");
        b.frame(Protocol::OpenaiRealtime, &item(None, "again"));
        b.frame(Protocol::OpenaiRealtime, create);
        let (m, _) = b.last.take().unwrap();
        let texts: Vec<&str> = m.iter().map(|m| m.content.as_str()).collect();
        assert_eq!(texts, ["hi", "again"], "a turn carries the conversation");
    }
}
