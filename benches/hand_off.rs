//! Cross-crate comparison: one producer task hands events to one consumer that runs a no-op
//! handler, end to end (until the handler ran for every event), per event, on a 2-thread
//! runtime. Side by side in one run:
//!
//! - flowgate's emitter (`emit_async`, one worker),
//! - flowgate's bus (one partition, at-most-once and at-least-once, one subscriber),
//! - tokio mpsc, tokio broadcast and flume, each with one consumer task calling the handler.
//!
//! and a second group, `throughput_8_partitions`: a bus topic of 8 partitions with one no-op
//! subscriber in each delivery mode, beside 8 tokio mpsc and 8 flume channels with one
//! consumer task each (the producer sends to channel `i mod 8`). Exactly-once needs distinct
//! idempotency keys, so every variant sends distinct events from one pool. Before criterion's
//! rows, that group prints a paired comparison, twice (a producer that never yields, then one
//! that yields every 128 events, as a service's producers do): rounds in which every variant
//! runs once, back to back (its timed events after untimed ones that warm its caches again),
//! with the ratios taken within each round and their medians printed (see `paired_ratios`). Those are the figures to quote; criterion's rows, seconds apart, can
//! each land in a different period of this shared machine.
//!
//! These benches live in the facade package on purpose: its build of tokio has no
//! `test-util` feature (the member crates enable it for their own tests and benches, and
//! with it every `tokio::time::Instant::now()` takes the runtime clock's mutex, which no
//! production build pays).
//!
//! ```text
//! cargo bench --bench hand_off
//! ```
// criterion_group! generates undocumented public functions.
#![allow(missing_docs)]

mod common;

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{median, runtime};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use flowgate::bus::{Bus, DedupeWindowConfig, Topic};
use flowgate::emitter::{Backpressure, Emitter};
use flowgate::{Event, RetryPolicy};
use tokio::runtime::Runtime;
use tokio::sync::Notify;

const CAPACITY: usize = 1024;

/// Counts handled events and wakes the bench when the target is reached.
struct Done {
    count: AtomicU64,
    target: AtomicU64,
    notify: Notify,
}

impl Done {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            count: AtomicU64::new(0),
            target: AtomicU64::new(u64::MAX),
            notify: Notify::new(),
        })
    }

    fn tick(&self) {
        if self.count.fetch_add(1, Ordering::Relaxed) + 1 == self.target.load(Ordering::Relaxed) {
            self.notify.notify_one();
        }
    }
}

/// Where the producer sends.
trait Sink: Clone + Send + Sync + 'static {
    fn send(&self, event: Event<u64>) -> impl Future<Output = ()> + Send;
}

impl Sink for Emitter<u64> {
    async fn send(&self, event: Event<u64>) {
        self.emit_async(event).await.expect("accepted");
    }
}

impl Sink for Topic<u64> {
    async fn send(&self, event: Event<u64>) {
        self.publish(event).await.expect("accepted");
    }
}

impl Sink for tokio::sync::mpsc::Sender<Event<u64>> {
    async fn send(&self, event: Event<u64>) {
        tokio::sync::mpsc::Sender::send(self, event)
            .await
            .expect("open");
    }
}

impl Sink for flume::Sender<Event<u64>> {
    async fn send(&self, event: Event<u64>) {
        self.send_async(event).await.expect("open");
    }
}

/// A broadcast sender with a bounded lag: it waits while the receiver is `CAPACITY` behind,
/// as a bounded hand-off must (broadcast alone would overwrite and report `Lagged`).
#[derive(Clone)]
struct Broadcast {
    tx: tokio::sync::broadcast::Sender<Event<u64>>,
    done: Arc<Done>,
    sent: Arc<AtomicU64>,
}

impl Sink for Broadcast {
    async fn send(&self, event: Event<u64>) {
        let sent = self.sent.fetch_add(1, Ordering::Relaxed);
        while sent.saturating_sub(self.done.count.load(Ordering::Relaxed)) >= CAPACITY as u64 {
            tokio::task::yield_now().await;
        }
        self.tx.send(event).expect("a receiver");
    }
}

