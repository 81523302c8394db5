//! Counters and the `stats()` snapshots.

use std::time::Duration;

use flowgate_core::sync::atomic::{AtomicU64, Ordering};

/// Counters of one partition, shared by its publishers and its lanes' workers; also the
/// building block of other backends (the Redis one keeps its own per-process figures in one),
/// so that every backend counts, times and traces deliveries the same way.
///
/// Relaxed everywhere: each counter is a tally read only for reporting; no other memory is
/// published through it.
///
/// ```
/// use flowgate::bus::PartitionCounters;
/// let counters = PartitionCounters::new("orders", 3);
/// PartitionCounters::add(&counters.published, 2);
/// let stats = counters.stats();
/// assert_eq!((stats.partition, stats.published), (3, 2));
/// ```
#[derive(Debug, Default)]
pub struct PartitionCounters {
    /// The topic's name: the handle spans' field and the metrics' label.
    pub topic: std::sync::Arc<str>,
    /// This partition's index.
    pub partition: u32,
    /// How long each handler invocation took (feature `metrics`); registered with the
    /// recorder installed when the topic was created.
    #[cfg(feature = "metrics")]
    pub handle_seconds: crate::metrics::HandleHistogram,
    /// Publishes accepted.
    pub published: AtomicU64,
    /// Publishes refused.
    pub rejected: AtomicU64,
    /// Publishes acknowledged as duplicates.
    pub duplicates: AtomicU64,
    /// Deliveries that returned `Ok`.
    pub processed: AtomicU64,
    /// Attempts that failed.
    pub failed: AtomicU64,
    /// Attempts scheduled again.
    pub retried: AtomicU64,
    /// Events dead-lettered.
    pub dead_lettered: AtomicU64,
    /// Deliveries skipped as already handled.
    pub deduplicated: AtomicU64,
    /// Events dropped by a drop policy.
    pub dropped: AtomicU64,
}

impl Counters {
    /// Partition `partition`'s counters of topic `topic` (and its handle-latency histogram,
    /// registered with the current recorder, with the feature `metrics`).
    ///
    /// ```
    /// let counters = flowgate::bus::PartitionCounters::new("orders", 0);
    /// assert_eq!(counters.stats().processed, 0);
    /// ```
    pub fn new(topic: &str, partition: u32) -> Self {
        Self {
            topic: std::sync::Arc::from(topic),
            partition,
            #[cfg(feature = "metrics")]
            handle_seconds: crate::metrics::HandleHistogram::new(topic, partition),
            ..Self::default()
        }
    }

    /// Invokes `handler` for `subscriber`'s attempt `attempt`, inside its `flowgate.handle`
    /// span, timing it into the handle-latency histogram (feature `metrics`).
    ///
    /// # Errors
    ///
    /// The handler's error (a panic is caught and returned as `HandlerError::Panicked`).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), flowgate::CoreError> {
    /// use flowgate::{BoxHandler, Event};
    /// let counters = flowgate::bus::PartitionCounters::new("orders", 0);
    /// let handler = BoxHandler::new(|_: Event<u8>| async { Ok(()) });
    /// assert!(counters.invoke(&handler, "billing", 1, Event::new("e", 1)?).await.is_ok());
    /// # Ok(())
    /// # }
    /// ```
    #[inline]
    pub async fn invoke<T: Send + Sync + 'static>(
        &self,
        handler: &flowgate_core::BoxHandler<T>,
        subscriber: &str,
        attempt: u32,
        event: flowgate_core::Event<T>,
    ) -> flowgate_core::HandlerResult {
        #[cfg(feature = "metrics")]
        let started = std::time::Instant::now();
        let scope = flowgate_core::trace_context::handle_scope(
            &self.topic,
            self.partition,
            subscriber,
            &event,
            attempt,
        );
        let outcome = scope.run(|| flowgate_core::invoke(handler, event)).await;
        #[cfg(feature = "metrics")]
        self.handle_seconds.record(started.elapsed());
        outcome
    }

    /// Adds `n` to `counter` (one of this struct's).
    ///
    /// ```
    /// let counters = flowgate::bus::PartitionCounters::default();
    /// flowgate::bus::PartitionCounters::add(&counters.failed, 1);
    /// assert_eq!(counters.stats().failed, 1);
    /// ```
    #[inline]
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// The counts now, as this partition's figures (depth and in-flight are the backend's to
    /// fill in).
    ///
    /// ```
    /// assert_eq!(flowgate::bus::PartitionCounters::new("t", 1).stats().partition, 1);
    /// ```
    pub fn stats(&self) -> PartitionStats {
        PartitionStats::read(self.partition, self)
    }
}

