//! Bus benchmarks, each beside hand-wired channels doing the same hand-off in the same run:
//!
//! - `publish/*`: the cost of one publish into a partition buffer (at-most-once), beside
//!   `send` into a bounded tokio mpsc, a flume channel and a tokio broadcast channel. Each
//!   sample publishes a chunk (timed), then lets the consumer drain it (not timed).
//!
//! End-to-end throughput of an 8-partition topic in each delivery mode, beside 8 tokio mpsc
//! and 8 flume channels, is in the top-level `benches/hand_off.rs` (`cargo bench --bench
//! hand_off`): there tokio is built without `test-util`, which this crate's tests need and
//! which makes every clock read take a mutex.
//!
//! Before the timings it prints heap allocations per event (a counting global allocator) for
//! one subscriber and for a fan-out to four, and the peak RSS after an overload run (a
//! producer far faster than the handlers, under each backpressure policy).
//!
//! ```text
//! cargo bench -p flowgate-bus --bench bus
//! ```
// criterion_group! generates undocumented public functions.
#![allow(missing_docs)]
// Counts are far below 2^52; ratios are printed, not computed on.
#![allow(clippy::cast_precision_loss)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use flowgate_bus::{Backpressure, Bus, DedupeWindowConfig, DeliveryMode, Topic};
use flowgate_core::{Event, RetryPolicy};
use tokio::runtime::Runtime;
use tokio::sync::Notify;

