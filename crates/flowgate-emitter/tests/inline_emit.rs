//! Inline `emit`: every matching handler runs, in subscription order, once; one failing or
//! panicking handler never hides the event from the others and its error comes back to the
//! caller; patterns route as documented; unsubscribing one of two identical subscriptions
//! leaves the other; a cancelled emit gives back what it held.

use std::sync::{Arc, Mutex};

use flowgate_core::{Event, HandlerError, HandlerResult};
use flowgate_emitter::{EmitError, Emitter};

type Log = Arc<Mutex<Vec<String>>>;

fn recorder(
    log: &Log,
    name: &'static str,
) -> impl Fn(Event<u32>) -> std::future::Ready<HandlerResult> {
    let log = Arc::clone(log);
    move |event: Event<u32>| {
        log.lock()
            .unwrap()
            .push(format!("{name}:{}", event.payload()));
        std::future::ready(Ok(()))
    }
}

#[tokio::test]
async fn every_handler_runs_despite_failures_and_panics_and_all_errors_come_back() {
    let emitter = Emitter::<u32>::builder().build().unwrap();
    let log = Log::default();
    let _a = emitter.on("order.placed", recorder(&log, "a")).unwrap();
    let _failing = emitter
        .subscribe("order.placed", |_: Event<u32>| async {
            Err(HandlerError::retryable("db down"))
        })
        .name("failing")
        .start()
        .unwrap();
    let _b = emitter.on("order.*", recorder(&log, "b")).unwrap();
    let _panicking = emitter
        .subscribe("order.placed", |_: Event<u32>| async {
            panic!("handler bug")
        })
        .name("panicking")
        .start()
        .unwrap();
    let _c = emitter.on("order.>", recorder(&log, "c")).unwrap();

    let err = emitter
        .emit(Event::new("order.placed", 1).unwrap())
        .await
        .unwrap_err();
    let EmitError::HandlersFailed(failures) = err else {
        panic!("expected HandlersFailed, got {err:?}");
    };
    assert_eq!(failures.succeeded, 3);
    let names: Vec<_> = failures.failures.iter().map(|f| &*f.subscriber).collect();
    assert_eq!(names, ["failing", "panicking"]);
    assert!(matches!(
        failures.failures[0].error,
        HandlerError::Retryable(_)
    ));
    assert!(
        matches!(&failures.failures[1].error, HandlerError::Panicked { message } if message == "handler bug")
    );
    assert_eq!(
        *log.lock().unwrap(),
        ["a:1", "b:1", "c:1"],
        "subscription order, each once"
    );

    let stats = emitter.stats();
    assert_eq!(
        (stats.emitted, stats.handled, stats.failed, stats.panicked),
        (1, 3, 2, 1)
    );
}

#[tokio::test]
async fn patterns_route_as_documented() {
    let emitter = Emitter::<u32>::builder().build().unwrap();
    let log = Log::default();
    let _exact = emitter
        .on("order.created", recorder(&log, "exact"))
        .unwrap();
    let _one = emitter.on("order.*", recorder(&log, "one")).unwrap();
    let _rest = emitter.on("order.>", recorder(&log, "rest")).unwrap();
    let _any = emitter.on(">", recorder(&log, "any")).unwrap();
    let _suffix = emitter.on("*.created", recorder(&log, "suffix")).unwrap();

    for (n, kind) in ["order.created", "order.line.added", "user.created", "order"]
        .into_iter()
        .enumerate()
    {
        let handlers = emitter
            .emit(Event::new(kind, n as u32).unwrap())
            .await
            .unwrap()
            .handlers;
        let expected = match kind {
            "order.created" => 5,
            "order.line.added" | "user.created" => 2,
            _ => 1,
        };
        assert_eq!(handlers, expected, "{kind}");
    }
    assert_eq!(
        *log.lock().unwrap(),
        [
            "exact:0", "one:0", "rest:0", "any:0", "suffix:0", // order.created
            "rest:1", "any:1", // order.line.added
            "any:2", "suffix:2", // user.created
            "any:3",    // order
        ]
    );
}

#[tokio::test]
async fn unsubscribing_one_of_two_identical_subscriptions_leaves_the_other() {
    let emitter = Emitter::<u32>::builder().build().unwrap();
    let log = Log::default();
    let first = emitter.on("tick", recorder(&log, "same")).unwrap();
    let second = emitter.on("tick", recorder(&log, "same")).unwrap();
    assert_ne!(first.id(), second.id());

    emitter.emit(Event::new("tick", 1).unwrap()).await.unwrap();
    assert!(first.unsubscribe());
    emitter.emit(Event::new("tick", 2).unwrap()).await.unwrap();
    drop(second);
    emitter.emit(Event::new("tick", 3).unwrap()).await.unwrap();

    assert_eq!(*log.lock().unwrap(), ["same:1", "same:1", "same:2"]);
    assert_eq!(emitter.stats().subscriptions, 0);
}

