//! Shared setup: a private redis-server per test, and buses on it.
#![allow(dead_code)]

use std::time::Duration;

use flowgate::bus::{Backend, TopicSettings};
use flowgate::redis::{RedisBus, RedisTopic};
use flowgate_testkit::redis_server::RedisServer;

/// A private server for this test; a failure to start says how to install redis-server.
pub(crate) fn server() -> RedisServer {
    match RedisServer::start() {
        Ok(server) => server,
        Err(error) => panic!("{error}"),
    }
}

/// A bus on `server` with short leases and reads, so that tests move fast.
pub(crate) async fn bus(server: &RedisServer, namespace: &str) -> RedisBus {
    bus_at(server.url(), namespace.to_owned()).await
}

/// As [`bus`], for the server at `url`.
pub(crate) async fn bus_at(url: String, namespace: String) -> RedisBus {
    RedisBus::builder(url)
        .namespace(namespace)
        .lease(Duration::from_millis(900))
        .block(Duration::from_millis(200))
        .connect()
        .await
        .expect("connect to the test's redis-server")
}

/// A raw client connection to `server`, for what a test must do behind the bus's back.
pub(crate) async fn raw(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(server.url())
        .expect("the server's url")
        .get_multiplexed_async_connection()
        .await
        .expect("connect to the test's redis-server")
}

/// The topic most tests use: `jobs`, `u32` payloads, default settings.
pub(crate) async fn jobs(bus: &RedisBus) -> RedisTopic<u32> {
    Backend::<u32>::create_topic(bus, "jobs", TopicSettings::default())
        .await
        .expect("create the jobs topic")
}