/// Counts every allocation, so the bench can print allocations per event.
struct CountingAllocator;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call to `System` unchanged; only adds a relaxed counter increment.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which we pass on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout` (every allocation goes there).
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as for `dealloc`; `new_size` comes from the caller's contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

fn allocations() -> u64 {
    ALLOCATIONS.load(Ordering::Relaxed)
}

/// Events published per timed chunk of the publish bench (the buffers hold a whole chunk).
const CHUNK: u64 = 4_096;
/// Distinct events the producers cycle through (so exactly-once sees distinct keys: its
/// window of 10,000 keys has forgotten a key long before it comes round again).
const POOL: usize = 65_536;

fn current_thread() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn multi_thread() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn pool() -> Arc<Vec<Event<u64>>> {
    Arc::new(
        (0..POOL as u64)
            .map(|n| Event::new("order.placed", n).expect("valid type"))
            .collect(),
    )
}

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

    fn arm(&self, target: u64) {
        self.count.store(0, Ordering::SeqCst);
        self.target.store(target, Ordering::SeqCst);
    }

    #[inline]
    fn tick(&self) {
        if self.count.fetch_add(1, Ordering::Relaxed) + 1 == self.target.load(Ordering::Relaxed) {
            self.notify.notify_one();
        }
    }
}

fn mode(name: &str) -> DeliveryMode {
    let retry = RetryPolicy::exponential(3, Duration::from_millis(1));
    match name {
        "at_most_once" => DeliveryMode::AtMostOnce,
        "at_least_once" => DeliveryMode::AtLeastOnce(retry),
        _ => DeliveryMode::ExactlyOnce(retry, DedupeWindowConfig::default()),
    }
}

/// A topic with `subscribers` no-op subscribers that tick `done`.
fn topic(
    runtime: &Runtime,
    mode: DeliveryMode,
    partitions: u32,
    capacity: usize,
    subscribers: usize,
    done: &Arc<Done>,
) -> Topic<u64> {
    runtime.block_on(async {
        let bus = Bus::new();
        let topic = bus
            .topic::<u64>("bench")
            .partitions(partitions)
            .capacity(capacity)
            .mode(mode)
            .backpressure(Backpressure::Block { max_wait: None })
            .create()
            .expect("topic");
        for s in 0..subscribers {
            let done = Arc::clone(done);
            topic
                .subscribe(format!("s{s}"), move |_: Event<u64>| {
                    done.tick();
                    async { Ok(()) }
                })
                .start()
                .expect("subscribe");
        }
        topic
    })
}

/// Something the publish bench can push one event into.
trait Sink: Send + Sync + 'static {
    fn send(&self, event: Event<u64>) -> impl std::future::Future<Output = ()> + Send;
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

impl Sink for tokio::sync::broadcast::Sender<Event<u64>> {
    async fn send(&self, event: Event<u64>) {
        tokio::sync::broadcast::Sender::send(self, event).expect("a receiver");
    }
}

/// Times `iters` sends in chunks of [`CHUNK`], letting the consumer drain between chunks
/// (untimed), on a current-thread runtime where the consumer runs only when the producer
/// yields.
fn timed_chunks<S: Sink>(
    runtime: &Runtime,
    sink: &S,
    done: &Done,
    events: &[Event<u64>],
    iters: u64,
) -> Duration {
    runtime.block_on(async {
        let mut total = Duration::ZERO;
        let mut left = iters;
        let mut i = 0;
        while left > 0 {
            let n = left.min(CHUNK);
            done.arm(n);
            let notified = done.notify.notified();
            let start = Instant::now();
            for _ in 0..n {
                sink.send(events[i % POOL].clone()).await;
                i += 1;
            }
            total += start.elapsed();
            notified.await;
            left -= n;
        }
        total
    })
}

fn bench_publish(c: &mut Criterion) {
    let runtime = current_thread();
    let events = pool();
    let done = Done::new();
    let flowgate = topic(&runtime, mode("at_most_once"), 1, CHUNK as usize, 1, &done);
    let (mpsc, flume, broadcast) = runtime.block_on(async {
        let (mpsc, mut mpsc_rx) = tokio::sync::mpsc::channel::<Event<u64>>(CHUNK as usize);
        let d = Arc::clone(&done);
        tokio::spawn(async move {
            while let Some(event) = mpsc_rx.recv().await {
                std::hint::black_box(&event);
                d.tick();
            }
        });
        let (flume, flume_rx) = flume::bounded::<Event<u64>>(CHUNK as usize);
        let d = Arc::clone(&done);
        tokio::spawn(async move {
            while let Ok(event) = flume_rx.recv_async().await {
                std::hint::black_box(&event);
                d.tick();
            }
        });
        let (broadcast, mut broadcast_rx) =
            tokio::sync::broadcast::channel::<Event<u64>>(CHUNK as usize);
        let d = Arc::clone(&done);
        tokio::spawn(async move {
            while let Ok(event) = broadcast_rx.recv().await {
                std::hint::black_box(&event);
                d.tick();
            }
        });
        (mpsc, flume, broadcast)
    });
    let mut group = c.benchmark_group("publish");
    group.throughput(Throughput::Elements(1));
    group.bench_function("flowgate_at_most_once", |b| {
        b.iter_custom(|iters| timed_chunks(&runtime, &flowgate, &done, &events, iters));
    });
    group.bench_function("baseline_tokio_mpsc", |b| {
        b.iter_custom(|iters| timed_chunks(&runtime, &mpsc, &done, &events, iters));
    });
    group.bench_function("baseline_flume", |b| {
        b.iter_custom(|iters| timed_chunks(&runtime, &flume, &done, &events, iters));
    });
    group.bench_function("baseline_tokio_broadcast", |b| {
        b.iter_custom(|iters| timed_chunks(&runtime, &broadcast, &done, &events, iters));
    });
    group.finish();
}

/// Allocations per published event, publish and deliveries included, for `subscribers`.
fn report_allocations(subscribers: usize) {
    let runtime = current_thread();
    let events = pool();
    let done = Done::new();
    let topic = topic(
        &runtime,
        mode("at_most_once"),
        1,
        CHUNK as usize,
        subscribers,
        &done,
    );
    let run = |n: u64| {
        runtime.block_on(async {
            done.arm(n * subscribers as u64);
            let notified = done.notify.notified();
            for i in 0..n as usize {
                topic
                    .publish(events[i % POOL].clone())
                    .await
                    .expect("accepted");
            }
            notified.await;
        });
    };
    run(CHUNK);
    let before = allocations();
    run(CHUNK);
    let per_event = (allocations() - before) as f64 / CHUNK as f64;
    println!(
        "allocations per publish to {subscribers} subscriber(s), deliveries included: {per_event:.3} \
         (each delivery boxes its handler future; the payload is shared, never copied)"
    );
}

/// Peak resident memory of this process, from /proc (Linux), in KiB.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A producer far faster than the handlers for one second per policy; prints the peak RSS.
fn report_overload_rss() {
    let runtime = multi_thread();
    let before = peak_rss_kib();
    for (policy, at_most_once) in [
        (
            Backpressure::Block {
                max_wait: Some(Duration::from_millis(1)),
            },
            false,
        ),
        (Backpressure::Reject, false),
        (Backpressure::DropOldest, true),
        (Backpressure::DropNewest, true),
    ] {
        let peak_depth = runtime.block_on(async move {
            let bus = Bus::new();
            let mut builder = bus
                .topic::<Vec<u8>>("overload")
                .partitions(8)
                .capacity(256)
                .concurrency(4)
                .backpressure(policy);
            if at_most_once {
                builder = builder.at_most_once();
            }
            let topic = builder.create().expect("topic");
            topic
                .subscribe("slow", |_: Event<Vec<u8>>| async {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    Ok(())
                })
                .start()
                .expect("subscribe");
            let end = Instant::now() + Duration::from_secs(1);
            let mut peak = 0;
            let mut n = 0u64;
            while Instant::now() < end {
                // 1 KiB payloads, so an unbounded queue would show in RSS at once.
                let event = Event::new("e", vec![0u8; 1024])
                    .expect("valid")
                    .with_key(format!("k{}", n % 512));
                let _ = topic.publish(event).await;
                n += 1;
                if n % 256 == 0 {
                    peak = peak.max(topic.stats().depth);
                    tokio::task::yield_now().await;
                }
            }
            bus.shutdown(Duration::from_secs(5)).await;
            peak
        });
        println!(
            "overload {policy:?}: peak depth {peak_depth} (bound 8 x 256 = 2048), peak RSS {} KiB",
            peak_rss_kib().unwrap_or(0)
        );
    }
    println!(
        "peak RSS before the overload runs: {} KiB",
        before.unwrap_or(0)
    );
}

fn bench_reports(_: &mut Criterion) {
    report_allocations(1);
    report_allocations(4);
    report_overload_rss();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench_reports, bench_publish
}
criterion_main!(benches);
