//! A stream subscription opened before its stream exists follows the first stream created
//! under that name after it opened, even when that stream is evicted (and the name created
//! again) before the subscription is polled: it then gets `StoreError::StreamEvicted`, never a
//! silent jump to the new incarnation's events.
#![cfg(not(loom))]

mod common;

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use common::ev;
use flowgate_store::{
    ExpectedVersion, Start, Store, StoreError, StreamLimit, Subscription, Target,
};

/// Everything the subscription has ready now, as (version, payload) or signals; `None` at its
/// end.
fn ready(sub: &mut Subscription<u64>) -> Vec<Option<Result<(u64, u64), StoreError>>> {
    let mut out = Vec::new();
    loop {
        let mut next = pin!(sub.next());
        match next.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(Some(item)) => {
                out.push(Some(item.map(|r| (r.version(), *r.event().payload()))));
            }
            Poll::Ready(None) => {
                out.push(None);
                return out;
            }
            Poll::Pending => return out,
        }
    }
}

#[test]
fn an_incarnation_evicted_before_the_first_poll_is_reported() {
    let store = Store::<u64>::builder()
        .max_streams(1, StreamLimit::EvictLeastRecent)
        .build()
        .unwrap();
    let mut early = store
        .subscribe(Target::stream("order-1"))
        .start(Start::Beginning)
        .open()
        .unwrap();
    for i in 0..5 {
        store
            .append("order-1", ExpectedVersion::Any, ev(i))
            .unwrap();
    }
    store
        .append("order-2", ExpectedVersion::Any, ev(100))
        .unwrap(); // evicts order-1
    store
        .append("order-1", ExpectedVersion::Any, ev(200))
        .unwrap(); // a new order-1, version 0
    assert_eq!(
        ready(&mut early),
        [
            Some(Err(StoreError::StreamEvicted {
                stream: "order-1".into()
            })),
            None
        ]
    );
    // A subscription opened now follows the new stream.
    let mut late = store.subscribe(Target::stream("order-1")).open().unwrap();
    assert_eq!(ready(&mut late), [Some(Ok((0, 200)))]);
}

#[test]
fn subscriptions_waiting_for_one_name_all_get_its_stream() {
    let store = Store::<u64>::new();
    let mut subs: Vec<Subscription<u64>> = (0..3)
        .map(|_| store.subscribe(Target::stream("job-7")).open().unwrap())
        .collect();
    drop(subs.pop()); // one gives up before the stream exists
    store
        .append("job-7", ExpectedVersion::NoStream, ev(1))
        .unwrap();
    for sub in &mut subs {
        assert_eq!(ready(sub), [Some(Ok((0, 1)))]);
    }
    // A stream that was never created leaves nothing behind once its subscription is gone.
    drop(store.subscribe(Target::stream("job-8")).open().unwrap());
    store
        .append("job-8", ExpectedVersion::NoStream, ev(2))
        .unwrap();
    assert_eq!(store.stream_version("job-8").unwrap(), Some(0));
}
