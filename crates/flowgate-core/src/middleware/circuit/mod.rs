//! Circuit breaking as middleware: while the breaker is open the handler is not called and the
//! invocation fails at once with [`HandlerError::CircuitOpen`] (retryable, so the retry policy
//! waits and tries again).
//!
//! Only retryable errors count as failures: a permanent error says the event was bad, not that
//! the handler's dependency is down.
//!
//! Layer order matters: a [`TimeoutLayer`](crate::middleware::TimeoutLayer) *inside* the
//! breaker (added after it) turns a slow call into a failure the breaker counts; one *outside*
//! it cancels the breaker's call together with the handler, and a cancelled call counts as
//! neither success nor failure. Put the timeout inside when slowness should open the circuit.

mod layer;

use std::sync::Arc;

pub use layer::CircuitBreakerLayer;

use crate::{BoxFuture, CircuitBreaker, Event, Handler, HandlerError, HandlerResult};

/// A handler guarded by a [`CircuitBreaker`]. Built by [`CircuitBreakerLayer`].
///
/// ```
/// use std::time::Duration;
/// use flowgate::{invoke, CircuitBreakerConfig, Event, HandlerError, Layer};
/// use flowgate::middleware::CircuitBreakerLayer;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), flowgate::CoreError> {
/// let layer = CircuitBreakerLayer::new(CircuitBreakerConfig::new(1, Duration::from_secs(5)))?;
/// let handler = layer.layer(|_: Event<()>| async { Err(HandlerError::retryable("db down")) });
/// let first = invoke(&handler, Event::new("a", ())?).await;
/// assert!(matches!(first, Err(HandlerError::Retryable(_))));
/// let second = invoke(&handler, Event::new("a", ())?).await;
/// assert!(matches!(second, Err(HandlerError::CircuitOpen)));
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct CircuitBreak<H> {
    inner: Arc<H>,
    breaker: Arc<CircuitBreaker>,
}

impl<H> Clone for CircuitBreak<H> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            breaker: Arc::clone(&self.breaker),
        }
    }
}

impl<H> CircuitBreak<H> {
    /// Wraps `inner` with `breaker` (which may be shared with other handlers).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use flowgate::{invoke, CircuitBreaker, CircuitBreakerConfig, Event, HandlerError, HandlerResult};
    /// use flowgate::middleware::CircuitBreak;
    ///
    /// async fn charge(_: Event<()>) -> HandlerResult { Err(HandlerError::retryable("bank down")) }
    /// async fn refund(_: Event<()>) -> HandlerResult { Ok(()) }
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), flowgate::CoreError> {
    /// // Both handlers call the same bank: one breaker for both.
    /// let bank = Arc::new(CircuitBreaker::new(CircuitBreakerConfig::new(1, Duration::from_secs(30)))?);
    /// let charge = CircuitBreak::new(charge, Arc::clone(&bank));
    /// let refund = CircuitBreak::new(refund, bank);
    /// let _ = invoke(&charge, Event::new("charge", ())?).await;
    /// let outcome = invoke(&refund, Event::new("refund", ())?).await;
    /// assert!(matches!(outcome, Err(HandlerError::CircuitOpen)));
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(inner: H, breaker: Arc<CircuitBreaker>) -> Self {
        Self {
            inner: Arc::new(inner),
            breaker,
        }
    }

    /// The breaker.
    ///
    /// ```
    /// use std::time::Duration;
    /// use flowgate::{invoke, CircuitBreakerConfig, CircuitState, Event, HandlerError, HandlerResult, Layer};
    /// use flowgate::middleware::CircuitBreakerLayer;
    ///
    /// async fn failing(_: Event<()>) -> HandlerResult { Err(HandlerError::retryable("db down")) }
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), flowgate::CoreError> {
    /// let layer = CircuitBreakerLayer::new(CircuitBreakerConfig::new(2, Duration::from_secs(30)))?;
    /// let handler = layer.layer(failing);
    /// for _ in 0..2 {
    ///     let _ = invoke(&handler, Event::new("a", ())?).await;
    /// }
    /// assert_eq!(handler.breaker().state(), CircuitState::Open);
    /// # Ok(())
    /// # }
    /// ```
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    /// The wrapped handler.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use std::time::Duration;
    /// # use flowgate::{CircuitBreaker, CircuitBreakerConfig, Event, HandlerResult};
    /// use flowgate::middleware::{CircuitBreak, Timeout};
    /// # async fn noop(_: Event<()>) -> HandlerResult { Ok(()) }
    /// # let breaker = Arc::new(CircuitBreaker::new(CircuitBreakerConfig::new(1, Duration::from_secs(30)))?);
    /// let handler = CircuitBreak::new(Timeout::new(noop, Duration::from_secs(1)), breaker);
    /// assert_eq!(handler.get_ref().duration(), Duration::from_secs(1));
    /// # Ok::<(), flowgate::CoreError>(())
    /// ```
    pub fn get_ref(&self) -> &H {
        &self.inner
    }
}

impl<T: Send + Sync + 'static, H: Handler<T>> Handler<T> for CircuitBreak<H> {
    fn call(&self, event: Event<T>) -> BoxFuture<'static, HandlerResult> {
        let inner = Arc::clone(&self.inner);
        let breaker = Arc::clone(&self.breaker);
        Box::pin(async move {
            let Some(permit) = breaker.try_acquire() else {
                return Err(HandlerError::CircuitOpen);
            };
            // Through `invoke`, so a panic counts as the failure it is.
            let result = crate::invoke(&*inner, event).await;
            match &result {
                Err(error) if error.is_retryable() => permit.failure(),
                _ => permit.success(),
            }
            result
        })
    }
}
