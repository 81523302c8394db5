//! The Redis backend's basic paths against a real redis-server: publish and deliver, per-key
//! order, retries and dead letters, exactly-once dedupe, backpressure, leaving, and typed
//! errors for bad input and a server that is not there.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use flowgate::bus::{
    Backend, Backpressure, BusError, DedupeWindowConfig, DeliveryMode, PublishError,
    SubscribeRequest, TopicSettings,
};
use flowgate::redis::RedisBus;
use flowgate::{DeadLetterQueue, Event, HandlerError, Jitter, RetryPolicy};
use flowgate_testkit::wait::{wait_for, wait_until};

fn retry() -> RetryPolicy {
    RetryPolicy::exponential(3, Duration::from_millis(1)).jitter(Jitter::None)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_a_subscriber_in_key_order() {
    let server = common::server();
    let bus = common::bus(&server, "basics").await;
    let topic = bus
        .create_topic(
            "orders",
            TopicSettings::default().partitions(4).concurrency(4),
        )
        .await
        .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let request = SubscribeRequest::new("audit", move |event: Event<u32>| {
        log.lock()
            .unwrap()
            .push((event.key().unwrap().to_string(), *event.payload()));
        async { Ok(()) }
    });
    let _audit = topic.subscribe(request).await.unwrap();
    for n in 0..200u32 {
        let event = Event::new("order.placed", n)
            .unwrap()
            .with_key(format!("k{}", n % 7));
        topic.publish(event).await.unwrap();
    }
    assert!(
        wait_until(Duration::from_secs(20), || seen.lock().unwrap().len()
            == 200)
        .await,
        "all 200 delivered"
    );
    let seen = seen.lock().unwrap().clone();
    for key in 0..7 {
        let of_key: Vec<u32> = seen
            .iter()
            .filter(|(k, _)| *k == format!("k{key}"))
            .map(|(_, n)| *n)
            .collect();
        assert!(
            of_key.windows(2).all(|w| w[0] < w[1]),
            "key k{key}: {of_key:?}"
        );
    }
    let report = bus.shutdown(Duration::from_secs(5)).await;
    assert_eq!(report.not_delivered(), 0);
    assert_eq!(topic.stats().await.total.processed, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_retried_then_dead_lettered() {
    let server = common::server();
    let bus = common::bus(&server, "retries").await;
    let topic = bus
        .create_topic(
            "jobs",
            TopicSettings::default().mode(DeliveryMode::AtLeastOnce(retry())),
        )
        .await
        .unwrap();
    let dead = DeadLetterQueue::new(10);
    let request = SubscribeRequest::new("worker", |event: Event<u32>| async move {
        if *event.payload() == 13 {
            Err(HandlerError::retryable("unlucky"))
        } else {
            Ok(())
        }
    })
    .dead_letters(dead.clone());
    let _worker = topic.subscribe(request).await.unwrap();
    for n in [1, 13, 2] {
        topic.publish(Event::new("job", n).unwrap()).await.unwrap();
    }
    assert!(
        wait_until(Duration::from_secs(20), || dead.len() == 1).await,
        "a dead letter"
    );
    let letters = dead.drain();
    assert_eq!((*letters[0].event.payload(), letters[0].attempts), (13, 3));
    bus.shutdown(Duration::from_secs(5)).await;
    let stats = topic.stats().await;
    assert_eq!(
        (
            stats.total.processed,
            stats.total.failed,
            stats.total.retried
        ),
        (2, 3, 2)
    );
    assert_eq!(stats.total.dead_lettered, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_acknowledges_a_republished_key_as_a_duplicate() {
    let server = common::server();
    let bus = common::bus(&server, "dedupe").await;
    let mode = DeliveryMode::ExactlyOnce(retry(), DedupeWindowConfig::default());
    let topic = bus
        .create_topic(
            "payments",
            TopicSettings::default().partitions(2).mode(mode),
        )
        .await
        .unwrap();
    let first = topic
        .publish(
            Event::new("paid", 10u32)
                .unwrap()
                .with_idempotency_key("pay-1"),
        )
        .await
        .unwrap();
    let again = topic
        .publish(
            Event::new("paid", 10u32)
                .unwrap()
                .with_idempotency_key("pay-1"),
        )
        .await
        .unwrap();
    assert!(!first.duplicate && again.duplicate);
    assert_eq!(first.partition, again.partition);
    let stats = topic.stats().await;
    assert_eq!((stats.total.published, stats.total.duplicates), (1, 1));
    assert_eq!(stats.dedupe.unwrap().keys, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_partition_rejects_and_shutdown_reports_what_was_owed() {
    let server = common::server();
    let bus = common::bus(&server, "full").await;
    let settings = TopicSettings::default()
        .capacity(2)
        .backpressure(Backpressure::Reject);
    let topic = bus.create_topic("jobs", settings).await.unwrap();
    let stuck = SubscribeRequest::new("stuck", |_: Event<u32>| std::future::pending());
    let member = topic.subscribe(stuck.group("workers")).await.unwrap();
    topic.publish(Event::new("job", 1).unwrap()).await.unwrap();
    topic.publish(Event::new("job", 2).unwrap()).await.unwrap();
    let refused = topic
        .publish(Event::new("job", 3).unwrap())
        .await
        .unwrap_err();
    assert!(matches!(refused, PublishError::Full(_)), "{refused}");
    // The stuck member never finishes event 1: leaving would wait forever, so end the bus
    // with a deadline instead; what the group was owed is reported.
    drop(member);
    let report = bus.shutdown(Duration::from_millis(500)).await;
    assert!(report.deadline_expired());
    assert_eq!(report.not_delivered(), 2, "{report:?}");
    let jobs = report.topic::<u32>("jobs").expect("the topic's report");
    assert!(
        jobs.undelivered.iter().all(|u| &*u.subscriber == "workers"),
        "reported under the group's name, as the in-process bus does"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_subscriber_leaving_gets_back_what_it_was_owed() {
    let server = common::server();
    let bus = common::bus(&server, "leave").await;
    let topic = common::jobs(&bus).await;
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let handled = Arc::new(Mutex::new(Vec::new()));
    let (opened, log) = (Arc::clone(&gate), Arc::clone(&handled));
    let request = SubscribeRequest::new("slow", move |event: Event<u32>| {
        let (gate, log) = (Arc::clone(&opened), Arc::clone(&log));
        async move {
            if *event.payload() == 0 {
                gate.acquire().await.unwrap().forget();
            }
            log.lock().unwrap().push(*event.payload());
            Ok(())
        }
    });
    let sub = topic.subscribe(request).await.unwrap();
    for n in 0..5 {
        topic.publish(Event::new("job", n).unwrap()).await.unwrap();
    }
    let running = wait_for(Duration::from_secs(10), || async {
        (topic.stats().await.in_flight == 1).then_some(())
    })
    .await;
    assert!(
        running.is_some(),
        "event 0 runs (concurrency 1: nothing else does)"
    );
    // Leave while event 0 runs; it finishes (the gate opens) before the call returns.
    let leaving = tokio::spawn(sub.unsubscribe());
    gate.add_permits(1);
    let handed_back: Vec<u32> = leaving
        .await
        .unwrap()
        .iter()
        .map(|e| *e.payload())
        .collect();
    let handled = handled.lock().unwrap().clone();
    assert_eq!(handled.first(), Some(&0), "the delivery in flight finished");
    let mut all: Vec<u32> = handled.iter().chain(&handed_back).copied().collect();
    all.sort_unstable();
    assert_eq!(
        all,
        [0, 1, 2, 3, 4],
        "each event handled or handed back, once"
    );
    assert_eq!(topic.stats().await.subscribers, 0, "the group is gone");
}

#[tokio::test]
async fn bad_input_gets_typed_errors() {
    let refused = RedisBus::connect("redis://127.0.0.1:1/").await.unwrap_err();
    assert!(matches!(refused, BusError::Unavailable(_)), "{refused}");
    let server = common::server();
    let bus = common::bus(&server, "bad").await;
    let zero =
        Backend::<u32>::create_topic(&bus, "jobs", TopicSettings::default().partitions(0)).await;
    assert!(matches!(
        zero,
        Err(BusError::InvalidConfig {
            what: "partitions",
            ..
        })
    ));
    let name = Backend::<u32>::create_topic(&bus, "no spaces", TopicSettings::default()).await;
    assert!(matches!(name, Err(BusError::Core(_))));
    let topic = Backend::<u32>::create_topic(&bus, "jobs", TopicSettings::default().partitions(2))
        .await
        .unwrap();
    let again = Backend::<u32>::create_topic(&bus, "jobs", TopicSettings::default()).await;
    assert!(matches!(again, Err(BusError::TopicExists { .. })));
    let other = common::bus(&server, "bad").await;
    let mismatch = Backend::<u32>::create_topic(&other, "jobs", TopicSettings::default()).await;
    assert!(
        matches!(mismatch, Err(BusError::TopicExists { detail, .. }) if detail.contains("Redis")),
        "another process opening the topic with 1 partition instead of 2"
    );
    let blank = topic
        .subscribe(SubscribeRequest::new(" ", |_: Event<u32>| async { Ok(()) }))
        .await;
    assert!(matches!(blank, Err(BusError::InvalidConfig { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_while_redis_is_down_fails_typed_and_retryable() {
    let mut server = common::server();
    let bus = common::bus(&server, "outage").await;
    let topic = common::jobs(&bus).await;
    topic.publish(Event::new("job", 1).unwrap()).await.unwrap();
    server.kill();
    let refused = topic
        .publish(Event::new("job", 2).unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(refused, PublishError::Unavailable { .. }),
        "{refused}"
    );
    assert!(refused.is_retryable());
    assert_eq!(*refused.into_event().payload(), 2, "the event comes back");
    server.restart().unwrap();
    let back = Event::new("job", 3).unwrap();
    let published = wait_for(Duration::from_secs(10), || {
        let topic = topic.clone();
        let back = back.clone();
        async move { topic.publish(back).await.ok() }
    })
    .await;
    assert!(published.is_some(), "the bus reconnects by itself");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_skips_a_copy_that_reached_the_stream_after_the_key_was_handled() {
    let server = common::server();
    let bus = common::bus(&server, "marker").await;
    let mode = DeliveryMode::ExactlyOnce(retry(), DedupeWindowConfig::default());
    let topic = bus
        .create_topic("payments", TopicSettings::default().mode(mode))
        .await
        .unwrap();
    let calls = Arc::new(Mutex::new(0u32));
    let count = Arc::clone(&calls);
    let request = SubscribeRequest::new("ledger", move |_: Event<u32>| {
        *count.lock().unwrap() += 1;
        async { Ok(()) }
    });
    let _ledger = topic.subscribe(request.group("ledger")).await.unwrap();
    topic
        .publish(
            Event::new("paid", 10u32)
                .unwrap()
                .with_idempotency_key("pay-1"),
        )
        .await
        .unwrap();
    assert!(wait_until(Duration::from_secs(10), || *calls.lock().unwrap() == 1).await);
    // A copy of the entry written past the publish window (another writer, or a window that
    // forgot the key): only the group's done marker stands between it and a second run.
    let mut conn = common::raw(&server).await;
    let stream = "fg:{marker/payments/0}:s";
    let entries: redis::Value = redis::cmd("XRANGE")
        .arg(stream)
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .unwrap();
    let redis::Value::Array(entries) = entries else {
        panic!("no entries in {stream}")
    };
    let redis::Value::Array(entry) = &entries[0] else {
        panic!("bad entry")
    };
    let redis::Value::Array(fields) = &entry[1] else {
        panic!("bad fields")
    };
    let mut copy = redis::cmd("XADD");
    copy.arg(stream).arg("*");
    for field in fields {
        if let redis::Value::BulkString(bytes) = field {
            copy.arg(bytes.as_slice());
        }
    }
    let _: String = copy.query_async(&mut conn).await.unwrap();
    let skipped = wait_for(Duration::from_secs(10), || async {
        (topic.stats().await.total.deduplicated == 1).then_some(())
    })
    .await;
    assert!(skipped.is_some(), "the copy was read and skipped");
    assert_eq!(*calls.lock().unwrap(), 1, "the handler ran once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishes_share_batches_and_keep_every_rule() {
    let server = common::server();
    let bus = common::bus(&server, "batches").await;
    // Exactly-once: 64 publishes at once, two per idempotency key.
    let mode = DeliveryMode::ExactlyOnce(retry(), DedupeWindowConfig::default());
    let payments =
        Backend::<u32>::create_topic(&bus, "payments", TopicSettings::default().mode(mode))
            .await
            .unwrap();
    let publishes = (0..64u32).map(|n| {
        let event = Event::new("paid", n)
            .unwrap()
            .with_idempotency_key(format!("pay-{}", n / 2));
        payments.publish(event)
    });
    let outcomes = futures_util::future::join_all(publishes).await;
    let duplicates = outcomes
        .iter()
        .filter(|o| o.as_ref().unwrap().duplicate)
        .count();
    assert_eq!(duplicates, 32, "one of each pair is a duplicate");
    let stats = payments.stats().await;
    assert_eq!((stats.total.published, stats.total.duplicates), (32, 32));
    // Reject: a group that never finishes holds the room; 64 publishes at once, 10 fit.
    let settings = TopicSettings::default()
        .capacity(10)
        .backpressure(Backpressure::Reject);
    let jobs = Backend::<u32>::create_topic(&bus, "jobs", settings)
        .await
        .unwrap();
    let stuck = SubscribeRequest::new("stuck", |_: Event<u32>| std::future::pending());
    let _stuck = jobs.subscribe(stuck).await.unwrap();
    let publishes = (0..64u32).map(|n| jobs.publish(Event::new("job", n).unwrap()));
    let outcomes = futures_util::future::join_all(publishes).await;
    let accepted = outcomes.iter().filter(|o| o.is_ok()).count();
    let full = outcomes
        .iter()
        .filter(|o| matches!(o, Err(PublishError::Full(_))))
        .count();
    assert_eq!((accepted, full), (10, 54));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_with_the_binary_codec_round_trips_its_events() {
    let server = common::server();
    let bus = common::bus(&server, "postcard").await;
    let topic = bus
        .create_topic_with::<Vec<String>>(
            "notes",
            TopicSettings::default(),
            flowgate::redis::Postcard::new(),
        )
        .await
        .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let request = SubscribeRequest::new("reader", move |event: Event<Vec<String>>| {
        log.lock().unwrap().push(event.payload().clone());
        async { Ok(()) }
    });
    let _reader = topic.subscribe(request).await.unwrap();
    let note = vec!["tea".to_owned(), "milk".to_owned()];
    topic
        .publish(Event::new("note", note.clone()).unwrap())
        .await
        .unwrap();
    assert!(wait_until(Duration::from_secs(10), || seen.lock().unwrap().len() == 1).await);
    assert_eq!(seen.lock().unwrap()[0], note);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_plain_subscribers_group_stops_holding_the_room() {
    let server = common::server();
    let bus = common::bus(&server, "ghosts").await;
    let settings = TopicSettings::default()
        .capacity(2)
        .backpressure(Backpressure::Reject);
    let jobs = Backend::<u32>::create_topic(&bus, "jobs", settings)
        .await
        .unwrap();
    // What a plain subscriber leaves when its process dies: its group, and a heartbeat long
    // past (the documented layout).
    let mut conn = common::raw(&server).await;
    let () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg("fg:{ghosts/jobs/0}:s")
        .arg("p:ghost:1")
        .arg("$")
        .arg("MKSTREAM")
        .query_async(&mut conn)
        .await
        .unwrap();
    let () = redis::cmd("ZADD")
        .arg("fg:{ghosts/jobs}:plain")
        .arg(1)
        .arg("p:ghost:1")
        .query_async(&mut conn)
        .await
        .unwrap();
    for n in 0..2 {
        jobs.publish(Event::new("job", n).unwrap()).await.unwrap();
    }
    let full = jobs.publish(Event::new("job", 2).unwrap()).await;
    assert!(
        matches!(full, Err(PublishError::Full(_))),
        "the dead group holds the room"
    );
    // A live subscriber's coordinator deletes the dead group; the room comes back.
    let _live = jobs
        .subscribe(SubscribeRequest::new("live", |_: Event<u32>| async {
            Ok(())
        }))
        .await
        .unwrap();
    let room = wait_for(Duration::from_secs(10), || async {
        jobs.publish(Event::new("job", 3).unwrap()).await.ok()
    })
    .await;
    assert!(room.is_some(), "publishing works again");
    assert_eq!(
        jobs.stats().await.subscribers,
        1,
        "only the live subscriber's group is left"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_with_too_much_metadata_is_refused_not_the_batch() {
    let server = common::server();
    let bus = common::bus(&server, "metadata").await;
    let jobs = common::jobs(&bus).await;
    let mut heavy = Event::new("job", 1).unwrap();
    for n in 0..3_000 {
        heavy = heavy.with_metadata(format!("m{n}"), "x");
    }
    let light = Event::new("job", 2).unwrap();
    let (heavy, light) = futures_util::future::join(jobs.publish(heavy), jobs.publish(light)).await;
    let refused = heavy.unwrap_err();
    assert!(
        matches!(
            refused,
            PublishError::Unavailable {
                retryable: false,
                ..
            }
        ),
        "{refused}"
    );
    assert!(
        refused.to_string().contains("metadata entries"),
        "{refused}"
    );
    light.expect("an event published beside it is not refused with it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_running_past_the_lease_is_not_taken_over() {
    let server = common::server();
    // Two buses: two processes' members of one group, with a 0.9 s lease.
    let (first, second) = (
        common::bus(&server, "long").await,
        common::bus(&server, "long").await,
    );
    let starts = Arc::new(Mutex::new(0u32));
    let request = |bus: &flowgate::redis::RedisBus| {
        let starts = Arc::clone(&starts);
        let bus = bus.clone();
        async move {
            let jobs = common::jobs(&bus).await;
            let slow = SubscribeRequest::new("worker", move |_: Event<u32>| {
                *starts.lock().unwrap() += 1;
                async {
                    // Three leases long: live work, which renewals keep this member's.
                    tokio::time::sleep(Duration::from_millis(2_700)).await;
                    Ok(())
                }
            });
            (
                jobs.clone(),
                jobs.subscribe(slow.group("workers")).await.unwrap(),
            )
        }
    };
    let (jobs, _a) = request(&first).await;
    jobs.publish(Event::new("job", 1).unwrap()).await.unwrap();
    assert!(wait_until(Duration::from_secs(10), || *starts.lock().unwrap() == 1).await);
    let (_, _b) = request(&second).await;
    let done = wait_for(Duration::from_secs(20), || async {
        (jobs.stats().await.total.processed == 1).then_some(())
    })
    .await;
    assert!(done.is_some(), "the slow delivery finished");
    assert_eq!(
        *starts.lock().unwrap(),
        1,
        "and ran once: no other member took it over"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_a_subscriptions_stream_and_its_batcher_flushes() {
    use flowgate::flow::{Batching, FlowExt};
    use futures_util::StreamExt;
    let server = common::server();
    let bus = common::bus(&server, "stream").await;
    let topic = bus
        .create_topic("clicks", TopicSettings::default().partitions(2))
        .await
        .unwrap();
    let (handler, events) = flowgate::flow::channel::<u32>(16).unwrap();
    let _held = topic
        .subscribe(SubscribeRequest::new("analytics", handler))
        .await
        .unwrap();
    let batches = events
        .batch(Batching::new(40, Duration::from_secs(3600)))
        .unwrap();
    let meter = batches.meter();
    let reader = tokio::spawn(batches.collect::<Vec<_>>());
    for n in 0..100u32 {
        topic
            .publish(Event::new("click", n).unwrap())
            .await
            .unwrap();
    }
    assert!(
        wait_until(Duration::from_secs(20), || meter.stats().received == 100).await,
        "all 100 reached the stream: {:?}",
        meter.stats()
    );
    let report = bus.shutdown(Duration::from_secs(5)).await;
    assert_eq!(report.not_delivered(), 0);
    let batches = flowgate_testkit::wait::within("the stream's end at shutdown", reader)
        .await
        .unwrap();
    let mut seen: Vec<u32> = batches.iter().flatten().map(|e| *e.payload()).collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..100).collect::<Vec<_>>(), "every event, once");
    assert_eq!(
        batches.iter().map(Vec::len).collect::<Vec<_>>(),
        [40, 40, 20]
    );
}
