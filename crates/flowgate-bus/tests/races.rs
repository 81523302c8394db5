//! Regression tests for races between unsubscribe, rebalance, re-created groups and
//! shutdown, and for inputs at the edges (found in review): a leave never hangs after a
//! shutdown cut its delivery off, each undelivered event is reported exactly once and only
//! after its delivery stopped, a re-created group never overlaps a key with its predecessor,
//! `Duration::MAX` means "no limit", exactly-once never re-runs a key after `Ok` (nor runs two
//! copies at once), a handed-back event can be published again, and a pattern subscription
//! outlives the runtime it started on.
#![cfg(not(loom))]

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flowgate::bus::{Backpressure, Bus, DedupeWindowConfig};
use flowgate::{Event, HandlerError, Jitter, RetryPolicy};
use flowgate_testkit::wait::{wait_until, within};
use tokio::sync::Semaphore;

/// Lets spawned tasks and workers run until they block (no time passes).
async fn settle() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}

/// A handler that waits for a permit of `gate`, then counts itself in `done`.
fn gated(
    gate: &Arc<Semaphore>,
    done: &Arc<AtomicU32>,
) -> impl Fn(
    Event<u32>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = flowgate::HandlerResult> + Send>>
       + Send
       + Sync
       + 'static {
    let (gate, done) = (Arc::clone(gate), Arc::clone(done));
    move |_| {
        let (gate, done) = (Arc::clone(&gate), Arc::clone(&done));
        Box::pin(async move {
            gate.acquire().await.unwrap().forget();
            done.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
    }
}

#[tokio::test(start_paused = true)]
async fn a_leave_returns_after_shutdown_cut_its_delivery_off() {
    let bus = Bus::new();
    let topic = bus.topic::<u32>("t").create().unwrap();
    let a = topic
        .subscribe("a", |_: Event<u32>| std::future::pending())
        .group("g")
        .start()
        .unwrap();
    let _b = topic
        .subscribe("b", |_: Event<u32>| async { Ok(()) })
        .group("g")
        .start()
        .unwrap();
    topic.publish(Event::new("e", 1).unwrap()).await.unwrap();
    assert!(wait_until(Duration::from_secs(1), || topic.stats().in_flight == 1).await);
    let leave = tokio::spawn(async move { a.unsubscribe().await });
    settle().await;
    let report = bus.shutdown(Duration::from_millis(100)).await;
    assert_eq!(
        report.not_delivered(),
        1,
        "the cut-off delivery is reported"
    );
    within("a's unsubscribe", leave).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_last_leave_during_a_shutdown_waits_for_the_running_delivery() {
    let bus = Bus::new();
    let topic = bus.topic::<u32>("t").create().unwrap();
    let (gate, done) = (Arc::new(Semaphore::new(0)), Arc::new(AtomicU32::new(0)));
    let sub = topic.subscribe("s", gated(&gate, &done)).start().unwrap();
    topic.publish(Event::new("e", 1).unwrap()).await.unwrap();
    assert!(wait_until(Duration::from_secs(1), || topic.stats().in_flight == 1).await);
    let shutdown = tokio::spawn({
        let bus = bus.clone();
        async move { bus.shutdown(Duration::from_secs(60)).await }
    });
    settle().await;
    let leave = tokio::spawn(async move { sub.unsubscribe().await });
    settle().await;
    assert!(
        !leave.is_finished(),
        "the delivery still runs: the leave waits for it"
    );
    gate.add_permits(1);
    let handed_back = within("the leave", leave).await.unwrap();
    let report = within("the shutdown", shutdown).await.unwrap();
    assert_eq!(done.load(Ordering::SeqCst), 1);
    assert!(
        handed_back.is_empty(),
        "it was delivered: nothing to hand back"
    );
    assert_eq!(report.not_delivered(), 0, "nor to report");
}

#[tokio::test(start_paused = true)]
async fn a_shutdown_report_comes_after_every_delivery_stopped() {
    let bus = Bus::new();
    let topic = bus.topic::<u32>("t").create().unwrap();
    let _a = topic
        .subscribe("a", |_: Event<u32>| std::future::pending())
        .start()
        .unwrap();
    let (gate, done_b) = (Arc::new(Semaphore::new(0)), Arc::new(AtomicU32::new(0)));
    let b = topic.subscribe("b", gated(&gate, &done_b)).start().unwrap();
    topic.publish(Event::new("e", 1).unwrap()).await.unwrap();
    assert!(wait_until(Duration::from_secs(1), || topic.stats().in_flight == 2).await);
    let shutdown = tokio::spawn({
        let bus = bus.clone();
        async move { bus.shutdown(Duration::from_secs(1)).await }
    });
    settle().await; // shutdown waits on a's worker
    let leave_b = tokio::spawn(async move { b.unsubscribe().await });
    settle().await;
    let report = within("the shutdown", shutdown).await.unwrap();
    gate.add_permits(1); // too late: b's delivery was cancelled at the deadline
    let left = within("b's leave", leave_b).await.unwrap();
    settle().await;
    assert_eq!(
        done_b.load(Ordering::SeqCst),
        0,
        "nothing runs after the report"
    );
    let reported: Vec<(String, bool)> = report
        .topic::<u32>("t")
        .unwrap()
        .undelivered
        .iter()
        .map(|u| (u.subscriber.to_string(), u.interrupted))
        .collect();
    assert_eq!(
        reported.len() + left.len(),
        2,
        "each undelivered event reported once: {reported:?}"
    );
    assert!(reported.contains(&("a".into(), true)));
}

#[tokio::test(start_paused = true)]
async fn a_recreated_group_never_runs_a_key_beside_its_predecessor() {
    let bus = Bus::new();
    let topic = bus.topic::<u32>("t").create().unwrap();
    let running = Arc::new(AtomicU32::new(0));
    let overlap = Arc::new(AtomicBool::new(false));
    let handled = Arc::new(AtomicU32::new(0));
    let slow_for = |ms: u64| {
        let (running, overlap, handled) = (
            Arc::clone(&running),
            Arc::clone(&overlap),
            Arc::clone(&handled),
        );
        move |_: Event<u32>| {
            let (running, overlap, handled) = (
                Arc::clone(&running),
                Arc::clone(&overlap),
                Arc::clone(&handled),
            );
            async move {
                if running.fetch_add(1, Ordering::SeqCst) > 0 {
                    overlap.store(true, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(ms)).await;
                running.fetch_sub(1, Ordering::SeqCst);
                handled.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        }
    };
    let old = topic
        .subscribe("old", slow_for(1_000))
        .group("billing")
        .start()
        .unwrap();
    topic
        .publish(Event::new("e", 1).unwrap().with_key("K"))
        .await
        .unwrap();
    assert!(wait_until(Duration::from_millis(10), || topic.stats().in_flight == 1).await);
    let leave = tokio::spawn(async move { old.unsubscribe().await });
    settle().await;
    let _new = topic
        .subscribe("new", slow_for(10))
        .group("billing")
        .start()
        .unwrap();
    topic
        .publish(Event::new("e", 2).unwrap().with_key("K"))
        .await
        .unwrap();
    within("the old member's leave", leave).await.unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || handled.load(Ordering::SeqCst)
            == 2)
        .await
    );
    assert!(
        !overlap.load(Ordering::SeqCst),
        "K ran in both groups at once"
    );
}

#[tokio::test]
async fn duration_max_means_no_limit() {
    let bus = Bus::new();
    let topic = bus
        .topic::<u32>("t")
        .backpressure(Backpressure::Block {
            max_wait: Some(Duration::MAX),
        })
        .create()
        .unwrap();
    topic.publish(Event::new("e", 1).unwrap()).await.unwrap();
    let report = bus.shutdown(Duration::MAX).await;
    assert_eq!(report.not_delivered(), 0);
}

#[tokio::test(start_paused = true)]
async fn exactly_once_never_reruns_a_key_after_ok_nor_runs_two_copies_at_once() {
    let bus = Bus::new();
    let topic = bus
        .topic::<u32>("t")
        .concurrency(3)
        .exactly_once(
            RetryPolicy::exponential(3, Duration::from_millis(50)).jitter(Jitter::None),
            // One key: publishing "x" makes the window forget "k", so a second "k" gets in.
            DedupeWindowConfig::new(1, Duration::from_secs(600)),
        )
        .create()
        .unwrap();
    let log: Arc<Mutex<Vec<(u32, &'static str)>>> = Arc::default();
    let running_k = Arc::new(AtomicU32::new(0));
    let overlap = Arc::new(AtomicBool::new(false));
    let (l, r, o) = (
        Arc::clone(&log),
        Arc::clone(&running_k),
        Arc::clone(&overlap),
    );
    topic
        .subscribe("s", move |e: Event<u32>| {
            let (l, r, o) = (Arc::clone(&l), Arc::clone(&r), Arc::clone(&o));
            let payload = *e.payload();
            async move {
                if payload == 2 {
                    return std::future::pending().await; // "x" never finishes
                }
                if r.fetch_add(1, Ordering::SeqCst) > 0 {
                    o.store(true, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
                r.fetch_sub(1, Ordering::SeqCst);
                // Copy 3 fails its first attempt.
                let first_of_3 = payload == 3 && !l.lock().unwrap().iter().any(|(p, _)| *p == 3);
                l.lock()
                    .unwrap()
                    .push((payload, if first_of_3 { "fail" } else { "ok" }));
                if first_of_3 {
                    Err(HandlerError::retryable("flaky"))
                } else {
                    Ok(())
                }
            }
        })
        .start()
        .unwrap();
    for (payload, key) in [(1, "k"), (2, "x"), (3, "k")] {
        let published = topic
            .publish(Event::new("e", payload).unwrap().with_idempotency_key(key))
            .await
            .unwrap();
        assert!(!published.duplicate, "{key}: the window forgot k");
    }
    // Both copies of k resolved: one handled Ok, the other skipped as done.
    let resolved = || {
        let total = topic.stats().total;
        total.processed == 1 && total.deduplicated == 1
    };
    assert!(
        wait_until(Duration::from_secs(10), resolved).await,
        "{:?}",
        topic.stats().total
    );
    let log = log.lock().unwrap().clone();
    let oks = log.iter().filter(|(_, outcome)| *outcome == "ok").count();
    assert_eq!(oks, 1, "k handled Ok exactly once: {log:?}");
    assert!(
        !overlap.load(Ordering::SeqCst),
        "two copies of k ran at once: {log:?}"
    );
    assert!(
        topic.stats().total.deduplicated >= 1,
        "the later copy was skipped"
    );
}

#[tokio::test(start_paused = true)]
async fn a_handed_back_exactly_once_event_can_be_published_again() {
    let bus = Bus::new();
    let topic = bus
        .topic::<u32>("t")
        .exactly_once(RetryPolicy::default(), DedupeWindowConfig::default())
        .create()
        .unwrap();
    let sub = topic
        .subscribe("s", |_: Event<u32>| async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            Ok(())
        })
        .start()
        .unwrap();
    topic
        .publish(Event::new("e", 1).unwrap().with_key("k"))
        .await
        .unwrap();
    topic
        .publish(Event::new("e", 2).unwrap().with_key("k"))
        .await
        .unwrap();
    assert!(wait_until(Duration::from_secs(1), || topic.stats().in_flight == 1).await);
    let back = sub.unsubscribe().await;
    assert_eq!(back.len(), 1, "2 was still queued");
    let seen = Arc::new(AtomicU32::new(0));
    let s = Arc::clone(&seen);
    topic
        .subscribe("s2", move |_: Event<u32>| {
            s.fetch_add(1, Ordering::SeqCst);
            async { Ok(()) }
        })
        .start()
        .unwrap();
    let again = topic
        .publish(back.into_iter().next().unwrap())
        .await
        .unwrap();
    assert!(!again.duplicate, "a handed-back event is not a duplicate");
    assert!(wait_until(Duration::from_secs(1), || seen.load(Ordering::SeqCst) == 1).await);
}

#[test]
fn a_pattern_subscription_outlives_the_runtime_it_started_on() {
    let bus = Bus::new();
    let seen = Arc::new(AtomicU32::new(0));
    let first = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let s = Arc::clone(&seen);
    let _audit = first.block_on(async {
        bus.subscribe::<u32>("orders.*", "audit", move |_: Event<u32>| {
            s.fetch_add(1, Ordering::SeqCst);
            async { Ok(()) }
        })
        .start()
        .unwrap()
    });
    drop(first);
    let second = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    second.block_on(async {
        let topic = bus.topic::<u32>("orders.eu").create().unwrap();
        topic.publish(Event::new("e", 1).unwrap()).await.unwrap();
        assert!(
            wait_until(Duration::from_secs(10), || seen.load(Ordering::SeqCst) == 1).await,
            "delivered by workers on the runtime that created the topic"
        );
    });
}
