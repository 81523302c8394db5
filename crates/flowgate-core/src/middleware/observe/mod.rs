//! Observation as middleware: a callback with each invocation's outcome and duration, the
//! hook through which metrics are recorded.

mod layer;

use std::sync::Arc;
use std::time::Duration;

pub use layer::ObserveLayer;

use crate::{BoxFuture, Event, EventId, EventType, Handler, HandlerError, HandlerResult};

/// What [`Observe`] reports for one invocation.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use std::time::Duration;
/// use flowgate::{invoke, Event, EventId, HandlerError, HandlerResult, Layer};
/// use flowgate::middleware::{Observation, ObserveLayer};
///
/// async fn slow_failure(_: Event<()>) -> HandlerResult {
///     tokio::time::sleep(Duration::from_secs(3)).await;
///     Err(HandlerError::permanent("rejected"))
/// }
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), flowgate::CoreError> {
/// let last = Arc::new(Mutex::new(None::<(String, EventId, bool, Duration)>));
/// let record = Arc::clone(&last);
/// let layer = ObserveLayer::new(move |obs: &Observation<'_>| {
///     let failed_for_good = matches!(obs.outcome, Err(e) if !e.is_retryable());
///     *record.lock().unwrap() =
///         Some((obs.kind.to_string(), obs.event_id, failed_for_good, obs.elapsed));
/// });
/// let handler = layer.layer(slow_failure);
/// let event = Event::new("order.paid", ())?;
/// let id = event.id();
/// let _ = invoke(&handler, event).await;
/// let (kind, event_id, failed_for_good, elapsed) = last.lock().unwrap().take().unwrap();
/// assert_eq!(kind, "order.paid");
/// assert_eq!(event_id, id);
/// assert!(failed_for_good);
/// assert!(elapsed >= Duration::from_secs(3));
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub struct Observation<'a> {
    /// The event's type.
    pub kind: &'a EventType,
    /// The event's id.
    pub event_id: EventId,
    /// How the invocation ended.
    pub outcome: Result<(), &'a HandlerError>,
    /// How long it ran (on the tokio clock).
    pub elapsed: Duration,
}

/// A handler that calls an observer after each invocation of `H`. Built by [`ObserveLayer`].
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use std::sync::Arc;
/// use flowgate::{invoke, Event, Layer};
/// use flowgate::middleware::{Observation, ObserveLayer};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), flowgate::CoreError> {
/// let failures = Arc::new(AtomicU64::new(0));
/// let counter = Arc::clone(&failures);
/// let layer = ObserveLayer::new(move |obs: &Observation<'_>| {
///     if obs.outcome.is_err() {
///         counter.fetch_add(1, Ordering::Relaxed);
///     }
/// });
/// let handler = layer.layer(|_: Event<()>| async { Err(flowgate::HandlerError::permanent("no")) });
/// let _ = invoke(&handler, Event::new("a", ())?).await;
/// assert_eq!(failures.load(Ordering::Relaxed), 1);
/// # Ok(())
/// # }
/// ```
pub struct Observe<H, F> {
    inner: H,
    observer: Arc<F>,
}

impl<H: Clone, F> Clone for Observe<H, F> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            observer: Arc::clone(&self.observer),
        }
    }
}

impl<H: std::fmt::Debug, F> std::fmt::Debug for Observe<H, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observe")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<H, F> Observe<H, F> {
    /// Wraps `inner`, reporting to `observer` (an `Arc`, so one observer can serve handlers
    /// of different types).
    ///
    /// ```
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// use std::sync::Arc;
    /// use flowgate::{invoke, Event, HandlerError, HandlerResult};
    /// use flowgate::middleware::{Observation, Observe};
    ///
    /// async fn ok(_: Event<()>) -> HandlerResult { Ok(()) }
    /// async fn fail(_: Event<u32>) -> HandlerResult { Err(HandlerError::retryable("x")) }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), flowgate::CoreError> {
    /// let failures = Arc::new(AtomicU32::new(0));
    /// let counter = Arc::clone(&failures);
    /// let observer = Arc::new(move |obs: &Observation<'_>| {
    ///     if obs.outcome.is_err() {
    ///         counter.fetch_add(1, Ordering::Relaxed);
    ///     }
    /// });
    /// let a = Observe::new(ok, Arc::clone(&observer));
    /// let b = Observe::new(fail, observer);
    /// invoke(&a, Event::new("a", ())?).await.unwrap();
    /// let _ = invoke(&b, Event::new("b", 1)?).await;
    /// assert_eq!(failures.load(Ordering::Relaxed), 1);
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(inner: H, observer: Arc<F>) -> Self {
        Self { inner, observer }
    }

    /// The wrapped handler.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use std::time::Duration;
    /// # use flowgate::{Event, HandlerResult};
    /// use flowgate::middleware::{Observation, Observe, Timeout};
    /// # async fn noop(_: Event<()>) -> HandlerResult { Ok(()) }
    /// let observer = Arc::new(|_: &Observation<'_>| {});
    /// let handler = Observe::new(Timeout::new(noop, Duration::from_secs(1)), observer);
    /// assert_eq!(handler.get_ref().duration(), Duration::from_secs(1));
    /// ```
    pub fn get_ref(&self) -> &H {
        &self.inner
    }

    /// Unwraps the handler.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use std::time::Duration;
    /// # use flowgate::{Event, HandlerResult};
    /// use flowgate::middleware::{Observation, Observe, Timeout};
    /// # async fn noop(_: Event<()>) -> HandlerResult { Ok(()) }
    /// let observer = Arc::new(|_: &Observation<'_>| {});
    /// let handler = Observe::new(Timeout::new(noop, Duration::from_secs(1)), observer);
    /// let timeout: Timeout<_> = handler.into_inner();
    /// assert_eq!(timeout.duration(), Duration::from_secs(1));
    /// ```
    pub fn into_inner(self) -> H {
        self.inner
    }
}

impl<T, H, F> Handler<T> for Observe<H, F>
where
    H: Handler<T>,
    F: Fn(&Observation<'_>) + Send + Sync + 'static,
{
    fn call(&self, event: Event<T>) -> BoxFuture<'static, HandlerResult> {
        let kind = event.kind().clone();
        let event_id = event.id();
        // Through `invoke`, so a panic is observed as the failure it is.
        let inner = crate::invoke(&self.inner, event);
        let observer = Arc::clone(&self.observer);
        Box::pin(async move {
            let started = tokio::time::Instant::now();
            let result = inner.await;
            observer(&Observation {
                kind: &kind,
                event_id,
                outcome: match &result {
                    Ok(()) => Ok(()),
                    Err(error) => Err(error),
                },
                elapsed: started.elapsed(),
            });
            result
        })
    }
}
