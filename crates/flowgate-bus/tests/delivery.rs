//! What each delivery mode does with failures, duplicates and fan-out, and how ordering keys,
//! retries and consumer groups interact, shown on small deterministic scenarios (the random
//! ones are in `contract.rs`).
#![cfg(not(loom))]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flowgate::bus::{Bus, DedupeWindowConfig};
use flowgate::{DeadLetter, Event, HandlerError, Jitter, RetryPolicy};
use flowgate_testkit::wait::{wait_until, within};

type Log = Arc<Mutex<Vec<(String, u32)>>>;

/// (member, key, payload)
type Handled = (&'static str, String, u32);

fn retry(attempts: u32) -> RetryPolicy {
    RetryPolicy::exponential(attempts, Duration::from_secs(1)).jitter(Jitter::None)
}

#[tokio::test(start_paused = true)]
async fn at_most_once_counts_failures_and_never_retries() {
    let bus = Bus::new();
    let topic = bus.topic::<u32>("t").at_most_once().create().unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let c = Arc::clone(&calls);
    topic
        .subscribe("s", move |_: Event<u32>| {
            c.fetch_add(1, Ordering::SeqCst);
            async { Err(HandlerError::retryable("down")) }
        })
        .start()
        .unwrap();
    topic.publish(Event::new("e", 1).unwrap()).await.unwrap();
    bus.shutdown(Duration::from_secs(60)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let stats = topic.stats().total;
    assert_eq!(
        (stats.failed, stats.retried, stats.dead_lettered),
        (1, 0, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn at_least_once_retries_only_the_failing_subscriber_then_dead_letters() {
    let bus = Bus::new();
    let topic = bus
        .topic::<u32>("t")
        .at_least_once(retry(3))
        .create()
        .unwrap();
    let (good, bad) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let letters: Arc<Mutex<Vec<(u32, u32, bool)>>> = Arc::default();
    let g = Arc::clone(&good);
    topic
        .subscribe("good", move |_: Event<u32>| {
            g.fetch_add(1, Ordering::SeqCst);
            async { Ok(()) }
        })
        .start()
        .unwrap();
    let (b, l) = (Arc::clone(&bad), Arc::clone(&letters));
    topic
        .subscribe("bad", move |_: Event<u32>| {
            b.fetch_add(1, Ordering::SeqCst);
            async { Err(HandlerError::retryable("down")) }
        })
        .dead_letters(move |d: DeadLetter<u32>| {
            l.lock()
                .unwrap()
                .push((*d.event.payload(), d.attempts, d.error.is_retryable()));
        })
        .start()
        .unwrap();
    topic.publish(Event::new("e", 7).unwrap()).await.unwrap();
    let report = bus.shutdown(Duration::from_secs(60)).await;
    assert_eq!(report.not_delivered(), 0);
    assert_eq!(
        good.load(Ordering::SeqCst),
        1,
        "the subscriber that succeeded ran once"
    );
    assert_eq!(bad.load(Ordering::SeqCst), 3);
    assert_eq!(*letters.lock().unwrap(), [(7, 3, true)]);
    let stats = topic.stats().total;
    assert_eq!(
        (
            stats.processed,
            stats.failed,
            stats.retried,
            stats.dead_lettered
        ),
        (1, 3, 2, 1)
    );
}

#[tokio::test(start_paused = true)]
async fn a_permanent_error_and_a_panic() {
    let bus = Bus::new();
    let topic = bus
        .topic::<u32>("t")
        .at_least_once(retry(5))
        .create()
        .unwrap();
    let attempts: Arc<Mutex<HashMap<u32, u32>>> = Arc::default();
    let letters: Arc<Mutex<Vec<(u32, u32)>>> = Arc::default();
    let (a, l) = (Arc::clone(&attempts), Arc::clone(&letters));
    topic
        .subscribe("s", move |e: Event<u32>| {
            let n = {
                let mut a = a.lock().unwrap();
                let n = a.entry(*e.payload()).or_insert(0);
                *n += 1;
                *n
            };
            async move {
                match *e.payload() {
                    1 => Err(HandlerError::permanent("invalid order")),
                    _ if n == 1 => panic!("first attempt panics"),
                    _ => Ok(()),
                }
            }
        })
        .dead_letters(move |d: DeadLetter<u32>| {
            l.lock().unwrap().push((*d.event.payload(), d.attempts));
        })
        .start()
        .unwrap();
    topic.publish(Event::new("e", 1).unwrap()).await.unwrap();
    topic.publish(Event::new("e", 2).unwrap()).await.unwrap();
    bus.shutdown(Duration::from_secs(60)).await;
    assert_eq!(*letters.lock().unwrap(), [(1, 1)], "permanent: no retry");
    assert_eq!(
        attempts.lock().unwrap()[&2],
        2,
        "a panic is a retryable failure"
    );
    assert_eq!(topic.stats().total.processed, 1);
}

#[tokio::test(start_paused = true)]
async fn a_retrying_event_holds_back_its_key_only() {
    let bus = Bus::new();
    let topic = bus
        .topic::<u32>("t")
        .partitions(1)
        .concurrency(4)
        .at_least_once(retry(3))
        .create()
        .unwrap();
    let log: Log = Arc::default();
    let failed_once = Arc::new(AtomicU32::new(0));
    let (l, f) = (Arc::clone(&log), Arc::clone(&failed_once));
    topic
        .subscribe("s", move |e: Event<u32>| {
            let key = e.key().unwrap().as_str().to_owned();
            let first_of_a = *e.payload() == 1 && f.fetch_add(1, Ordering::SeqCst) == 0;
            let l = Arc::clone(&l);
            async move {
                if first_of_a {
                    return Err(HandlerError::retryable("once"));
                }
                l.lock().unwrap().push((key, *e.payload()));
                Ok(())
            }
        })
        .start()
        .unwrap();
    for (key, n) in [("a", 1), ("a", 2), ("b", 3), ("b", 4), ("a", 5)] {
        topic
            .publish(Event::new("e", n).unwrap().with_key(key))
            .await
            .unwrap();
    }
    // Before the 1 s backoff ends, b's events ran; a's wait behind the retrying 1.
    assert!(
        wait_until(Duration::from_millis(500), || log.lock().unwrap().len()
            == 2)
        .await
    );
    assert_eq!(*log.lock().unwrap(), [("b".into(), 3), ("b".into(), 4)]);
    bus.shutdown(Duration::from_secs(60)).await;
    let a: Vec<u32> = log
        .lock()
        .unwrap()
        .iter()
        .filter(|(k, _)| k == "a")
        .map(|(_, n)| *n)
        .collect();
    assert_eq!(a, [1, 2, 5], "a in publish order, the retried event first");
}

#[tokio::test(start_paused = true)]
async fn fan_out_shares_one_payload() {
    let bus = Bus::new();
    let topic = bus.topic::<String>("t").create().unwrap();
    let seen: Arc<Mutex<Vec<usize>>> = Arc::default();
    for i in 0..4 {
        let s = Arc::clone(&seen);
        topic
            .subscribe(format!("s{i}"), move |e: Event<String>| {
                s.lock()
                    .unwrap()
                    .push(Arc::as_ptr(e.shared_payload()) as usize);
                async { Ok(()) }
            })
            .start()
            .unwrap();
    }
    let event = Event::new("e", "payload".to_owned()).unwrap();
    let original = Arc::as_ptr(event.shared_payload()) as usize;
    topic.publish(event).await.unwrap();
    bus.shutdown(Duration::from_secs(60)).await;
    assert_eq!(
        *seen.lock().unwrap(),
        [original; 4],
        "one allocation, four deliveries"
    );
}

#[tokio::test(start_paused = true)]
async fn exactly_once_acknowledges_duplicates_and_delivers_once() {
    let bus = Bus::new();
    let topic = bus
        .topic::<u32>("payments")
        .exactly_once(
            retry(3),
            DedupeWindowConfig::new(100, Duration::from_secs(60)),
        )
        .create()
        .unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let c = Arc::clone(&calls);
    topic
        .subscribe("ledger", move |_: Event<u32>| {
            c.fetch_add(1, Ordering::SeqCst);
            async { Ok(()) }
        })
        .start()
        .unwrap();
    let first = topic
        .publish(Event::new("pay", 10).unwrap().with_idempotency_key("pay-1"))
        .await
        .unwrap();
    let again = topic
        .publish(Event::new("pay", 10).unwrap().with_idempotency_key("pay-1"))
        .await
        .unwrap();
    assert!(!first.duplicate && again.duplicate);
    // After the window's age, the key is forgotten: a new publish is delivered again.
    tokio::time::sleep(Duration::from_secs(61)).await;
    let later = topic
        .publish(Event::new("pay", 10).unwrap().with_idempotency_key("pay-1"))
        .await
        .unwrap();
    assert!(!later.duplicate);
    bus.shutdown(Duration::from_secs(60)).await;
    let stats = topic.stats();
    assert_eq!(stats.total.duplicates, 1);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    let dedupe = stats.dedupe.unwrap();
    assert_eq!(
        (dedupe.max_keys, dedupe.max_age),
        (100, Duration::from_secs(60))
    );
}

#[tokio::test(start_paused = true)]
async fn the_dedupe_window_is_bounded_by_count_and_says_so() {
    let bus = Bus::new();
    let topic = bus
        .topic::<u32>("t")
        .exactly_once(
            retry(1),
            DedupeWindowConfig::new(3, Duration::from_secs(3600)),
        )
        .create()
        .unwrap();
    for n in 0..10 {
        topic.publish(Event::new("e", n).unwrap()).await.unwrap();
    }
    let dedupe = topic.stats().dedupe.unwrap();
    // Never more than max_keys; every key forgotten early is counted. (The window is sharded
    // by key, so which keys it kept depends on their fingerprints, not only on their order.)
    assert!(dedupe.keys <= 3, "{dedupe:?}");
    assert_eq!(dedupe.keys as u64 + dedupe.evicted, 10, "{dedupe:?}");
}

#[tokio::test(start_paused = true)]
async fn a_consumer_group_splits_partitions_and_survives_a_leave() {
    let bus = Bus::new();
    let topic = bus.topic::<u32>("t").partitions(4).create().unwrap();
    let log: Arc<Mutex<Vec<Handled>>> = Arc::default();
    let member = |name: &'static str| {
        let l = Arc::clone(&log);
        topic
            .subscribe(name, move |e: Event<u32>| {
                l.lock()
                    .unwrap()
                    .push((name, e.key().unwrap().as_str().to_owned(), *e.payload()));
                async { Ok(()) }
            })
            .group("workers")
            .start()
            .unwrap()
    };
    let a = member("a");
    let _b = member("b");
    let keys: Vec<String> = (0..16).map(|k| format!("key-{k}")).collect();
    let mut n = 0;
    for key in &keys {
        n += 1;
        topic
            .publish(Event::new("e", n).unwrap().with_key(key.as_str()))
            .await
            .unwrap();
    }
    assert!(wait_until(Duration::from_secs(10), || log.lock().unwrap().len() == 16).await);
    let handlers: std::collections::BTreeSet<_> = log.lock().unwrap().iter().map(|e| e.0).collect();
    assert_eq!(
        handlers.len(),
        2,
        "both members own partitions: {handlers:?}"
    );
    assert!(a.unsubscribe().await.is_empty(), "b takes a's partitions");
    for key in &keys {
        n += 1;
        topic
            .publish(Event::new("e", n).unwrap().with_key(key.as_str()))
            .await
            .unwrap();
    }
    let report = bus.shutdown(Duration::from_secs(60)).await;
    assert_eq!(report.not_delivered(), 0);
    let log = log.lock().unwrap();
    assert_eq!(log.len(), 32, "each event handled once by the group");
    assert_eq!(topic.stats().subscribers, 1, "a group counts once");
    for key in &keys {
        let of_key: Vec<u32> = log
            .iter()
            .filter(|(_, k, _)| k == key)
            .map(|e| e.2)
            .collect();
        assert!(of_key.windows(2).all(|w| w[0] < w[1]), "{key}: {of_key:?}");
    }
    assert!(
        log.iter().filter(|e| e.2 > 16).all(|e| e.0 == "b"),
        "after a left, only b"
    );
}

/// A publish racing with the last member's leave is accepted (or handed back by the leave),
/// never refused as if the topic had shut down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_racing_an_unsubscribe_is_not_refused() {
    let bus = Bus::new();
    let topic = bus.topic::<u32>("t").partitions(2).create().unwrap();
    for _ in 0..2_000 {
        let sub = topic
            .subscribe("s", |_: Event<u32>| async { Ok(()) })
            .start()
            .unwrap();
        let publisher = tokio::spawn({
            let topic = topic.clone();
            async move {
                for n in 0..50 {
                    topic.publish(Event::new("e", n).unwrap()).await.unwrap();
                }
            }
        });
        tokio::task::yield_now().await;
        sub.unsubscribe().await;
        within("the publisher", publisher).await.unwrap();
    }
}
