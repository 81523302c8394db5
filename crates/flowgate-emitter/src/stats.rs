//! Counters behind [`Emitter::stats`](crate::Emitter::stats).
//!
//! Every counter is a statistic: updated with `Relaxed` increments, read without ordering, so a
//! snapshot taken while work runs may be a few increments apart between fields. Each counter
//! sits on its own cache line so the producer and the workers do not contend on one line.
//!
//! Each worker task has its own [`WorkerCounters`], written by that task alone: a task is never
//! polled by two threads at once, and the scheduler orders its polls, so an increment there is a
//! plain load and store, not a locked read-modify-write. `stats()` sums them.

use flowgate_core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// A counter alone on its cache line.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct Padded<A>(pub(crate) A);

/// The live counters, shared by the emitter handle and its workers.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Accepted emits, inline and async (any caller).
    pub(crate) emitted: Padded<AtomicU64>,
    /// Inline emits' handler outcomes (any caller).
    pub(crate) handled: Padded<AtomicU64>,
    /// Inline emits to one handler that succeeded on its first poll: each is one emit and one
    /// handled (the common case, counted once, and without a locked instruction).
    pub(crate) inline_ok: Striped,
    pub(crate) failed: Padded<AtomicU64>,
    pub(crate) panicked: Padded<AtomicU64>,
    /// Refused `emit_async` calls (any caller).
    pub(crate) rejected: Padded<AtomicU64>,
    /// One per worker task, indexed by worker.
    pub(crate) workers: Box<[WorkerCounters]>,
}

/// The counters of one worker task; only that task writes them (see the module docs).
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct WorkerCounters {
    pub(crate) handled: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) panicked: AtomicU64,
    pub(crate) retried: AtomicU64,
    pub(crate) dead_lettered: AtomicU64,
    /// 1 while the worker runs an event.
    pub(crate) busy: AtomicUsize,
}

impl WorkerCounters {
    /// Single-writer increment: a load and a store.
    #[inline]
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }
}

/// A counter striped by thread: a thread that holds a stripe (see [`stripe`]) is its only
/// writer, so it adds with a load and a store instead of a locked read-modify-write (about
/// 5 ns here); threads without one add to `shared`. 8 KiB per counter.
///
/// A stripe changes hands only through [`stripe`]'s claim bitmap (Release when a thread
/// exits, Acquire when another claims it), so the next owner continues from the last value.
#[derive(Debug)]
pub(crate) struct Striped {
    stripes: Box<[Stripe]>,
    shared: Padded<AtomicU64>,
}

/// One thread's part of a [`Striped`] counter, alone on its pair of cache lines (the
/// prefetcher pulls lines in pairs, as for [`Padded`]).
#[derive(Debug, Default)]
#[repr(align(128))]
struct Stripe(AtomicU64);

impl Default for Striped {
    fn default() -> Self {
        Self {
            stripes: (0..stripe::STRIPES).map(|_| Stripe::default()).collect(),
            shared: Padded::default(),
        }
    }
}

impl Striped {
    #[inline]
    pub(crate) fn add(&self, n: u64) {
        match stripe::current().and_then(|index| self.stripes.get(index)) {
            Some(Stripe(mine)) => mine.store(mine.load(Ordering::Relaxed) + n, Ordering::Relaxed),
            None => {
                self.shared.0.fetch_add(n, Ordering::Relaxed);
            }
        }
    }

    pub(crate) fn get(&self) -> u64 {
        let striped: u64 = self
            .stripes
            .iter()
            .map(|Stripe(count)| count.load(Ordering::Relaxed))
            .sum();
        striped + self.shared.0.load(Ordering::Relaxed)
    }
}

/// Each thread's stripe index: claimed from a process-wide bitmap on the thread's first count,
/// given back when the thread exits. At most [`STRIPES`] threads hold one at a time; the rest
/// count through the shared atomic (a thread that found none free does not ask again). (Under loom every count is shared: the claim bitmap is a
/// `static`, and loom's atomics cannot be.)
pub(crate) mod stripe {
    /// Stripes per counter, and so threads that count without a locked instruction at once.
    pub(crate) const STRIPES: usize = 64;

    #[cfg(not(loom))]
    mod claims {
        use flowgate_core::sync::atomic::{AtomicU64, Ordering};

        /// Bit i set: stripe i is held by a live thread.
        static CLAIMED: AtomicU64 = AtomicU64::new(0);

        /// A thread's claim; given back when the thread's locals are destroyed.
        pub(super) struct Claim(pub(super) Option<usize>);

        impl Claim {
            pub(super) fn new() -> Self {
                let mut claimed = CLAIMED.load(Ordering::Relaxed);
                while claimed != u64::MAX {
                    let index = (!claimed).trailing_zeros();
                    // Acquire: pairs with the Release of the thread that gave it back, so this
                    // thread's first load of a stripe sees that thread's last store.
                    match CLAIMED.compare_exchange_weak(
                        claimed,
                        claimed | 1 << index,
                        Ordering::Acquire,
                        Ordering::Relaxed,
                    ) {
                        Ok(_) => return Self(Some(index as usize)),
                        Err(now) => claimed = now,
                    }
                }
                Self(None)
            }
        }

