//! Pattern subscriptions attach to every matching topic of their payload type, existing or
//! created later, and leave them all on unsubscribe; bad patterns are typed errors.
#![cfg(not(loom))]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use flowgate::bus::{Bus, BusError};
use flowgate::Event;

#[tokio::test(start_paused = true)]
async fn a_pattern_reaches_matching_topics_old_and_new() {
    let bus = Bus::new();
    let eu = bus.topic::<u32>("orders.eu").create().unwrap();
    let other_type = bus.topic::<String>("orders.us").create().unwrap();
    let unrelated = bus.topic::<u32>("payments.eu").create().unwrap();
    let seen: Arc<Mutex<Vec<(String, u32)>>> = Arc::default();
    let log = Arc::clone(&seen);
    let audit = bus
        .subscribe::<u32>("orders.*", "audit", move |e: Event<u32>| {
            log.lock()
                .unwrap()
                .push((e.kind().as_str().to_owned(), *e.payload()));
            async { Ok(()) }
        })
        .start()
        .unwrap();
    let asia = bus.topic::<u32>("orders.asia").create().unwrap();
    let deep = bus.topic::<u32>("orders.asia.vip").create().unwrap(); // `*` is one segment
    assert_eq!(audit.topics(), ["orders.asia", "orders.eu"]);

    eu.publish(Event::new("eu", 1).unwrap()).await.unwrap();
    asia.publish(Event::new("asia", 2).unwrap()).await.unwrap();
    deep.publish(Event::new("deep", 3).unwrap()).await.unwrap();
    unrelated
        .publish(Event::new("pay", 4).unwrap())
        .await
        .unwrap();
    other_type
        .publish(Event::new("us", "x".to_owned()).unwrap())
        .await
        .unwrap();
    let report = bus.shutdown(Duration::from_secs(10)).await;
    assert_eq!(report.not_delivered(), 0);
    let mut seen = seen.lock().unwrap().clone();
    seen.sort();
    assert_eq!(seen, [("asia".into(), 2), ("eu".into(), 1)]);
}

#[tokio::test(start_paused = true)]
async fn unsubscribing_a_pattern_leaves_every_topic_and_stops_attaching() {
    let bus = Bus::new();
    let a = bus.topic::<u32>("jobs.a").create().unwrap();
    let sub = bus
        .subscribe::<u32>("jobs.>", "worker", |_: Event<u32>| std::future::pending())
        .start()
        .unwrap();
    a.publish(Event::new("j", 1).unwrap()).await.unwrap();
    a.publish(Event::new("j", 2).unwrap()).await.unwrap();
    tokio::task::yield_now().await; // 1 starts and hangs: 2 stays queued
    let left = tokio::time::timeout(Duration::from_secs(1), sub.unsubscribe()).await;
    assert!(
        left.is_err(),
        "unsubscribe waits for the delivery in flight"
    );
    assert_eq!(
        a.stats().subscribers,
        0,
        "but it has left the topic already"
    );
    let b = bus.topic::<u32>("jobs.b").create().unwrap();
    assert_eq!(b.stats().subscribers, 0, "no longer attaches to new topics");
}

#[tokio::test]
async fn a_handed_back_event_comes_with_its_topic() {
    let bus = Bus::new();
    let a = bus.topic::<u32>("jobs.a").create().unwrap();
    let sub = bus
        .subscribe::<u32>("jobs.*", "worker", |_: Event<u32>| async { Ok(()) })
        .start()
        .unwrap();
    a.publish(Event::new("j", 1).unwrap()).await.unwrap();
    let handed_back = sub.unsubscribe().await;
    let processed = a.stats().total.processed;
    let returned: usize = handed_back.iter().map(|(_, events)| events.len()).sum();
    assert_eq!(
        processed + returned as u64,
        1,
        "delivered or handed back, once"
    );
    assert!(handed_back.iter().all(|(topic, _)| topic == "jobs.a"));
}

#[tokio::test]
async fn bad_patterns_and_names_are_typed_errors() {
    let bus = Bus::new();
    let noop = |_: Event<u32>| async { Ok(()) };
    for pattern in ["", "orders.*.>x", "a..b", "orders.>.x"] {
        let error = bus
            .subscribe::<u32>(pattern, "s", noop)
            .start()
            .unwrap_err();
        assert!(matches!(error, BusError::Core(_)), "{pattern:?}: {error:?}");
    }
    let error = bus
        .subscribe::<u32>("orders.*", " ", noop)
        .start()
        .unwrap_err();
    assert!(matches!(error, BusError::InvalidConfig { .. }));
    bus.shutdown(Duration::from_secs(1)).await;
    let error = bus
        .subscribe::<u32>("orders.*", "s", noop)
        .start()
        .unwrap_err();
    assert!(matches!(error, BusError::ShutDown));
}
