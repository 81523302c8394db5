//! Every bad input to the bus is a typed error with a message that says what to do: never a
//! panic, never a silently dead topic or subscription.
#![cfg(not(loom))]

use std::time::Duration;

use flowgate::bus::{Backpressure, Bus, BusError, DedupeWindowConfig, DeliveryMode, PublishError};
use flowgate::{Event, RetryPolicy};

fn invalid(result: Result<impl std::fmt::Debug, BusError>, what: &str) -> String {
    match result {
        Err(BusError::InvalidConfig { what: w, reason }) => {
            assert_eq!(w, what);
            format!("invalid {w}: {reason}")
        }
        other => panic!("expected InvalidConfig({what}), got {other:?}"),
    }
}

#[test]
fn invalid_topic_settings_are_typed_errors() {
    let bus = Bus::new();
    let message = invalid(bus.topic::<u8>("t").partitions(0).create(), "partitions");
    assert!(message.contains("at least 1"), "{message}");
    let message = invalid(
        bus.topic::<u8>("t").partitions(1_000_000).create(),
        "partitions",
    );
    assert!(message.contains("at most"), "{message}");
    invalid(bus.topic::<u8>("t").capacity(0).create(), "capacity");
    invalid(bus.topic::<u8>("t").concurrency(0).create(), "concurrency");
    invalid(
        bus.topic::<u8>("t")
            .exactly_once(
                RetryPolicy::default(),
                DedupeWindowConfig::new(0, Duration::from_secs(1)),
            )
            .create(),
        "dedupe window",
    );
    invalid(
        bus.topic::<u8>("t")
            .exactly_once(
                RetryPolicy::default(),
                DedupeWindowConfig::new(10, Duration::ZERO),
            )
            .create(),
        "dedupe window",
    );
    for drop in [Backpressure::DropOldest, Backpressure::DropNewest] {
        let message = invalid(
            bus.topic::<u8>("t").backpressure(drop).create(),
            "backpressure",
        );
        assert!(message.contains("use Block or Reject"), "{message}");
    }
    invalid(
        bus.topic::<u8>("t").max_payload_size(0, |_| 1).create(),
        "max payload size",
    );
    assert!(matches!(
        bus.topic::<u8>("t")
            .at_least_once(RetryPolicy::exponential(0, Duration::ZERO))
            .create(),
        Err(BusError::Core(_))
    ));
    assert!(
        bus.stats().is_empty(),
        "no failed create left a topic behind"
    );
}

#[test]
fn invalid_topic_names_are_typed_errors() {
    let bus = Bus::new();
    for name in ["", " ", "a..b", "orders*", "x y"] {
        let error = bus.topic::<u8>(name).create().unwrap_err();
        assert!(matches!(error, BusError::Core(_)), "{name:?}: {error:?}");
        assert!(!error.to_string().is_empty());
    }
}

#[test]
fn a_second_topic_of_one_name_is_refused() {
    let bus = Bus::new();
    bus.topic::<u8>("t").create().unwrap();
    let same = bus.topic::<u8>("t").create().unwrap_err();
    assert!(matches!(same, BusError::TopicExists { .. }), "{same:?}");
    let other = bus.topic::<String>("t").create().unwrap_err();
    assert!(
        other.to_string().contains("another payload type"),
        "{other}"
    );
    assert!(bus.get::<u8>("t").is_some());
}

#[tokio::test]
async fn empty_subscriber_and_group_names_are_refused() {
    let bus = Bus::new();
    let topic = bus.topic::<u8>("t").create().unwrap();
    let noop = |_: Event<u8>| async { Ok(()) };
    let error = topic.subscribe("", noop).start().unwrap_err();
    assert!(matches!(
        error,
        BusError::InvalidConfig {
            what: "subscriber name",
            ..
        }
    ));
    let error = topic.subscribe("s", noop).group(" ").start().unwrap_err();
    assert!(matches!(error, BusError::InvalidConfig { .. }));
}

#[test]
fn subscribing_outside_a_runtime_is_a_typed_error() {
    let bus = Bus::new();
    let topic = bus.topic::<u8>("t").create().unwrap();
    let error = topic
        .subscribe("s", |_: Event<u8>| async { Ok(()) })
        .start()
        .unwrap_err();
    assert!(matches!(error, BusError::NoRuntime), "{error:?}");
    assert!(error.to_string().contains("tokio runtime"));
}

#[tokio::test]
async fn an_oversized_payload_is_refused_and_handed_back() {
    let bus = Bus::new();
    let topic = bus
        .topic::<String>("t")
        .max_payload_size(4, String::len)
        .create()
        .unwrap();
    let error = topic
        .publish(Event::new("e", "too long".to_owned()).unwrap())
        .await
        .unwrap_err();
    assert!(matches!(
        error,
        PublishError::TooLarge {
            size: 8,
            limit: 4,
            ..
        }
    ));
    assert!(error.to_string().contains("exceeds"), "{error}");
    assert!(!error.is_retryable());
    assert_eq!(error.into_event().payload(), "too long");
    assert!(topic
        .publish(Event::new("e", "ok".to_owned()).unwrap())
        .await
        .is_ok());
    assert_eq!(topic.stats().total.rejected, 1);
}

#[tokio::test]
async fn after_shutdown_everything_is_refused() {
    let bus = Bus::new();
    let topic = bus.topic::<u8>("t").create().unwrap();
    let report = bus.shutdown(Duration::from_secs(1)).await;
    assert_eq!(report.not_delivered(), 0);
    let error = topic
        .publish(Event::new("e", 1).unwrap())
        .await
        .unwrap_err();
    assert!(matches!(error, PublishError::ShutDown(_)), "{error:?}");
    assert!(matches!(
        bus.topic::<u8>("u").create(),
        Err(BusError::ShutDown)
    ));
    let sub = topic
        .subscribe("s", |_: Event<u8>| async { Ok(()) })
        .start();
    assert!(matches!(sub, Err(BusError::ShutDown)));
    let mode = DeliveryMode::AtMostOnce;
    assert_eq!(mode.name(), "at-most-once");
}
