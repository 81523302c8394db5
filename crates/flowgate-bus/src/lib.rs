//! The flowgate bus: topics sharded into ordering-keyed partitions, each with its own bounded
//! buffer and concurrency cap, delivering with at-most-once, at-least-once or exactly-once
//! guarantees.
//!
//! # The contract
//!
//! A *delivery* is one invocation of one subscriber's handler for one event. A publish is
//! *accepted* when [`Topic::publish`] returns `Ok`; nothing is promised for one that returned
//! `Err`. For every accepted event and every subscriber (or consumer group):
//!
//! | mode | promise |
//! |---|---|
//! | [at-most-once](DeliveryMode::AtMostOnce) | invoked at most once. Failures are counted, not retried. Overflow drops events only under an explicit drop policy, and every drop is counted. |
//! | [at-least-once](DeliveryMode::AtLeastOnce) | invoked until it returns `Ok`, or, after the retry policy gave up or on a permanent error, handed to that subscriber's dead-letter sink with the error and the attempt count. Retries go to the failing subscriber only. |
//! | [exactly-once](DeliveryMode::ExactlyOnce) | at-least-once, plus: a publish whose idempotency key was accepted within the dedupe window is acknowledged as a duplicate and not delivered again; a subscriber that handled a key `Ok` is not invoked for it again within the window. The key defaults to the event id. |
//!
//! **Ordering.** Partition = [`stable_hash`](flowgate_core::stable_hash)(ordering key) mod P.
//! Per subscriber, events with the same key are handled one at a time, in publish order,
//! retries included: a retrying event holds back later events of its key, never of other
//! keys. Up to the topic's concurrency cap C of one partition's deliveries run at once per
//! subscriber. Unkeyed events are spread over the partitions and have no order.
//!
//! **Backpressure.** `Block` (the caller bounds the wait), `Reject`, and for at-most-once
//! topics `DropOldest` / `DropNewest`, counted. Memory stays bounded: per subscriber and
//! partition, at most `capacity` queued and C in flight.
//!
//! **Shutdown** stops accepting, drains until the deadline, and reports every accepted event
//! not delivered (the events themselves for at-least-once and exactly-once topics).
//!
//! **Consumer groups.** Members share the partitions; each partition is owned by one member
//! at a time and moves only after the old owner's deliveries of it finished, with its queue,
//! in order.
//!
//! **Your code runs outside the bus's locks.** Handlers, dead-letter sinks and a payload's
//! `Drop` never run while the bus holds one of its locks, so they may call the bus back
//! (publish, `stats()`). Checked by `tests/payload_drop.rs` with
//! `flowgate_testkit::drop_probe`.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use flowgate::{Bus, Event, HandlerError, RetryPolicy};
//!
//! let bus = Bus::new();
//! let payments = bus
//!     .topic::<u64>("payments")
//!     .partitions(4)
//!     .at_least_once(RetryPolicy::exponential(3, Duration::from_millis(1)))
//!     .create()?;
//! let _sub = payments
//!     .subscribe("ledger", |event: Event<u64>| async move {
//!         if *event.payload() == 0 {
//!             return Err(HandlerError::permanent("zero amount"));
//!         }
//!         Ok(())
//!     })
//!     .start()?;
//! for amount in [10, 0, 30] {
//!     payments.publish(Event::new("payment", amount)?.with_key("account-1")).await?;
//! }
//! let report = bus.shutdown(Duration::from_secs(1)).await;
//! assert_eq!(report.not_delivered(), 0);
//! let stats = &bus.stats()[0];
//! assert_eq!((stats.total.processed, stats.total.dead_lettered), (2, 1));
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]
#![doc(test(attr(deny(warnings))))]

mod backend;
mod bus;
mod config;
#[doc(hidden)]
pub mod dedupe;
mod error;
mod group;
#[doc(hidden)]
pub mod lane;
#[cfg(feature = "metrics")]
pub mod metrics;
mod pattern;
mod stats;
mod topic;

pub use backend::{Backend, BackendSubscription, BackendTopic, SubscribeRequest, TopicSettings};
#[cfg(feature = "metrics")]
pub use bus::MetricsReporter;
pub use bus::{Bus, BusReport, TopicBuilder};
pub use config::{Backpressure, DedupeWindowConfig, DeliveryMode, TopicConfig, MAX_PARTITIONS};
pub use error::{BusError, PublishError};
pub use pattern::{PatternSubscription, PatternSubscriptionBuilder};
pub use stats::{DedupeStats, PartitionCounters, PartitionStats, TopicStats};
pub use topic::{Published, Subscription, SubscriptionBuilder, Topic, TopicReport, Undelivered};
