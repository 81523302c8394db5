//! The bus's errors: one enum for setup ([`BusError`]) and one for a refused publish
//! ([`PublishError`], which hands the event back).

use std::fmt;
use std::time::Duration;

use flowgate_core::{CoreError, Event};

/// Why a topic or a subscription could not be created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BusError {
    /// A name or a setting was invalid. The message says which and what is accepted; fix the
    /// call, retrying will not help.
    #[error("invalid {what}: {reason}")]
    InvalidConfig {
        /// The setting.
        what: &'static str,
        /// What is wrong and what is accepted.
        reason: String,
    },
    /// A topic name, pattern or subscriber name was rejected by the core rules.
    #[error(transparent)]
    Core(#[from] CoreError),
    /// A topic of this name exists with a different payload type or configuration. Use
    /// [`Bus::get`](crate::Bus::get) to reach an existing topic, or pick another name.
    #[error("topic {topic:?} already exists{detail}")]
    TopicExists {
        /// The topic name.
        topic: String,
        /// What differs (payload type or settings).
        detail: &'static str,
    },
    /// The bus (or the topic) is shutting down: nothing new can be created or subscribed.
    #[error("the bus is shut down; create a new one")]
    ShutDown,
    /// A subscription was started outside a tokio runtime. Its partition workers are tokio
    /// tasks: call `start` from inside `#[tokio::main]`, a runtime's `block_on`, or a task.
    #[error("no tokio runtime: start subscriptions from inside a tokio runtime")]
    NoRuntime,
}

/// A publish that was not accepted. Nothing is promised for it; the event is handed back
/// ([`into_event`](Self::into_event)) so the caller can retry or report it.
///
/// `Debug` does not require `T: Debug`: it shows the event's id, type and key.
#[non_exhaustive]
pub enum PublishError<T> {
    /// A partition buffer was full (policy `Reject`). Retry later, slow down, or raise the
    /// topic's capacity.
    Full(Event<T>),
    /// A partition buffer stayed full for the whole wait the caller allowed (policy `Block`).
    Timeout(Event<T>, Duration),
    /// The topic is shutting down or shut down; the event was not accepted.
    ShutDown(Event<T>),
    /// The payload exceeds the topic's configured maximum size.
    TooLarge {
        /// The event.
        event: Event<T>,
        /// Its size as the topic's size function measured it.
        size: usize,
        /// The topic's limit.
        limit: usize,
    },
}

impl<T> PublishError<T> {
    /// The event that was not accepted.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use flowgate::bus::{Backpressure, Bus};
    /// use flowgate::Event;
    /// let bus = Bus::new();
    /// let topic = bus.topic::<u32>("jobs").capacity(1).backpressure(Backpressure::Reject).create()?;
    /// let _sub = topic.subscribe("slow", |_: Event<u32>| std::future::pending()).start()?;
    /// topic.publish(Event::new("job", 1)?).await?;
    /// # flowgate_bus_wait(&topic).await;
    /// topic.publish(Event::new("job", 2)?).await?;
    /// let refused = topic.publish(Event::new("job", 3)?).await.unwrap_err();
    /// assert_eq!(*refused.into_event().payload(), 3);
    /// # Ok(())
    /// # }
    /// # async fn flowgate_bus_wait(topic: &flowgate::bus::Topic<u32>) {
    /// #     while topic.stats().in_flight < 1 { tokio::task::yield_now().await; }
    /// # }
    /// ```
    pub fn into_event(self) -> Event<T> {
        match self {
            Self::Full(event)
            | Self::Timeout(event, _)
            | Self::ShutDown(event)
            | Self::TooLarge { event, .. } => event,
        }
    }

    /// The event, borrowed.
    pub fn event(&self) -> &Event<T> {
        match self {
            Self::Full(event)
            | Self::Timeout(event, _)
            | Self::ShutDown(event)
            | Self::TooLarge { event, .. } => event,
        }
    }

    /// Whether publishing the same event again later may succeed (`Full`, `Timeout`).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Full(_) | Self::Timeout(..))
    }
}

impl<T> fmt::Display for PublishError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full(_) => f.write_str(
                "partition buffer full: the event was not accepted; retry later, slow down or raise the topic's capacity",
            ),
            Self::Timeout(_, waited) => write!(
                f,
                "partition buffer stayed full for {waited:?}: the event was not accepted; retry, or allow a longer wait",
            ),
            Self::ShutDown(_) => {
                f.write_str("the topic is shut down: the event was not accepted")
            }
            Self::TooLarge { size, limit, .. } => write!(
                f,
                "payload of {size} bytes exceeds the topic's limit of {limit} bytes: the event was not accepted",
            ),
        }
    }
}

impl<T> fmt::Debug for PublishError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let variant = match self {
            Self::Full(_) => "Full",
            Self::Timeout(..) => "Timeout",
            Self::ShutDown(_) => "ShutDown",
            Self::TooLarge { .. } => "TooLarge",
        };
        let event = self.event();
        f.debug_struct(variant)
            .field("event_id", &event.id())
            .field("kind", event.kind())
            .field("key", &event.key())
            .finish()
    }
}

impl<T> std::error::Error for PublishError<T> {}
