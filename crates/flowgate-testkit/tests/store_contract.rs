//! The real store, run through the store checker: many appenders with expected versions (some
//! deliberately stale) on many threads, and many subscribers (all, category, stream) opened at
//! random moments at random start positions. The checker must find nothing: every subscriber saw
//! exactly the events after its start, in order, with no gap or duplicate; every accepted append
//! is readable; versions and positions are gapless. A proptest does the same on random
//! single-threaded schedules.
#![cfg(not(loom))]

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use flowgate_core::Event;
use flowgate_store::{ExpectedVersion, Start, Store, Subscription, Target};
use flowgate_testkit::store::{check, AppendOutcome, StoreRecorder, SubscriberLog};
use proptest::prelude::*;

const CATEGORIES: [&str; 2] = ["acct", "order"];
const IDS: u64 = 5;
const MARKER: u64 = u64::MAX;

fn streams() -> Vec<String> {
    CATEGORIES
        .iter()
        .flat_map(|c| (0..IDS).map(move |i| format!("{c}-{i}")))
        .collect()
}

/// Appends a batch with an expectation chosen by `mode` from the stream's version, and records
/// it.
fn append(store: &Store<u64>, recorder: &StoreRecorder, stream: &str, mode: u8, payloads: &[u64]) {
    let current = store.stream_version(stream).expect("valid name");
    let expected = match (mode % 4, current) {
        (0, Some(v)) => ExpectedVersion::Exact(v),
        (0, None) | (2, Some(_)) => ExpectedVersion::NoStream, // stale when it exists
        (1, _) => ExpectedVersion::Any,
        (2, None) => ExpectedVersion::Exact(0), // stale: no stream yet
        _ => ExpectedVersion::StreamExists,
    };
    let events: Vec<Event<u64>> = payloads
        .iter()
        .map(|p| Event::new("e", *p).expect("valid type"))
        .collect();
    let ids: Vec<_> = events.iter().map(Event::id).collect();
    let result = store.append_batch(stream, expected, events);
    recorder.append(stream, expected, &ids, &result);
}

