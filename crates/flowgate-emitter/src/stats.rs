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
    /// handled, counted with one update instead of two (the common case; see `run_one`).
    pub(crate) inline_ok: Padded<AtomicU64>,
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
