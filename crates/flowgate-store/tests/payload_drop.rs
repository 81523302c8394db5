//! A payload's `Drop` is the user's code: the store never runs it while holding one of its own
//! locks (a stream's, the stream map's) or while its expiry sweep is marked running. Otherwise
//! a payload whose `Drop` calls the store back would wait for its own thread.
//!
//! Each event carries a [`DropProbe`] whose `Drop` runs a store call on another thread that
//! needs the lock in question, and waits up to 2 s for it: a `Drop` run under that lock is seen
//! as a call that could not finish. Each case covers one way the store lets go of events:
//! trimming a stream to its maximum, refusing an append on a version conflict, evicting a whole
//! stream for room, and expiring old events.
#![cfg(not(loom))]

use std::sync::Arc;
use std::time::Duration;

use flowgate::Event;
use flowgate_store::{ExpectedVersion, Store, StoreError, StreamLimit};
use flowgate_testkit::drop_probe::{DropProbe, DropProbes};

/// Events whose probes run `on_drop` on the store when dropped.
fn probed(
    store: &Store<DropProbe>,
    on_drop: fn(&Store<DropProbe>),
) -> (impl Fn() -> Event<DropProbe>, Arc<DropProbes>) {
    let probes = DropProbes::new(Duration::from_secs(2));
    (probes.events(store.clone(), on_drop), probes)
}

/// Needs the stream map's lock and stream `s-1`'s.
fn read_version(store: &Store<DropProbe>) {
    let _ = store.stream_version("s-1");
}

#[test]
fn a_trimmed_event_is_dropped_outside_the_stream_lock() {
    let store = Store::builder().max_events_per_stream(1).build().unwrap();
    let (make, probes) = probed(&store, read_version);
    store.append("s-1", ExpectedVersion::Any, make()).unwrap();
    store.append("s-1", ExpectedVersion::Any, make()).unwrap();
    assert_eq!(probes.dropped(), 1, "the first event was trimmed");
    assert_eq!(probes.blocked(), 0);
}

#[test]
fn an_event_refused_for_its_version_is_dropped_outside_the_stream_lock() {
    let store = Store::new();
    let (make, probes) = probed(&store, read_version);
    store
        .append("s-1", ExpectedVersion::NoStream, make())
        .unwrap();
    let refused = store.append("s-1", ExpectedVersion::NoStream, make());
    assert!(matches!(
        refused,
        Err(StoreError::WrongExpectedVersion { .. })
    ));
    assert_eq!(probes.dropped(), 1, "the refused event was dropped");
    assert_eq!(probes.blocked(), 0);
}

#[test]
fn an_evicted_streams_events_are_dropped_outside_the_stream_map_lock() {
    let store = Store::builder()
        .max_streams(1, StreamLimit::EvictLeastRecent)
        .build()
        .unwrap();
    let (make, probes) = probed(&store, |store| {
        let _ = store.stream_version("s-2");
    });
    store.append("s-1", ExpectedVersion::Any, make()).unwrap();
    store.append("s-2", ExpectedVersion::Any, make()).unwrap();
    assert_eq!(probes.dropped(), 1, "stream s-1 was evicted with its event");
    assert_eq!(probes.blocked(), 0);
}

#[tokio::test(start_paused = true)]
async fn an_expired_event_is_dropped_after_the_sweep() {
    let store = Store::builder()
        .max_age(Duration::from_secs(60))
        .build()
        .unwrap();
    // `expire` waits for a sweep that runs: a probe dropped during one would wait for itself.
    let (make, probes) = probed(&store, |store| {
        store.expire();
    });
    store.append("s-1", ExpectedVersion::Any, make()).unwrap();
    tokio::time::advance(Duration::from_secs(61)).await;
    assert_eq!(store.expire(), 1);
    assert_eq!(probes.dropped(), 1, "the expired event was dropped");
    assert_eq!(probes.blocked(), 0);
}
