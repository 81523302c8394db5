//! Errors: [`CoreError`] for bad input to core types, [`HandlerError`] for what a handler
//! returns.

use std::any::Any;
use std::time::Duration;

/// A boxed error from user code, as carried by [`HandlerError`].
///
/// Any `Send + Sync + 'static` error converts into it, and so do `&str` and `String`;
/// a [`Retryable`](HandlerError::Retryable) or [`Permanent`](HandlerError::Permanent) error
/// keeps it as its [`source`](std::error::Error::source).
///
/// ```
/// use std::error::Error;
/// use flowgate::{BoxError, HandlerError};
///
/// let cause: BoxError = std::io::Error::other("disk full").into();
/// let e = HandlerError::retryable(cause);
/// assert_eq!(e.source().unwrap().to_string(), "disk full");
/// ```
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Bad input to a core type. Every variant is final for that input: fix the input and call
/// again.
///
/// ```
/// use std::time::Duration;
/// use flowgate::{CoreError, Event, RetryPolicy};
///
/// let e = Event::new("order..created", ()).unwrap_err();
/// assert!(matches!(e, CoreError::InvalidEventType { ref name, .. } if name == "order..created"));
///
/// let e = RetryPolicy::exponential(0, Duration::ZERO).validate().unwrap_err();
/// assert!(matches!(e, CoreError::InvalidConfig { setting: "max_attempts", .. }));
/// assert!(e.to_string().starts_with("invalid max_attempts: "));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CoreError {
    /// An event type name broke the naming rules.
    #[error("invalid event type {name:?}: {reason}; use dot-separated segments of ASCII letters, digits, '_' or '-', such as \"order.created\"")]
    InvalidEventType {
        /// The rejected name.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A subscription pattern broke the pattern rules.
    #[error("invalid pattern {pattern:?}: {reason}; patterns are event type names whose segments may be '*' (one segment) or a final '>' (the rest)")]
    InvalidPattern {
        /// The rejected pattern.
        pattern: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A configuration value is out of range.
    #[error("invalid {setting}: {reason}")]
    InvalidConfig {
        /// The setting, as named by its builder method.
        setting: &'static str,
        /// What is wrong and what range is accepted.
        reason: String,
    },
}

/// Why a handler invocation failed.
///
/// Handlers return [`retryable`](Self::retryable) or [`permanent`](Self::permanent) errors;
/// flowgate itself produces [`Panicked`](Self::Panicked), [`TimedOut`](Self::TimedOut) and
/// [`CircuitOpen`](Self::CircuitOpen), all of which are retryable.
///
/// ```
/// use flowgate::HandlerError;
///
/// let e = HandlerError::retryable(std::io::Error::other("connection reset"));
/// assert!(e.is_retryable());
/// let e = HandlerError::permanent("card declined");
/// assert!(!e.is_retryable());
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandlerError {
    /// A transient failure: the delivery path may try again (see the retry policy).
    #[error("handler failed with a retryable error")]
    Retryable(#[source] BoxError),
    /// A failure that trying again will not fix: the event goes straight to the dead letters.
    #[error("handler failed with a permanent error")]
    Permanent(#[source] BoxError),
    /// The handler panicked; the panic was caught and the worker kept running.
    #[error("handler panicked: {message}")]
    Panicked {
        /// The panic message, when the panic carried a string.
        message: String,
    },
    /// The handler ran past its timeout and was cancelled (its future was dropped).
    #[error("handler timed out after {0:?} and was cancelled")]
    TimedOut(Duration),
    /// The handler's circuit breaker is open; the handler was not called.
    #[error("circuit breaker open: the handler was not called; it will be tried again after the open period")]
    CircuitOpen,
}

impl HandlerError {
    /// A transient failure worth retrying.
    ///
    /// ```
    /// # use flowgate::HandlerError;
    /// let e = HandlerError::retryable(std::io::Error::other("connection reset"));
    /// assert!(matches!(e, HandlerError::Retryable(_)));
    /// assert!(e.is_retryable());
    /// ```
    pub fn retryable(error: impl Into<BoxError>) -> Self {
        Self::Retryable(error.into())
    }

    /// A failure that retrying cannot fix.
    ///
    /// ```
    /// # use flowgate::HandlerError;
    /// let e = HandlerError::permanent(format!("unknown customer {}", 42));
    /// assert!(matches!(e, HandlerError::Permanent(_)));
    /// assert!(!e.is_retryable());
    /// ```
    pub fn permanent(error: impl Into<BoxError>) -> Self {
        Self::Permanent(error.into())
    }

    /// Builds [`Panicked`](Self::Panicked) from a caught panic payload.
    ///
    /// ```
    /// # use flowgate::HandlerError;
    /// let payload = std::panic::catch_unwind(|| panic!("boom")).unwrap_err();
    /// let e = HandlerError::from_panic(payload.as_ref());
    /// assert_eq!(e.to_string(), "handler panicked: boom");
    /// ```
    pub fn from_panic(payload: &(dyn Any + Send)) -> Self {
        let message = if let Some(s) = payload.downcast_ref::<&str>() {
            (*s).to_owned()
        } else if let Some(s) = payload.downcast_ref::<String>() {
            s.clone()
        } else {
            "non-string panic payload".to_owned()
        };
        Self::Panicked { message }
    }

    /// Whether the delivery path may try again. Only [`Permanent`](Self::Permanent) is not.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use flowgate::HandlerError;
    /// assert!(HandlerError::retryable("flaky").is_retryable());
    /// assert!(HandlerError::TimedOut(Duration::from_secs(1)).is_retryable());
    /// assert!(HandlerError::CircuitOpen.is_retryable());
    /// assert!(!HandlerError::permanent("bad input").is_retryable());
    /// ```
    pub fn is_retryable(&self) -> bool {
        !matches!(self, Self::Permanent(_))
    }

    /// Whether this failure was a caught panic.
    ///
    /// ```
    /// # use flowgate::HandlerError;
    /// let payload = std::panic::catch_unwind(|| panic!("boom")).unwrap_err();
    /// assert!(HandlerError::from_panic(payload.as_ref()).is_panic());
    /// assert!(!HandlerError::retryable("flaky").is_panic());
    /// ```
    pub fn is_panic(&self) -> bool {
        matches!(self, Self::Panicked { .. })
    }
}

/// Bad input met inside a handler (say, building a follow-up event with an invalid type name)
/// is a permanent failure: retrying the same event cannot fix it. This lets handlers use `?`
/// on core constructors.
///
/// ```
/// use flowgate::{Event, HandlerError};
///
/// fn follow_up() -> Result<Event<u32>, HandlerError> {
///     Ok(Event::new("not a valid name", 1)?)
/// }
/// assert!(matches!(follow_up(), Err(HandlerError::Permanent(_))));
/// ```
impl From<CoreError> for HandlerError {
    fn from(error: CoreError) -> Self {
        Self::Permanent(Box::new(error))
    }
}
