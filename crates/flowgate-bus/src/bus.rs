//! The bus: a registry of typed topics, and the shutdown of all of them.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use std::sync::Arc;

use flowgate_core::sync::Mutex;
use flowgate_core::{BoxHandler, EventType, Handler, LogDeadLetters, RetryPolicy};
use tokio::time::Instant;

use crate::config::{Backpressure, DedupeWindowConfig, DeliveryMode, RawConfig};
use crate::error::BusError;
use crate::pattern::{AnyPattern, PatternSubscriptionBuilder};
use crate::stats::TopicStats;
use crate::topic::{Topic, TopicReport};

/// A topic with its payload type erased, as the bus keeps it.
trait AnyTopic: Send + Sync {
    fn payload_type(&self) -> TypeId;
    fn as_any(&self) -> &dyn Any;
    fn stats(&self) -> TopicStats;
    #[cfg(feature = "metrics")]
    fn report_metrics(&self);
    fn close(&self);
    fn drain_until(
        &self,
        deadline: Instant,
    ) -> Pin<Box<dyn Future<Output = ErasedReport> + Send + '_>>;
}

impl<T: Send + Sync + 'static> AnyTopic for Topic<T> {
    fn payload_type(&self) -> TypeId {
        TypeId::of::<T>()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn stats(&self) -> TopicStats {
        Topic::stats(self)
    }

    #[cfg(feature = "metrics")]
    fn report_metrics(&self) {
        Topic::report_metrics(self);
    }

    fn close(&self) {
        Topic::close(self);
    }

    fn drain_until(
        &self,
        deadline: Instant,
    ) -> Pin<Box<dyn Future<Output = ErasedReport> + Send + '_>> {
        Box::pin(async move {
            let report = Topic::drain_until(self, deadline).await;
            ErasedReport {
                topic: self.name().to_owned(),
                not_delivered: report.not_delivered,
                deadline_expired: report.deadline_expired,
                typed: Box::new(report),
            }
        })
    }
}

struct ErasedReport {
    topic: String,
    not_delivered: usize,
    deadline_expired: bool,
    typed: Box<dyn Any + Send>,
}

#[derive(Default)]
struct BusInner {
    topics: Mutex<Topics>,
}

#[derive(Default)]
struct Topics {
    by_name: HashMap<String, Arc<dyn AnyTopic>>,
    /// Pattern subscriptions: offered every topic created.
    patterns: Vec<Arc<dyn AnyPattern>>,
    closed: bool,
}

/// The in-process bus: named topics, each with its payload type, partitions and delivery mode.
///
/// Cheap to clone; clones share the topics.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use flowgate::{Bus, Event, RetryPolicy};
/// let bus = Bus::new();
/// let orders = bus
///     .topic::<u64>("orders")
///     .partitions(8)
///     .concurrency(4)
///     .at_least_once(RetryPolicy::exponential(5, Duration::from_millis(50)))
///     .create()?;
/// let _billing = orders
///     .subscribe("billing", |order: Event<u64>| async move {
///         println!("charging order {}", order.payload());
///         Ok(())
///     })
///     .start()?;
/// orders.publish(Event::new("order.placed", 42)?.with_key("order-42")).await?;
/// let report = bus.shutdown(Duration::from_secs(5)).await;
/// assert_eq!(report.not_delivered(), 0);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Default)]
pub struct Bus {
    inner: Arc<BusInner>,
}

