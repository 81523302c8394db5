//! Each backpressure policy does what it says when a partition buffer is full: `Reject`
//! refuses at once, `Block` waits (bounded by `max_wait`) and can be cancelled without a
//! trace, `DropOldest`/`DropNewest` drop and count; shutdown releases blocked publishers.
#![cfg(not(loom))]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use flowgate::bus::{Backpressure, Bus, PublishError, Topic};
use flowgate::Event;
use flowgate_testkit::wait::{wait_until, within};
use tokio::sync::Semaphore;

/// A topic of one partition, buffer of 2, whose handler waits for a permit per event and
/// records the payloads it handled.
fn gated(
    bus: &Bus,
    policy: Backpressure,
    at_most_once: bool,
) -> (Topic<u32>, Arc<Semaphore>, Arc<std::sync::Mutex<Vec<u32>>>) {
    let mut builder = bus.topic::<u32>("t").capacity(2).backpressure(policy);
    if at_most_once {
        builder = builder.at_most_once();
    }
    let topic = builder.create().unwrap();
    let gate = Arc::new(Semaphore::new(0));
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (g, s) = (Arc::clone(&gate), Arc::clone(&seen));
    topic
        .subscribe("slow", move |e: Event<u32>| {
            let (g, s) = (Arc::clone(&g), Arc::clone(&s));
            async move {
                g.acquire().await.unwrap().forget();
                s.lock().unwrap().push(*e.payload());
                Ok(())
            }
        })
        .start()
        .unwrap();
    (topic, gate, seen)
}

/// Publishes 1, waits until it is in flight, then fills the buffer with 2 and 3.
async fn fill(topic: &Topic<u32>) {
    topic.publish(Event::new("e", 1).unwrap()).await.unwrap();
    assert!(wait_until(Duration::from_secs(10), || topic.stats().in_flight == 1).await);
    for n in [2, 3] {
        topic.publish(Event::new("e", n).unwrap()).await.unwrap();
    }
    assert_eq!(topic.stats().depth, 2);
}

#[tokio::test(start_paused = true)]
async fn reject_refuses_at_once_and_hands_the_event_back() {
    let bus = Bus::new();
    let (topic, gate, seen) = gated(&bus, Backpressure::Reject, false);
    fill(&topic).await;
    let refused = topic
        .publish(Event::new("e", 4).unwrap())
        .await
        .unwrap_err();
    assert!(matches!(refused, PublishError::Full(_)), "{refused:?}");
    assert!(refused.is_retryable());
    assert_eq!(*refused.into_event().payload(), 4);
    gate.add_permits(3);
    let report = bus.shutdown(Duration::from_secs(10)).await;
    assert_eq!(report.not_delivered(), 0);
    assert_eq!(*seen.lock().unwrap(), [1, 2, 3]);
    let stats = topic.stats();
    assert_eq!((stats.total.published, stats.total.rejected), (3, 1));
}

#[tokio::test(start_paused = true)]
async fn block_waits_for_room_then_publishes() {
    let bus = Bus::new();
    let (topic, gate, seen) = gated(&bus, Backpressure::Block { max_wait: None }, false);
    fill(&topic).await;
    let blocked = tokio::spawn({
        let topic = topic.clone();
        async move { topic.publish(Event::new("e", 4).unwrap()).await }
    });
    // The publisher is waiting, not refused.
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(!blocked.is_finished());
    gate.add_permits(1); // 1 finishes, 2 starts: room for 4
    within("the blocked publish", blocked)
        .await
        .unwrap()
        .unwrap();
    gate.add_permits(3);
    bus.shutdown(Duration::from_secs(10)).await;
    assert_eq!(*seen.lock().unwrap(), [1, 2, 3, 4]);
}

