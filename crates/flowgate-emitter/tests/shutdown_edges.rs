//! Shutdown and unsubscribe at their edges: a blocked producer that is never polled again,
//! shutdown called from a handler, a cancelled shutdown, two shutdowns at once, a concurrency
//! cap racing unsubscribe, slow handlers and blocked producers, a panicking dead-letter sink.
//! Each of these once broke a promise; each test fails if it breaks again.

mod common;

use std::future::pending;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::SetOnDrop;
use flowgate_core::{DeadLetter, Event, HandlerError, RetryPolicy};
use flowgate_emitter::{Backpressure, EmitError, Emitter};
use flowgate_testkit::wait::{wait_until, within};
use tokio::time::Instant;

/// Subscribes a "job" handler that hangs for ever on event 0 and counts the events it finished.
fn stuck_on_zero(emitter: &Emitter<u32>) -> Arc<AtomicUsize> {
    let ran = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&ran);
    emitter
        .on("job", move |event: Event<u32>| {
            let counter = Arc::clone(&counter);
            async move {
                if *event.payload() == 0 {
                    pending::<()>().await;
                }
                counter.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        })
        .unwrap()
        .detach();
    ran
}

#[tokio::test(start_paused = true)]
async fn shutdown_does_not_wait_for_a_blocked_producer_that_is_never_polled_again() {
    let emitter = Emitter::<u32>::builder()
        .workers(1)
        .queue_capacity(1)
        .backpressure(Backpressure::Block {
            max_wait: Duration::from_secs(3600),
        })
        .build()
        .unwrap();
    stuck_on_zero(&emitter);
    emitter
        .emit_async(Event::new("job", 0).unwrap())
        .await
        .unwrap();
    assert!(wait_until(Duration::from_secs(1), || emitter.stats().in_flight == 1).await);
    emitter
        .emit_async(Event::new("job", 1).unwrap())
        .await
        .unwrap();
    let mut blocked = std::pin::pin!(emitter.emit_async(Event::new("job", 2).unwrap()));
    assert!(
        tokio::time::timeout(Duration::from_millis(10), &mut blocked)
            .await
            .is_err(),
        "the queue is full: the producer waits"
    );
    // The blocked future is kept but not polled while shutdown runs.
    let report = within("shutdown", emitter.shutdown(Duration::from_millis(100))).await;
    assert!(report.deadline_expired);
    let not_run: Vec<_> = report.not_run.iter().map(|e| *e.payload()).collect();
    assert_eq!(not_run, [1]);
    assert_eq!(report.interrupted.len(), 1);
    match blocked.await {
        Err(EmitError::ShutDown(event)) => assert_eq!(*event.payload(), 2, "refused, handed back"),
        other => panic!("expected ShutDown, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_called_from_a_handler_returns_its_report() {
    let emitter = Emitter::<u32>::builder().workers(2).build().unwrap();
    let (reports, mut received) = tokio::sync::mpsc::channel(1);
    let weak = emitter.downgrade();
    emitter
        .on("stop", move |_: Event<u32>| {
            let weak = weak.clone();
            let reports = reports.clone();
            async move {
                if let Some(emitter) = weak.upgrade() {
                    let report = emitter.shutdown(Duration::from_secs(5)).await;
                    let _ = reports.send(report).await;
                }
                Ok(())
            }
        })
        .unwrap()
        .detach();
    emitter
        .emit_async(Event::new("stop", 0).unwrap())
        .await
        .unwrap();
    let report = within("the handler's shutdown", received.recv())
        .await
        .unwrap();
    assert!(
        !report.deadline_expired,
        "it did not wait for its own worker: {report:?}"
    );
    assert!(emitter.is_shut_down());
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_shutdown_still_lets_drop_stop_the_workers() {
    let emitter = Emitter::<u32>::builder().workers(1).build().unwrap();
    let dropped = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&dropped);
    emitter
        .on("job", move |_: Event<u32>| {
            let guard = SetOnDrop(Arc::clone(&flag));
            async move {
                let _guard = guard;
                pending::<()>().await;
                Ok(())
            }
        })
        .unwrap()
        .detach();
    emitter
        .emit_async(Event::new("job", 1).unwrap())
        .await
        .unwrap();
    assert!(wait_until(Duration::from_secs(1), || emitter.stats().in_flight == 1).await);
    let cancelled = tokio::time::timeout(
        Duration::from_millis(50),
        emitter.shutdown(Duration::from_secs(60)),
    )
    .await;
    assert!(cancelled.is_err(), "the outer timeout cancelled shutdown");
    drop(emitter);
    assert!(
        wait_until(Duration::from_secs(1), || dropped.load(Ordering::SeqCst)).await,
        "the worker was stopped by the drop"
    );
}

#[tokio::test(start_paused = true)]
async fn two_shutdowns_at_once_run_everything_once_and_return_early() {
    let emitter = Emitter::<u32>::builder()
        .workers(1)
        .queue_capacity(64)
        .build()
        .unwrap();
    let ran = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&ran);
    emitter
        .on("job", move |_: Event<u32>| {
            let counter = Arc::clone(&counter);
            async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                counter.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        })
        .unwrap()
        .detach();
    for n in 0..10 {
        emitter
            .emit_async(Event::new("job", n).unwrap())
            .await
            .unwrap();
    }
    let started = Instant::now();
    let other = emitter.clone();
    let first = tokio::spawn(async move { other.shutdown(Duration::from_secs(3)).await });
    tokio::task::yield_now().await;
    let second = emitter.shutdown(Duration::from_secs(3)).await;
    let first = first.await.unwrap();
    assert_eq!(ran.load(Ordering::SeqCst), 10, "every event ran once");
    for report in [&first, &second] {
        assert!(
            report.is_complete() && !report.deadline_expired,
            "{report:?}"
        );
    }
    assert_eq!(
        started.elapsed(),
        Duration::from_millis(200),
        "10 events of 20 ms, no deadline"
    );
}

#[tokio::test(start_paused = true)]
async fn an_invocation_waiting_for_a_concurrency_permit_does_not_start_after_unsubscribe() {
    let emitter = Emitter::<u32>::builder().workers(2).build().unwrap();
    let release = Arc::new(tokio::sync::Notify::new());
    let calls = Arc::new(AtomicUsize::new(0));
    let sub = contend_for_one_permit(&emitter, &release, &calls).await;
    assert!(sub.unsubscribe());
    release.notify_one();
    let report = within("shutdown", emitter.shutdown(Duration::from_secs(5))).await;
    assert!(report.is_complete());
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "event 1's call began after unsubscribe"
    );
}