/// The bus's own name for its partition counters.
pub(crate) type Counters = PartitionCounters;

/// One partition's figures, summed over the topic's subscribers.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use flowgate::bus::Bus;
/// use flowgate::Event;
/// let bus = Bus::new();
/// let topic = bus.topic::<u32>("t").partitions(2).create()?;
/// topic.publish(Event::new("e", 1)?.with_key("k")).await?;
/// let stats = topic.stats();
/// assert_eq!(stats.partitions.len(), 2);
/// assert_eq!(stats.partitions.iter().map(|p| p.published).sum::<u64>(), 1);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PartitionStats {
    /// The partition's index.
    pub partition: u32,
    /// Events queued, over all subscribers' buffers of this partition.
    pub depth: usize,
    /// Deliveries running (or waiting to retry).
    pub in_flight: usize,
    /// Publishes accepted.
    pub published: u64,
    /// Publishes refused (buffer full, wait expired, payload too large, shut down).
    pub rejected: u64,
    /// Publishes acknowledged as duplicates (exactly-once) and not delivered.
    pub duplicates: u64,
    /// Deliveries that returned `Ok`.
    pub processed: u64,
    /// Attempts that failed (returned an error or panicked).
    pub failed: u64,
    /// Attempts scheduled again after a failure.
    pub retried: u64,
    /// Events handed to a dead-letter sink.
    pub dead_lettered: u64,
    /// Deliveries skipped because the subscriber had handled the key `Ok` (exactly-once).
    pub deduplicated: u64,
    /// Events dropped by a drop policy (at-most-once).
    pub dropped: u64,
}

impl PartitionStats {
    pub(crate) fn read(partition: u32, counters: &Counters) -> Self {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Self {
            partition,
            depth: 0,
            in_flight: 0,
            published: get(&counters.published),
            rejected: get(&counters.rejected),
            duplicates: get(&counters.duplicates),
            processed: get(&counters.processed),
            failed: get(&counters.failed),
            retried: get(&counters.retried),
            dead_lettered: get(&counters.dead_lettered),
            deduplicated: get(&counters.deduplicated),
            dropped: get(&counters.dropped),
        }
    }

    fn accumulate(&mut self, other: &Self) {
        self.depth += other.depth;
        self.in_flight += other.in_flight;
        self.published += other.published;
        self.rejected += other.rejected;
        self.duplicates += other.duplicates;
        self.processed += other.processed;
        self.failed += other.failed;
        self.retried += other.retried;
        self.dead_lettered += other.dead_lettered;
        self.deduplicated += other.deduplicated;
        self.dropped += other.dropped;
    }
}

/// An exactly-once topic's dedupe window, as bounded and as used.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use flowgate::bus::{Bus, DedupeWindowConfig};
/// use flowgate::{Event, RetryPolicy};
/// let bus = Bus::new();
/// let window = DedupeWindowConfig::new(1_000, Duration::from_secs(60));
/// let payments = bus.topic::<u64>("payments").exactly_once(RetryPolicy::default(), window).create()?;
/// for id in ["pay-1", "pay-2", "pay-1"] {
///     payments.publish(Event::new("paid", 10)?.with_idempotency_key(id)).await?;
/// }
/// let dedupe = payments.stats().dedupe.unwrap();
/// assert_eq!((dedupe.keys, dedupe.max_keys, dedupe.max_age), (2, 1_000, Duration::from_secs(60)));
/// assert_eq!(dedupe.evicted, 0, "the window is large enough");
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DedupeStats {
    /// Keys remembered now.
    pub keys: usize,
    /// The most it remembers.
    pub max_keys: usize,
    /// How long it remembers a key.
    pub max_age: Duration,
    /// Keys forgotten before `max_age` because the window was full: a duplicate of one of
    /// them would be delivered again. Non-zero means the window is too small for the load.
    pub evicted: u64,
}

