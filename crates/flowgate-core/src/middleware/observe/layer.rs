use std::sync::Arc;

use super::Observe;
use crate::Layer;

/// Builds [`Observe`] handlers; every handler it builds shares the one observer.
///
/// ```
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use std::sync::Arc;
/// use flowgate::{invoke, Event, HandlerResult, Layer};
/// use flowgate::middleware::{Observation, ObserveLayer};
///
/// async fn noop(_: Event<()>) -> HandlerResult { Ok(()) }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), flowgate::CoreError> {
/// let calls = Arc::new(AtomicU32::new(0));
/// let counter = Arc::clone(&calls);
/// let layer = ObserveLayer::new(move |_: &Observation<'_>| {
///     counter.fetch_add(1, Ordering::Relaxed);
/// });
/// let (first, second) = (layer.layer(noop), layer.layer(noop));
/// invoke(&first, Event::new("a", ())?).await.unwrap();
/// invoke(&second, Event::new("a", ())?).await.unwrap();
/// assert_eq!(calls.load(Ordering::Relaxed), 2);
/// # Ok(())
/// # }
/// ```
pub struct ObserveLayer<F> {
    observer: Arc<F>,
}

impl<F> Clone for ObserveLayer<F> {
    fn clone(&self) -> Self {
        Self {
            observer: Arc::clone(&self.observer),
        }
    }
}

impl<F> std::fmt::Debug for ObserveLayer<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ObserveLayer")
    }
}

impl<F> ObserveLayer<F> {
    /// Reports every invocation to `observer`.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use flowgate::{invoke, Event, HandlerResult, Layer};
    /// use flowgate::middleware::{Observation, ObserveLayer};
    ///
    /// async fn noop(_: Event<()>) -> HandlerResult { Ok(()) }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), flowgate::CoreError> {
    /// let kinds = Arc::new(Mutex::new(Vec::new()));
    /// let seen = Arc::clone(&kinds);
    /// let layer = ObserveLayer::new(move |obs: &Observation<'_>| {
    ///     seen.lock().unwrap().push(obs.kind.to_string());
    /// });
    /// let handler = layer.layer(noop);
    /// invoke(&handler, Event::new("order.created", ())?).await.unwrap();
    /// invoke(&handler, Event::new("order.paid", ())?).await.unwrap();
    /// assert_eq!(*kinds.lock().unwrap(), ["order.created", "order.paid"]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(observer: F) -> Self {
        Self {
            observer: Arc::new(observer),
        }
    }
}

impl<H, F> Layer<H> for ObserveLayer<F> {
    type Handler = Observe<H, F>;
    fn layer(&self, inner: H) -> Observe<H, F> {
        Observe::new(inner, Arc::clone(&self.observer))
    }
}
