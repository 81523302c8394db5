//! The Redis backend beside the raw `redis` crate on the same private redis-server, in the
//! same run, at batch sizes 1 and 64:
//!
//! - `publish/*`: 2,048 events into one partition. Raw: `XADD` of four fixed fields (one
//!   awaited command at a time for batch 1; a pipeline of 64 for batch 64). flowgate: builds
//!   each event, encodes it (JSON) and runs the publish script (dedupe / capacity check and
//!   `XADD`); batch 1 awaits each publish, batch 64 runs 64 publishes at once on the shared
//!   connection, which pipelines them. The topic has no consumer group, as the raw stream.
//! - `consume_ack/*`: 2,048 events already in the stream, read and acknowledged by one
//!   consumer. Raw: `XREADGROUP COUNT b` then `XACK` of what it read, in a loop. flowgate: a
//!   group member with `read_batch(b)`, whose no-op handler counts events; timed from
//!   `subscribe` until the handler saw all of them (lease, fenced reads, per-key order
//!   bookkeeping, acknowledgements in batches).
//!
//! ```text
//! cargo bench -p flowgate-redis --bench redis
//! ```
// criterion_group! generates undocumented public functions.
#![allow(missing_docs)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use flowgate_bus::{Backend, SubscribeRequest, TopicSettings};
use flowgate_core::Event;
use flowgate_redis::{RedisBus, RedisTopic};
use flowgate_testkit::redis_server::RedisServer;
use redis::aio::MultiplexedConnection;
use tokio::runtime::Runtime;
use tokio::sync::Notify;

const EVENTS: u64 = 2_048;
const BATCHES: [u64; 2] = [1, 64];

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

/// The fields of a typical entry, fixed: what the raw client writes.
fn raw_fields() -> Vec<(&'static str, String)> {
    vec![
        ("id", "019af0c2-5a4e-7d2b-9c61-2f1e8a3b4c5d".into()),
        ("type", "order.placed".into()),
        ("ts", "1796566375891000000".into()),
        ("p", "12345".into()),
    ]
}

async fn raw_connection(url: &str) -> MultiplexedConnection {
    redis::Client::open(url)
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("connect")
}

async fn raw_publish(conn: &mut MultiplexedConnection, stream: &str, batch: u64) {
    let fields = raw_fields();
    for _ in 0..EVENTS / batch {
        let mut pipe = redis::pipe();
        for _ in 0..batch {
            pipe.xadd(stream, "*", &fields).ignore();
        }
        let () = pipe.query_async(conn).await.expect("XADD");
    }
}

async fn flowgate_publish(topic: &RedisTopic<u64>, batch: u64) {
    for round in 0..EVENTS / batch {
        let publishes = (0..batch).map(|i| {
            let event = Event::new("order.placed", round * batch + i).expect("event");
            topic.publish(event)
        });
        for published in futures_util::future::join_all(publishes).await {
            published.expect("publish");
        }
    }
}

fn publish(c: &mut Criterion) {
    let server = RedisServer::start().unwrap_or_else(|e| panic!("{e}"));
    let url = server.url();
    let rt = runtime();
    let conn = rt.block_on(raw_connection(&url));
    let bus = rt
        .block_on(RedisBus::builder(&url).namespace("bench-publish").connect())
        .expect("bus");
    let topic: RedisTopic<u64> = rt
        .block_on(bus.create_topic("orders", TopicSettings::default()))
        .expect("topic");
    let mut group = c.benchmark_group("publish");
    group.throughput(Throughput::Elements(EVENTS));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(6));
    for batch in BATCHES {
        // The publishing loop runs as a task, as a service's would.
        group.bench_with_input(BenchmarkId::new("raw_xadd", batch), &batch, |b, &batch| {
            b.iter_custom(|iters| {
                let mut conn = conn.clone();
                let task = rt.spawn(async move {
                    let mut took = Duration::ZERO;
                    for _ in 0..iters {
                        let _: () = redis::cmd("DEL")
                            .arg("raw")
                            .query_async(&mut conn)
                            .await
                            .expect("DEL");
                        let start = Instant::now();
                        raw_publish(&mut conn, "raw", batch).await;
                        took += start.elapsed();
                    }
                    took
                });
                rt.block_on(task).expect("the publishing task")
            });
        });
        group.bench_with_input(BenchmarkId::new("flowgate", batch), &batch, |b, &batch| {
            b.iter_custom(|iters| {
                let topic = topic.clone();
                let task = rt.spawn(async move {
                    let start = Instant::now();
                    for _ in 0..iters {
                        flowgate_publish(&topic, batch).await;
                    }
                    start.elapsed()
                });
                rt.block_on(task).expect("the publishing task")
            });
        });
    }
    group.finish();
    drop(server);
}

