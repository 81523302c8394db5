//! Retention: max events per stream, max age and max stream count remove what they say, count
//! it, never reuse a position, and a subscriber whose next events were removed gets
//! `StoreError::Truncated` (or `StreamEvicted`) in their place, never a silent jump.
#![cfg(not(loom))]

mod common;

use std::time::Duration;

use common::{ev, within};
use flowgate_store::{
    ExpectedVersion, Start, Store, StoreError, StreamLimit, Subscription, SubscriptionItem, Target,
};

/// What a subscription yields, as (position or version, payload) for events and a marker for
/// signals, until it has yielded `n` items.
async fn take(sub: &mut Subscription<u64>, n: usize) -> Vec<Result<(u64, u64), StoreError>> {
    let mut out = Vec::new();
    for _ in 0..n {
        let item: SubscriptionItem<u64> = within("an item", sub.next()).await.unwrap();
        out.push(item.map(|r| (r.position(), *r.event().payload())));
    }
    out
}

fn truncated(missed_from: u64, resume_at: u64) -> Result<(u64, u64), StoreError> {
    Err(StoreError::Truncated {
        missed_from,
        resume_at,
    })
}

#[tokio::test]
async fn max_events_per_stream_truncates_the_oldest_and_signals_subscribers() {
    let store = Store::<u64>::builder()
        .max_events_per_stream(3)
        .build()
        .unwrap();
    let mut all = store.subscribe(Target::All).open().unwrap();
    let mut cat = store.subscribe(Target::category("s")).open().unwrap();
    let mut stream = store.subscribe(Target::stream("s-1")).open().unwrap();
    for i in 0..10 {
        store.append("s-1", ExpectedVersion::Any, ev(i)).unwrap();
    }
    let page = store.read_stream_forward("s-1", 0, 100).unwrap();
    assert_eq!(
        page.events
            .iter()
            .map(flowgate_store::Recorded::version)
            .collect::<Vec<_>>(),
        [7, 8, 9]
    );
    assert_eq!(page.truncated, 7);
    let page = store.read_all(0, 100).unwrap();
    assert_eq!((page.events.len(), page.truncated), (3, 7));

    let expected = vec![truncated(0, 7), Ok((7, 7)), Ok((8, 8)), Ok((9, 9))];
    assert_eq!(take(&mut all, 4).await, expected);
    assert_eq!(take(&mut cat, 4).await, expected);
    assert_eq!(
        take(&mut stream, 4).await,
        expected,
        "versions equal positions here"
    );

    // Positions are never reused: the next event gets position 10.
    let next = store.append("t-1", ExpectedVersion::Any, ev(10)).unwrap();
    assert_eq!(next.first_position, 10);
    let stats = store.stats();
    assert_eq!((stats.appended, stats.events, stats.truncated), (11, 4, 7));
}

#[tokio::test]
async fn only_removed_events_are_signalled_between_live_ones() {
    let store = Store::<u64>::builder()
        .max_events_per_stream(1)
        .build()
        .unwrap();
    // positions: 0 a, 1 b, 2 a, 3 b, 4 a  -> a keeps 4, b keeps 3; 0, 1, 2 are removed.
    for (i, stream) in ["a-1", "b-1", "a-1", "b-1", "a-1"].into_iter().enumerate() {
        store
            .append(stream, ExpectedVersion::Any, ev(i as u64))
            .unwrap();
    }
    let mut all = store.subscribe(Target::All).open().unwrap();
    assert_eq!(
        take(&mut all, 3).await,
        vec![truncated(0, 3), Ok((3, 3)), Ok((4, 4))]
    );
    // A subscriber past the removed events gets no signal.
    let mut late = store
        .subscribe(Target::All)
        .start(Start::At(3))
        .open()
        .unwrap();
    assert_eq!(take(&mut late, 2).await, vec![Ok((3, 3)), Ok((4, 4))]);
}

#[tokio::test]
async fn a_long_truncated_run_is_one_signal_and_one_count() {
    let store = Store::<u64>::builder()
        .max_events_per_stream(10)
        .build()
        .unwrap();
    for i in 0..5_000 {
        store.append("big-1", ExpectedVersion::Any, ev(i)).unwrap();
    }
    let mut all = store.subscribe(Target::All).open().unwrap();
    let items = take(&mut all, 11).await;
    assert_eq!(items[0], truncated(0, 4_990));
    assert_eq!(items[1], Ok((4_990, 4_990)));
    assert_eq!(store.read_all(0, 1_000).unwrap().truncated, 4_990);
}