#[tokio::test(start_paused = true)]
async fn block_gives_up_after_max_wait() {
    let bus = Bus::new();
    let wait = Duration::from_millis(250);
    let (topic, gate, _) = gated(
        &bus,
        Backpressure::Block {
            max_wait: Some(wait),
        },
        false,
    );
    fill(&topic).await;
    let started = tokio::time::Instant::now();
    let error = topic
        .publish(Event::new("e", 4).unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(error, PublishError::Timeout(_, w) if w == wait),
        "{error:?}"
    );
    assert_eq!(
        started.elapsed(),
        wait,
        "waited exactly max_wait on the paused clock"
    );
    assert_eq!(topic.stats().total.rejected, 1);
    gate.add_permits(3);
    bus.shutdown(Duration::from_secs(10)).await;
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_blocked_publish_publishes_nothing() {
    let bus = Bus::new();
    let (topic, gate, seen) = gated(&bus, Backpressure::Block { max_wait: None }, false);
    fill(&topic).await;
    let cancelled = tokio::time::timeout(
        Duration::from_secs(1),
        topic.publish(Event::new("e", 99).unwrap()),
    )
    .await;
    assert!(cancelled.is_err(), "still blocked when dropped");
    gate.add_permits(3);
    let report = bus.shutdown(Duration::from_secs(10)).await;
    assert_eq!(report.not_delivered(), 0);
    assert_eq!(*seen.lock().unwrap(), [1, 2, 3], "99 was never accepted");
    assert_eq!(topic.stats().total.published, 3);
}

#[tokio::test(start_paused = true)]
async fn drop_oldest_makes_room_and_counts() {
    let bus = Bus::new();
    let (topic, gate, seen) = gated(&bus, Backpressure::DropOldest, true);
    fill(&topic).await;
    topic.publish(Event::new("e", 4).unwrap()).await.unwrap();
    topic.publish(Event::new("e", 5).unwrap()).await.unwrap();
    assert_eq!(topic.stats().depth, 2);
    gate.add_permits(3);
    bus.shutdown(Duration::from_secs(10)).await;
    assert_eq!(*seen.lock().unwrap(), [1, 4, 5], "2 and 3 were the oldest");
    let stats = topic.stats();
    assert_eq!((stats.total.published, stats.total.dropped), (5, 2));
}

#[tokio::test(start_paused = true)]
async fn drop_newest_keeps_the_queue_and_counts() {
    let bus = Bus::new();
    let (topic, gate, seen) = gated(&bus, Backpressure::DropNewest, true);
    fill(&topic).await;
    topic.publish(Event::new("e", 4).unwrap()).await.unwrap();
    gate.add_permits(3);
    bus.shutdown(Duration::from_secs(10)).await;
    assert_eq!(*seen.lock().unwrap(), [1, 2, 3]);
    let stats = topic.stats();
    assert_eq!((stats.total.published, stats.total.dropped), (4, 1));
}

#[tokio::test(start_paused = true)]
async fn shutdown_releases_blocked_publishers_with_shut_down() {
    let bus = Bus::new();
    let (topic, _gate, _) = gated(&bus, Backpressure::Block { max_wait: None }, false);
    fill(&topic).await;
    let waiting = Arc::new(AtomicU32::new(0));
    let blocked = tokio::spawn({
        let (topic, waiting) = (topic.clone(), Arc::clone(&waiting));
        async move {
            waiting.fetch_add(1, Ordering::SeqCst);
            topic.publish(Event::new("e", 4).unwrap()).await
        }
    });
    assert!(
        wait_until(Duration::from_secs(10), || waiting.load(Ordering::SeqCst)
            == 1)
        .await
    );
    let report = bus.shutdown(Duration::from_secs(1)).await;
    let refused = within("the blocked publish", blocked)
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(refused, PublishError::ShutDown(_)), "{refused:?}");
    // 1 was in flight (interrupted), 2 and 3 queued: all three reported, with their events.
    assert_eq!(report.not_delivered(), 3);
    let undelivered = &report.topic::<u32>("t").unwrap().undelivered;
    let mut payloads: Vec<u32> = undelivered.iter().map(|u| *u.event.payload()).collect();
    payloads.sort_unstable();
    assert_eq!(payloads, [1, 2, 3]);
}
