//! A small service that publishes a steady load of sensor readings through the bus, with a
//! debounced subscriber (the latest reading per sensor) and a batched one (readings archived
//! to the event store 50 at a time), and serves what is happening:
//!
//! - `GET /metrics`: Prometheus text (the bus's and the store's series);
//! - `GET /stats`: JSON (the bus's and the store's `stats()`, and what each operator
//!   coalesced, batched or flushed).
//!
//! ```sh
//! cargo run --example live_metrics --features metrics       # listens on 127.0.0.1:9898
//! curl -s localhost:9898/metrics | grep flowgate_bus_handled_total
//! curl -s localhost:9898/stats
//! ```
//!
//! Set `LIVE_METRICS_ADDR` to listen elsewhere. Ctrl-C drains the bus and prints its report.
//! `tests/live_metrics.rs` runs this file's service on a loopback port and scrapes it.

use std::collections::BTreeMap;
use std::error::Error;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use flowgate::bus::{Bus, Topic};
use flowgate::flow::{Batching, Debouncing, FlowExt, FlowMeter};
use flowgate::store::{ExpectedVersion, Store};
use flowgate::{Event, RetryPolicy};
use futures_util::StreamExt;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde_json::{json, Value};

/// One reading of one sensor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Reading {
    /// Which sensor.
    pub(crate) sensor: u32,
    /// What it read.
    pub(crate) celsius: f64,
}

/// The running service: its bus, topic, store and operators' meters.
#[derive(Clone)]
pub(crate) struct Service {
    /// The bus the readings go through.
    pub(crate) bus: Bus,
    /// The topic of readings (4 partitions, keyed by sensor).
    pub(crate) readings: Topic<Reading>,
    /// The archive the batched subscriber appends to.
    pub(crate) store: Store<Reading>,
    /// What the debouncer did.
    pub(crate) debounced: FlowMeter,
    /// What the batcher did.
    pub(crate) batched: FlowMeter,
    /// The latest reading per sensor, as the debounced subscriber last saw it.
    pub(crate) latest: Arc<Mutex<BTreeMap<u32, f64>>>,
    scrape: PrometheusHandle,
}

impl Service {
    /// Builds the bus, topic, store and both subscribers; `scrape` renders the recorder the
    /// caller installed (before this, so that the topic's and store's series go to it).
    pub(crate) fn start(scrape: PrometheusHandle) -> Result<Self, Box<dyn Error>> {
        let bus = Bus::new();
        let readings = bus
            .topic::<Reading>("readings")
            .partitions(4)
            .at_least_once(RetryPolicy::exponential(3, Duration::from_millis(10)))
            .create()?;
        let store = Store::<Reading>::builder()
            .name("archive")
            .max_events_per_stream(10_000)
            .build()?;

        // The dashboard: the latest reading per sensor, at most every 250 ms per sensor.
        let (handler, events) = flowgate::flow::channel(256)?;
        readings.subscribe("dashboard", handler).start()?;
        let latest_readings = events.debounce_by(
            Debouncing::new(Duration::from_millis(250)).max_wait(Duration::from_secs(1)),
            |event| event.payload().sensor,
        )?;
        let debounced = latest_readings.meter();
        let latest = Arc::new(Mutex::new(BTreeMap::new()));
        let board = Arc::clone(&latest);
        tokio::spawn(latest_readings.for_each(move |event| {
            let reading = *event.payload();
            board
                .lock()
                .expect("not poisoned")
                .insert(reading.sensor, reading.celsius);
            async {}
        }));

        // The archive: readings appended 50 at a time, or every 100 ms.
        let (handler, events) = flowgate::flow::channel(256)?;
        readings.subscribe("archive", handler).start()?;
        let in_fifties = events.batch(Batching::new(50, Duration::from_millis(100)))?;
        let batched = in_fifties.meter();
        let archive = store.clone();
        tokio::spawn(in_fifties.for_each(move |batch| {
            let events: Vec<Event<Reading>> = batch
                .into_iter()
                .map(|event| Event::new("reading.archived", *event.payload()).expect("valid"))
                .collect();
            if let Err(error) =
                archive.append_batch("readings-archive", ExpectedVersion::Any, events)
            {
                eprintln!("archive: {error}");
            }
            async {}
        }));

        Ok(Self {
            bus,
            readings,
            store,
            debounced,
            batched,
            latest,
            scrape,
        })
    }

