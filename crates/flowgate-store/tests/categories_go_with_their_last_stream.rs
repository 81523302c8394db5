//! A category is held only while it has a stream or a subscription: under `max_streams`
//! eviction the number of categories stays bounded however many category names pass through,
//! a category subscription keeps its category (and sees the streams created in it later), and
//! subscribing to a category name leaves nothing behind once the subscription is dropped.
#![cfg(not(loom))]

mod common;

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use common::ev;
use flowgate_store::{ExpectedVersion, Store, StoreError, StreamLimit, Subscription, Target};

/// Everything the subscription has ready now, as (stream, payload) or signals.
fn ready(sub: &mut Subscription<u64>) -> Vec<Result<(String, u64), StoreError>> {
    let mut out = Vec::new();
    loop {
        let mut next = pin!(sub.next());
        match next.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(Some(item)) => {
                out.push(item.map(|r| (r.stream().to_owned(), *r.event().payload())));
            }
            _ => return out,
        }
    }
}

#[test]
fn evicting_streams_removes_their_categories() {
    let store = Store::<u64>::builder()
        .max_streams(10, StreamLimit::EvictLeastRecent)
        .build()
        .unwrap();
    for i in 0..5_000 {
        let stream = format!("tenant{i}-1");
        store.append(&stream, ExpectedVersion::Any, ev(i)).unwrap();
    }
    let stats = store.stats();
    assert_eq!(stats.streams, 10);
    assert_eq!(stats.categories, 10, "one per stream held");
}

#[test]
fn a_category_subscription_keeps_its_category_across_evictions() {
    let store = Store::<u64>::builder()
        .max_streams(1, StreamLimit::EvictLeastRecent)
        .build()
        .unwrap();
    let mut sub = store.subscribe(Target::category("order")).open().unwrap();
    store
        .append("order-1", ExpectedVersion::Any, ev(1))
        .unwrap();
    store.append("user-1", ExpectedVersion::Any, ev(2)).unwrap(); // evicts order-1
    store
        .append("order-2", ExpectedVersion::Any, ev(3))
        .unwrap(); // evicts user-1
    let items = ready(&mut sub);
    // order-1's event was removed before the subscription read it: signalled, then order-2.
    assert_eq!(items.len(), 2, "{items:?}");
    assert!(
        matches!(items[0], Err(StoreError::Truncated { .. })),
        "{items:?}"
    );
    assert_eq!(items[1], Ok(("order-2".to_owned(), 3)));
    assert_eq!(store.stats().categories, 1, "user went with its stream");

    // Subscribing to a name creates nothing that outlives the subscription.
    drop(store.subscribe(Target::category("ghost")).open().unwrap());
    assert_eq!(store.stats().categories, 1);
    drop(sub);
    store.append("user-2", ExpectedVersion::Any, ev(4)).unwrap(); // evicts order-2
    assert_eq!(
        store.stats().categories,
        1,
        "order went with its last stream and subscriber"
    );
    assert_eq!(store.read_category("order", 0, 10).unwrap().events.len(), 0);
    assert_eq!(store.read_category("user", 0, 10).unwrap().events.len(), 1);
}
