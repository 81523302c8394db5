//! Middleware sees a panicking handler as the failure it is: the circuit breaker counts it and
//! the observer reports it (the panic never escapes the layer).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use flowgate_core::middleware::{CircuitBreakerLayer, Observation, ObserveLayer, TraceLayer};
use flowgate_core::{
    invoke, CircuitBreakerConfig, CircuitState, Event, HandlerError, HandlerResult, Layer,
};

async fn panics(_: Event<()>) -> HandlerResult {
    panic!("handler bug")
}

#[tokio::test(start_paused = true)]
async fn the_circuit_breaker_counts_a_panic_as_a_failure() {
    let layer = CircuitBreakerLayer::new(CircuitBreakerConfig::new(2, Duration::from_secs(5)))
        .expect("valid config");
    let handler = layer.layer(panics);
    for _ in 0..2 {
        let outcome = invoke(&handler, Event::new("a", ()).unwrap()).await;
        assert!(
            matches!(outcome, Err(HandlerError::Panicked { .. })),
            "{outcome:?}"
        );
    }
    assert_eq!(handler.breaker().state(), CircuitState::Open);
    let refused = invoke(&handler, Event::new("a", ()).unwrap()).await;
    assert!(
        matches!(refused, Err(HandlerError::CircuitOpen)),
        "{refused:?}"
    );
}

#[tokio::test]
async fn the_observer_sees_a_panic_and_tracing_logs_it() {
    let panicked = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&panicked);
    let observe = ObserveLayer::new(move |obs: &Observation<'_>| {
        if matches!(obs.outcome, Err(HandlerError::Panicked { .. })) {
            seen.fetch_add(1, Ordering::SeqCst);
        }
    });
    let handler = TraceLayer::new().layer(observe.layer(panics));
    let outcome = invoke(&handler, Event::new("a", ()).unwrap()).await;
    assert!(
        matches!(outcome, Err(HandlerError::Panicked { .. })),
        "{outcome:?}"
    );
    assert_eq!(panicked.load(Ordering::SeqCst), 1);
}
