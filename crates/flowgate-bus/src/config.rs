//! A topic's settings and their validation.

use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use flowgate_core::RetryPolicy;

use crate::error::BusError;

/// What a topic promises each subscriber (or consumer group) for every accepted event.
///
/// The exact meaning is the contract table in the crate docs.
///
/// ```
/// use std::time::Duration;
/// use flowgate::bus::{DedupeWindowConfig, DeliveryMode};
/// use flowgate::{Bus, RetryPolicy};
/// let bus = Bus::new();
/// let retry = RetryPolicy::exponential(5, Duration::from_millis(10));
/// let metrics = bus.topic::<u64>("metrics").mode(DeliveryMode::AtMostOnce).create()?;
/// let payments = bus
///     .topic::<u64>("payments")
///     .mode(DeliveryMode::ExactlyOnce(retry, DedupeWindowConfig::default()))
///     .create()?;
/// assert_eq!(metrics.stats().mode, "at-most-once");
/// assert_eq!(payments.stats().mode, "exactly-once");
/// assert!(payments.stats().dedupe.is_some(), "only exactly-once keeps a dedupe window");
/// # Ok::<(), flowgate::bus::BusError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum DeliveryMode {
    /// Invoked at most once; failures are counted, never retried.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use flowgate::bus::DeliveryMode;
    /// use flowgate::{Bus, Event, HandlerError};
    /// let bus = Bus::new();
    /// let topic = bus.topic::<u32>("metrics").mode(DeliveryMode::AtMostOnce).create()?;
    /// let _sub = topic
    ///     .subscribe("flaky", |_: Event<u32>| async { Err(HandlerError::retryable("down")) })
    ///     .start()?;
    /// topic.publish(Event::new("sample", 1)?).await?;
    /// bus.shutdown(Duration::from_secs(1)).await;
    /// let total = topic.stats().total;
    /// assert_eq!((total.failed, total.retried, total.dead_lettered), (1, 0, 0));
    /// # Ok(())
    /// # }
    /// ```
    AtMostOnce,
    /// Invoked until `Ok`; after the retry policy gives up (or on a permanent error) the event
    /// goes to the subscriber's dead-letter sink with the error and attempt count.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use flowgate::bus::DeliveryMode;
    /// use flowgate::{Bus, Event, HandlerError, RetryPolicy};
    /// let bus = Bus::new();
    /// let retry = RetryPolicy::exponential(5, Duration::from_millis(100));
    /// let topic = bus.topic::<u32>("jobs").mode(DeliveryMode::AtLeastOnce(retry)).create()?;
    /// let calls = Arc::new(AtomicU32::new(0));
    /// let count = Arc::clone(&calls);
    /// let _sub = topic
    ///     .subscribe("flaky", move |_: Event<u32>| {
    ///         let attempt = count.fetch_add(1, Ordering::Relaxed) + 1;
    ///         async move {
    ///             if attempt < 3 {
    ///                 return Err(HandlerError::retryable("down"));
    ///             }
    ///             Ok(())
    ///         }
    ///     })
    ///     .start()?;
    /// topic.publish(Event::new("job", 1)?).await?;
    /// bus.shutdown(Duration::from_secs(5)).await;
    /// let total = topic.stats().total;
    /// assert_eq!((total.retried, total.processed), (2, 1), "fails twice, then succeeds");
    /// # Ok(())
    /// # }
    /// ```
    AtLeastOnce(RetryPolicy),
    /// At-least-once, plus deduplication by idempotency key within the window: a duplicate
    /// publish is acknowledged and not delivered, and a subscriber that handled a key `Ok` is
    /// not invoked for it again.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use flowgate::bus::{DedupeWindowConfig, DeliveryMode};
    /// use flowgate::{Bus, Event, RetryPolicy};
    /// let bus = Bus::new();
    /// let mode = DeliveryMode::ExactlyOnce(RetryPolicy::default(), DedupeWindowConfig::default());
    /// let topic = bus.topic::<u64>("payments").mode(mode).create()?;
    /// let _ledger = topic.subscribe("ledger", |_: Event<u64>| async { Ok(()) }).start()?;
    /// let first = topic.publish(Event::new("paid", 10)?.with_idempotency_key("pay-1")).await?;
    /// let retry = topic.publish(Event::new("paid", 10)?.with_idempotency_key("pay-1")).await?;
    /// assert!(!first.duplicate && retry.duplicate);
    /// bus.shutdown(Duration::from_secs(1)).await;
    /// assert_eq!(topic.stats().total.processed, 1, "the ledger saw the payment once");
    /// # Ok(())
    /// # }
    /// ```
    ExactlyOnce(RetryPolicy, DedupeWindowConfig),
}