#[tokio::test(start_paused = true)]
async fn max_age_removes_old_events_on_the_tokio_clock() {
    let store = Store::<u64>::builder()
        .max_age(Duration::from_secs(60))
        .payload_size(|_| 8)
        .build()
        .unwrap();
    let mut sub = store.subscribe(Target::category("m")).open().unwrap();
    store.append("m-1", ExpectedVersion::Any, ev(0)).unwrap();
    store.append("m-2", ExpectedVersion::Any, ev(1)).unwrap();
    tokio::time::advance(Duration::from_secs(30)).await;
    store.append("m-1", ExpectedVersion::Any, ev(2)).unwrap();
    assert_eq!(store.expire(), 0, "nothing is 60 s old yet");
    tokio::time::advance(Duration::from_secs(31)).await;
    assert_eq!(store.expire(), 2, "the two events from t=0");
    assert_eq!(store.stats().bytes, Some(8));
    assert_eq!(
        store.stream_version("m-2").unwrap(),
        Some(0),
        "the stream and its version stay"
    );
    assert_eq!(take(&mut sub, 2).await, vec![truncated(0, 2), Ok((2, 2))]);
    tokio::time::advance(Duration::from_secs(30)).await;
    assert_eq!(store.expire(), 1);
    let stats = store.stats();
    assert_eq!(
        (stats.events, stats.truncated, stats.bytes),
        (0, 3, Some(0))
    );
    // The version continues after everything expired.
    let next = store
        .append("m-1", ExpectedVersion::Exact(1), ev(3))
        .unwrap();
    assert_eq!((next.first_version, next.first_position), (2, 3));
}

#[test]
fn max_streams_reject_refuses_new_streams_only() {
    let store = Store::<u64>::builder()
        .max_streams(2, StreamLimit::Reject)
        .build()
        .unwrap();
    store.append("a-1", ExpectedVersion::Any, ev(0)).unwrap();
    store.append("a-2", ExpectedVersion::Any, ev(1)).unwrap();
    let err = store
        .append("a-3", ExpectedVersion::Any, ev(2))
        .unwrap_err();
    assert!(
        matches!(err, StoreError::StreamLimitReached { limit: 2, .. }),
        "{err}"
    );
    assert!(err.is_retryable());
    store
        .append("a-1", ExpectedVersion::Exact(0), ev(3))
        .unwrap();
    let stats = store.stats();
    assert_eq!(
        (stats.streams, stats.rejected_streams, stats.appended),
        (2, 1, 3)
    );
}

#[tokio::test]
async fn max_streams_evicts_the_least_recently_appended_and_tells_its_subscribers() {
    let store = Store::<u64>::builder()
        .max_streams(2, StreamLimit::EvictLeastRecent)
        .build()
        .unwrap();
    store.append("a-1", ExpectedVersion::Any, ev(0)).unwrap();
    store.append("a-2", ExpectedVersion::Any, ev(1)).unwrap();
    store.append("a-2", ExpectedVersion::Any, ev(2)).unwrap();
    store.append("a-1", ExpectedVersion::Any, ev(3)).unwrap(); // a-2 is now the least recent
    let mut doomed = store.subscribe(Target::stream("a-2")).open().unwrap();
    assert_eq!(take(&mut doomed, 2).await, vec![Ok((1, 1)), Ok((2, 2))]);
    let mut cat = store.subscribe(Target::category("a")).open().unwrap();

    store.append("a-3", ExpectedVersion::Any, ev(4)).unwrap();
    assert_eq!(store.stream_version("a-2").unwrap(), None);
    assert_eq!(store.stream_version("a-1").unwrap(), Some(1));
    let evicted = within("the signal", doomed.next()).await.unwrap();
    assert!(matches!(evicted, Err(StoreError::StreamEvicted { ref stream }) if stream == "a-2"));
    assert!(
        doomed.next().await.is_none(),
        "the subscription ends after the signal"
    );
    assert_eq!(
        take(&mut cat, 4).await,
        vec![Ok((0, 0)), truncated(1, 3), Ok((3, 3)), Ok((4, 4))]
    );
    let stats = store.stats();
    assert_eq!(
        (stats.streams, stats.evicted_streams, stats.truncated),
        (2, 1, 2)
    );

    // The name can be used again: a new stream from version 0, at a new position.
    let again = store
        .append("a-2", ExpectedVersion::NoStream, ev(5))
        .unwrap();
    assert_eq!((again.first_version, again.first_position), (0, 5));
}

