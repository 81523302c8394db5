//! The bus's `metrics` series (feature `metrics`), read back through a real Prometheus
//! recorder after a known workload: each counter per topic and partition, the gauges at rest,
//! and one handle-duration sample per handler invocation.
#![cfg(feature = "metrics")]
// The series compared hold counts, which f64 represents exactly.
#![allow(clippy::float_cmp)]

use std::collections::BTreeMap;
use std::time::Duration;

use flowgate::bus::metrics::names;
use flowgate::bus::{Bus, DeliveryMode};
use flowgate::{DeadLetterQueue, Event, HandlerError, Jitter, RetryPolicy};
use metrics_exporter_prometheus::PrometheusBuilder;

/// `name{labels} value` lines of a Prometheus text exposition: (name, sorted labels) -> value.
fn parse(text: &str) -> BTreeMap<(String, String), f64> {
    let mut series = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (head, value) = line.rsplit_once(' ').expect("a value");
        let (name, labels) = match head.split_once('{') {
            Some((name, rest)) => {
                let mut labels: Vec<&str> = rest.trim_end_matches('}').split(',').collect();
                labels.sort_unstable();
                (name, labels.join(","))
            }
            None => (head, String::new()),
        };
        series.insert((name.to_owned(), labels), value.parse().expect("a number"));
    }
    series
}

fn value(series: &BTreeMap<(String, String), f64>, name: &str, partition: u32) -> f64 {
    let labels = format!("partition=\"{partition}\",topic=\"payments\"");
    *series
        .get(&(name.to_owned(), labels.clone()))
        .unwrap_or_else(|| panic!("no series {name}{{{labels}}} in {series:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_series_hold_the_figures_of_a_known_workload() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let scrape = recorder.handle();
    let bus = Bus::new();
    let retry = RetryPolicy::exponential(3, Duration::from_millis(1)).jitter(Jitter::None);
    let payments = metrics::with_local_recorder(&recorder, || {
        bus.topic::<i64>("payments")
            .partitions(2)
            .mode(DeliveryMode::AtLeastOnce(retry))
            .create()
    })
    .unwrap();
    let dead = DeadLetterQueue::new(100);
    let _ledger = payments
        .subscribe("ledger", |event: Event<i64>| async move {
            match *event.payload() {
                0 => Err(HandlerError::permanent("zero amount")),
                n if n < 0 => Err(HandlerError::retryable("refunds are down")),
                _ => Ok(()),
            }
        })
        .dead_letters(dead.clone())
        .start()
        .unwrap();
    // Find a key for each partition, then: partition 0 gets 5 good payments and one zero;
    // partition 1 gets 3 good payments and one refund (3 attempts, then dead-lettered).
    let two = std::num::NonZeroU32::new(2).unwrap();
    let key_for = |p: u32| {
        (0..10_000)
            .map(|n| format!("account-{n}"))
            .find(|k| flowgate::partition_for(&k.as_str().into(), two) == p)
            .unwrap()
    };
    let (k0, k1) = (key_for(0), key_for(1));
    for amount in [10, 20, 30, 40, 50, 0] {
        let event = Event::new("payment", amount).unwrap().with_key(k0.clone());
        payments.publish(event).await.unwrap();
    }
    for amount in [1, 2, 3, -5] {
        let event = Event::new("payment", amount).unwrap().with_key(k1.clone());
        payments.publish(event).await.unwrap();
    }
    assert_eq!(
        bus.shutdown(Duration::from_secs(10)).await.not_delivered(),
        0
    );
    bus.report_metrics();
    let series = parse(&scrape.render());

    let expect = [
        // (series, partition 0, partition 1)
        (names::PUBLISHED, 6.0, 4.0),
        (names::PUBLISH_REJECTED, 0.0, 0.0),
        (names::HANDLED, 5.0, 3.0),
        (names::HANDLER_FAILURES, 1.0, 3.0),
        (names::RETRIES, 0.0, 2.0),
        (names::DEAD_LETTERS, 1.0, 1.0),
        (names::DROPPED, 0.0, 0.0),
        (names::QUEUE_DEPTH, 0.0, 0.0),
        (names::IN_FLIGHT, 0.0, 0.0),
    ];
    for (name, p0, p1) in expect {
        assert_eq!(value(&series, name, 0), p0, "{name}, partition 0");
        assert_eq!(value(&series, name, 1), p1, "{name}, partition 1");
    }
    let count = format!("{}_count", names::HANDLE_DURATION);
    assert_eq!(value(&series, &count, 0), 6.0, "one sample per invocation");
    assert_eq!(
        value(&series, &count, 1),
        6.0,
        "3 payments + 3 refund attempts"
    );
    assert_eq!(dead.len(), 2);
}

#[tokio::test]
async fn a_reporter_copies_the_figures_every_interval() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let scrape = recorder.handle();
    let bus = Bus::new();
    let topic =
        metrics::with_local_recorder(&recorder, || bus.topic::<u8>("payments").create()).unwrap();
    let reporter = bus.metrics_reporter(Duration::from_millis(10)).unwrap();
    topic
        .publish(Event::new("payment", 1).unwrap())
        .await
        .unwrap();
    let published = || {
        parse(&scrape.render())
            .get(&(
                names::PUBLISHED.to_owned(),
                "partition=\"0\",topic=\"payments\"".to_owned(),
            ))
            .copied()
    };
    let seen =
        flowgate_testkit::wait::wait_until(Duration::from_secs(10), || published() == Some(1.0))
            .await;
    assert!(seen, "the reporter copied the publish: {:?}", published());
    drop(reporter);
    assert!(
        bus.metrics_reporter(Duration::ZERO).is_err(),
        "a zero interval is refused"
    );
}