#[tokio::test(start_paused = true)]
async fn a_blocked_producer_gets_in_as_soon_as_a_slow_handler_frees_a_slot() {
    let emitter = Emitter::<u32>::builder()
        .workers(1)
        .queue_capacity(100)
        .backpressure(Backpressure::Block {
            max_wait: Duration::from_secs(2),
        })
        .build()
        .unwrap();
    emitter
        .on("job", |_: Event<u32>| async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Ok(())
        })
        .unwrap()
        .detach();
    emitter
        .emit_async(Event::new("job", 0).unwrap())
        .await
        .unwrap();
    assert!(wait_until(Duration::from_secs(1), || emitter.stats().in_flight == 1).await);
    for n in 1..=100 {
        emitter
            .emit_async(Event::new("job", n).unwrap())
            .await
            .unwrap();
    }
    let started = Instant::now();
    emitter
        .emit_async(Event::new("job", 999).unwrap())
        .await
        .unwrap();
    assert!(
        started.elapsed() <= Duration::from_millis(100),
        "the first slot freed within 100 ms; the producer waited {:?}",
        started.elapsed()
    );
    let _ = emitter.shutdown(Duration::ZERO).await;
}

#[tokio::test(start_paused = true)]
async fn a_panicking_dead_letter_sink_does_not_stop_the_worker() {
    let emitter = Emitter::<u32>::builder()
        .workers(1)
        .retry(RetryPolicy::never())
        .dead_letters(|_: DeadLetter<u32>| panic!("sink bug"))
        .build()
        .unwrap();
    emitter
        .on("job", |event: Event<u32>| async move {
            if *event.payload() == 0 {
                Err(HandlerError::permanent("bad"))
            } else {
                Ok(())
            }
        })
        .unwrap()
        .detach();
    for n in 0..4 {
        emitter
            .emit_async(Event::new("job", n).unwrap())
            .await
            .unwrap();
    }
    let report = within("shutdown", emitter.shutdown(Duration::from_secs(5))).await;
    assert!(report.is_complete(), "{report:?}");
    assert_eq!((report.stats.handled, report.stats.dead_lettered), (3, 1));
}

