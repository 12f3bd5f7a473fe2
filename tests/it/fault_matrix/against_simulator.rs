//! Against the simulator: the idle cut-off.

use std::time::Duration;

use crate::support::{chat, fast_timing, sim, spec};
use relaytop_core::session::{EventKind, SessionState};
use relaytop_sim::SimProfile;

use super::case::{closed, connected, only_backoff_cause, quick, quiet, start};

#[tokio::test]
async fn idle_cut_off_drops_a_quiet_connection_and_spares_a_beating_one() {
    let server = sim(SimProfile {
        idle_cutoff_ms: Some(400),
        ..SimProfile::default()
    })
    .await;
    let mut c = start(spec(&server.url(), chat(), quiet(quick(50))));
    c.expect("the cut-off", closed).await;
    c.expect("a reconnect", |k| {
        matches!(k, EventKind::Connected { attempt: 2, .. })
    })
    .await;
    assert_eq!(
        c.count(|k| matches!(k, EventKind::Closed { code: 1006, requested: false, reason } if reason == "connection ended without a close frame")),
        1,
        "{}",
        c.story()
    );
    assert_eq!(
        only_backoff_cause(&c),
        "close 1006 (abnormal: no close frame): connection ended without a close frame"
    );
    assert_eq!(c.finish().await, SessionState::Closed);

    let mut beating = fast_timing();
    beating.heartbeat = Some(Duration::from_millis(100));
    let mut c = start(spec(&server.url(), chat(), beating));
    c.s.collect_for(Duration::from_millis(1200)).await;
    assert_eq!(
        c.count(closed),
        0,
        "heartbeats keep it open:\n{}",
        c.story()
    );
    assert!(c.count(|k| matches!(k, EventKind::Pong { .. })) >= 5);
    assert_eq!(c.count(connected), 1);
    assert_eq!(c.finish().await, SessionState::Closed);
    server.stop().await;
}
