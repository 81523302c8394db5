//! Per-handler timeout that really cancels: when the time is up the inner future is dropped, so
//! the handler stops at its next `.await` and its drop guards run.

mod layer;

use std::time::Duration;

pub use layer::TimeoutLayer;

use crate::{BoxFuture, Event, Handler, HandlerError, HandlerResult};

/// A handler that fails with [`HandlerError::TimedOut`] and cancels `H` when `H` runs too long.
///
/// Built by [`TimeoutLayer`].
///
/// ```
/// use std::time::Duration;
/// use flowgate::{invoke, Event, HandlerError, Layer};
/// use flowgate::middleware::TimeoutLayer;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), flowgate::CoreError> {
/// let slow = |_: Event<()>| async {
///     tokio::time::sleep(Duration::from_secs(60)).await;
///     Ok(())
/// };
/// let handler = TimeoutLayer::new(Duration::from_secs(1)).layer(slow);
/// let outcome = invoke(&handler, Event::new("a", ())?).await;
/// assert!(matches!(outcome, Err(HandlerError::TimedOut(_))));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Timeout<H> {
    inner: H,
    duration: Duration,
}

impl<H> Timeout<H> {
    /// Wraps `inner` with a `duration` timeout. The inner future is dropped when the time is
    /// up, so the handler really stops.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicBool, Ordering};
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use flowgate::{invoke, Event, HandlerError};
    /// use flowgate::middleware::Timeout;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), flowgate::CoreError> {
    /// let finished = Arc::new(AtomicBool::new(false));
    /// let flag = Arc::clone(&finished);
    /// let slow = move |_: Event<()>| {
    ///     let flag = Arc::clone(&flag);
    ///     async move {
    ///         tokio::time::sleep(Duration::from_secs(60)).await;
    ///         flag.store(true, Ordering::Relaxed);
    ///         Ok(())
    ///     }
    /// };
    /// let handler = Timeout::new(slow, Duration::from_secs(1));
    /// let outcome = invoke(&handler, Event::new("a", ())?).await;
    /// assert!(matches!(outcome, Err(HandlerError::TimedOut(d)) if d == Duration::from_secs(1)));
    /// tokio::time::sleep(Duration::from_secs(120)).await;
    /// assert!(!finished.load(Ordering::Relaxed), "the handler was cancelled");
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(inner: H, duration: Duration) -> Self {
        Self { inner, duration }
    }

    /// The timeout.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use flowgate::{Event, HandlerResult};
    /// use flowgate::middleware::Timeout;
    /// # async fn noop(_: Event<()>) -> HandlerResult { Ok(()) }
    /// let handler = Timeout::new(noop, Duration::from_millis(250));
    /// assert_eq!(handler.duration(), Duration::from_millis(250));
    /// ```
    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// The wrapped handler.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use flowgate::{Event, HandlerResult};
    /// use flowgate::middleware::{ConcurrencyLimit, Timeout};
    /// # async fn noop(_: Event<()>) -> HandlerResult { Ok(()) }
    /// let handler = Timeout::new(ConcurrencyLimit::new(noop, 2), Duration::from_secs(1));
    /// assert_eq!(handler.get_ref().available(), 2);
    /// ```
    pub fn get_ref(&self) -> &H {
        &self.inner
    }

    /// Unwraps the handler.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use flowgate::{Event, HandlerResult};
    /// use flowgate::middleware::{ConcurrencyLimit, Timeout};
    /// # async fn noop(_: Event<()>) -> HandlerResult { Ok(()) }
    /// let handler = Timeout::new(ConcurrencyLimit::new(noop, 2), Duration::from_secs(1));
    /// let limited: ConcurrencyLimit<_> = handler.into_inner();
    /// assert_eq!(limited.available(), 2);
    /// ```
    pub fn into_inner(self) -> H {
        self.inner
    }
}

impl<T, H: Handler<T>> Handler<T> for Timeout<H> {
    fn call(&self, event: Event<T>) -> BoxFuture<'static, HandlerResult> {
        let inner = self.inner.call(event);
        let duration = self.duration;
        Box::pin(async move {
            match tokio::time::timeout(duration, inner).await {
                Ok(result) => result,
                Err(_elapsed) => Err(HandlerError::TimedOut(duration)),
            }
        })
    }
}