/// Subscribes [`stuck_on_zero`], emits events 0..`count`, and waits until event 0 is stuck.
async fn hang_on_zero(emitter: &Emitter<u32>, count: u32) -> Arc<AtomicUsize> {
    let ran = stuck_on_zero(emitter);
    for n in 0..count {
        emitter
            .emit_async(Event::new("job", n).unwrap())
            .await
            .unwrap();
    }
    assert!(wait_until(Duration::from_secs(1), || emitter.stats().in_flight == 1).await);
    ran
}

#[tokio::test(start_paused = true)]
async fn a_shutdown_after_a_cancelled_one_still_drains_and_reports() {
    let emitter = Emitter::<u32>::builder()
        .workers(1)
        .queue_capacity(8)
        .build()
        .unwrap();
    let ran = hang_on_zero(&emitter, 3).await;
    let cancelled = tokio::time::timeout(
        Duration::from_millis(50),
        emitter.shutdown(Duration::from_secs(60)),
    )
    .await;
    assert!(cancelled.is_err());
    // It takes over the drain the cancelled call gave up (rather than waiting for it for ever).
    let report = within("second shutdown", emitter.shutdown(Duration::from_secs(1))).await;
    assert!(!report.drain_in_progress, "{report:?}");
    let reported = report.not_run.len() + report.interrupted.len();
    assert_eq!(
        ran.load(Ordering::SeqCst) + reported,
        3,
        "every accepted event accounted for"
    );
    assert!(report.interrupted.iter().any(|i| *i.event.payload() == 0));
}

#[tokio::test(start_paused = true)]
async fn a_waiting_shutdown_that_times_out_does_not_claim_completeness() {
    let emitter = Emitter::<u32>::builder().workers(1).build().unwrap();
    let _ran = hang_on_zero(&emitter, 1).await;
    let other = emitter.clone();
    let draining = tokio::spawn(async move { other.shutdown(Duration::from_secs(10)).await });
    tokio::task::yield_now().await;
    let waiting = emitter.shutdown(Duration::from_secs(1)).await;
    assert!(
        waiting.drain_in_progress && !waiting.is_complete(),
        "{waiting:?}"
    );
    let drained = draining.await.unwrap();
    assert_eq!(
        drained.interrupted.len(),
        1,
        "the draining call reports the stuck event"
    );
}

#[tokio::test(start_paused = true)]
async fn a_handler_shutdown_during_an_external_one_does_not_hold_it_up() {
    let emitter = Emitter::<u32>::builder().workers(2).build().unwrap();
    let weak = emitter.downgrade();
    emitter
        .on("stop", move |_: Event<u32>| {
            let weak = weak.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if let Some(emitter) = weak.upgrade() {
                    let report = emitter.shutdown(Duration::MAX).await;
                    assert!(report.drain_in_progress, "the external call drains");
                }
                Ok(())
            }
        })
        .unwrap()
        .detach();
    emitter
        .emit_async(Event::new("stop", 1).unwrap())
        .await
        .unwrap();
    assert!(wait_until(Duration::from_secs(1), || emitter.stats().in_flight == 1).await);
    let started = Instant::now();
    let report = emitter.shutdown(Duration::from_secs(30)).await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "waited {:?}",
        started.elapsed()
    );
    assert!(report.is_complete(), "{report:?}");
}

