//! Event store benchmarks, each beside a hand-wired baseline in the same run:
//!
//! - `append/*`: appending one event to a stream, beside pushing it onto a `Mutex<Vec<_>>`.
//!   Each timed run appends into a fresh container (10,000 events at most), so memory stays
//!   flat and both sides pay the same growth.
//! - `read_100/*`: reading 100 events from the middle of a 1,000-event stream, beside locking
//!   a `Mutex<Vec<_>>` and cloning a 100-element slice of it.
//! - `live/*`: the time from an append until a subscriber task on another worker has the event,
//!   measured as a ping-pong (the subscriber acknowledges each event through a `Notify`, and the
//!   producer waits for it before the next), beside a `tokio::sync::broadcast` receiver doing
//!   the same. Both sides pay the same acknowledgement.
//!
//! A counting global allocator prints heap allocations per operation before the timings.
//!
//! ```text
//! cargo bench -p flowgate-store --bench store
//! ```
// criterion_group! generates undocumented public functions.
#![allow(missing_docs)]
// Allocation counts are far below 2^52; the ratio is printed, not computed on.
#![allow(clippy::cast_precision_loss)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use flowgate_core::Event;
use flowgate_store::{ExpectedVersion, Recorded, Start, Store, Target};
use tokio::runtime::Runtime;
use tokio::sync::{broadcast, Notify};

/// Counts every allocation, so the bench can print allocations per operation.
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

fn event() -> Event<u64> {
    Event::new("account.deposited", 7).expect("valid type")
}

/// Events appended into one fresh container per timed chunk.
const CHUNK: u64 = 10_000;

/// One container under test for the append bench.
trait Appender {
    fn fresh() -> Self;
    fn append(&self, event: Event<u64>);
}

impl Appender for Store<u64> {
    fn fresh() -> Self {
        Store::new()
    }

    #[inline]
    fn append(&self, event: Event<u64>) {
        black_box(Store::append(
            self,
            "account-1",
            ExpectedVersion::Any,
            event,
        ))
        .ok();
    }
}

/// The baseline: a vector behind a mutex.
struct Locked(Mutex<Vec<Event<u64>>>);

impl Appender for Locked {
    fn fresh() -> Self {
        Self(Mutex::new(Vec::new()))
    }

    #[inline]
    fn append(&self, event: Event<u64>) {
        self.0.lock().expect("not poisoned").push(event);
    }
}

/// Appends `iters` clones of one event, into a fresh container every `CHUNK`; only the appends
/// are timed.
fn time_appends<A: Appender>(iters: u64, event: &Event<u64>) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(CHUNK);
        let container = A::fresh();
        let start = Instant::now();
        for _ in 0..n {
            container.append(event.clone());
        }
        total += start.elapsed();
        drop(container);
        left -= n;
    }
    total
}

fn bench_append(c: &mut Criterion) {
    let ev = event();
    let store = Store::<u64>::new();
    for _ in 0..1_000 {
        Appender::append(&store, ev.clone());
    }
    let before = allocations();
    for _ in 0..1_000 {
        Appender::append(&store, ev.clone());
    }
    println!(
        "allocations per append: {:.3}",
        (allocations() - before) as f64 / 1_000.0
    );

    let mut group = c.benchmark_group("append");
    group.throughput(Throughput::Elements(1));
    group.bench_function("flowgate_store_append", |b| {
        b.iter_custom(|iters| time_appends::<Store<u64>>(iters, &ev));
    });
    group.bench_function("baseline_mutex_vec_push", |b| {
        b.iter_custom(|iters| time_appends::<Locked>(iters, &ev));
    });
    group.finish();
}

fn bench_read(c: &mut Criterion) {
    let store = Store::<u64>::new();
    for i in 0..1_000 {
        store
            .append(
                "account-1",
                ExpectedVersion::Any,
                Event::new("e", i).expect("valid"),
            )
            .expect("appended");
    }
    let records: Vec<Recorded<u64>> = store
        .read_stream_forward("account-1", 0, 1_000)
        .expect("read")
        .events;
    let baseline = Mutex::new(records);

    let before = allocations();
    for _ in 0..1_000 {
        black_box(store.read_stream_forward("account-1", 500, 100)).ok();
    }
    println!(
        "allocations per 100-event read: {:.3}",
        (allocations() - before) as f64 / 1_000.0
    );

    let mut group = c.benchmark_group("read_100");
    group.throughput(Throughput::Elements(100));
    group.bench_function("flowgate_read_stream_forward", |b| {
        b.iter(|| store.read_stream_forward("account-1", 500, 100));
    });
    group.bench_function("baseline_mutex_vec_slice_clone", |b| {
        b.iter(|| baseline.lock().expect("not poisoned")[500..600].to_vec());
    });
    group.finish();
}

fn multi_thread() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Ping-pong through a flowgate subscription: append, wait for the subscriber's ack.
fn live_flowgate(runtime: &Runtime, iters: u64, ev: &Event<u64>) -> Duration {
    runtime.block_on(async {
        let store = Store::<u64>::new();
        let ack = Arc::new(Notify::new());
        let mut sub = store
            .subscribe(Target::category("account"))
            .start(Start::End)
            .open()
            .expect("subscribed");
        let subscriber = {
            let ack = Arc::clone(&ack);
            tokio::spawn(async move {
                for _ in 0..iters {
                    black_box(sub.next().await);
                    ack.notify_one();
                }
            })
        };
        let start = Instant::now();
        for _ in 0..iters {
            store
                .append("account-1", ExpectedVersion::Any, ev.clone())
                .expect("appended");
            ack.notified().await;
        }
        let elapsed = start.elapsed();
        subscriber.await.expect("subscriber");
        elapsed
    })
}

/// The same ping-pong through a tokio broadcast channel.
fn live_broadcast(runtime: &Runtime, iters: u64, ev: &Event<u64>) -> Duration {
    runtime.block_on(async {
        let (sender, mut receiver) = broadcast::channel::<Event<u64>>(1024);
        let ack = Arc::new(Notify::new());
        let subscriber = {
            let ack = Arc::clone(&ack);
            tokio::spawn(async move {
                for _ in 0..iters {
                    black_box(receiver.recv().await.ok());
                    ack.notify_one();
                }
            })
        };
        let start = Instant::now();
        for _ in 0..iters {
            sender.send(ev.clone()).expect("a receiver");
            ack.notified().await;
        }
        let elapsed = start.elapsed();
        subscriber.await.expect("subscriber");
        elapsed
    })
}

fn bench_live(c: &mut Criterion) {
    let runtime = multi_thread();
    let ev = event();
    let mut group = c.benchmark_group("live");
    group.throughput(Throughput::Elements(1));
    group.bench_function("flowgate_category_subscription", |b| {
        b.iter_custom(|iters| live_flowgate(&runtime, iters, &ev));
    });
    group.bench_function("baseline_tokio_broadcast_receiver", |b| {
        b.iter_custom(|iters| live_broadcast(&runtime, iters, &ev));
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench_append, bench_read, bench_live
}
criterion_main!(benches);
