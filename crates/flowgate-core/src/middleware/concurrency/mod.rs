//! A per-handler concurrency cap: at most `max` invocations of the wrapped handler run at once.
//!
//! The permit lives inside the invocation's future, so a cancelled or panicking invocation gives
//! it back.

mod layer;

use std::sync::Arc;

use tokio::sync::Semaphore;

pub use layer::ConcurrencyLimitLayer;

use crate::{BoxFuture, Event, Handler, HandlerError, HandlerResult};

/// A handler that waits for one of `max` permits before calling `H`.
///
/// Built by [`ConcurrencyLimitLayer`]. Clones share the permits.
///
/// ```
/// use flowgate::{Event, HandlerResult, Layer};
/// use flowgate::middleware::ConcurrencyLimitLayer;
///
/// async fn noop(_: Event<()>) -> HandlerResult { Ok(()) }
/// let handler = ConcurrencyLimitLayer::new(2).layer(noop);
/// assert_eq!(handler.available(), 2);
/// ```
#[derive(Debug)]
pub struct ConcurrencyLimit<H> {
    inner: Arc<H>,
    permits: Arc<Semaphore>,
}

impl<H> Clone for ConcurrencyLimit<H> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            permits: Arc::clone(&self.permits),
        }
    }
}

impl<H> ConcurrencyLimit<H> {
    /// Wraps `inner`; `max` of 0 is raised to 1 (a handler that can never run would lose
    /// events).
    ///
    /// ```
    /// use std::time::Duration;
    /// use flowgate::{invoke, Event, HandlerResult};
    /// use flowgate::middleware::ConcurrencyLimit;
    ///
    /// async fn takes_1s(_: Event<()>) -> HandlerResult {
    ///     tokio::time::sleep(Duration::from_secs(1)).await;
    ///     Ok(())
    /// }
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), flowgate::CoreError> {
    /// let one_at_a_time = ConcurrencyLimit::new(takes_1s, 1);
    /// let started = tokio::time::Instant::now();
    /// let (a, b) = tokio::join!(
    ///     invoke(&one_at_a_time, Event::new("a", ())?),
    ///     invoke(&one_at_a_time, Event::new("a", ())?),
    /// );
    /// assert!(a.is_ok() && b.is_ok());
    /// assert!(started.elapsed() >= Duration::from_secs(2), "the second waited for the first");
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(inner: H, max: usize) -> Self {
        Self::with_semaphore(
            inner,
            Arc::new(Semaphore::new(max.clamp(1, Semaphore::MAX_PERMITS))),
        )
    }

    pub(crate) fn with_semaphore(inner: H, permits: Arc<Semaphore>) -> Self {
        Self {
            inner: Arc::new(inner),
            permits,
        }
    }

    /// Permits free now.
    ///
    /// ```
    /// use std::time::Duration;
    /// use flowgate::{invoke, Event, HandlerResult};
    /// use flowgate::middleware::ConcurrencyLimit;
    ///
    /// async fn takes_1s(_: Event<()>) -> HandlerResult {
    ///     tokio::time::sleep(Duration::from_secs(1)).await;
    ///     Ok(())
    /// }
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), flowgate::CoreError> {
    /// let handler = ConcurrencyLimit::new(takes_1s, 2);
    /// let running = tokio::spawn(invoke(&handler, Event::new("a", ())?));
    /// tokio::task::yield_now().await; // let it start and take a permit
    /// assert_eq!(handler.available(), 1);
    /// assert!(running.await.unwrap().is_ok());
    /// assert_eq!(handler.available(), 2);
    /// # Ok(())
    /// # }
    /// ```
    pub fn available(&self) -> usize {
        self.permits.available_permits()
    }

    /// The wrapped handler.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use flowgate::{Event, HandlerResult};
    /// use flowgate::middleware::{ConcurrencyLimit, Timeout};
    /// # async fn noop(_: Event<()>) -> HandlerResult { Ok(()) }
    /// let handler = ConcurrencyLimit::new(Timeout::new(noop, Duration::from_secs(1)), 2);
    /// assert_eq!(handler.get_ref().duration(), Duration::from_secs(1));
    /// ```
    pub fn get_ref(&self) -> &H {
        &self.inner
    }
}

impl<T: Send + Sync + 'static, H: Handler<T>> Handler<T> for ConcurrencyLimit<H> {
    fn call(&self, event: Event<T>) -> BoxFuture<'static, HandlerResult> {
        let inner = Arc::clone(&self.inner);
        let permits = Arc::clone(&self.permits);
        Box::pin(async move {
            let Ok(_permit) = permits.acquire_owned().await else {
                // The semaphore is never closed; report rather than panic if that changes.
                return Err(HandlerError::retryable("concurrency limit closed"));
            };
            inner.call(event).await
        })
    }
}
