//! Contract checkers for flowgate, public so that users can run them on their own setup.
//!
//! Each checker takes a recorded history (what was published or appended, what each
//! subscriber saw and when) and reports every way it breaks the contract in
//! `DESIGN.md`. A checker that cannot fail is worthless, so each rule has a test that feeds it
//! a hand-made broken history and watches it report the break.
//!
//! ```
//! use std::sync::Arc;
//! use flowgate::Event;
//! use flowgate_testkit::bus::{History, Mode, Record, Spec};
//!
//! // A hand-made history: an at-most-once subscriber invoked twice for one event.
//! let history = History::new();
//! history.subscribed("metrics");
//! let event = Event::new("tick", 1u32)?;
//! history.published(&event, true, false);
//! for _ in 0..2 {
//!     let subscriber: Arc<str> = Arc::from("metrics");
//!     let idempotency_key = event.idempotency_key().as_str().to_owned();
//!     history.record(Record::Started { subscriber, event: event.id(), key: None, idempotency_key });
//!     history.record(Record::Finished { subscriber: Arc::from("metrics"), event: event.id(), ok: true });
//! }
//! let report = history.check(&Spec::new(Mode::AtMostOnce));
//! assert_eq!(report.duplicated, 1, "{report}");
//! # Ok::<(), flowgate::CoreError>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]
#![doc(test(attr(deny(warnings))))]

pub mod bus;
pub mod conformance;
pub mod drop_probe;
pub mod redis_server;
pub mod spans;
pub mod store;
pub mod wait;
