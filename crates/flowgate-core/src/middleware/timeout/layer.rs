use std::time::Duration;

use super::Timeout;
use crate::Layer;

/// Builds [`Timeout`] handlers.
///
/// ```
/// use std::time::Duration;
/// use flowgate::{Event, HandlerResult, Layer};
/// use flowgate::middleware::TimeoutLayer;
///
/// async fn noop(_: Event<()>) -> HandlerResult { Ok(()) }
/// let layer = TimeoutLayer::new(Duration::from_millis(500));
/// let handler = layer.layer(noop);
/// assert_eq!(handler.duration(), Duration::from_millis(500));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct TimeoutLayer {
    duration: Duration,
}

impl TimeoutLayer {
    /// Handlers time out after `duration`; a handler that finishes in time is not affected.
    ///
    /// ```
    /// use std::time::Duration;
    /// use flowgate::{invoke, Event, HandlerResult, Layer};
    /// use flowgate::middleware::TimeoutLayer;
    ///
    /// async fn takes_2s(_: Event<()>) -> HandlerResult {
    ///     tokio::time::sleep(Duration::from_secs(2)).await;
    ///     Ok(())
    /// }
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), flowgate::CoreError> {
    /// let handler = TimeoutLayer::new(Duration::from_secs(5)).layer(takes_2s);
    /// assert!(invoke(&handler, Event::new("a", ())?).await.is_ok());
    /// # Ok(())
    /// # }
    /// ```
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