impl DeliveryMode {
    /// The short name used in stats and logs.
    ///
    /// ```
    /// use flowgate::bus::DeliveryMode;
    /// assert_eq!(DeliveryMode::AtMostOnce.name(), "at-most-once");
    /// ```
    pub fn name(&self) -> &'static str {
        match self {
            Self::AtMostOnce => "at-most-once",
            Self::AtLeastOnce(_) => "at-least-once",
            Self::ExactlyOnce(..) => "exactly-once",
        }
    }

    /// The retry policy (at-least-once and exactly-once).
    ///
    /// ```
    /// use flowgate::bus::DeliveryMode;
    /// use flowgate::RetryPolicy;
    /// assert!(DeliveryMode::AtMostOnce.retry().is_none());
    /// assert!(DeliveryMode::AtLeastOnce(RetryPolicy::never()).retry().is_some());
    /// ```
    pub fn retry(&self) -> Option<&RetryPolicy> {
        match self {
            Self::AtMostOnce => None,
            Self::AtLeastOnce(retry) | Self::ExactlyOnce(retry, _) => Some(retry),
        }
    }

    /// The dedupe window (exactly-once).
    ///
    /// ```
    /// use flowgate::bus::{DedupeWindowConfig, DeliveryMode};
    /// use flowgate::RetryPolicy;
    /// let mode = DeliveryMode::ExactlyOnce(RetryPolicy::never(), DedupeWindowConfig::default());
    /// assert_eq!(mode.dedupe(), Some(&DedupeWindowConfig::default()));
    /// assert!(DeliveryMode::AtMostOnce.dedupe().is_none());
    /// ```
    pub fn dedupe(&self) -> Option<&DedupeWindowConfig> {
        match self {
            Self::ExactlyOnce(_, window) => Some(window),
            _ => None,
        }
    }
}

/// How long and how many idempotency keys an exactly-once topic remembers.
///
/// The window is bounded both ways: a key is forgotten when it is older than `max_age`, or
/// when the window is full. The window is split by key into up to 16 shards of
/// `max_keys / 16` keys (so that concurrent workers rarely share a lock); a full shard forgets
/// its oldest key first, so a key is kept at least until about `max_keys` newer keys arrived
/// (at least `max_keys / 16` in the worst case). Early forgetting is counted in the topic's
/// stats (`dedupe.evicted`), so an undersized window shows: size it with a margin.
///
/// ```
/// use std::time::Duration;
/// use flowgate::bus::DedupeWindowConfig;
/// let window = DedupeWindowConfig::new(100_000, Duration::from_secs(600));
/// assert_eq!(window.max_keys, 100_000);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DedupeWindowConfig {
    /// The most keys remembered at once.
    pub max_keys: usize,
    /// How long a key is remembered.
    pub max_age: Duration,
}

impl DedupeWindowConfig {
    /// A window of at most `max_keys` keys, each kept at most `max_age`. Both must be above
    /// zero; the topic builder refuses an empty window.
    ///
    /// ```
    /// use std::time::Duration;
    /// use flowgate::bus::{BusError, DedupeWindowConfig};
    /// use flowgate::{Bus, RetryPolicy};
    /// let bus = Bus::new();
    /// let hour = DedupeWindowConfig::new(50_000, Duration::from_secs(3600));
    /// let topic = bus.topic::<u64>("payments").exactly_once(RetryPolicy::default(), hour).create()?;
    /// assert_eq!(topic.stats().dedupe.map(|d| d.max_age), Some(Duration::from_secs(3600)));
    /// let empty = DedupeWindowConfig::new(0, Duration::from_secs(60));
    /// let refused = bus.topic::<u64>("refunds").exactly_once(RetryPolicy::default(), empty).create();
    /// assert!(matches!(refused, Err(BusError::InvalidConfig { what: "dedupe window", .. })));
    /// # Ok::<(), BusError>(())
    /// ```
    pub fn new(max_keys: usize, max_age: Duration) -> Self {
        Self { max_keys, max_age }
    }
}