impl Bus {
    /// An empty bus.
    ///
    /// ```
    /// let bus = flowgate::Bus::new();
    /// assert!(bus.stats().is_empty());
    /// let clone = bus.clone();
    /// clone.topic::<u32>("jobs").create()?;
    /// assert!(bus.get::<u32>("jobs").is_some(), "clones share the topics");
    /// # Ok::<(), flowgate::bus::BusError>(())
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts building topic `name` with payload type `T`; [`TopicBuilder::create`] makes it.
    ///
    /// A name is taken once per bus, whatever the payload type.
    ///
    /// ```
    /// use flowgate::bus::BusError;
    /// let bus = flowgate::Bus::new();
    /// let jobs = bus.topic::<u32>("jobs").partitions(2).create()?;
    /// assert_eq!(jobs.stats().partitions.len(), 2);
    /// let again = bus.topic::<String>("jobs").create();
    /// assert!(matches!(again, Err(BusError::TopicExists { .. })));
    /// # Ok::<(), BusError>(())
    /// ```
    pub fn topic<T: Send + Sync + 'static>(&self, name: impl Into<String>) -> TopicBuilder<T> {
        TopicBuilder {
            bus: self.clone(),
            name: name.into(),
            raw: RawConfig::default(),
        }
    }

    /// The existing topic `name`, if it carries payloads of type `T`.
    ///
    /// ```
    /// let bus = flowgate::Bus::new();
    /// bus.topic::<u32>("jobs").create()?;
    /// assert!(bus.get::<u32>("jobs").is_some());
    /// assert!(bus.get::<String>("jobs").is_none(), "another payload type");
    /// # Ok::<(), flowgate::bus::BusError>(())
    /// ```
    pub fn get<T: Send + Sync + 'static>(&self, name: &str) -> Option<Topic<T>> {
        let topics = self.inner.topics.lock();
        let topic = topics.by_name.get(name)?;
        topic.as_any().downcast_ref::<Topic<T>>().cloned()
    }

    /// Subscribes `handler` to every topic whose name matches `pattern` and that carries
    /// payloads of type `T`: those that exist now and those created later. `*` matches one
    /// dot-separated segment, a trailing `>` one or more (`orders.*`, `orders.>`).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// use std::sync::Arc;
    /// use flowgate::{Bus, Event};
    /// let bus = Bus::new();
    /// let seen = Arc::new(AtomicU32::new(0));
    /// let count = Arc::clone(&seen);
    /// let _audit = bus
    ///     .subscribe::<u32>("orders.>", "audit", move |_: Event<u32>| {
    ///         count.fetch_add(1, Ordering::Relaxed);
    ///         async { Ok(()) }
    ///     })
    ///     .start()?;
    /// let eu = bus.topic::<u32>("orders.eu").create()?;
    /// let eu_vip = bus.topic::<u32>("orders.eu.vip").create()?;
    /// eu.publish(Event::new("order", 1)?).await?;
    /// eu_vip.publish(Event::new("order", 2)?).await?;
    /// bus.shutdown(Duration::from_secs(1)).await;
    /// assert_eq!(seen.load(Ordering::Relaxed), 2);
    /// # Ok(())
    /// # }
    /// ```
    pub fn subscribe<T: Send + Sync + 'static>(
        &self,
        pattern: impl Into<String>,
        name: impl Into<String>,
        handler: impl Handler<T>,
    ) -> PatternSubscriptionBuilder<T> {
        PatternSubscriptionBuilder {
            bus: self.clone(),
            pattern: pattern.into(),
            name: name.into(),
            handler: BoxHandler::new(handler),
            group: None,
            dead_letters: Arc::new(LogDeadLetters),
        }
    }

    pub(crate) fn add_pattern(&self, pattern: Arc<dyn AnyPattern>) -> Result<(), BusError> {
        let mut topics = self.inner.topics.lock();
        if topics.closed {
            return Err(BusError::ShutDown);
        }
        for (name, topic) in &topics.by_name {
            pattern.offer(name, topic.as_any())?;
        }
        topics.patterns.push(pattern);
        Ok(())
    }

    pub(crate) fn forget_pattern(&self, id: usize) {
        self.inner.topics.lock().patterns.retain(|p| p.id() != id);
    }

    /// Every topic's figures, sorted by name.
    ///
    /// ```
    /// let bus = flowgate::Bus::new();
    /// bus.topic::<u32>("b").create()?;
    /// bus.topic::<u32>("a").create()?;
    /// let names: Vec<_> = bus.stats().into_iter().map(|s| s.topic).collect();
    /// assert_eq!(names, ["a", "b"]);
    /// # Ok::<(), flowgate::bus::BusError>(())
    /// ```
    pub fn stats(&self) -> Vec<TopicStats> {
        let topics: Vec<_> = self.inner.topics.lock().by_name.values().cloned().collect();
        let mut stats: Vec<_> = topics.iter().map(|t| t.stats()).collect();
        stats.sort_by(|a, b| a.topic.cmp(&b.topic));
        stats
    }

    /// Copies every topic's figures into its `metrics` series (feature `metrics`); call it in
    /// a `/metrics` handler right before rendering, or let
    /// [`metrics_reporter`](Self::metrics_reporter) call it every interval. See
    /// [`metrics`](crate::metrics) for the series.
    ///
    /// ```
    /// let bus = flowgate::Bus::new();
    /// bus.topic::<u8>("t").create()?;
    /// bus.report_metrics(); // a no-op without a recorder
    /// # Ok::<(), flowgate::bus::BusError>(())
    /// ```
    #[cfg(feature = "metrics")]
    pub fn report_metrics(&self) {
        let topics: Vec<_> = self.inner.topics.lock().by_name.values().cloned().collect();
        for topic in topics {
            topic.report_metrics();
        }
    }

    /// Calls [`report_metrics`](Self::report_metrics) every `interval` on the current tokio
    /// runtime, until the returned guard is dropped or the bus is (feature `metrics`). For an
    /// exporter that renders on its own (a push gateway, a listener of its own).
    ///
    /// # Errors
    ///
    /// [`BusError::NoRuntime`] outside a tokio runtime; [`BusError::InvalidConfig`] for a zero
    /// interval.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// let bus = flowgate::Bus::new();
    /// let reporter = bus.metrics_reporter(Duration::from_secs(5))?;
    /// drop(reporter); // stops it
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "metrics")]
    pub fn metrics_reporter(&self, interval: Duration) -> Result<MetricsReporter, BusError> {
        if interval.is_zero() {
            return Err(BusError::InvalidConfig {
                what: "metrics interval",
                reason: "zero: use a period such as the exporter's scrape interval".into(),
            });
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| BusError::NoRuntime)?;
        let bus = Arc::downgrade(&self.inner);
        let task = runtime.spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(inner) = bus.upgrade() else { return };
                Bus { inner }.report_metrics();
            }
        });
        Ok(MetricsReporter {
            task: task.abort_handle(),
        })
    }

    /// Stops accepting publishes on every topic, lets the subscribers drain what was queued
    /// and in flight until `deadline` from now, and reports what was not delivered.
    ///
    /// Publishes waiting for room fail with `ShutDown`; new topics and subscriptions are
    /// refused. At the deadline, deliveries still running are cancelled and reported as
    /// interrupted. For at-least-once and exactly-once topics the report holds every accepted
    /// event that was not delivered to a subscriber, with the subscriber's name.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use flowgate::{Bus, Event};
    /// let bus = Bus::new();
    /// let topic = bus.topic::<u32>("t").create()?;
    /// let _stuck = topic.subscribe("stuck", |_: Event<u32>| std::future::pending()).start()?;
    /// topic.publish(Event::new("e", 1)?).await?;
    /// topic.publish(Event::new("e", 2)?).await?;
    /// let report = bus.shutdown(Duration::from_millis(100)).await;
    /// assert_eq!(report.not_delivered(), 2);
    /// let undelivered = &report.topic::<u32>("t").unwrap().undelivered;
    /// let interrupted: Vec<_> = undelivered.iter().map(|u| u.interrupted).collect();
    /// assert_eq!(interrupted, [false, true], "2 was still queued, 1 was running");
    /// # Ok(())
    /// # }
    /// ```
    pub async fn shutdown(&self, deadline: Duration) -> BusReport {
        // A deadline too far to add to the clock (`Duration::MAX`) waits as long as it takes.
        let far = Duration::from_secs(60 * 60 * 24 * 365 * 30);
        let now = Instant::now();
        let deadline = now.checked_add(deadline).unwrap_or(now + far);
        let topics: Vec<_> = {
            let mut topics = self.inner.topics.lock();
            topics.closed = true;
            topics.by_name.values().cloned().collect()
        };
        // Every topic stops accepting before any drains, so none keeps taking publishes while
        // another uses up the deadline.
        for topic in &topics {
            topic.close();
        }
        let mut reports = Vec::with_capacity(topics.len());
        for topic in &topics {
            reports.push(topic.drain_until(deadline).await);
        }
        reports.sort_by(|a, b| a.topic.cmp(&b.topic));
        BusReport { topics: reports }
    }

    fn register<T: Send + Sync + 'static>(&self, topic: Topic<T>) -> Result<Topic<T>, BusError> {
        let mut topics = self.inner.topics.lock();
        if topics.closed {
            return Err(BusError::ShutDown);
        }
        if let Some(existing) = topics.by_name.get(topic.name()) {
            let detail = if existing.payload_type() == TypeId::of::<T>() {
                ""
            } else {
                " with another payload type"
            };
            return Err(BusError::TopicExists {
                topic: topic.name().to_owned(),
                detail,
            });
        }
        topics
            .by_name
            .insert(topic.name().to_owned(), Arc::new(topic.clone()));
        for pattern in &topics.patterns {
            if let Err(error) = pattern.offer(topic.name(), &topic) {
                tracing::error!(topic = topic.name(), %error, "a pattern subscription could not attach");
            }
        }
        Ok(topic)
    }
}

