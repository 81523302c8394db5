//! A lane worker that parked is woken by the next publish, whatever state tokio's cooperative
//! budget was in when it parked.
//!
//! A worker's deliveries run inside its task, so a handler that awaits tokio resources spends
//! the worker's budget. When a delivery ends with the budget used up and the worker parks,
//! `tokio::select!` returns `Pending` before polling any branch; the worker's wait must still end
//! when a publish takes the waker it left in the lane (a wait that only counted its own polls
//! missed that publish, and the lane then had no waker for any later one).
#![cfg(not(loom))]

use std::time::Duration;

use flowgate::bus::Bus;
use flowgate::{Event, HandlerResult};
use flowgate_testkit::wait::wait_until;

/// A handler that spends `units` of its task's budget (yielding whenever it runs out).
async fn spend(units: u32) -> HandlerResult {
    for _ in 0..units {
        tokio::task::consume_budget().await;
    }
    Ok(())
}

async fn woken_after_spending(concurrency: usize) {
    let bus = Bus::new();
    let topic = bus
        .topic::<u32>("t")
        .partitions(1)
        .concurrency(concurrency)
        .create()
        .unwrap();
    let _subscriber = topic
        .subscribe("s", |event: Event<u32>| spend(*event.payload()))
        .start()
        .unwrap();
    // Each event spends a different amount. A delivery starts with the worker task's budget
    // full, so the one that spends exactly a budget's worth (128 units in tokio 1.x; 256 is two)
    // ends with it spent, and the worker parks right then.
    let mut published = 0;
    for units in 100..=260u32 {
        topic
            .publish(Event::new("e", units).unwrap())
            .await
            .unwrap();
        published += 1;
        // Let the worker run (and park) before the next publish.
        tokio::task::yield_now().await;
        assert!(
            wait_until(Duration::from_secs(5), || topic.stats().total.processed
                == published)
            .await,
            "event {published} (spending {units} budget units) was never delivered: \
             the parked worker missed its wake-up ({:?})",
            topic.stats().total
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_worker_running_deliveries_concurrently_is_woken_after_its_budget_ran_out() {
    woken_after_spending(4).await;
}

#[tokio::test(start_paused = true)]
async fn a_worker_delivering_one_at_a_time_is_woken_after_its_budget_ran_out() {
    woken_after_spending(1).await;
}
