//! Resident memory of the metrics: every byte the fold allocates is counted by a wrapping
//! allocator, for an idle and a busy session and provider. Prints the figures; asserts only
//! generous bounds (relaytop must run 10,000 sessions at 32 KiB each or less).
#![allow(unsafe_code)] // a counting global allocator measures memory, as the bench code does
#![allow(clippy::unwrap_used)] // test code: a panic is a failure with its place

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use relaytop_core::cost::Pricing;
use relaytop_core::metrics::{Metrics, ProviderStats, SessionStats};
use relaytop_core::session::{Completed, EventKind, Protocol, SessionEvent, SessionInfo, Tokens};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator and only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

const SESSIONS: u32 = 300;
const MS: u64 = 1_000;
const S: u64 = 1_000_000;

fn info(id: u32, provider: &str) -> SessionInfo {
    SessionInfo {
        id,
        name: format!("{provider}-{id}"),
        provider: provider.to_string(),
        model: "gpt-4.1".to_string(),
        protocol: Protocol::RelayV1,
        url: "wss://relay.example/v1/stream".to_string(),
        workload: "probe".to_string(),
    }
}

/// A deterministic spread of first-token times over 300 ms to 1 s.
fn latency(i: u64) -> u64 {
    let x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 44; // 0..2^20
    300 * MS + x % (700 * MS)
}

/// An hour of one request every 10 s per session and a heartbeat every 30 s; whole responses
/// take three times the first token (up to 3 s).
fn busy_hour(m: &mut Metrics, sessions: u32) {
    let mut n = 0u64;
    let mut evs = Vec::with_capacity(4);
    for tick in 0..360u64 {
        for s in 0..sessions {
            n += 1;
            let at = tick * 10 * S + u64::from(s) * 5 * MS;
            let ttft = latency(n);
            let request = tick + 1;
            evs.push(EventKind::RequestSent {
                request,
                model: String::new(),
                prompt_tokens_estimate: 10,
            });
            evs.push(EventKind::FirstToken {
                request,
                ttft_us: ttft,
            });
            evs.push(EventKind::Done(Box::new(Completed {
                request,
                model: String::new(),
                ttft_us: Some(ttft),
                answer_us: None,
                total_us: 3 * ttft,
                tokens: Tokens {
                    input: 100,
                    output: 400,
                    cached_input: 0,
                    cache_write_input: 0,
                    reasoning_output: 0,
                    estimated: false,
                },
                reported_cost_usd: None,
                finish_reason: None,
                cut: None,
                text_tokens: None,
                chunks: 0,
                bytes: 0,
            })));
            if tick % 3 == 0 {
                evs.push(EventKind::Pong { rtt_us: ttft / 8 });
            }
            for kind in evs.drain(..) {
                m.apply(&SessionEvent {
                    session: s,
                    at_us: at,
                    kind,
                });
            }
        }
    }
}

/// The only test in this binary, so no other test allocates while it measures.
#[test]
fn resident_bytes_of_idle_and_busy_metrics() {
    // Many sessions on one provider: the sessions' share dominates.
    let before = live();
    let mut m = Metrics::new(
        (0..SESSIONS).map(|i| info(i, "legacy")).collect(),
        Pricing::new(),
    );
    let idle_all = live() - before;
    let idle_session = idle_all as f64 / f64::from(SESSIONS);
    busy_hour(&mut m, SESSIONS);
    let busy_all = live() - before;

    // Half the sessions on one provider: what is not the sessions is the provider and the
    // totals, which in both runs hold hundreds of sessions' samples (so the same buckets: a
    // provider of one session holds a few samples a slice, and far less).
    let half = SESSIONS / 2;
    let before = live();
    let mut fewer = Metrics::new(
        (0..half).map(|i| info(i, "legacy")).collect(),
        Pricing::new(),
    );
    let idle_half = live() - before;
    busy_hour(&mut fewer, half);
    let busy_half = live() - before;

    let estimate_session =
        m.session(0).map_or(0, SessionStats::heap_bytes) + size_of::<SessionStats>();
    let estimate_provider = fewer
        .provider("legacy")
        .map_or(0, ProviderStats::heap_bytes)
        + size_of::<ProviderStats>();
    // busy_all = N * session + 2 * provider, busy_half = N/2 * session + 2 * provider.
    let n = f64::from(SESSIONS - half);
    let idle_provider = (idle_half as f64 - idle_session * f64::from(half)) / 2.0;
    let busy_session = (busy_all - busy_half) as f64 / n;
    let busy_provider = (busy_half as f64 - busy_session * f64::from(half)) / 2.0;

    println!("metrics memory after an hour of probes (measured by the allocator):");
    println!(
        "  SessionStats  idle {idle_session:>9.0} B   busy {busy_session:>9.0} B   (heap_bytes estimate {estimate_session} B)"
    );
    println!(
        "  ProviderStats idle {idle_provider:>9.0} B   busy {busy_provider:>9.0} B   (heap_bytes estimate {estimate_provider} B)"
    );
    println!(
        "  the run's totals are a second ProviderStats; {SESSIONS} sessions + provider + totals: {busy_all} B"
    );

    assert!(idle_session < 2048.0, "idle session {idle_session} B");
    assert!(
        busy_session < 32.0 * 1024.0,
        "busy session {busy_session} B"
    );
    assert!(
        busy_provider < 16.0 * 1024.0 * 1024.0,
        "busy provider {busy_provider} B"
    );
}
