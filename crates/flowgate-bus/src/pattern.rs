//! Pattern subscriptions: one handler subscribed to every topic whose name matches a pattern
//! (`orders.*`: one segment; `orders.>`: one or more), now and as topics are created.
//!
//! Invariant: under the bus's registry lock, a pattern subscription is attached to exactly the
//! topics that match it and carry its payload type, whichever of the two was created first.
//! Topics with another payload type are skipped (a topic carries one type); the subscription
//! lists the topics it is attached to.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use flowgate_core::sync::Mutex;
use flowgate_core::{BoxHandler, DeadLetterSink, Event, Pattern};
use tokio::runtime::Handle;

use crate::error::BusError;
use crate::topic::{check_names, Subscription, Topic};

/// What the bus keeps of a pattern subscription, with its payload type erased.
pub(crate) trait AnyPattern: Send + Sync {
    /// Attaches to `topic` if it matches and carries this subscription's payload type.
    fn offer(&self, name: &str, topic: &dyn Any) -> Result<(), BusError>;
    fn id(&self) -> usize;
}

pub(crate) struct PatternInner<T> {
    pub(crate) pattern: Pattern,
    pub(crate) name: Arc<str>,
    pub(crate) group: Option<String>,
    pub(crate) handler: BoxHandler<T>,
    pub(crate) dead_letters: Arc<dyn DeadLetterSink<T>>,
    pub(crate) runtime: Handle,
    /// The subscriptions on the matching topics, by topic name.
    pub(crate) attached: Mutex<Vec<(String, Subscription<T>)>>,
}

impl<T: Send + Sync + 'static> AnyPattern for PatternInner<T> {
    fn offer(&self, name: &str, topic: &dyn Any) -> Result<(), BusError> {
        let Some(topic) = topic.downcast_ref::<Topic<T>>() else {
            return Ok(());
        };
        if !self.pattern.matches(name) {
            return Ok(());
        }
        // The runtime of whoever creates the topic, if any: the one the subscription started
        // on may have shut down since, and workers spawned there would never run.
        let runtime = Handle::try_current().unwrap_or_else(|_| self.runtime.clone());
        let subscription = topic.attach(
            Arc::clone(&self.name),
            self.handler.clone(),
            Arc::clone(&self.dead_letters),
            self.group.as_deref(),
            &runtime,
        )?;
        self.attached.lock().push((name.to_owned(), subscription));
        Ok(())
    }

    fn id(&self) -> usize {
        std::ptr::from_ref(self).cast::<()>() as usize
    }
}

/// A subscription to every topic matching a pattern; from
/// [`Bus::subscribe`](crate::Bus::subscribe).
///
/// Like a [`Subscription`], it runs until [`unsubscribe`](Self::unsubscribe) or the bus's
/// shutdown; dropping the handle does not stop it.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use flowgate::{Bus, Event};
/// let bus = Bus::new();
/// let audit = bus.subscribe::<u32>("orders.*", "audit", |_: Event<u32>| async { Ok(()) }).start()?;
/// drop(audit);
/// let eu = bus.topic::<u32>("orders.eu").create()?; // still attaches
/// eu.publish(Event::new("placed", 1)?).await?;
/// bus.shutdown(Duration::from_secs(1)).await;
/// assert_eq!(eu.stats().total.processed, 1);
/// # Ok(())
/// # }
/// ```
pub struct PatternSubscription<T: Send + Sync + 'static> {
    pub(crate) inner: Arc<PatternInner<T>>,
    pub(crate) bus: crate::Bus,
}

impl<T: Send + Sync + 'static> PatternSubscription<T> {
    /// The names of the topics it is attached to now, sorted.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use flowgate::{Bus, Event};
    /// let bus = Bus::new();
    /// bus.topic::<u32>("orders.eu").create()?;
    /// bus.topic::<String>("orders.us").create()?; // another payload type: not attached
    /// let audit = bus.subscribe::<u32>("orders.*", "audit", |_: Event<u32>| async { Ok(()) }).start()?;
    /// bus.topic::<u32>("orders.asia").create()?; // created later: attached
    /// assert_eq!(audit.topics(), ["orders.asia", "orders.eu"]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn topics(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .inner
            .attached
            .lock()
            .iter()
            .map(|(name, _)| name.clone())
            .collect();
        names.sort();
        names
    }

    /// Leaves every topic (see [`Subscription::unsubscribe`]) and stops attaching to new ones.
    /// Returns the events still queued for it, by topic.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use flowgate::{Bus, Event};
    /// let bus = Bus::new();
    /// let eu = bus.topic::<u32>("orders.eu").create()?;
    /// let audit = bus.subscribe::<u32>("orders.*", "audit", |_: Event<u32>| async { Ok(()) }).start()?;
    /// assert_eq!(eu.stats().subscribers, 1);
    /// let handed_back = audit.unsubscribe().await;
    /// assert!(handed_back.is_empty(), "nothing was published");
    /// assert_eq!(eu.stats().subscribers, 0);
    /// let us = bus.topic::<u32>("orders.us").create()?;
    /// assert_eq!(us.stats().subscribers, 0, "new topics are no longer attached");
    /// # Ok(())
    /// # }
    /// ```
    pub async fn unsubscribe(self) -> Vec<(String, Vec<Event<T>>)> {
        self.bus.forget_pattern(self.inner.id());
        let attached = std::mem::take(&mut *self.inner.attached.lock());
        let mut handed_back = Vec::new();
        for (topic, subscription) in attached {
            let events = subscription.unsubscribe().await;
            if !events.is_empty() {
                handed_back.push((topic, events));
            }
        }
        handed_back
    }
}