/// Polls `condition` until it holds or `deadline` passes.
async fn wait_until(deadline: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let end = tokio::time::Instant::now() + deadline;
    while !condition() {
        if tokio::time::Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    true
}

/// Reads `sub` into `log` until it sees the marker event of stream `last`.
/// (Markers are the last event of every stream, so retention never removes them before a
/// subscriber reads them.)
async fn follow(mut sub: Subscription<u64>, log: SubscriberLog, last: String) {
    loop {
        let item = sub.next().await.expect("never ends");
        log.item(&item);
        if let Ok(event) = item {
            if *event.event().payload() == MARKER && event.stream() == last {
                return;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_appenders_and_subscribers_keep_the_contract() {
    let store = Store::<u64>::builder()
        .subscription_buffer(8)
        .build()
        .unwrap();
    run_concurrently(store, StoreRecorder::new()).await;
}

/// The same with retention keeping 20 events per stream: slow subscribers must get a
/// truncation signal for every event of theirs that was removed before they read it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_appenders_and_subscribers_keep_the_contract_under_retention() {
    let store = Store::<u64>::builder()
        .subscription_buffer(8)
        .max_events_per_stream(20)
        .build()
        .unwrap();
    run_concurrently(store, StoreRecorder::with_retention()).await;
}

async fn run_concurrently(store: Store<u64>, recorder: StoreRecorder) {
    const APPENDERS: usize = 4;
    const APPENDS: usize = 1_500;
    const SUBSCRIBERS: usize = 12;
    let appenders: Vec<_> = (0..APPENDERS)
        .map(|t| {
            let (store, recorder) = (store.clone(), recorder.clone());
            std::thread::spawn(move || {
                let mut rng = fastrand::Rng::with_seed(t as u64);
                let streams = streams();
                for i in 0..APPENDS {
                    let stream = &streams[rng.usize(..streams.len())];
                    let batch: Vec<u64> = (0..rng.u64(1..=3))
                        .map(|j| (t * APPENDS + i) as u64 * 10 + j)
                        .collect();
                    append(&store, &recorder, stream, rng.u8(..), &batch);
                }
            })
        })
        .collect();

    let mut rng = fastrand::Rng::with_seed(99);
    let mut followers = Vec::new();
    for k in 0..SUBSCRIBERS {
        // Open the k-th subscriber once the store has grown that far: during the appends.
        let grown = wait_until(Duration::from_secs(30), || {
            store.head_position() >= (k * APPENDERS * APPENDS / SUBSCRIBERS) as u64
        })
        .await;
        assert!(grown, "appenders stalled");
        let head = store.head_position();
        let (target, start, last) = match k % 3 {
            0 => (Target::All, rng.u64(0..=head), "order-4".to_owned()),
            1 => {
                let category = CATEGORIES[rng.usize(..2)];
                (
                    Target::category(category),
                    rng.u64(0..=head),
                    format!("{category}-4"),
                )
            }
            _ => {
                let all = streams();
                let stream = all[rng.usize(..all.len())].clone();
                let next = store.stream_version(&stream).unwrap().map_or(0, |v| v + 1);
                (Target::stream(stream.clone()), rng.u64(0..=next), stream)
            }
        };
        let sub = store
            .subscribe(target.clone())
            .start(Start::At(start))
            .buffer(rng.usize(1..16))
            .open()
            .unwrap();
        let log = recorder.subscriber(&format!("sub{k}"), target, start);
        followers.push(tokio::spawn(follow(sub, log, last)));
    }
    for a in appenders {
        a.join().unwrap();
    }
    for stream in streams() {
        append(&store, &recorder, &stream, 1, &[MARKER]);
    }
    for f in followers {
        tokio::time::timeout(Duration::from_secs(30), f)
            .await
            .expect("a subscriber did not reach the end within 30 s")
            .unwrap();
    }
    recorder.final_read(&store.read_all(0, usize::MAX).unwrap().events);
    let history = recorder.history();
    let refused = history
        .appends
        .iter()
        .filter(|a| matches!(a.outcome, AppendOutcome::Refused { .. }))
        .count();
    let report = check(&history);
    assert!(report.is_ok(), "{report}");
    assert!(refused > 0, "the run must exercise version conflicts");
    assert!(report.seen_events > 1_000, "{report}");
}

/// One step of a random single-threaded schedule.
#[derive(Debug, Clone)]
enum Op {
    Append { stream: usize, mode: u8, len: u64 },
    Open { kind: u8, start_permille: u64 },
    Drain { sub: usize, max: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..(2 * IDS as usize), any::<u8>(), 1..4_u64)
            .prop_map(|(stream, mode, len)| Op::Append { stream, mode, len }),
        1 => (0..5_u8, 0..=1_000_u64)
            .prop_map(|(kind, start_permille)| Op::Open { kind, start_permille }),
        2 => (0..8_usize, 1..20_usize).prop_map(|(sub, max)| Op::Drain { sub, max }),
    ]
}

/// Takes what `sub` has without waiting, at most `max` items, recording events and truncation
/// signals.
fn drain(sub: &mut Subscription<u64>, log: &SubscriberLog, max: usize) {
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..max {
        let mut next = pin!(sub.next());
        match next.as_mut().poll(&mut cx) {
            Poll::Ready(Some(item)) => log.item(&item),
            Poll::Ready(None) => panic!("a subscription ended"),
            Poll::Pending => return,
        }
    }
}

/// Runs a random schedule on `store` and returns the checker's report.
fn run_schedule(
    store: &Store<u64>,
    recorder: &StoreRecorder,
    ops: Vec<Op>,
) -> flowgate_testkit::store::StoreReport {
    let streams = streams();
    let mut subs: Vec<(Subscription<u64>, SubscriberLog)> = Vec::new();
    for (i, op) in ops.into_iter().enumerate() {
        match op {
            Op::Append { stream, mode, len } => {
                let payloads: Vec<u64> = (0..len).map(|j| i as u64 * 10 + j).collect();
                append(store, recorder, &streams[stream], mode, &payloads);
            }
            Op::Open {
                kind,
                start_permille,
            } => {
                let head = store.head_position();
                let name = format!("sub{}", subs.len());
                let (builder, log) = match kind {
                    0 => {
                        let start = head * start_permille / 1_000;
                        let log = recorder.subscriber(&name, Target::All, start);
                        (store.subscribe(Target::All).start(Start::At(start)), log)
                    }
                    1 => {
                        let start = head * start_permille / 1_000;
                        let log = recorder.subscriber(&name, Target::category("acct"), start);
                        let builder = store.subscribe(Target::category("acct"));
                        (builder.start(Start::At(start)), log)
                    }
                    2 => {
                        let next = store
                            .stream_version("order-1")
                            .unwrap()
                            .map_or(0, |v| v + 1);
                        let start = next * start_permille / 1_000;
                        let log = recorder.subscriber(&name, Target::stream("order-1"), start);
                        let builder = store.subscribe(Target::stream("order-1"));
                        (builder.start(Start::At(start)), log)
                    }
                    _ => {
                        let start = head * start_permille / 1_000;
                        let member = u32::from(kind % 2);
                        let log = recorder.group_member(&name, "order", member, 2, start);
                        let builder = store
                            .subscribe(Target::category("order"))
                            .consumer_group(member, 2);
                        (builder.start(Start::At(start)), log)
                    }
                };
                subs.push((builder.buffer(3).open().unwrap(), log));
            }
            Op::Drain { sub, max } => {
                if let Some((sub, log)) = subs.get_mut(sub) {
                    drain(sub, log, max);
                }
            }
        }
    }
    for (sub, log) in &mut subs {
        drain(sub, log, usize::MAX);
    }
    recorder.final_read(&store.read_all(0, usize::MAX).unwrap().events);
    check(&recorder.history())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_schedules_keep_the_contract(ops in prop::collection::vec(op(), 1..120)) {
        let report = run_schedule(&Store::new(), &StoreRecorder::new(), ops);
        prop_assert!(report.is_ok(), "the checker found: {}", report);
    }

    /// With retention removing events under the subscribers' feet, each still sees every
    /// event of its own or a truncation signal covering it, and no signal hides an event that
    /// still exists.
    #[test]
    fn random_schedules_with_retention_keep_the_contract(
        ops in prop::collection::vec(op(), 1..120),
        keep in 1..4_usize,
    ) {
        let store = Store::builder().max_events_per_stream(keep).build().unwrap();
        let report = run_schedule(&store, &StoreRecorder::with_retention(), ops);
        prop_assert!(report.is_ok(), "the checker found: {}", report);
    }
}
