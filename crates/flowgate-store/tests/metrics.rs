//! The store's `metrics` series (feature `metrics`), read back through a real Prometheus
//! recorder after a known workload: the mirrored counters and gauges, and one lag sample per
//! event a subscription hands out, with the lag it had.
#![cfg(feature = "metrics")]
// The series compared hold counts, which f64 represents exactly.
#![allow(clippy::float_cmp)]

use flowgate::store::metrics::names;
use flowgate::store::{ExpectedVersion, Start, Store, StoreError, Target};
use flowgate::Event;
use metrics_exporter_prometheus::PrometheusBuilder;

fn series(text: &str, name: &str) -> f64 {
    let prefix = format!("{name}{{store=\"orders\"}} ");
    let line = text
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no {prefix} in\n{text}"));
    line[prefix.len()..].parse().unwrap()
}

#[tokio::test]
async fn the_series_hold_the_figures_of_a_known_workload() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let scrape = recorder.handle();
    let store = metrics::with_local_recorder(&recorder, || {
        Store::<u32>::builder()
            .name("orders")
            .max_events_per_stream(3)
            .build()
    })
    .unwrap();
    for n in 0..5 {
        store
            .append(
                "order-1",
                ExpectedVersion::Any,
                Event::new("step", n).unwrap(),
            )
            .unwrap();
    }
    store
        .append(
            "order-2",
            ExpectedVersion::Any,
            Event::new("step", 9).unwrap(),
        )
        .unwrap();
    let conflict = store.append(
        "order-2",
        ExpectedVersion::NoStream,
        Event::new("step", 10).unwrap(),
    );
    assert!(matches!(
        conflict,
        Err(StoreError::WrongExpectedVersion { .. })
    ));
    // A subscription to everything from the oldest event still held (position 2): it hands
    // out positions 2, 3, 4 and 5 while the head is 6, lags 3, 2, 1 and 0.
    let mut all = store
        .subscribe(Target::All)
        .start(Start::At(2))
        .open()
        .unwrap();
    for _ in 0..4 {
        all.next().await.unwrap().unwrap();
    }
    store.report_metrics();
    let text = scrape.render();
    assert_eq!(series(&text, names::APPENDED), 6.0);
    assert_eq!(
        series(&text, names::TRUNCATED),
        2.0,
        "order-1 keeps its last 3"
    );
    assert_eq!(series(&text, names::VERSION_CONFLICTS), 1.0);
    assert_eq!(series(&text, names::EVENTS), 4.0);
    assert_eq!(series(&text, names::STREAMS), 2.0);
    assert_eq!(series(&text, names::SUBSCRIPTIONS), 1.0);
    let lag = names::SUBSCRIPTION_LAG;
    assert_eq!(series(&text, &format!("{lag}_count")), 4.0);
    assert_eq!(series(&text, &format!("{lag}_sum")), 6.0, "3 + 2 + 1 + 0");
}
