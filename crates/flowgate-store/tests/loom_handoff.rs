//! Loom model of the append/subscribe handoff: the real `Store` and `Subscription` (segmented
//! logs, the commit lock, the waker handshake in `notify.rs`) with the sync shim's loom types.
//! A subscription waiting at the head is always woken by a concurrent append and sees it once;
//! a subscription that catches up while appends land sees every event once, in position
//! order, across a segment boundary (segments hold 2 slots under loom); and an event that
//! retention removes while a subscription reads is either seen or reported as truncated,
//! never skipped in silence.
//!
//! Run with `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test --release --target-dir target/loom -p flowgate-store --test loom_handoff`.
#![cfg(loom)]

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Waker};

use loom::thread;

use flowgate_core::Event;
use flowgate_store::{ExpectedVersion, Start, Store, StoreError, Subscription, Target};

fn event(payload: u32) -> Event<u32> {
    Event::new("e", payload).unwrap()
}

/// The next event's (position, payload), waiting (loom-parked) for it if needed.
fn next(sub: &mut Subscription<u32>) -> (u64, u32) {
    let recorded = loom::future::block_on(sub.next())
        .expect("a subscription does not end")
        .expect("no retention in this model");
    (recorded.position(), *recorded.event().payload())
}

/// Whether the subscription has nothing more right now.
fn is_drained(sub: &mut Subscription<u32>) -> bool {
    let mut next = pin!(sub.next());
    next.as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
        .is_pending()
}

#[test]
fn a_subscription_waiting_at_the_head_is_woken_by_a_concurrent_append() {
    let ev = event(7);
    loom::model(move || {
        let store = Store::<u32>::new();
        let mut sub = store
            .subscribe(Target::All)
            .start(Start::End)
            .open()
            .unwrap();
        let appender = {
            let (store, ev) = (store.clone(), ev.clone());
            thread::spawn(move || {
                store.append("a-1", ExpectedVersion::Any, ev).unwrap();
            })
        };
        // If the wake-up were lost, loom reports this block_on as a deadlock.
        assert_eq!(next(&mut sub), (0, 7));
        appender.join().unwrap();
        assert!(is_drained(&mut sub), "the event was seen twice");
    });
}

#[test]
fn catching_up_while_appends_land_sees_each_event_once_in_order() {
    let events: Vec<Event<u32>> = (0..3).map(event).collect();
    loom::model(move || {
        let store = Store::<u32>::new();
        store
            .append("a-1", ExpectedVersion::Any, events[0].clone())
            .unwrap();
        // Buffer of one: every event is a separate read, interleaved with the appender.
        let mut sub = store
            .subscribe(Target::category("a"))
            .start(Start::Beginning)
            .buffer(1)
            .open()
            .unwrap();
        let appender = {
            let (store, rest) = (store.clone(), events[1..].to_vec());
            thread::spawn(move || {
                for (i, ev) in rest.into_iter().enumerate() {
                    let stream = if i == 0 { "a-2" } else { "a-1" };
                    store.append(stream, ExpectedVersion::Any, ev).unwrap();
                }
            })
        };
        let seen: Vec<(u64, u32)> = (0..3).map(|_| next(&mut sub)).collect();
        assert_eq!(seen, [(0, 0), (1, 1), (2, 2)]);
        appender.join().unwrap();
        assert!(is_drained(&mut sub), "an event was seen twice");
    });
}

#[test]
fn a_stream_subscription_is_woken_by_the_append_that_creates_its_stream() {
    let ev = event(3);
    loom::model(move || {
        let store = Store::<u32>::new();
        let mut sub = store.subscribe(Target::stream("a-1")).open().unwrap();
        let appender = {
            let (store, ev) = (store.clone(), ev.clone());
            thread::spawn(move || {
                store.append("a-1", ExpectedVersion::NoStream, ev).unwrap();
            })
        };
        let recorded = loom::future::block_on(sub.next()).unwrap().unwrap();
        assert_eq!((recorded.version(), *recorded.event().payload()), (0, 3));
        appender.join().unwrap();
    });
}

#[test]
fn an_event_removed_while_a_subscription_reads_is_seen_or_reported() {
    let events: Vec<Event<u32>> = (0..2).map(event).collect();
    loom::model(move || {
        let store = Store::<u32>::builder()
            .max_events_per_stream(1)
            .build()
            .unwrap();
        let mut sub = store.subscribe(Target::All).buffer(1).open().unwrap();
        let appender = {
            let (store, events) = (store.clone(), events.clone());
            thread::spawn(move || {
                for ev in events {
                    // The second append removes the first event.
                    store.append("a-1", ExpectedVersion::Any, ev).unwrap();
                }
            })
        };
        let first = loom::future::block_on(sub.next()).unwrap();
        match first {
            Ok(recorded) => assert_eq!(recorded.position(), 0),
            Err(signal) => assert_eq!(
                signal,
                StoreError::Truncated {
                    missed_from: 0,
                    resume_at: 1
                }
            ),
        }
        assert_eq!(next(&mut sub), (1, 1));
        appender.join().unwrap();
        assert!(is_drained(&mut sub));
    });
}
