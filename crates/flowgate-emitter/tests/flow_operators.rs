//! The flow-control operators on an emitter subscription, through `flowgate::flow::channel`:
//! `emit` waits while the stream's buffer is full (backpressure, not loss), and dropping the
//! subscription ends the stream, so the operators hand on what they hold.

use std::time::Duration;

use flowgate::flow::{Debouncing, FlowExt, Sampling};
use flowgate::{Emitter, Event};
use flowgate_testkit::wait::within;
use futures_util::StreamExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_subscription_ends_the_stream_and_sampling_counts_add_up() {
    let emitter = Emitter::<u32>::builder().build().unwrap();
    let (handler, events) = flowgate::flow::channel(4).unwrap();
    let sub = emitter.on("reading.*", handler).unwrap();
    let sampled = events.sample(Sampling::every_nth(10)).unwrap();
    let meter = sampled.meter();
    let reader = tokio::spawn(sampled.map(|e| *e.payload()).collect::<Vec<_>>());
    for n in 0..100 {
        // The buffer holds 4: emit waits for the reader instead of dropping.
        let outcome = emitter
            .emit(Event::new("reading.temp", n).unwrap())
            .await
            .unwrap();
        assert_eq!(outcome.handlers, 1);
    }
    drop(sub);
    let kept = within(
        "the stream's end after the subscription was dropped",
        reader,
    )
    .await
    .unwrap();
    assert_eq!(kept, (0..100).step_by(10).collect::<Vec<_>>());
    let stats = meter.stats();
    assert_eq!((stats.received, stats.passed, stats.dropped), (100, 10, 90));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_debounced_emitter_subscription_flushes_each_key_when_it_ends() {
    let emitter = Emitter::<(String, u32)>::builder().build().unwrap();
    let (handler, events) = flowgate::flow::channel(64).unwrap();
    let sub = emitter.on("search.typed", handler).unwrap();
    let latest = events
        .debounce_by(Debouncing::new(Duration::from_secs(3600)), |e| {
            e.payload().0.clone()
        })
        .unwrap();
    let reader = tokio::spawn(latest.map(|e| e.payload().clone()).collect::<Vec<_>>());
    for (user, text) in [("ann", 1), ("bob", 1), ("ann", 2), ("ann", 3), ("bob", 2)] {
        let event = Event::new("search.typed", (user.to_owned(), text)).unwrap();
        emitter.emit(event).await.unwrap();
    }
    drop(sub);
    let mut latest = within("the stream's end", reader).await.unwrap();
    latest.sort();
    assert_eq!(latest, [("ann".to_owned(), 3), ("bob".to_owned(), 2)]);
}
