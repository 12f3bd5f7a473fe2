//! The SSE format fixture harness, one for every HTTP streaming format (`StreamDecoder<F>`):
//! a fixture of tests/fixtures/<format>/ fed whole, in 1-byte and in 7-byte pieces (10 ms a
//! piece), what came of it (the weighty inbounds, the events, what the tap saw), the events
//! with their times set aside, the replay of what the tap saw, and the small readers of
//! events (`text_of`, `done_of`, `count`) the format modules share.

use std::marker::PhantomData;
use std::time::Duration;

use relaytop_core::protocol::stream_decoder::{SseFormat, SseInbound, StreamDecoder};
use relaytop_core::session::tap::Wire;
use relaytop_core::session::{EventKind, Tokens};

/// A file of tests/fixtures/ (`path` below it).
pub fn fixture(path: &str) -> Vec<u8> {
    let full = format!("{}/tests/fixtures/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
}

/// What the tap was shown, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Tapped {
    /// An event: its `event:` name, if any, and its data.
    Event(Option<String>, String),
    /// An event the framing refused, and why.
    Refused(String),
    /// The body's end.
    BodyEnd,
}

/// One fixture fed to the decoder.
pub struct Run {
    /// The outcomes that are not `Nothing` or `Text`.
    pub inbounds: Vec<SseInbound>,
    pub events: Vec<EventKind>,
    /// What the tap saw of each event: its name and data.
    pub tapped: Vec<(Option<String>, String)>,
    /// What the tap saw of each event: its data.
    pub data: Vec<String>,
    /// Everything the tap saw, in order (refusals and the end too).
    pub wire: Vec<Tapped>,
    /// The body's end at this time (µs).
    pub end_us: u64,
}

/// The fixtures of one format: tests/fixtures/`dir`/, requested for `model`.
pub struct Fixtures<F> {
    pub dir: &'static str,
    pub model: &'static str,
    format: PhantomData<F>,
}

impl<F: SseFormat> Fixtures<F> {
    pub const fn new(dir: &'static str, model: &'static str) -> Self {
        Self {
            dir,
            model,
            format: PhantomData,
        }
    }

    /// A fixture of this format.
    pub fn fixture(&self, name: &str) -> Vec<u8> {
        fixture(&format!("{}/{name}", self.dir))
    }

    /// A decoder with a request under way (sent at 0, a prompt estimate of 9).
    pub fn decoder(&self) -> StreamDecoder<F> {
        let mut d = StreamDecoder::<F>::new();
        d.request_sent(Duration::ZERO, self.model, 9);
        d
    }

