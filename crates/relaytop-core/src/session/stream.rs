//! The run's event stream: the bounded channel every session hands its events over on, in
//! batches, and every consumer (headless report, dashboard, canary, tests) reads.
//!
//! A session reports in bursts (a socket read can hold hundreds of chunk frames), so the
//! stream carries whole batches: a session's flush is one hand-over and at most one wake of
//! the consumer, where a channel of single events woke a parked consumer thread for every
//! event (measured with `relaytop bench ingest`: docs/PERFORMANCE.md). The bound is still
//! counted in events, not batches: a sender waits while `capacity` events are queued, so a
//! consumer that falls behind slows the sessions down instead of letting the queue grow.
//! Receiving one event at a time (`recv`) or many (`recv_many`, `recv_batch`) works the same
//! whatever the batches were.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::{Semaphore, mpsc};

use crate::session::SessionEvent;

/// Emptied batches kept for the senders to fill again, at most: a stream in full flow then
/// allocates nothing (and touches no fresh memory) batch after batch.
const SPARE_BATCHES: usize = 16;
/// A spare batch with more room than this (in events) is freed instead of kept.
const SPARE_MAX_EVENTS: usize = 2_048;

/// What both ends share: the room left, in events, and the emptied batches.
#[derive(Debug)]
struct Shared {
    /// Free room, in events; taken by a sender, given back when the receiver takes the batch.
    room: Semaphore,
    spare: Mutex<Vec<Vec<SessionEvent>>>,
}

impl Shared {
    /// The spare batches, unless another thread is at them right now: nobody ever waits
    /// for them (a session's worker blocked on a lock whose holder the OS has paused would
    /// hold up every task on that worker), it allocates or frees instead.
    fn spare(&self) -> Option<std::sync::MutexGuard<'_, Vec<Vec<SessionEvent>>>> {
        match self.spare.try_lock() {
            Ok(spare) => Some(spare),
            Err(std::sync::TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }
}

/// The consumer has gone away: nothing more can be sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Closed;

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the event stream's consumer has gone away")
    }
}

impl std::error::Error for Closed {}

/// Why `try_send` sent nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrySendError {
    /// No room now: the consumer is behind.
    Full,
    /// The consumer has gone away.
    Closed,
}

/// Why `try_recv` returned nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TryRecvError {
    /// Nothing queued now; senders remain.
    Empty,
    /// Nothing queued and every sender is gone.
    Disconnected,
}

/// A bounded stream of session events that holds at most `capacity` events at a time.
pub fn channel(capacity: usize) -> (EventSender, EventReceiver) {
    let capacity = capacity.clamp(1, u32::MAX as usize);
    let shared = Arc::new(Shared {
        room: Semaphore::new(capacity),
        spare: Mutex::new(Vec::new()),
    });
    let (tx, rx) = mpsc::unbounded_channel();
    (
        EventSender {
            tx,
            shared: shared.clone(),
            capacity,
        },
        EventReceiver {
            rx,
            shared,
            capacity,
            pending: VecDeque::new(),
        },
    )
}

/// The sending end: cheap to clone; the stream ends when every clone is dropped.
#[derive(Clone, Debug)]
pub struct EventSender {
    tx: mpsc::UnboundedSender<Vec<SessionEvent>>,
    shared: Arc<Shared>,
    capacity: usize,
}

impl EventSender {
    /// An empty batch to fill: one the receiver has emptied if there is one (with its
    /// allocation), else a new one with room for `events`.
    pub fn new_batch(&self, events: usize) -> Vec<SessionEvent> {
        self.shared
            .spare()
            .and_then(|mut spare| spare.pop())
            .unwrap_or_else(|| Vec::with_capacity(events))
    }

    /// Sends one event, waiting while the stream is full.
    pub async fn send(&self, event: SessionEvent) -> Result<(), Closed> {
        self.send_batch(vec![event]).await
    }

    /// Sends a batch of events in order, waiting while the stream is full. A batch larger
    /// than the stream's capacity goes in parts. Nothing is sent for an empty batch.
    pub async fn send_batch(&self, mut batch: Vec<SessionEvent>) -> Result<(), Closed> {
        while batch.len() > self.capacity {
            let rest = batch.split_off(self.capacity);
            self.send_part(batch).await?;
            batch = rest;
        }
        if batch.is_empty() {
            return Ok(());
        }
        self.send_part(batch).await
    }

    /// Sends one event if there is room now.
    pub fn try_send(&self, event: SessionEvent) -> Result<(), TrySendError> {
        let permit = self.shared.room.try_acquire().map_err(|e| match e {
            tokio::sync::TryAcquireError::NoPermits => TrySendError::Full,
            tokio::sync::TryAcquireError::Closed => TrySendError::Closed,
        })?;
        permit.forget();
        self.tx.send(vec![event]).map_err(|_| TrySendError::Closed)
    }

