//! The backend-neutral bus API: what every bus backend offers (the in-process [`Bus`] and the
//! Redis Streams backend), so that one conformance suite (`flowgate_testkit::bus`) and one
//! application code path run against either.
//!
//! The traits are generic over the payload type: the in-process bus takes any
//! `Send + Sync + 'static` payload, a backend that leaves the process adds its own bounds (a
//! serde codec) in its implementations.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use flowgate::bus::{Backend, BackendTopic, Bus, SubscribeRequest, TopicSettings};
//! use flowgate::Event;
//!
//! /// Application code written once, against any backend.
//! async fn run<B: Backend<u32>>(backend: B) -> Result<u64, Box<dyn std::error::Error>> {
//!     let topic = backend.create_topic("jobs", TopicSettings::default()).await?;
//!     let _worker = topic
//!         .subscribe(SubscribeRequest::new("worker", |_: Event<u32>| async { Ok(()) }))
//!         .await?;
//!     topic.publish(Event::new("job", 1)?).await?;
//!     backend.shutdown(Duration::from_secs(1)).await;
//!     Ok(topic.stats().await.total.processed)
//! }
//! assert_eq!(run(Bus::new()).await?, 1);
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use flowgate_core::{BoxHandler, DeadLetterSink, Event, Handler, LogDeadLetters};

use crate::bus::{Bus, BusReport};
use crate::config::{Backpressure, DeliveryMode, RawConfig, TopicConfig};
use crate::error::{BusError, PublishError};
use crate::stats::TopicStats;
use crate::topic::{check_names, Published, Subscription, Topic};

/// A topic's settings, as every backend takes them. The defaults are the in-process bus's
/// (1 partition, 1,024 events per buffer, concurrency 1, at-least-once, `Block`).
///
/// ```
/// use flowgate::bus::TopicSettings;
/// let bus = flowgate::Bus::new();
/// let built = bus.topic::<u32>("jobs").create()?;
/// let config = built.config();
/// let settings = TopicSettings::default();
/// assert_eq!(settings.partitions, config.partitions.get());
/// assert_eq!((settings.capacity, settings.concurrency), (config.capacity, config.concurrency));
/// assert_eq!((&settings.mode, settings.backpressure), (&config.mode, config.backpressure));
/// # Ok::<(), flowgate::bus::BusError>(())
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TopicSettings {
    /// Number of partitions.
    pub partitions: u32,
    /// Events each subscriber's buffer of one partition holds.
    pub capacity: usize,
    /// Deliveries of one partition that may run at once, per subscriber.
    pub concurrency: usize,
    /// The delivery mode.
    pub mode: DeliveryMode,
    /// What a publish does when a buffer is full.
    pub backpressure: Backpressure,
}

impl Default for TopicSettings {
    fn default() -> Self {
        Self {
            partitions: 1,
            capacity: 1024,
            concurrency: 1,
            mode: DeliveryMode::AtLeastOnce(flowgate_core::RetryPolicy::default()),
            backpressure: Backpressure::default(),
        }
    }
}

impl TopicSettings {
    /// Sets the partition count.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use flowgate::bus::{Backend, BackendTopic, Bus, TopicSettings};
    /// async fn partitions<B: Backend<u32>>(backend: B) -> Result<usize, flowgate::bus::BusError> {
    ///     let topic = backend.create_topic("jobs", TopicSettings::default().partitions(4)).await?;
    ///     Ok(topic.stats().await.partitions.len())
    /// }
    /// assert_eq!(partitions(Bus::new()).await?, 4);
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub fn partitions(mut self, partitions: u32) -> Self {
        self.partitions = partitions;
        self
    }

