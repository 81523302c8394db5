//! Wakes the subscriptions waiting for a log to grow.
//!
//! Invariant (the handshake): a subscription that found nothing new registers its waker and
//! then reads the log's published length again; the writer publishes and then calls
//! [`Notifier::notify`]. The registration increments `waiting` and the writer's `notify` loads
//! it, both `SeqCst`, as are the writer's store of the published length and the reader's second
//! load of it. In the single total order of those four operations either the writer's load sees
//! the registration (and wakes the waker) or the reader's second load sees the new length (and
//! the reader does not sleep). So no append is ever missed by a sleeping subscription, and an
//! append with nobody waiting costs one atomic load.
//!
//! Each subscription owns one slot (a waker at most), so a subscription polled many times
//! without anything new holds one waker, not one per poll.
//!
//! Public only for the loom model in `tests/`; not part of the API.

use std::task::Waker;

use flowgate_core::sync::atomic::{AtomicUsize, Ordering};
use flowgate_core::sync::Mutex;

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
                self.waiting.fetch_sub(1, Ordering::SeqCst);
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
                // SeqCst: the registration half of the handshake.
                self.waiting.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    /// Wakes every registered waker (after the caller published).
    #[inline]
    pub fn notify(&self) {
        // SeqCst: the writer's half of the handshake, after its SeqCst publish.
        if self.waiting.load(Ordering::SeqCst) == 0 {
            return;
        }
        self.wake_all();
    }

    #[cold]
    fn wake_all(&self) {
        let mut slots = self.slots.lock();
        let mut woken = 0;
        for waker in slots.wakers.iter_mut().filter_map(Option::take) {
            waker.wake();
            woken += 1;
        }
        self.waiting.fetch_sub(woken, Ordering::SeqCst);
    }

    /// How many subscriptions are waiting.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }
}
