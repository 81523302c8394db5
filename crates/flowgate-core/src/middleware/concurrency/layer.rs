use std::sync::Arc;

use tokio::sync::Semaphore;

use super::ConcurrencyLimit;
use crate::Layer;

/// Builds [`ConcurrencyLimit`] handlers.
///
/// Every handler built by one layer value gets its own permits; clone the built handler, not
/// the layer, to share a cap.
///
/// ```
/// use flowgate::middleware::ConcurrencyLimitLayer;
/// let layer = ConcurrencyLimitLayer::new(8);
/// assert_eq!(layer.max(), 8);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct ConcurrencyLimitLayer {
    max: usize,
}

impl ConcurrencyLimitLayer {
    /// At most `max` invocations at once (0 is raised to 1).
    ///
    /// ```
    /// use flowgate::middleware::ConcurrencyLimitLayer;
    /// assert_eq!(ConcurrencyLimitLayer::new(4).max(), 4);
    /// assert_eq!(ConcurrencyLimitLayer::new(0).max(), 1);
    /// ```
    pub fn new(max: usize) -> Self {
        Self {
            max: max.clamp(1, Semaphore::MAX_PERMITS),
        }
    }

    /// The cap.
    ///
    /// ```
    /// use flowgate::{Event, HandlerResult, Layer};
    /// use flowgate::middleware::ConcurrencyLimitLayer;
    ///
    /// async fn noop(_: Event<()>) -> HandlerResult { Ok(()) }
    /// let layer = ConcurrencyLimitLayer::new(3);
    /// let handler = layer.layer(noop);
    /// assert_eq!(handler.available(), layer.max());
    /// ```
    pub fn max(&self) -> usize {
        self.max
    }
}

impl<H> Layer<H> for ConcurrencyLimitLayer {
    type Handler = ConcurrencyLimit<H>;
    fn layer(&self, inner: H) -> ConcurrencyLimit<H> {
        ConcurrencyLimit::with_semaphore(inner, Arc::new(Semaphore::new(self.max)))
    }
}