    /// Sets the buffer capacity per subscriber and partition.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use flowgate::bus::{Backend, Bus, BusError, Topic, TopicSettings};
    /// let bus = Bus::new();
    /// let jobs: Topic<u32> = bus.create_topic("jobs", TopicSettings::default().capacity(16)).await?;
    /// assert_eq!(jobs.config().capacity, 16);
    /// let empty = Backend::<u32>::create_topic(&bus, "none", TopicSettings::default().capacity(0)).await;
    /// assert!(matches!(empty, Err(BusError::InvalidConfig { what: "capacity", .. })));
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// Sets the concurrency cap per subscriber and partition.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use flowgate::bus::{Backend, Bus, Topic, TopicSettings};
    /// let bus = Bus::new();
    /// let jobs: Topic<u32> = bus.create_topic("jobs", TopicSettings::default().concurrency(8)).await?;
    /// assert_eq!(jobs.config().concurrency, 8);
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency;
        self
    }

    /// Sets the delivery mode.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use flowgate::bus::{Backend, Bus, DeliveryMode, Topic, TopicSettings};
    /// let bus = Bus::new();
    /// let settings = TopicSettings::default().mode(DeliveryMode::AtMostOnce);
    /// let ticks: Topic<u64> = bus.create_topic("ticks", settings).await?;
    /// assert_eq!(ticks.stats().mode, "at-most-once");
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub fn mode(mut self, mode: DeliveryMode) -> Self {
        self.mode = mode;
        self
    }

    /// Sets the backpressure policy. The drop policies need an at-most-once mode.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use flowgate::bus::{Backend, Backpressure, Bus, DeliveryMode, Topic, TopicSettings};
    /// let bus = Bus::new();
    /// let lossy = TopicSettings::default().backpressure(Backpressure::DropNewest);
    /// let refused = Backend::<u64>::create_topic(&bus, "orders", lossy.clone()).await;
    /// assert!(refused.is_err(), "at-least-once never drops accepted events");
    /// let ticks: Topic<u64> = bus.create_topic("ticks", lossy.mode(DeliveryMode::AtMostOnce)).await?;
    /// assert_eq!(ticks.config().backpressure, Backpressure::DropNewest);
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub fn backpressure(mut self, backpressure: Backpressure) -> Self {
        self.backpressure = backpressure;
        self
    }

    /// Checks the settings by the in-process bus's rules (for backends, which must refuse
    /// what it refuses) and returns them validated.
    ///
    /// # Errors
    ///
    /// [`BusError::InvalidConfig`] naming the setting, as
    /// [`TopicBuilder::create`](crate::TopicBuilder::create) returns it.
    ///
    /// ```
    /// use flowgate::bus::{BusError, TopicSettings};
    /// let config = TopicSettings::default().partitions(8).validate::<u32>()?;
    /// assert_eq!(config.partitions.get(), 8);
    /// let none = TopicSettings::default().partitions(0).validate::<u32>();
    /// assert!(matches!(none, Err(BusError::InvalidConfig { what: "partitions", .. })));
    /// # Ok::<(), BusError>(())
    /// ```
    pub fn validate<T>(self) -> Result<TopicConfig<T>, BusError> {
        RawConfig {
            partitions: self.partitions,
            capacity: self.capacity,
            concurrency: self.concurrency,
            mode: self.mode,
            backpressure: self.backpressure,
            max_payload: None,
        }
        .validate()
    }
}

/// A subscription request, as every backend takes it.
///
/// ```
/// use flowgate::bus::SubscribeRequest;
/// use flowgate::Event;
/// let request = SubscribeRequest::new("worker-1", |_: Event<u32>| async { Ok(()) }).group("workers");
/// assert_eq!(request.name, "worker-1");
/// assert_eq!(request.group.as_deref(), Some("workers"));
/// ```
#[non_exhaustive]
pub struct SubscribeRequest<T> {
    /// The subscriber's name (in stats and dead letters).
    pub name: String,
    /// The handler.
    pub handler: BoxHandler<T>,
    /// The consumer group to join, if any.
    pub group: Option<String>,
    /// Where dead letters go.
    pub dead_letters: Arc<dyn DeadLetterSink<T>>,
}