/// Builds a pattern subscription; from [`Bus::subscribe`](crate::Bus::subscribe).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use flowgate::{Bus, DeadLetterQueue, Event};
/// let bus = Bus::new();
/// let eu = bus.topic::<u32>("orders.eu").create()?;
/// let builder = bus.subscribe::<u32>("orders.*", "audit", |_: Event<u32>| async { Ok(()) });
/// assert_eq!(eu.stats().subscribers, 0, "nothing happens before start");
/// let audit = builder.dead_letters(DeadLetterQueue::new(100)).start()?;
/// assert_eq!(audit.topics(), ["orders.eu"]);
/// # Ok(())
/// # }
/// ```
#[must_use = "a subscription builder does nothing until `start` is called"]
pub struct PatternSubscriptionBuilder<T> {
    pub(crate) bus: crate::Bus,
    pub(crate) pattern: String,
    pub(crate) name: String,
    pub(crate) handler: BoxHandler<T>,
    pub(crate) group: Option<String>,
    pub(crate) dead_letters: Arc<dyn DeadLetterSink<T>>,
}

impl<T: Send + Sync + 'static> PatternSubscriptionBuilder<T> {
    /// Joins consumer group `name` on every matching topic.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use flowgate::{Bus, Event};
    /// let bus = Bus::new();
    /// let ok = |_: Event<u32>| async { Ok(()) };
    /// let _w1 = bus.subscribe::<u32>("jobs.*", "worker-1", ok).group("workers").start()?;
    /// let _w2 = bus.subscribe::<u32>("jobs.*", "worker-2", ok).group("workers").start()?;
    /// let email = bus.topic::<u32>("jobs.email").partitions(2).create()?;
    /// for n in 0..4 {
    ///     email.publish(Event::new("job", n)?).await?;
    /// }
    /// bus.shutdown(Duration::from_secs(1)).await;
    /// let stats = email.stats();
    /// assert_eq!((stats.subscribers, stats.total.processed), (1, 4), "each job handled once");
    /// # Ok(())
    /// # }
    /// ```
    pub fn group(mut self, name: impl Into<String>) -> Self {
        self.group = Some(name.into());
        self
    }

    /// Where dead letters go, from every matching topic (default: logged).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use flowgate::{Bus, DeadLetterQueue, Event, HandlerError};
    /// let bus = Bus::new();
    /// let dead = DeadLetterQueue::new(100);
    /// let _audit = bus
    ///     .subscribe::<u32>("orders.*", "audit", |_: Event<u32>| async {
    ///         Err(HandlerError::permanent("audit store is read-only"))
    ///     })
    ///     .dead_letters(dead.clone())
    ///     .start()?;
    /// for region in ["orders.eu", "orders.us"] {
    ///     bus.topic::<u32>(region).create()?.publish(Event::new("placed", 1)?).await?;
    /// }
    /// bus.shutdown(Duration::from_secs(1)).await;
    /// let letters = dead.drain();
    /// assert_eq!(letters.len(), 2, "one sink for both topics");
    /// assert!(letters.iter().all(|l| &*l.subscriber == "audit" && l.attempts == 1));
    /// # Ok(())
    /// # }
    /// ```
    pub fn dead_letters(mut self, sink: impl DeadLetterSink<T>) -> Self {
        self.dead_letters = Arc::new(sink);
        self
    }

    /// Attaches to every matching topic now, and to each one created later.
    ///
    /// # Errors
    ///
    /// [`BusError::Core`] for an invalid pattern, [`BusError::InvalidConfig`] for an empty
    /// name, [`BusError::NoRuntime`] outside a tokio runtime, [`BusError::ShutDown`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use flowgate::bus::{Bus, BusError};
    /// use flowgate::Event;
    /// let bus = Bus::new();
    /// let ok = |_: Event<u32>| async { Ok(()) };
    /// let bad = bus.subscribe::<u32>("orders.>.eu", "audit", ok).start();
    /// assert!(matches!(bad, Err(BusError::Core(_))), "`>` must be the last segment");
    /// let unnamed = bus.subscribe::<u32>("orders.>", "", ok).start();
    /// assert!(matches!(unnamed, Err(BusError::InvalidConfig { .. })));
    /// assert!(bus.subscribe::<u32>("orders.>", "audit", ok).start()?.topics().is_empty());
    /// # Ok(())
    /// # }
    /// ```
    pub fn start(self) -> Result<PatternSubscription<T>, BusError> {
        let pattern = Pattern::new(&self.pattern)?;
        check_names(&self.name, self.group.as_deref())?;
        let runtime = Handle::try_current().map_err(|_| BusError::NoRuntime)?;
        let inner = Arc::new(PatternInner {
            pattern,
            name: Arc::from(self.name),
            group: self.group,
            handler: self.handler,
            dead_letters: self.dead_letters,
            runtime,
            attached: Mutex::new(Vec::new()),
        });
        self.bus
            .add_pattern(Arc::clone(&inner) as Arc<dyn AnyPattern>)?;
        Ok(PatternSubscription {
            inner,
            bus: self.bus,
        })
    }
}

impl<T: Send + Sync + 'static> fmt::Debug for PatternSubscription<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PatternSubscription")
            .field("pattern", &self.inner.pattern)
            .field("name", &self.inner.name)
            .field("topics", &self.topics())
            .finish_non_exhaustive()
    }
}

impl<T> fmt::Debug for PatternSubscriptionBuilder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PatternSubscriptionBuilder")
            .field("pattern", &self.pattern)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}