impl DedupeStats {
    /// A window's figures (for backends that build their own).
    ///
    /// ```
    /// use std::time::Duration;
    /// use flowgate::bus::DedupeStats;
    /// let window = DedupeStats::new(2, 1_000, Duration::from_secs(60), 0);
    /// assert_eq!((window.keys, window.max_keys, window.evicted), (2, 1_000, 0));
    /// ```
    pub fn new(keys: usize, max_keys: usize, max_age: Duration, evicted: u64) -> Self {
        Self {
            keys,
            max_keys,
            max_age,
            evicted,
        }
    }
}

/// A topic's figures: per partition, and summed.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use flowgate::{Bus, Event};
/// let bus = Bus::new();
/// let orders = bus.topic::<u32>("orders").partitions(2).create()?;
/// let _billing = orders.subscribe("billing", |_: Event<u32>| async { Ok(()) }).start()?;
/// for key in ["a", "b", "c"] {
///     orders.publish(Event::new("placed", 1)?.with_key(key)).await?;
/// }
/// bus.shutdown(Duration::from_secs(1)).await;
/// let stats = orders.stats();
/// assert_eq!((stats.topic.as_str(), stats.mode, stats.subscribers), ("orders", "at-least-once", 1));
/// assert_eq!(stats.total.processed, 3);
/// assert_eq!(stats.partitions.iter().map(|p| p.processed).sum::<u64>(), 3);
/// assert_eq!((stats.depth, stats.in_flight), (0, 0), "drained");
/// assert!(stats.dedupe.is_none(), "not an exactly-once topic");
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TopicStats {
    /// The topic's name.
    pub topic: String,
    /// The delivery mode's name.
    pub mode: &'static str,
    /// Subscribers (consumer groups count once).
    pub subscribers: usize,
    /// The partitions' figures summed (its `partition` field is 0).
    pub total: PartitionStats,
    /// Each partition's figures.
    pub partitions: Vec<PartitionStats>,
    /// The dedupe window (exactly-once topics).
    pub dedupe: Option<DedupeStats>,
    /// Events queued in all partitions (same as `total.depth`).
    pub depth: usize,
    /// Deliveries running (same as `total.in_flight`).
    pub in_flight: usize,
}

impl TopicStats {
    /// A topic's figures from each partition's (for backends that build their own): the
    /// totals are summed here.
    ///
    /// ```
    /// use flowgate::bus::{PartitionStats, TopicStats};
    /// let partitions: Vec<PartitionStats> = (0..2)
    ///     .map(|partition| {
    ///         let mut p = PartitionStats::default();
    ///         (p.partition, p.published, p.depth) = (partition, 5, 1);
    ///         p
    ///     })
    ///     .collect();
    /// let stats = TopicStats::new("orders".into(), "at-least-once", 1, partitions, None);
    /// assert_eq!((stats.total.published, stats.depth), (10, 2));
    /// ```
    pub fn new(
        topic: String,
        mode: &'static str,
        subscribers: usize,
        partitions: Vec<PartitionStats>,
        dedupe: Option<DedupeStats>,
    ) -> Self {
        let mut total = PartitionStats::default();
        for p in &partitions {
            total.accumulate(p);
        }
        Self {
            topic,
            mode,
            subscribers,
            depth: total.depth,
            in_flight: total.in_flight,
            total,
            partitions,
            dedupe,
        }
    }
}
