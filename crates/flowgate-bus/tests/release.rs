//! A member that left is let go: once its `unsubscribe` returned and the partitions it had
//! are idle, nothing in the bus keeps its handler (and what the handler captured) alive, even
//! though the lane workers that delivered to it live on for the members that stay.
#![cfg(not(loom))]

use std::sync::Arc;
use std::time::Duration;

use flowgate::bus::Bus;
use flowgate::{Event, HandlerResult};
use flowgate_testkit::wait::wait_until;

/// A no-op handler that owns `token` for as long as the handler lives.
fn holding(
    token: Arc<()>,
) -> impl Fn(Event<u32>) -> std::future::Ready<HandlerResult> + Send + Sync + 'static {
    move |_| {
        std::hint::black_box(&token);
        std::future::ready(Ok(()))
    }
}

#[tokio::test(start_paused = true)]
async fn a_member_that_left_is_dropped_by_the_workers_that_served_it() {
    let bus = Bus::new();
    let topic = bus.topic::<u32>("t").partitions(4).create().unwrap();
    // What each handler captured: its strong count says whether the bus still holds the handler.
    let leaving = Arc::new(());
    let staying = Arc::new(());
    let a = topic
        .subscribe("a", holding(Arc::clone(&leaving)))
        .group("g")
        .start()
        .unwrap();
    let _b = topic
        .subscribe("b", holding(Arc::clone(&staying)))
        .group("g")
        .start()
        .unwrap();
    // Keys over every partition, so that both members' lanes deliver.
    for n in 0..32u32 {
        let event = Event::new("e", n).unwrap().with_key(format!("key-{n}"));
        topic.publish(event).await.unwrap();
    }
    assert!(
        wait_until(Duration::from_secs(5), || topic.stats().total.processed
            == 32)
        .await,
        "all 32 events handled"
    );
    let handed_back = a.unsubscribe().await;
    assert!(handed_back.is_empty(), "nothing was queued when `a` left");
    assert!(
        wait_until(Duration::from_secs(5), || Arc::strong_count(&leaving) == 1).await,
        "the handler of the member that left is still held ({} references)",
        Arc::strong_count(&leaving)
    );
    assert!(
        Arc::strong_count(&staying) > 1,
        "the member that stays keeps its handler"
    );
}
