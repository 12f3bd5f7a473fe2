//! The other transports (openai-sse, openai-realtime) through the proxy.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::support::proxy::Proxy;
use crate::support::{fast_timing, probe, sim, spec};
use relaytop_core::session::{EventKind, SessionState};

use super::case::{backing_off, closed, done, error, quick, start, steady};
use super::names::test_resolver;

#[tokio::test]
async fn rst_mid_stream_on_openai_sse_and_realtime_is_a_drop_then_a_reconnect() {
    use relaytop_core::session::Protocol;
    for protocol in [Protocol::OpenaiSse, Protocol::OpenaiRealtime] {
        let server = sim(steady(20.0, 40, 20.0)).await;
        let proxy = Proxy::start(server.addr()).await;
        let (url, model) = match protocol {
            Protocol::OpenaiSse => (format!("http://{}/v1", proxy.addr()), "gpt-4o-mini"),
            _ => (proxy.ws_url("/v1/realtime"), "gpt-realtime"),
        };
        let mut s = spec(&url, probe(100), quick(1500));
        s.info.protocol = protocol;
        s.info.model = model.into();
        let mut c = start(s);
        c.expect("a first token", |k| {
            matches!(k, EventKind::FirstToken { .. })
        })
        .await;
        proxy.set(|t| t.reset_peer = true);
        c.expect("a drop", closed).await;
        proxy.clear();
        c.expect("a reconnect", |k| {
            matches!(k, EventKind::Connected { attempt: 2, .. })
        })
        .await;
        assert_eq!(
            c.count(|k| matches!(
                k,
                EventKind::Closed {
                    code: 1006,
                    requested: false,
                    ..
                }
            )),
            1,
            "{protocol:?}:\n{}",
            c.story()
        );
        assert_eq!(
            c.count(|k| matches!(k, EventKind::RequestFailed { request: 1, .. })),
            1,
            "{protocol:?}:\n{}",
            c.story()
        );
        assert_eq!(c.count(backing_off), 1, "{protocol:?}:\n{}", c.story());
        assert_eq!(c.finish().await, SessionState::Closed, "{protocol:?}");
        server.stop().await;
    }
}

#[tokio::test]
async fn openai_sse_resolves_names_through_the_injected_resolver() {
    let server = sim(steady(10.0, 3, 1000.0)).await;
    let lookups = Arc::new(AtomicU64::new(0));
    let url = format!("http://relay.test:{}/v1", server.addr().port());
    let mut s = spec(&url, probe(100), fast_timing());
    s.info.protocol = relaytop_core::session::Protocol::OpenaiSse;
    s.info.model = "gpt-4o-mini".into();
    s.resolver = Some(test_resolver(server.addr(), lookups.clone()));
    let mut c = start(s);
    c.expect("a response", done).await;
    assert!(lookups.load(Ordering::Relaxed) >= 1);
    assert_eq!(c.count(error), 0, "{}", c.story());
    assert_eq!(c.finish().await, SessionState::Closed);
    server.stop().await;
}
