//! The live_metrics example's service, run on a loopback port and scraped over HTTP after a
//! known workload: `/metrics` holds each named series with the value the workload implies,
//! and `/stats` agrees with it.

#[path = "../examples/live_metrics.rs"]
#[allow(dead_code)]
mod live_metrics;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use flowgate_testkit::wait::wait_until;
use metrics_exporter_prometheus::PrometheusBuilder;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const READINGS: u64 = 1_000;
const SENSORS: u32 = 16;

/// The body of `GET path`, over a fresh connection.
async fn get(addr: SocketAddr, path: &str) -> String {
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    conn.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_owned()
}

/// Sums a series over its label sets that contain every one of `labels`.
fn sum(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter_map(|line| {
            let (head, value) = line.rsplit_once(' ')?;
            let (series, rest) = head.split_once('{')?;
            (series == name && labels.iter().all(|l| rest.contains(l)))
                .then(|| value.parse::<f64>().expect("a number"))
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scraping_the_example_finds_each_series_with_its_value() {
    let scrape = PrometheusBuilder::new().install_recorder().unwrap();
    let service = live_metrics::Service::start(scrape).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = service.router();
    tokio::spawn(async move { axum::serve(listener, router).await });

    service.publish(READINGS, 0, SENSORS).await.unwrap();
    let settled = wait_until(Duration::from_secs(20), || {
        let topic = &service.bus.stats()[0];
        topic.total.processed == 2 * READINGS
            && service.store.stats().appended == READINGS
            && service.debounced.stats().pending == 0
    })
    .await;
    assert!(
        settled,
        "the workload settles: {:?}",
        service.bus.stats()[0].total
    );

    let text = get(addr, "/metrics").await;
    // Per partition, the readings of the sensors whose key hashes there.
    let partitions = NonZeroU32::new(4).unwrap();
    let mut per_partition = BTreeMap::new();
    for n in 0..READINGS {
        let key = format!("sensor-{}", n % u64::from(SENSORS));
        *per_partition
            .entry(flowgate::partition_for(&key.as_str().into(), partitions))
            .or_insert(0.0) += 1.0;
    }
    for p in 0..4 {
        let labels = [r#"topic="readings""#, &format!(r#"partition="{p}""#)];
        let published = sum(&text, "flowgate_bus_published_total", &labels);
        let want = per_partition.get(&p).copied().unwrap_or(0.0);
        assert!(
            (published - want).abs() < 0.5,
            "partition {p}: {published} published, want {want}"
        );
        let handled = sum(&text, "flowgate_bus_handled_total", &labels);
        assert!(
            (handled - 2.0 * want).abs() < 0.5,
            "partition {p}: {handled} handled, want 2 x {want}"
        );
    }
    let readings = [r#"topic="readings""#];
    let total = |name| sum(&text, name, &readings);
    assert!((total("flowgate_bus_published_total") - 1000.0).abs() < 0.5);
    assert!(
        (total("flowgate_bus_handled_total") - 2000.0).abs() < 0.5,
        "two subscribers"
    );
    assert!((total("flowgate_bus_handle_duration_seconds_count") - 2000.0).abs() < 0.5);
    for at_rest in [
        "flowgate_bus_queue_depth",
        "flowgate_bus_in_flight",
        "flowgate_bus_dead_letters_total",
    ] {
        assert!(
            total(at_rest).abs() < 0.5,
            "{at_rest} is {}",
            total(at_rest)
        );
    }
    let archive = [r#"store="archive""#];
    assert!((sum(&text, "flowgate_store_appended_total", &archive) - 1000.0).abs() < 0.5);
    assert!((sum(&text, "flowgate_store_events", &archive) - 1000.0).abs() < 0.5);

    let stats: serde_json::Value = serde_json::from_str(&get(addr, "/stats").await).unwrap();
    assert_eq!(stats["topics"][0]["published"], 1000);
    assert_eq!(stats["store"]["appended"], 1000);
    let batch = &stats["operators"]["archive_batch"];
    assert_eq!(
        (batch["received"].as_u64(), batch["passed"].as_u64()),
        (Some(1000), Some(1000))
    );
    let debounce = &stats["operators"]["dashboard_debounce"];
    let (received, passed, coalesced) = (
        debounce["received"].as_u64().unwrap(),
        debounce["passed"].as_u64().unwrap(),
        debounce["coalesced"].as_u64().unwrap(),
    );
    assert_eq!((received, passed + coalesced), (1000, 1000), "{debounce}");
    assert_eq!(
        stats["latest"].as_object().unwrap().len(),
        SENSORS as usize,
        "every sensor's latest reading"
    );
}
