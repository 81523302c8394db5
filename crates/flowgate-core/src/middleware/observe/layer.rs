use std::sync::Arc;

use super::Observe;
use crate::Layer;

/// Builds [`Observe`] handlers; every handler it builds shares the one observer.
///
/// ```
/// use flowgate::middleware::{Observation, ObserveLayer};
/// let layer = ObserveLayer::new(|obs: &Observation<'_>| println!("{:?}", obs.elapsed));
/// # drop(layer);
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
