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
use crate::config::{Backpressure, DeliveryMode};
use crate::error::{BusError, PublishError};
use crate::stats::TopicStats;
use crate::topic::{Published, Subscription, Topic};

/// A topic's settings, as every backend takes them. The defaults are the in-process bus's
/// (1 partition, 1,024 events per buffer, concurrency 1, at-least-once, `Block`).
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
    #[must_use]
    pub fn partitions(mut self, partitions: u32) -> Self {
        self.partitions = partitions;
        self
    }

    /// Sets the buffer capacity per subscriber and partition.
    #[must_use]
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// Sets the concurrency cap per subscriber and partition.
    #[must_use]
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency;
        self
    }

    /// Sets the delivery mode.
    #[must_use]
    pub fn mode(mut self, mode: DeliveryMode) -> Self {
        self.mode = mode;
        self
    }

    /// Sets the backpressure policy.
    #[must_use]
    pub fn backpressure(mut self, backpressure: Backpressure) -> Self {
        self.backpressure = backpressure;
        self
    }
}

/// A subscription request, as every backend takes it.
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
    pub fn new(name: impl Into<String>, handler: impl Handler<T>) -> Self {
        Self {
            name: name.into(),
            handler: BoxHandler::new(handler),
            group: None,
            dead_letters: Arc::new(LogDeadLetters),
        }
    }

    /// Joins consumer group `group`.
    #[must_use]
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }

    /// Sends dead letters to `sink`.
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
pub trait Backend<T>: Clone + Send + Sync + 'static {
    /// Its topic handle.
    type Topic: BackendTopic<T>;

    /// Creates topic `name`.
    fn create_topic(
        &self,
        name: &str,
        settings: TopicSettings,
    ) -> impl Future<Output = Result<Self::Topic, BusError>> + Send;

    /// Stops accepting, drains until `deadline`, and reports what was not delivered; see
    /// [`Bus::shutdown`].
    fn shutdown(&self, deadline: Duration) -> impl Future<Output = BusReport> + Send;
}

/// A topic of some backend.
pub trait BackendTopic<T>: Clone + Send + Sync + 'static {
    /// Its subscription handle.
    type Subscription: BackendSubscription<T>;

    /// Publishes; see [`Topic::publish`].
    fn publish(
        &self,
        event: Event<T>,
    ) -> impl Future<Output = Result<Published, PublishError<T>>> + Send;

    /// Starts a subscription.
    fn subscribe(
        &self,
        request: SubscribeRequest<T>,
    ) -> impl Future<Output = Result<Self::Subscription, BusError>> + Send;

    /// The topic's figures.
    fn stats(&self) -> impl Future<Output = TopicStats> + Send;
}

/// A subscription of some backend.
pub trait BackendSubscription<T>: Send + 'static {
    /// Leaves; see [`Subscription::unsubscribe`]. Returns the events handed back.
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
        if request.name.trim().is_empty()
            || request
                .group
                .as_deref()
                .is_some_and(|g| g.trim().is_empty())
        {
            return Err(BusError::InvalidConfig {
                what: "subscriber name",
                reason: "empty: name the subscriber (and its group), it appears in stats and dead letters".into(),
            });
        }
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
