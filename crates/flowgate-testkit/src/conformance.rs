//! The bus conformance suite: drives any [`Backend`] with random workloads and checks every
//! run's history with the [contract checker](crate::bus). Run it on your own backend or setup:
//!
//! ```
//! use flowgate::bus::Bus;
//! use flowgate_testkit::bus::Mode;
//! use flowgate_testkit::conformance::{check_bus, Suite};
//!
//! // CI runs `Suite::default()`: 256 cases on two runtimes. A smoke test runs a few.
//! let mut suite = Suite::default();
//! suite.cases = 4;
//! suite.multi_thread = false;
//! check_bus(|| async { Bus::new() }, Mode::AtLeastOnce, &suite);
//! ```
//!
//! Each case creates a topic (random partitions 1–4, buffer 1–5, concurrency 1–3, and a
//! backpressure policy the mode allows) and applies up to 80 random operations: publishes of
//! keyed and unkeyed events whose [`Behavior`] tells the handlers to succeed, fail a few times,
//! fail permanently, panic once or be slow; republishes of an earlier idempotency key;
//! subscribes; consumer-group joins; unsubscribes and leaves; yields. Then it shuts the bus down,
//! records what the shutdown reported, and asserts that the checker finds nothing.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flowgate_bus::{
    Backend, BackendSubscription, BackendTopic, Backpressure, DedupeWindowConfig, DeliveryMode,
    SubscribeRequest, TopicSettings,
};
use flowgate_core::{Event, EventId, HandlerError, Jitter, RetryPolicy};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use crate::bus::{History, Mode, Spec};

/// How many cases to run, and on which runtimes.
///
/// ```
/// use flowgate::bus::Bus;
/// use flowgate_testkit::bus::Mode;
/// use flowgate_testkit::conformance::{check_bus, Suite};
/// let mut suite = Suite::default();
/// // Few cases by default, more when asked: `CONFORMANCE_CASES=10000 cargo test`.
/// suite.cases = std::env::var("CONFORMANCE_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(4);
/// suite.multi_thread = false; // the paused clock only: no real sleeping in retries
/// check_bus(|| async { Bus::new() }, Mode::AtMostOnce, &suite);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Suite {
    /// Random cases per mode.
    pub cases: u32,
    /// Run each case on a current-thread runtime with tokio's clock paused (retries' backoffs
    /// take no real time). For backends that do real I/O (Redis), turn it off.
    pub paused_clock: bool,
    /// Run each case on a two-thread runtime too.
    pub multi_thread: bool,
}

impl Default for Suite {
    /// 256 cases, on both runtimes.
    ///
    /// ```
    /// use flowgate_testkit::conformance::Suite;
    /// let suite = Suite::default();
    /// assert_eq!((suite.cases, suite.paused_clock, suite.multi_thread), (256, true, true));
    /// ```
    fn default() -> Self {
        Self {
            cases: 256,
            paused_clock: true,
            multi_thread: true,
        }
    }
}

/// What the handlers do with one event (the same for every subscriber): the payload of every
/// event the suite publishes.
///
/// A backend under test carries `Behavior` payloads (the suite's handlers read them), so it
/// must hand each one to the handlers intact:
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::{Arc, Mutex};
/// use std::time::Duration;
/// use flowgate::bus::{Backend, BackendTopic, Bus, SubscribeRequest, TopicSettings};
/// use flowgate::Event;
/// use flowgate_testkit::conformance::Behavior;
/// let bus = Bus::new();
/// let orders = Backend::<Behavior>::create_topic(&bus, "orders", TopicSettings::default()).await?;
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let log = Arc::clone(&seen);
/// let request = SubscribeRequest::new("sub", move |event: Event<Behavior>| {
///     log.lock().unwrap().push(*event.payload());
///     async { Ok(()) }
/// });
/// let _sub = BackendTopic::subscribe(&orders, request).await?;
/// let sent = [Behavior::Ok, Behavior::Slow(3), Behavior::FailTimes(0)];
/// for behavior in sent {
///     orders.publish(Event::new("order", behavior)?).await?;
/// }
/// bus.shutdown(Duration::from_secs(1)).await;
/// assert_eq!(*seen.lock().unwrap(), sent);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum Behavior {
    /// Succeeds.
    Ok,
    /// Fails retryably on the first `n` attempts.
    FailTimes(u32),
    /// Fails permanently.
    Permanent,
    /// Panics on the first attempt.
    PanicOnce,
    /// Yields to the scheduler `n` times before succeeding (a slow handler).
    Slow(u32),
}

#[derive(Debug, Clone)]
enum Op {
    /// Publish a new event with this key (None: unkeyed) and behavior.
    Publish(Option<u8>, Behavior),
    /// Publish a new event with the key, behavior and idempotency key of one published
    /// before (exactly-once topics acknowledge it as a duplicate).
    Republish(usize),
    /// Subscribe a plain subscriber.
    Subscribe,
    /// Add a member to consumer group "g".
    Join,
    /// Unsubscribe the n-th live subscription (plain or member).
    Leave(usize),
    /// Let the workers run a little.
    Yield(u8),
}

