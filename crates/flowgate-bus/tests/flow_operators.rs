//! The flow-control operators on a bus subscription, through `flowgate::flow::channel`: the
//! stream ends when the subscription ends (unsubscribe or shutdown, even while its handle is
//! held), so the operators flush what they hold; a dropped stream dead-letters instead of
//! losing; a slow reader is backpressure, not loss.

use std::sync::Arc;
use std::time::Duration;

use flowgate::bus::{Backpressure, DeliveryMode, PublishError};
use flowgate::flow::{Batching, Debouncing, FlowExt};
use flowgate::{Bus, DeadLetterQueue, DeadLetterSink, Event, RetryPolicy};
use flowgate_testkit::wait::{wait_until, within};
use futures_util::StreamExt;

const DEADLINE: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_the_stream_and_the_batcher_flushes_its_partial_batch() {
    let bus = Bus::new();
    let topic = bus.topic::<u32>("clicks").partitions(4).create().unwrap();
    let (handler, events) = flowgate::flow::channel(16).unwrap();
    let _held = topic.subscribe("analytics", handler).start().unwrap();
    let batches = events
        .batch(Batching::new(100, Duration::from_secs(3600)))
        .unwrap();
    let meter = batches.meter();
    let reader = tokio::spawn(batches.collect::<Vec<_>>());
    for n in 0..250 {
        topic
            .publish(Event::new("click", n).unwrap())
            .await
            .unwrap();
    }
    let report = bus.shutdown(DEADLINE).await;
    assert_eq!(report.not_delivered(), 0);
    let batches = within(
        "the stream's end at shutdown, the handle still held",
        reader,
    )
    .await
    .unwrap();
    let mut seen: Vec<u32> = batches.iter().flatten().map(|e| *e.payload()).collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..250).collect::<Vec<_>>(), "every event, once");
    assert_eq!(
        batches.iter().map(Vec::len).collect::<Vec<_>>(),
        [100, 100, 50]
    );
    let stats = meter.stats();
    assert_eq!((stats.flushed_early, stats.pending), (1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribe_ends_the_stream_and_the_debouncer_hands_on_each_keys_last() {
    let bus = Bus::new();
    let topic = bus
        .topic::<(u32, u32)>("carts")
        .partitions(2)
        .create()
        .unwrap();
    let (handler, events) = flowgate::flow::channel(8).unwrap();
    let sub = topic.subscribe("view", handler).start().unwrap();
    let latest = events
        .debounce_by(Debouncing::new(Duration::from_secs(3600)), |e| {
            e.payload().0
        })
        .unwrap();
    let meter = latest.meter();
    let reader = tokio::spawn(latest.map(|e| *e.payload()).collect::<Vec<_>>());
    for version in 0..50 {
        for cart in 0..3 {
            let event = Event::new("cart", (cart, version))
                .unwrap()
                .with_key(cart.to_string());
            topic.publish(event).await.unwrap();
        }
    }
    let delivered = wait_until(DEADLINE, || topic.stats().total.processed == 150).await;
    assert!(delivered, "all 150 delivered: {:?}", topic.stats().total);
    assert!(sub.unsubscribe().await.is_empty());
    let mut seen = within("the stream's end at unsubscribe", reader)
        .await
        .unwrap();
    seen.sort_unstable();
    assert_eq!(
        seen,
        [(0, 49), (1, 49), (2, 49)],
        "each key's last version, once"
    );
    let stats = meter.stats();
    assert_eq!(
        (stats.received, stats.coalesced, stats.flushed_early),
        (150, 147, 3)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_stream_dead_letters_what_it_can_no_longer_take() {
    let bus = Bus::new();
    let topic = bus
        .topic::<u32>("jobs")
        .mode(DeliveryMode::AtLeastOnce(RetryPolicy::exponential(
            3,
            Duration::from_millis(1),
        )))
        .create()
        .unwrap();
    let dead = Arc::new(DeadLetterQueue::new(100));
    let sink = Arc::clone(&dead);
    let (handler, events) = flowgate::flow::channel(4).unwrap();
    let _sub = topic
        .subscribe("reader", handler)
        .dead_letters(move |letter| sink.dead_letter(letter))
        .start()
        .unwrap();
    drop(events);
    for n in 0..5 {
        topic.publish(Event::new("job", n).unwrap()).await.unwrap();
    }
    bus.shutdown(DEADLINE).await;
    let letters = dead.drain();
    assert_eq!(
        letters.len(),
        5,
        "each event is reported, none lost silently"
    );
    assert!(
        letters[0].error.to_string().contains("permanent"),
        "{}",
        letters[0].error
    );
    assert_eq!(
        letters[0].attempts, 1,
        "a dropped stream will not come back: no retries"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_is_backpressure_on_the_publisher_not_loss() {
    let bus = Bus::new();
    let topic = bus
        .topic::<u32>("ticks")
        .capacity(2)
        .backpressure(Backpressure::Reject)
        .create()
        .unwrap();
    let (handler, mut events) = flowgate::flow::channel(1).unwrap();
    let _sub = topic.subscribe("slow", handler).start().unwrap();
    // Nothing reads: one event in the stream's buffer, one in the handler waiting for room,
    // two queued; the fifth publish is refused.
    let mut accepted = 0;
    let refused = loop {
        match topic.publish(Event::new("tick", accepted).unwrap()).await {
            Ok(_) => accepted += 1,
            Err(e) => break e,
        }
        assert!(accepted <= 4, "the buffers bound what is accepted");
        if accepted == 4 {
            let waiting = wait_until(DEADLINE, || topic.stats().total.in_flight == 1).await;
            assert!(
                waiting,
                "the handler waits for room: {:?}",
                topic.stats().total
            );
        }
    };
    assert!(matches!(refused, PublishError::Full(_)), "{refused:?}");
    let mut read = Vec::new();
    while read.len() < accepted as usize {
        let event = within("the next event", events.next()).await.unwrap();
        read.push(*event.payload());
    }
    assert_eq!(read, (0..accepted).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_past_its_deadline_still_ends_the_stream() {
    let bus = Bus::new();
    let topic = bus.topic::<u32>("ticks").create().unwrap();
    let (handler, events) = flowgate::flow::channel(1).unwrap();
    let _held = topic.subscribe("stuck", handler).start().unwrap();
    for n in 0..3 {
        topic.publish(Event::new("tick", n).unwrap()).await.unwrap();
    }
    // Nothing reads: one event in the stream's buffer, a delivery waiting for room.
    let waiting = wait_until(DEADLINE, || topic.stats().total.in_flight == 1).await;
    assert!(waiting, "{:?}", topic.stats().total);
    let report = bus.shutdown(Duration::from_millis(20)).await;
    assert_eq!(
        report.not_delivered(),
        2,
        "the interrupted delivery and the queued one"
    );
    let read: Vec<u32> = within("the stream's end after a cut-short shutdown", async {
        events.map(|e| *e.payload()).collect::<Vec<_>>().await
    })
    .await;
    assert_eq!(read, [0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_member_that_leaves_mid_delivery_ends_its_stream() {
    let bus = Bus::new();
    let topic = bus.topic::<u32>("jobs").create().unwrap();
    let (handler, mut leaving_events) = flowgate::flow::channel(1).unwrap();
    let leaving = topic.subscribe("a", handler).group("g").start().unwrap();
    let _staying = topic
        .subscribe("b", |_: Event<u32>| async { Ok(()) })
        .group("g")
        .start()
        .unwrap();
    for n in 0..2 {
        topic.publish(Event::new("job", n).unwrap()).await.unwrap();
    }
    // The one partition is a's: its buffer holds job 0, job 1's delivery waits for room.
    let waiting = wait_until(DEADLINE, || topic.stats().total.in_flight == 1).await;
    assert!(waiting, "{:?}", topic.stats().total);
    let leave = tokio::spawn(async move { leaving.unsubscribe().await });
    let mut read = Vec::new();
    while let Some(event) = within("a's stream to end", leaving_events.recv()).await {
        read.push(*event.payload());
    }
    assert_eq!(read, [0, 1], "a finishes what it had, then its stream ends");
    assert!(within("a's leave", leave).await.unwrap().is_empty());
}