    /// Publishes `count` readings, `per_second` of them a second (0: as fast as accepted),
    /// over `sensors` sensors.
    pub(crate) async fn publish(
        &self,
        count: u64,
        per_second: u32,
        sensors: u32,
    ) -> Result<(), Box<dyn Error + Send + Sync>> {
        let mut tick =
            (per_second > 0).then(|| tokio::time::interval(Duration::from_secs(1) / per_second));
        for n in 0..count {
            if let Some(tick) = &mut tick {
                tick.tick().await;
            }
            let sensor = (n % u64::from(sensors)) as u32;
            let reading = Reading {
                sensor,
                celsius: 20.0 + f64::from((n % 100) as u32) / 10.0,
            };
            let event = Event::new("reading.taken", reading)?.with_key(format!("sensor-{sensor}"));
            self.readings.publish(event).await?;
        }
        Ok(())
    }

    /// The HTTP routes: `/metrics` and `/stats`.
    pub(crate) fn router(&self) -> Router {
        Router::new()
            .route("/metrics", get(metrics))
            .route("/stats", get(stats))
            .with_state(self.clone())
    }
}

async fn metrics(State(service): State<Service>) -> String {
    // Copy the figures into the recorder right before rendering: exact at every scrape.
    service.bus.report_metrics();
    service.store.report_metrics();
    service.scrape.render()
}

async fn stats(State(service): State<Service>) -> Json<Value> {
    let topics: Vec<Value> = service
        .bus
        .stats()
        .iter()
        .map(|t| {
            json!({
                "topic": t.topic,
                "mode": t.mode,
                "subscribers": t.subscribers,
                "depth": t.depth,
                "in_flight": t.in_flight,
                "published": t.total.published,
                "processed": t.total.processed,
                "failed": t.total.failed,
                "retried": t.total.retried,
                "dead_lettered": t.total.dead_lettered,
                "partitions": t.partitions.iter().map(|p| json!({
                    "partition": p.partition,
                    "depth": p.depth,
                    "published": p.published,
                    "processed": p.processed,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let store = service.store.stats();
    let operator = |meter: &FlowMeter| {
        let s = meter.stats();
        json!({
            "received": s.received,
            "passed": s.passed,
            "coalesced": s.coalesced,
            "outputs": s.outputs,
            "flushed_early": s.flushed_early,
            "pending": s.pending,
            "keys": s.keys,
        })
    };
    Json(json!({
        "topics": topics,
        "store": {
            "appended": store.appended,
            "events": store.events,
            "streams": store.streams,
            "subscriptions": store.subscriptions,
        },
        "operators": {
            "dashboard_debounce": operator(&service.debounced),
            "archive_batch": operator(&service.batched),
        },
        "latest": service.latest.lock().expect("not poisoned").clone(),
    }))
}

#[allow(dead_code)] // tests/live_metrics.rs includes this file and runs `Service` itself
#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let scrape = PrometheusBuilder::new().install_recorder()?;
    let service = Service::start(scrape)?;
    let addr = std::env::var("LIVE_METRICS_ADDR").unwrap_or_else(|_| "127.0.0.1:9898".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("serving http://{addr}/metrics and http://{addr}/stats; Ctrl-C to stop");
    let load = service.clone();
    let producer = tokio::spawn(async move { load.publish(u64::MAX, 200, 16).await });
    axum::serve(listener, service.router())
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    producer.abort();
    let report = service.bus.shutdown(Duration::from_secs(5)).await;
    println!(
        "stopped: {} accepted readings not delivered; store holds {} events",
        report.not_delivered(),
        service.store.stats().events
    );
    Ok(())
}
