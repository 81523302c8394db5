//! The in-process bus keeps its contract on random workloads, in every delivery mode: the
//! conformance suite of flowgate-testkit (the same one every backend runs) drives it with
//! random topic shapes, keys, handler failures, panics, slow handlers, subscribes,
//! consumer-group joins and leaves, unsubscribes, backpressure policies and a shutdown, and
//! its checker finds nothing lost, duplicated, reordered or overlapping. (The checker's own
//! tests, which feed it broken histories, are in flowgate-testkit.)
#![cfg(not(loom))]

use flowgate::bus::Bus;
use flowgate_testkit::bus::Mode;
use flowgate_testkit::conformance::{check_bus, Suite};

#[test]
fn at_most_once_keeps_its_promise() {
    check_bus(|| async { Bus::new() }, Mode::AtMostOnce, &Suite::default());
}

#[test]
fn at_least_once_keeps_its_promise() {
    check_bus(
        || async { Bus::new() },
        Mode::AtLeastOnce,
        &Suite::default(),
    );
}

#[test]
fn exactly_once_keeps_its_promise() {
    check_bus(
        || async { Bus::new() },
        Mode::ExactlyOnce,
        &Suite::default(),
    );
}
