//! Memory stays bounded under overload: a million `emit_async` calls against handlers far
//! slower than the producer never put more than `queue_capacity` events in the queue (plus one
//! per idle worker being handed one, the documented bound), and every call is accounted for
//! exactly: it ran, or it was refused with the typed error.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use flowgate_core::Event;
use flowgate_emitter::{Backpressure, EmitError, Emitter};
use flowgate_testkit::wait::within;

const QUEUE: usize = 1_000;
const WORKERS: usize = 4;
/// The documented bound: the queue, plus one event per idle worker being handed one.
const BOUND: usize = QUEUE + WORKERS;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_emits_against_sleeping_handlers_stay_bounded_and_add_up() {
    const CALLS: u64 = 1_000_000;
    let emitter = Emitter::<u64>::builder()
        .workers(WORKERS)
        .queue_capacity(QUEUE)
        .backpressure(Backpressure::Reject)
        .build()
        .unwrap();
    let ran = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&ran);
    let _sleeper = emitter
        .on("work", move |_: Event<u64>| {
            let counter = Arc::clone(&counter);
            async move {
                tokio::time::sleep(Duration::from_millis(1)).await;
                counter.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
        })
        .unwrap();

    let kind = flowgate_core::EventType::new("work").unwrap();
    let (mut accepted, mut refused, mut peak) = (0_u64, 0_u64, 0_usize);
    for n in 0..CALLS {
        match emitter.emit_async(Event::with_type(kind.clone(), n)).await {
            Ok(()) => accepted += 1,
            Err(EmitError::QueueFull(event)) => {
                assert_eq!(*event.payload(), n, "the refused event comes back");
                refused += 1;
            }
            Err(other) => panic!("call {n}: unexpected {other:?}"),
        }
        let queued = emitter.stats().queued;
        assert!(queued <= BOUND, "call {n}: {queued} queued, bound {BOUND}");
        peak = peak.max(queued);
        if n % 512 == 0 {
            tokio::task::yield_now().await;
        }
    }

    let report = within("drain", emitter.shutdown(Duration::from_secs(60))).await;
    assert!(report.is_complete(), "{report:?}");
    let stats = report.stats;
    assert_eq!(accepted + refused, CALLS);
    assert_eq!(stats.emitted, accepted);
    assert_eq!(stats.rejected, refused);
    assert_eq!(
        ran.load(Ordering::Relaxed),
        accepted,
        "every accepted call ran once"
    );
    assert_eq!(stats.handled, accepted);
    assert_eq!((stats.queued, stats.in_flight), (0, 0));
    assert!(
        accepted >= QUEUE as u64,
        "the queue filled at least once: {accepted}"
    );
    assert!(refused > 0, "the producer outran the handlers");
    assert!(
        (QUEUE..=BOUND).contains(&peak),
        "the queue filled up ({peak}) and never passed its bound"
    );
    println!("accepted {accepted}, refused {refused}, peak queue {peak}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_producers_are_held_at_the_bound_and_lose_nothing() {
    const CALLS: u64 = 100_000;
    let emitter = Emitter::<u64>::builder()
        .workers(WORKERS)
        .queue_capacity(QUEUE)
        .backpressure(Backpressure::Block {
            max_wait: Duration::from_secs(30),
        })
        .build()
        .unwrap();
    let sum = Arc::new(AtomicU64::new(0));
    let total = Arc::clone(&sum);
    let _slow = emitter
        .on("work", move |event: Event<u64>| {
            let total = Arc::clone(&total);
            async move {
                tokio::task::yield_now().await;
                total.fetch_add(*event.payload(), Ordering::Relaxed);
                Ok(())
            }
        })
        .unwrap();
    let kind = flowgate_core::EventType::new("work").unwrap();
    for n in 0..CALLS {
        emitter
            .emit_async(Event::with_type(kind.clone(), n))
            .await
            .unwrap();
        assert!(emitter.stats().queued <= BOUND);
    }
    let report = within("drain", emitter.shutdown(Duration::from_secs(60))).await;
    assert!(report.is_complete());
    assert_eq!(report.stats.handled, CALLS);
    assert_eq!(report.stats.rejected, 0);
    assert_eq!(
        sum.load(Ordering::Relaxed),
        CALLS * (CALLS - 1) / 2,
        "each ran exactly once"
    );
}
