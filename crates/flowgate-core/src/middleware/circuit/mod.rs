//! Circuit breaking as middleware: while the breaker is open the handler is not called and the
//! invocation fails at once with [`HandlerError::CircuitOpen`] (retryable, so the retry policy
//! waits and tries again).
//!
//! Only retryable errors count as failures: a permanent error says the event was bad, not that
//! the handler's dependency is down.

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
    pub fn new(inner: H, breaker: Arc<CircuitBreaker>) -> Self {
        Self {
            inner: Arc::new(inner),
            breaker,
        }
    }

    /// The breaker.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    /// The wrapped handler.
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
            let result = inner.call(event).await;
            match &result {
                Err(error) if error.is_retryable() => permit.failure(),
                _ => permit.success(),
            }
            result
        })
    }
}
