//! Hosting chat panes: `relaytop chat` (one pane on the whole screen, its own loop), the
//! chat panes the dashboard opens with `c` (`ChatHost`), and what both do with a pane's
//! effects (`perform`: commands to the session, `/save`, `/transcribe`).

use std::time::Duration;

use crossterm::event::{KeyEvent, MouseEvent};
use ratatui::Frame;
use ratatui::layout::Rect;
use tokio::time::Instant;

use super::{ChatEffect, ChatPane};
use crate::terminal_loop::{self, Flow, Screen, wheel_lines};
use crate::theme::Theme;
use crate::{Settings, UiOptions, render};
use relaytop_core::config::secret::{REDACTED, Secret};
use relaytop_core::run::{Ending, Recording, Run, RunSetup};
use relaytop_core::session::{
    self, EventReceiver, RunClock, SessionCommand, SessionEvent, SessionHandle, Workload,
};
use relaytop_core::supervisor::Supervisor;
use relaytop_core::world::World;

/// `relaytop chat`'s options.
#[derive(Clone, Debug, Default)]
pub struct ChatOptions {
    /// `--provider`: the provider to chat with (default: the first).
    pub provider: Option<String>,
    /// `--model`: instead of the provider's.
    pub model: Option<String>,
    /// `--system`: the system prompt.
    pub system: Option<String>,
    pub ui: UiOptions,
}

/// What happens after an effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum After {
    Stay,
    Leave,
    Quit,
}

/// Carries out a pane's effect: `send` gives a command to the pane's session (false when it
/// cannot take it). File reads and writes happen here, never in the pane. A `/save`d file
/// never holds one of `secrets` (a key pasted into a message is written `[REDACTED]`).
pub fn perform(
    pane: &mut ChatPane,
    effect: ChatEffect,
    send: &mut dyn FnMut(SessionCommand) -> bool,
    secrets: &[Secret],
) -> After {
    match effect {
        ChatEffect::Send(commands) => {
            for command in commands {
                if !send(command) {
                    pane.note_error(
                        "the session did not take this: it has ended or is too busy (open a new chat)",
                    );
                    break;
                }
            }
            After::Stay
        }
        ChatEffect::Save { path, mut markdown } => {
            for secret in secrets {
                let raw = secret.expose();
                if !raw.is_empty() && markdown.contains(raw) {
                    markdown = markdown.replace(raw, REDACTED);
                }
            }
            let result = std::fs::write(&path, markdown).map_err(|e| e.to_string());
            pane.saved(&path, result);
            After::Stay
        }
        ChatEffect::Transcribe { path } => {
            match relaytop_core::transcribe::read_wav(std::path::Path::new(&path)) {
                Ok(wav) => {
                    let described = wav.describe();
                    let command = SessionCommand::Transcribe {
                        audio: wav.bytes,
                        model: relaytop_core::transcribe::DEFAULT_MODEL.into(),
                    };
                    pane.transcription_queued(&path, described);
                    if !send(command) {
                        pane.note_error("the session did not take the audio: it has ended");
                    }
                }
                Err(e) => pane.note_error(e.to_string()),
            }
            After::Stay
        }
        ChatEffect::Leave => After::Leave,
        ChatEffect::Quit => After::Quit,
    }
}

/// A chat session for the provider `provider` (or the first), with `model` and `system`.
fn chat_spec(
    world: &World,
    provider: Option<&str>,
    model: Option<String>,
    system: Option<String>,
    name: String,
) -> anyhow::Result<(session::SessionSpec, relaytop_core::cost::ProviderPricing)> {
    let provider = relaytop_core::ondemand::find_provider(&world.config, provider, None)?;
    let spec = relaytop_core::ondemand::provider_session(
        &world.config,
        provider,
        name,
        model,
        Workload::Chat { system },
    );
    let pricing = world
        .config
        .pricing()
        .remove(&provider.name)
        .unwrap_or_default();
    Ok((spec, pricing))
}

/// A reply the default world's simulated relays stream in `relaytop chat`, a token a chunk:
/// long enough (at `DEMO_TOKENS_PER_SECOND`) to watch it stream and to stop it with Esc, and
/// Markdown, to see it laid out.
const DEMO_REPLY: &str = "## A simulated reply\n\nThis relay is **simulated** on 127.0.0.1, so \
    the words are always these; the *timing* is the relay's own: its time to first token, \
    its pace, its drops.\n\nWhat a real relay would tell you here:\n\n- how long the first \
    token takes\n- how fast the rest streams\n- what the reply costs\n\n```sh\nrelaytop chat \
    --config relays.toml --provider NAME\n```\n\nPress Esc to stop a reply, r to retry one \
    that was cut.";
