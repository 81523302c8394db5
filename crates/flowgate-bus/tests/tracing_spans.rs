//! The bus's `tracing` spans: one `flowgate.publish` per publish and one `flowgate.handle` per
//! handler invocation, with topic, partition, event id and attempt; each handle span names its
//! publish span (`parent_id`) and shares its trace; an event published from a handler joins
//! the trace of the event being handled. Without a subscriber, nothing is written into the
//! event.
//!
//! One test only: tracing caches each callsite's interest process-wide, so a test without a
//! subscriber running beside one with a thread-local subscriber could turn its spans off.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use flowgate::bus::{Bus, DeliveryMode, Subscription, Topic};
use flowgate::trace_context::{TraceContext, TRACEPARENT};
use flowgate::{Event, HandlerError, Jitter, RetryPolicy};
use flowgate_testkit::spans::SpanLog;
use flowgate_testkit::wait::{wait_until, within};

#[tokio::test(flavor = "current_thread")]
async fn handle_spans_link_to_their_publish_and_a_chain_shares_one_trace() {
    without_a_subscriber_nothing_is_written_into_the_event().await;
    with_a_subscriber_the_spans_link_up().await;
}

async fn without_a_subscriber_nothing_is_written_into_the_event() {
    let quiet = Bus::new();
    let topic = quiet.topic::<u32>("quiet").create().unwrap();
    let (handler, mut received) = flowgate::flow::channel(4).unwrap();
    let _sub = topic.subscribe("s", handler).start().unwrap();
    topic.publish(Event::new("e", 1).unwrap()).await.unwrap();
    let event = within("the event", received.recv()).await.unwrap();
    assert!(event.metadata().is_empty(), "{:?}", event.metadata());
    quiet.shutdown(Duration::from_secs(5)).await;
}

async fn with_a_subscriber_the_spans_link_up() {
    let log = SpanLog::new();
    let _recording = tracing::subscriber::set_default(log.subscriber());
    let bus = Bus::new();
    let retry = RetryPolicy::exponential(3, Duration::from_millis(1)).jitter(Jitter::None);
    let orders = bus
        .topic::<u32>("orders")
        .partitions(2)
        .mode(DeliveryMode::AtLeastOnce(retry))
        .create()
        .unwrap();
    let invoices = bus.topic::<u32>("invoices").create().unwrap();
    let _billing = fail_once_then_invoice(&orders, &invoices);
    let (handler, mut received) = flowgate::flow::channel(4).unwrap();
    let _mailer = invoices.subscribe("mailer", handler).start().unwrap();

    let order = Event::new("order.placed", 7).unwrap().with_key("order-7");
    let order_id = order.id();
    let published = orders.publish(order).await.unwrap();
    let invoice = within("the invoice", received.recv()).await.unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || log
            .named("flowgate.handle")
            .len()
            == 3)
        .await
    );

    let publish_spans = log.named("flowgate.publish");
    let handle_spans = log.named("flowgate.handle");
    assert_eq!(publish_spans.len(), 2, "{publish_spans:#?}");
    let (order_pub, invoice_pub) = (&publish_spans[0], &publish_spans[1]);
    let trace = format!("{:032x}", order_id.as_uuid().as_u128());
    assert_eq!(order_pub.field("topic"), Some("orders"));
    assert_eq!(
        order_pub.field("partition"),
        Some(published.partition.to_string().as_str())
    );
    assert_eq!(
        order_pub.field("event_id"),
        Some(order_id.to_string().as_str())
    );
    assert_eq!(
        order_pub.field("trace_id"),
        Some(trace.as_str()),
        "a new trace is named after its event"
    );
    assert_eq!(invoice_pub.field("topic"), Some("invoices"));
    assert_eq!(
        invoice_pub.field("trace_id"),
        Some(trace.as_str()),
        "published from a handler: same trace"
    );

    let attempts: Vec<_> = handle_spans[..2]
        .iter()
        .map(|h| h.field("attempt"))
        .collect();
    assert_eq!(attempts, [Some("1"), Some("2")], "one span per attempt");
    for handle in &handle_spans[..2] {
        assert_eq!(handle.field("topic"), Some("orders"));
        assert_eq!(handle.field("subscriber"), Some("billing"));
        assert_eq!(handle.field("event_id"), order_pub.field("event_id"));
        assert_eq!(handle.field("trace_id"), Some(trace.as_str()));
        assert_eq!(
            handle.field("parent_id"),
            order_pub.field("span_id"),
            "linked to its publish"
        );
    }
    let mail = &handle_spans[2];
    assert_eq!(
        (mail.field("topic"), mail.field("subscriber")),
        (Some("invoices"), Some("mailer"))
    );
    assert_eq!(mail.field("parent_id"), invoice_pub.field("span_id"));
    assert_eq!(mail.field("trace_id"), Some(trace.as_str()));

    let carried = TraceContext::of(&invoice).expect("the invoice carries its traceparent");
    assert_eq!(format!("{:032x}", carried.trace_id), trace);
    assert_eq!(
        Some(format!("{:016x}", carried.span_id).as_str()),
        invoice_pub.field("span_id")
    );
    assert!(invoice.metadata().contains_key(TRACEPARENT));

    a_given_traceparent_stays(&log, &invoices, &mut received).await;
    bus.shutdown(Duration::from_secs(5)).await;
}

/// Billing: fails its first attempt, then publishes an invoice for the order.
fn fail_once_then_invoice(orders: &Topic<u32>, invoices: &Topic<u32>) -> Subscription<u32> {
    let follow_up = invoices.clone();
    let tries = Arc::new(AtomicU32::new(0));
    orders
        .subscribe("billing", move |event: Event<u32>| {
            let invoices = follow_up.clone();
            let attempt = tries.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                if attempt == 1 {
                    return Err(HandlerError::retryable("ledger busy"));
                }
                invoices
                    .publish(Event::new("invoice.due", *event.payload()).unwrap())
                    .await
                    .map_err(|e| HandlerError::permanent(e.to_string()))?;
                Ok(())
            }
        })
        .start()
        .unwrap()
}

/// An event that comes with a traceparent of its own stays in that trace, under that span.
async fn a_given_traceparent_stays(
    log: &SpanLog,
    invoices: &Topic<u32>,
    received: &mut flowgate::flow::EventStream<u32>,
) {
    let caller = TraceContext {
        trace_id: 0x0af7_6519_16cd_43dd_8448_eb21_1c80_319c,
        span_id: 0xb7ad_6b71_6920_3331,
    };
    let given = Event::new("invoice.due", 9)
        .unwrap()
        .with_metadata(TRACEPARENT, caller.to_traceparent());
    invoices.publish(given).await.unwrap();
    let forwarded = within("the forwarded event", received.recv())
        .await
        .unwrap();
    let publish = log.named("flowgate.publish").pop().unwrap();
    assert_eq!(publish.field("parent_id"), Some("b7ad6b7169203331"));
    assert_eq!(
        publish.field("trace_id"),
        Some("0af7651916cd43dd8448eb211c80319c")
    );
    let carried = TraceContext::of(&forwarded).unwrap();
    assert_eq!(carried.trace_id, caller.trace_id);
    assert_eq!(
        Some(format!("{:016x}", carried.span_id).as_str()),
        publish.field("span_id")
    );
}