#[tokio::test(start_paused = true)]
async fn shutdown_from_the_only_worker_with_a_full_queue_returns() {
    let emitter = Emitter::<u32>::builder()
        .workers(1)
        .queue_capacity(2)
        .build()
        .unwrap();
    let weak = emitter.downgrade();
    let go = Arc::new(tokio::sync::Notify::new());
    let (reports, mut received) = tokio::sync::mpsc::channel(1);
    let signal = Arc::clone(&go);
    emitter
        .on("job", move |event: Event<u32>| {
            let (weak, signal, reports) = (weak.clone(), Arc::clone(&signal), reports.clone());
            async move {
                if *event.payload() == 0 {
                    signal.notified().await;
                    if let Some(emitter) = weak.upgrade() {
                        let _ = reports.send(emitter.shutdown(Duration::MAX).await).await;
                    }
                }
                Ok(())
            }
        })
        .unwrap()
        .detach();
    emitter
        .emit_async(Event::new("job", 0).unwrap())
        .await
        .unwrap();
    assert!(wait_until(Duration::from_secs(1), || emitter.stats().in_flight == 1).await);
    emitter
        .emit_async(Event::new("job", 1).unwrap())
        .await
        .unwrap();
    emitter
        .emit_async(Event::new("job", 2).unwrap())
        .await
        .unwrap();
    assert_eq!(emitter.stats().queued, 2);
    go.notify_one();
    let report = within("the handler's shutdown", received.recv())
        .await
        .unwrap();
    let not_run: Vec<_> = report.not_run.iter().map(|e| *e.payload()).collect();
    assert_eq!(
        not_run,
        [1, 2],
        "the calling worker cannot run them; they are reported"
    );
}

#[tokio::test(start_paused = true)]
async fn an_unsubscribed_handler_does_not_keep_the_emitter_alive() {
    let emitter = Emitter::<u32>::builder().workers(1).build().unwrap();
    let held = emitter.clone();
    let sub = emitter
        .on("job", move |_: Event<u32>| {
            let _strong = held.clone();
            async { Ok(()) }
        })
        .unwrap();
    emitter
        .emit_async(Event::new("job", 1).unwrap())
        .await
        .unwrap();
    assert!(wait_until(Duration::from_secs(1), || emitter.stats().handled == 1).await);
    assert!(sub.unsubscribe());
    let weak = emitter.downgrade();
    drop(emitter);
    assert!(
        wait_until(Duration::from_secs(1), || weak.upgrade().is_none()).await,
        "an idle worker's cached snapshot kept the unsubscribed handler, and the emitter, alive"
    );
}

#[tokio::test(start_paused = true)]
async fn unsubscribe_releases_an_invocation_waiting_for_a_permit() {
    let emitter = Emitter::<u32>::builder().workers(2).build().unwrap();
    let never = Arc::new(tokio::sync::Notify::new());
    let sub = contend_for_one_permit(&emitter, &never, &Arc::new(AtomicUsize::new(0))).await;
    let others = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&others);
    emitter
        .on("other", move |_: Event<u32>| {
            counter.fetch_add(1, Ordering::SeqCst);
            async { Ok(()) }
        })
        .unwrap()
        .detach();
    assert!(sub.unsubscribe());
    emitter
        .emit_async(Event::new("other", 2).unwrap())
        .await
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || others.load(Ordering::SeqCst)
            == 1)
        .await,
        "the worker stayed parked on the permit of an unsubscribed handler"
    );
    let _ = emitter.shutdown(Duration::ZERO).await;
}

/// Subscribes a "job" handler capped at one invocation at a time (counting its calls; event 0
/// waits for `release`), emits events 0 and 1 and waits until both workers hold one: the first
/// runs with the only permit, the second waits for it.
async fn contend_for_one_permit(
    emitter: &Emitter<u32>,
    release: &Arc<tokio::sync::Notify>,
    calls: &Arc<AtomicUsize>,
) -> flowgate_emitter::Subscription {
    let (gate, counter) = (Arc::clone(release), Arc::clone(calls));
    let sub = emitter
        .subscribe("job", move |event: Event<u32>| {
            counter.fetch_add(1, Ordering::SeqCst);
            let gate = Arc::clone(&gate);
            async move {
                if *event.payload() == 0 {
                    gate.notified().await;
                }
                Ok(())
            }
        })
        .concurrency(1)
        .start()
        .unwrap();
    for n in 0..2 {
        emitter
            .emit_async(Event::new("job", n).unwrap())
            .await
            .unwrap();
    }
    assert!(wait_until(Duration::from_secs(1), || emitter.stats().in_flight == 2).await);
    sub
}
