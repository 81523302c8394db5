use std::sync::Arc;

use super::CircuitBreak;
use crate::{CircuitBreaker, CircuitBreakerConfig, CoreError, Layer};

/// Builds [`CircuitBreak`] handlers, each with its own breaker.
///
/// ```
/// use std::time::Duration;
/// use flowgate::{invoke, CircuitBreakerConfig, CircuitState, Event, HandlerError, HandlerResult, Layer};
/// use flowgate::middleware::CircuitBreakerLayer;
///
/// async fn failing(_: Event<()>) -> HandlerResult { Err(HandlerError::retryable("db down")) }
/// async fn healthy(_: Event<()>) -> HandlerResult { Ok(()) }
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), flowgate::CoreError> {
/// let layer = CircuitBreakerLayer::new(CircuitBreakerConfig::new(1, Duration::from_secs(30)))?;
/// let (a, b) = (layer.layer(failing), layer.layer(healthy));
/// let _ = invoke(&a, Event::new("a", ())?).await;
/// assert_eq!(a.breaker().state(), CircuitState::Open);
/// assert_eq!(b.breaker().state(), CircuitState::Closed, "b has a breaker of its own");
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct CircuitBreakerLayer {
    config: CircuitBreakerConfig,
}

impl CircuitBreakerLayer {
    /// A layer whose handlers each get a breaker with `config`.
    ///
    /// ```
    /// # use std::time::Duration;
    /// use flowgate::{CircuitBreakerConfig, CoreError};
    /// use flowgate::middleware::CircuitBreakerLayer;
    ///
    /// assert!(CircuitBreakerLayer::new(CircuitBreakerConfig::new(5, Duration::from_secs(30))).is_ok());
    /// let never_closes = CircuitBreakerConfig::new(5, Duration::from_secs(30)).half_open_probes(0);
    /// assert!(matches!(
    ///     CircuitBreakerLayer::new(never_closes),
    ///     Err(CoreError::InvalidConfig { setting: "half_open_probes", .. })
    /// ));
    /// ```
    ///
    /// # Errors
    ///
    /// See [`CircuitBreakerConfig::validate`].
    pub fn new(config: CircuitBreakerConfig) -> Result<Self, CoreError> {
        config.validate()?;
        Ok(Self { config })
    }
}

impl<H> Layer<H> for CircuitBreakerLayer {
    type Handler = CircuitBreak<H>;
    fn layer(&self, inner: H) -> CircuitBreak<H> {
        // `new` validated the config.
        let breaker = CircuitBreaker::from_validated(self.config.clone());
        CircuitBreak::new(inner, Arc::new(breaker))
    }
}