impl Default for DedupeWindowConfig {
    /// 10,000 keys, 5 minutes.
    ///
    /// ```
    /// use std::time::Duration;
    /// use flowgate::bus::DedupeWindowConfig;
    /// let window = DedupeWindowConfig::default();
    /// assert_eq!((window.max_keys, window.max_age), (10_000, Duration::from_secs(300)));
    /// ```
    fn default() -> Self {
        Self::new(10_000, Duration::from_secs(300))
    }
}

/// What `publish` does when a partition's buffer is full.
///
/// `Block` and `Reject` suit every mode; the drop policies lose accepted events, so only an
/// at-most-once topic takes them.
///
/// ```
/// use std::time::Duration;
/// use flowgate::bus::{Backpressure, BusError};
/// let bus = flowgate::Bus::new();
/// let wait = Backpressure::Block { max_wait: Some(Duration::from_millis(100)) };
/// let orders = bus.topic::<u64>("orders").backpressure(wait).create()?;
/// assert_eq!(orders.config().backpressure, wait);
/// let lossy = bus.topic::<u64>("payments").backpressure(Backpressure::DropOldest).create();
/// assert!(matches!(lossy, Err(BusError::InvalidConfig { what: "backpressure", .. })));
/// # Ok::<(), BusError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Backpressure {
    /// Wait for room, at most `max_wait` (`None`: as long as it takes), then
    /// [`PublishError::Timeout`](crate::PublishError::Timeout).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use flowgate::bus::{Backpressure, Bus, PublishError};
    /// use flowgate::Event;
    /// let bus = Bus::new();
    /// let wait = Backpressure::Block { max_wait: Some(Duration::from_millis(50)) };
    /// let topic = bus.topic::<u32>("jobs").capacity(1).backpressure(wait).create()?;
    /// let _stuck = topic.subscribe("stuck", |_: Event<u32>| std::future::pending()).start()?;
    /// topic.publish(Event::new("job", 1)?).await?; // runs (forever)
    /// # while topic.stats().in_flight < 1 { tokio::task::yield_now().await; }
    /// topic.publish(Event::new("job", 2)?).await?; // fills the buffer
    /// let refused = topic.publish(Event::new("job", 3)?).await.unwrap_err();
    /// assert!(matches!(refused, PublishError::Timeout(_, waited) if waited == Duration::from_millis(50)));
    /// # Ok(())
    /// # }
    /// ```
    Block {
        /// The longest a publish waits.
        max_wait: Option<Duration>,
    },
    /// Refuse at once with [`PublishError::Full`](crate::PublishError::Full).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use flowgate::bus::{Backpressure, Bus, PublishError};
    /// use flowgate::Event;
    /// let bus = Bus::new();
    /// let topic = bus.topic::<u32>("jobs").capacity(1).backpressure(Backpressure::Reject).create()?;
    /// let _stuck = topic.subscribe("stuck", |_: Event<u32>| std::future::pending()).start()?;
    /// topic.publish(Event::new("job", 1)?).await?;
    /// # while topic.stats().in_flight < 1 { tokio::task::yield_now().await; }
    /// topic.publish(Event::new("job", 2)?).await?;
    /// let refused = topic.publish(Event::new("job", 3)?).await;
    /// assert!(matches!(refused, Err(PublishError::Full(_))));
    /// assert_eq!(topic.stats().total.rejected, 1);
    /// # Ok(())
    /// # }
    /// ```
    Reject,
    /// At-most-once topics only: make room by dropping the oldest queued event of that
    /// subscriber's partition buffer (counted in `dropped`).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use flowgate::bus::{Backpressure, Bus};
    /// use flowgate::Event;
    /// let bus = Bus::new();
    /// let topic = bus
    ///     .topic::<u32>("ticks")
    ///     .at_most_once()
    ///     .capacity(1)
    ///     .backpressure(Backpressure::DropOldest)
    ///     .create()?;
    /// let _stuck = topic.subscribe("stuck", |_: Event<u32>| std::future::pending()).start()?;
    /// topic.publish(Event::new("tick", 1)?).await?;
    /// # while topic.stats().in_flight < 1 { tokio::task::yield_now().await; }
    /// topic.publish(Event::new("tick", 2)?).await?;
    /// topic.publish(Event::new("tick", 3)?).await?; // accepted: 2 is dropped for it
    /// assert_eq!(topic.stats().total.dropped, 1);
    /// let report = bus.shutdown(Duration::from_millis(10)).await;
    /// assert_eq!(report.not_delivered(), 2, "1 was cut off, 3 was still queued");
    /// # Ok(())
    /// # }
    /// ```
    DropOldest,
    /// At-most-once topics only: accept the publish but do not queue it for a subscriber whose
    /// partition buffer is full (counted in `dropped`).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use flowgate::bus::{Backpressure, Bus};
    /// use flowgate::Event;
    /// let bus = Bus::new();
    /// let topic = bus
    ///     .topic::<u32>("ticks")
    ///     .at_most_once()
    ///     .capacity(1)
    ///     .backpressure(Backpressure::DropNewest)
    ///     .create()?;
    /// let _stuck = topic.subscribe("stuck", |_: Event<u32>| std::future::pending()).start()?;
    /// topic.publish(Event::new("tick", 1)?).await?;
    /// # while topic.stats().in_flight < 1 { tokio::task::yield_now().await; }
    /// topic.publish(Event::new("tick", 2)?).await?;
    /// topic.publish(Event::new("tick", 3)?).await?; // accepted, not queued
    /// let stats = topic.stats();
    /// assert_eq!((stats.total.published, stats.total.dropped, stats.depth), (3, 1, 1));
    /// # Ok(())
    /// # }
    /// ```
    DropNewest,
}

