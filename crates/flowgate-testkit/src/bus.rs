//! The bus contract checker: record what a bus did, then check it against `DESIGN.md`.
//!
//! A [`History`] records, in one total order:
//!
//! - every publish and its outcome (accepted, duplicate, refused), in publish order;
//! - every delivery attempt's start and finish (by wrapping each subscriber's handler with
//!   [`History::handler`]);
//! - every dead letter (through [`History::dead_letters`]);
//! - subscribes and unsubscribes, and the events a shutdown or an unsubscribe reported as
//!   not delivered.
//!
//! [`History::check`] then reports every break of the contract for the topic's delivery mode:
//!
//! | rule | broken when |
//! |---|---|
//! | lost | an accepted event was, for a subscriber that was subscribed when it was published, neither handled `Ok`, nor dead-lettered, nor reported undelivered (at-most-once: nor started, nor covered by the counted drops) |
//! | duplicated | at-most-once: a second attempt; at-least-once: an attempt after an `Ok`; exactly-once: an attempt for an idempotency key the subscriber already handled `Ok`, or a second accepted publish of a key inside the dedupe window (unless the first was reported undelivered, which gives its key back) |
//! | reordered | an attempt of a later event of a key started before the earlier event of that key reached its final outcome (`Ok`, dead letter, or — at-most-once — its only attempt's end) |
//! | overlap | two attempts of one key ran at the same time for one subscriber |
//! | attempts | a dead letter's attempt count differs from the attempts recorded |
//!
//! Publishes of one key must come from one task at a time for "publish order" to mean
//! anything; the recorder takes the order in which [`History::published`] was called.
//!
//! ```
//! use flowgate::Event;
//! use flowgate_testkit::bus::{History, Mode, Spec};
//!
//! let history = History::new();
//! history.subscribed("billing");
//! let event = Event::new("order.placed", 1u32)?.with_key("order-1");
//! history.published(&event, true, false);
//! // ... the bus never delivers it ...
//! let report = history.check(&Spec::new(Mode::AtLeastOnce));
//! assert_eq!(report.lost, 1);
//! assert!(!report.is_ok());
//! # Ok::<(), flowgate::CoreError>(())
//! ```

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use flowgate_core::{
    BoxFuture, DeadLetter, DeadLetterSink, Event, EventId, Handler, HandlerResult,
};

/// The delivery mode whose promise is checked.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use flowgate::{Event, Handler, HandlerError};
/// use flowgate_testkit::bus::{History, Mode, Spec};
/// let history = History::new();
/// history.subscribed("billing");
/// let event = Event::new("order.placed", 1u32)?;
/// history.published(&event, true, false);
/// let flaky = history.handler("billing", |_: Event<u32>| async { Err(HandlerError::retryable("down")) });
/// let fine = history.handler("billing", |_: Event<u32>| async { Ok(()) });
/// assert!(flaky.call(event.clone()).await.is_err());
/// assert!(fine.call(event).await.is_ok());
/// // A retry after a failure: what at-least-once promises, what at-most-once forbids.
/// assert!(history.check(&Spec::new(Mode::AtLeastOnce)).is_ok());
/// assert_eq!(history.check(&Spec::new(Mode::AtMostOnce)).duplicated, 1);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Mode {
    /// Invoked at most once.
    AtMostOnce,
    /// Invoked until `Ok`, or dead-lettered.
    AtLeastOnce,
    /// At-least-once plus deduplication by idempotency key.
    ExactlyOnce,
}

/// What the checker is told besides the history.
///
/// ```
/// use flowgate::Event;
/// use flowgate_testkit::bus::{History, Mode, Spec};
/// // At-most-once: two accepted events reached no one, and the bus counted two drops.
/// let ticks = History::new();
/// ticks.subscribed("dashboard");
/// for n in 0..2 {
///     ticks.published(&Event::new("tick", n)?, true, false);
/// }
/// let mut spec = Spec::new(Mode::AtMostOnce);
/// assert_eq!(ticks.check(&spec).lost, 2);
/// spec.dropped = 2; // from the topic's `stats().total.dropped`
/// assert!(ticks.check(&spec).is_ok());
///
/// // Exactly-once: key "a" accepted again after one other key, from a window of 1 key.
/// let payments = History::new();
/// for key in ["a", "b", "a"] {
///     payments.published(&Event::new("paid", 1)?.with_idempotency_key(key), true, false);
/// }
/// let mut spec = Spec::new(Mode::ExactlyOnce);
/// assert_eq!(payments.check(&spec).duplicated, 1, "an unbounded window remembers \"a\"");
/// spec.dedupe_max_keys = Some(1);
/// assert!(payments.check(&spec).is_ok(), "a 1-key window may have forgotten it");
/// # Ok::<(), flowgate::CoreError>(())
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Spec {
    /// The topic's delivery mode.
    pub mode: Mode,
    /// Events the bus counted as dropped by a drop policy (at-most-once): that many
    /// undelivered events are not lost.
    pub dropped: u64,
    /// Exactly-once: the fewest other keys after which the dedupe window may have forgotten a
    /// key (for flowgate's in-process window, sharded 16 ways: `max_keys / 16`, at least 1).
    /// A key accepted again after that many other keys is not counted as a duplicate.
    pub dedupe_max_keys: Option<usize>,
    /// At-least-once: tolerate an attempt after an `Ok` (a redelivery after a crash, which
    /// the promise allows across processes). In process, leave it `false`.
    pub allow_redelivery: bool,
}

