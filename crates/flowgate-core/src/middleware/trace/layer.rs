use super::Trace;
use crate::Layer;

/// Builds [`Trace`] handlers.
///
/// ```
/// use flowgate::middleware::TraceLayer;
/// let _layer = TraceLayer::new();
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct TraceLayer {
    _private: (),
}

impl TraceLayer {
    /// A tracing layer.
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
