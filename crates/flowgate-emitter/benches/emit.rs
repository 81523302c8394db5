//! Emitter benchmarks, each beside a hand-wired baseline in the same run:
//!
//! - `emit/*`: inline `emit` to 1 and 5 no-op handlers, beside calling one boxed handler
//!   directly (the floor: one boxed future per invocation).
//! - `hand_off_{current_thread,multi_thread}/*`: `emit_async` through a one-worker pool, end to
//!   end until the handler ran, beside a hand-wired tokio mpsc channel + worker task and a flume
//!   channel + worker task doing the same hand-off, on a one-thread and a two-thread runtime.
//!   The producer is spawned as a task, as in a service, and sends clones of one event (one
//!   reference-count increment each), so the figures are the hand-off itself.
//!
//! A counting global allocator prints heap allocations per operation before the timings.
//!
//! ```text
//! cargo bench -p flowgate-emitter --bench emit
//! ```
// criterion_group! generates undocumented public functions.
#![allow(missing_docs)]
// Allocation counts are far below 2^52; the ratio is printed, not computed on.
#![allow(clippy::cast_precision_loss)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::future::Future;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use flowgate_core::{invoke, BoxHandler, Event, HandlerResult};
use flowgate_emitter::{Backpressure, Emitter};
use tokio::runtime::Runtime;
use tokio::sync::Notify;

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

async fn noop(_: Event<u64>) -> HandlerResult {
    Ok(())
}

fn event() -> Event<u64> {
    Event::new("order.placed", 7).expect("valid type")
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

/// Prints allocations per call of `op`, measured over `n` calls after a warm-up.
fn report_allocations<F, Fut>(runtime: &Runtime, name: &str, n: u64, mut op: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    runtime.block_on(async {
        for _ in 0..1_000 {
            op().await;
        }
        let before = allocations();
        for _ in 0..n {
            op().await;
        }
        let per_op = (allocations() - before) as f64 / n as f64;
        println!("allocations per {name}: {per_op:.3}");
    });
}

fn emitter_with(handlers: usize) -> Emitter<u64> {
    let emitter = Emitter::<u64>::builder().build().expect("emitter");
    for _ in 0..handlers {
        emitter
            .on("order.placed", noop)
            .expect("subscribe")
            .detach();
    }
    emitter
}

fn bench_emit(c: &mut Criterion) {
    let runtime = current_thread();
    let (one, five) = runtime.block_on(async { (emitter_with(1), emitter_with(5)) });
    let boxed = BoxHandler::new(noop);
    let ev = event();

    report_allocations(&runtime, "emit, 1 handler", 100_000, || async {
        black_box(one.emit(ev.clone()).await).ok();
    });
    report_allocations(&runtime, "emit, 5 handlers", 100_000, || async {
        black_box(five.emit(ev.clone()).await).ok();
    });
    report_allocations(&runtime, "direct boxed handler call", 100_000, || async {
        black_box(invoke(&boxed, ev.clone()).await).ok();
    });

    let mut group = c.benchmark_group("emit");
    group.throughput(Throughput::Elements(1));
    group.bench_function("flowgate_emit_1_handler", |b| {
        b.to_async(&runtime).iter(|| one.emit(ev.clone()));
    });
    group.bench_function("flowgate_emit_5_handlers", |b| {
        b.to_async(&runtime).iter(|| five.emit(ev.clone()));
    });
    group.bench_function("baseline_direct_boxed_call", |b| {
        b.to_async(&runtime).iter(|| invoke(&boxed, ev.clone()));
    });
    group.finish();
}

/// The sending side of one hand-off under test: flowgate's `emit_async`, or a channel whose
/// consumer task is already running.
trait Sink: Send + Sync + 'static {
    fn send(&self, event: Event<u64>) -> impl Future<Output = ()> + Send;
}