impl Spec {
    /// The spec for `mode`: no drops, an unbounded dedupe window, no redelivery allowed.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use flowgate::{Event, Handler};
    /// use flowgate_testkit::bus::{History, Mode, Spec};
    /// let history = History::new();
    /// history.subscribed("billing");
    /// let event = Event::new("order.placed", 1u32)?;
    /// history.published(&event, true, false);
    /// let billing = history.handler("billing", |_: Event<u32>| async { Ok(()) });
    /// for _ in 0..2 {
    ///     assert!(billing.call(event.clone()).await.is_ok()); // handled, then redelivered
    /// }
    /// let in_process = Spec::new(Mode::AtLeastOnce);
    /// assert_eq!(history.check(&in_process).duplicated, 1);
    /// let mut across_a_crash = Spec::new(Mode::AtLeastOnce);
    /// across_a_crash.allow_redelivery = true;
    /// assert!(history.check(&across_a_crash).is_ok());
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(mode: Mode) -> Self {
        Self {
            mode,
            dropped: 0,
            dedupe_max_keys: None,
            allow_redelivery: false,
        }
    }
}

/// One recorded fact.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use flowgate::{Event, Handler};
/// use flowgate_testkit::bus::{History, Record};
/// let history = History::new();
/// history.subscribed("billing");
/// let event = Event::new("order.placed", 1u32)?.with_key("order-1");
/// history.published(&event, true, false);
/// let billing = history.handler("billing", |_: Event<u32>| async { Ok(()) });
/// assert!(billing.call(event).await.is_ok());
/// assert!(matches!(
///     &history.records()[..],
///     [
///         Record::Subscribed { .. },
///         Record::Published { accepted: true, duplicate: false, .. },
///         Record::Started { key: Some(_), .. },
///         Record::Finished { ok: true, .. },
///     ]
/// ));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Record {
    /// A publish returned.
    Published {
        /// The event's id.
        event: EventId,
        /// Its ordering key.
        key: Option<String>,
        /// Its idempotency key.
        idempotency_key: String,
        /// Whether the publish returned `Ok`.
        accepted: bool,
        /// Whether it was acknowledged as a duplicate (exactly-once).
        duplicate: bool,
    },
    /// A delivery attempt began.
    Started {
        /// The subscriber (or consumer group).
        subscriber: Arc<str>,
        /// The event.
        event: EventId,
        /// The event's ordering key.
        key: Option<String>,
        /// Its idempotency key.
        idempotency_key: String,
    },
    /// A delivery attempt ended.
    Finished {
        /// The subscriber.
        subscriber: Arc<str>,
        /// The event.
        event: EventId,
        /// Whether the handler returned `Ok`.
        ok: bool,
    },
    /// A dead letter reached the subscriber's sink.
    DeadLettered {
        /// The subscriber.
        subscriber: Arc<str>,
        /// The event.
        event: EventId,
        /// The attempt count the dead letter carried.
        attempts: u32,
    },
    /// A subscriber (or group) began receiving.
    Subscribed {
        /// The subscriber.
        subscriber: Arc<str>,
    },
    /// A subscriber (or group) stopped receiving.
    Unsubscribed {
        /// The subscriber.
        subscriber: Arc<str>,
    },
    /// A shutdown or an unsubscribe reported this event as not delivered to the subscriber.
    Undelivered {
        /// The subscriber.
        subscriber: Arc<str>,
        /// The event.
        event: EventId,
    },
}

/// A recorded history; see the [module docs](self). Cheap to clone; clones share it.
///
/// Record a real bus by wrapping each handler and dead-letter sink, and by reporting each
/// publish, subscribe and shutdown:
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use flowgate::{Bus, Event};
/// use flowgate_testkit::bus::{History, Mode, Spec};
/// let bus = Bus::new();
/// let orders = bus.topic::<u32>("orders").partitions(2).concurrency(2).create()?;
/// let history = History::new();
/// let _billing = orders
///     .subscribe("billing", history.handler("billing", |_: Event<u32>| async { Ok(()) }))
///     .dead_letters(history.dead_letters("billing"))
///     .start()?;
/// history.subscribed("billing");
/// for n in 0..10 {
///     let event = Event::new("order.placed", n)?.with_key(format!("order-{}", n % 3));
///     let outcome = orders.publish(event.clone()).await;
///     history.published(&event, outcome.is_ok(), false);
/// }
/// let report = bus.shutdown(Duration::from_secs(1)).await;
/// for undelivered in &report.topic::<u32>("orders").unwrap().undelivered {
///     history.undelivered(&undelivered.subscriber, &undelivered.event);
/// }
/// let check = history.check(&Spec::new(Mode::AtLeastOnce));
/// assert!(check.is_ok(), "{check}");
/// assert_eq!(check.expected_deliveries, 10);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct History {
    records: Arc<Mutex<Vec<Record>>>,
}

