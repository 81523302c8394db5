//! The core of [flowgate](https://docs.rs/flowgate): the event envelope, the handler trait and
//! its closure adapter, handler errors and panic capture, retry policy, circuit breaker,
//! dead letters, middleware, and the synchronization shim used by every flowgate crate.
//!
//! Most users reach these types through the `flowgate` facade:
//!
//! ```
//! use flowgate::{invoke, Event, HandlerError};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), flowgate::CoreError> {
//! let handler = |event: Event<u64>| async move {
//!     if *event.payload() > 100 {
//!         Err(HandlerError::permanent("amount over the limit"))
//!     } else {
//!         Ok(())
//!     }
//! };
//! assert!(invoke(&handler, Event::new("payment.requested", 42)?).await.is_ok());
//! assert!(invoke(&handler, Event::new("payment.requested", 420)?).await.is_err());
//! # Ok(())
//! # }
//! ```
//!
//! All timing here (backoff, circuit-breaker periods, timeouts) runs on `tokio::time`, so tests
//! run it on a paused clock.
// `unsafe` lives in one module, `inline` (a type-erased future stored in place); every other
// module is checked free of it.
#![deny(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]
#![doc(test(attr(deny(warnings))))]

mod circuit;
mod dead_letter;
mod error;
mod event;
pub mod flow;
mod handler;
mod inline;
pub mod middleware;
mod name;
mod partition;
mod retry;
#[doc(hidden)]
pub mod sync;
pub mod trace_context;

pub use circuit::{CircuitBreaker, CircuitBreakerConfig, CircuitPermit, CircuitState};
pub use dead_letter::{DeadLetter, DeadLetterQueue, DeadLetterSink, LogDeadLetters};
pub use error::{BoxError, CoreError, HandlerError};
pub use event::{Event, EventId, Key, Metadata};
pub use handler::{invoke, BoxFuture, BoxHandler, Handler, HandlerResult, InlineCall, Invoke};
pub use inline::{InlineSlot, INLINE_FUTURE_BYTES};
pub use middleware::{Layer, Layers};
pub use name::{EventType, Pattern, PrehashedHasher, PrehashedState, MAX_NAME_LEN};
pub use partition::{partition_for, partition_of_hash, stable_hash};
pub use retry::{Jitter, RetryPolicy};
