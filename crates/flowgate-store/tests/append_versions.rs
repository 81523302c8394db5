//! Appends with expected versions: each expectation accepts and refuses exactly what it says,
//! a refusal carries the actual version and appends nothing, a batch is all or none with
//! consecutive versions and positions, and concurrent appenders to one stream never both win a
//! version, lose one, or leave a gap.
#![cfg(not(loom))]

mod common;

use std::sync::{Arc, Barrier};

use common::ev;
use flowgate_store::{ExpectedVersion, Store, StoreError};

#[test]
fn each_expected_version_accepts_and_refuses_as_documented() {
    let store = Store::<u64>::new();
    let refused = |r: Result<_, StoreError>| match r {
        Err(StoreError::WrongExpectedVersion { actual, .. }) => actual,
        other => panic!("expected a version conflict, got {other:?}"),
    };
    assert_eq!(
        refused(store.append("a-1", ExpectedVersion::StreamExists, ev(0))),
        None
    );
    assert_eq!(
        refused(store.append("a-1", ExpectedVersion::Exact(0), ev(0))),
        None
    );
    assert_eq!(
        store.stats().streams,
        0,
        "a refused append creates no stream"
    );

    store
        .append("a-1", ExpectedVersion::NoStream, ev(0))
        .unwrap();
    assert_eq!(
        refused(store.append("a-1", ExpectedVersion::NoStream, ev(1))),
        Some(0)
    );
    assert_eq!(
        refused(store.append("a-1", ExpectedVersion::Exact(5), ev(1))),
        Some(0)
    );
    store
        .append("a-1", ExpectedVersion::Exact(0), ev(1))
        .unwrap();
    store
        .append("a-1", ExpectedVersion::StreamExists, ev(2))
        .unwrap();
    let last = store.append("a-1", ExpectedVersion::Any, ev(3)).unwrap();
    assert_eq!(last.last_version, 3);
    store.append("a-2", ExpectedVersion::Any, ev(4)).unwrap();

    let page = store.read_stream_forward("a-1", 0, 100).unwrap();
    let payloads: Vec<u64> = page.events.iter().map(|e| *e.event().payload()).collect();
    assert_eq!(payloads, [0, 1, 2, 3], "refused appends wrote nothing");
    assert_eq!(store.stats().version_conflicts, 4);
}

#[test]
fn a_batch_gets_consecutive_versions_and_positions() {
    let store = Store::<u64>::new();
    store.append("a-1", ExpectedVersion::Any, ev(0)).unwrap();
    store.append("b-1", ExpectedVersion::Any, ev(0)).unwrap();
    let appended = store
        .append_batch("a-1", ExpectedVersion::Exact(0), (1..=3).map(ev))
        .unwrap();
    assert_eq!((appended.first_version, appended.last_version), (1, 3));
    assert_eq!((appended.first_position, appended.last_position), (2, 4));
    // A refused batch writes none of its events.
    let err = store
        .append_batch("a-1", ExpectedVersion::Exact(0), (10..20).map(ev))
        .unwrap_err();
    assert!(matches!(
        err,
        StoreError::WrongExpectedVersion {
            actual: Some(3),
            ..
        }
    ));
    assert_eq!(store.head_position(), 5);
}

/// Many threads race to append to one stream, each reading the version and appending with
/// `Exact`, retrying on conflict. Every thread's events land exactly once; the stream's
/// versions and the store's positions have no gap.
#[test]
fn concurrent_appenders_to_one_stream_each_win_distinct_versions() {
    const THREADS: u64 = 4;
    const PER_THREAD: u64 = 300;
    let store = Store::<u64>::new();
    let barrier = Arc::new(Barrier::new(THREADS as usize));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (store, barrier) = (store.clone(), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                let mut conflicts = 0;
                for i in 0..PER_THREAD {
                    loop {
                        let expected = match store.stream_version("race-1").unwrap() {
                            Some(v) => ExpectedVersion::Exact(v),
                            None => ExpectedVersion::NoStream,
                        };
                        match store.append("race-1", expected, ev(t * PER_THREAD + i)) {
                            Ok(_) => break,
                            Err(StoreError::WrongExpectedVersion { actual, .. }) => {
                                assert_ne!(
                                    expected,
                                    actual
                                        .map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact),
                                    "refused although the version matched"
                                );
                                conflicts += 1;
                            }
                            Err(other) => panic!("unexpected error {other}"),
                        }
                    }
                }
                conflicts
            })
        })
        .collect();
    let conflicts: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();

    let page = store.read_stream_forward("race-1", 0, usize::MAX).unwrap();
    assert_eq!(page.events.len() as u64, THREADS * PER_THREAD);
    let mut payloads: Vec<u64> = page.events.iter().map(|e| *e.event().payload()).collect();
    for (i, e) in page.events.iter().enumerate() {
        assert_eq!(e.version(), i as u64, "versions have a gap");
        assert_eq!(e.position(), i as u64, "positions have a gap");
    }
    payloads.sort_unstable();
    assert_eq!(
        payloads,
        (0..THREADS * PER_THREAD).collect::<Vec<_>>(),
        "lost or doubled"
    );
    assert_eq!(store.stats().version_conflicts, conflicts);
}

/// Appenders to different streams interleave, yet global positions stay gapless and each
/// stream's versions stay gapless and in position order.
#[test]
fn concurrent_appenders_to_many_streams_leave_no_gap() {
    let store = Store::<u64>::new();
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..500_u64 {
                    let stream = format!("s{}-{}", t % 2, i % 7);
                    store.append(&stream, ExpectedVersion::Any, ev(i)).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let all = store.read_all(0, usize::MAX).unwrap();
    assert_eq!(all.events.len(), 2_000);
    let mut next_version = std::collections::HashMap::new();
    for (i, e) in all.events.iter().enumerate() {
        assert_eq!(e.position(), i as u64);
        let v = next_version.entry(e.stream().to_owned()).or_insert(0_u64);
        assert_eq!(e.version(), *v, "stream {} out of order", e.stream());
        *v += 1;
    }
}