impl History {
    /// An empty history.
    ///
    /// ```
    /// use flowgate_testkit::bus::History;
    /// let history = History::new();
    /// assert!(history.records().is_empty());
    /// let shared = history.clone();
    /// shared.subscribed("billing");
    /// assert_eq!(history.records().len(), 1, "clones share the records");
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a record.
    ///
    /// ```
    /// use flowgate::Event;
    /// use flowgate_testkit::bus::{History, Mode, Record, Spec};
    /// let history = History::new();
    /// history.subscribed("billing");
    /// let event = Event::new("order.placed", 1u32)?;
    /// history.published(&event, true, false);
    /// history.record(Record::Undelivered { subscriber: "billing".into(), event: event.id() });
    /// assert!(history.check(&Spec::new(Mode::AtLeastOnce)).is_ok(), "reported, so not lost");
    /// # Ok::<(), flowgate::CoreError>(())
    /// ```
    pub fn record(&self, record: Record) {
        self.records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(record);
    }

    /// The records so far, in order.
    ///
    /// ```
    /// use flowgate_testkit::bus::{History, Record};
    /// let history = History::new();
    /// history.subscribed("billing");
    /// history.subscribed("audit");
    /// let names: Vec<String> = history
    ///     .records()
    ///     .iter()
    ///     .filter_map(|record| match record {
    ///         Record::Subscribed { subscriber } => Some(subscriber.to_string()),
    ///         _ => None,
    ///     })
    ///     .collect();
    /// assert_eq!(names, ["billing", "audit"]);
    /// ```
    pub fn records(&self) -> Vec<Record> {
        self.records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Records a publish's outcome: call it right after `publish` returned.
    ///
    /// Refused publishes and acknowledged duplicates are recorded, but no delivery is expected
    /// for them.
    ///
    /// ```
    /// use flowgate::Event;
    /// use flowgate_testkit::bus::{History, Mode, Spec};
    /// let history = History::new();
    /// history.subscribed("billing");
    /// history.published(&Event::new("order.placed", 1u32)?, false, false); // refused
    /// history.published(&Event::new("order.placed", 2u32)?, true, true); // a duplicate
    /// let report = history.check(&Spec::new(Mode::ExactlyOnce));
    /// assert_eq!((report.accepted, report.expected_deliveries), (0, 0));
    /// # Ok::<(), flowgate::CoreError>(())
    /// ```
    pub fn published<T>(&self, event: &Event<T>, accepted: bool, duplicate: bool) {
        self.record(Record::Published {
            event: event.id(),
            key: event.key().map(|k| k.as_str().to_owned()),
            idempotency_key: event.idempotency_key().as_str().to_owned(),
            accepted,
            duplicate,
        });
    }

    /// Records that `subscriber` (a subscriber or consumer group name) began receiving: call
    /// it once its subscription started.
    ///
    /// ```
    /// use flowgate::Event;
    /// use flowgate_testkit::bus::{History, Mode, Spec};
    /// let history = History::new();
    /// history.published(&Event::new("order.placed", 1u32)?, true, false);
    /// history.subscribed("billing");
    /// history.published(&Event::new("order.placed", 2u32)?, true, false);
    /// let report = history.check(&Spec::new(Mode::AtLeastOnce));
    /// assert_eq!(report.expected_deliveries, 1, "only the event published after it subscribed");
    /// assert_eq!(report.lost, 1);
    /// # Ok::<(), flowgate::CoreError>(())
    /// ```
    pub fn subscribed(&self, subscriber: &str) {
        self.record(Record::Subscribed {
            subscriber: Arc::from(subscriber),
        });
    }

    /// Records that `subscriber` left, and the events it handed back undelivered.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use flowgate::{Bus, Event};
    /// use flowgate_testkit::bus::{History, Mode, Spec};
    /// let bus = Bus::new();
    /// let jobs = bus.topic::<u32>("jobs").create()?;
    /// let history = History::new();
    /// let worker = jobs
    ///     .subscribe("worker", history.handler("worker", |_: Event<u32>| async { Ok(()) }))
    ///     .start()?;
    /// history.subscribed("worker");
    /// for n in 0..3 {
    ///     let event = Event::new("job", n)?;
    ///     history.published(&event, jobs.publish(event.clone()).await.is_ok(), false);
    /// }
    /// let handed_back = worker.unsubscribe().await;
    /// history.unsubscribed("worker", &handed_back);
    /// let late = Event::new("job", 3)?;
    /// history.published(&late, jobs.publish(late.clone()).await.is_ok(), false);
    /// let check = history.check(&Spec::new(Mode::AtLeastOnce));
    /// assert!(check.is_ok(), "{check}");
    /// assert_eq!(check.expected_deliveries, 3, "nothing is expected after it left");
    /// # Ok(())
    /// # }
    /// ```
    pub fn unsubscribed<'a, T: 'a>(
        &self,
        subscriber: &str,
        handed_back: impl IntoIterator<Item = &'a Event<T>>,
    ) {
        let subscriber: Arc<str> = Arc::from(subscriber);
        for event in handed_back {
            self.record(Record::Undelivered {
                subscriber: Arc::clone(&subscriber),
                event: event.id(),
            });
        }
        self.record(Record::Unsubscribed { subscriber });
    }

    /// Records that a shutdown reported `event` as not delivered to `subscriber`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use flowgate::{Bus, Event};
    /// use flowgate_testkit::bus::{History, Mode, Spec};
    /// let bus = Bus::new();
    /// let jobs = bus.topic::<u32>("jobs").create()?;
    /// let history = History::new();
    /// let stuck = history.handler("stuck", |_: Event<u32>| std::future::pending());
    /// let _stuck = jobs.subscribe("stuck", stuck).start()?;
    /// history.subscribed("stuck");
    /// for n in 0..2 {
    ///     let event = Event::new("job", n)?;
    ///     history.published(&event, jobs.publish(event.clone()).await.is_ok(), false);
    /// }
    /// let report = bus.shutdown(Duration::from_millis(100)).await;
    /// let spec = Spec::new(Mode::AtLeastOnce);
    /// assert_eq!(history.check(&spec).lost, 2);
    /// for undelivered in &report.topic::<u32>("jobs").unwrap().undelivered {
    ///     history.undelivered(&undelivered.subscriber, &undelivered.event);
    /// }
    /// assert!(history.check(&spec).is_ok(), "cut off by the deadline, but reported");
    /// # Ok(())
    /// # }
    /// ```
    pub fn undelivered<T>(&self, subscriber: &str, event: &Event<T>) {
        self.record(Record::Undelivered {
            subscriber: Arc::from(subscriber),
            event: event.id(),
        });
    }

    /// Wraps `handler` so that each attempt's start and end are recorded for `subscriber`
    /// (for a consumer group, pass the group's name for every member).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use flowgate::{Bus, Event};
    /// use flowgate_testkit::bus::{History, Mode, Spec};
    /// let bus = Bus::new();
    /// let jobs = bus.topic::<u32>("jobs").partitions(2).create()?;
    /// let history = History::new();
    /// for member in ["worker-1", "worker-2"] {
    ///     let handler = history.handler("workers", |_: Event<u32>| async { Ok(()) });
    ///     let _member = jobs.subscribe(member, handler).group("workers").start()?;
    /// }
    /// history.subscribed("workers");
    /// for n in 0..4 {
    ///     let event = Event::new("job", n)?;
    ///     history.published(&event, jobs.publish(event.clone()).await.is_ok(), false);
    /// }
    /// bus.shutdown(Duration::from_secs(1)).await;
    /// let check = history.check(&Spec::new(Mode::AtLeastOnce));
    /// assert!(check.is_ok(), "{check}");
    /// assert_eq!(check.expected_deliveries, 4, "a group is one subscriber");
    /// # Ok(())
    /// # }
    /// ```
    pub fn handler<T, H: Handler<T>>(&self, subscriber: &str, handler: H) -> Recorded<H> {
        Recorded {
            history: self.clone(),
            subscriber: Arc::from(subscriber),
            inner: Arc::new(handler),
        }
    }

    /// A dead-letter sink that records each letter for `subscriber`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use flowgate::{Bus, Event, HandlerError, RetryPolicy};
    /// use flowgate_testkit::bus::{History, Mode, Record, Spec};
    /// let bus = Bus::new();
    /// let retry = RetryPolicy::exponential(3, Duration::from_millis(10));
    /// let jobs = bus.topic::<u32>("jobs").at_least_once(retry).create()?;
    /// let history = History::new();
    /// let failing = history.handler("worker", |_: Event<u32>| async { Err(HandlerError::retryable("down")) });
    /// let _worker = jobs.subscribe("worker", failing).dead_letters(history.dead_letters("worker")).start()?;
    /// history.subscribed("worker");
    /// let event = Event::new("job", 1)?;
    /// history.published(&event, jobs.publish(event.clone()).await.is_ok(), false);
    /// bus.shutdown(Duration::from_secs(1)).await;
    /// assert!(history.records().iter().any(|r| matches!(r, Record::DeadLettered { attempts: 3, .. })));
    /// let check = history.check(&Spec::new(Mode::AtLeastOnce));
    /// assert!(check.is_ok(), "dead-lettered after the 3 attempts recorded: {check}");
    /// # Ok(())
    /// # }
    /// ```
    pub fn dead_letters<T>(&self, subscriber: &str) -> impl DeadLetterSink<T> {
        let history = self.clone();
        let subscriber: Arc<str> = Arc::from(subscriber);
        move |letter: DeadLetter<T>| {
            history.record(Record::DeadLettered {
                subscriber: Arc::clone(&subscriber),
                event: letter.event.id(),
                attempts: letter.attempts,
            });
        }
    }

    /// Checks the history against the contract for `spec`.
    ///
    /// ```
    /// use flowgate::Event;
    /// use flowgate_testkit::bus::{History, Mode, Spec, Violation};
    /// let history = History::new();
    /// history.subscribed("billing");
    /// let event = Event::new("order.placed", 1u32)?;
    /// history.published(&event, true, false);
    /// let report = history.check(&Spec::new(Mode::AtLeastOnce));
    /// let lost = Violation::Lost { subscriber: "billing".into(), event: event.id() };
    /// assert_eq!(report.violations, [lost]);
    /// # Ok::<(), flowgate::CoreError>(())
    /// ```
    pub fn check(&self, spec: &Spec) -> CheckReport {
        check(&self.records(), spec)
    }
}

/// A handler that records its attempts in a [`History`]; from [`History::handler`].
///
/// An attempt's end is recorded even when the handler panics (the panic is caught and
/// returned as an error, as the bus does).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use flowgate::{Event, Handler, HandlerError};
/// use flowgate_testkit::bus::{History, Record};
/// let history = History::new();
/// let recorded = history.handler("billing", |_: Event<u32>| async { panic!("bug in handler") });
/// let outcome = recorded.call(Event::new("order.placed", 1)?).await;
/// assert!(matches!(outcome, Err(HandlerError::Panicked { .. })));
/// assert!(matches!(history.records().last(), Some(Record::Finished { ok: false, .. })));
/// # Ok(())
/// # }
/// ```
pub struct Recorded<H> {
    history: History,
    subscriber: Arc<str>,
    inner: Arc<H>,
}

impl<H> fmt::Debug for Recorded<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recorded")
            .field("subscriber", &self.subscriber)
            .finish_non_exhaustive()
    }
}