const DEMO_TOKENS_PER_SECOND: f64 = 25.0;

/// In the default world (simulated relays, no configuration), chat replies are the demo
/// reply at a visible pace; the relays' latency and drops stay theirs. The probe sessions of
/// that world do not run under `relaytop chat`, so nothing else sees this.
fn demo_replies(world: &World) {
    if world.config.source != "default world" {
        return;
    }
    let words: Vec<String> = DEMO_REPLY.split_inclusive(' ').map(str::to_owned).collect();
    for (_, server) in &world.simulators {
        let profile = relaytop_core::config::sim_profile::SimProfile {
            tokens_per_response: u32::try_from(words.len()).unwrap_or(u32::MAX),
            tokens_per_second: DEMO_TOKENS_PER_SECOND,
            chunk_words: words.clone(),
            ..(*server.profile()).clone()
        };
        server.set_profile(profile);
    }
}

/// `relaytop chat`: one chat pane on the whole screen until it is left (Esc with no reply
/// under way), Ctrl-C, or a signal. The run (`Run`: its one session, no canary) is recorded
/// when the world says so.
pub async fn run(world: World, options: ChatOptions) -> anyhow::Result<()> {
    let settings = Settings::resolve(&options.ui, &world.config.ui, &world.config.source)?;
    demo_replies(&world);
    let theme = settings
        .themes
        .get(settings.theme)
        .cloned()
        .unwrap_or_else(Theme::dark);
    let (spec, pricing) = chat_spec(
        &world,
        options.provider.as_deref(),
        options.model.clone(),
        options.system.clone(),
        "chat".into(),
    )?;
    let setup = RunSetup {
        configured: false,
        extra: vec![spec],
        canary: false,
        recording: Recording::World,
    };
    let (run, mut events) = Run::start(&world, setup)?;
    let info = run
        .supervisor()
        .infos()
        .first()
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("the chat session did not start"))?;
    let pane = ChatPane::new(info.id, &info, options.system.clone(), pricing);
    let mut screen = ChatScreen {
        pane,
        events: &mut events,
        batch: Vec::with_capacity(1024),
        supervisor: run.supervisor(),
        secrets: world.config.secrets(),
        theme: &theme,
    };
    let result = terminal_loop::run(&mut screen, settings.mouse, settings.fps).await;
    let reason = match &result {
        Ok(ended) => ended.reason("left the chat"),
        Err(e) => format!("the chat failed: {e}"),
    };
    let ending = Ending {
        reason,
        duration: run.clock().now(),
    };
    run.finish(events, ending, |_| {}).await?;
    if let Some(dir) = world.recording_dir() {
        eprintln!("relaytop: recorded to {}", dir.display());
    }
    world.stop().await;
    result.map(|_| ())
}

/// `relaytop chat`'s pane on the terminal loop, with its session's events.
struct ChatScreen<'a> {
    pane: ChatPane,
    events: &'a mut EventReceiver,
    batch: Vec<SessionEvent>,
    supervisor: &'a Supervisor,
    /// The configuration's keys, kept out of `/save`d files.
    secrets: Vec<Secret>,
    theme: &'a Theme,
}

impl Screen for ChatScreen<'_> {
    fn prepare(&mut self, _now: Instant) -> bool {
        false
    }

    fn wake(&mut self, now: Instant, _next_frame: Instant) -> Instant {
        now + Duration::from_secs(1)
    }

    fn draw(&mut self, frame: &mut Frame) {
        let area = frame.area();
        render::chat::prepare(&mut self.pane, area, self.theme);
        render::chat::render(frame, area, &self.pane, self.theme);
    }

    fn key(&mut self, key: KeyEvent) -> Flow {
        let Some(effect) = self.pane.handle_key(key) else {
            return Flow::Stay;
        };
        let id = self.pane.session;
        let supervisor = self.supervisor;
        match perform(
            &mut self.pane,
            effect,
            &mut |c| supervisor.command(id, c),
            &self.secrets,
        ) {
            After::Stay => Flow::Stay,
            After::Leave | After::Quit => Flow::Quit,
        }
    }

    fn mouse(&mut self, mouse: MouseEvent, _area: Rect) -> Flow {
        match wheel_lines(&mouse) {
            Some(lines) => {
                self.pane.scroll_by(lines);
                Flow::Stay
            }
            None => Flow::Ignored,
        }
    }

    fn paste(&mut self, text: &str) {
        self.pane.handle_paste(text);
    }

    async fn receive(&mut self) -> bool {
        let received = self.events.recv_many(&mut self.batch, 1024).await;
        for event in self.batch.drain(..) {
            self.pane.apply(&event);
        }
        received > 0
    }
}

