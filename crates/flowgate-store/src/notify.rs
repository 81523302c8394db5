//! Wakes the subscriptions waiting for a log to grow.
//!
//! Invariant (the handshake): a subscription that found nothing new registers its waker
//! (incrementing `waiting`), issues a `SeqCst` fence ([`handshake_fence`], inside
//! [`Notifier::register`]) and then reads the log's published length again; the writer
//! publishes, issues a `SeqCst` fence and then loads `waiting` ([`Notifier::notify`], or one
//! fence for several notifiers and [`Notifier::notify_fenced`] on each). By the fence rules,
//! either the writer's load sees the registration (and wakes the waker) or the reader's second
//! read sees the new length (and the reader does not sleep). So no append is ever missed by a
//! sleeping subscription, and an append with nobody waiting costs one fence and one load per
//! notifier.
//!
//! Fences rather than `SeqCst` loads and stores: the two are equivalent here, but loom models
//! only `SeqCst` fences exactly (it treats `SeqCst` accesses as acquire/release), so the model
//! in `tests/loom_handoff.rs` checks this code and not a weaker copy of it.
//!
//! Where the length is guarded by a mutex instead (a stream's events), the mutex orders the
//! registration and the append the same way, fence or not.
//!
//! Each subscription owns one slot (a waker at most), so a subscription polled many times
//! without anything new holds one waker, not one per poll.
//!
//! Public only for the loom model in `tests/`; not part of the API.

use std::task::Waker;

use flowgate_core::sync::atomic::{AtomicUsize, Ordering};
use flowgate_core::sync::Mutex;

// The core shim has no fence; this is the one place the store takes it from.
#[cfg(loom)]
use loom::sync::atomic::fence;
#[cfg(not(loom))]
use std::sync::atomic::fence;

/// The `SeqCst` fence of the handshake (module docs), on both sides.
#[inline]
pub fn handshake_fence() {
    fence(Ordering::SeqCst);
}

/// See the [module docs](self).
#[derive(Debug, Default)]
pub struct Notifier {
    /// How many slots hold a waker. Changed under `slots`' lock; read without it by `notify`.
    waiting: AtomicUsize,
    slots: Mutex<Slots>,
}

#[derive(Debug, Default)]
struct Slots {
    /// Indexed by slot; `None` when that subscription is not waiting.
    wakers: Vec<Option<Waker>>,
    /// Slots whose owner is gone, to reuse.
    free: Vec<usize>,
}

impl Notifier {
    /// An empty notifier.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reserves a slot for one subscription; give it back with [`release`](Self::release).
    pub fn slot(&self) -> usize {
        let mut slots = self.slots.lock();
        if let Some(slot) = slots.free.pop() {
            return slot;
        }
        slots.wakers.push(None);
        slots.wakers.len() - 1
    }

    /// Gives a slot back (the subscription is gone).
    pub fn release(&self, slot: usize) {
        let mut slots = self.slots.lock();
        if let Some(waker) = slots.wakers.get_mut(slot) {
            if waker.take().is_some() {
                self.waiting.fetch_sub(1, Ordering::Relaxed);
            }
            slots.free.push(slot);
        }
    }

    /// Registers `waker` in `slot`. The caller must then re-check the log (module docs).
    pub fn register(&self, slot: usize, waker: &Waker) {
        let mut slots = self.slots.lock();
        let Some(entry) = slots.wakers.get_mut(slot) else {
            return;
        };
        match entry {
            Some(old) if old.will_wake(waker) => {}
            Some(old) => old.clone_from(waker),
            None => {
                *entry = Some(waker.clone());
                // Relaxed: ordered against the writer's load by the fence below.
                self.waiting.fetch_add(1, Ordering::Relaxed);
            }
        }
        drop(slots);
        // The reader's fence of the handshake: between the registration and its re-check.
        handshake_fence();
    }

    /// Wakes every registered waker (after the caller published).
    #[inline]
    pub fn notify(&self) {
        handshake_fence();
        self.notify_fenced();
    }

    /// [`notify`](Self::notify) for a caller that issued [`handshake_fence`] itself after
    /// publishing (one fence for several notifiers).
    #[inline]
    pub fn notify_fenced(&self) {
        // Relaxed: ordered against the reader's registration by the two fences.
        if self.waiting.load(Ordering::Relaxed) == 0 {
            return;
        }
        self.wake_all();
    }

    #[cold]
    fn wake_all(&self) {
        let mut slots = self.slots.lock();
        let woken: Vec<Waker> = slots.wakers.iter_mut().filter_map(Option::take).collect();
        self.waiting.fetch_sub(woken.len(), Ordering::Relaxed);
        drop(slots);
        // Woken outside the lock: an executor that polls the task inside `wake` would
        // otherwise re-enter `register` on a lock its own thread holds.
        for waker in woken {
            waker.wake();
        }
    }

    /// How many subscriptions are waiting.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }
}
