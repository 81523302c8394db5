//! A `StoreError::Truncated` signal only ever covers removed events the subscription would
//! have received: a category subscription that starts ahead of the head is not told about
//! events removed below its start, and no signal has `missed_from >= resume_at`.
#![cfg(not(loom))]

mod common;

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use common::ev;
use flowgate_store::{ExpectedVersion, Start, Store, StoreError, Subscription, Target};

/// Everything the subscription has ready now, as positions or signals.
fn ready(sub: &mut Subscription<u64>) -> Vec<Result<u64, StoreError>> {
    let mut out = Vec::new();
    loop {
        let mut next = pin!(sub.next());
        match next.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(Some(item)) => out.push(item.map(|r| r.position())),
            _ => return out,
        }
    }
}

#[test]
fn a_category_subscription_starting_ahead_of_the_head_gets_no_spurious_signal() {
    let store = Store::<u64>::builder()
        .max_events_per_stream(1)
        .build()
        .unwrap();
    let mut sub = store
        .subscribe(Target::category("c"))
        .start(Start::At(1_000))
        .open()
        .unwrap();
    for i in 0..1_001 {
        store.append("c-1", ExpectedVersion::Any, ev(i)).unwrap();
    }
    assert_eq!(ready(&mut sub), [Ok(1_000)]);
}

#[test]
fn signals_always_cover_a_non_empty_range_at_or_after_the_start() {
    for start in [0, 1, 127, 128, 129, 500, 1_000, 1_500] {
        let store = Store::<u64>::builder()
            .max_events_per_stream(1)
            .build()
            .unwrap();
        let mut subs: Vec<Subscription<u64>> = [Target::All, Target::category("c")]
            .into_iter()
            .map(|target| {
                store
                    .subscribe(target)
                    .start(Start::At(start))
                    .buffer(3)
                    .open()
                    .unwrap()
            })
            .collect();
        for i in 0..1_200 {
            let stream = if i % 7 == 0 { "c-2" } else { "c-1" };
            store.append(stream, ExpectedVersion::Any, ev(i)).unwrap();
        }
        let survivors: Vec<u64> = store
            .read_all(0, 2_000)
            .unwrap()
            .events
            .iter()
            .map(flowgate_store::Recorded::position)
            .filter(|&position| position >= start)
            .collect();
        for sub in &mut subs {
            let mut at = start;
            let mut delivered = Vec::new();
            for item in ready(sub) {
                match item {
                    Ok(position) => {
                        assert!(position >= at, "start {start}: {position} below {at}");
                        delivered.push(position);
                        at = position + 1;
                    }
                    Err(StoreError::Truncated {
                        missed_from,
                        resume_at,
                    }) => {
                        assert!(
                            at <= missed_from && missed_from < resume_at,
                            "start {start}: signal {missed_from}..{resume_at} at {at}"
                        );
                        at = resume_at;
                    }
                    Err(other) => panic!("{other}"),
                }
            }
            // Both targets hold every event, so each survivor at or after the start arrives.
            assert_eq!(delivered, survivors, "start {start}");
        }
    }
}
