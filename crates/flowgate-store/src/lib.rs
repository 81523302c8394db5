//! An in-memory event store for flowgate.
//!
//! A [`Store<T>`] holds streams of [`Event<T>`](flowgate_core::Event)s. A stream is named
//! `category-id` (the category is the part before the first `-`). Every appended event gets
//! its stream's next **version** (0-based) and the store's next **global position**
//! (monotonic, never reused, also after retention removed events).
//!
//! - **Append** one event or a batch (all or none) with an [`ExpectedVersion`]; a mismatch is
//!   [`StoreError::WrongExpectedVersion`] carrying the actual version, so the caller can read
//!   again and retry. Concurrent appenders to one stream: exactly one wins each version.
//! - **Read** a stream forward or backward, a category or all events from a position, in
//!   [`Page`]s of at most `max_count` events that never overlap and leave no hole. A read
//!   never holds a lock that appenders of other streams need while it copies.
//! - **Subscribe** to a stream, a category (or one member's share of it, see
//!   [`SubscribeBuilder::consumer_group`]) or all events, from a position or the end: history
//!   first, then live, with no gap and no duplicate, never dropped for being slow, memory
//!   bounded by the subscription's buffer. [`Checkpoints`] tell a concurrent handler where to
//!   restart.
//! - **Retention**: max events per stream, max age, max stream count with an explicit
//!   [`StreamLimit`] policy; everything removed is counted in [`Store::stats`], and a
//!   subscription that had not read it yet gets [`StoreError::Truncated`], never a silent jump.
//! - **Your code runs outside the store's locks**: an event the store lets go of (trimmed,
//!   expired, evicted with its stream, refused for its version) is dropped once the store holds
//!   no lock, so a payload's `Drop` may call the store back (`tests/payload_drop.rs`).
//!
//! ```
//! use flowgate::store::{ExpectedVersion, Start, Store, Target};
//! use flowgate::Event;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = Store::<i64>::new();
//! store.append("account-1", ExpectedVersion::NoStream, Event::new("deposited", 100)?)?;
//!
//! // A projection over every account: the history, then live events.
//! let mut accounts = store.subscribe(Target::category("account")).start(Start::Beginning).open()?;
//! store.append("account-1", ExpectedVersion::Exact(0), Event::new("withdrawn", -30)?)?;
//!
//! let mut balance = 0;
//! for _ in 0..2 {
//!     balance += *accounts.next().await.unwrap()?.event().payload();
//! }
//! assert_eq!(balance, 70);
//! # Ok(())
//! # }
//! ```
//!
//! The guide (`flowgate::guide::store`) explains the guarantees and the tuning in prose.
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]
#![doc(test(attr(deny(warnings))))]

mod builder;
mod checkpoint;
mod error;
mod hasher;
#[doc(hidden)]
pub mod log;
#[cfg(feature = "metrics")]
pub mod metrics;
mod name;
#[doc(hidden)]
pub mod notify;
mod read;
mod record;
mod stats;
mod store;
mod stream;
mod subscription;

pub use builder::{StoreBuilder, StreamLimit, DEFAULT_SUBSCRIPTION_BUFFER};
pub use checkpoint::Checkpoints;
pub use error::StoreError;
pub use name::{category_of, id_of, MAX_STREAM_NAME_LEN};
pub use record::{Appended, ExpectedVersion, Page, Recorded};
pub use stats::StoreStats;
pub use store::Store;
pub use subscription::{Start, SubscribeBuilder, Subscription, SubscriptionItem, Target};