    async fn send_part(&self, batch: Vec<SessionEvent>) -> Result<(), Closed> {
        let n = u32::try_from(batch.len()).unwrap_or(u32::MAX);
        let permit = self.shared.room.acquire_many(n).await.map_err(|_| Closed)?;
        // The receiver gives the room back when it takes the batch.
        permit.forget();
        self.tx.send(batch).map_err(|_| Closed)
    }

    /// True once the receiver has gone away.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// The most events the stream holds at once.
    pub fn max_capacity(&self) -> usize {
        self.capacity
    }
}

/// The receiving end: one consumer.
#[derive(Debug)]
pub struct EventReceiver {
    rx: mpsc::UnboundedReceiver<Vec<SessionEvent>>,
    shared: Arc<Shared>,
    capacity: usize,
    /// The rest of the batch being handed out.
    pending: VecDeque<SessionEvent>,
}

impl Drop for EventReceiver {
    fn drop(&mut self) {
        // Senders waiting for room learn at once that nobody reads any more.
        self.shared.room.close();
    }
}

impl EventReceiver {
    /// Takes the next batch off the channel and gives its room back.
    fn took(&mut self, batch: Vec<SessionEvent>) -> Vec<SessionEvent> {
        self.shared.room.add_permits(batch.len());
        batch
    }

    /// Hands out the next batch one event at a time; the emptied one goes back for reuse.
    fn hand_out(&mut self, batch: Vec<SessionEvent>) {
        let done = std::mem::replace(&mut self.pending, VecDeque::from(batch));
        self.recycle(Vec::from(done));
    }

    /// Gives an emptied batch (from `recv_batch`) back to the senders to fill again.
    pub fn recycle(&self, mut batch: Vec<SessionEvent>) {
        if batch.capacity() == 0 || batch.capacity() > SPARE_MAX_EVENTS {
            return;
        }
        batch.clear();
        if let Some(mut spare) = self.shared.spare()
            && spare.len() < SPARE_BATCHES
        {
            spare.push(batch);
        }
    }

