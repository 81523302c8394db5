//! Room in the queue: how a blocked `emit_async` learns that a worker took an event.
//!
//! A blocked producer never parks its event inside the channel (an event parked there can be
//! taken by a worker in the same instant the producer's wait times out, and the producer would
//! report "not accepted" for an event that runs). It registers as waiting, retries `try_send`,
//! and sleeps until a worker signals room or its deadline passes; whatever the outcome, the
//! event was either in the queue (accepted) or in the producer's hands (refused), never both.
//!
//! Invariant: a producer counted in `waiting` that saw the queue full is woken before the queue
//! runs empty, as long as workers keep taking. Each worker calls [`Room::taken`] after every
//! `batch` takes; from a full queue, fewer than `workers * batch <= capacity` takes can pass
//! before one of them does. The producer counts itself and registers its waker *before* it
//! retries; the worker takes events (under the channel's lock) *before* it reads the count,
//! so either the retry sees the freed slots or the worker sees the waiting producer.

use std::pin::pin;

use flowgate_core::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::Notify;

/// See the [module docs](self).
#[derive(Debug, Default)]
pub(crate) struct Room {
    /// Producers between registering and giving up or getting in.
    waiting: AtomicUsize,
    freed: Notify,
}

impl Room {
    /// Called by a worker after it took `batch` events since its last call: wakes every
    /// waiting producer, if any.
    ///
    /// Workers call this once per `batch` takes (see [`Room::batch`]) instead of on every take,
    /// so that a blocked producer refills the queue in one go instead of being woken once per
    /// freed slot.
    #[inline]
    pub(crate) fn taken(&self) {
        // SeqCst: orders this read after the takes, against the producer's SeqCst increment
        // before its retry (see the module docs).
        if self.waiting.load(Ordering::SeqCst) > 0 {
            self.freed.notify_waiters();
        }
    }

    /// How many takes a worker counts before it calls [`taken`](Self::taken), for a queue of
    /// `capacity` shared by `workers` workers: small enough that, from a full queue, some
    /// worker reaches it before the queue is empty (`workers * (batch - 1) < capacity`).
    pub(crate) fn batch(capacity: usize, workers: usize) -> usize {
        (capacity / workers.max(1) / 4).max(1)
    }

    /// Called by shutdown after it emptied the queue: wakes every waiting producer.
    pub(crate) fn emptied(&self) {
        self.freed.notify_waiters();
    }

    /// Retries `try_send` until it stops reporting a full queue or `deadline` passes.
    /// `try_send` returns `Err(item)` when the queue is full.
    pub(crate) async fn wait_for_room<I, R>(
        &self,
        mut item: I,
        deadline: tokio::time::Instant,
        mut try_send: impl FnMut(I) -> Result<R, I>,
    ) -> Result<R, I> {
        let _waiting = Waiting::register(self);
        loop {
            let mut freed = pin!(self.freed.notified());
            // Registered before the retry, so a worker's notify after it cannot be missed.
            freed.as_mut().enable();
            match try_send(item) {
                Ok(done) => return Ok(done),
                Err(back) => item = back,
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                // One last try: room may have been freed right at the deadline.
                return try_send(item);
            }
        }
    }
}

/// Counts a producer as waiting for as long as it lives.
struct Waiting<'a> {
    room: &'a Room,
}

impl<'a> Waiting<'a> {
    fn register(room: &'a Room) -> Self {
        room.waiting.fetch_add(1, Ordering::SeqCst);
        Self { room }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.room.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}