impl Default for Backpressure {
    /// `Block` with no time limit.
    ///
    /// ```
    /// use flowgate::bus::Backpressure;
    /// assert_eq!(Backpressure::default(), Backpressure::Block { max_wait: None });
    /// ```
    fn default() -> Self {
        Self::Block { max_wait: None }
    }
}

/// Measures a payload for the topic's size limit (the in-process bus never serializes).
pub(crate) type SizeOf<T> = Arc<dyn Fn(&T) -> usize + Send + Sync>;

/// A validated topic configuration; built by [`TopicBuilder`](crate::TopicBuilder).
///
/// ```
/// use flowgate::bus::{Backpressure, DeliveryMode};
/// let bus = flowgate::Bus::new();
/// let topic = bus.topic::<u64>("ticks").partitions(4).capacity(64).at_most_once().create()?;
/// let config = topic.config();
/// assert_eq!((config.partitions.get(), config.capacity, config.concurrency), (4, 64, 1));
/// assert_eq!(config.mode, DeliveryMode::AtMostOnce);
/// assert_eq!(config.backpressure, Backpressure::default());
/// # Ok::<(), flowgate::bus::BusError>(())
/// ```
#[non_exhaustive]
pub struct TopicConfig<T> {
    /// Number of partitions, fixed for the topic's life.
    pub partitions: NonZeroU32,
    /// Events each subscriber's partition buffer holds (not counting in-flight ones).
    pub capacity: usize,
    /// At most this many deliveries of one partition run at once, per subscriber.
    pub concurrency: usize,
    /// The delivery promise.
    pub mode: DeliveryMode,
    /// What a publish does when a buffer is full.
    pub backpressure: Backpressure,
    /// The payload size limit, and how to measure it.
    pub(crate) max_payload: Option<(usize, SizeOf<T>)>,
}

impl<T> TopicConfig<T> {
    /// The payload size limit, if any.
    ///
    /// ```
    /// let bus = flowgate::Bus::new();
    /// let notes = bus.topic::<String>("notes").max_payload_size(256, String::len).create()?;
    /// assert_eq!(notes.config().max_payload_size(), Some(256));
    /// assert_eq!(bus.topic::<String>("logs").create()?.config().max_payload_size(), None);
    /// # Ok::<(), flowgate::bus::BusError>(())
    /// ```
    pub fn max_payload_size(&self) -> Option<usize> {
        self.max_payload.as_ref().map(|(limit, _)| *limit)
    }
}

