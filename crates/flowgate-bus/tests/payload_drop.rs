//! A payload's `Drop` is the user's code: the bus never runs it while holding one of its own
//! locks. Otherwise a payload whose `Drop` reads the topic's `stats()` (or publishes to it) would
//! wait for a lock its own thread holds.
//!
//! The payload is a [`DropProbe`] whose `Drop` asks another thread for `topic.stats()`, which
//! takes every lane's lock and every dedupe shard's, and waits up to 2 s for the answer: a `Drop`
//! run under one of those locks is seen as a `stats()` that could not finish.
#![cfg(not(loom))]

use std::sync::Arc;
use std::time::Duration;

use flowgate::bus::{Backpressure, Bus, DedupeWindowConfig, Topic};
use flowgate::{Event, RetryPolicy};
use flowgate_testkit::drop_probe::{DropProbe, DropProbes};
use flowgate_testkit::wait::wait_until;
use tokio::sync::Semaphore;

/// Events whose probes read the topic's `stats()` when dropped.
fn probed(topic: &Topic<DropProbe>) -> (impl Fn() -> Event<DropProbe>, Arc<DropProbes>) {
    let probes = DropProbes::new(Duration::from_secs(2));
    let make = probes.events(topic.clone(), |topic| {
        let _ = topic.stats();
    });
    (make, probes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivered_events_payload_is_dropped_outside_the_lane_lock() {
    let bus = Bus::new();
    let topic = bus
        .topic::<DropProbe>("t")
        .partitions(1)
        .at_least_once(RetryPolicy::default())
        .create()
        .unwrap();
    let (make, probes) = probed(&topic);
    let _subscriber = topic
        .subscribe("s", |_: Event<DropProbe>| async { Ok(()) })
        .start()
        .unwrap();
    for _ in 0..5 {
        topic.publish(make()).await.unwrap();
    }
    assert!(
        wait_until(Duration::from_secs(30), || probes.dropped() == 5).await,
        "all five payloads dropped"
    );
    assert_eq!(probes.blocked(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payload_dropped_for_room_is_dropped_outside_the_lane_lock() {
    let bus = Bus::new();
    let topic = bus
        .topic::<DropProbe>("t")
        .partitions(1)
        .capacity(1)
        .at_most_once()
        .backpressure(Backpressure::DropOldest)
        .create()
        .unwrap();
    let (make, probes) = probed(&topic);
    let gate = Arc::new(Semaphore::new(0));
    let _subscriber = topic
        .subscribe("s", {
            let gate = Arc::clone(&gate);
            move |_: Event<DropProbe>| {
                let gate = Arc::clone(&gate);
                async move {
                    gate.acquire().await.unwrap().forget();
                    Ok(())
                }
            }
        })
        .start()
        .unwrap();
    topic.publish(make()).await.unwrap();
    assert!(wait_until(Duration::from_secs(30), || topic.stats().in_flight == 1).await);
    // The second waits in the buffer; the third pushes it out.
    topic.publish(make()).await.unwrap();
    topic.publish(make()).await.unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || probes.dropped() == 1).await,
        "the second payload was dropped for room"
    );
    assert_eq!(topic.stats().total.dropped, 1);
    assert_eq!(probes.blocked(), 0);
    gate.add_permits(2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_payloads_no_lane_keeps_are_dropped_outside_the_dedupe_lock() {
    let bus = Bus::new();
    let topic = bus
        .topic::<DropProbe>("t")
        .partitions(1)
        .exactly_once(RetryPolicy::default(), DedupeWindowConfig::default())
        .create()
        .unwrap();
    let (make, probes) = probed(&topic);
    let first = topic
        .publish(make().with_idempotency_key("k"))
        .await
        .unwrap();
    let again = topic
        .publish(make().with_idempotency_key("k"))
        .await
        .unwrap();
    assert!(!first.duplicate && again.duplicate);
    assert_eq!(
        probes.dropped(),
        2,
        "both payloads dropped (nobody subscribed)"
    );
    assert_eq!(probes.blocked(), 0);
}