/// Fills `stream` with EVENTS entries for group `g` (created at the start).
async fn raw_fill(conn: &mut MultiplexedConnection, stream: &str) {
    let _: () = redis::cmd("DEL")
        .arg(stream)
        .query_async(conn)
        .await
        .expect("DEL");
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(stream)
        .arg("g")
        .arg("0")
        .arg("MKSTREAM")
        .query_async(conn)
        .await
        .expect("XGROUP CREATE");
    raw_publish(conn, stream, 64).await;
}

async fn raw_consume(conn: &mut MultiplexedConnection, stream: &str, batch: u64) {
    let mut consumed = 0;
    while consumed < EVENTS {
        let reply: redis::streams::StreamReadReply = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg("g")
            .arg("c")
            .arg("COUNT")
            .arg(batch)
            .arg("STREAMS")
            .arg(stream)
            .arg(">")
            .query_async(conn)
            .await
            .expect("XREADGROUP");
        let ids: Vec<String> = reply
            .keys
            .into_iter()
            .flat_map(|k| k.ids.into_iter().map(|e| e.id))
            .collect();
        consumed += ids.len() as u64;
        let _: u64 = redis::cmd("XACK")
            .arg(stream)
            .arg("g")
            .arg(&ids)
            .query_async(conn)
            .await
            .expect("XACK");
    }
}

/// One flowgate consume run: a fresh namespace, EVENTS published with the group in place,
/// then (timed) a member joins and handles them all.
async fn flowgate_consume(url: &str, run: u64, batch: u64) -> Duration {
    let bus = RedisBus::builder(url)
        .namespace(format!("bench-consume-{batch}-{run}"))
        .read_batch(batch as usize)
        .connect()
        .await
        .expect("bus");
    let settings = TopicSettings::default().capacity(EVENTS as usize);
    let topic: RedisTopic<u64> = bus.create_topic("orders", settings).await.expect("topic");
    let nothing = SubscribeRequest::new("setup", |_: Event<u64>| async { Ok(()) }).group("g");
    topic
        .subscribe(nothing)
        .await
        .expect("group")
        .detach()
        .await;
    flowgate_publish(&topic, 64).await;
    let seen = Arc::new(AtomicU64::new(0));
    let all = Arc::new(Notify::new());
    let (count, done) = (Arc::clone(&seen), Arc::clone(&all));
    let handler = move |_: Event<u64>| {
        if count.fetch_add(1, Ordering::Relaxed) + 1 == EVENTS {
            done.notify_one();
        }
        async { Ok(()) }
    };
    let start = Instant::now();
    let member = topic
        .subscribe(SubscribeRequest::new("member", handler).group("g"))
        .await
        .expect("join");
    all.notified().await;
    let took = start.elapsed();
    member.detach().await;
    bus.shutdown(Duration::from_secs(5)).await;
    took
}

fn consume_ack(c: &mut Criterion) {
    let server = RedisServer::start().unwrap_or_else(|e| panic!("{e}"));
    let url = server.url();
    let rt = runtime();
    let conn = rt.block_on(raw_connection(&url));
    let mut group = c.benchmark_group("consume_ack");
    group.throughput(Throughput::Elements(EVENTS));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(8));
    let mut runs = 0;
    for batch in BATCHES {
        group.bench_with_input(
            BenchmarkId::new("raw_xreadgroup_xack", batch),
            &batch,
            |b, &batch| {
                b.iter_custom(|iters| {
                    // The consumer loop runs as a task, as a service's (and flowgate's) would.
                    let mut conn = conn.clone();
                    let task = rt.spawn(async move {
                        let mut took = Duration::ZERO;
                        for _ in 0..iters {
                            raw_fill(&mut conn, "raw").await;
                            let start = Instant::now();
                            raw_consume(&mut conn, "raw", batch).await;
                            took += start.elapsed();
                        }
                        took
                    });
                    rt.block_on(task).expect("the consumer task")
                });
            },
        );
        group.bench_with_input(BenchmarkId::new("flowgate", batch), &batch, |b, &batch| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut took = Duration::ZERO;
                    for _ in 0..iters {
                        runs += 1;
                        took += flowgate_consume(&url, runs, batch).await;
                    }
                    took
                })
            });
        });
    }
    group.finish();
    drop(server);
}

criterion_group!(benches, publish, consume_ack);
criterion_main!(benches);