    /// The next event; `None` once every sender is gone and everything was received.
    /// Cancel-safe (for `select!`): an event is never lost.
    pub async fn recv(&mut self) -> Option<SessionEvent> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(event);
            }
            let batch = self.rx.recv().await?;
            let batch = self.took(batch);
            self.hand_out(batch);
        }
    }

    /// The next event if one is queued now.
    pub fn try_recv(&mut self) -> Result<SessionEvent, TryRecvError> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Ok(event);
            }
            match self.rx.try_recv() {
                Ok(batch) => {
                    let batch = self.took(batch);
                    self.hand_out(batch);
                }
                Err(mpsc::error::TryRecvError::Empty) => return Err(TryRecvError::Empty),
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    return Err(TryRecvError::Disconnected);
                }
            }
        }
    }

    /// Waits for at least one event, then appends to `buf` up to `limit` of those queued
    /// now. Returns how many were appended: 0 only when the stream has ended (or `limit` is
    /// 0). Cancel-safe.
    pub async fn recv_many(&mut self, buf: &mut Vec<SessionEvent>, limit: usize) -> usize {
        if limit == 0 {
            return 0;
        }
        if self.pending.is_empty() {
            let Some(batch) = self.rx.recv().await else {
                return 0;
            };
            let batch = self.took(batch);
            self.hand_out(batch);
        }
        let mut taken = 0;
        loop {
            let n = self.pending.len().min(limit - taken);
            buf.extend(self.pending.drain(..n));
            taken += n;
            if taken >= limit {
                return taken;
            }
            match self.rx.try_recv() {
                Ok(batch) => {
                    let batch = self.took(batch);
                    self.hand_out(batch);
                }
                Err(_) => return taken,
            }
        }
    }

    /// Waits for events and returns the next batch, in order, as a session handed it over
    /// (without copying it), or what is left of the batch `recv` was handing out. `None` once
    /// the stream has ended. Cancel-safe. Give the emptied batch back with `recycle`.
    pub async fn recv_batch(&mut self) -> Option<Vec<SessionEvent>> {
        if !self.pending.is_empty() {
            return Some(Vec::from(std::mem::take(&mut self.pending)));
        }
        let batch = self.rx.recv().await?;
        Some(self.took(batch))
    }

    /// Events queued now (sent and not yet received).
    pub fn len(&self) -> usize {
        let queued = self
            .capacity
            .saturating_sub(self.shared.room.available_permits());
        queued + self.pending.len()
    }

    /// True when nothing is queued now.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty() && self.rx.is_empty()
    }

    /// Stops the stream: senders get `Closed` from now on; what is queued can still be read.
    pub fn close(&mut self) {
        self.rx.close();
        self.shared.room.close();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::session::EventKind;

    fn event(n: u32) -> SessionEvent {
        SessionEvent::new(
            n,
            Duration::from_micros(u64::from(n)),
            EventKind::Marker {
                label: n.to_string(),
            },
        )
    }

    fn ids(events: &[SessionEvent]) -> Vec<u32> {
        events.iter().map(|e| e.session).collect()
    }

    #[tokio::test]
    async fn batches_arrive_in_order_whichever_way_they_are_read() {
        let (tx, mut rx) = channel(100);
        tx.send_batch((0..5).map(event).collect()).await.unwrap();
        tx.send(event(5)).await.unwrap();
        tx.send_batch((6..10).map(event).collect()).await.unwrap();
        assert_eq!(rx.len(), 10);
        assert_eq!(rx.recv().await.unwrap().session, 0);
        assert_eq!(rx.try_recv().unwrap().session, 1);
        assert_eq!(rx.len(), 8);
        assert!(!rx.is_empty());
        let mut buf = Vec::new();
        assert_eq!(rx.recv_many(&mut buf, 4).await, 4);
        assert_eq!(ids(&buf), [2, 3, 4, 5]);
        assert_eq!(ids(&rx.recv_batch().await.unwrap()), [6, 7, 8, 9]);
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        assert!(rx.is_empty());
        assert_eq!(rx.len(), 0);
        drop(tx);
        assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
        assert!(rx.recv().await.is_none());
        assert_eq!(rx.recv_many(&mut buf, 10).await, 0);
    }

    #[tokio::test]
    async fn the_bound_counts_events_and_room_comes_back_when_read() {
        let (tx, mut rx) = channel(4);
        tx.send_batch((0..3).map(event).collect()).await.unwrap();
        tx.try_send(event(3)).unwrap();
        // Full: one more waits.
        assert_eq!(tx.try_send(event(4)), Err(TrySendError::Full));
        let blocked = tokio::spawn({
            let tx = tx.clone();
            async move { tx.send_batch(vec![event(4), event(5)]).await }
        });
        tokio::task::yield_now().await;
        assert!(!blocked.is_finished());
        let mut buf = Vec::new();
        assert_eq!(rx.recv_many(&mut buf, 10).await, 4);
        blocked.await.unwrap().unwrap();
        assert_eq!(ids(&rx.recv_batch().await.unwrap()), [4, 5]);
    }

    #[tokio::test]
    async fn emptied_batches_are_filled_again_and_the_spares_stay_bounded() {
        let (tx, mut rx) = channel(100_000);
        let mut batch = tx.new_batch(8);
        batch.extend((0..8).map(event));
        let allocation = batch.as_ptr();
        tx.send_batch(batch).await.unwrap();
        for _ in 0..8 {
            rx.recv().await.unwrap();
        }
        // The next event moved the emptied batch to the spares; the next batch is it.
        tx.send(event(8)).await.unwrap();
        rx.recv().await.unwrap();
        let again = tx.new_batch(8);
        assert_eq!(again.as_ptr(), allocation);
        for _ in 0..SPARE_BATCHES * 2 {
            rx.recycle(Vec::with_capacity(4));
        }
        rx.recycle(Vec::with_capacity(SPARE_MAX_EVENTS + 1));
        let spare = rx.shared.spare().unwrap();
        assert_eq!(spare.len(), SPARE_BATCHES);
        assert!(spare.iter().all(|b| b.capacity() <= SPARE_MAX_EVENTS));
    }

    #[tokio::test]
    async fn a_batch_larger_than_the_stream_goes_in_parts() {
        let (tx, mut rx) = channel(3);
        let sender = tokio::spawn(async move { tx.send_batch((0..10).map(event).collect()).await });
        let mut got = Vec::new();
        while let Some(e) = rx.recv().await {
            got.push(e);
        }
        sender.await.unwrap().unwrap();
        assert_eq!(ids(&got), (0..10).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn senders_learn_when_the_receiver_goes_away() {
        let (tx, rx) = channel(1);
        tx.send(event(0)).await.unwrap();
        let waiting = tokio::spawn({
            let tx = tx.clone();
            async move { tx.send(event(1)).await }
        });
        tokio::task::yield_now().await;
        drop(rx);
        assert_eq!(waiting.await.unwrap(), Err(Closed));
        assert!(tx.is_closed());
        assert_eq!(tx.send(event(2)).await, Err(Closed));
    }

    #[tokio::test]
    async fn recv_is_cancel_safe() {
        let (tx, mut rx) = channel(10);
        // A recv that is dropped before anything came loses nothing.
        let nothing = tokio::time::timeout(Duration::from_millis(5), rx.recv()).await;
        assert!(nothing.is_err());
        tx.send_batch(vec![event(7), event(8)]).await.unwrap();
        assert_eq!(rx.recv().await.unwrap().session, 7);
        assert_eq!(rx.recv().await.unwrap().session, 8);
    }
}
