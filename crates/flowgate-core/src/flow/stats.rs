//! What an operator did: counters shared between the operator (the only writer) and any number
//! of [`FlowMeter`] readers.
//!
//! Invariant: every item an operator took from its input is in exactly one of `passed`,
//! `coalesced`, `dropped` or `pending`, so `received == passed + coalesced + dropped + pending`
//! holds in a snapshot taken between two polls by the task polling the operator, and in any
//! snapshot taken after the output ended by a reader that synchronized with that task (joined
//! it, or was told through a channel). The counters are `Relaxed`: a snapshot taken by another
//! thread while the operator runs may be off by the items in motion.

use std::fmt;

use crate::sync::atomic::{AtomicU64, Ordering};
use crate::sync::Arc;

/// A snapshot of one operator's counts, from [`FlowMeter::stats`].
///
/// Every item the operator received is accounted for exactly once:
/// `received == passed + coalesced + dropped + pending` (see [`balanced`](Self::balanced)).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), flowgate::CoreError> {
/// use futures_util::{stream, StreamExt};
/// use flowgate::flow::{FlowExt, Sampling};
/// let sampled = stream::iter(1..=10).sample(Sampling::every_nth(3))?;
/// let meter = sampled.meter();
/// assert_eq!(sampled.collect::<Vec<_>>().await, [1, 4, 7, 10]);
/// let stats = meter.stats();
/// assert_eq!((stats.received, stats.passed, stats.dropped), (10, 4, 6));
/// assert!(stats.balanced());
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FlowStats {
    /// Items taken from the input stream.
    pub received: u64,
    /// Items handed on (for a batcher: items inside the batches it handed on).
    pub passed: u64,
    /// Items replaced by a later item of the same key and never handed on (debounce).
    pub coalesced: u64,
    /// Items refused or sampled out, never handed on (rate limit `Refuse`, sampling).
    pub dropped: u64,
    /// Items handed on later than they arrived because of the operator (rate limit `Wait`).
    pub delayed: u64,
    /// Total time the delayed items waited, in nanoseconds.
    pub delayed_nanos: u64,
    /// Outputs the operator produced (batches for a batcher; items for the others).
    pub outputs: u64,
    /// Outputs handed on before their time: a debounced key or a batch flushed because its
    /// input ended, or a debounced key flushed to make room under the key bound.
    pub flushed_early: u64,
    /// Key states forgotten while still limiting, to stay under the key bound (rate limit).
    pub evicted_keys: u64,
    /// Items held by the operator now, not yet handed on.
    pub pending: u64,
    /// Keys the operator keeps state for now.
    pub keys: u64,
}

impl FlowStats {
    /// Whether every received item is accounted for once:
    /// `received == passed + coalesced + dropped + pending`.
    ///
    /// ```
    /// let stats = flowgate::flow::FlowStats::default();
    /// assert!(stats.balanced());
    /// ```
    pub fn balanced(&self) -> bool {
        self.received == self.passed + self.coalesced + self.dropped + self.pending
    }
}

/// A handle on one operator's counters; clones share them. Take it with the operator's
/// `meter()` before the stream moves into the task that drives it.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), flowgate::CoreError> {
/// use std::time::Duration;
/// use futures_util::{stream, StreamExt};
/// use flowgate::flow::{Batching, FlowExt};
/// let batches = stream::iter(0..5).batch(Batching::new(2, Duration::from_secs(1)))?;
/// let meter = batches.meter();
/// let sizes = tokio::spawn(batches.map(|batch| batch.len()).collect::<Vec<_>>());
/// assert_eq!(sizes.await.unwrap(), [2, 2, 1]);
/// let stats = meter.stats();
/// assert_eq!((stats.passed, stats.outputs, stats.flushed_early), (5, 3, 1));
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Default)]
pub struct FlowMeter {
    counters: Arc<Counters>,
}

/// The counters behind a [`FlowMeter`]. Written only by the operator that owns them, from the
/// task polling it; read by any meter. All accesses are `Relaxed`: each counter is a
/// statistic on its own, and no other memory is published through them.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) received: AtomicU64,
    pub(crate) passed: AtomicU64,
    pub(crate) coalesced: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) delayed: AtomicU64,
    pub(crate) delayed_nanos: AtomicU64,
    pub(crate) outputs: AtomicU64,
    pub(crate) flushed_early: AtomicU64,
    pub(crate) evicted_keys: AtomicU64,
    pub(crate) pending: AtomicU64,
    pub(crate) keys: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn set(counter: &AtomicU64, n: u64) {
        counter.store(n, Ordering::Relaxed);
    }
}

impl FlowMeter {
    pub(crate) fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The counts now.
    ///
    /// ```
    /// let meter = flowgate::flow::FlowMeter::default();
    /// assert_eq!(meter.stats().received, 0);
    /// ```
    pub fn stats(&self) -> FlowStats {
        let c = &*self.counters;
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        FlowStats {
            received: get(&c.received),
            passed: get(&c.passed),
            coalesced: get(&c.coalesced),
            dropped: get(&c.dropped),
            delayed: get(&c.delayed),
            delayed_nanos: get(&c.delayed_nanos),
            outputs: get(&c.outputs),
            flushed_early: get(&c.flushed_early),
            evicted_keys: get(&c.evicted_keys),
            pending: get(&c.pending),
            keys: get(&c.keys),
        }
    }
}

impl fmt::Debug for FlowMeter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("FlowMeter").field(&self.stats()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::FlowStats;

    #[test]
    fn balanced_catches_an_item_counted_twice_or_not_at_all() {
        let good = FlowStats {
            received: 10,
            passed: 4,
            coalesced: 3,
            dropped: 2,
            pending: 1,
            ..FlowStats::default()
        };
        assert!(good.balanced());
        let lost = FlowStats { passed: 3, ..good };
        assert!(!lost.balanced(), "an item neither passed nor held");
        let twice = FlowStats { dropped: 3, ..good };
        assert!(!twice.balanced(), "an item counted twice");
    }
}
