//! The bus's conformance suite from flowgate-testkit, unchanged, against the Redis backend on
//! a real redis-server: random topic shapes, keys, handler failures, panics, slow handlers,
//! subscribes, consumer-group joins and leaves, backpressure policies and a shutdown, checked
//! for lost, duplicated, reordered and overlapping deliveries.
//!
//! Each case gets a bus of its own namespace on one server per test. The clock is real (Redis
//! does real I/O), so the case count is smaller than the in-process suite's:
//! `REDIS_CONFORMANCE_CASES=1000 cargo test -p flowgate-redis --test contract` runs more.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};

use flowgate_testkit::bus::Mode;
use flowgate_testkit::conformance::{check_bus, Suite};
use flowgate_testkit::redis_server::RedisServer;

fn suite() -> Suite {
    let mut suite = Suite::default();
    suite.cases = std::env::var("REDIS_CONFORMANCE_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(24);
    suite.paused_clock = false;
    suite.multi_thread = true;
    suite
}

fn run(mode: Mode) {
    let server = common::server();
    let url = server.url();
    let next = AtomicU64::new(0);
    check_bus(
        || {
            let namespace = format!("case-{}", next.fetch_add(1, Ordering::Relaxed));
            common::bus_at(url.clone(), namespace)
        },
        mode,
        &suite(),
    );
    drop::<RedisServer>(server);
}

#[test]
fn at_most_once_keeps_its_promise_on_redis() {
    run(Mode::AtMostOnce);
}

#[test]
fn at_least_once_keeps_its_promise_on_redis() {
    run(Mode::AtLeastOnce);
}

#[test]
fn exactly_once_keeps_its_promise_on_redis() {
    run(Mode::ExactlyOnce);
}
