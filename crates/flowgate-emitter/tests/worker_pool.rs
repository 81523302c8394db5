//! The worker pool behind `emit_async`: retries with exact backoff go to the failing handler
//! only, exhausted or permanent failures reach the dead-letter sink with their attempt count,
//! panics and timeouts are retryable failures that never kill a worker, the per-handler
//! concurrency cap holds, backpressure blocks for a bounded time or rejects, and shutdown
//! accounts for every accepted event. Timing runs on tokio's paused clock.

mod common;

use std::future::pending;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::SetOnDrop;
use flowgate_core::middleware::TimeoutLayer;
use flowgate_core::{DeadLetter, DeadLetterQueue, Event, HandlerError, Jitter, RetryPolicy};
use flowgate_emitter::{Backpressure, EmitError, Emitter};
use flowgate_testkit::wait::{wait_until, within};
use tokio::time::Instant;

fn retry(attempts: u32) -> RetryPolicy {
    RetryPolicy::exponential(attempts, Duration::from_millis(100)).jitter(Jitter::None)
}

#[tokio::test(start_paused = true)]
async fn retries_follow_the_backoff_and_go_to_the_failing_handler_only() {
    let dead = DeadLetterQueue::new(10);
    let emitter = Emitter::<u32>::builder()
        .retry(retry(5))
        .dead_letters(dead.clone())
        .build()
        .unwrap();
    let attempts: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let log = Arc::clone(&attempts);
    let _flaky = emitter
        .on("job", move |_: Event<u32>| {
            let mut log = log.lock().unwrap();
            log.push(Instant::now());
            let fail = log.len() < 3;
            async move {
                if fail {
                    Err(HandlerError::retryable("transient"))
                } else {
                    Ok(())
                }
            }
        })
        .unwrap();
    let steady_runs = Arc::new(AtomicUsize::new(0));
    let runs = Arc::clone(&steady_runs);
    let _steady = emitter
        .on("job", move |_: Event<u32>| {
            runs.fetch_add(1, Ordering::SeqCst);
            async { Ok(()) }
        })
        .unwrap();

    emitter
        .emit_async(Event::new("job", 1).unwrap())
        .await
        .unwrap();
    assert!(wait_until(Duration::from_secs(10), || emitter.stats().handled == 2).await);

    let times = attempts.lock().unwrap().clone();
    assert_eq!(times.len(), 3, "two failures, then success");
    assert_eq!(times[1] - times[0], Duration::from_millis(100));
    assert_eq!(times[2] - times[1], Duration::from_millis(200));
    assert_eq!(
        steady_runs.load(Ordering::SeqCst),
        1,
        "the steady handler ran once"
    );
    let stats = emitter.stats();
    assert_eq!(
        (stats.failed, stats.retried, stats.dead_lettered),
        (2, 2, 0)
    );
    assert!(dead.is_empty());
}

#[tokio::test(start_paused = true)]
async fn exhausted_and_permanent_failures_are_dead_lettered_with_attempts() {
    let dead = DeadLetterQueue::new(10);
    let emitter = Emitter::<u32>::builder()
        .retry(retry(3))
        .dead_letters(dead.clone())
        .build()
        .unwrap();
    let _sub = emitter
        .subscribe("job", |event: Event<u32>| async move {
            if *event.payload() == 0 {
                Err(HandlerError::permanent("bad input"))
            } else {
                Err(HandlerError::retryable("still down"))
            }
        })
        .name("worker")
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
    assert!(wait_until(Duration::from_secs(10), || dead.len() == 2).await);

    let mut letters = dead.drain();
    letters.sort_by_key(|l| *l.event.payload());
    assert_eq!(letters[0].attempts, 1, "a permanent error is not retried");
    assert!(matches!(letters[0].error, HandlerError::Permanent(_)));
    assert_eq!(letters[1].attempts, 3, "retried until the policy gave up");
    assert!(matches!(letters[1].error, HandlerError::Retryable(_)));
    assert!(letters.iter().all(|l| &*l.subscriber == "worker"));
    let stats = emitter.stats();
    assert_eq!(
        (stats.failed, stats.retried, stats.dead_lettered),
        (4, 2, 2)
    );
}

#[tokio::test(start_paused = true)]
async fn a_panic_is_a_retryable_failure_and_the_worker_keeps_going() {
    let emitter = Emitter::<u32>::builder()
        .workers(1)
        .retry(retry(2))
        .build()
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let _sub = emitter
        .on("job", move |_: Event<u32>| {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            async move {
                assert!(n != 0, "first call panics");
                Ok(())
            }
        })
        .unwrap();
    for n in 0..3 {
        emitter
            .emit_async(Event::new("job", n).unwrap())
            .await
            .unwrap();
    }
    let report = within("shutdown", emitter.shutdown(Duration::from_secs(10))).await;
    assert!(report.is_complete());
    let stats = report.stats;
    assert_eq!(
        (stats.panicked, stats.failed, stats.retried, stats.handled),
        (1, 1, 1, 3)
    );
}

