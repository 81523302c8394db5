//! Logging as middleware: a `tracing` span around each invocation, and one event with its
//! outcome.

mod layer;

use tracing::Instrument;

pub use layer::TraceLayer;

use crate::{BoxFuture, Event, Handler, HandlerResult};

/// A handler that runs `H` inside a `handle` span (fields `kind`, `event_id`, `key`) and logs
/// the outcome: `debug` on success, `warn` on failure.
///
/// Built by [`TraceLayer`].
///
/// ```
/// use flowgate::{invoke, Event, Layer};
/// use flowgate::middleware::TraceLayer;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), flowgate::CoreError> {
/// let handler = TraceLayer::new().layer(|_: Event<()>| async { Ok(()) });
/// assert!(invoke(&handler, Event::new("a", ())?).await.is_ok());
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Trace<H> {
    inner: H,
}

impl<H> Trace<H> {
    /// Wraps `inner`.
    ///
    /// ```
    /// use flowgate::{invoke, Event, HandlerError, HandlerResult};
    /// use flowgate::middleware::Trace;
    ///
    /// async fn reject(_: Event<()>) -> HandlerResult {
    ///     Err(HandlerError::permanent("bad input"))
    /// }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), flowgate::CoreError> {
    /// let handler = Trace::new(reject);
    /// let outcome = invoke(&handler, Event::new("a", ())?).await;
    /// assert!(matches!(outcome, Err(HandlerError::Permanent(_))));
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(inner: H) -> Self {
        Self { inner }
    }

    /// The wrapped handler.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use flowgate::{Event, HandlerResult};
    /// use flowgate::middleware::{Timeout, Trace};
    /// # async fn noop(_: Event<()>) -> HandlerResult { Ok(()) }
    /// let handler = Trace::new(Timeout::new(noop, Duration::from_secs(1)));
    /// assert_eq!(handler.get_ref().duration(), Duration::from_secs(1));
    /// ```
    pub fn get_ref(&self) -> &H {
        &self.inner
    }

    /// Unwraps the handler.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use flowgate::{Event, HandlerResult};
    /// use flowgate::middleware::{Timeout, Trace};
    /// # async fn noop(_: Event<()>) -> HandlerResult { Ok(()) }
    /// let handler = Trace::new(Timeout::new(noop, Duration::from_secs(1)));
    /// let timeout: Timeout<_> = handler.into_inner();
    /// assert_eq!(timeout.duration(), Duration::from_secs(1));
    /// ```
    pub fn into_inner(self) -> H {
        self.inner
    }
}

impl<T, H: Handler<T>> Handler<T> for Trace<H> {
    fn call(&self, event: Event<T>) -> BoxFuture<'static, HandlerResult> {
        let span = tracing::debug_span!(
            "handle",
            kind = %event.kind(),
            event_id = %event.id(),
            key = event.key().map(crate::Key::as_str),
        );
        // Through `invoke`, so a panic is logged as the failure it is.
        let inner = span.in_scope(|| crate::invoke(&self.inner, event));
        Box::pin(
            async move {
                let result = inner.await;
                match &result {
                    Ok(()) => tracing::debug!("handled"),
                    Err(error) => {
                        let cause = std::error::Error::source(error).map(ToString::to_string);
                        tracing::warn!(
                            %error,
                            cause,
                            retryable = error.is_retryable(),
                            "handler failed"
                        );
                    }
                }
                result
            }
            .instrument(span),
        )
    }
}