impl<T, H> Handler<T> for Recorded<H>
where
    T: Send + Sync + 'static,
    H: Handler<T>,
{
    fn call(&self, event: Event<T>) -> BoxFuture<'static, HandlerResult> {
        let id = event.id();
        self.history.record(Record::Started {
            subscriber: Arc::clone(&self.subscriber),
            event: id,
            key: event.key().map(|k| k.as_str().to_owned()),
            idempotency_key: event.idempotency_key().as_str().to_owned(),
        });
        // Record the end even if the attempt panics or is cancelled, also before its first
        // poll: the guard lives in the future from the start.
        let end = EndGuard {
            history: self.history.clone(),
            subscriber: Arc::clone(&self.subscriber),
            event: id,
            ok: false,
        };
        let inner = Arc::clone(&self.inner);
        Box::pin(async move {
            // Moves the whole guard in (a use of `end.ok` alone would capture just that field
            // and leave the guard to record its end when `call` returns).
            let mut end = end;
            let outcome = flowgate_core::invoke(&*inner, event).await;
            end.ok = outcome.is_ok();
            outcome
        })
    }
}

struct EndGuard {
    history: History,
    subscriber: Arc<str>,
    event: EventId,
    ok: bool,
}

impl Drop for EndGuard {
    fn drop(&mut self) {
        self.history.record(Record::Finished {
            subscriber: Arc::clone(&self.subscriber),
            event: self.event,
            ok: self.ok,
        });
    }
}

