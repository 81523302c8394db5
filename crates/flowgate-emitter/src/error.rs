//! Errors: [`EmitterError`] for building and subscribing, [`EmitError`] for one emit.

use std::fmt;
use std::sync::Arc;

use flowgate_core::{CoreError, Event, HandlerError};

use crate::SubscriptionId;

/// Building an emitter or subscribing to one failed. Final for that input: fix it and call
/// again.
///
/// ```
/// use flowgate::emitter::{Emitter, EmitterError};
/// let outside_a_runtime = Emitter::<()>::builder().build();
/// assert!(matches!(outside_a_runtime, Err(EmitterError::NoRuntime)));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmitterError {
    /// A name, pattern or policy was invalid; the message says which and why.
    #[error(transparent)]
    Core(#[from] CoreError),
    /// A setting of the emitter or of a subscription is out of range.
    #[error("invalid {setting}: {reason}")]
    InvalidConfig {
        /// The builder method that set it.
        setting: &'static str,
        /// What is accepted.
        reason: &'static str,
    },
    /// `build` was called outside a tokio runtime, where the worker pool cannot run.
    #[error("no tokio runtime is running: build the emitter from inside one (for example in an async fn under #[tokio::main]); its worker pool runs on that runtime")]
    NoRuntime,
    /// The emitter was shut down; it takes no new subscriptions.
    #[error("the emitter is shut down and takes no new subscriptions; build a new emitter")]
    ShutDown,
}

/// One handler's failure during an inline [`emit`](crate::Emitter::emit).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use flowgate::emitter::{EmitError, Emitter};
/// use flowgate::{Event, HandlerError};
/// let emitter = Emitter::<()>::builder().build()?;
/// let sub = emitter.on("a", |_: Event<()>| async { Err(HandlerError::retryable("down")) })?;
/// let Err(EmitError::HandlersFailed(report)) = emitter.emit(Event::new("a", ())?).await else {
///     panic!("the handler fails");
/// };
/// let failure = &report.failures[0];
/// assert_eq!(failure.subscription, sub.id());
/// assert!(failure.error.is_retryable());
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub struct HandlerFailure {
    /// The subscription whose handler failed.
    pub subscription: SubscriptionId,
    /// Its name.
    pub subscriber: Arc<str>,
    /// What the handler returned (or how it panicked).
    pub error: HandlerError,
}

/// The outcome of an inline emit in which at least one handler failed. Every other matching
/// handler still ran.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use flowgate::emitter::{EmitError, Emitter};
/// use flowgate::Event;
/// let emitter = Emitter::<()>::builder().build()?;
/// let _ok = emitter.on("a", |_: Event<()>| async { Ok(()) })?;
/// let _panics = emitter.on("a", |_: Event<()>| async { panic!("bug") })?;
/// let Err(EmitError::HandlersFailed(report)) = emitter.emit(Event::new("a", ())?).await else {
///     panic!("one handler fails");
/// };
/// assert_eq!(report.succeeded, 1);
/// assert!(report.failures[0].error.is_panic());
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub struct HandlerFailures {
    /// Handlers that succeeded.
    pub succeeded: usize,
    /// Handlers that failed, in the order they ran.
    pub failures: Vec<HandlerFailure>,
}

/// An emit that failed. Every variant that refused the event hands it back
/// ([`into_event`](Self::into_event)), so the caller can retry or store it; `Debug` does not
/// need `T: Debug`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use flowgate::emitter::{EmitError, Emitter};
/// use flowgate::Event;
/// let emitter = Emitter::<u32>::builder().build()?;
/// let _ = emitter.shutdown(Duration::ZERO).await;
/// let err = emitter.emit_async(Event::new("a", 5)?).await.unwrap_err();
/// assert!(matches!(err, EmitError::ShutDown(_)));
/// assert_eq!(*err.into_event().unwrap().payload(), 5);
/// # Ok(())
/// # }
/// ```
#[non_exhaustive]
pub enum EmitError<T> {
    /// The queue is full and the policy is `Reject`. Not accepted: retry later, or shed load.
    QueueFull(Event<T>),
    /// The queue stayed full for the policy's whole `Block` wait. Not accepted: retry later.
    Timeout(Event<T>),
    /// The emitter is shut down (or shutting down). Not accepted, final.
    ShutDown(Event<T>),
    /// Inline emit only: the event reached every matching handler and some failed.
    HandlersFailed(HandlerFailures),
}

impl<T> EmitError<T> {
    /// The refused event, for every variant but `HandlersFailed` (whose event was delivered).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use flowgate::Emitter;
    /// use flowgate::Event;
    /// let emitter = Emitter::<u32>::builder().build()?;
    /// let _ = emitter.shutdown(Duration::ZERO).await;
    /// let refused = emitter.emit(Event::new("a", 9)?).await.unwrap_err();
    /// assert_eq!(refused.into_event().map(|e| *e.payload()), Some(9));
    /// # Ok(())
    /// # }
    /// ```
    pub fn into_event(self) -> Option<Event<T>> {
        match self {
            Self::QueueFull(e) | Self::Timeout(e) | Self::ShutDown(e) => Some(e),
            Self::HandlersFailed(_) => None,
        }
    }

    /// Whether emitting the same event again later may succeed.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use flowgate::Emitter;
    /// use flowgate::Event;
    /// let emitter = Emitter::<u32>::builder().build()?;
    /// let _ = emitter.shutdown(Duration::ZERO).await;
    /// let err = emitter.emit_async(Event::new("a", 1)?).await.unwrap_err();
    /// assert!(!err.is_retryable(), "a shut-down emitter stays shut down");
    /// # Ok(())
    /// # }
    /// ```
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::QueueFull(_) | Self::Timeout(_))
    }
}

impl<T> fmt::Debug for EmitError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::QueueFull(e) => f.debug_tuple("QueueFull").field(&e.id()).finish(),
            Self::Timeout(e) => f.debug_tuple("Timeout").field(&e.id()).finish(),
            Self::ShutDown(e) => f.debug_tuple("ShutDown").field(&e.id()).finish(),
            Self::HandlersFailed(h) => f.debug_tuple("HandlersFailed").field(h).finish(),
        }
    }
}

impl<T> fmt::Display for EmitError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::QueueFull(e) => write!(
                f,
                "event {} not accepted: the emitter queue is full (policy Reject); retry later or raise queue_capacity",
                e.id()
            ),
            Self::Timeout(e) => write!(
                f,
                "event {} not accepted: the emitter queue stayed full for the whole Block wait; retry later or add workers",
                e.id()
            ),
            Self::ShutDown(e) => write!(
                f,
                "event {} not accepted: the emitter is shut down",
                e.id()
            ),
            Self::HandlersFailed(h) => {
                write!(f, "{} of {} handlers failed", h.failures.len(), h.failures.len() + h.succeeded)?;
                for failure in &h.failures {
                    write!(f, "; {}: {}", failure.subscriber, failure.error)?;
                    if let Some(cause) = std::error::Error::source(&failure.error) {
                        write!(f, " ({cause})")?;
                    }
                }
                Ok(())
            }
        }
    }
}

impl<T> std::error::Error for EmitError<T> {}
