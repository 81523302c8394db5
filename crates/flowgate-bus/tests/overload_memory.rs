//! Memory stays bounded under overload: a producer ten times faster than the handlers, for
//! ten seconds (on tokio's paused clock), never makes the topic hold more than its configured
//! buffers, under every backpressure policy, and every publish is accounted for.
#![cfg(not(loom))]

use std::time::Duration;

use flowgate::bus::{Backpressure, Bus};
use flowgate::{Event, RetryPolicy};

const PARTITIONS: u32 = 4;
const CAPACITY: usize = 16;
const CONCURRENCY: usize = 2;
const SUBSCRIBERS: usize = 2;

async fn overload(policy: Backpressure, at_most_once: bool) {
    let bus = Bus::new();
    let mut builder = bus
        .topic::<u64>("load")
        .partitions(PARTITIONS)
        .capacity(CAPACITY)
        .concurrency(CONCURRENCY)
        .backpressure(policy);
    builder = if at_most_once {
        builder.at_most_once()
    } else {
        builder.at_least_once(RetryPolicy::never())
    };
    let topic = builder.create().unwrap();
    for s in 0..SUBSCRIBERS {
        topic
            .subscribe(format!("s{s}"), |_: Event<u64>| async {
                // Handlers take 10 ms; all of them together handle
                // PARTITIONS * CONCURRENCY / 10 ms = 800 events per second per subscriber.
                tokio::time::sleep(Duration::from_millis(10)).await;
                Ok(())
            })
            .start()
            .unwrap();
    }
    // The producer offers 8,000 events per second: ten times what the handlers take.
    let (mut offered, mut refused, mut peak_depth, mut peak_in_flight) = (0u64, 0u64, 0, 0);
    let end = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut tick = tokio::time::interval(Duration::from_micros(125));
    while tokio::time::Instant::now() < end {
        tick.tick().await;
        offered += 1;
        let event = Event::new("e", offered)
            .unwrap()
            .with_key(format!("k{}", offered % 64));
        if topic.publish(event).await.is_err() {
            refused += 1;
        }
        let stats = topic.stats();
        peak_depth = peak_depth.max(stats.depth);
        peak_in_flight = peak_in_flight.max(stats.in_flight);
        assert!(
            stats.depth <= PARTITIONS as usize * CAPACITY * SUBSCRIBERS,
            "{stats:?}"
        );
        assert!(
            stats.in_flight <= PARTITIONS as usize * CONCURRENCY * SUBSCRIBERS,
            "{stats:?}"
        );
    }
    let report = bus.shutdown(Duration::from_secs(3600)).await;
    let stats = topic.stats().total;
    assert_eq!(
        stats.published + stats.rejected,
        offered,
        "{policy:?}: every publish counted"
    );
    assert_eq!(stats.rejected, refused);
    assert_eq!(report.not_delivered(), 0, "the drain had time");
    // Each accepted event reached each subscriber once, or was dropped (counted).
    assert_eq!(
        stats.processed + stats.dropped,
        stats.published * SUBSCRIBERS as u64,
        "{policy:?}: {stats:?}"
    );
    assert!(peak_depth > 0 && peak_in_flight > 0, "the topic was loaded");
    println!(
        "{policy:?}: offered {offered}, accepted {}, refused {refused}, dropped {}, peak depth {peak_depth}, peak in flight {peak_in_flight}",
        stats.published, stats.dropped
    );
}

#[tokio::test(start_paused = true)]
async fn block_with_a_bounded_wait() {
    overload(
        Backpressure::Block {
            max_wait: Some(Duration::from_millis(1)),
        },
        false,
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn block_without_a_time_limit() {
    overload(Backpressure::Block { max_wait: None }, false).await;
}

#[tokio::test(start_paused = true)]
async fn reject() {
    overload(Backpressure::Reject, false).await;
}

#[tokio::test(start_paused = true)]
async fn drop_oldest() {
    overload(Backpressure::DropOldest, true).await;
}

#[tokio::test(start_paused = true)]
async fn drop_newest() {
    overload(Backpressure::DropNewest, true).await;
}