        impl Drop for Claim {
            fn drop(&mut self) {
                if let Some(index) = self.0 {
                    CLAIMED.fetch_and(!(1 << index), Ordering::Release);
                }
            }
        }

        std::thread_local! {
            pub(super) static CLAIM: Claim = Claim::new();
        }
    }

    /// This thread's stripe, if it holds one. `None` also while the thread's locals are being
    /// destroyed (a count made from another local's destructor goes to the shared atomic).
    #[inline]
    pub(crate) fn current() -> Option<usize> {
        #[cfg(not(loom))]
        return claims::CLAIM.try_with(|claim| claim.0).ok().flatten();
        #[cfg(loom)]
        return None;
    }
}

impl Counters {
    pub(crate) fn new(workers: usize) -> Self {
        Self {
            workers: (0..workers).map(|_| WorkerCounters::default()).collect(),
            ..Self::default()
        }
    }

    /// Sums one field over the workers.
    pub(crate) fn sum(&self, field: impl Fn(&WorkerCounters) -> u64) -> u64 {
        self.workers.iter().map(field).sum()
    }

    #[inline]
    pub(crate) fn add(counter: &Padded<AtomicU64>, n: u64) {
        counter.0.fetch_add(n, Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn get(counter: &Padded<AtomicU64>) -> u64 {
        counter.0.load(Ordering::Relaxed)
    }
}

/// A snapshot of an emitter's counters and gauges.
///
/// Counters only grow. After [`shutdown`](crate::Emitter::shutdown) with nothing left over,
/// every accepted event was run: for each handler that matched it, `handled + dead_lettered`
/// account for it (plus `failed` for inline emits, which do not retry).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use flowgate::{Emitter, Event};
/// let emitter = Emitter::<u32>::builder().build()?;
/// emitter.on("tick", |_: Event<u32>| async { Ok(()) })?.detach();
/// emitter.emit(Event::new("tick", 1)?).await?;
/// let stats = emitter.stats();
/// assert_eq!((stats.emitted, stats.handled, stats.failed), (1, 1, 0));
/// assert_eq!(stats.subscriptions, 1);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct EmitterStats {
    /// Emits accepted (inline `emit` calls, and `emit_async` calls that returned `Ok`).
    pub emitted: u64,
    /// Handler invocations that returned `Ok`.
    pub handled: u64,
    /// Handler invocations that failed (returned an error, panicked or timed out).
    pub failed: u64,
    /// Of `failed`, the invocations that panicked.
    pub panicked: u64,
    /// Retries scheduled after a failed invocation (worker pool only).
    pub retried: u64,
    /// Events handed to the dead-letter sink, one per giving-up subscriber.
    pub dead_lettered: u64,
    /// `emit_async` calls refused: queue full, Block wait expired, or shut down.
    pub rejected: u64,
    /// Events waiting in the queue now: at most `queue_capacity`, plus one per idle worker that
    /// an event is being handed to (the channel hands an event straight to a waiting worker).
    pub queued: usize,
    /// Events a worker is handling now.
    pub in_flight: usize,
    /// The queue's bound.
    pub queue_capacity: usize,
    /// Worker tasks in the pool.
    pub workers: usize,
    /// Live subscriptions.
    pub subscriptions: usize,
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::sync::Arc;
    use std::thread;

    use super::{stripe, Striped};

    /// More threads at once than there are stripes (some count through the shared atomic),
    /// then waves of short-lived threads that take over the stripes of exited ones: every
    /// count is kept.
    #[test]
    fn striped_counts_add_up_across_more_threads_than_stripes_and_thread_churn() {
        let counter = Arc::new(Striped::default());
        let at_once: Vec<_> = (0..stripe::STRIPES + 36)
            .map(|_| {
                let counter = Arc::clone(&counter);
                thread::spawn(move || {
                    for _ in 0..1_000 {
                        counter.add(1);
                    }
                })
            })
            .collect();
        for thread in at_once {
            thread.join().unwrap();
        }
        assert_eq!(counter.get(), (stripe::STRIPES as u64 + 36) * 1_000);

        for _wave in 0..20 {
            let wave: Vec<_> = (0..8)
                .map(|_| {
                    let counter = Arc::clone(&counter);
                    thread::spawn(move || {
                        counter.add(3);
                        stripe::current().is_some()
                    })
                })
                .collect();
            for thread in wave {
                assert!(
                    thread.join().unwrap(),
                    "an exited thread's stripe was not given back"
                );
            }
        }
        assert_eq!(
            counter.get(),
            (stripe::STRIPES as u64 + 36) * 1_000 + 20 * 8 * 3
        );
    }
}
