//! The bus keeps its contract on random workloads, in every delivery mode: the testkit checker
//! finds nothing lost, duplicated, reordered or overlapping, whatever the topic shape, keys,
//! handler failures, panics, slow handlers, subscribes, consumer-group joins and leaves,
//! unsubscribes, backpressure policy and shutdown. (The checker's own tests, which feed it
//! broken histories, are in flowgate-testkit.)
#![cfg(not(loom))]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flowgate::bus::{Backpressure, Bus, DedupeWindowConfig, DeliveryMode, Subscription, Topic};
use flowgate::{Event, EventId, HandlerError, Jitter, RetryPolicy};
use flowgate_testkit::bus::{History, Mode, Spec};
use proptest::prelude::*;

/// What the handlers do with one event (the same for every subscriber).
#[derive(Debug, Clone, Copy)]
enum Behavior {
    Ok,
    /// Fails retryably on the first `n` attempts.
    FailTimes(u32),
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
fn handler(history: &History, name: &str, attempts: &Attempts) -> impl flowgate::Handler<Behavior> {
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

struct Live {
    sub: Subscription<Behavior>,
    /// The name the history knows it by (its own, or its group's).
    recorded_as: String,
    member_of_group: bool,
}

/// The state of one run: the topic, the history, and the live subscriptions.
struct Driver {
    topic: Topic<Behavior>,
    history: History,
    attempts: Attempts,
    live: Vec<Live>,
    published: Vec<Event<Behavior>>,
    subscribers: usize,
}

impl Driver {
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
                let sub = self
                    .topic
                    .subscribe(&name, handler(&self.history, &name, &self.attempts))
                    .dead_letters(self.history.dead_letters(&name))
                    .start()
                    .expect("subscribe");
                self.history.subscribed(&name);
                self.live.push(Live {
                    sub,
                    recorded_as: name,
                    member_of_group: false,
                });
            }
            Op::Join => {
                let first = !self.live.iter().any(|l| l.member_of_group);
                let sub = self
                    .topic
                    .subscribe("member", handler(&self.history, "g", &self.attempts))
                    .group("g")
                    .dead_letters(self.history.dead_letters("g"))
                    .start()
                    .expect("join");
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

async fn run(case: Case) -> Result<(), TestCaseError> {
    let retry = RetryPolicy::exponential(3, Duration::from_millis(1)).jitter(Jitter::None);
    let mode = match case.mode {
        Mode::AtMostOnce => DeliveryMode::AtMostOnce,
        Mode::AtLeastOnce => DeliveryMode::AtLeastOnce(retry),
        _ => DeliveryMode::ExactlyOnce(retry, DedupeWindowConfig::default()),
    };
    let bus = Bus::new();
    let topic: Topic<Behavior> = bus
        .topic("orders")
        .partitions(case.partitions)
        .capacity(case.capacity)
        .concurrency(case.concurrency)
        .mode(mode)
        .backpressure(case.backpressure)
        .create()
        .expect("valid topic");
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
    let report = bus.shutdown(Duration::from_secs(3600)).await;
    prop_assert!(!report.deadline_expired(), "the drain finishes: {report:?}");
    let topic_report = report.topic::<Behavior>("orders").expect("typed report");
    for undelivered in &topic_report.undelivered {
        history.undelivered(&undelivered.subscriber, &undelivered.event);
    }
    let stats = topic.stats();
    prop_assert_eq!(stats.depth + stats.in_flight, 0, "drained");
    let mut spec = Spec::new(case.mode);
    spec.dropped = stats.total.dropped;
    let check = history.check(&spec);
    prop_assert!(check.is_ok(), "{}", check);
    Ok(())
}

async fn publish(topic: &Topic<Behavior>, history: &History, event: Event<Behavior>) {
    let outcome = topic.publish(event.clone()).await;
    let duplicate = outcome.as_ref().is_ok_and(|p| p.duplicate);
    history.published(&event, outcome.is_ok(), duplicate);
}

fn check_mode(mode: Mode, cases: u32) {
    let config = ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(case in case(mode))| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        runtime.block_on(run(case.clone()))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_time()
            .build()
            .unwrap();
        runtime.block_on(run(case))?;
    });
}

#[test]
fn at_most_once_keeps_its_promise() {
    check_mode(Mode::AtMostOnce, 256);
}

#[test]
fn at_least_once_keeps_its_promise() {
    check_mode(Mode::AtLeastOnce, 256);
}

#[test]
fn exactly_once_keeps_its_promise() {
    check_mode(Mode::ExactlyOnce, 256);
}