#[tokio::test(start_paused = true)]
async fn a_timeout_cancels_the_handler_for_real() {
    let dead: Arc<Mutex<Vec<(Instant, HandlerError)>>> = Arc::default();
    let sink = Arc::clone(&dead);
    let emitter = Emitter::<u32>::builder()
        .retry(RetryPolicy::never())
        .dead_letters(move |letter: DeadLetter<u32>| {
            sink.lock().unwrap().push((Instant::now(), letter.error));
        })
        .build()
        .unwrap();
    let cancelled = Arc::new(AtomicBool::new(false));
    let finished = Arc::new(AtomicBool::new(false));
    let (c, f) = (Arc::clone(&cancelled), Arc::clone(&finished));
    let _slow = emitter
        .subscribe("job", move |_: Event<u32>| {
            let guard = SetOnDrop(Arc::clone(&c));
            let finished = Arc::clone(&f);
            async move {
                let _guard = guard;
                tokio::time::sleep(Duration::from_secs(60)).await;
                finished.store(true, Ordering::SeqCst);
                Ok(())
            }
        })
        .layer(TimeoutLayer::new(Duration::from_secs(1)))
        .start()
        .unwrap();

    let started = Instant::now();
    emitter
        .emit_async(Event::new("job", 1).unwrap())
        .await
        .unwrap();
    assert!(wait_until(Duration::from_secs(10), || dead.lock().unwrap().len() == 1).await);
    let (at, error) = dead.lock().unwrap().pop().unwrap();
    assert_eq!(
        at - started,
        Duration::from_secs(1),
        "failed at the timeout, not later"
    );
    assert!(
        cancelled.load(Ordering::SeqCst),
        "the handler's future was dropped"
    );
    assert!(matches!(error, HandlerError::TimedOut(d) if d == Duration::from_secs(1)));
    // Long after the handler would have finished, it still has not.
    tokio::time::advance(Duration::from_secs(120)).await;
    assert!(!finished.load(Ordering::SeqCst));
}

#[tokio::test(start_paused = true)]
async fn the_per_handler_concurrency_cap_holds() {
    let emitter = Emitter::<u32>::builder().workers(8).build().unwrap();
    let current = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (cur, pk) = (Arc::clone(&current), Arc::clone(&peak));
    let _capped = emitter
        .subscribe("job", move |_: Event<u32>| {
            let (cur, pk) = (Arc::clone(&cur), Arc::clone(&pk));
            async move {
                let now = cur.fetch_add(1, Ordering::SeqCst) + 1;
                pk.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(10)).await;
                cur.fetch_sub(1, Ordering::SeqCst);
                Ok(())
            }
        })
        .concurrency(2)
        .start()
        .unwrap();
    for n in 0..20 {
        emitter
            .emit_async(Event::new("job", n).unwrap())
            .await
            .unwrap();
    }
    let report = within("shutdown", emitter.shutdown(Duration::from_secs(10))).await;
    assert!(report.is_complete());
    assert_eq!(report.stats.handled, 20);
    assert_eq!(
        peak.load(Ordering::SeqCst),
        2,
        "eight workers, but two at a time"
    );
    // 20 jobs of 10 ms, two at a time.
}

#[tokio::test(start_paused = true)]
async fn block_waits_at_most_max_wait_and_reject_refuses_at_once() {
    for policy in [
        Backpressure::Block {
            max_wait: Duration::from_millis(250),
        },
        Backpressure::Reject,
    ] {
        let emitter = Emitter::<u32>::builder()
            .workers(1)
            .queue_capacity(1)
            .backpressure(policy)
            .build()
            .unwrap();
        let release = Arc::new(tokio::sync::Notify::new());
        let gate = Arc::clone(&release);
        let _blocked = emitter
            .on("job", move |_: Event<u32>| {
                let gate = Arc::clone(&gate);
                async move {
                    gate.notified().await;
                    Ok(())
                }
            })
            .unwrap();
        emitter
            .emit_async(Event::new("job", 1).unwrap())
            .await
            .unwrap();
        assert!(wait_until(Duration::from_secs(1), || emitter.stats().in_flight == 1).await);
        emitter
            .emit_async(Event::new("job", 2).unwrap())
            .await
            .unwrap();
        assert_eq!(emitter.stats().queued, 1);

        let started = Instant::now();
        let err = emitter
            .emit_async(Event::new("job", 3).unwrap())
            .await
            .unwrap_err();
        if let Backpressure::Block { max_wait } = policy {
            assert!(matches!(err, EmitError::Timeout(_)), "{err:?}");
            assert_eq!(started.elapsed(), max_wait);
        } else {
            assert!(matches!(err, EmitError::QueueFull(_)), "{err:?}");
            assert_eq!(started.elapsed(), Duration::ZERO);
        }
        assert!(err.is_retryable());
        assert_eq!(
            *err.into_event().unwrap().payload(),
            3,
            "the event comes back"
        );
        assert_eq!(emitter.stats().rejected, 1);

        release.notify_one();
        release.notify_one();
        // Notify keeps at most one permit: release the second job once the first is done.
        assert!(wait_until(Duration::from_secs(1), || emitter.stats().handled >= 1).await);
        release.notify_one();
        let report = within("shutdown", emitter.shutdown(Duration::from_secs(5))).await;
        assert!(report.is_complete(), "{report:?}");
        assert_eq!(report.stats.handled, 2);
    }
}