fn behavior() -> impl Strategy<Value = Behavior> {
    prop_oneof![
        6 => Just(Behavior::Ok),
        2 => (1u32..4).prop_map(Behavior::FailTimes),
        1 => Just(Behavior::Permanent),
        1 => Just(Behavior::PanicOnce),
        2 => (1u32..6).prop_map(Behavior::Slow),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => (proptest::option::weighted(0.85, 0u8..5), behavior())
            .prop_map(|(k, b)| Op::Publish(k, b)),
        1 => (0usize..64).prop_map(Op::Republish),
        2 => Just(Op::Subscribe),
        2 => Just(Op::Join),
        1 => (0usize..8).prop_map(Op::Leave),
        2 => (1u8..20).prop_map(Op::Yield),
    ]
}

#[derive(Debug, Clone)]
struct Case {
    mode: Mode,
    partitions: u32,
    capacity: usize,
    concurrency: usize,
    backpressure: Backpressure,
    ops: Vec<Op>,
}

fn case(mode: Mode) -> impl Strategy<Value = Case> {
    let backpressure = match mode {
        Mode::AtMostOnce => prop_oneof![
            Just(Backpressure::Block { max_wait: None }),
            Just(Backpressure::Reject),
            Just(Backpressure::DropOldest),
            Just(Backpressure::DropNewest),
        ]
        .boxed(),
        _ => prop_oneof![
            Just(Backpressure::Block { max_wait: None }),
            Just(Backpressure::Reject),
        ]
        .boxed(),
    };
    (
        1u32..5,
        1usize..6,
        1usize..4,
        backpressure,
        proptest::collection::vec(op(), 1..80),
    )
        .prop_map(
            move |(partitions, capacity, concurrency, backpressure, ops)| Case {
                mode,
                partitions,
                capacity,
                concurrency,
                backpressure,
                ops,
            },
        )
}

type Attempts = Arc<Mutex<HashMap<(String, EventId), u32>>>;

/// The handler of subscriber (or group) `name`: behaves as the event's payload says.
fn handler(
    history: &History,
    name: &str,
    attempts: &Attempts,
) -> impl flowgate_core::Handler<Behavior> {
    let attempts = Arc::clone(attempts);
    let owner = name.to_owned();
    history.handler(name, move |event: Event<Behavior>| {
        let attempt = {
            let mut attempts = attempts.lock().unwrap();
            let n = attempts.entry((owner.clone(), event.id())).or_insert(0);
            *n += 1;
            *n
        };
        async move {
            match *event.payload() {
                Behavior::FailTimes(n) if attempt <= n => Err(HandlerError::retryable("flaky")),
                Behavior::Ok | Behavior::FailTimes(_) => Ok(()),
                Behavior::Permanent => Err(HandlerError::permanent("bad input")),
                Behavior::PanicOnce => {
                    assert!(attempt > 1, "handler panics on its first attempt");
                    Ok(())
                }
                Behavior::Slow(n) => {
                    for _ in 0..n {
                        tokio::task::yield_now().await;
                    }
                    Ok(())
                }
            }
        }
    })
}

struct Live<S> {
    sub: S,
    /// The name the history knows it by (its own, or its group's).
    recorded_as: String,
    member_of_group: bool,
}

/// The state of one run: the topic, the history, and the live subscriptions.
struct Driver<P: BackendTopic<Behavior>> {
    topic: P,
    history: History,
    attempts: Attempts,
    live: Vec<Live<P::Subscription>>,
    published: Vec<Event<Behavior>>,
    subscribers: usize,
}

impl<P: BackendTopic<Behavior>> Driver<P> {
    async fn apply(&mut self, op: Op) -> Result<(), TestCaseError> {
        match op {
            Op::Publish(key, behavior) => {
                let mut event = Event::new("order", behavior).unwrap();
                if let Some(key) = key {
                    event = event.with_key(format!("key-{key}"));
                }
                publish(&self.topic, &self.history, event.clone()).await;
                self.published.push(event);
            }
            Op::Republish(i) => {
                if let Some(earlier) = self.published.get(i % self.published.len().max(1)) {
                    let mut event = Event::new("order", *earlier.payload())
                        .unwrap()
                        .with_idempotency_key(earlier.idempotency_key());
                    if let Some(key) = earlier.key() {
                        event = event.with_key(key.clone());
                    }
                    publish(&self.topic, &self.history, event).await;
                }
            }
            Op::Subscribe => {
                self.subscribers += 1;
                let name = format!("sub-{}", self.subscribers);
                let request =
                    SubscribeRequest::new(&name, handler(&self.history, &name, &self.attempts))
                        .dead_letters(self.history.dead_letters(&name));
                let sub = self.topic.subscribe(request).await.expect("subscribe");
                self.history.subscribed(&name);
                self.live.push(Live {
                    sub,
                    recorded_as: name,
                    member_of_group: false,
                });
            }
            Op::Join => {
                let first = !self.live.iter().any(|l| l.member_of_group);
                let request =
                    SubscribeRequest::new("member", handler(&self.history, "g", &self.attempts))
                        .group("g")
                        .dead_letters(self.history.dead_letters("g"));
                let sub = self.topic.subscribe(request).await.expect("join");
                if first {
                    self.history.subscribed("g");
                }
                self.live.push(Live {
                    sub,
                    recorded_as: "g".into(),
                    member_of_group: true,
                });
            }
            Op::Leave(i) => {
                if self.live.is_empty() {
                    return Ok(());
                }
                let leaving = self.live.remove(i % self.live.len());
                let handed_back = leaving.sub.unsubscribe().await;
                let group_left =
                    leaving.member_of_group && !self.live.iter().any(|l| l.member_of_group);
                if !leaving.member_of_group || group_left {
                    self.history
                        .unsubscribed(&leaving.recorded_as, &handed_back);
                } else {
                    prop_assert!(
                        handed_back.is_empty(),
                        "a member leaving a group with members hands nothing back"
                    );
                }
            }
            Op::Yield(n) => {
                for _ in 0..n {
                    tokio::task::yield_now().await;
                }
            }
        }
        Ok(())
    }
}

