//! Tracing and metrics on the Redis backend, against a real redis-server: a delivery's
//! `flowgate.handle` span links to its `flowgate.publish` span through the `traceparent` the
//! event carried across Redis, an event published from a handler joins the trace, and the
//! bus's series hold the figures of a known workload.
//!
//! One test only: tracing caches each callsite's interest process-wide, and the recorder is
//! the process's global one.
#![cfg(feature = "metrics")]

mod common;

use std::time::Duration;

use flowgate::bus::{Backend, SubscribeRequest, TopicSettings};
use flowgate::redis::RedisTopic;
use flowgate::trace_context::TraceContext;
use flowgate::{Event, HandlerError};
use flowgate_testkit::spans::SpanLog;
use flowgate_testkit::wait::{wait_for, wait_until, within};
use metrics_exporter_prometheus::PrometheusBuilder;

#[tokio::test(flavor = "current_thread")]
async fn spans_link_across_redis_and_the_series_hold_the_figures() {
    let scrape = PrometheusBuilder::new().install_recorder().unwrap();
    let server = common::server();
    let bus = common::bus(&server, "observed").await;
    spans_link_across_redis(&bus).await;
    let metered: RedisTopic<u32> = bus
        .create_topic("metered", TopicSettings::default().partitions(2))
        .await
        .unwrap();
    let _sub = metered
        .subscribe(SubscribeRequest::new("s", |_: Event<u32>| async { Ok(()) }))
        .await
        .unwrap();
    for n in 0..10 {
        metered.publish(Event::new("m", n).unwrap()).await.unwrap();
    }
    let done = wait_for(Duration::from_secs(20), || async {
        (metered.stats().await.total.processed == 10).then_some(())
    })
    .await;
    assert!(done.is_some(), "{:?}", metered.stats().await.total);
    bus.report_metrics().await;
    let text = scrape.render();
    let total = |name: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(r#"topic="metered""#))
            .map(|l| l.rsplit_once(' ').unwrap().1.parse::<f64>().unwrap())
            .sum()
    };
    assert!(
        (total("flowgate_bus_published_total") - 10.0).abs() < 0.5,
        "{text}"
    );
    assert!(
        (total("flowgate_bus_handled_total") - 10.0).abs() < 0.5,
        "{text}"
    );
    assert!(
        (total("flowgate_bus_handle_duration_seconds_count") - 10.0).abs() < 0.5,
        "{text}"
    );
    bus.shutdown(Duration::from_secs(5)).await;
}

async fn spans_link_across_redis(bus: &flowgate::redis::RedisBus) {
    let log = SpanLog::new();
    let _recording = tracing::subscriber::set_default(log.subscriber());
    let orders: RedisTopic<u32> = bus
        .create_topic("orders", TopicSettings::default())
        .await
        .unwrap();
    let invoices: RedisTopic<u32> = bus
        .create_topic("invoices", TopicSettings::default())
        .await
        .unwrap();
    let follow_up = invoices.clone();
    let _billing = orders
        .subscribe(SubscribeRequest::new(
            "billing",
            move |event: Event<u32>| {
                let invoices = follow_up.clone();
                async move {
                    let invoice = Event::new("invoice.due", *event.payload()).unwrap();
                    invoices
                        .publish(invoice)
                        .await
                        .map_err(|e| HandlerError::permanent(e.to_string()))?;
                    Ok(())
                }
            },
        ))
        .await
        .unwrap();
    let (handler, mut received) = flowgate::flow::channel(4).unwrap();
    let _mailer = invoices
        .subscribe(SubscribeRequest::new("mailer", handler))
        .await
        .unwrap();
    let order = Event::new("order.placed", 7).unwrap();
    let trace = format!("{:032x}", order.id().as_uuid().as_u128());
    orders.publish(order).await.unwrap();
    let invoice = within("the invoice, through Redis twice", received.recv())
        .await
        .unwrap();
    let carried = TraceContext::of(&invoice).expect("the traceparent crossed Redis");
    assert_eq!(
        format!("{:032x}", carried.trace_id),
        trace,
        "the chain shares one trace"
    );
    let settled = wait_until(Duration::from_secs(10), || {
        log.named("flowgate.handle").len() >= 2
    })
    .await;
    assert!(settled, "{:#?}", log.all());
    let publish_spans = log.named("flowgate.publish");
    let handle_spans = log.named("flowgate.handle");
    let of = |spans: &[flowgate_testkit::spans::RecordedSpan], topic: &str| {
        spans
            .iter()
            .find(|s| s.field("topic") == Some(topic))
            .cloned()
            .unwrap_or_else(|| panic!("no span of {topic}: {spans:#?}"))
    };
    for topic in ["orders", "invoices"] {
        let (publish, handle) = (of(&publish_spans, topic), of(&handle_spans, topic));
        assert_eq!(publish.field("trace_id"), Some(trace.as_str()), "{topic}");
        assert_eq!(handle.field("trace_id"), Some(trace.as_str()), "{topic}");
        assert_eq!(
            handle.field("parent_id"),
            publish.field("span_id"),
            "{topic}: linked"
        );
        assert_eq!(
            handle.field("event_id"),
            publish.field("event_id"),
            "{topic}"
        );
        assert_eq!(handle.field("attempt"), Some("1"));
    }
}
