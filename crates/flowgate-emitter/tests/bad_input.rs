//! Bad input: every invalid name, pattern or setting, and every call after shutdown, is a typed
//! error whose message says what to do. Nothing here may panic.

use std::time::Duration;

use flowgate_core::{CoreError, Event, RetryPolicy};
use flowgate_emitter::{EmitError, Emitter, EmitterError};

async fn noop(_: Event<u32>) -> flowgate_core::HandlerResult {
    Ok(())
}

#[test]
fn empty_or_invalid_event_type_names_are_typed_errors() {
    for name in [
        "",
        "order..created",
        ".order",
        "order.",
        "order created",
        "order.*",
    ] {
        match Event::new(name, 1_u32) {
            Err(CoreError::InvalidEventType { name: got, .. }) => assert_eq!(got, name),
            other => panic!("{name:?}: expected InvalidEventType, got {other:?}"),
        }
    }
    let message = Event::new("", 1_u32).unwrap_err().to_string();
    assert!(message.contains("empty"), "{message}");
    assert!(
        message.contains("order.created"),
        "the message shows a valid name: {message}"
    );
}

#[tokio::test]
async fn invalid_patterns_are_typed_errors() {
    let emitter = Emitter::<u32>::builder().build().unwrap();
    for pattern in ["", "order.>.x", "order*", "a..b", "x y"] {
        match emitter.on(pattern, noop) {
            Err(EmitterError::Core(CoreError::InvalidPattern { pattern: got, .. })) => {
                assert_eq!(got, pattern);
            }
            other => panic!("{pattern:?}: expected InvalidPattern, got {other:?}"),
        }
    }
    let message = emitter.on("order.>.x", noop).unwrap_err().to_string();
    assert!(
        message.contains("'>' may only be the last segment"),
        "{message}"
    );
    assert_eq!(
        emitter.stats().subscriptions,
        0,
        "no failed call registered anything"
    );
}

#[tokio::test]
async fn zero_workers_zero_queue_and_zero_concurrency_are_typed_errors() {
    let err = Emitter::<u32>::builder().workers(0).build().unwrap_err();
    assert!(
        matches!(
            err,
            EmitterError::InvalidConfig {
                setting: "workers",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("at least 1"), "{err}");

    let err = Emitter::<u32>::builder()
        .queue_capacity(0)
        .build()
        .unwrap_err();
    assert!(
        matches!(
            err,
            EmitterError::InvalidConfig {
                setting: "queue_capacity",
                ..
            }
        ),
        "{err:?}"
    );

    let emitter = Emitter::<u32>::builder().build().unwrap();
    let err = emitter
        .subscribe("a", noop)
        .concurrency(0)
        .start()
        .unwrap_err();
    assert!(
        matches!(
            err,
            EmitterError::InvalidConfig {
                setting: "concurrency",
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn absurdly_large_settings_are_typed_errors_not_panics() {
    for (builder, setting) in [
        (Emitter::<u32>::builder().workers(usize::MAX), "workers"),
        (
            Emitter::<u32>::builder().queue_capacity(usize::MAX),
            "queue_capacity",
        ),
    ] {
        match builder.build() {
            Err(EmitterError::InvalidConfig { setting: got, .. }) => assert_eq!(got, setting),
            other => panic!("{setting}: expected InvalidConfig, got {other:?}"),
        }
    }
    let emitter = Emitter::<u32>::builder().build().unwrap();
    let err = emitter
        .subscribe("a", noop)
        .concurrency(usize::MAX)
        .start()
        .unwrap_err();
    assert!(
        matches!(
            err,
            EmitterError::InvalidConfig {
                setting: "concurrency",
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn duration_max_means_no_limit_rather_than_a_panic() {
    use flowgate_core::middleware::CircuitBreakerLayer;
    use flowgate_core::CircuitBreakerConfig;
    use flowgate_emitter::Backpressure;

    let emitter = Emitter::<u32>::builder()
        .workers(1)
        .queue_capacity(1)
        .backpressure(Backpressure::Block {
            max_wait: Duration::MAX,
        })
        .build()
        .unwrap();
    let _guarded = emitter
        .subscribe("guarded", noop)
        .layer(CircuitBreakerLayer::new(CircuitBreakerConfig::new(1, Duration::MAX)).unwrap())
        .start()
        .unwrap();
    // A breaker that would stay open "for ever" still lets successful calls through.
    assert_eq!(
        emitter
            .emit(Event::new("guarded", 1).unwrap())
            .await
            .unwrap()
            .handlers,
        1
    );
    emitter
        .on("stuck", |_: Event<u32>| async {
            std::future::pending::<()>().await;
            Ok(())
        })
        .unwrap()
        .detach();
    emitter
        .emit_async(Event::new("stuck", 1).unwrap())
        .await
        .unwrap();
    emitter
        .emit_async(Event::new("stuck", 2).unwrap())
        .await
        .unwrap();
    // The queue is full and the wait unbounded: the producer waits instead of panicking.
    let waited = tokio::time::timeout(
        Duration::from_secs(1),
        emitter.emit_async(Event::new("stuck", 3).unwrap()),
    )
    .await;
    assert!(waited.is_err());
    let report = emitter.shutdown(Duration::from_millis(10)).await;
    assert!(report.deadline_expired);
    let again = emitter.shutdown(Duration::MAX).await;
    assert!(again.is_complete());
}

#[tokio::test]
async fn an_invalid_retry_policy_is_a_typed_error() {
    let err = Emitter::<u32>::builder()
        .retry(RetryPolicy::exponential(0, Duration::from_millis(1)))
        .build()
        .unwrap_err();
    assert!(
        matches!(
            err,
            EmitterError::Core(CoreError::InvalidConfig {
                setting: "max_attempts",
                ..
            })
        ),
        "{err:?}"
    );
}

#[test]
fn building_outside_a_runtime_is_a_typed_error() {
    let err = Emitter::<u32>::builder().build().unwrap_err();
    assert!(matches!(err, EmitterError::NoRuntime), "{err:?}");
    assert!(err.to_string().contains("#[tokio::main]"), "{err}");
}

#[tokio::test]
async fn every_call_after_shutdown_is_a_typed_error_that_hands_the_event_back() {
    let emitter = Emitter::<u32>::builder().build().unwrap();
    let report = emitter.shutdown(Duration::from_secs(1)).await;
    assert!(report.is_complete());
    assert!(emitter.is_shut_down());

    let event = Event::new("a", 7_u32).unwrap();
    let id = event.id();
    match emitter.emit(event).await {
        Err(EmitError::ShutDown(back)) => assert_eq!(back.id(), id),
        other => panic!("expected ShutDown, got {other:?}"),
    }
    let err = emitter
        .emit_async(Event::new("a", 8_u32).unwrap())
        .await
        .unwrap_err();
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("shut down"), "{err}");
    assert_eq!(*err.into_event().unwrap().payload(), 8);

    assert!(matches!(emitter.on("a", noop), Err(EmitterError::ShutDown)));
    let again = emitter.shutdown(Duration::from_secs(1)).await;
    assert!(again.is_complete(), "a second shutdown reports nothing new");
    assert_eq!(emitter.stats().rejected, 1);
}