/// What [`Bus::shutdown`] left undone, per topic.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use flowgate::{Bus, Event};
/// let bus = Bus::new();
/// let jobs = bus.topic::<u32>("jobs").create()?;
/// let _stuck = jobs.subscribe("stuck", |_: Event<u32>| std::future::pending()).start()?;
/// jobs.publish(Event::new("job", 7)?).await?;
/// let report = bus.shutdown(Duration::from_millis(100)).await;
/// assert!(report.deadline_expired());
/// let jobs_report = report.topic::<u32>("jobs").unwrap();
/// let left: Vec<u32> = jobs_report.undelivered.iter().map(|u| *u.event.payload()).collect();
/// assert_eq!(left, [7], "publish it again after the restart");
/// # Ok(())
/// # }
/// ```
#[derive(Default)]
pub struct BusReport {
    topics: Vec<ErasedReport>,
}

impl BusReport {
    /// An empty report (for backends that build their own).
    ///
    /// ```
    /// let report = flowgate::bus::BusReport::new();
    /// assert_eq!(report.not_delivered(), 0);
    /// assert!(!report.deadline_expired());
    /// assert_eq!(report.topics().count(), 0);
    /// ```
    pub fn new() -> Self {
        Self { topics: Vec::new() }
    }

    /// Adds one topic's report (for backends that build their own); topics stay sorted.
    ///
    /// ```
    /// use flowgate::bus::{Bus, BusReport, TopicReport, Undelivered};
    /// use flowgate::Event;
    /// // A backend takes its figures from its own topics; here, an in-process one.
    /// let stats = |name: &str| Bus::new().topic::<u32>(name).create().map(|t| t.stats());
    /// let lost = Undelivered::new(Event::new("order", 7)?, "billing", false);
    /// let mut report = BusReport::new();
    /// report.push("refunds", TopicReport::<u32>::new(0, Vec::new(), false, stats("refunds")?));
    /// report.push("orders", TopicReport::new(1, vec![lost], false, stats("orders")?));
    /// assert_eq!(report.topics().collect::<Vec<_>>(), ["orders", "refunds"]);
    /// assert_eq!(report.not_delivered(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn push<T: Send + Sync + 'static>(&mut self, topic: &str, report: TopicReport<T>) {
        self.topics.push(ErasedReport {
            topic: topic.to_owned(),
            not_delivered: report.not_delivered,
            deadline_expired: report.deadline_expired,
            typed: Box::new(report),
        });
        self.topics.sort_by(|a, b| a.topic.cmp(&b.topic));
    }

    /// Deliveries (event × subscriber) that did not complete, over all topics.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use flowgate::{Bus, Event};
    /// let bus = Bus::new();
    /// let jobs = bus.topic::<u32>("jobs").create()?;
    /// let _stuck = jobs.subscribe("stuck", |_: Event<u32>| std::future::pending()).start()?;
    /// let _audit = jobs.subscribe("audit", |_: Event<u32>| std::future::pending()).start()?;
    /// jobs.publish(Event::new("job", 1)?).await?;
    /// let report = bus.shutdown(Duration::from_millis(100)).await;
    /// assert_eq!(report.not_delivered(), 2, "one event, two subscribers");
    /// # Ok(())
    /// # }
    /// ```
    pub fn not_delivered(&self) -> usize {
        self.topics.iter().map(|t| t.not_delivered).sum()
    }

    /// Whether the deadline cut any topic's drain short.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use flowgate::{Bus, Event};
    /// async fn drain_within(deadline: Duration) -> Result<bool, Box<dyn std::error::Error>> {
    ///     let bus = Bus::new();
    ///     let reports = bus.topic::<u32>("reports").create()?;
    ///     let _sub = reports
    ///         .subscribe("renderer", |_: Event<u32>| async {
    ///             tokio::time::sleep(Duration::from_secs(60)).await;
    ///             Ok(())
    ///         })
    ///         .start()?;
    ///     reports.publish(Event::new("report", 1)?).await?;
    ///     Ok(bus.shutdown(deadline).await.deadline_expired())
    /// }
    /// assert!(drain_within(Duration::from_secs(1)).await?, "the handler needs a minute");
    /// assert!(!drain_within(Duration::from_secs(120)).await?);
    /// # Ok(())
    /// # }
    /// ```
    pub fn deadline_expired(&self) -> bool {
        self.topics.iter().any(|t| t.deadline_expired)
    }

    /// The names of the topics reported, sorted.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// let bus = flowgate::Bus::new();
    /// bus.topic::<u32>("refunds").create()?;
    /// bus.topic::<String>("orders").create()?;
    /// let report = bus.shutdown(Duration::from_secs(1)).await;
    /// assert_eq!(report.topics().collect::<Vec<_>>(), ["orders", "refunds"]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn topics(&self) -> impl Iterator<Item = &str> {
        self.topics.iter().map(|t| t.topic.as_str())
    }

    /// Topic `name`'s report, with its undelivered events, if it carries payloads of type `T`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// let bus = flowgate::Bus::new();
    /// bus.topic::<u32>("jobs").create()?;
    /// let report = bus.shutdown(Duration::from_secs(1)).await;
    /// assert_eq!(report.topic::<u32>("jobs").map(|t| t.not_delivered), Some(0));
    /// assert!(report.topic::<String>("jobs").is_none(), "another payload type");
    /// assert!(report.topic::<u32>("nope").is_none());
    /// # Ok(())
    /// # }
    /// ```
    pub fn topic<T: 'static>(&self, name: &str) -> Option<&TopicReport<T>> {
        self.topics
            .iter()
            .find(|t| t.topic == name)
            .and_then(|t| t.typed.downcast_ref::<TopicReport<T>>())
    }
}

