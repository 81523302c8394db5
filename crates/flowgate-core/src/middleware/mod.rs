//! Middleware: layers that wrap a handler, in the spirit of tower.
//!
//! A [`Layer`] takes a handler and returns a new handler that wraps it. Logging, timeouts,
//! concurrency caps, circuit breaking and metrics are all layers; none is a special case of
//! the delivery path. Each layer comes as two types: `XLayer` (the configuration, `Clone`)
//! builds `X<H>` (the wrapping handler, with `get_ref`, and `into_inner` where the wrapper owns
//! the handler outright; `CircuitBreak` and `ConcurrencyLimit` share it behind an `Arc`).
//!
//! Layers compose with [`Layers`]: **the first layer added is the outermost**, so it sees
//! the event first and the outcome last.
//!
//! ```
//! use std::time::Duration;
//! use flowgate::{Event, Handler, Layers};
//! use flowgate::middleware::{ConcurrencyLimitLayer, TimeoutLayer, TraceLayer};
//!
//! let handler = |_: Event<u32>| async { Ok(()) };
//! // trace( concurrency_limit( timeout( handler ) ) )
//! let wrapped = Layers::new()
//!     .layer(TraceLayer::new())
//!     .layer(ConcurrencyLimitLayer::new(4))
//!     .layer(TimeoutLayer::new(Duration::from_secs(2)))
//!     .wrap(handler);
//! # fn assert_handler<H: Handler<u32>>(_: &H) {}
//! # assert_handler(&wrapped);
//! ```
//!
//! Each layer that runs code around the inner future boxes one more future per invocation.

mod circuit;
mod concurrency;
mod observe;
mod timeout;
mod trace;

pub use circuit::{CircuitBreak, CircuitBreakerLayer};
pub use concurrency::{ConcurrencyLimit, ConcurrencyLimitLayer};
pub use observe::{Observation, Observe, ObserveLayer};
pub use timeout::{Timeout, TimeoutLayer};
pub use trace::{Trace, TraceLayer};

/// Wraps a handler in another one.
///
/// ```
/// use flowgate::{Event, HandlerResult, Layer};
/// use flowgate::middleware::TimeoutLayer;
/// use std::time::Duration;
///
/// async fn noop(_: Event<()>) -> HandlerResult { Ok(()) }
/// let handler = TimeoutLayer::new(Duration::from_secs(1)).layer(noop);
/// assert_eq!(handler.duration(), Duration::from_secs(1));
/// ```
pub trait Layer<H> {
    /// The wrapping handler.
    type Handler;

    /// Wraps `inner`.
    fn layer(&self, inner: H) -> Self::Handler;
}

/// The layer that does nothing.
///
/// ```
/// use std::time::Duration;
/// use flowgate::{Event, HandlerResult, Layer};
/// use flowgate::middleware::{Identity, Timeout};
///
/// async fn noop(_: Event<()>) -> HandlerResult { Ok(()) }
/// let handler = Timeout::new(noop, Duration::from_secs(1));
/// let same: Timeout<_> = Identity.layer(handler); // the handler itself, unwrapped
/// assert_eq!(same.duration(), Duration::from_secs(1));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Identity;

impl<H> Layer<H> for Identity {
    type Handler = H;
    fn layer(&self, inner: H) -> H {
        inner
    }
}

/// Two layers, `outer` wrapping `inner`.
///
/// ```
/// use flowgate::{invoke, Event, HandlerResult, Layer};
/// use flowgate::middleware::{Identity, Stack, TraceLayer};
///
/// async fn noop(_: Event<()>) -> HandlerResult { Ok(()) }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), flowgate::CoreError> {
/// let stack = Stack::new(Identity, TraceLayer::new());
/// let traced = stack.layer(noop);
/// assert!(invoke(&traced, Event::new("a", ())?).await.is_ok());
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Stack<Inner, Outer> {
    inner: Inner,
    outer: Outer,
}

impl<Inner, Outer> Stack<Inner, Outer> {
    /// `outer` around `inner`.
    ///
    /// ```
    /// # use std::time::Duration;
    /// use flowgate::{Event, HandlerResult, Layer};
    /// use flowgate::middleware::{ConcurrencyLimitLayer, Stack, TimeoutLayer};
    ///
    /// async fn noop(_: Event<()>) -> HandlerResult { Ok(()) }
    /// let stack = Stack::new(TimeoutLayer::new(Duration::from_secs(1)), ConcurrencyLimitLayer::new(3));
    /// // ConcurrencyLimit<Timeout<_>>: the outer layer's handler is the one returned.
    /// let handler = stack.layer(noop);
    /// assert_eq!(handler.available(), 3);
    /// assert_eq!(handler.get_ref().duration(), Duration::from_secs(1));
    /// ```
    pub fn new(inner: Inner, outer: Outer) -> Self {
        Self { inner, outer }
    }
}

