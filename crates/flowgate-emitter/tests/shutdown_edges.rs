//! Shutdown and unsubscribe at their edges: a blocked producer that is never polled again,
//! shutdown called from a handler, a cancelled shutdown, two shutdowns at once, a concurrency
//! cap racing unsubscribe, slow handlers and blocked producers, a panicking dead-letter sink.
//! Each of these once broke a promise; each test fails if it breaks again.

mod common;

use std::future::pending;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{wait_until, within, SetOnDrop};
use flowgate_core::{DeadLetter, Event, HandlerError, RetryPolicy};
use flowgate_emitter::{Backpressure, EmitError, Emitter};
use tokio::time::Instant;

fn stuck_on_zero(emitter: &Emitter<u32>) {
    emitter
        .on("job", |event: Event<u32>| async move {
            if *event.payload() == 0 {
                pending::<()>().await;
            }
            Ok(())
        })
        .unwrap()
        .detach();
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
    let (gate, counter) = (Arc::clone(&release), Arc::clone(&calls));
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
    emitter
        .emit_async(Event::new("job", 0).unwrap())
        .await
        .unwrap();
    emitter
        .emit_async(Event::new("job", 1).unwrap())
        .await
        .unwrap();
    // Both workers have taken an event: one holds the permit, the other waits for it.
    assert!(wait_until(Duration::from_secs(1), || emitter.stats().in_flight == 2).await);
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
