//! Retention bounds the store's memory: with `max_events_per_stream`, a quiet stream whose few
//! events sit in an old part of the global log does not make the log grow while another stream
//! is appended to many times (every log segment whose events are all gone is released, not only
//! those at the front).
#![cfg(not(loom))]

mod common;
#[path = "common/counting.rs"]
mod counting;

use common::ev;
use counting::growth_of_100k_appends;
use flowgate_store::{ExpectedVersion, Store};

#[test]
fn a_quiet_stream_does_not_keep_the_logs_growing() {
    let store = Store::<u64>::builder()
        .max_events_per_stream(10)
        .build()
        .unwrap();
    // The quiet stream: one event, never removed, in the first segments of both logs.
    store
        .append("config-1", ExpectedVersion::Any, ev(0))
        .unwrap();
    store.append("busy-1", ExpectedVersion::Any, ev(0)).unwrap();
    let growth = growth_of_100k_appends(&store);
    // Unbounded, each append keeps ~100 bytes (a slot and a record's shell): ~10 MB here.
    assert!(
        growth < 256 * 1024,
        "100k appends to a stream capped at 10 events grew memory by {growth} bytes"
    );
    let page = store.read_all(0, 100).unwrap();
    assert_eq!(
        page.events.len(),
        11,
        "the quiet event and the busy stream's last 10"
    );
    assert_eq!(page.events[0].stream(), "config-1");
    assert_eq!(
        store.read_category("config", 0, 10).unwrap().events.len(),
        1
    );
}