impl<T> Clone for TopicConfig<T> {
    fn clone(&self) -> Self {
        Self {
            partitions: self.partitions,
            capacity: self.capacity,
            concurrency: self.concurrency,
            mode: self.mode.clone(),
            backpressure: self.backpressure,
            max_payload: self.max_payload.clone(),
        }
    }
}

impl<T> fmt::Debug for TopicConfig<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TopicConfig")
            .field("partitions", &self.partitions)
            .field("capacity", &self.capacity)
            .field("concurrency", &self.concurrency)
            .field("mode", &self.mode)
            .field("backpressure", &self.backpressure)
            .field("max_payload_size", &self.max_payload_size())
            .finish_non_exhaustive()
    }
}

/// The settings as the builder collects them, before validation.
pub(crate) struct RawConfig<T> {
    pub(crate) partitions: u32,
    pub(crate) capacity: usize,
    pub(crate) concurrency: usize,
    pub(crate) mode: DeliveryMode,
    pub(crate) backpressure: Backpressure,
    pub(crate) max_payload: Option<(usize, SizeOf<T>)>,
}

impl<T> Default for RawConfig<T> {
    fn default() -> Self {
        Self {
            partitions: 1,
            capacity: 1024,
            concurrency: 1,
            mode: DeliveryMode::AtLeastOnce(RetryPolicy::default()),
            backpressure: Backpressure::default(),
            max_payload: None,
        }
    }
}

/// The largest partition count accepted: each partition costs one worker task per subscriber.
///
/// ```
/// use flowgate::bus::{BusError, MAX_PARTITIONS};
/// let bus = flowgate::Bus::new();
/// assert!(bus.topic::<u8>("wide").partitions(MAX_PARTITIONS).create().is_ok());
/// let too_wide = bus.topic::<u8>("wider").partitions(MAX_PARTITIONS + 1).create();
/// assert!(matches!(too_wide, Err(BusError::InvalidConfig { what: "partitions", .. })));
/// ```
pub const MAX_PARTITIONS: u32 = 4096;

impl<T> RawConfig<T> {
    pub(crate) fn validate(self) -> Result<TopicConfig<T>, BusError> {
        let invalid = |what, reason: String| Err(BusError::InvalidConfig { what, reason });
        let Some(partitions) = NonZeroU32::new(self.partitions) else {
            return invalid(
                "partitions",
                "0 partitions: a topic needs at least 1".into(),
            );
        };
        if self.partitions > MAX_PARTITIONS {
            return invalid(
                "partitions",
                format!(
                    "{} partitions: at most {MAX_PARTITIONS} are supported",
                    self.partitions
                ),
            );
        }
        if self.capacity == 0 {
            return invalid(
                "capacity",
                "0: each partition buffer must hold at least 1 event".into(),
            );
        }
        if self.concurrency == 0 {
            return invalid(
                "concurrency",
                "0: at least 1 delivery per partition must be allowed to run".into(),
            );
        }
        if let Some(retry) = self.mode.retry() {
            retry.validate()?;
        }
        if let Some(window) = self.mode.dedupe() {
            if window.max_keys == 0 || window.max_age.is_zero() {
                return invalid(
                    "dedupe window",
                    format!("{window:?}: both max_keys and max_age must be above zero"),
                );
            }
        }
        if matches!(
            self.backpressure,
            Backpressure::DropOldest | Backpressure::DropNewest
        ) && self.mode != DeliveryMode::AtMostOnce
        {
            return invalid(
                "backpressure",
                format!(
                    "{:?} drops accepted events, which a {} topic promises never to do; use Block or Reject",
                    self.backpressure,
                    self.mode.name()
                ),
            );
        }
        if let Some((0, _)) = self.max_payload {
            return invalid(
                "max payload size",
                "0: no payload would fit; remove the limit or raise it".into(),
            );
        }
        Ok(TopicConfig {
            partitions,
            capacity: self.capacity,
            concurrency: self.concurrency,
            mode: self.mode,
            backpressure: self.backpressure,
            max_payload: self.max_payload,
        })
    }
}
