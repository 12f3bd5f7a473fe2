//! A monitor keeps watching (issue #18): a relay that accepts and drops every connection
//! past the retries, a 429 six times in a row, a key refused and fixed later. The session
//! never stops; it says "down since …, next look in …" (or "refused since …, next check
//! in …") and resumes once the relay is healthy.

use std::time::Duration;

use crate::support::rogue::{self, Act, Rogue};
use crate::support::{TEST_KEY, chat, sim, spec};
use relaytop_core::session::{EventKind, SessionEvent, SessionState, Timing, Watch};
use relaytop_sim::SimProfile;

use super::case::{Case, connected, healthy, quick, quiet, start};

const WATCH: Duration = Duration::from_millis(150);

/// Quick retries (3 of them), then a look every 150 ms; a refused key checked every 300 ms.
fn watching() -> Timing {
    let mut t = quiet(quick(20));
    t.backoff.max_attempts = 3;
    t.watch = Some(WATCH);
    t.recheck = Some(Duration::from_millis(300));
    t
}

/// The watch of a `BackingOff` state, with the words the dashboard shows for it (its start
/// written as `T`).
fn watch_of(e: &SessionEvent) -> Option<(Watch, String)> {
    match &e.kind {
        EventKind::State(SessionState::BackingOff {
            until_us,
            watch: Some(w),
            ..
        }) => Some((w.clone(), w.describe("T", until_us - e.at_us))),
        _ => None,
    }
}

fn watches(c: &Case) -> Vec<(Watch, String)> {
    c.s.seen.iter().filter_map(watch_of).collect()
}

fn stopped(c: &Case) -> usize {
    c.count(|k| matches!(k, EventKind::State(SessionState::Stopped { .. })))
}

#[tokio::test]
async fn a_relay_that_drops_every_connection_is_watched_until_it_heals() {
    let drop_at_once = vec![
        Act::Upgrade,
        Act::Sleep(Duration::from_millis(10)),
        Act::Fin,
    ];
    let mut scripts = vec![drop_at_once; 6];
    scripts.push(healthy());
    let relay = Rogue::start(scripts).await;
    let mut c = start(spec(&relay.url(), chat(), watching()));
    let down = c
        .expect("the watch", |k| {
            matches!(
                k,
                EventKind::State(SessionState::BackingOff { watch: Some(_), .. })
            )
        })
        .await;
    let (watch, words) = watch_of(&down).expect("a watch");
    assert_eq!(watch.refused, None);
    assert_eq!(words, "down since T, next look in 0.1 s");
    c.expect("the reconnect once healed", |k| {
        matches!(k, EventKind::Connected { attempt: 7, .. })
    })
    .await;
    // Retries 1 to 3 on the backoff; looks 4 to 6 at the watch interval, all "down" since
    // the first drop.
    assert_eq!(
        c.count(|k| matches!(k, EventKind::BackingOff { attempt, max_attempts: 3, delay_ms: 150, .. } if *attempt > 3)),
        3,
        "{}",
        c.story()
    );
    let seen = watches(&c);
    assert_eq!(seen.len(), 3, "{}", c.story());
    assert!(seen.iter().all(|(w, _)| w.since_us == watch.since_us));
    assert_eq!(stopped(&c), 0);
    assert_eq!(c.finish().await, SessionState::Closed);
    assert_eq!(relay.connections(), 7);
}

#[tokio::test]
async fn six_429s_in_a_row_are_watched_and_the_session_resumes() {
    let limited = vec![Act::Respond(rogue::http_error(
        429,
        "Too Many Requests",
        &[("Retry-After", "0".into())],
        "too many connections",
    ))];
    let mut scripts = vec![limited; 6];
    scripts.push(healthy());
    let relay = Rogue::start(scripts).await;
    let mut c = start(spec(&relay.url(), chat(), watching()));
    let down = c
        .expect("the watch", |k| {
            matches!(
                k,
                EventKind::State(SessionState::BackingOff { watch: Some(_), .. })
            )
        })
        .await;
    let (_, words) = watch_of(&down).expect("a watch");
    assert_eq!(words, "down since T, next look in 0.1 s");
    c.expect("the connection once the 429s end", connected)
        .await;
    assert_eq!(
        c.count(|k| matches!(k, EventKind::RateLimited { wait_ms: 150, cause } if cause == "rate limited: the relay answered 429 again after 5 retries (upgrade answered 429: too many connections)")),
        1,
        "{}",
        c.story()
    );
    assert_eq!(stopped(&c), 0);
    assert_eq!(c.finish().await, SessionState::Closed);
    assert_eq!(relay.connections(), 7);
}

#[tokio::test]
async fn a_refused_key_is_checked_again_and_a_fixed_key_resumes() {
    let refusing = SimProfile {
        accepted_keys: Some(vec!["hs_live_SOMEONEELSESKEY0001".into()]),
        ..SimProfile::default()
    };
    let server = sim(refusing.clone()).await;
    let mut c = start(spec(&server.url(), chat(), watching()));
    let refused = c
        .expect("the re-check", |k| {
            matches!(
                k,
                EventKind::State(SessionState::BackingOff { watch: Some(_), .. })
            )
        })
        .await;
    let (watch, words) = watch_of(&refused).expect("a watch");
    let reason = watch.refused.clone().expect("refused");
    assert_eq!(
        words,
        format!("refused since T, next check in 0.3 s: {reason}")
    );
    assert!(reason.contains("401"), "{reason}");
    // The key is fixed (the relay accepts it now): the next check connects.
    server.set_profile(SimProfile {
        accepted_keys: Some(vec![TEST_KEY.into()]),
        ..refusing
    });
    c.expect("the connection after the re-check", connected)
        .await;
    assert!(
        c.count(|k| matches!(
            k,
            EventKind::BackingOff {
                attempt: 0,
                max_attempts: 0,
                delay_ms: 300,
                ..
            }
        )) >= 1,
        "{}",
        c.story()
    );
    assert_eq!(stopped(&c), 0);
    assert_eq!(c.finish().await, SessionState::Closed);
    server.stop().await;
}