/// Builds a topic; from [`Bus::topic`]. Defaults are safe: 1 partition, a buffer of 1,024
/// events per partition and subscriber, 1 delivery at a time per partition, at-least-once with
/// the default retry policy, and `Block` backpressure with no time limit.
///
/// ```
/// use flowgate::bus::Backpressure;
/// use flowgate::RetryPolicy;
/// let bus = flowgate::Bus::new();
/// let topic = bus.topic::<u64>("orders").create()?;
/// let config = topic.config();
/// assert_eq!((config.partitions.get(), config.capacity, config.concurrency), (1, 1024, 1));
/// assert_eq!(config.mode, flowgate::bus::DeliveryMode::AtLeastOnce(RetryPolicy::default()));
/// assert_eq!(config.backpressure, Backpressure::Block { max_wait: None });
/// # Ok::<(), flowgate::bus::BusError>(())
/// ```
#[must_use = "a topic builder does nothing until `create` is called"]
pub struct TopicBuilder<T> {
    bus: Bus,
    name: String,
    raw: RawConfig<T>,
}

impl<T: Send + Sync + 'static> TopicBuilder<T> {
    /// Number of partitions (fixed for the topic's life; 1 to [`MAX_PARTITIONS`](crate::MAX_PARTITIONS)).
    ///
    /// Events with the same ordering key always go to the same partition.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use flowgate::{Bus, Event};
    /// let bus = Bus::new();
    /// let orders = bus.topic::<u32>("orders").partitions(8).create()?;
    /// assert_eq!(orders.stats().partitions.len(), 8);
    /// let placed = orders.publish(Event::new("placed", 1)?.with_key("order-1")).await?;
    /// let paid = orders.publish(Event::new("paid", 1)?.with_key("order-1")).await?;
    /// assert_eq!(placed.partition, paid.partition);
    /// # Ok(())
    /// # }
    /// ```
    pub fn partitions(mut self, partitions: u32) -> Self {
        self.raw.partitions = partitions;
        self
    }

    /// Events each subscriber's buffer of one partition holds (at least 1).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use flowgate::bus::{Backpressure, Bus};
    /// use flowgate::Event;
    /// let bus = Bus::new();
    /// let jobs = bus.topic::<u32>("jobs").capacity(3).backpressure(Backpressure::Reject).create()?;
    /// let _stuck = jobs.subscribe("stuck", |_: Event<u32>| std::future::pending()).start()?;
    /// jobs.publish(Event::new("job", 0)?).await?; // in flight, not buffered
    /// # while jobs.stats().in_flight < 1 { tokio::task::yield_now().await; }
    /// for n in 1..=3 {
    ///     jobs.publish(Event::new("job", n)?).await?;
    /// }
    /// assert_eq!(jobs.stats().depth, 3);
    /// assert!(jobs.publish(Event::new("job", 4)?).await.is_err(), "the buffer is full");
    /// # Ok(())
    /// # }
    /// ```
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.raw.capacity = capacity;
        self
    }

    /// Deliveries of one partition that may run at once, per subscriber (at least 1).
    /// Same-key events never run at once, whatever this is.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use flowgate::{Bus, Event};
    /// let bus = Bus::new();
    /// let jobs = bus.topic::<u32>("jobs").concurrency(3).create()?;
    /// let _stuck = jobs.subscribe("stuck", |_: Event<u32>| std::future::pending()).start()?;
    /// for key in ["a", "b", "c", "a"] {
    ///     jobs.publish(Event::new("job", 0)?.with_key(key)).await?;
    /// }
    /// # while jobs.stats().in_flight < 3 { tokio::task::yield_now().await; }
    /// let stats = jobs.stats();
    /// assert_eq!((stats.in_flight, stats.depth), (3, 1), "the second \"a\" waits for the first");
    /// # Ok(())
    /// # }
    /// ```
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.raw.concurrency = concurrency;
        self
    }

    /// The delivery mode; [`at_most_once`](Self::at_most_once),
    /// [`at_least_once`](Self::at_least_once) and [`exactly_once`](Self::exactly_once) are
    /// shorthands.
    ///
    /// ```
    /// use flowgate::bus::DeliveryMode;
    /// let bus = flowgate::Bus::new();
    /// let metrics = bus.topic::<u64>("metrics").mode(DeliveryMode::AtMostOnce).create()?;
    /// assert_eq!(metrics.stats().mode, "at-most-once");
    /// # Ok::<(), flowgate::bus::BusError>(())
    /// ```
    pub fn mode(mut self, mode: DeliveryMode) -> Self {
        self.raw.mode = mode;
        self
    }

    /// At-most-once delivery. The only mode that accepts the drop policies.
    ///
    /// ```
    /// use flowgate::bus::{Backpressure, DeliveryMode};
    /// let bus = flowgate::Bus::new();
    /// let ticks = bus.topic::<u64>("ticks").at_most_once().backpressure(Backpressure::DropOldest).create()?;
    /// assert_eq!(ticks.config().mode, DeliveryMode::AtMostOnce);
    /// assert!(bus.topic::<u64>("orders").backpressure(Backpressure::DropOldest).create().is_err());
    /// # Ok::<(), flowgate::bus::BusError>(())
    /// ```
    pub fn at_most_once(self) -> Self {
        self.mode(DeliveryMode::AtMostOnce)
    }

    /// At-least-once delivery with this retry policy.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use flowgate::{Bus, DeadLetterQueue, Event, HandlerError, RetryPolicy};
    /// let bus = Bus::new();
    /// let jobs = bus
    ///     .topic::<u32>("jobs")
    ///     .at_least_once(RetryPolicy::exponential(4, Duration::from_millis(100)))
    ///     .create()?;
    /// let dead = DeadLetterQueue::new(16);
    /// let _sub = jobs
    ///     .subscribe("worker", |_: Event<u32>| async { Err(HandlerError::retryable("down")) })
    ///     .dead_letters(dead.clone())
    ///     .start()?;
    /// jobs.publish(Event::new("job", 1)?).await?;
    /// bus.shutdown(Duration::from_secs(10)).await;
    /// assert_eq!(dead.drain()[0].attempts, 4, "tried 4 times, then dead-lettered");
    /// # Ok(())
    /// # }
    /// ```
    pub fn at_least_once(self, retry: RetryPolicy) -> Self {
        self.mode(DeliveryMode::AtLeastOnce(retry))
    }

    /// Exactly-once delivery (idempotency-keyed) with this retry policy and dedupe window.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use flowgate::bus::DedupeWindowConfig;
    /// use flowgate::{Bus, Event, RetryPolicy};
    /// let bus = Bus::new();
    /// let payments = bus
    ///     .topic::<u64>("payments")
    ///     .exactly_once(RetryPolicy::default(), DedupeWindowConfig::default())
    ///     .create()?;
    /// for _ in 0..3 {
    ///     payments.publish(Event::new("paid", 10)?.with_idempotency_key("pay-1")).await?;
    /// }
    /// let stats = payments.stats();
    /// assert_eq!((stats.total.published, stats.total.duplicates), (1, 2));
    /// assert_eq!(stats.dedupe.map(|d| d.keys), Some(1));
    /// # Ok(())
    /// # }
    /// ```
    pub fn exactly_once(self, retry: RetryPolicy, window: DedupeWindowConfig) -> Self {
        self.mode(DeliveryMode::ExactlyOnce(retry, window))
    }

    /// What a publish does when a buffer is full.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use flowgate::bus::{Backpressure, Bus};
    /// use flowgate::Event;
    /// let bus = Bus::new();
    /// let jobs = bus.topic::<u32>("jobs").capacity(1).backpressure(Backpressure::Reject).create()?;
    /// let _stuck = jobs.subscribe("stuck", |_: Event<u32>| std::future::pending()).start()?;
    /// jobs.publish(Event::new("job", 1)?).await?;
    /// # while jobs.stats().in_flight < 1 { tokio::task::yield_now().await; }
    /// jobs.publish(Event::new("job", 2)?).await?;
    /// let refused = jobs.publish(Event::new("job", 3)?).await.unwrap_err();
    /// assert!(refused.is_retryable(), "rejected at once rather than waiting");
    /// # Ok(())
    /// # }
    /// ```
    pub fn backpressure(mut self, policy: Backpressure) -> Self {
        self.raw.backpressure = policy;
        self
    }

    /// Refuses payloads larger than `limit` bytes as measured by `size_of` (the in-process bus
    /// never serializes, so the topic cannot measure a payload itself).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use flowgate::bus::{Bus, PublishError};
    /// use flowgate::Event;
    /// let bus = Bus::new();
    /// let notes = bus.topic::<String>("notes").max_payload_size(8, String::len).create()?;
    /// notes.publish(Event::new("note", "short".to_owned())?).await?;
    /// let long = notes.publish(Event::new("note", "far too long".to_owned())?).await;
    /// assert!(matches!(long, Err(PublishError::TooLarge { size: 12, limit: 8, .. })));
    /// # Ok(())
    /// # }
    /// ```
    pub fn max_payload_size(
        mut self,
        limit: usize,
        size_of: impl Fn(&T) -> usize + Send + Sync + 'static,
    ) -> Self {
        self.raw.max_payload = Some((limit, Arc::new(size_of)));
        self
    }

    /// Validates the settings and creates the topic.
    ///
    /// # Errors
    ///
    /// [`BusError::InvalidConfig`] for a bad setting (the message says which),
    /// [`BusError::Core`] for an invalid name (topic names follow event type rules:
    /// dot-separated segments of letters, digits, `_` and `-`), [`BusError::TopicExists`],
    /// [`BusError::ShutDown`].
    ///
    /// ```
    /// use flowgate::bus::{Backpressure, BusError};
    /// let bus = flowgate::Bus::new();
    /// assert!(matches!(bus.topic::<u8>("t").partitions(0).create(), Err(BusError::InvalidConfig { .. })));
    /// assert!(matches!(bus.topic::<u8>("").create(), Err(BusError::Core(_))));
    /// let drop_on_alo = bus.topic::<u8>("t").backpressure(Backpressure::DropOldest).create();
    /// assert!(drop_on_alo.unwrap_err().to_string().contains("drops accepted events"));
    /// ```
    pub fn create(self) -> Result<Topic<T>, BusError> {
        let name = EventType::new(&self.name)?;
        let config = self.raw.validate()?;
        self.bus
            .register(Topic::create(name.as_str().to_owned(), config))
    }
}

impl fmt::Debug for Bus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let topics = self.inner.topics.lock();
        let mut names: Vec<_> = topics.by_name.keys().collect();
        names.sort();
        f.debug_struct("Bus")
            .field("topics", &names)
            .field("closed", &topics.closed)
            .finish()
    }
}

impl fmt::Debug for BusReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BusReport")
            .field("not_delivered", &self.not_delivered())
            .field("deadline_expired", &self.deadline_expired())
            .field("topics", &self.topics().collect::<Vec<_>>())
            .finish()
    }
}

impl<T> fmt::Debug for TopicBuilder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TopicBuilder")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Reports a bus's metrics every interval until dropped; from
/// [`Bus::metrics_reporter`].
#[cfg(feature = "metrics")]
#[derive(Debug)]
#[must_use = "the reporter stops when this guard is dropped"]
pub struct MetricsReporter {
    task: tokio::task::AbortHandle,
}

#[cfg(feature = "metrics")]
impl Drop for MetricsReporter {
    fn drop(&mut self) {
        self.task.abort();
    }
}