#[tokio::test(start_paused = true)]
async fn blocked_producers_are_woken_as_workers_free_room() {
    // Workers wake blocked producers in batches; a wake-up that never came would leave a
    // producer waiting until its hour-long deadline, which the paused clock would jump to.
    let emitter = Emitter::<u32>::builder()
        .workers(3)
        .queue_capacity(8)
        .backpressure(Backpressure::Block {
            max_wait: Duration::from_secs(3600),
        })
        .build()
        .unwrap();
    let _sub = emitter
        .on("job", |_: Event<u32>| async {
            tokio::task::yield_now().await;
            Ok(())
        })
        .unwrap();
    let started = Instant::now();
    let producers: Vec<_> = (0..3)
        .map(|p| {
            let emitter = emitter.clone();
            tokio::spawn(async move {
                for n in 0..500 {
                    emitter
                        .emit_async(Event::new("job", p * 1000 + n).unwrap())
                        .await
                        .expect("accepted within the wait");
                }
            })
        })
        .collect();
    for producer in producers {
        producer.await.unwrap();
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "a producer waited for its deadline: {:?}",
        started.elapsed()
    );
    let report = within("shutdown", emitter.shutdown(Duration::from_secs(10))).await;
    assert!(report.is_complete());
    assert_eq!(report.stats.handled, 1500);
}

#[tokio::test(start_paused = true)]
async fn shutdown_reports_every_accepted_event_that_did_not_run() {
    let emitter = Emitter::<u32>::builder()
        .workers(1)
        .queue_capacity(16)
        .build()
        .unwrap();
    let _first = emitter
        .subscribe("job", |event: Event<u32>| async move {
            if *event.payload() == 0 {
                pending::<()>().await; // stuck forever
            }
            Ok(())
        })
        .name("first")
        .start()
        .unwrap();
    let _second = emitter
        .subscribe("job", |_: Event<u32>| async { Ok(()) })
        .name("second")
        .start()
        .unwrap();
    for n in 0..5 {
        emitter
            .emit_async(Event::new("job", n).unwrap())
            .await
            .unwrap();
    }
    let started = Instant::now();
    let report = emitter.shutdown(Duration::from_secs(2)).await;
    assert_eq!(started.elapsed(), Duration::from_secs(2));
    assert!(report.deadline_expired);
    assert_eq!(report.interrupted.len(), 1);
    let stuck = &report.interrupted[0];
    assert_eq!(*stuck.event.payload(), 0);
    let pending: Vec<_> = stuck.pending.iter().map(|s| &**s).collect();
    assert_eq!(pending, ["first", "second"]);
    let not_run: Vec<_> = report.not_run.iter().map(|e| *e.payload()).collect();
    assert_eq!(not_run, [1, 2, 3, 4], "queue order");
    assert_eq!(report.stats.emitted, 5);
    assert_eq!(report.stats.in_flight, 0);
    assert!(matches!(
        emitter.emit_async(Event::new("job", 9).unwrap()).await,
        Err(EmitError::ShutDown(_))
    ));
}

#[tokio::test(start_paused = true)]
async fn dropping_the_emitter_stops_its_workers() {
    let emitter = Emitter::<u32>::builder().workers(2).build().unwrap();
    let dropped = Arc::new(AtomicBool::new(false));
    let running = Arc::new(AtomicBool::new(false));
    let (d, r) = (Arc::clone(&dropped), Arc::clone(&running));
    emitter
        .on("job", move |_: Event<u32>| {
            let guard = SetOnDrop(Arc::clone(&d));
            let running = Arc::clone(&r);
            async move {
                let _guard = guard;
                running.store(true, Ordering::SeqCst);
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
    assert!(wait_until(Duration::from_secs(1), || running.load(Ordering::SeqCst)).await);
    drop(emitter);
    assert!(
        wait_until(Duration::from_secs(1), || dropped.load(Ordering::SeqCst)).await,
        "the worker running the handler was stopped"
    );
}

#[tokio::test(start_paused = true)]
async fn dropping_the_caller_after_ok_never_cancels_the_delivery() {
    let emitter = Emitter::<u32>::builder().build().unwrap();
    let ran = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&ran);
    let _sub = emitter
        .on("job", move |_: Event<u32>| {
            let flag = Arc::clone(&flag);
            async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                flag.store(true, Ordering::SeqCst);
                Ok(())
            }
        })
        .unwrap();
    let publisher = emitter.clone();
    // The publishing task ends (and is gone) right after emit_async returns Ok.
    tokio::spawn(async move { publisher.emit_async(Event::new("job", 1).unwrap()).await })
        .await
        .unwrap()
        .unwrap();
    let report = within("shutdown", emitter.shutdown(Duration::from_secs(5))).await;
    assert!(report.is_complete());
    assert!(ran.load(Ordering::SeqCst));
}
