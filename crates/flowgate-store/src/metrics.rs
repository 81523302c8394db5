//! The store's series in the [`metrics`](https://docs.rs/metrics) facade (feature `metrics`).
//!
//! Every series carries one label, `store`: the name given to
//! [`StoreBuilder::name`](crate::StoreBuilder::name) (default `"store"`).
//!
//! | series | type | what |
//! |---|---|---|
//! | `flowgate_store_appended_total` | counter | events ever appended |
//! | `flowgate_store_truncated_total` | counter | events removed by retention |
//! | `flowgate_store_version_conflicts_total` | counter | appends refused for a wrong expected version |
//! | `flowgate_store_rejected_streams_total` | counter | new streams refused by the stream limit |
//! | `flowgate_store_evicted_streams_total` | counter | streams evicted by the stream limit |
//! | `flowgate_store_events` | gauge | events held now |
//! | `flowgate_store_streams` | gauge | streams held now |
//! | `flowgate_store_subscriptions` | gauge | open subscriptions |
//! | `flowgate_store_subscription_lag_events` | histogram | for each event a subscription hands out, how many events (of any stream) were appended to the store after it by then |
//!
//! The counters and gauges mirror [`stats()`](crate::Store::stats) when you call
//! [`Store::report_metrics`](crate::Store::report_metrics), so an append does no metrics work.
//! The lag is recorded for every event a subscription hands out (one atomic read and one
//! histogram sample). It counts global positions: for a subscription to all events it is how
//! far behind the store's head it runs; for a stream or category subscription it also counts
//! the other streams' events, so read it as "how much the store moved on since", not as that
//! subscription's own backlog. A store's series go to the recorder installed when it was built.
//!
//! ```
//! use flowgate::store::{ExpectedVersion, Store};
//! use flowgate::Event;
//! let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
//! let store = metrics::with_local_recorder(&recorder, || Store::<u32>::builder().name("orders").build())?;
//! store.append("order-1", ExpectedVersion::Any, Event::new("placed", 1)?)?;
//! store.report_metrics();
//! assert!(recorder.handle().render().contains(r#"flowgate_store_appended_total{store="orders"} 1"#));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use metrics::{Counter, Gauge, Histogram, Unit};

use crate::StoreStats;

/// Series names, for dashboards and alerts.
pub mod names {
    /// Events ever appended (counter).
    pub const APPENDED: &str = "flowgate_store_appended_total";
    /// Events removed by retention (counter).
    pub const TRUNCATED: &str = "flowgate_store_truncated_total";
    /// Appends refused for a wrong expected version (counter).
    pub const VERSION_CONFLICTS: &str = "flowgate_store_version_conflicts_total";
    /// New streams refused by the stream limit (counter).
    pub const REJECTED_STREAMS: &str = "flowgate_store_rejected_streams_total";
    /// Streams evicted by the stream limit (counter).
    pub const EVICTED_STREAMS: &str = "flowgate_store_evicted_streams_total";
    /// Events held (gauge).
    pub const EVENTS: &str = "flowgate_store_events";
    /// Streams held (gauge).
    pub const STREAMS: &str = "flowgate_store_streams";
    /// Open subscriptions (gauge).
    pub const SUBSCRIPTIONS: &str = "flowgate_store_subscriptions";
    /// Events appended after each event a subscription hands out (histogram).
    pub const SUBSCRIPTION_LAG: &str = "flowgate_store_subscription_lag_events";
}

pub(crate) struct StoreMetrics {
    appended: Counter,
    truncated: Counter,
    version_conflicts: Counter,
    rejected_streams: Counter,
    evicted_streams: Counter,
    events: Gauge,
    streams: Gauge,
    subscriptions: Gauge,
    lag: Histogram,
}

impl StoreMetrics {
    pub(crate) fn new(store: &str) -> Self {
        describe();
        let labels = [("store", store.to_owned())];
        Self {
            appended: metrics::counter!(names::APPENDED, &labels),
            truncated: metrics::counter!(names::TRUNCATED, &labels),
            version_conflicts: metrics::counter!(names::VERSION_CONFLICTS, &labels),
            rejected_streams: metrics::counter!(names::REJECTED_STREAMS, &labels),
            evicted_streams: metrics::counter!(names::EVICTED_STREAMS, &labels),
            events: metrics::gauge!(names::EVENTS, &labels),
            streams: metrics::gauge!(names::STREAMS, &labels),
            subscriptions: metrics::gauge!(names::SUBSCRIPTIONS, &labels),
            lag: metrics::histogram!(names::SUBSCRIPTION_LAG, &labels),
        }
    }

    #[allow(clippy::cast_precision_loss)] // counts far below 2^52
    pub(crate) fn report(&self, stats: &StoreStats) {
        self.appended.absolute(stats.appended);
        self.truncated.absolute(stats.truncated);
        self.version_conflicts.absolute(stats.version_conflicts);
        self.rejected_streams.absolute(stats.rejected_streams);
        self.evicted_streams.absolute(stats.evicted_streams);
        self.events.set(stats.events as f64);
        self.streams.set(stats.streams as f64);
        self.subscriptions.set(stats.subscriptions as f64);
    }

    /// A subscription handed out the event at global `position` while the store's head was
    /// `head` (the next position).
    #[inline]
    #[allow(clippy::cast_precision_loss)] // lags far below 2^52
    pub(crate) fn lag(&self, head: u64, position: u64) {
        self.lag.record(head.saturating_sub(position + 1) as f64);
    }
}

impl std::fmt::Debug for StoreMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreMetrics").finish_non_exhaustive()
    }
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(names::APPENDED, Unit::Count, "Events ever appended");
    describe_counter!(names::TRUNCATED, Unit::Count, "Events removed by retention");
    describe_counter!(
        names::VERSION_CONFLICTS,
        Unit::Count,
        "Appends refused for a wrong expected version"
    );
    describe_counter!(
        names::REJECTED_STREAMS,
        Unit::Count,
        "New streams refused by the stream limit"
    );
    describe_counter!(
        names::EVICTED_STREAMS,
        Unit::Count,
        "Streams evicted by the stream limit"
    );
    describe_gauge!(names::EVENTS, Unit::Count, "Events held");
    describe_gauge!(names::STREAMS, Unit::Count, "Streams held");
    describe_gauge!(names::SUBSCRIPTIONS, Unit::Count, "Open subscriptions");
    describe_histogram!(
        names::SUBSCRIPTION_LAG,
        Unit::Count,
        "Events appended after each event a subscription hands out, at that moment"
    );
}
