//! The serving figures against a server whose timing is known: a hand-made chat completions
//! relay on 127.0.0.1 streams with a fixed time to first token, a fixed gap between tokens
//! and one stall, notes the instant it writes each chunk, then cuts a stream the new-api way
//! (usage and `[DONE]`, no finish reason) and inflates a usage. relaytop's output speed,
//! inter-token latency and longest stall must be the server's within 1 ms or 1 %, the cut
//! and the inflation caught.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt as _;

use crate::support::{fast_timing, probe, spec, watch};
use relaytop_core::metrics::{LatencyMetric, Metrics, Window};
use relaytop_core::session::{EventKind, Protocol, SessionCommand};

const TTFT: Duration = Duration::from_millis(150);
const GAP: Duration = Duration::from_millis(30);
const STALL: Duration = Duration::from_millis(700);
const CHUNKS: usize = 30;
const STALL_BEFORE: usize = 15;

/// What the server wrote and when (each chunk's write, per request).
type Writes = Arc<Mutex<Vec<Vec<Instant>>>>;

fn chunk(text: &str) -> String {
    format!(
        "data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{text}\"}},\"finish_reason\":null}}]}}\n\n"
    )
}

fn end(finish: Option<&str>, completion_tokens: usize) -> String {
    let finish = match finish {
        Some(f) => format!(
            "data: {{\"choices\":[{{\"index\":0,\"delta\":{{}},\"finish_reason\":\"{f}\"}}]}}\n\n"
        ),
        None => String::new(),
    };
    format!(
        "{finish}data: {{\"choices\":[],\"usage\":{{\"prompt_tokens\":5,\"completion_tokens\":{completion_tokens},\"total_tokens\":{}}}}}\n\ndata: [DONE]\n\n",
        completion_tokens + 5
    )
}

/// A chat completions relay: request 1 is timed (TTFT, gaps, one stall), request 2 is cut
/// (no finish reason), request 3 and later report twice the tokens they sent.
async fn timed_relay(writes: Writes) -> String {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .expect("binds");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let mut posts = 0usize;
        while let Ok((mut stream, _)) = listener.accept().await {
            let Some(head) = crate::support::rogue::read_one_request(&mut stream).await else {
                continue;
            };
            if head.starts_with("get") {
                let body = r#"{"data":[{"id":"gpt-4o-mini"}]}"#;
                let _ = stream
                    .write_all(
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        )
                        .as_bytes(),
                    )
                    .await;
                continue;
            }
            posts += 1;
            let request = posts;
            let writes = writes.clone();
            tokio::spawn(async move {
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n",
                    )
                    .await;
                let start = Instant::now();
                let mut times = Vec::new();
                let chunks = if request == 1 { CHUNKS } else { 10 };
                let mut due = start + TTFT;
                for i in 0..chunks {
                    if request == 1 && i == STALL_BEFORE {
                        due += STALL;
                    }
                    tokio::time::sleep_until(due.into()).await;
                    // One common English word: one token in o200k_base.
                    if stream.write_all(chunk(" hello").as_bytes()).await.is_err() {
                        return;
                    }
                    let _ = stream.flush().await;
                    times.push(Instant::now());
                    due += GAP;
                }
                tokio::time::sleep_until(due.into()).await;
                let tail = match request {
                    1 => end(Some("stop"), chunks),
                    2 => end(None, chunks),
                    _ => end(Some("stop"), 2 * chunks),
                };
                let _ = stream.write_all(tail.as_bytes()).await;
                let _ = stream.shutdown().await;
                writes.lock().unwrap().push(times);
            });
        }
    });
    format!("http://{addr}/v1")
}

fn within(got_us: u64, want_us: u64, what: &str) {
    let tolerance = (want_us / 100).max(1_000);
    assert!(
        got_us.abs_diff(want_us) <= tolerance,
        "{what}: relaytop {got_us} µs, the server {want_us} µs"
    );
}

#[tokio::test]
async fn output_speed_gaps_stalls_cuts_and_inflated_usage_as_the_server_timed_them() {
    let writes: Writes = Arc::default();
    let url = timed_relay(writes.clone()).await;
    let mut session = spec(&url, probe(50), fast_timing());
    session.info.protocol = Protocol::OpenaiSse;
    session.info.model = "gpt-4o-mini".into();
    let info = session.info.clone();
    let mut w = watch(session);
    let mut done = 0;
    while done < 7 {
        let event = w
            .wait_for(Duration::from_secs(20), |k| {
                matches!(k, EventKind::Done(_) | EventKind::RequestFailed { .. })
            })
            .await
            .unwrap_or_else(|| panic!("seven responses\n{}", w.story()));
        assert!(matches!(event.kind, EventKind::Done(_)), "{}", w.story());
        done += 1;
    }
    let _ = w.handle.commands.send(SessionCommand::Close).await;

    let mut metrics = Metrics::new(vec![info], Default::default());
    let first_request: Vec<_> = w
        .seen
        .iter()
        .take_while(|e| !matches!(e.kind, EventKind::RequestSent { request: 2, .. }))
        .cloned()
        .collect();
    for e in &first_request {
        metrics.apply(e);
    }
    let now = first_request.last().unwrap().at_us;
    let p = &metrics.providers()[0];
    let q = |m| p.latency(m, Window::Run, now);

    // The server's own figures for request 1.
    let times = writes.lock().unwrap()[0].clone();
    let mut gaps: Vec<u64> = times
        .windows(2)
        .map(|w| (w[1] - w[0]).as_micros() as u64)
        .collect();
    gaps.sort_unstable();
    let server_p50 = gaps[(gaps.len() - 1) / 2];
    let server_max = *gaps.last().unwrap();

    let itl = q(LatencyMetric::InterTokenLatency);
    assert_eq!(itl.count, (CHUNKS - 1) as u64, "one gap a token");
    within(itl.p50, server_p50, "ITL p50");
    within(itl.max, server_max, "ITL max: the stall");
    let stall = q(LatencyMetric::LongestStall);
    within(stall.max, server_max, "longest stall");
    assert!(stall.max >= STALL.as_micros() as u64, "{stall:?}");
    // Output speed: (E2E - TTFT) / (tokens - 1), relaytop's own E2E and TTFT.
    let e2e = q(LatencyMetric::ResponseTime).max;
    let ttft = q(LatencyMetric::TimeToFirstToken).max;
    within(
        q(LatencyMetric::TimePerOutputToken).max,
        (e2e - ttft) / (CHUNKS as u64 - 1),
        "TPOT",
    );
    // And against the server: from its first chunk to its last, plus the gap before done.
    let server_span = (times[CHUNKS - 1] - times[0]).as_micros() as u64 + GAP.as_micros() as u64;
    within(
        e2e - ttft,
        server_span,
        "generation time (E2E - TTFT) against the server's",
    );

    // All seven: the cut counted apart, the inflated usage caught (the audit counts at most
    // one response a second per session).
    let mut all = Metrics::new(
        vec![metrics.sessions().next().unwrap().info().clone()],
        Default::default(),
    );
    for e in &w.seen {
        all.apply(e);
    }
    let c = &all.providers()[0].counts;
    assert_eq!(c.responses_cut, 1, "the stream with no finish reason");
    assert_eq!(c.responses_completed, 6);
    assert!(c.usage_audit.responses >= 2, "{:?}", c.usage_audit);
    assert!(
        all.overbills(&all.providers()[0]),
        "a relay reporting twice the tokens it sent is caught: {:?}",
        c.usage_audit
    );
}