#[tokio::test]
async fn a_handler_may_unsubscribe_itself_while_it_runs() {
    let emitter = Emitter::<u32>::builder().build().unwrap();
    let slot: Arc<Mutex<Option<flowgate_emitter::Subscription>>> = Arc::default();
    let own = Arc::clone(&slot);
    let runs = Arc::new(Mutex::new(0));
    let counter = Arc::clone(&runs);
    let sub = emitter
        .on("once", move |_: Event<u32>| {
            *counter.lock().unwrap() += 1;
            // Unsubscribing from inside the handler's own start must not wait for itself.
            // Take the handle out first: unsubscribing while holding a lock other starts
            // of this handler need would make them wait on us.
            let me = own.lock().unwrap().take();
            if let Some(me) = me {
                assert!(me.unsubscribe());
            }
            std::future::ready(Ok(()))
        })
        .unwrap();
    *slot.lock().unwrap() = Some(sub);

    emitter.emit(Event::new("once", 1).unwrap()).await.unwrap();
    emitter.emit(Event::new("once", 2).unwrap()).await.unwrap();
    assert_eq!(*runs.lock().unwrap(), 1);
}

#[tokio::test]
async fn fan_out_shares_one_payload_allocation() {
    let emitter = Emitter::<Vec<u8>>::builder().build().unwrap();
    let seen: Arc<Mutex<Vec<usize>>> = Arc::default();
    let mut subs = Vec::new();
    for _ in 0..4 {
        let seen = Arc::clone(&seen);
        subs.push(
            emitter
                .on("blob", move |event: Event<Vec<u8>>| {
                    seen.lock()
                        .unwrap()
                        .push(Arc::as_ptr(event.shared_payload()) as usize);
                    std::future::ready(Ok(()))
                })
                .unwrap(),
        );
    }
    let event = Event::new("blob", vec![0_u8; 1 << 20]).unwrap();
    let original = Arc::as_ptr(event.shared_payload()) as usize;
    emitter.emit(event).await.unwrap();
    assert_eq!(*seen.lock().unwrap(), [original; 4]);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_emit_gives_back_its_concurrency_permit() {
    let emitter = Emitter::<u32>::builder().build().unwrap();
    let _capped = emitter
        .subscribe("job", |event: Event<u32>| async move {
            if *event.payload() == 0 {
                std::future::pending::<()>().await;
            }
            Ok(())
        })
        .concurrency(1)
        .start()
        .unwrap();
    // The first emit holds the only permit until its caller gives up on it.
    let first = emitter.emit(Event::new("job", 0).unwrap());
    assert!(
        tokio::time::timeout(std::time::Duration::from_secs(1), first)
            .await
            .is_err()
    );
    // Dropping that future dropped the handler and its permit: the next emit runs at once.
    let second = emitter.emit(Event::new("job", 1).unwrap());
    let done = tokio::time::timeout(std::time::Duration::from_secs(1), second).await;
    assert_eq!(
        done.expect("the permit was given back").unwrap().handlers,
        1
    );
}

/// One handler is the case `emit` counts with a single update when the handler finishes on its
/// first poll; every other way through it must add up the same in `stats()`.
#[tokio::test(start_paused = true)]
async fn one_handler_emits_are_counted_the_same_whichever_way_they_end() {
    let emitter = Emitter::<u32>::builder().build().unwrap();
    let _only = emitter
        .on("job", |event: Event<u32>| async move {
            match *event.payload() {
                // Finishes on its first poll.
                0 => Ok(()),
                1 => Err(HandlerError::permanent("rejected")),
                // Waits first (a timer), then finishes.
                2 => {
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                    Ok(())
                }
                3 => {
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                    Err(HandlerError::retryable("later"))
                }
                _ => std::future::pending().await,
            }
        })
        .unwrap();
    for payload in [0, 0, 1, 2, 3] {
        let _ = emitter.emit(Event::new("job", payload).unwrap()).await;
    }
    // Dropped while its handler waits: emitted, neither handled nor failed.
    let never = emitter.emit(Event::new("job", 4).unwrap());
    let gave_up = tokio::time::timeout(std::time::Duration::from_millis(50), never).await;
    assert!(gave_up.is_err());
    // Nothing subscribed to it: emitted, nothing ran.
    emitter
        .emit(Event::new("nobody", 0).unwrap())
        .await
        .unwrap();

    let stats = emitter.stats();
    assert_eq!(
        (stats.emitted, stats.handled, stats.failed),
        (7, 3, 2),
        "{stats:?}"
    );
}
