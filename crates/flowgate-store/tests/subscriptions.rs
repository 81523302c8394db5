//! Subscriptions catch up from history and continue live with no gap and no duplicate, however
//! fast appends arrive and however small their buffer; a slow subscriber is never dropped and
//! never lags; a stream subscription may start before its stream exists; dropping a `next()`
//! future loses nothing.
#![cfg(not(loom))]

mod common;

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use common::{ev, within};
use flowgate_store::{ExpectedVersion, Start, Store, Target};

/// A writer thread appends `total` events to two categories as fast as it can while
/// subscriptions started at different points read them with tiny buffers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catch_up_then_live_has_no_gap_or_duplicate_under_fast_appends() {
    const TOTAL: u64 = 20_000;
    let store = Store::<u64>::new();
    for i in 0..1_000 {
        store
            .append(&format!("a-{}", i % 10), ExpectedVersion::Any, ev(i))
            .unwrap();
    }
    let writer = {
        let store = store.clone();
        std::thread::spawn(move || {
            for i in 1_000..TOTAL {
                let stream = if i % 2 == 0 {
                    format!("a-{}", i % 10)
                } else {
                    format!("b-{}", i % 10)
                };
                store.append(&stream, ExpectedVersion::Any, ev(i)).unwrap();
            }
        })
    };
    let mut readers = Vec::new();
    for (start, buffer) in [(0, 1), (500, 3), (999, 256), (5_000, 2)] {
        let mut all = store
            .subscribe(Target::All)
            .start(Start::At(start))
            .buffer(buffer)
            .open()
            .unwrap();
        readers.push(tokio::spawn(async move {
            for expected in start..TOTAL {
                let got = all.next().await.unwrap().unwrap();
                assert_eq!(
                    got.position(),
                    expected,
                    "all from {start}, buffer {buffer}"
                );
                assert_eq!(*got.event().payload(), expected);
            }
        }));
        let mut a = store
            .subscribe(Target::category("a"))
            .start(Start::At(start))
            .buffer(buffer)
            .open()
            .unwrap();
        readers.push(tokio::spawn(async move {
            let expected = (start..TOTAL).filter(|i| *i < 1_000 || i % 2 == 0);
            for expected in expected {
                let got = a.next().await.unwrap().unwrap();
                assert_eq!(
                    got.position(),
                    expected,
                    "category a from {start}, buffer {buffer}"
                );
            }
        }));
    }
    for reader in readers {
        within("every subscriber to see every event", reader)
            .await
            .unwrap();
    }
    writer.join().unwrap();
}

#[tokio::test]
async fn a_slow_subscriber_is_never_dropped_and_catches_up_from_the_store() {
    let store = Store::<u64>::new();
    let mut slow = store.subscribe(Target::All).buffer(4).open().unwrap();
    // It reads one event, then falls 10,000 events behind its buffer of 4.
    store.append("s-1", ExpectedVersion::Any, ev(0)).unwrap();
    assert_eq!(
        within("first", slow.next())
            .await
            .unwrap()
            .unwrap()
            .position(),
        0
    );
    for i in 1..10_000 {
        store.append("s-1", ExpectedVersion::Any, ev(i)).unwrap();
    }
    for expected in 1..10_000 {
        let got = within("next", slow.next())
            .await
            .unwrap()
            .expect("never a lag error");
        assert_eq!(got.position(), expected);
    }
    assert!(format!("{slow:?}").contains("buffered: 0"), "{slow:?}");
}

#[tokio::test]
async fn start_at_the_end_sees_only_later_appends() {
    let store = Store::<u64>::new();
    for i in 0..5 {
        store.append("c-1", ExpectedVersion::Any, ev(i)).unwrap();
    }
    let mut all = store
        .subscribe(Target::All)
        .start(Start::End)
        .open()
        .unwrap();
    let mut cat = store
        .subscribe(Target::category("c"))
        .start(Start::End)
        .open()
        .unwrap();
    let mut stream = store
        .subscribe(Target::stream("c-1"))
        .start(Start::End)
        .open()
        .unwrap();
    store.append("c-1", ExpectedVersion::Any, ev(5)).unwrap();
    assert_eq!(
        within("all", all.next()).await.unwrap().unwrap().position(),
        5
    );
    assert_eq!(
        within("category", cat.next())
            .await
            .unwrap()
            .unwrap()
            .position(),
        5
    );
    assert_eq!(
        within("stream", stream.next())
            .await
            .unwrap()
            .unwrap()
            .version(),
        5
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_subscription_can_wait_for_its_stream_to_be_created() {
    let store = Store::<u64>::new();
    let mut sub = store.subscribe(Target::stream("later-1")).open().unwrap();
    let reader = tokio::spawn(async move {
        let mut versions = Vec::new();
        for _ in 0..3 {
            versions.push(sub.next().await.unwrap().unwrap().version());
        }
        versions
    });
    tokio::task::yield_now().await;
    store
        .append("other-1", ExpectedVersion::Any, ev(0))
        .unwrap();
    for i in 0..3 {
        store
            .append("later-1", ExpectedVersion::Any, ev(i))
            .unwrap();
    }
    assert_eq!(
        within("the stream's events", reader).await.unwrap(),
        [0, 1, 2]
    );
}

#[tokio::test]
async fn dropping_a_pending_next_loses_nothing() {
    let store = Store::<u64>::new();
    let mut sub = store.subscribe(Target::category("x")).open().unwrap();
    {
        let mut next = pin!(sub.next());
        let mut cx = Context::from_waker(Waker::noop());
        assert!(next.as_mut().poll(&mut cx).is_pending());
    }
    store.append("x-1", ExpectedVersion::Any, ev(7)).unwrap();
    let got = within("the event", sub.next()).await.unwrap().unwrap();
    assert_eq!(*got.event().payload(), 7);
    // And one taken from the buffer is handed out exactly once.
    store
        .append_batch("x-1", ExpectedVersion::Any, [ev(8), ev(9)])
        .unwrap();
    assert_eq!(
        *within("8", sub.next())
            .await
            .unwrap()
            .unwrap()
            .event()
            .payload(),
        8
    );
    let mut next = pin!(sub.next());
    let mut cx = Context::from_waker(Waker::noop());
    let Poll::Ready(Some(Ok(nine))) = next.as_mut().poll(&mut cx) else {
        panic!("9 was buffered");
    };
    assert_eq!(*nine.event().payload(), 9);
}

#[test]
fn the_subscription_count_follows_open_and_drop() {
    let store = Store::<u64>::new();
    let a = store.subscribe(Target::All).open().unwrap();
    let b = store.subscribe(Target::stream("a-1")).open().unwrap();
    assert_eq!(store.stats().subscriptions, 2);
    drop(a);
    drop(b);
    assert_eq!(store.stats().subscriptions, 0);
}

/// Subscriptions are `futures_core::Stream`s.
#[tokio::test]
async fn a_subscription_is_a_stream() {
    use futures_core::Stream;
    use std::future::poll_fn;
    let store = Store::<u64>::new();
    store.append("a-1", ExpectedVersion::Any, ev(3)).unwrap();
    let mut sub = pin!(store.subscribe(Target::All).open().unwrap());
    let item = poll_fn(|cx| sub.as_mut().poll_next(cx)).await;
    assert_eq!(*item.unwrap().unwrap().event().payload(), 3);
}
