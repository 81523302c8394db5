//! The bus's series in the [`metrics`](https://docs.rs/metrics) facade (feature `metrics`), so
//! that any exporter (Prometheus, StatsD, ...) plugs in.
//!
//! Every series carries two labels, both bounded by configuration, never by data: `topic`
//! and `partition`.
//!
//! | series | type | what |
//! |---|---|---|
//! | `flowgate_bus_published_total` | counter | publishes accepted |
//! | `flowgate_bus_publish_rejected_total` | counter | publishes refused (full, wait expired, too large, shut down) |
//! | `flowgate_bus_publish_duplicates_total` | counter | publishes acknowledged as duplicates (exactly-once dedupe hits) |
//! | `flowgate_bus_handled_total` | counter | deliveries that returned `Ok` |
//! | `flowgate_bus_handler_failures_total` | counter | attempts that failed or panicked |
//! | `flowgate_bus_retries_total` | counter | attempts scheduled again after a failure |
//! | `flowgate_bus_dead_letters_total` | counter | events handed to a dead-letter sink |
//! | `flowgate_bus_deduplicated_total` | counter | deliveries skipped: the subscriber had handled the key (exactly-once) |
//! | `flowgate_bus_dropped_total` | counter | events dropped by a drop policy (at-most-once) |
//! | `flowgate_bus_queue_depth` | gauge | events queued, over the partition's subscribers |
//! | `flowgate_bus_in_flight` | gauge | deliveries running or waiting to retry |
//! | `flowgate_bus_handle_duration_seconds` | histogram | each handler invocation, retries included |
//!
//! **What it costs.** The counters and gauges mirror the figures the bus keeps anyway for
//! [`stats()`](crate::Topic::stats): they are copied into the recorder when you call
//! [`Bus::report_metrics`](crate::Bus::report_metrics) (in a `/metrics` handler, right
//! before rendering) or every interval from [`Bus::metrics_reporter`](crate::Bus::metrics_reporter).
//! So a publish does no metrics work at all. Each handler invocation reads the clock twice and
//! records one histogram sample.
//!
//! A topic's series go to the recorder installed when the topic was created: install the
//! exporter first. Series are keyed by topic name and partition only: two buses of one process
//! (or an in-process and a Redis topic) with the same topic name write the same series, so
//! give their topics distinct names. A counter only rises (the facade's `absolute` keeps the
//! largest value it saw): a topic created again under an old name shows the old total until
//! the new one passes it.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use flowgate::{Bus, Event};
//! let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
//! let scrape = recorder.handle();
//! let bus = Bus::new();
//! let orders = metrics::with_local_recorder(&recorder, || bus.topic::<u32>("orders").create())?;
//! let _sub = orders.subscribe("billing", |_: Event<u32>| async { Ok(()) }).start()?;
//! orders.publish(Event::new("order", 1)?).await?;
//! bus.shutdown(Duration::from_secs(1)).await;
//! bus.report_metrics();
//! let text = scrape.render();
//! assert!(text.contains(r#"flowgate_bus_handled_total{topic="orders",partition="0"} 1"#));
//! # Ok(())
//! # }
//! ```

use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Unit};

use crate::stats::{PartitionStats, TopicStats};

/// Series names, for dashboards and alerts.
pub mod names {
    /// Publishes accepted (counter).
    pub const PUBLISHED: &str = "flowgate_bus_published_total";
    /// Publishes refused (counter).
    pub const PUBLISH_REJECTED: &str = "flowgate_bus_publish_rejected_total";
    /// Publishes acknowledged as duplicates (counter).
    pub const PUBLISH_DUPLICATES: &str = "flowgate_bus_publish_duplicates_total";
    /// Deliveries that returned `Ok` (counter).
    pub const HANDLED: &str = "flowgate_bus_handled_total";
    /// Attempts that failed or panicked (counter).
    pub const HANDLER_FAILURES: &str = "flowgate_bus_handler_failures_total";
    /// Attempts scheduled again (counter).
    pub const RETRIES: &str = "flowgate_bus_retries_total";
    /// Events dead-lettered (counter).
    pub const DEAD_LETTERS: &str = "flowgate_bus_dead_letters_total";
    /// Deliveries skipped as already handled (counter).
    pub const DEDUPLICATED: &str = "flowgate_bus_deduplicated_total";
    /// Events dropped by a drop policy (counter).
    pub const DROPPED: &str = "flowgate_bus_dropped_total";
    /// Events queued (gauge).
    pub const QUEUE_DEPTH: &str = "flowgate_bus_queue_depth";
    /// Deliveries running (gauge).
    pub const IN_FLIGHT: &str = "flowgate_bus_in_flight";
    /// Handler invocation time in seconds (histogram).
    pub const HANDLE_DURATION: &str = "flowgate_bus_handle_duration_seconds";
}

