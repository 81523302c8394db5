//! A subscriber's memory is its buffer: a subscription parked at an old position (never polled
//! again) holds at most one log segment per cursor, so it does not keep alive every segment
//! appended after it while retention removes the events.
#![cfg(not(loom))]

mod common;
#[path = "common/counting.rs"]
mod counting;

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use common::ev;
use counting::growth_of_100k_appends;
use flowgate_store::{ExpectedVersion, Start, Store, Subscription, Target};

/// Polls `sub` once, expecting an event at once.
fn poll_one(sub: &mut Subscription<u64>) -> u64 {
    let mut next = pin!(sub.next());
    match next.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(Some(Ok(recorded))) => recorded.position(),
        other => panic!("expected an event, got {other:?}"),
    }
}

#[test]
fn a_parked_subscriber_does_not_pin_the_log() {
    let store = Store::<u64>::builder()
        .max_events_per_stream(10)
        .build()
        .unwrap();
    let mut all = store
        .subscribe(Target::All)
        .start(Start::Beginning)
        .buffer(1)
        .open()
        .unwrap();
    let mut category = store
        .subscribe(Target::category("busy"))
        .start(Start::Beginning)
        .buffer(1)
        .open()
        .unwrap();
    for i in 0..2 {
        store.append("busy-1", ExpectedVersion::Any, ev(i)).unwrap();
    }
    // Each holds its place in the first segments, then is never polled again.
    assert_eq!(poll_one(&mut all), 0);
    assert_eq!(poll_one(&mut category), 0);
    let growth = growth_of_100k_appends(&store);
    assert!(
        growth < 256 * 1024,
        "100k appends with two parked subscribers grew memory by {growth} bytes"
    );
    drop((all, category));
}
