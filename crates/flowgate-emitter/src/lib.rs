//! Direct, typed event dispatch for flowgate.
//!
//! An [`Emitter<T>`] routes [`Event<T>`](flowgate_core::Event)s by type name to the handlers
//! subscribed to that name or to a matching pattern:
//!
//! - [`emit`](Emitter::emit) runs them inline and returns every failure to the caller;
//! - [`emit_async`](Emitter::emit_async) hands the event to a bounded worker pool and returns
//!   at once; failures are retried with backoff and then dead-lettered; a full queue blocks
//!   (for a bounded time) or rejects, per [`Backpressure`];
//! - [`shutdown`](Emitter::shutdown) drains the pool up to a deadline and reports what did not
//!   run;
//! - [`stats`](Emitter::stats) counts everything.
//!
//! ```
//! use std::time::Duration;
//! use flowgate::{Emitter, Event, HandlerError};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let emitter = Emitter::<String>::builder().workers(2).queue_capacity(100).build()?;
//! let _welcome = emitter.on("user.created", |event: Event<String>| async move {
//!     println!("welcome, {}", event.payload());
//!     Ok(())
//! })?;
//! let _audit = emitter.on("user.*", |event: Event<String>| async move {
//!     if event.payload().is_empty() {
//!         return Err(HandlerError::permanent("empty user name"));
//!     }
//!     Ok(())
//! })?;
//!
//! emitter.emit(Event::new("user.created", "ada".to_owned())?).await?;
//! emitter.emit_async(Event::new("user.created", "grace".to_owned())?).await?;
//! let report = emitter.shutdown(Duration::from_secs(5)).await;
//! assert!(report.is_complete());
//! assert_eq!(report.stats.handled, 4);
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]
#![doc(test(attr(deny(warnings))))]

mod emitter;
mod error;
#[doc(hidden)]
pub mod gate;
mod pool;
#[doc(hidden)]
pub mod registry;
mod room;
mod stats;
mod subscription;

pub use emitter::{
    Backpressure, Emitted, Emitter, EmitterBuilder, ShutdownReport, SubscribeBuilder, WeakEmitter,
};
pub use error::{EmitError, EmitterError, HandlerFailure, HandlerFailures};
pub use pool::Interrupted;
pub use stats::EmitterStats;
pub use subscription::{Subscription, SubscriptionId};
