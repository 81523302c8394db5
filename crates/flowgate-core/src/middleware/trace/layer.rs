use super::Trace;
use crate::Layer;

/// Builds [`Trace`] handlers.
///
/// Tracing only observes: the wrapped handler's outcome is passed on unchanged.
///
/// ```
/// use flowgate::{invoke, Event, HandlerError, HandlerResult, Layer};
/// use flowgate::middleware::TraceLayer;
///
/// async fn flaky(_: Event<()>) -> HandlerResult {
///     Err(HandlerError::retryable("connection reset"))
/// }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), flowgate::CoreError> {
/// let handler = TraceLayer::new().layer(flaky);
/// let outcome = invoke(&handler, Event::new("a", ())?).await;
/// assert!(matches!(outcome, Err(HandlerError::Retryable(_))));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct TraceLayer {
    _private: (),
}

impl TraceLayer {
    /// A tracing layer.
    ///
    /// ```
    /// use flowgate::{invoke, Event, HandlerResult, Layer};
    /// use flowgate::middleware::TraceLayer;
    ///
    /// async fn noop(_: Event<()>) -> HandlerResult { Ok(()) }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), flowgate::CoreError> {
    /// let handler = TraceLayer::new().layer(noop);
    /// assert!(invoke(&handler, Event::new("order.created", ())?).await.is_ok());
    /// # Ok(())
    /// # }
    /// ```
    pub fn new() -> Self {
        Self::default()
    }
}

impl<H> Layer<H> for TraceLayer {
    type Handler = Trace<H>;
    fn layer(&self, inner: H) -> Trace<H> {
        Trace::new(inner)
    }
}