/// One break of the contract.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use flowgate::{Event, Handler};
/// use flowgate_testkit::bus::{History, Mode, Spec, Violation};
/// let history = History::new();
/// history.subscribed("billing");
/// let placed = Event::new("order.placed", 1u32)?.with_key("order-1");
/// let paid = Event::new("order.paid", 1u32)?.with_key("order-1");
/// history.published(&placed, true, false);
/// history.published(&paid, true, false);
/// // A broken bus: it starts `paid` while `placed` still runs.
/// let billing = history.handler("billing", |_: Event<u32>| async { Ok(()) });
/// let first = billing.call(placed.clone());
/// let second = billing.call(paid.clone());
/// assert!(first.await.is_ok() && second.await.is_ok());
/// let report = history.check(&Spec::new(Mode::AtLeastOnce));
/// let (subscriber, key) = (String::from("billing"), String::from("order-1"));
/// assert_eq!(
///     report.violations,
///     [
///         Violation::Overlap {
///             subscriber: subscriber.clone(),
///             key: key.clone(),
///             running: placed.id(),
///             started: paid.id(),
///         },
///         Violation::Reordered { subscriber, key, earlier: placed.id(), later: paid.id() },
///     ]
/// );
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Violation {
    /// An accepted event reached no final outcome for a subscriber.
    Lost {
        /// The subscriber.
        subscriber: String,
        /// The event.
        event: EventId,
    },
    /// An attempt the mode does not allow.
    Duplicated {
        /// The subscriber (empty for a duplicate publish).
        subscriber: String,
        /// The event.
        event: EventId,
        /// Why it is a duplicate.
        why: &'static str,
    },
    /// A later event of a key started before an earlier one of that key was done.
    Reordered {
        /// The subscriber.
        subscriber: String,
        /// The key.
        key: String,
        /// The earlier event (in publish order).
        earlier: EventId,
        /// The later event, which started too soon.
        later: EventId,
    },
    /// Two attempts of one key ran at once for one subscriber.
    Overlap {
        /// The subscriber.
        subscriber: String,
        /// The key.
        key: String,
        /// The attempt already running.
        running: EventId,
        /// The attempt that started meanwhile.
        started: EventId,
    },
    /// A dead letter's attempt count differs from the attempts recorded.
    Attempts {
        /// The subscriber.
        subscriber: String,
        /// The event.
        event: EventId,
        /// What the dead letter said.
        reported: u32,
        /// What the history shows.
        recorded: u32,
    },
}

