//! A 64 MiB frame is refused from its header, without the memory for it: this test binary
//! counts every allocation (a counting global allocator) while a hand-made relay announces a
//! 64 MiB text frame, and checks that the peak stays far below the frame's size. Its own
//! binary, so that no other test's allocations blur the count.
#![allow(unsafe_code)] // a counting global allocator measures memory, as the bench code does
#![allow(clippy::unwrap_used)] // test code: a panic is a failure with its place

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use relaytop_core::session::{EventKind, SessionCommand, SessionState};
use support::rogue::{self, Act, Rogue};
use support::*;

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let live = LIVE.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(live, Ordering::Relaxed);
}

// SAFETY: every call is passed to the system allocator unchanged; only sizes are counted.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() {
            grew(new_size - layout.size());
        } else {
            LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[tokio::test]
async fn a_64_mib_frame_is_refused_without_allocating_it() {
    const FRAME: u64 = 64 << 20;
    let mut announced = rogue::header(true, 0x1, FRAME);
    // Some of the payload follows at once, as a real sender's would.
    announced.extend(vec![b'a'; 64 * 1024]);
    let relay = Rogue::start(vec![
        vec![Act::Upgrade, Act::Send(announced), Act::Hold],
        vec![Act::Upgrade, Act::Hold],
    ])
    .await;
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let mut s = watch(spec(&relay.url(), chat(), fast_timing()));
    s.wait_for(Duration::from_secs(10), |k| {
        matches!(k, EventKind::Closed { code: 1009, .. })
    })
    .await
    .unwrap_or_else(|| panic!("no refusal:\n{}", s.story()));
    s.wait_for(Duration::from_secs(10), |k| {
        matches!(k, EventKind::Connected { attempt: 2, .. })
    })
    .await
    .unwrap_or_else(|| panic!("no reconnect:\n{}", s.story()));
    let peak = PEAK.load(Ordering::Relaxed).saturating_sub(before);
    assert!(
        peak < 8 << 20,
        "{peak} bytes allocated at the peak for a refused {FRAME}-byte frame"
    );
    s.handle.commands.send(SessionCommand::Close).await.unwrap();
    s.wait_for(Duration::from_secs(10), |k| {
        matches!(k, EventKind::State(SessionState::Closed))
    })
    .await
    .expect("closed");

    // The control, in the same test so that nothing runs beside it: a 12 MiB frame, under
    // the limit, is read whole (and counted as a malformed frame: it is not JSON), and the
    // count sees it.
    const ALLOWED: usize = 12 << 20;
    let relay = Rogue::start(vec![vec![
        Act::Upgrade,
        Act::Send(rogue::text_frame(&"a".repeat(ALLOWED))),
        Act::Hold,
    ]])
    .await;
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let mut s = watch(spec(&relay.url(), chat(), fast_timing()));
    s.wait_for(Duration::from_secs(10), |k| {
        matches!(k, EventKind::Malformed { .. })
    })
    .await
    .unwrap_or_else(|| panic!("the frame was not read:\n{}", s.story()));
    let peak = PEAK.load(Ordering::Relaxed).saturating_sub(before);
    assert!(peak >= ALLOWED, "the count sees a read frame: {peak} bytes");
    assert_eq!(s.count(|k| matches!(k, EventKind::Closed { .. })), 0);
    s.handle.commands.send(SessionCommand::Close).await.unwrap();
}
