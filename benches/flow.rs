//! The flow-control operators' cost per event, beside the bare subscription, in one run.
//!
//! Each variant: a bus topic (one partition, at-most-once) whose subscriber is a
//! `flowgate::flow::channel` handler; a producer task publishes N events (1,000 keys); a
//! consumer task reads the stream to its end: bare, or through one operator. The bus's
//! shutdown ends the stream, so the operators that hold events flush them. The operators are
//! set so that they do their bookkeeping on every event but hold nothing back in time:
//! debounce (grace 10 ms, 1,000 keys), batch (100 events or 10 ms), rate limit (per key, a
//! burst no key uses up), sample (every 10th).
//!
//! Before criterion's rows, paired rounds: every variant runs once per round, back to back,
//! and each operator's time is divided by the bare subscription's of the same round; the
//! medians of those ratios are the figures to quote on this shared machine.
//!
//! In the facade package on purpose: its build of tokio has no `test-util` (with it, every
//! clock read the timed operators make takes the runtime clock's mutex).
//!
//! ```text
//! cargo bench --bench flow
//! ```
// criterion_group! generates undocumented public functions.
#![allow(missing_docs)]
// Counts are far below 2^52; ratios are printed, not computed on.
#![allow(clippy::cast_precision_loss)]

mod common;

use std::time::{Duration, Instant};

use common::{median, runtime};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use flowgate::bus::{Bus, DeliveryMode};
use flowgate::flow::{Batching, Debouncing, EventStream, FlowExt, RateLimit, Sampling};
use flowgate::Event;
use futures_util::StreamExt;
use tokio::runtime::Runtime;

/// Events per run.
const EVENTS: u32 = 20_000;
/// Distinct ordering keys.
const KEYS: u32 = 1_000;
/// Paired rounds.
const ROUNDS: usize = 15;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Variant {
    Bare,
    Debounce,
    Batch,
    RateLimit,
    Sample,
}

const VARIANTS: [Variant; 5] = [
    Variant::Bare,
    Variant::Debounce,
    Variant::Batch,
    Variant::RateLimit,
    Variant::Sample,
];

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Self::Bare => "bare_subscription",
            Self::Debounce => "debounce_by_key",
            Self::Batch => "batch",
            Self::RateLimit => "rate_limit_by_key",
            Self::Sample => "sample_every_10th",
        }
    }
}

fn key_of(event: &Event<u32>) -> u32 {
    event.payload() % KEYS
}

/// Reads `events` through `variant` to the end; returns how many outputs came out.
async fn consume(variant: Variant, events: EventStream<u32>) -> usize {
    let ms10 = Duration::from_millis(10);
    match variant {
        Variant::Bare => events.count().await,
        Variant::Debounce => {
            let config = Debouncing::new(ms10).max_keys(KEYS as usize);
            events
                .debounce_by(config, key_of)
                .expect("valid")
                .count()
                .await
        }
        Variant::Batch => {
            let config = Batching::new(100, ms10);
            events.batch(config).expect("valid").count().await
        }
        Variant::RateLimit => {
            let config = RateLimit::new(EVENTS, 1, Duration::from_secs(1));
            events
                .rate_limit_by(config, key_of)
                .expect("valid")
                .count()
                .await
        }
        Variant::Sample => {
            let config = Sampling::every_nth(10);
            events.sample(config).expect("valid").count().await
        }
    }
}

/// One run: publish `EVENTS` from a producer task, read them through `variant` to the
/// stream's end (the bus's shutdown); returns the time from the first publish to the end.
async fn run(variant: Variant) -> Duration {
    let bus = Bus::new();
    let topic = bus
        .topic::<u32>("bench")
        .mode(DeliveryMode::AtMostOnce)
        .capacity(1024)
        .create()
        .expect("topic");
    let (handler, stream) = flowgate::flow::channel(1024).expect("channel");
    let _sub = topic
        .subscribe("reader", handler)
        .start()
        .expect("subscribe");
    let events: Vec<Event<u32>> = (0..EVENTS)
        .map(|n| Event::new("bench", n).expect("valid"))
        .collect();
    let started = Instant::now();
    let reader = tokio::spawn(consume(variant, stream));
    let producer = tokio::spawn(async move {
        for event in events {
            topic.publish(event).await.expect("publish");
        }
    });
    producer.await.expect("producer");
    let report = bus.shutdown(Duration::from_secs(30)).await;
    assert_eq!(report.not_delivered(), 0, "every event reached the stream");
    let outputs = reader.await.expect("reader");
    assert!(outputs > 0, "{variant:?} handed nothing on");
    started.elapsed()
}

/// Paired rounds: each variant once per round, in a rotating order; per-event medians and the
/// median of each operator's ratio to the bare subscription of the same round.
fn paired(rt: &Runtime) {
    let mut per_event: Vec<Vec<f64>> = vec![Vec::new(); VARIANTS.len()];
    for round in 0..=ROUNDS {
        for j in 0..VARIANTS.len() {
            let v = (round + j) % VARIANTS.len();
            let took = rt.block_on(run(VARIANTS[v]));
            if round > 0 {
                per_event[v].push(took.as_secs_f64() * 1e9 / f64::from(EVENTS));
            }
        }
    }
    println!("paired rounds ({ROUNDS} rounds of {EVENTS} events per variant), medians:");
    for (variant, samples) in VARIANTS.iter().zip(&per_event) {
        let ratios: Vec<f64> = samples
            .iter()
            .zip(&per_event[0])
            .map(|(a, b)| a / b)
            .collect();
        println!(
            "  {:<20} {:>7.1} ns/event   {:.2}x the bare subscription",
            variant.name(),
            median(samples.clone()),
            median(ratios)
        );
    }
}

fn operators(c: &mut Criterion) {
    let rt = runtime();
    paired(&rt);
    let mut group = c.benchmark_group("operators");
    group.throughput(Throughput::Elements(u64::from(EVENTS)));
    group.sample_size(20);
    for variant in VARIANTS {
        group.bench_function(variant.name(), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += rt.block_on(run(variant));
                }
                total
            });
        });
    }
    group.finish();
}

criterion_group!(benches, operators);
criterion_main!(benches);