/// Starts the clock, spawns the producer `send_all` (it sends `n` events), and stops the clock
/// once the consumer side handled all `n`.
fn run_pool<F, Fut>(runtime: &Runtime, done: &Arc<Done>, n: u64, send_all: F) -> Duration
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    runtime.block_on(async {
        done.count.store(0, Ordering::SeqCst);
        done.target.store(n, Ordering::SeqCst);
        let notified = done.notify.notified();
        let start = Instant::now();
        tokio::spawn(send_all());
        notified.await;
        start.elapsed()
    })
}

/// Sends `iters` clones of one event through `sink`.
fn run<S: Sink>(runtime: &Runtime, sink: &S, done: &Arc<Done>, iters: u64) -> Duration {
    let sink = sink.clone();
    run_pool(runtime, done, iters, move || async move {
        let event = Event::new("order.placed", 7).expect("valid");
        for _ in 0..iters {
            sink.send(event.clone()).await;
        }
    })
}

/// A bounded tokio mpsc channel whose consumer task ticks `done`; call inside the runtime.
fn mpsc_consumer(done: &Arc<Done>) -> tokio::sync::mpsc::Sender<Event<u64>> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Event<u64>>(CAPACITY);
    let d = Arc::clone(done);
    tokio::spawn(async move {
        while let Some(event) = rx.recv().await {
            std::hint::black_box(&event);
            d.tick();
        }
    });
    tx
}

/// A bounded flume channel whose consumer task ticks `done`; call inside the runtime.
fn flume_consumer(done: &Arc<Done>) -> flume::Sender<Event<u64>> {
    let (tx, rx) = flume::bounded::<Event<u64>>(CAPACITY);
    let d = Arc::clone(done);
    tokio::spawn(async move {
        while let Ok(event) = rx.recv_async().await {
            std::hint::black_box(&event);
            d.tick();
        }
    });
    tx
}

fn emitter(runtime: &Runtime, done: &Arc<Done>) -> Emitter<u64> {
    runtime.block_on(async {
        let emitter = Emitter::<u64>::builder()
            .workers(1)
            .queue_capacity(CAPACITY)
            .backpressure(Backpressure::Block {
                max_wait: Duration::from_secs(60),
            })
            .build()
            .expect("emitter");
        let d = Arc::clone(done);
        emitter
            .on("order.placed", move |_: Event<u64>| {
                d.tick();
                async { Ok(()) }
            })
            .expect("subscribe")
            .detach();
        emitter
    })
}

fn bench(c: &mut Criterion) {
    let runtime = runtime();
    let mut group = c.benchmark_group("hand_off_2_threads");
    group.throughput(Throughput::Elements(1));

    let done = Done::new();
    let emitter = emitter(&runtime, &done);
    group.bench_function("flowgate_emitter_emit_async", |b| {
        b.iter_custom(|iters| run(&runtime, &emitter, &done, iters));
    });

    for name in ["at_most_once", "at_least_once"] {
        let done = Done::new();
        let topic = topic(&runtime, &done, 1, name);
        group.bench_function(format!("flowgate_bus_{name}"), |b| {
            b.iter_custom(|iters| run(&runtime, &topic, &done, iters));
        });
    }

    let done = Done::new();
    let mpsc = runtime.block_on(async { mpsc_consumer(&done) });
    group.bench_function("baseline_tokio_mpsc", |b| {
        b.iter_custom(|iters| run(&runtime, &mpsc, &done, iters));
    });

    let done = Done::new();
    let broadcast = runtime.block_on(async {
        let (tx, mut rx) = tokio::sync::broadcast::channel::<Event<u64>>(CAPACITY);
        let d = Arc::clone(&done);
        tokio::spawn(async move {
            while let Ok(event) = rx.recv().await {
                std::hint::black_box(&event);
                d.tick();
            }
        });
        Broadcast {
            tx,
            done: Arc::clone(&done),
            sent: Arc::new(AtomicU64::new(0)),
        }
    });
    group.bench_function("baseline_tokio_broadcast", |b| {
        b.iter_custom(|iters| {
            broadcast.sent.store(0, Ordering::SeqCst);
            run(&runtime, &broadcast, &done, iters)
        });
    });

    let done = Done::new();
    let flume = runtime.block_on(async { flume_consumer(&done) });
    group.bench_function("baseline_flume", |b| {
        b.iter_custom(|iters| run(&runtime, &flume, &done, iters));
    });
    group.finish();
}

/// Distinct events the 8-partition producers cycle through. Runs continue through the pool
/// where the last one stopped, so an exactly-once topic (a window of 10,000 keys) has long
/// forgotten a key when it comes round again.
const POOL: usize = 65_536;