impl<T: 'static> SubscribeRequest<T> {
    /// A plain subscriber whose dead letters are logged.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use flowgate::bus::{Backend, BackendTopic, Bus, SubscribeRequest, TopicSettings};
    /// use flowgate::Event;
    /// let bus = Bus::new();
    /// let jobs = Backend::<u32>::create_topic(&bus, "jobs", TopicSettings::default()).await?;
    /// let request = SubscribeRequest::new("worker", |_: Event<u32>| async { Ok(()) });
    /// let _worker = BackendTopic::subscribe(&jobs, request).await?;
    /// jobs.publish(Event::new("job", 1)?).await?;
    /// bus.shutdown(Duration::from_secs(1)).await;
    /// assert_eq!(jobs.stats().total.processed, 1);
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(name: impl Into<String>, handler: impl Handler<T>) -> Self {
        Self {
            name: name.into(),
            handler: BoxHandler::new(handler),
            group: None,
            dead_letters: Arc::new(LogDeadLetters),
        }
    }

    /// Joins consumer group `group`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use flowgate::bus::{Backend, BackendTopic, Bus, SubscribeRequest, TopicSettings};
    /// use flowgate::Event;
    /// let bus = Bus::new();
    /// let jobs = Backend::<u32>::create_topic(&bus, "jobs", TopicSettings::default()).await?;
    /// for name in ["worker-1", "worker-2"] {
    ///     let request = SubscribeRequest::new(name, |_: Event<u32>| async { Ok(()) }).group("workers");
    ///     BackendTopic::subscribe(&jobs, request).await?;
    /// }
    /// assert_eq!(jobs.stats().subscribers, 1, "one group");
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }

    /// Checks the subscriber's and group's names by the in-process bus's rules (for
    /// backends, which must refuse what it refuses).
    ///
    /// # Errors
    ///
    /// [`BusError::InvalidConfig`] for an empty or blank name.
    ///
    /// ```
    /// use flowgate::bus::{BusError, SubscribeRequest};
    /// use flowgate::Event;
    /// let ok = |_: Event<u32>| async { Ok(()) };
    /// assert!(SubscribeRequest::new("worker", ok).validate().is_ok());
    /// let blank = SubscribeRequest::new("worker", ok).group(" ").validate();
    /// assert!(matches!(blank, Err(BusError::InvalidConfig { what: "subscriber name", .. })));
    /// ```
    pub fn validate(&self) -> Result<(), BusError> {
        check_names(&self.name, self.group.as_deref())
    }

    /// Sends dead letters to `sink`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use flowgate::bus::{Backend, BackendTopic, Bus, SubscribeRequest, TopicSettings};
    /// use flowgate::{DeadLetterQueue, Event, HandlerError};
    /// let bus = Bus::new();
    /// let jobs = Backend::<u32>::create_topic(&bus, "jobs", TopicSettings::default()).await?;
    /// let dead = DeadLetterQueue::new(100);
    /// let request = SubscribeRequest::new("worker", |_: Event<u32>| async {
    ///     Err(HandlerError::permanent("malformed job"))
    /// });
    /// let _worker = BackendTopic::subscribe(&jobs, request.dead_letters(dead.clone())).await?;
    /// jobs.publish(Event::new("job", 7)?).await?;
    /// bus.shutdown(Duration::from_secs(1)).await;
    /// assert_eq!(*dead.drain()[0].event.payload(), 7);
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub fn dead_letters(mut self, sink: impl DeadLetterSink<T>) -> Self {
        self.dead_letters = Arc::new(sink);
        self
    }
}

impl<T> fmt::Debug for SubscribeRequest<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubscribeRequest")
            .field("name", &self.name)
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

