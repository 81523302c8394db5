use std::time::Duration;

use super::Timeout;
use crate::Layer;

/// Builds [`Timeout`] handlers.
///
/// ```
/// use std::time::Duration;
/// use flowgate::middleware::TimeoutLayer;
/// let _layer = TimeoutLayer::new(Duration::from_millis(500));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct TimeoutLayer {
    duration: Duration,
}

impl TimeoutLayer {
    /// Handlers time out after `duration`.
    pub fn new(duration: Duration) -> Self {
        Self { duration }
    }
}

impl<H> Layer<H> for TimeoutLayer {
    type Handler = Timeout<H>;
    fn layer(&self, inner: H) -> Timeout<H> {
        Timeout::new(inner, self.duration)
    }
}