async fn run<B: Backend<Behavior>>(backend: B, case: Case) -> Result<(), TestCaseError> {
    let retry = RetryPolicy::exponential(3, Duration::from_millis(1)).jitter(Jitter::None);
    let mode = match case.mode {
        Mode::AtMostOnce => DeliveryMode::AtMostOnce,
        Mode::AtLeastOnce => DeliveryMode::AtLeastOnce(retry),
        _ => DeliveryMode::ExactlyOnce(retry, DedupeWindowConfig::default()),
    };
    let settings = TopicSettings::default()
        .partitions(case.partitions)
        .capacity(case.capacity)
        .concurrency(case.concurrency)
        .mode(mode)
        .backpressure(case.backpressure);
    let topic = backend
        .create_topic("orders", settings)
        .await
        .map_err(|e| TestCaseError::fail(format!("create_topic: {e}")))?;
    let mut driver = Driver {
        topic: topic.clone(),
        history: History::new(),
        attempts: Attempts::default(),
        live: Vec::new(),
        published: Vec::new(),
        subscribers: 0,
    };
    for op in case.ops {
        driver.apply(op).await?;
    }
    let history = driver.history;
    let report = backend.shutdown(Duration::from_secs(3600)).await;
    prop_assert!(!report.deadline_expired(), "the drain finishes: {report:?}");
    let topic_report = report
        .topic::<Behavior>("orders")
        .ok_or_else(|| TestCaseError::fail("the shutdown report has no typed \"orders\" topic"))?;
    for undelivered in &topic_report.undelivered {
        history.undelivered(&undelivered.subscriber, &undelivered.event);
    }
    let stats = topic.stats().await;
    prop_assert_eq!(stats.depth + stats.in_flight, 0, "drained");
    let mut spec = Spec::new(case.mode);
    spec.dropped = stats.total.dropped;
    let check = history.check(&spec);
    prop_assert!(check.is_ok(), "{}", check);
    Ok(())
}

async fn publish<P: BackendTopic<Behavior>>(topic: &P, history: &History, event: Event<Behavior>) {
    let outcome = topic.publish(event.clone()).await;
    let duplicate = outcome.as_ref().is_ok_and(|p| p.duplicate);
    history.published(&event, outcome.is_ok(), duplicate);
}

/// Runs the suite for `mode` against the backends `backend` makes (one per case, made inside
/// the case's runtime), panicking with the checker's report and the minimal failing case if
/// any run breaks the contract.
///
/// # Panics
///
/// When the backend breaks the contract (that is the point), or a runtime cannot be built.
///
/// ```
/// use flowgate::bus::Bus;
/// use flowgate_testkit::bus::Mode;
/// use flowgate_testkit::conformance::{check_bus, Suite};
/// let mut suite = Suite::default();
/// suite.cases = 4;
/// suite.multi_thread = false;
/// for mode in [Mode::AtMostOnce, Mode::AtLeastOnce, Mode::ExactlyOnce] {
///     check_bus(|| async { Bus::new() }, mode, &suite); // a fresh bus for each case
/// }
/// ```
pub fn check_bus<B, F, Fut>(backend: F, mode: Mode, suite: &Suite)
where
    B: Backend<Behavior>,
    F: Fn() -> Fut,
    Fut: Future<Output = B>,
{
    let config = Config {
        cases: suite.cases,
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let outcome = runner.run(&case(mode), |case| {
        if suite.paused_clock {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .start_paused(true)
                .build()
                .expect("a current-thread runtime");
            runtime.block_on(async { run(backend().await, case.clone()).await })?;
        }
        if suite.multi_thread {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a two-thread runtime");
            runtime.block_on(async { run(backend().await, case).await })?;
        }
        Ok(())
    });
    if let Err(error) = outcome {
        panic!("{mode:?}: the bus broke its contract: {error}");
    }
}