/// A bus backend: creates topics and shuts them down.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use flowgate::bus::{Backend, Bus, TopicSettings};
/// /// Creates the application's topics on whichever backend it runs on.
/// async fn create_topics<B: Backend<u64>>(backend: &B) -> Result<Vec<B::Topic>, flowgate::bus::BusError> {
///     let mut topics = Vec::new();
///     for name in ["orders", "payments"] {
///         topics.push(backend.create_topic(name, TopicSettings::default().partitions(4)).await?);
///     }
///     Ok(topics)
/// }
/// let bus = Bus::new();
/// assert_eq!(create_topics(&bus).await?.len(), 2);
/// assert!(bus.get::<u64>("payments").is_some());
/// # Ok(())
/// # }
/// ```
pub trait Backend<T>: Clone + Send + Sync + 'static {
    /// Its topic handle.
    type Topic: BackendTopic<T>;

    /// Creates topic `name`.
    ///
    /// # Errors
    ///
    /// As [`TopicBuilder::create`](crate::TopicBuilder::create) for the in-process bus; a
    /// remote backend adds its own (connection) failures.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use flowgate::bus::{Backend, Bus, BusError, TopicSettings};
    /// let bus = Bus::new();
    /// Backend::<u32>::create_topic(&bus, "jobs", TopicSettings::default()).await?;
    /// let again = Backend::<u32>::create_topic(&bus, "jobs", TopicSettings::default()).await;
    /// assert!(matches!(again, Err(BusError::TopicExists { .. })));
    /// # Ok(())
    /// # }
    /// ```
    fn create_topic(
        &self,
        name: &str,
        settings: TopicSettings,
    ) -> impl Future<Output = Result<Self::Topic, BusError>> + Send;

    /// Stops accepting, drains until `deadline`, and reports what was not delivered; see
    /// [`Bus::shutdown`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use flowgate::bus::{Backend, BackendTopic, Bus, SubscribeRequest, TopicSettings};
    /// use flowgate::Event;
    /// async fn stop<B: Backend<u32>>(backend: B) -> Result<usize, Box<dyn std::error::Error>> {
    ///     let jobs = backend.create_topic("jobs", TopicSettings::default()).await?;
    ///     let stuck = SubscribeRequest::new("stuck", |_: Event<u32>| std::future::pending());
    ///     let _stuck = jobs.subscribe(stuck).await?;
    ///     jobs.publish(Event::new("job", 1)?).await?;
    ///     let report = backend.shutdown(Duration::from_millis(100)).await;
    ///     Ok(report.topic::<u32>("jobs").map_or(0, |t| t.undelivered.len()))
    /// }
    /// assert_eq!(stop(Bus::new()).await?, 1);
    /// # Ok(())
    /// # }
    /// ```
    fn shutdown(&self, deadline: Duration) -> impl Future<Output = BusReport> + Send;
}

/// A topic of some backend.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use flowgate::bus::{Backend, BackendTopic, Bus, TopicSettings};
/// use flowgate::Event;
/// /// Publishes a batch to a topic of any backend; returns how many were accepted.
/// async fn publish_all<P: BackendTopic<u32>>(topic: &P, payloads: &[u32]) -> usize {
///     let mut accepted = 0;
///     for &n in payloads {
///         let Ok(event) = Event::new("job", n) else { continue };
///         accepted += usize::from(topic.publish(event).await.is_ok());
///     }
///     accepted
/// }
/// let jobs = Backend::<u32>::create_topic(&Bus::new(), "jobs", TopicSettings::default()).await?;
/// assert_eq!(publish_all(&jobs, &[1, 2, 3]).await, 3);
/// # Ok(())
/// # }
/// ```
pub trait BackendTopic<T>: Clone + Send + Sync + 'static {
    /// Its subscription handle.
    type Subscription: BackendSubscription<T>;

    /// Publishes; see [`Topic::publish`].
    ///
    /// # Errors
    ///
    /// As [`Topic::publish`]: each error hands the event back.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use flowgate::bus::{Backend, BackendTopic, Bus, TopicSettings};
    /// use flowgate::Event;
    /// let jobs = Backend::<u32>::create_topic(&Bus::new(), "jobs", TopicSettings::default().partitions(4)).await?;
    /// let published = BackendTopic::publish(&jobs, Event::new("job", 1)?.with_key("a")).await?;
    /// assert!(published.partition < 4);
    /// # Ok(())
    /// # }
    /// ```
    fn publish(
        &self,
        event: Event<T>,
    ) -> impl Future<Output = Result<Published, PublishError<T>>> + Send;

    /// Starts a subscription.
    ///
    /// # Errors
    ///
    /// As [`SubscriptionBuilder::start`](crate::SubscriptionBuilder::start) for the in-process
    /// bus.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use flowgate::bus::{Backend, BackendTopic, Bus, BusError, SubscribeRequest, TopicSettings};
    /// use flowgate::Event;
    /// let jobs = Backend::<u32>::create_topic(&Bus::new(), "jobs", TopicSettings::default()).await?;
    /// let ok = |_: Event<u32>| async { Ok(()) };
    /// BackendTopic::subscribe(&jobs, SubscribeRequest::new("worker", ok)).await?;
    /// let unnamed = BackendTopic::subscribe(&jobs, SubscribeRequest::new("", ok)).await;
    /// assert!(matches!(unnamed, Err(BusError::InvalidConfig { .. })));
    /// assert_eq!(jobs.stats().subscribers, 1);
    /// # Ok(())
    /// # }
    /// ```
    fn subscribe(
        &self,
        request: SubscribeRequest<T>,
    ) -> impl Future<Output = Result<Self::Subscription, BusError>> + Send;

    /// The topic's figures.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use flowgate::bus::{Backend, BackendTopic, Bus, TopicSettings};
    /// use flowgate::Event;
    /// let jobs = Backend::<u32>::create_topic(&Bus::new(), "jobs", TopicSettings::default()).await?;
    /// BackendTopic::publish(&jobs, Event::new("job", 1)?).await?;
    /// let stats = BackendTopic::stats(&jobs).await;
    /// assert_eq!((stats.topic.as_str(), stats.total.published), ("jobs", 1));
    /// # Ok(())
    /// # }
    /// ```
    fn stats(&self) -> impl Future<Output = TopicStats> + Send;
}

