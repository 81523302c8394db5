//! The bus's errors: one enum for setup ([`BusError`]) and one for a refused publish
//! ([`PublishError`], which hands the event back).

use std::fmt;
use std::time::Duration;

use flowgate_core::{CoreError, Event};

/// Why a topic or a subscription could not be created.
///
/// ```
/// use std::time::Duration;
/// use flowgate::bus::{Bus, BusError};
/// use flowgate::Event;
/// let bus = Bus::new();
/// let zero = bus.topic::<u8>("jobs").capacity(0).create();
/// assert!(matches!(zero, Err(BusError::InvalidConfig { what: "capacity", .. })));
/// assert!(matches!(bus.topic::<u8>("no spaces").create(), Err(BusError::Core(_))));
/// let jobs = bus.topic::<u8>("jobs").create()?;
/// let again = bus.topic::<u8>("jobs").create().unwrap_err();
/// assert_eq!(again.to_string(), r#"topic "jobs" already exists"#);
/// let ok = |_: Event<u8>| async { Ok(()) };
/// assert!(matches!(jobs.subscribe("worker", ok).start(), Err(BusError::NoRuntime)));
/// let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build()?;
/// runtime.block_on(bus.shutdown(Duration::from_secs(1)));
/// assert!(matches!(bus.topic::<u8>("later").create(), Err(BusError::ShutDown)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
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
    /// A backend outside the process (Redis) could not be reached or refused the command.
    /// Nothing was created; check the server and retry (the backend reconnects by itself).
    #[error("backend unavailable: {0}")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// A publish that was not accepted. Nothing is promised for it; the event is handed back
/// ([`into_event`](Self::into_event)) so the caller can retry or report it.
///
/// `Debug` does not require `T: Debug`: it shows the event's id, type and key.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use flowgate::bus::{Bus, PublishError};
/// use flowgate::Event;
/// let bus = Bus::new();
/// let jobs = bus.topic::<u32>("jobs").create()?;
/// bus.shutdown(Duration::from_secs(1)).await;
/// let refused = jobs.publish(Event::new("job", 1)?.with_key("job-1")).await.unwrap_err();
/// assert!(matches!(refused, PublishError::ShutDown(_)));
/// assert_eq!(refused.to_string(), "the topic is shut down: the event was not accepted");
/// assert!(format!("{refused:?}").starts_with("ShutDown"));
/// # Ok(())
/// # }
/// ```
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
    /// A backend outside the process (Redis) could not be reached, or the event could not be
    /// written to it (e.g. its payload could not be serialized). The event was not accepted;
    /// [`is_retryable`](Self::is_retryable) says whether publishing it again may succeed.
    Unavailable {
        /// The event.
        event: Event<T>,
        /// What failed.
        error: Box<dyn std::error::Error + Send + Sync>,
        /// Whether it may succeed later (a connection fault), or never will (a payload the
        /// codec refuses).
        retryable: bool,
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
            | Self::TooLarge { event, .. }
            | Self::Unavailable { event, .. } => event,
        }
    }

    /// The event, borrowed.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use flowgate::bus::{Bus, PublishError};
    /// use flowgate::Event;
    /// let bus = Bus::new();
    /// let notes = bus.topic::<String>("notes").max_payload_size(4, String::len).create()?;
    /// let refused = notes.publish(Event::new("note", "too long".to_owned())?).await.unwrap_err();
    /// assert_eq!(refused.event().payload(), "too long");
    /// assert!(matches!(refused, PublishError::TooLarge { size: 8, limit: 4, .. }));
    /// # Ok(())
    /// # }
    /// ```
    pub fn event(&self) -> &Event<T> {
        match self {
            Self::Full(event)
            | Self::Timeout(event, _)
            | Self::ShutDown(event)
            | Self::TooLarge { event, .. }
            | Self::Unavailable { event, .. } => event,
        }
    }

    /// Whether publishing the same event again later may succeed (`Full`, `Timeout`, and an
    /// `Unavailable` backend whose fault is a connection's).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use flowgate::bus::{Backpressure, Bus};
    /// use flowgate::Event;
    /// let bus = Bus::new();
    /// let wait = Backpressure::Block { max_wait: Some(Duration::from_millis(10)) };
    /// let jobs = bus.topic::<u32>("jobs").capacity(1).backpressure(wait).create()?;
    /// let _stuck = jobs.subscribe("stuck", |_: Event<u32>| std::future::pending()).start()?;
    /// jobs.publish(Event::new("job", 1)?).await?;
    /// # while jobs.stats().in_flight < 1 { tokio::task::yield_now().await; }
    /// jobs.publish(Event::new("job", 2)?).await?;
    /// let timed_out = jobs.publish(Event::new("job", 3)?).await.unwrap_err();
    /// assert!(timed_out.is_retryable(), "room may free up later");
    /// bus.shutdown(Duration::from_millis(10)).await;
    /// let shut_down = jobs.publish(timed_out.into_event()).await.unwrap_err();
    /// assert!(!shut_down.is_retryable());
    /// # Ok(())
    /// # }
    /// ```
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Full(_)
                | Self::Timeout(..)
                | Self::Unavailable {
                    retryable: true,
                    ..
                }
        )
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
            Self::Unavailable { error, .. } => write!(
                f,
                "the backend could not take the event ({error}): the event was not accepted",
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
            Self::Unavailable { .. } => "Unavailable",
        };
        let event = self.event();
        f.debug_struct(variant)
            .field("event_id", &event.id())
            .field("kind", event.kind())
            .field("key", &event.key())
            .finish()
    }
}

impl<T> std::error::Error for PublishError<T> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Unavailable { error, .. } => Some(&**error),
            _ => None,
        }
    }
}