/// Session ids of the dashboard's chat panes start here, above any configured session's.
pub const CHAT_SESSION_BASE: u32 = 1 << 30;
/// Most chat panes open at once in the dashboard.
pub const MAX_CHATS: usize = 16;

/// The dashboard's chat panes, each with its own session (started on the run's event
/// stream, with ids from `CHAT_SESSION_BASE`), and the one shown, if any.
pub struct ChatHost {
    chats: Vec<(ChatPane, SessionHandle)>,
    shown: Option<usize>,
    /// The configuration's keys, kept out of `/save`d files.
    secrets: Vec<Secret>,
}

impl ChatHost {
    pub fn new() -> ChatHost {
        ChatHost {
            chats: Vec::new(),
            shown: None,
            secrets: Vec::new(),
        }
    }

    /// Whether `event` belongs to a chat pane's session.
    pub fn owns(event: &SessionEvent) -> bool {
        event.session >= CHAT_SESSION_BASE
    }

    /// The pane shown.
    pub fn shown(&mut self) -> Option<&mut ChatPane> {
        let i = self.shown?;
        self.chats.get_mut(i).map(|(pane, _)| pane)
    }

    /// Opens a new chat pane speaking as `like` does (its provider, protocol, URL and
    /// model), or on the first provider; the message says why not.
    pub fn open(
        &mut self,
        world: &World,
        like: Option<&session::SessionInfo>,
        clock: RunClock,
        events: relaytop_core::session::EventSender,
    ) -> Result<(), String> {
        if self.chats.len() >= MAX_CHATS {
            return Err(format!(
                "{MAX_CHATS} chat panes are open already: C shows them"
            ));
        }
        if self.secrets.is_empty() {
            self.secrets = world.config.secrets();
        }
        let n = self.chats.len() as u32;
        let provider = like.map(|info| info.provider.as_str());
        let (mut spec, pricing) = chat_spec(world, provider, None, None, format!("chat-{}", n + 1))
            .map_err(|e| e.to_string())?;
        if let Some(like) = like {
            spec.info.protocol = like.protocol;
            spec.info.url = like.url.clone();
            spec.info.model = like.model.clone();
        }
        spec.info.id = CHAT_SESSION_BASE + n;
        let info = spec.info.clone();
        let handle = session::spawn(spec, clock, events);
        let pane = ChatPane::new(info.id, &info, None, pricing);
        self.chats.push((pane, handle));
        self.shown = Some(self.chats.len() - 1);
        Ok(())
    }

    /// Shows the next open pane (after the one shown last). False when none is open.
    pub fn show_next(&mut self) -> bool {
        if self.chats.is_empty() {
            return false;
        }
        self.shown = Some(self.shown.map_or(0, |i| (i + 1) % self.chats.len()));
        true
    }

    /// An event of a chat session.
    pub fn apply(&mut self, event: &SessionEvent) {
        let index = (event.session - CHAT_SESSION_BASE) as usize;
        if let Some((pane, _)) = self.chats.get_mut(index) {
            pane.apply(event);
        }
    }

    /// Gives a pane's effect to its session; hides the pane when it is left.
    pub fn perform(&mut self, effect: ChatEffect) -> After {
        let Some(i) = self.shown else {
            return After::Stay;
        };
        let Some((pane, handle)) = self.chats.get_mut(i) else {
            return After::Stay;
        };
        let commands = handle.commands.clone();
        let after = perform(
            pane,
            effect,
            &mut |c| commands.try_send(c).is_ok(),
            &self.secrets,
        );
        if after == After::Leave {
            self.shown = None;
            return After::Stay;
        }
        after
    }

    /// Closes every chat session, waiting up to `grace`.
    pub async fn shutdown(self, grace: Duration) {
        let deadline = Instant::now() + grace;
        for (_, handle) in self.chats {
            let _ = handle.commands.try_send(SessionCommand::Close);
            let abort = handle.task.abort_handle();
            if tokio::time::timeout_at(deadline, handle.task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

impl Default for ChatHost {
    fn default() -> Self {
        Self::new()
    }
}