/// A topic of `partitions` in delivery `mode` with one no-op subscriber that ticks `done`.
fn topic(runtime: &Runtime, done: &Arc<Done>, partitions: u32, mode: &str) -> Topic<u64> {
    runtime.block_on(async {
        let bus = Bus::new();
        let builder = bus
            .topic::<u64>("orders")
            .partitions(partitions)
            .capacity(CAPACITY);
        let builder = match mode {
            "at_most_once" => builder.at_most_once(),
            "at_least_once" => builder.at_least_once(RetryPolicy::default()),
            _ => builder.exactly_once(RetryPolicy::default(), DedupeWindowConfig::default()),
        };
        let topic = builder.create().expect("topic");
        let d = Arc::clone(done);
        topic
            .subscribe("noop", move |_: Event<u64>| {
                d.tick();
                async { Ok(()) }
            })
            .start()
            .expect("subscribe");
        topic
    })
}

/// One way of handing events to 8 consumers: `run(n)` sends `n` events and returns the time
/// until all `n` were handled.
struct Variant<'a> {
    name: &'static str,
    run: Box<dyn FnMut(u64) -> Duration + 'a>,
}

/// The 8-partition bus in each delivery mode and the two 8-channel baselines, each sending
/// events from `events` (the topics continue through the pool where they stopped).
fn partition_variants<'a>(runtime: &'a Runtime, events: &Arc<Vec<Event<u64>>>) -> Vec<Variant<'a>> {
    let mut variants = Vec::new();
    for (mode, name) in [
        ("at_most_once", "flowgate_at_most_once"),
        ("at_least_once", "flowgate_at_least_once"),
        ("exactly_once", "flowgate_exactly_once"),
    ] {
        let done = Done::new();
        let topic = topic(runtime, &done, 8, mode);
        let events = Arc::clone(events);
        let mut cursor = 0u64;
        let run = move |n: u64| {
            let (topic, events, first) = (topic.clone(), Arc::clone(&events), cursor);
            cursor += n;
            run_pool(runtime, &done, n, move || async move {
                let every = YIELD_EVERY.load(Ordering::Relaxed);
                for i in first..first + n {
                    let event = events[i as usize % POOL].clone();
                    let published = topic.publish(event).await.expect("accepted");
                    assert!(!published.duplicate, "the pool outlives the dedupe window");
                    pace(i, every).await;
                }
            })
        };
        variants.push(Variant {
            name,
            run: Box::new(run),
        });
    }

    let done = Done::new();
    let mpsc = runtime.block_on(async { (0..8).map(|_| mpsc_consumer(&done)).collect() });
    variants.push(channels(
        runtime,
        "baseline_8_tokio_mpsc",
        done,
        mpsc,
        events,
    ));
    let done = Done::new();
    let flume = runtime.block_on(async { (0..8).map(|_| flume_consumer(&done)).collect() });
    variants.push(channels(runtime, "baseline_8_flume", done, flume, events));
    variants
}

/// A baseline: 8 channels, each with a consumer task that ticks `done`; the producer sends
/// event i to channel i mod 8.
fn channels<'a, S: Sink>(
    runtime: &'a Runtime,
    name: &'static str,
    done: Arc<Done>,
    senders: Vec<S>,
    events: &Arc<Vec<Event<u64>>>,
) -> Variant<'a> {
    let senders = Arc::new(senders);
    let pool = Arc::clone(events);
    Variant {
        name,
        run: Box::new(move |n| {
            let (senders, events) = (Arc::clone(&senders), Arc::clone(&pool));
            run_pool(runtime, &done, n, move || async move {
                let every = YIELD_EVERY.load(Ordering::Relaxed);
                for i in 0..n as usize {
                    senders[i % 8].send(events[i % POOL].clone()).await;
                    pace(i as u64, every).await;
                }
            })
        }),
    }
}

/// The 8-partition producers yield to the runtime after every this many events (0: never).
/// Criterion's rows run with 0, a producer that never yields; the paired comparison runs with
/// 0 and then with 128, as a service's producers yield between requests. (tokio mpsc's `send`
/// also yields on its own through tokio's cooperative budget; a bus publish and flume's
/// `send_async` do not.)
static YIELD_EVERY: AtomicU64 = AtomicU64::new(0);