/// What [`History::check`] found. Its `Display` sums it up and lists the first violations.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use flowgate::{Event, Handler};
/// use flowgate_testkit::bus::{History, Mode, Spec};
/// let history = History::new();
/// history.subscribed("billing");
/// history.subscribed("audit");
/// let event = Event::new("order.placed", 1u32)?;
/// history.published(&event, true, false);
/// let billing = history.handler("billing", |_: Event<u32>| async { Ok(()) });
/// assert!(billing.call(event).await.is_ok()); // audit never gets it
/// let report = history.check(&Spec::new(Mode::AtLeastOnce));
/// assert_eq!((report.accepted, report.expected_deliveries, report.lost), (1, 2, 1));
/// assert!(report.to_string().starts_with("1 accepted, 2 deliveries expected: 1 lost"));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CheckReport {
    /// Accepted events that reached no final outcome, per (event, subscriber).
    pub lost: usize,
    /// Attempts (or publishes) beyond what the mode allows.
    pub duplicated: usize,
    /// Same-key events started before an earlier one was done.
    pub reordered: usize,
    /// Same-key attempts that ran at once.
    pub overlaps: usize,
    /// Dead letters whose attempt count is wrong.
    pub wrong_attempts: usize,
    /// Accepted publishes checked.
    pub accepted: usize,
    /// Deliveries (event × subscriber) expected.
    pub expected_deliveries: usize,
    /// Every violation found, in the order found.
    pub violations: Vec<Violation>,
}

impl CheckReport {
    /// Whether the history keeps the contract.
    ///
    /// ```
    /// use flowgate::Event;
    /// use flowgate_testkit::bus::{History, Mode, Spec};
    /// let history = History::new();
    /// history.subscribed("billing");
    /// let event = Event::new("order.placed", 1u32)?;
    /// history.published(&event, true, false);
    /// let spec = Spec::new(Mode::AtLeastOnce);
    /// assert!(!history.check(&spec).is_ok(), "neither handled nor reported");
    /// history.undelivered("billing", &event);
    /// assert!(history.check(&spec).is_ok());
    /// # Ok::<(), flowgate::CoreError>(())
    /// ```
    pub fn is_ok(&self) -> bool {
        self.violations.is_empty()
    }

    fn push(&mut self, violation: Violation) {
        match violation {
            Violation::Lost { .. } => self.lost += 1,
            Violation::Duplicated { .. } => self.duplicated += 1,
            Violation::Reordered { .. } => self.reordered += 1,
            Violation::Overlap { .. } => self.overlaps += 1,
            Violation::Attempts { .. } => self.wrong_attempts += 1,
        }
        self.violations.push(violation);
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} accepted, {} deliveries expected: {} lost, {} duplicated, {} reordered, {} overlaps, {} wrong attempt counts",
            self.accepted,
            self.expected_deliveries,
            self.lost,
            self.duplicated,
            self.reordered,
            self.overlaps,
            self.wrong_attempts
        )?;
        for violation in self.violations.iter().take(10) {
            write!(f, "\n  {violation:?}")?;
        }
        if self.violations.len() > 10 {
            write!(f, "\n  ... and {} more", self.violations.len() - 10)?;
        }
        Ok(())
    }
}

/// What one subscriber did with one event.
#[derive(Debug, Default)]
struct Deliveries {
    /// Indexes (in the history) of each attempt's start and end.
    attempts: Vec<(usize, Option<usize>, bool)>,
    /// Index of the dead letter, with its attempt count.
    dead_letter: Option<(usize, u32)>,
    undelivered: bool,
    /// The event's ordering key, as its attempts recorded it.
    key: Option<String>,
    /// The event's idempotency key, as its attempts recorded it.
    id_key: Option<String>,
}

impl Deliveries {
    /// Where the event reached its final outcome for this subscriber, if it did.
    fn done_at(&self, mode: Mode) -> Option<usize> {
        if let Some((at, _)) = self.dead_letter {
            return Some(at);
        }
        match mode {
            Mode::AtMostOnce => self.attempts.first().and_then(|(_, end, _)| *end),
            _ => self
                .attempts
                .iter()
                .find(|(_, _, ok)| *ok)
                .and_then(|(_, end, _)| *end),
        }
    }
}

struct Accepted<'a> {
    at: usize,
    event: EventId,
    key: Option<&'a str>,
    subscribers: Vec<Arc<str>>,
}

fn check(records: &[Record], spec: &Spec) -> CheckReport {
    let mut replay = Replay::new(spec);
    for (at, record) in records.iter().enumerate() {
        replay.apply(at, record);
    }
    replay.find_lost();
    replay.find_reordered();
    replay.report
}

/// The checker's state while it replays a history.
struct Replay<'a> {
    spec: &'a Spec,
    report: CheckReport,
    /// Subscribers subscribed at this point of the history.
    subscribed: Vec<Arc<str>>,
    /// Accepted (non-duplicate) publishes, in publish order.
    accepted: Vec<Accepted<'a>>,
    /// (subscriber, event) -> what happened.
    deliveries: HashMap<(Arc<str>, EventId), Deliveries>,
    /// Exactly-once publish dedupe: every accepted idempotency key in order, and where each
    /// was last accepted.
    accepted_keys: Vec<&'a str>,
    last_accepted: HashMap<&'a str, usize>,
    /// Attempts running now, per (subscriber, ordering key).
    running: HashMap<(Arc<str>, String), Vec<EventId>>,
    /// Exactly-once: idempotency keys handled `Ok`, per subscriber.
    handled: HashSet<(Arc<str>, String)>,
    /// The idempotency key of each accepted event.
    idempotency: HashMap<EventId, &'a str>,
    /// How many times each subscriber name subscribed so far.
    incarnations: HashMap<Arc<str>, u32>,
}