    /// Feeds a whole fixture in pieces of `piece` bytes, the n-th piece at 10·(n+1) ms, then
    /// its end 10 ms after the last.
    pub fn run(&self, name: &str, piece: usize) -> Run {
        let body = self.fixture(name);
        let mut d = self.decoder();
        let mut inbounds = Vec::new();
        let mut events = Vec::new();
        let mut wire = Vec::new();
        let mut tap = |w: Wire<'_>| match w {
            Wire::Text(t) => wire.push(Tapped::Event(None, t.to_owned())),
            Wire::SseEvent { event, data } => {
                wire.push(Tapped::Event(Some(event.to_owned()), data.to_owned()))
            }
            Wire::SseRefused { reason } => wire.push(Tapped::Refused(reason.to_owned())),
            Wire::BodyEnd => wire.push(Tapped::BodyEnd),
            _ => {}
        };
        let pieces = body.chunks(piece).count() as u64;
        for (n, bytes) in body.chunks(piece).enumerate() {
            let at = Duration::from_millis(10 * (n as u64 + 1));
            inbounds.push(d.on_bytes(at, bytes, &mut |e| events.push(e), &mut tap));
        }
        let end = Duration::from_millis(10 * (pieces + 1));
        inbounds.push(d.on_end(end, &mut |e| events.push(e), &mut tap));
        inbounds.retain(|i| *i != SseInbound::Nothing && *i != SseInbound::Text);
        let tapped: Vec<(Option<String>, String)> = wire
            .iter()
            .filter_map(|w| match w {
                Tapped::Event(name, data) => Some((name.clone(), data.clone())),
                _ => None,
            })
            .collect();
        Run {
            inbounds,
            events,
            data: tapped.iter().map(|(_, data)| data.clone()).collect(),
            tapped,
            wire,
            end_us: end.as_micros() as u64,
        }
    }

    /// Feeds `body` cut at `cuts` (positions modulo its length + 1, any order) at 1 ms, then its
    /// end at 2 ms: the weighty inbounds and the events without their times. Whatever the
    /// bytes: no panic, and at most one end of the response.
    pub fn feed_cut(&self, body: &[u8], cuts: &[usize]) -> (Vec<SseInbound>, Vec<EventKind>) {
        let mut at: Vec<usize> = cuts.iter().map(|c| c % (body.len() + 1)).collect();
        at.push(0);
        at.push(body.len());
        at.sort_unstable();
        at.dedup();
        let mut d = self.decoder();
        let mut events = Vec::new();
        let mut inbounds = Vec::new();
        for pair in at.windows(2) {
            inbounds.push(d.on_bytes(
                Duration::from_millis(1),
                &body[pair[0]..pair[1]],
                &mut |e| events.push(e),
                &mut |_| {},
            ));
        }
        inbounds.push(d.on_end(
            Duration::from_millis(2),
            &mut |e| events.push(e),
            &mut |_| {},
        ));
        inbounds.retain(|i| *i != SseInbound::Nothing && *i != SseInbound::Text);
        let ends = count(&events, |e| {
            matches!(e, EventKind::Done(_) | EventKind::RequestFailed { .. })
        });
        assert!(ends <= 1, "{ends} ends: {events:?}");
        assert!(inbounds.len() <= 1, "{inbounds:?}");
        (inbounds, timeless(&events))
    }

    /// What the tap saw, handed back to a fresh decoder as a replay does: its events.
    pub fn replay(&self, wire: &[Tapped]) -> Vec<EventKind> {
        let mut d = self.decoder();
        let mut events = Vec::new();
        for w in wire {
            match w {
                Tapped::Event(name, data) => {
                    d.on_event(Duration::ZERO, name.as_deref(), data, &mut |e| {
                        events.push(e)
                    });
                }
                Tapped::Refused(reason) => d.on_refused(reason, &mut |e| events.push(e)),
                Tapped::BodyEnd => {
                    d.on_body_end(Duration::ZERO, &mut |e| events.push(e));
                }
            }
        }
        events
    }

    /// Runs a fixture whole, in 1-byte and in 7-byte pieces, `check`ing each run (and its piece
    /// size): each gives the same inbounds, the same events (times aside) and shows the tap the
    /// same things; and what the tap saw replays through a fresh decoder to the same events.
    pub fn every_split(&self, name: &str, check: impl Fn(&Run, usize)) {
        let whole = self.run(name, 1 << 20);
        check(&whole, 1 << 20);
        let shape = timeless(&whole.events);
        for piece in [1, 7] {
            let split = self.run(name, piece);
            check(&split, piece);
            assert_eq!(
                timeless(&split.events),
                shape,
                "{name} in {piece}-byte pieces"
            );
            assert_eq!(
                split.inbounds, whole.inbounds,
                "{name} in {piece}-byte pieces"
            );
            assert_eq!(split.wire, whole.wire, "{name} in {piece}-byte pieces");
        }
        assert_eq!(
            timeless(&self.replay(&whole.wire)),
            shape,
            "{name}: the replay of what the tap saw"
        );
    }
}

/// Events with their times zeroed (they depend on where the pieces end); whether a time was
/// there stays.
pub fn timeless(events: &[EventKind]) -> Vec<EventKind> {
    events
        .iter()
        .cloned()
        .map(|mut e| {
            match &mut e {
                EventKind::FirstToken { ttft_us, .. } => *ttft_us = 0,
                EventKind::Done(done) => {
                    done.ttft_us = done.ttft_us.map(|_| 0);
                    done.answer_us = done.answer_us.map(|_| 0);
                    done.total_us = 0;
                }
                _ => {}
            }
            e
        })
        .collect()
}

/// The answer's text: every chunk's.
pub fn text_of(events: &[EventKind]) -> String {
    events
        .iter()
        .filter_map(|e| match e {
            EventKind::Chunk { text, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect()
}

/// How many events are `what`.
pub fn count(events: &[EventKind], what: impl Fn(&EventKind) -> bool) -> usize {
    events.iter().filter(|e| what(e)).count()
}

/// The one `Done`'s fields.
#[derive(Clone, Debug, PartialEq)]
pub struct DoneOf {
    pub ttft_us: Option<u64>,
    pub answer_us: Option<u64>,
    pub tokens: Tokens,
    pub cost: Option<f64>,
    pub finish: Option<String>,
}

/// The `Done` (there is exactly one).
pub fn done_of(events: &[EventKind]) -> DoneOf {
    let dones: Vec<DoneOf> = events
        .iter()
        .filter_map(|e| match e {
            EventKind::Done(done) => Some(DoneOf {
                ttft_us: done.ttft_us,
                answer_us: done.answer_us,
                tokens: done.tokens,
                cost: done.reported_cost_usd,
                finish: done.finish_reason.clone(),
            }),
            _ => None,
        })
        .collect();
    assert_eq!(dones.len(), 1, "one done in {events:?}");
    dones.into_iter().next().unwrap()
}