fn labels(topic: &str, partition: u32) -> [(&'static str, String); 2] {
    [
        ("topic", topic.to_owned()),
        ("partition", partition.to_string()),
    ]
}

/// One partition's handle-latency histogram; for backends that run handlers themselves.
///
/// ```
/// use std::time::Duration;
/// let histogram = flowgate::bus::metrics::HandleHistogram::new("orders", 0);
/// histogram.record(Duration::from_micros(250)); // a no-op without a recorder
/// ```
#[derive(Debug, Clone)]
pub struct HandleHistogram(Histogram);

impl Default for HandleHistogram {
    fn default() -> Self {
        Self(Histogram::noop())
    }
}

impl HandleHistogram {
    /// Registers partition `partition` of `topic` with the current recorder.
    ///
    /// ```
    /// let _ = flowgate::bus::metrics::HandleHistogram::new("orders", 3);
    /// ```
    pub fn new(topic: &str, partition: u32) -> Self {
        metrics::describe_histogram!(
            names::HANDLE_DURATION,
            Unit::Seconds,
            "Handler invocation time, retries included"
        );
        Self(metrics::histogram!(
            names::HANDLE_DURATION,
            &labels(topic, partition)
        ))
    }

    /// Records one invocation's time.
    ///
    /// ```
    /// use std::time::Duration;
    /// flowgate::bus::metrics::HandleHistogram::new("t", 0).record(Duration::from_millis(2));
    /// ```
    #[inline]
    pub fn record(&self, took: Duration) {
        self.0.record(took.as_secs_f64());
    }
}

/// A topic's counters and gauges in the recorder, filled from its [`TopicStats`]; for
/// backends that keep their own stats.
///
/// ```
/// use flowgate::bus::metrics::TopicMetrics;
/// let bus = flowgate::Bus::new();
/// let topic = bus.topic::<u8>("t").partitions(2).create()?;
/// TopicMetrics::new("t", 2).report(&topic.stats()); // a no-op without a recorder
/// # Ok::<(), flowgate::bus::BusError>(())
/// ```
#[derive(Debug)]
pub struct TopicMetrics {
    partitions: Box<[PartitionMetrics]>,
}

#[derive(Debug)]
struct PartitionMetrics {
    published: Counter,
    rejected: Counter,
    duplicates: Counter,
    handled: Counter,
    failed: Counter,
    retried: Counter,
    dead_lettered: Counter,
    deduplicated: Counter,
    dropped: Counter,
    depth: Gauge,
    in_flight: Gauge,
}

impl TopicMetrics {
    /// Registers the series of `partitions` partitions of `topic` with the current recorder.
    ///
    /// ```
    /// let _ = flowgate::bus::metrics::TopicMetrics::new("orders", 8);
    /// ```
    pub fn new(topic: &str, partitions: u32) -> Self {
        describe();
        let partitions = (0..partitions)
            .map(|p| {
                let labels = labels(topic, p);
                let counter = |name: &'static str| metrics::counter!(name, &labels);
                let gauge = |name: &'static str| metrics::gauge!(name, &labels);
                PartitionMetrics {
                    published: counter(names::PUBLISHED),
                    rejected: counter(names::PUBLISH_REJECTED),
                    duplicates: counter(names::PUBLISH_DUPLICATES),
                    handled: counter(names::HANDLED),
                    failed: counter(names::HANDLER_FAILURES),
                    retried: counter(names::RETRIES),
                    dead_lettered: counter(names::DEAD_LETTERS),
                    deduplicated: counter(names::DEDUPLICATED),
                    dropped: counter(names::DROPPED),
                    depth: gauge(names::QUEUE_DEPTH),
                    in_flight: gauge(names::IN_FLIGHT),
                }
            })
            .collect();
        Self { partitions }
    }

    /// Copies `stats` into the series: counters to their totals, gauges to their values now.
    /// Partitions `stats` has and these series do not (or the reverse) are skipped.
    ///
    /// ```
    /// let bus = flowgate::Bus::new();
    /// let topic = bus.topic::<u8>("t").create()?;
    /// flowgate::bus::metrics::TopicMetrics::new("t", 1).report(&topic.stats());
    /// # Ok::<(), flowgate::bus::BusError>(())
    /// ```
    #[allow(clippy::cast_precision_loss)] // depths and in-flight counts are far below 2^52
    pub fn report(&self, stats: &TopicStats) {
        for (series, p) in self.partitions.iter().zip(&stats.partitions) {
            let PartitionStats {
                depth,
                in_flight,
                published,
                rejected,
                duplicates,
                processed,
                failed,
                retried,
                dead_lettered,
                deduplicated,
                dropped,
                ..
            } = *p;
            series.published.absolute(published);
            series.rejected.absolute(rejected);
            series.duplicates.absolute(duplicates);
            series.handled.absolute(processed);
            series.failed.absolute(failed);
            series.retried.absolute(retried);
            series.dead_lettered.absolute(dead_lettered);
            series.deduplicated.absolute(deduplicated);
            series.dropped.absolute(dropped);
            series.depth.set(depth as f64);
            series.in_flight.set(in_flight as f64);
        }
    }
}

fn describe() {
    use metrics::{describe_counter, describe_gauge};
    describe_counter!(names::PUBLISHED, Unit::Count, "Publishes accepted");
    describe_counter!(
        names::PUBLISH_REJECTED,
        Unit::Count,
        "Publishes refused: buffer full, wait expired, payload too large, shut down"
    );
    describe_counter!(
        names::PUBLISH_DUPLICATES,
        Unit::Count,
        "Publishes acknowledged as duplicates of an accepted idempotency key"
    );
    describe_counter!(names::HANDLED, Unit::Count, "Deliveries that returned Ok");
    describe_counter!(
        names::HANDLER_FAILURES,
        Unit::Count,
        "Handler attempts that failed or panicked"
    );
    describe_counter!(
        names::RETRIES,
        Unit::Count,
        "Attempts scheduled again after a failure"
    );
    describe_counter!(
        names::DEAD_LETTERS,
        Unit::Count,
        "Events handed to a dead-letter sink"
    );
    describe_counter!(
        names::DEDUPLICATED,
        Unit::Count,
        "Deliveries skipped: the subscriber had handled the key Ok"
    );
    describe_counter!(
        names::DROPPED,
        Unit::Count,
        "Events dropped by a drop policy (at-most-once)"
    );
    describe_gauge!(
        names::QUEUE_DEPTH,
        Unit::Count,
        "Events queued, over the partition's subscribers"
    );
    describe_gauge!(
        names::IN_FLIGHT,
        Unit::Count,
        "Deliveries running or waiting to retry"
    );
}