#[tokio::test]
async fn a_consumer_group_member_is_not_signalled_for_other_members_streams() {
    use flowgate_core::{partition_of_hash, stable_hash};
    use std::num::NonZeroU32;
    let store = Store::<u64>::builder()
        .max_events_per_stream(1)
        .build()
        .unwrap();
    let two = NonZeroU32::new(2).unwrap();
    // Two stream ids that land on different members.
    let ids: Vec<String> = (0..100).map(|i| i.to_string()).collect();
    let zero = ids
        .iter()
        .find(|id| partition_of_hash(stable_hash(id), two) == 0)
        .unwrap();
    let one = ids
        .iter()
        .find(|id| partition_of_hash(stable_hash(id), two) == 1)
        .unwrap();
    let (s0, s1) = (format!("g-{zero}"), format!("g-{one}"));
    store.append(&s0, ExpectedVersion::Any, ev(0)).unwrap();
    store.append(&s1, ExpectedVersion::Any, ev(1)).unwrap();
    store.append(&s1, ExpectedVersion::Any, ev(2)).unwrap(); // removes position 1
    let mut member0 = store
        .subscribe(Target::category("g"))
        .consumer_group(0, 2)
        .open()
        .unwrap();
    let mut member1 = store
        .subscribe(Target::category("g"))
        .consumer_group(1, 2)
        .open()
        .unwrap();
    assert_eq!(take(&mut member0, 1).await, vec![Ok((0, 0))]);
    assert_eq!(
        take(&mut member1, 2).await,
        vec![truncated(1, 2), Ok((2, 2))]
    );
    store.append(&s0, ExpectedVersion::Any, ev(3)).unwrap(); // removes position 0, already read
    assert_eq!(
        take(&mut member0, 1).await,
        vec![Ok((3, 3))],
        "no signal for what was read"
    );
}

/// Found by the store checker: a category subscription that starts inside history whose log
/// segments were already released must be told, not start silently at the first event left.
#[tokio::test]
async fn a_category_subscription_starting_in_released_history_is_told() {
    let store = Store::<u64>::builder()
        .max_events_per_stream(1)
        .build()
        .unwrap();
    for i in 0..5_000 {
        store.append("c-1", ExpectedVersion::Any, ev(i)).unwrap();
    }
    // Every position is c's, so the signals must cover every position before the last.
    let last_c = 4_999;
    for target in [Target::category("c"), Target::All] {
        let mut sub = store
            .subscribe(target.clone())
            .start(Start::At(0))
            .open()
            .unwrap();
        let mut covered_to = 0;
        loop {
            match within("an item", sub.next()).await.unwrap() {
                Err(StoreError::Truncated {
                    missed_from,
                    resume_at,
                }) => {
                    assert!(
                        missed_from <= covered_to,
                        "{target:?}: a silent jump before {missed_from}"
                    );
                    covered_to = resume_at;
                }
                Ok(event) => {
                    assert!(event.position() <= covered_to || event.position() >= last_c);
                    if event.position() == last_c {
                        break;
                    }
                }
                Err(other) => panic!("{other}"),
            }
        }
        assert!(covered_to >= last_c - 1, "{target:?}: {covered_to}");
    }
    let page = store.read_category("c", 0, 10).unwrap();
    assert_eq!(page.events.len(), 1);
    assert!(page.truncated >= 1, "the read must say events were removed");
}

#[tokio::test(start_paused = true)]
async fn a_periodic_expiry_removes_old_events_without_appends_and_ends_with_the_store() {
    let store = Store::<u64>::builder()
        .max_age(Duration::from_secs(60))
        .build()
        .unwrap();
    let expiry = store.expire_every(Duration::from_secs(5)).unwrap();
    let mut sub = store.subscribe(Target::All).open().unwrap();
    store.append("p-1", ExpectedVersion::Any, ev(0)).unwrap();
    // On the paused clock, each poll's sleep advances virtual time only.
    let removed = async {
        while store.stats().truncated == 0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(3_600), removed)
        .await
        .expect("the periodic expiry never ran");
    assert_eq!(
        within("the signal", sub.next()).await.unwrap().unwrap_err(),
        StoreError::Truncated {
            missed_from: 0,
            resume_at: 1
        }
    );
    drop(sub);
    drop(store);
    within("the expiry task to end", expiry).await.unwrap();
}

#[test]
fn a_periodic_expiry_needs_a_runtime_and_a_period() {
    let store = Store::<u64>::builder()
        .max_age(Duration::from_secs(60))
        .build()
        .unwrap();
    assert_eq!(
        store.expire_every(Duration::from_secs(1)).unwrap_err(),
        StoreError::NoRuntime
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let _guard = runtime.enter();
    assert!(matches!(
        store.expire_every(Duration::ZERO),
        Err(StoreError::InvalidConfig {
            setting: "expire_every",
            ..
        })
    ));
}
