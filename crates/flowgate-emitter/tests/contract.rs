//! The emitter's delivery contract, checked on random workloads: every event `emit_async`
//! accepted reaches each handler subscribed when it was emitted exactly once to a final
//! outcome (success, or the dead-letter sink after the retry policy gave up), or shutdown
//! reports it; refused events never run. The checker is tested on broken histories first.
#![cfg(not(loom))]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flowgate_core::{DeadLetter, Event, EventId, HandlerError, Jitter, RetryPolicy};
use flowgate_emitter::{Backpressure, Emitter};
use proptest::prelude::*;

/// What one handler does with one event.
#[derive(Debug, Clone, Copy)]
enum Behavior {
    Ok,
    /// Fails (retryably) on the first `n` attempts, then succeeds.
    FailTimes(u32),
    Permanent,
    /// Panics on the first attempt, then succeeds.
    PanicOnce,
}

/// Everything observed in one run.
#[derive(Debug, Default)]
struct History {
    /// Accepted events and the handlers subscribed when each was emitted.
    accepted: BTreeMap<EventId, BTreeSet<usize>>,
    refused: BTreeSet<EventId>,
    /// Handlers unsubscribed during the run (their deliveries may stop at any point).
    unsubscribed: BTreeSet<usize>,
    /// Attempts per (event, handler), successes and dead letters.
    attempts: BTreeMap<(EventId, usize), u32>,
    succeeded: BTreeMap<(EventId, usize), u32>,
    dead_lettered: BTreeMap<(EventId, usize), u32>,
    /// From the shutdown report: events never started, and (event, handler) pairs interrupted.
    not_run: BTreeSet<EventId>,
    interrupted: BTreeSet<(EventId, usize)>,
}

/// A broken promise found in a history.
#[derive(Debug, PartialEq, Eq)]
enum Violation {
    Lost(EventId, usize),
    Duplicated(EventId, usize),
    RanRefused(EventId),
}

fn check(history: &History) -> Vec<Violation> {
    let mut violations = Vec::new();
    let outcomes = |key: &(EventId, usize)| {
        history.succeeded.get(key).copied().unwrap_or(0)
            + history.dead_lettered.get(key).copied().unwrap_or(0)
    };
    for (&id, handlers) in &history.accepted {
        for &handler in handlers {
            let key = (id, handler);
            let finals = outcomes(&key);
            if finals > 1 {
                violations.push(Violation::Duplicated(id, handler));
            }
            let excused = history.unsubscribed.contains(&handler)
                || history.not_run.contains(&id)
                || history.interrupted.contains(&key);
            if finals == 0 && !excused {
                violations.push(Violation::Lost(id, handler));
            }
        }
    }
    for &id in &history.refused {
        if history.attempts.keys().any(|(event, _)| *event == id) {
            violations.push(Violation::RanRefused(id));
        }
    }
    violations
}

#[test]
fn the_checker_finds_a_lost_a_duplicated_and_a_refused_but_run_event() {
    let (a, b, c) = (EventId::new(), EventId::new(), EventId::new());
    let mut history = History::default();
    history.accepted.insert(a, [0, 1].into());
    history.accepted.insert(b, [0].into());
    history.refused.insert(c);
    history.succeeded.insert((a, 0), 1);
    // (a, 1) never finished: lost.
    history.succeeded.insert((b, 0), 1);
    history.dead_lettered.insert((b, 0), 1); // succeeded and dead-lettered: duplicated
    history.attempts.insert((c, 0), 1); // a refused event ran
    assert_eq!(
        check(&history),
        [
            Violation::Lost(a, 1),
            Violation::Duplicated(b, 0),
            Violation::RanRefused(c)
        ]
    );
    // The same history with (a, 1) reported by shutdown is clean of the loss.
    history.interrupted.insert((a, 1));
    assert!(!check(&history).contains(&Violation::Lost(a, 1)));
}

#[derive(Debug, Clone)]
struct Workload {
    workers: usize,
    queue: usize,
    reject: bool,
    max_attempts: u32,
    handlers: usize,
    /// Per event, what each handler does.
    events: Vec<Vec<Behavior>>,
    /// Unsubscribe handler 0 after this many events, if set.
    unsubscribe_after: Option<usize>,
    /// Shutdown deadline in milliseconds (short ones leave work behind).
    deadline_ms: u64,
}

fn behavior() -> impl Strategy<Value = Behavior> {
    prop_oneof![
        4 => Just(Behavior::Ok),
        2 => (1_u32..4).prop_map(Behavior::FailTimes),
        1 => Just(Behavior::Permanent),
        1 => Just(Behavior::PanicOnce),
    ]
}