/// Yields after event `i` if the producer yields every `every` events.
async fn pace(i: u64, every: u64) {
    if every != 0 && (i + 1) % every == 0 {
        tokio::task::yield_now().await;
    }
}

/// Rounds of the paired comparison, and events per variant per round.
const ROUNDS: usize = 41;
const ROUND_EVENTS: u32 = 100_000;
/// Untimed events each variant handles in a round before its timed ones: the variants that ran
/// in between left the caches full of their own data, and a round should measure a variant's
/// steady state (as criterion's rows do), not how long it takes to bring its working set back.
/// That working set differs by variant: an exactly-once topic keeps two dedupe windows of 10,000
/// keys each (a hash map and an age queue apiece), by our estimate over a megabyte, and this
/// machine's L2 is 1 MB per core.
const WARM_EVENTS: u64 = 25_000;

/// The paired comparison. Criterion measures each row for seconds on its own, and on this
/// shared machine a row's figure depends on the minute it ran in and on how the runtime placed
/// that topic's tasks (docs/performance.md, "The slow mode"). So each round runs every variant
/// once on `ROUND_EVENTS` events (after `WARM_EVENTS` untimed ones), back to back (the starting
/// variant rotating), and the ratios are taken within a round; the figures printed are the
/// medians over `ROUNDS` rounds (the first round, a warm-up, is not counted), with the
/// producers yielding every `yield_every` events.
fn paired_ratios(variants: &mut [Variant<'_>], yield_every: u64) {
    YIELD_EVERY.store(yield_every, Ordering::Relaxed);
    let k = variants.len();
    let mut per_event: Vec<Vec<f64>> = vec![Vec::new(); k];
    for round in 0..=ROUNDS {
        for j in 0..k {
            let v = (round + j) % k;
            (variants[v].run)(WARM_EVENTS);
            let took = (variants[v].run)(u64::from(ROUND_EVENTS));
            if round > 0 {
                per_event[v].push(took.as_secs_f64() * 1e9 / f64::from(ROUND_EVENTS));
            }
        }
    }
    YIELD_EVERY.store(0, Ordering::Relaxed);
    let index = |name: &str| {
        variants
            .iter()
            .position(|v| v.name == name)
            .expect("variant")
    };
    let pacing = match yield_every {
        0 => "a producer that never yields".to_owned(),
        n => format!("a producer that yields every {n} events"),
    };
    println!(
        "paired rounds ({ROUNDS} rounds of {ROUND_EVENTS} events per variant, {pacing}), medians:"
    );
    for (variant, samples) in variants.iter().zip(&per_event) {
        println!(
            "  {:<24} {:>7.1} ns/event",
            variant.name,
            median(samples.clone())
        );
    }
    let (most, least, exactly, mpsc) = (
        index("flowgate_at_most_once"),
        index("flowgate_at_least_once"),
        index("flowgate_exactly_once"),
        index("baseline_8_tokio_mpsc"),
    );
    for (label, over, under, target) in [
        ("at-most-once / 8 tokio mpsc", most, mpsc, 1.5),
        ("at-least-once / at-most-once", least, most, 1.3),
        ("exactly-once / at-most-once", exactly, most, 2.0),
    ] {
        let ratios: Vec<f64> = per_event[over]
            .iter()
            .zip(&per_event[under])
            .map(|(a, b)| a / b)
            .collect();
        let above = ratios.iter().filter(|&&r| r > target).count();
        println!(
            "  {label:<30} median {:.2}x (target <= {target}x; {above} of {ROUNDS} rounds above it)",
            median(ratios)
        );
    }
}

fn bench_partitions(c: &mut Criterion) {
    let runtime = runtime();
    let events: Arc<Vec<Event<u64>>> = Arc::new(
        (0..POOL as u64)
            .map(|n| Event::new("order.placed", n).expect("valid"))
            .collect(),
    );
    let mut variants = partition_variants(&runtime, &events);
    paired_ratios(&mut variants, 0);
    paired_ratios(&mut variants, 128);

    let mut group = c.benchmark_group("throughput_8_partitions");
    group.throughput(Throughput::Elements(1));
    for variant in &mut variants {
        let run = &mut variant.run;
        group.bench_function(variant.name, |b| b.iter_custom(&mut *run));
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench, bench_partitions
}
criterion_main!(benches);
