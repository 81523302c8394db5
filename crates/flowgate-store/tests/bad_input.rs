//! Bad input gets a typed error with an actionable message, never a panic: invalid stream and
//! category names, empty batches, out-of-range settings, absurd positions and counts.
#![cfg(not(loom))]

mod common;

use common::ev;
use flowgate_store::{ExpectedVersion, Start, Store, StoreError, StreamLimit, Target};

#[test]
fn invalid_names_are_typed_errors_everywhere() {
    let store = Store::<u64>::new();
    for bad in ["", "nodash", "-id", "cat-", "c a-1", "cat-a b", "ü-1"] {
        let err = store.append(bad, ExpectedVersion::Any, ev(0)).unwrap_err();
        assert!(
            matches!(err, StoreError::InvalidStreamName { .. }),
            "{bad:?}: {err:?}"
        );
        assert!(err.to_string().contains("category-id"), "{err}");
        assert!(!err.is_retryable());
        assert!(store.read_stream_forward(bad, 0, 1).is_err());
        assert!(store.read_stream_backward(bad, 0, 1).is_err());
        assert!(store.stream_version(bad).is_err());
        assert!(store.subscribe(Target::stream(bad)).open().is_err());
    }
    for bad in ["", "a-b", "a b", "é"] {
        let err = store.read_category(bad, 0, 1).unwrap_err();
        assert!(
            matches!(err, StoreError::InvalidCategory { .. }),
            "{bad:?}: {err:?}"
        );
        assert!(store.subscribe(Target::category(bad)).open().is_err());
    }
    assert_eq!(store.stats().streams, 0);
    assert_eq!(store.stats().categories, 0);
}

#[test]
fn an_empty_batch_is_refused_and_appends_nothing() {
    let store = Store::<u64>::new();
    let err = store
        .append_batch("a-1", ExpectedVersion::Any, [])
        .unwrap_err();
    assert_eq!(
        err,
        StoreError::EmptyAppend {
            stream: "a-1".into()
        }
    );
    assert_eq!(store.head_position(), 0);
}

#[test]
fn settings_out_of_range_are_refused_at_build() {
    let cases = [
        (
            "max_events_per_stream",
            Store::<u64>::builder().max_events_per_stream(0).build(),
        ),
        (
            "max_age",
            Store::<u64>::builder()
                .max_age(std::time::Duration::ZERO)
                .build(),
        ),
        (
            "max_streams",
            Store::<u64>::builder()
                .max_streams(0, StreamLimit::Reject)
                .build(),
        ),
        (
            "subscription_buffer",
            Store::<u64>::builder().subscription_buffer(0).build(),
        ),
    ];
    for (name, result) in cases {
        match result {
            Err(StoreError::InvalidConfig { setting, .. }) => assert_eq!(setting, name),
            other => panic!("{name}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn extreme_positions_and_counts_do_not_panic() {
    let store = Store::<u64>::new();
    store.append("a-1", ExpectedVersion::Any, ev(0)).unwrap();
    assert!(store
        .read_all(u64::MAX, usize::MAX)
        .unwrap()
        .events
        .is_empty());
    assert!(store
        .read_category("a", u64::MAX, 0)
        .unwrap()
        .events
        .is_empty());
    assert!(store
        .read_stream_forward("a-1", u64::MAX, usize::MAX)
        .unwrap()
        .events
        .is_empty());
    assert_eq!(
        store
            .read_stream_backward("a-1", u64::MAX, usize::MAX)
            .unwrap()
            .events
            .len(),
        1
    );
    let err = store
        .append("a-1", ExpectedVersion::Exact(u64::MAX), ev(1))
        .unwrap_err();
    assert!(matches!(
        err,
        StoreError::WrongExpectedVersion {
            actual: Some(0),
            ..
        }
    ));
    let sub = store
        .subscribe(Target::All)
        .start(Start::At(u64::MAX))
        .buffer(0)
        .open();
    assert!(sub.is_ok());
}
