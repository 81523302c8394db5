//! The bridge from handler-driven subscriptions (emitter, bus, Redis bus) to a [`Stream`]: a
//! handler that moves each event into a bounded buffer, and the stream that reads it.
//!
//! Invariant: the buffer holds at most `capacity` events. A delivery's handler returns `Ok`
//! only once its event is in the buffer, so the subscription's guarantee (at-least-once,
//! exactly-once) covers the event up to the stream; a full buffer makes the handler wait, which
//! is backpressure on the subscription (its partition's buffer fills, then `publish` applies
//! the topic's policy). The stream ends once every copy of the handler is dropped (the
//! subscription ended) and the buffer is empty.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;
use tokio::sync::mpsc;

use crate::{BoxFuture, CoreError, Event, Handler, HandlerError, HandlerResult};

/// A handler that moves each event into an [`EventStream`]; from [`channel`].
pub struct StreamHandler<T> {
    tx: mpsc::Sender<Event<T>>,
}

/// The events a [`StreamHandler`] accepted, in the order its deliveries reached it; from
/// [`channel`]. Apply the [`FlowExt`](super::FlowExt) operators to it.
pub struct EventStream<T> {
    rx: mpsc::Receiver<Event<T>>,
}

/// A handler and the stream of the events it is given, through a buffer of `capacity` events.
///
/// Subscribe the handler anywhere a handler goes (an emitter, a bus topic, a Redis topic) and
/// read the subscription as a [`Stream`]: the way to put the flow-control operators on a
/// subscription.
///
/// # Delivery
///
/// The handler returns `Ok` once the event is in the buffer. It waits while the buffer is
/// full, so a slow reader slows the subscription down instead of losing events. If the stream
/// was dropped, the handler fails with a permanent error ("the stream reading this subscription
/// was dropped"): under at-least-once the bus hands the event to the dead letters, so nothing
/// is lost without a report.
///
/// The stream ends once every buffered event was read and the subscription ended, that is
/// once the subscription dropped its handler: on the bus (in process or Redis) at
/// `unsubscribe` or at the bus's `shutdown`, even while the subscription's handle is held; on
/// the emitter when its `Subscription` is dropped or unsubscribed. The operators then hand on
/// what they hold (a partial batch, each debounced key's last event).
///
/// # Errors
///
/// [`CoreError::InvalidConfig`] for a `capacity` of zero.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use futures_util::StreamExt;
/// use flowgate::{Bus, Event};
///
/// let bus = Bus::new();
/// let prices = bus.topic::<u32>("prices").create()?;
/// let (handler, events) = flowgate::flow::channel(64)?;
/// let _sub = prices.subscribe("ticker", handler).start()?;
/// for price in [10, 11, 12] {
///     prices.publish(Event::new("price", price)?).await?;
/// }
/// bus.shutdown(Duration::from_secs(1)).await; // the subscription ends, so does the stream
/// let seen: Vec<u32> = events.map(|event| *event.payload()).collect().await;
/// assert_eq!(seen, [10, 11, 12]);
/// # Ok(())
/// # }
/// ```
pub fn channel<T: Send + Sync + 'static>(
    capacity: usize,
) -> Result<(StreamHandler<T>, EventStream<T>), CoreError> {
    if capacity == 0 {
        return Err(CoreError::InvalidConfig {
            setting: "capacity",
            reason: "a stream's buffer must hold at least one event; use 1 or more".into(),
        });
    }
    let (tx, rx) = mpsc::channel(capacity);
    Ok((StreamHandler { tx }, EventStream { rx }))
}

/// The error a [`StreamHandler`] fails with once its stream was dropped.
#[derive(Debug, thiserror::Error)]
#[error("the stream reading this subscription was dropped; end the subscription before dropping its stream")]
struct StreamDropped;

impl<T: Send + Sync + 'static> Handler<T> for StreamHandler<T> {
    fn call(&self, event: Event<T>) -> BoxFuture<'static, HandlerResult> {
        let tx = self.tx.clone();
        Box::pin(async move {
            tx.send(event)
                .await
                .map_err(|_| HandlerError::permanent(StreamDropped))
        })
    }
}

impl<T> EventStream<T> {
    /// The next event, without `StreamExt`: `None` once the subscription ended and every
    /// buffered event was read.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use flowgate::{invoke, Event};
    /// let (handler, mut events) = flowgate::flow::channel::<u8>(4)?;
    /// invoke(&handler, Event::new("e", 1)?).await?;
    /// drop(handler); // the subscription ended
    /// assert_eq!(events.recv().await.map(|e| *e.payload()), Some(1));
    /// assert!(events.recv().await.is_none());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn recv(&mut self) -> Option<Event<T>> {
        self.rx.recv().await
    }

    /// Events buffered now, not yet read.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use flowgate::{invoke, Event};
    /// let (handler, events) = flowgate::flow::channel::<u8>(4)?;
    /// invoke(&handler, Event::new("e", 1)?).await?;
    /// assert_eq!(events.len(), 1);
    /// # Ok(())
    /// # }
    /// ```
    pub fn len(&self) -> usize {
        self.rx.len()
    }

    /// Whether no event is buffered now.
    ///
    /// ```
    /// let (_handler, events) = flowgate::flow::channel::<u8>(4)?;
    /// assert!(events.is_empty());
    /// # Ok::<(), flowgate::CoreError>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }
}

impl<T> Stream for EventStream<T> {
    type Item = Event<T>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event<T>>> {
        self.rx.poll_recv(cx)
    }
}

impl<T> fmt::Debug for StreamHandler<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamHandler")
            .field("capacity", &self.tx.max_capacity())
            .finish_non_exhaustive()
    }
}

impl<T> fmt::Debug for EventStream<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventStream")
            .field("buffered", &self.rx.len())
            .finish_non_exhaustive()
    }
}
