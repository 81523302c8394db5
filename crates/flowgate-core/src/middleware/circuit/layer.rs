use std::sync::Arc;

use super::CircuitBreak;
use crate::{CircuitBreaker, CircuitBreakerConfig, CoreError, Layer};

/// Builds [`CircuitBreak`] handlers, each with its own breaker.
///
/// ```
/// use std::time::Duration;
/// use flowgate::CircuitBreakerConfig;
/// use flowgate::middleware::CircuitBreakerLayer;
/// let layer = CircuitBreakerLayer::new(CircuitBreakerConfig::new(5, Duration::from_secs(30)))?;
/// # drop(layer);
/// # Ok::<(), flowgate::CoreError>(())
/// ```
#[derive(Debug, Clone)]
pub struct CircuitBreakerLayer {
    config: CircuitBreakerConfig,
}

impl CircuitBreakerLayer {
    /// A layer whose handlers each get a breaker with `config`.
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