fn workload() -> impl Strategy<Value = Workload> {
    (1_usize..4, 1_usize..4).prop_flat_map(|(workers, handlers)| {
        (
            Just(workers),
            1_usize..8,
            any::<bool>(),
            1_u32..4,
            Just(handlers),
            prop::collection::vec(prop::collection::vec(behavior(), handlers), 1..40),
            prop::option::of(0_usize..40),
            prop_oneof![Just(5_u64), Just(10_000)],
        )
            .prop_map(
                |(
                    workers,
                    queue,
                    reject,
                    max_attempts,
                    handlers,
                    events,
                    unsubscribe_after,
                    deadline_ms,
                )| {
                    Workload {
                        workers,
                        queue,
                        reject,
                        max_attempts,
                        handlers,
                        events,
                        unsubscribe_after,
                        deadline_ms,
                    }
                },
            )
    })
}

/// What handler `handler` returns on its `attempt`-th try of an event scripted `behavior`.
fn outcome(behavior: Behavior, attempt: u32) -> Result<(), HandlerError> {
    match behavior {
        Behavior::FailTimes(n) if attempt <= n => Err(HandlerError::retryable("transient")),
        Behavior::Permanent => Err(HandlerError::permanent("bad")),
        Behavior::PanicOnce if attempt == 1 => panic!("handler bug"),
        Behavior::Ok | Behavior::FailTimes(_) | Behavior::PanicOnce => Ok(()),
    }
}

/// Handler number `handler`: follows each event's script and records what it did.
fn scripted(
    history: Arc<Mutex<History>>,
    handler: usize,
) -> impl Fn(Event<Vec<Behavior>>) -> flowgate_core::BoxFuture<'static, flowgate_core::HandlerResult>
       + Send
       + Sync
       + 'static {
    move |event: Event<Vec<Behavior>>| {
        let history = Arc::clone(&history);
        Box::pin(async move {
            let key = (event.id(), handler);
            let attempt = {
                let mut h = history.lock().unwrap();
                let n = h.attempts.entry(key).or_default();
                *n += 1;
                *n
            };
            tokio::task::yield_now().await;
            let result = outcome(event.payload()[handler], attempt);
            if result.is_ok() {
                *history.lock().unwrap().succeeded.entry(key).or_default() += 1;
            }
            result
        })
    }
}

/// Runs a workload on a paused single-threaded runtime and returns its history.
fn run(workload: &Workload) -> History {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let history = Arc::new(Mutex::new(History::default()));
        let sink_history = Arc::clone(&history);
        let emitter = Emitter::<Vec<Behavior>>::builder()
            .workers(workload.workers)
            .queue_capacity(workload.queue)
            .backpressure(if workload.reject {
                Backpressure::Reject
            } else {
                Backpressure::Block {
                    max_wait: Duration::from_millis(50),
                }
            })
            .retry(
                RetryPolicy::exponential(workload.max_attempts, Duration::from_millis(1))
                    .jitter(Jitter::None),
            )
            .dead_letters(move |letter: DeadLetter<Vec<Behavior>>| {
                let handler: usize = letter
                    .subscriber
                    .parse()
                    .expect("handlers are named by index");
                *sink_history
                    .lock()
                    .unwrap()
                    .dead_lettered
                    .entry((letter.event.id(), handler))
                    .or_default() += 1;
            })
            .build()
            .expect("valid workload");
        let mut subscriptions = Vec::new();
        for handler in 0..workload.handlers {
            subscriptions.push(Some(
                emitter
                    .subscribe("work", scripted(Arc::clone(&history), handler))
                    .name(handler.to_string())
                    .start()
                    .expect("valid pattern"),
            ));
        }
        for (n, behaviors) in workload.events.iter().enumerate() {
            if workload.unsubscribe_after == Some(n) {
                if let Some(sub) = subscriptions[0].take() {
                    assert!(sub.unsubscribe());
                    history.lock().unwrap().unsubscribed.insert(0);
                }
            }
            let event = Event::new("work", behaviors.clone()).expect("valid type");
            let id = event.id();
            let subscribed: BTreeSet<usize> = (0..workload.handlers)
                .filter(|h| subscriptions[*h].is_some())
                .collect();
            match emitter.emit_async(event).await {
                Ok(()) => {
                    history.lock().unwrap().accepted.insert(id, subscribed);
                }
                Err(_) => {
                    history.lock().unwrap().refused.insert(id);
                }
            }
        }
        let report = emitter
            .shutdown(Duration::from_millis(workload.deadline_ms))
            .await;
        let mut h = history.lock().unwrap();
        h.not_run = report.not_run.iter().map(Event::id).collect();
        for interrupted in &report.interrupted {
            for name in &interrupted.pending {
                let handler: usize = name.parse().expect("named by index");
                h.interrupted.insert((interrupted.event.id(), handler));
            }
        }
        let accepted = h.accepted.len() as u64;
        assert_eq!(
            report.stats.emitted, accepted,
            "stats count every accepted emit"
        );
        std::mem::take(&mut *h)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn every_accepted_event_reaches_every_handler_once_or_is_reported(workload in workload()) {
        let history = run(&workload);
        let violations = check(&history);
        prop_assert!(violations.is_empty(), "broken promises: {:?}\n{:?}", violations, workload);
    }
}
