//! Room in the queue: how a blocked `emit_async` waits for a worker to take an event, and how
//! shutdown shuts the door on it.
//!
//! A blocked producer never parks its event inside the channel (an event parked there can be
//! taken by a worker in the same instant the producer's wait times out, and the producer would
//! report "not accepted" for an event that runs). It registers as waiting, retries `try_send`,
//! and sleeps until a worker signals room, shutdown closes the door, or its deadline passes;
//! whatever the outcome, the event was either put in the queue (accepted) or is still in the
//! producer's hands (refused), never both.
//!
//! Invariants:
//!
//! 1. A producer counted in `waiting` that saw the queue full is woken before the queue runs
//!    empty, or as soon as a worker stops to wait on a handler. Each worker calls
//!    [`Room::taken`] after every `batch` takes and before it waits on a handler or a retry
//!    backoff; from a full queue, fewer than `workers * batch <= capacity` takes can pass
//!    before one of them does. The producer counts itself and registers its waker *before* it
//!    retries; the worker takes events (under the channel's lock) *before* it reads the count,
//!    so either the retry sees the freed slots or the worker sees the waiting producer.
//! 2. Once [`Room::close`] returned, no retry puts an event in the queue: every retry checks
//!    the door under the `door` lock and holds the lock across its `try_send`.

use std::pin::pin;

use flowgate_core::sync::atomic::{AtomicUsize, Ordering};
use flowgate_core::sync::Mutex;
use tokio::sync::Notify;

/// The outcome of one `try_send` as [`Room::wait_for_room`] sees it.
pub(crate) enum Try<I> {
    Sent,
    Full(I),
    Closed(I),
}

/// How [`Room::wait_for_room`] ended.
pub(crate) enum Admission<I> {
    Sent,
    Closed(I),
    TimedOut(I),
}

/// See the [module docs](self).
#[derive(Debug, Default)]
pub(crate) struct Room {
    /// Producers between registering and giving up or getting in.
    waiting: AtomicUsize,
    freed: Notify,
    /// `true` once shutdown closed the door; retries hold this lock across `try_send`.
    door: Mutex<bool>,
}

impl Room {
    /// Called by a worker after `batch` takes, or before it waits on anything: wakes every
    /// waiting producer, if any.
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

    /// Closes the door for good and wakes every waiting producer (they find it closed).
    pub(crate) fn close(&self) {
        *self.door.lock() = true;
        self.freed.notify_waiters();
    }

    /// Retries `try_send` until it sends, the door closes, or `deadline` passes.
    pub(crate) async fn wait_for_room<I>(
        &self,
        mut item: I,
        deadline: tokio::time::Instant,
        mut try_send: impl FnMut(I) -> Try<I>,
    ) -> Admission<I> {
        let _waiting = Waiting::register(self);
        loop {
            let mut freed = pin!(self.freed.notified());
            // Registered before the retry, so a notification after it cannot be missed.
            freed.as_mut().enable();
            item = match self.try_once(item, &mut try_send) {
                Try::Sent => return Admission::Sent,
                Try::Closed(item) => return Admission::Closed(item),
                Try::Full(item) => item,
            };
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                // One last try: room may have been freed right at the deadline.
                return match self.try_once(item, &mut try_send) {
                    Try::Sent => Admission::Sent,
                    Try::Closed(item) => Admission::Closed(item),
                    Try::Full(item) => Admission::TimedOut(item),
                };
            }
        }
    }

    fn try_once<I>(&self, item: I, try_send: &mut impl FnMut(I) -> Try<I>) -> Try<I> {
        let door = self.door.lock();
        if *door {
            return Try::Closed(item);
        }
        try_send(item)
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