/// A subscription of some backend.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use flowgate::bus::{Backend, BackendSubscription, BackendTopic, Bus, BusError, SubscribeRequest, TopicSettings};
/// use flowgate::Event;
/// /// Starts two workers on a topic of any backend, then stops them; returns what they handed back.
/// async fn cycle<P: BackendTopic<u32>>(topic: &P) -> Result<Vec<Event<u32>>, BusError> {
///     let mut workers = Vec::new();
///     for name in ["worker-1", "worker-2"] {
///         let request = SubscribeRequest::new(name, |_: Event<u32>| async { Ok(()) });
///         workers.push(topic.subscribe(request).await?);
///     }
///     let mut handed_back = Vec::new();
///     for worker in workers {
///         handed_back.extend(worker.unsubscribe().await);
///     }
///     Ok(handed_back)
/// }
/// let jobs = Backend::<u32>::create_topic(&Bus::new(), "jobs", TopicSettings::default()).await?;
/// assert!(cycle(&jobs).await?.is_empty());
/// assert_eq!(jobs.stats().subscribers, 0);
/// # Ok(())
/// # }
/// ```
pub trait BackendSubscription<T>: Send + 'static {
    /// Leaves; see [`Subscription::unsubscribe`]. Returns the events handed back.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use flowgate::bus::{Backend, BackendSubscription, BackendTopic, Bus, SubscribeRequest, TopicSettings};
    /// use flowgate::Event;
    /// let jobs = Backend::<u32>::create_topic(&Bus::new(), "jobs", TopicSettings::default()).await?;
    /// let request = SubscribeRequest::new("worker", |_: Event<u32>| async { Ok(()) });
    /// let worker = BackendTopic::subscribe(&jobs, request).await?;
    /// let handed_back = BackendSubscription::unsubscribe(worker).await;
    /// assert!(handed_back.is_empty());
    /// assert_eq!(jobs.stats().subscribers, 0);
    /// # Ok(())
    /// # }
    /// ```
    fn unsubscribe(self) -> impl Future<Output = Vec<Event<T>>> + Send;
}

impl<T: Send + Sync + 'static> Backend<T> for Bus {
    type Topic = Topic<T>;

    async fn create_topic(
        &self,
        name: &str,
        settings: TopicSettings,
    ) -> Result<Topic<T>, BusError> {
        self.topic::<T>(name)
            .partitions(settings.partitions)
            .capacity(settings.capacity)
            .concurrency(settings.concurrency)
            .mode(settings.mode)
            .backpressure(settings.backpressure)
            .create()
    }

    async fn shutdown(&self, deadline: Duration) -> BusReport {
        Bus::shutdown(self, deadline).await
    }
}

impl<T: Send + Sync + 'static> BackendTopic<T> for Topic<T> {
    type Subscription = Subscription<T>;

    async fn publish(&self, event: Event<T>) -> Result<Published, PublishError<T>> {
        Topic::publish(self, event).await
    }

    async fn subscribe(&self, request: SubscribeRequest<T>) -> Result<Subscription<T>, BusError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| BusError::NoRuntime)?;
        check_names(&request.name, request.group.as_deref())?;
        self.attach(
            Arc::from(request.name),
            request.handler,
            request.dead_letters,
            request.group.as_deref(),
            &runtime,
        )
    }

    async fn stats(&self) -> TopicStats {
        Topic::stats(self)
    }
}

impl<T: Send + Sync + 'static> BackendSubscription<T> for Subscription<T> {
    async fn unsubscribe(self) -> Vec<Event<T>> {
        Subscription::unsubscribe(self).await
    }
}