impl<'a> Replay<'a> {
    fn new(spec: &'a Spec) -> Self {
        Self {
            spec,
            report: CheckReport::default(),
            subscribed: Vec::new(),
            accepted: Vec::new(),
            deliveries: HashMap::new(),
            accepted_keys: Vec::new(),
            last_accepted: HashMap::new(),
            running: HashMap::new(),
            handled: HashSet::new(),
            idempotency: HashMap::new(),
            incarnations: HashMap::new(),
        }
    }

    fn entry(&mut self, subscriber: &Arc<str>, event: EventId) -> &mut Deliveries {
        self.deliveries
            .entry((Arc::clone(subscriber), event))
            .or_default()
    }

    /// The subscriber `name` refers to now: a name subscribed again after it unsubscribed is a
    /// new subscriber (its bus-side state, such as an exactly-once window, starts afresh), so
    /// its later incarnations are told apart as `name#2`, `name#3`, ...
    fn current(&self, name: &Arc<str>) -> Arc<str> {
        match self.incarnations.get(name) {
            Some(&n) if n > 1 => Arc::from(format!("{name}#{n}")),
            _ => Arc::clone(name),
        }
    }

    fn apply(&mut self, at: usize, record: &'a Record) {
        match record {
            Record::Subscribed { subscriber } => {
                *self.incarnations.entry(Arc::clone(subscriber)).or_insert(0) += 1;
                let current = self.current(subscriber);
                self.subscribed.push(current);
            }
            Record::Unsubscribed { subscriber } => {
                let current = self.current(subscriber);
                if let Some(i) = self.subscribed.iter().position(|s| *s == current) {
                    self.subscribed.remove(i);
                }
            }
            Record::Published {
                event,
                key,
                idempotency_key,
                accepted: true,
                duplicate: false,
            } => self.published(at, *event, key.as_deref(), idempotency_key),
            Record::Published { .. } => {}
            Record::Started {
                subscriber,
                event,
                key,
                idempotency_key,
            } => {
                let current = self.current(subscriber);
                self.started(at, &current, *event, key.as_ref(), idempotency_key);
            }
            Record::Finished {
                subscriber,
                event,
                ok,
            } => {
                let current = self.current(subscriber);
                self.finished(at, &current, *event, *ok);
            }
            Record::DeadLettered {
                subscriber,
                event,
                attempts,
            } => {
                let current = self.current(subscriber);
                self.entry(&current, *event).dead_letter = Some((at, *attempts));
            }
            Record::Undelivered { subscriber, event } => {
                let current = self.current(subscriber);
                self.entry(&current, *event).undelivered = true;
                // A bus forgets the idempotency key of an event it handed back, so that the
                // caller may publish it again: that publish is not a duplicate.
                if let Some(key) = self.idempotency.get(event) {
                    self.last_accepted.remove(key);
                }
            }
        }
    }

    fn published(&mut self, at: usize, event: EventId, key: Option<&'a str>, id_key: &'a str) {
        if self.spec.mode == Mode::ExactlyOnce {
            if let Some(&previous) = self.last_accepted.get(id_key) {
                let since = distinct_since(&self.accepted_keys, previous);
                if self.spec.dedupe_max_keys.is_none_or(|max| since < max) {
                    self.report.push(Violation::Duplicated {
                        subscriber: String::new(),
                        event,
                        why: "idempotency key accepted twice inside the dedupe window",
                    });
                }
            }
            self.last_accepted.insert(id_key, self.accepted_keys.len());
            self.accepted_keys.push(id_key);
        }
        self.idempotency.insert(event, id_key);
        self.accepted.push(Accepted {
            at,
            event,
            key,
            subscribers: self.subscribed.clone(),
        });
    }

    fn started(
        &mut self,
        at: usize,
        subscriber: &Arc<str>,
        event: EventId,
        key: Option<&String>,
        id_key: &str,
    ) {
        let mode = self.spec.mode;
        let allow_redelivery = self.spec.allow_redelivery;
        let handled_before = self
            .handled
            .contains(&(Arc::clone(subscriber), id_key.to_owned()));
        let entry = self.entry(subscriber, event);
        let ok_before = entry.attempts.iter().any(|(_, _, ok)| *ok);
        let duplicate = match mode {
            Mode::AtMostOnce => {
                (!entry.attempts.is_empty()).then_some("a second attempt under at-most-once")
            }
            Mode::AtLeastOnce => (ok_before && !allow_redelivery)
                .then_some("an attempt after the subscriber returned Ok"),
            Mode::ExactlyOnce => {
                handled_before.then_some("an attempt for a key the subscriber already handled Ok")
            }
        };
        entry.attempts.push((at, None, false));
        entry.key = key.cloned();
        entry.id_key = Some(id_key.to_owned());
        if let Some(why) = duplicate {
            self.report.push(Violation::Duplicated {
                subscriber: subscriber.to_string(),
                event,
                why,
            });
        }
        if let Some(key) = key {
            let now = self
                .running
                .entry((Arc::clone(subscriber), key.clone()))
                .or_default();
            if let Some(&running) = now.first() {
                self.report.push(Violation::Overlap {
                    subscriber: subscriber.to_string(),
                    key: key.clone(),
                    running,
                    started: event,
                });
            }
            now.push(event);
        }
    }

