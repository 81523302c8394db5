//! The bus with its `metrics` series recorded into a Prometheus recorder, beside the same bus
//! whose topic has no recorder (the series are no-ops), in one run.
//!
//! Each run: a one-partition at-most-once topic with one no-op subscriber; a producer task
//! publishes 20,000 events; timed are the publishes alone (`publish`) and the whole run until
//! the bus's shutdown delivered everything (`end_to_end`). Paired rounds: both variants once
//! per round, back to back; the ratio is taken within each round; medians of 21 rounds.
//!
//! With the feature on, a publish does no metrics work (the counters are copied from the
//! figures the bus keeps anyway, by `report_metrics`); each handler invocation reads the clock
//! twice and records a histogram sample. A build without the feature cannot run in the same
//! process; the no-recorder variant is the nearest in one run (its histogram calls are no-ops,
//! but it still reads the clock).
//!
//! ```text
//! cargo bench --bench metrics --features metrics
//! ```
// criterion_group! generates undocumented public functions.
#![allow(missing_docs)]
// Counts are far below 2^52; ratios are printed, not computed on.
#![allow(clippy::cast_precision_loss)]

mod common;

use std::time::{Duration, Instant};

use common::{median, runtime};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use flowgate::bus::{Bus, DeliveryMode};
use flowgate::Event;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};
use tokio::runtime::Runtime;

const EVENTS: u32 = 20_000;
const ROUNDS: usize = 21;

/// (publishes alone, the whole run) for one run; `recorder` records the topic's series.
async fn run(recorder: Option<&PrometheusRecorder>) -> (Duration, Duration) {
    let bus = Bus::new();
    let create = || {
        bus.topic::<u32>("bench")
            .mode(DeliveryMode::AtMostOnce)
            .capacity(1024)
            .create()
    };
    let topic = match recorder {
        Some(recorder) => metrics::with_local_recorder(recorder, create),
        None => create(),
    }
    .expect("topic");
    let _sub = topic
        .subscribe("noop", |_: Event<u32>| async { Ok(()) })
        .start()
        .expect("subscribe");
    let events: Vec<Event<u32>> = (0..EVENTS)
        .map(|n| Event::new("bench", n).expect("valid"))
        .collect();
    let started = Instant::now();
    let producer = tokio::spawn(async move {
        for event in events {
            topic.publish(event).await.expect("publish");
        }
        started.elapsed()
    });
    let publishing = producer.await.expect("producer");
    let report = bus.shutdown(Duration::from_secs(30)).await;
    assert_eq!(report.not_delivered(), 0);
    if recorder.is_some() {
        bus.report_metrics();
    }
    (publishing, started.elapsed())
}

fn paired(rt: &Runtime, recorder: &PrometheusRecorder) {
    let per_event = |d: Duration| d.as_secs_f64() * 1e9 / f64::from(EVENTS);
    let (mut off, mut on) = (Vec::new(), Vec::new());
    for round in 0..=ROUNDS {
        let pair = if round % 2 == 0 {
            let a = rt.block_on(run(None));
            (a, rt.block_on(run(Some(recorder))))
        } else {
            let b = rt.block_on(run(Some(recorder)));
            (rt.block_on(run(None)), b)
        };
        if round > 0 {
            off.push(pair.0);
            on.push(pair.1);
        }
    }
    println!("paired rounds ({ROUNDS} rounds of {EVENTS} events per variant), medians:");
    for (label, pick) in [
        (
            "publish",
            (|p: &(Duration, Duration)| p.0) as fn(&(Duration, Duration)) -> Duration,
        ),
        ("end_to_end", |p| p.1),
    ] {
        let a: Vec<f64> = off.iter().map(|p| per_event(pick(p))).collect();
        let b: Vec<f64> = on.iter().map(|p| per_event(pick(p))).collect();
        let ratios: Vec<f64> = b.iter().zip(&a).map(|(b, a)| b / a).collect();
        println!(
            "  {label:<11} no recorder {:>7.1} ns/event, recorded {:>7.1} ns/event, recorded / no recorder {:.3}x",
            median(a),
            median(b),
            median(ratios)
        );
    }
}

fn metrics_on_the_bus(c: &mut Criterion) {
    let rt = runtime();
    let recorder = PrometheusBuilder::new().build_recorder();
    paired(&rt, &recorder);
    let mut group = c.benchmark_group("metrics");
    group.throughput(Throughput::Elements(u64::from(EVENTS)));
    group.sample_size(20);
    for (name, recorded) in [("no_recorder", false), ("prometheus_recorder", true)] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| rt.block_on(run(recorded.then_some(&recorder))).1)
                    .sum()
            });
        });
    }
    group.finish();
}

criterion_group!(benches, metrics_on_the_bus);
criterion_main!(benches);