impl<H, Inner, Outer> Layer<H> for Stack<Inner, Outer>
where
    Inner: Layer<H>,
    Outer: Layer<Inner::Handler>,
{
    type Handler = Outer::Handler;
    fn layer(&self, handler: H) -> Self::Handler {
        self.outer.layer(self.inner.layer(handler))
    }
}

/// Builds a stack of layers; the first one added is the outermost.
///
/// See also the [module docs](self).
///
/// ```
/// use std::time::Duration;
/// use flowgate::{Event, HandlerResult, Layers};
/// use flowgate::middleware::{ConcurrencyLimitLayer, TimeoutLayer};
///
/// async fn noop(_: Event<()>) -> HandlerResult { Ok(()) }
/// let handler = Layers::new()
///     .layer(ConcurrencyLimitLayer::new(4)) // outermost
///     .layer(TimeoutLayer::new(Duration::from_secs(2)))
///     .wrap(noop);
/// // ConcurrencyLimit<Timeout<_>>
/// assert_eq!(handler.available(), 4);
/// assert_eq!(handler.get_ref().duration(), Duration::from_secs(2));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Layers<L> {
    stack: L,
}

impl Layers<Identity> {
    /// An empty stack: it wraps nothing.
    ///
    /// ```
    /// # use std::time::Duration;
    /// use flowgate::{Event, HandlerResult, Layers};
    /// use flowgate::middleware::Timeout;
    ///
    /// async fn noop(_: Event<()>) -> HandlerResult { Ok(()) }
    /// let handler = Timeout::new(noop, Duration::from_secs(1));
    /// let same: Timeout<_> = Layers::new().wrap(handler); // not wrapped again
    /// assert_eq!(same.duration(), Duration::from_secs(1));
    /// ```
    pub fn new() -> Self {
        Self { stack: Identity }
    }
}

impl<L> Layers<L> {
    /// Adds `layer` inside every layer added so far.
    ///
    /// ```
    /// # use std::time::Duration;
    /// use flowgate::{Event, HandlerResult, Layers};
    /// use flowgate::middleware::{TimeoutLayer, TraceLayer};
    ///
    /// async fn noop(_: Event<()>) -> HandlerResult { Ok(()) }
    /// let layers = Layers::new().layer(TraceLayer::new());
    /// let handler = layers.layer(TimeoutLayer::new(Duration::from_secs(1))).wrap(noop);
    /// // Trace<Timeout<_>>: the timeout went inside the trace.
    /// assert_eq!(handler.get_ref().duration(), Duration::from_secs(1));
    /// ```
    pub fn layer<N>(self, layer: N) -> Layers<Stack<N, L>> {
        Layers {
            stack: Stack::new(layer, self.stack),
        }
    }

    /// Wraps `handler` in the whole stack.
    ///
    /// ```
    /// use std::time::Duration;
    /// use flowgate::{invoke, Event, HandlerError, HandlerResult, Layers};
    /// use flowgate::middleware::{TimeoutLayer, TraceLayer};
    ///
    /// async fn slow(_: Event<()>) -> HandlerResult {
    ///     tokio::time::sleep(Duration::from_secs(60)).await;
    ///     Ok(())
    /// }
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), flowgate::CoreError> {
    /// let layers = Layers::new()
    ///     .layer(TraceLayer::new())
    ///     .layer(TimeoutLayer::new(Duration::from_secs(1)));
    /// let handler = layers.wrap(slow);
    /// let outcome = invoke(&handler, Event::new("a", ())?).await;
    /// assert!(matches!(outcome, Err(HandlerError::TimedOut(_))));
    /// # Ok(())
    /// # }
    /// ```
    pub fn wrap<H>(&self, handler: H) -> L::Handler
    where
        L: Layer<H>,
    {
        self.stack.layer(handler)
    }
}

impl<H, L: Layer<H>> Layer<H> for Layers<L> {
    type Handler = L::Handler;
    fn layer(&self, inner: H) -> Self::Handler {
        self.stack.layer(inner)
    }
}
