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
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum DeliveryMode {
    /// Invoked at most once; failures are counted, never retried.
    AtMostOnce,
    /// Invoked until `Ok`; after the retry policy gives up (or on a permanent error) the event
    /// goes to the subscriber's dead-letter sink with the error and attempt count.
    AtLeastOnce(RetryPolicy),
    /// At-least-once, plus deduplication by idempotency key within the window: a duplicate
    /// publish is acknowledged and not delivered, and a subscriber that handled a key `Ok` is
    /// not invoked for it again.
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

    pub(crate) fn retry(&self) -> Option<&RetryPolicy> {
        match self {
            Self::AtMostOnce => None,
            Self::AtLeastOnce(retry) | Self::ExactlyOnce(retry, _) => Some(retry),
        }
    }

    pub(crate) fn dedupe(&self) -> Option<&DedupeWindowConfig> {
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
    /// A window of at most `max_keys` keys, each kept at most `max_age`.
    pub fn new(max_keys: usize, max_age: Duration) -> Self {
        Self { max_keys, max_age }
    }
}

impl Default for DedupeWindowConfig {
    /// 10,000 keys, 5 minutes.
    fn default() -> Self {
        Self::new(10_000, Duration::from_secs(300))
    }
}

/// What `publish` does when a partition's buffer is full.
///
/// ```
/// use std::time::Duration;
/// use flowgate::bus::Backpressure;
/// let wait = Backpressure::Block { max_wait: Some(Duration::from_millis(100)) };
/// assert_ne!(wait, Backpressure::Reject);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Backpressure {
    /// Wait for room, at most `max_wait` (`None`: as long as it takes), then
    /// [`PublishError::Timeout`](crate::PublishError::Timeout).
    Block {
        /// The longest a publish waits.
        max_wait: Option<Duration>,
    },
    /// Refuse at once with [`PublishError::Full`](crate::PublishError::Full).
    Reject,
    /// At-most-once topics only: make room by dropping the oldest queued event of that
    /// subscriber's partition buffer (counted in `dropped`).
    DropOldest,
    /// At-most-once topics only: accept the publish but do not queue it for a subscriber whose
    /// partition buffer is full (counted in `dropped`).
    DropNewest,
}

impl Default for Backpressure {
    /// `Block` with no time limit.
    fn default() -> Self {
        Self::Block { max_wait: None }
    }
}

/// Measures a payload for the topic's size limit (the in-process bus never serializes).
pub(crate) type SizeOf<T> = Arc<dyn Fn(&T) -> usize + Send + Sync>;

/// A validated topic configuration; built by [`TopicBuilder`](crate::TopicBuilder).
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