impl Sink for Emitter<u64> {
    async fn send(&self, event: Event<u64>) {
        self.emit_async(event).await.expect("accepted");
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

/// One hand-off under test and the counter its handler ticks.
struct HandOff<S> {
    sink: S,
    done: Arc<Done>,
}

impl<S: Sink> HandOff<S> {
    /// A spawned producer hands `n` clones of one event over; returns when all were handled.
    fn run(self: &Arc<Self>, runtime: &Runtime, n: u64) -> Duration {
        self.done.arm(n);
        let this = Arc::clone(self);
        runtime.block_on(async move {
            let start = Instant::now();
            let done = Arc::clone(&this.done);
            tokio::spawn(async move {
                let event = Event::new("order.placed", 7).expect("valid type");
                let every = YIELD_EVERY.load(Ordering::Relaxed);
                for i in 0..n {
                    this.sink.send(event.clone()).await;
                    if every != 0 && (i + 1) % every == 0 {
                        tokio::task::yield_now().await;
                    }
                }
            });
            done.notify.notified().await;
            start.elapsed()
        })
    }
}

/// flowgate: a one-worker pool, queue of 1,024, `Block` backpressure.
fn flowgate_pool(runtime: &Runtime) -> Arc<HandOff<Emitter<u64>>> {
    let done = Done::new();
    let tick = Arc::clone(&done);
    let emitter = runtime.block_on(async move {
        let emitter = Emitter::<u64>::builder()
            .workers(1)
            .queue_capacity(1024)
            .backpressure(Backpressure::Block {
                max_wait: Duration::from_secs(60),
            })
            .build()
            .expect("emitter");
        emitter
            .on("order.placed", move |_: Event<u64>| {
                tick.tick();
                std::future::ready(Ok(()))
            })
            .expect("subscribe")
            .detach();
        emitter
    });
    Arc::new(HandOff {
        sink: emitter,
        done,
    })
}

/// The hand-wired baseline: a bounded tokio mpsc channel and one worker task calling the
/// handler directly (no boxing, no registry).
fn tokio_mpsc(runtime: &Runtime) -> Arc<HandOff<tokio::sync::mpsc::Sender<Event<u64>>>> {
    let done = Done::new();
    let (sink, mut receiver) = tokio::sync::mpsc::channel::<Event<u64>>(1024);
    let tick = Arc::clone(&done);
    runtime.spawn(async move {
        while let Some(event) = receiver.recv().await {
            black_box(&event);
            tick.tick();
        }
    });
    Arc::new(HandOff { sink, done })
}

/// The same hand-off on a bounded flume channel.
fn flume_channel(runtime: &Runtime) -> Arc<HandOff<flume::Sender<Event<u64>>>> {
    let done = Done::new();
    let (sink, receiver) = flume::bounded::<Event<u64>>(1024);
    let tick = Arc::clone(&done);
    runtime.spawn(async move {
        while let Ok(event) = receiver.recv_async().await {
            black_box(&event);
            tick.tick();
        }
    });
    Arc::new(HandOff { sink, done })
}

fn bench_hand_off(c: &mut Criterion) {
    // Where the producer runs changes the cost of every hand-off: on one thread the consumer
    // drains in batches; on two, each hand-off may wake the other thread.
    for (label, runtime) in [
        ("current_thread", current_thread()),
        ("multi_thread", multi_thread()),
    ] {
        let flowgate = flowgate_pool(&runtime);
        let mpsc = tokio_mpsc(&runtime);
        let flume = flume_channel(&runtime);

        for (name, per_event) in [
            ("flowgate emit_async", alloc_per_event(&flowgate, &runtime)),
            ("tokio mpsc hand-off", alloc_per_event(&mpsc, &runtime)),
            ("flume hand-off", alloc_per_event(&flume, &runtime)),
        ] {
            println!("allocations per event, {name}, {label}: {per_event:.3}");
        }

        let runs: [Run<'_>; 3] = [
            (
                "flowgate emit_async",
                Box::new(|n| flowgate.run(&runtime, n)),
            ),
            ("tokio mpsc + worker", Box::new(|n| mpsc.run(&runtime, n))),
            ("flume + worker", Box::new(|n| flume.run(&runtime, n))),
        ];
        paired(label, &runs, 0);
        paired(label, &runs, 128);

        let mut group = c.benchmark_group(format!("hand_off_{label}"));
        group.throughput(Throughput::Elements(1));
        group.bench_function("flowgate_emit_async_1_worker", |b| {
            b.iter_custom(|iters| flowgate.run(&runtime, iters));
        });
        group.bench_function("baseline_tokio_mpsc_worker", |b| {
            b.iter_custom(|iters| mpsc.run(&runtime, iters));
        });
        group.bench_function("baseline_flume_worker", |b| {
            b.iter_custom(|iters| flume.run(&runtime, iters));
        });
        group.finish();
    }
}

/// The producer of a hand-off yields to the runtime after every this many events (0: never).
/// Criterion's rows run with 0; the paired comparison also with 128, as a service's producers
/// yield between requests.
static YIELD_EVERY: AtomicU64 = AtomicU64::new(0);

/// A hand-off under a name: `run(n)` hands `n` events over and returns the time until all ran.
type Run<'a> = (&'static str, Box<dyn Fn(u64) -> Duration + 'a>);

/// Rounds of the paired comparison, and events per hand-off per round.
const ROUNDS: usize = 41;
const ROUND_EVENTS: u64 = 100_000;

/// The paired comparison, as in the top-level `hand_off` bench: on this shared machine a
/// criterion row's figure depends on the minute it ran in and on where the runtime placed its
/// tasks, so each round runs every hand-off (`runs[0]` is flowgate, `runs[1]` tokio mpsc) once
/// on `ROUND_EVENTS` events, back to back, the first one rotating, and the ratio to tokio mpsc
/// is taken within each round. Prints the medians over `ROUNDS` rounds (after a warm-up round)
/// and how many rounds missed the 1.5× target.
fn paired(label: &str, runs: &[Run<'_>], yield_every: u64) {
    YIELD_EVERY.store(yield_every, Ordering::Relaxed);
    let k = runs.len();
    let mut per_event: Vec<Vec<f64>> = vec![Vec::new(); k];
    for round in 0..=ROUNDS {
        for j in 0..k {
            let v = (round + j) % k;
            let took = (runs[v].1)(ROUND_EVENTS);
            if round > 0 {
                per_event[v].push(took.as_secs_f64() * 1e9 / ROUND_EVENTS as f64);
            }
        }
    }
    YIELD_EVERY.store(0, Ordering::Relaxed);
    let pacing = match yield_every {
        0 => "a producer that never yields".to_owned(),
        n => format!("a producer that yields every {n} events"),
    };
    println!("paired rounds, {label}, {pacing} ({ROUNDS} rounds of {ROUND_EVENTS} events):");
    for ((name, _), samples) in runs.iter().zip(&per_event) {
        println!("  {name:<22} {:>7.1} ns/event", median(samples.clone()));
    }
    let ratios: Vec<f64> = per_event[0]
        .iter()
        .zip(&per_event[1])
        .map(|(a, b)| a / b)
        .collect();
    let above = ratios.iter().filter(|&&r| r > 1.5).count();
    println!(
        "  flowgate / tokio mpsc  median {:.2}x (target <= 1.5x; {above} of {ROUNDS} rounds above it)",
        median(ratios)
    );
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn alloc_per_event<S: Sink>(hand_off: &Arc<HandOff<S>>, runtime: &Runtime) -> f64 {
    const N: u64 = 100_000;
    hand_off.run(runtime, N);
    let before = allocations();
    hand_off.run(runtime, N);
    (allocations() - before) as f64 / N as f64
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench_emit, bench_hand_off
}
criterion_main!(benches);
