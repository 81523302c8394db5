//! A `payload_size` function that panics on an event of a batch changes nothing: the append
//! returns `StoreError::PayloadSizePanicked`, no event of the batch is written, the stream's
//! version is unchanged, and later appends get the versions and positions they would have had.
#![cfg(not(loom))]

mod common;

use common::ev;
use flowgate_store::{ExpectedVersion, Store, StoreError};

#[test]
fn a_panicking_payload_size_leaves_the_store_unchanged() {
    let store = Store::<u64>::builder()
        .payload_size(|payload: &u64| {
            assert!(*payload != 666, "cannot size 666");
            8
        })
        .build()
        .unwrap();
    store.append("a-1", ExpectedVersion::Any, ev(0)).unwrap();
    let err = store
        .append_batch(
            "a-1",
            ExpectedVersion::Exact(0),
            vec![ev(1), ev(666), ev(2)],
        )
        .unwrap_err();
    assert_eq!(
        err,
        StoreError::PayloadSizePanicked {
            stream: "a-1".into(),
            index: 1
        }
    );
    assert!(!err.is_retryable());
    assert_eq!(store.stream_version("a-1").unwrap(), Some(0));
    assert_eq!(store.head_position(), 1);
    let stats = store.stats();
    assert_eq!((stats.events, stats.bytes), (1, Some(8)));

    let next = store
        .append("a-1", ExpectedVersion::Exact(0), ev(3))
        .unwrap();
    assert_eq!((next.first_version, next.first_position), (1, 1));
    let all: Vec<(u64, u64, u64)> = store
        .read_all(0, 100)
        .unwrap()
        .events
        .iter()
        .map(|e| (e.position(), e.version(), *e.event().payload()))
        .collect();
    assert_eq!(all, [(0, 0, 0), (1, 1, 3)]);
    let stream = store.read_stream_forward("a-1", 0, 100).unwrap();
    assert_eq!(stream.events.len(), 2);
    assert!(stream.is_end);
}