    fn finished(&mut self, at: usize, subscriber: &Arc<str>, event: EventId, ok: bool) {
        let entry = self.entry(subscriber, event);
        if let Some(attempt) = entry.attempts.iter_mut().rev().find(|a| a.1.is_none()) {
            attempt.1 = Some(at);
            attempt.2 = ok;
        }
        let key = entry.key.clone();
        // The key from the attempt's own record: on a multi-threaded bus an attempt can end
        // before its publish is recorded.
        if ok {
            if let Some(id_key) = entry.id_key.clone() {
                self.handled.insert((Arc::clone(subscriber), id_key));
            }
        }
        if let Some(key) = key {
            if let Some(now) = self.running.get_mut(&(Arc::clone(subscriber), key)) {
                if let Some(i) = now.iter().position(|e| *e == event) {
                    now.remove(i);
                }
            }
        }
    }

    /// Every accepted event must reach a final outcome for each subscriber subscribed when it
    /// was published, or be reported undelivered.
    fn find_lost(&mut self) {
        let empty = Deliveries::default();
        let mut violations = Vec::new();
        let mut unaccounted_at_most_once = 0u64;
        self.report.accepted = self.accepted.len();
        for publish in &self.accepted {
            for subscriber in &publish.subscribers {
                self.report.expected_deliveries += 1;
                let d = self
                    .deliveries
                    .get(&(Arc::clone(subscriber), publish.event))
                    .unwrap_or(&empty);
                if let Some((_, reported)) = d.dead_letter {
                    let recorded = d.attempts.len() as u32;
                    if reported != recorded {
                        violations.push(Violation::Attempts {
                            subscriber: subscriber.to_string(),
                            event: publish.event,
                            reported,
                            recorded,
                        });
                    }
                }
                let succeeded = d.dead_letter.is_some() || d.attempts.iter().any(|a| a.2);
                let reached = match self.spec.mode {
                    Mode::AtMostOnce => !d.attempts.is_empty(),
                    Mode::AtLeastOnce => succeeded,
                    // A key handled Ok by an earlier event counts (the delivery was skipped).
                    Mode::ExactlyOnce => {
                        succeeded
                            || self.idempotency.get(&publish.event).is_some_and(|key| {
                                self.handled
                                    .contains(&(Arc::clone(subscriber), (*key).to_owned()))
                            })
                    }
                };
                if reached || d.undelivered {
                    continue;
                }
                if self.spec.mode == Mode::AtMostOnce {
                    unaccounted_at_most_once += 1;
                    if unaccounted_at_most_once <= self.spec.dropped {
                        continue;
                    }
                }
                violations.push(Violation::Lost {
                    subscriber: subscriber.to_string(),
                    event: publish.event,
                });
            }
        }
        for violation in violations {
            self.report.push(violation);
        }
    }

    /// Per subscriber and key, in publish order, each event's first attempt starts after the
    /// previous event of the key (among those attempted at all) reached its final outcome.
    fn find_reordered(&mut self) {
        let mut by_key: HashMap<&str, Vec<&Accepted<'_>>> = HashMap::new();
        for publish in &self.accepted {
            if let Some(key) = publish.key {
                by_key.entry(key).or_default().push(publish);
            }
        }
        let mut ordered_keys: Vec<_> = by_key.into_iter().collect();
        ordered_keys.sort_by_key(|(_, events)| events[0].at);
        let mut violations = Vec::new();
        for (key, events) in ordered_keys {
            let mut subscribers: Vec<&Arc<str>> =
                events.iter().flat_map(|e| e.subscribers.iter()).collect();
            subscribers.sort();
            subscribers.dedup();
            for subscriber in subscribers {
                let mut previous: Option<(EventId, Option<usize>)> = None;
                for publish in &events {
                    let Some(d) = self
                        .deliveries
                        .get(&(Arc::clone(subscriber), publish.event))
                    else {
                        continue;
                    };
                    let Some(&(first_start, _, _)) = d.attempts.first() else {
                        continue;
                    };
                    if let Some((earlier, done)) = previous {
                        if done.is_none_or(|done| first_start < done) {
                            violations.push(Violation::Reordered {
                                subscriber: subscriber.to_string(),
                                key: key.to_owned(),
                                earlier,
                                later: publish.event,
                            });
                        }
                    }
                    previous = Some((publish.event, d.done_at(self.spec.mode)));
                }
            }
        }
        for violation in violations {
            self.report.push(violation);
        }
    }
}

/// Distinct keys accepted after position `since` in `keys`.
fn distinct_since(keys: &[&str], since: usize) -> usize {
    keys[since + 1..].iter().collect::<HashSet<_>>().len()
}
