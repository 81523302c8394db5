//! Checkpoints for concurrent handlers: the checkpoint never passes the lowest unfinished
//! event, so a subscription restarted from it loses nothing, whatever order handlers finish in.
#![cfg(not(loom))]

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use common::{ev, within};
use flowgate_store::{ExpectedVersion, Start, Store, Target};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checkpoint_never_passes_an_unfinished_event() {
    let store = Store::<u64>::new();
    for i in 0..500 {
        store
            .append(&format!("job-{}", i % 7), ExpectedVersion::Any, ev(i))
            .unwrap();
    }
    let mut sub = store.subscribe(Target::All).open().unwrap();
    let checkpoints = sub.checkpoints();
    let finished = Arc::new(Mutex::new(BTreeSet::new()));
    let mut tasks = Vec::new();
    for _ in 0..500 {
        let e = within("next", sub.next()).await.unwrap().unwrap();
        let (checkpoints, finished) = (checkpoints.clone(), Arc::clone(&finished));
        tasks.push(tokio::spawn(async move {
            // Finish in a scrambled order.
            for _ in 0..(e.position() * 7919 % 13) {
                tokio::task::yield_now().await;
            }
            // Record as finished before marking done: every position below a checkpoint read
            // afterwards must be in `finished`.
            finished.lock().unwrap().insert(e.position());
            assert!(checkpoints.done(e.position()));
            let checkpoint = checkpoints.checkpoint();
            let finished = finished.lock().unwrap();
            let unfinished_below = (0..checkpoint).find(|p| !finished.contains(p));
            assert_eq!(
                unfinished_below, None,
                "checkpoint {checkpoint} passed an unfinished event"
            );
        }));
    }
    for t in tasks {
        within("handlers", t).await.unwrap();
    }
    assert_eq!(checkpoints.checkpoint(), 500);
    assert_eq!(checkpoints.in_flight(), 0);
}

#[tokio::test]
async fn restarting_from_the_checkpoint_loses_nothing() {
    let store = Store::<u64>::new();
    for i in 0..10 {
        store.append("c-1", ExpectedVersion::Any, ev(i)).unwrap();
    }
    let mut sub = store.subscribe(Target::category("c")).open().unwrap();
    let checkpoints = sub.checkpoints();
    let mut handled = BTreeSet::new();
    let mut yielded = Vec::new();
    for _ in 0..6 {
        yielded.push(sub.next().await.unwrap().unwrap().position());
    }
    // 0, 1, 3, 4, 5 finished; 2 still running when the process "dies".
    for p in [0, 1, 3, 4, 5] {
        checkpoints.done(p);
        handled.insert(p);
    }
    let checkpoint = checkpoints.checkpoint();
    assert_eq!(checkpoint, 2);
    drop(sub);

    let mut restarted = store
        .subscribe(Target::category("c"))
        .start(Start::At(checkpoint))
        .open()
        .unwrap();
    for _ in 0..8 {
        handled.insert(restarted.next().await.unwrap().unwrap().position());
    }
    assert_eq!(
        handled,
        (0..10).collect(),
        "restart from the checkpoint lost an event"
    );
}

#[tokio::test]
async fn a_stream_subscription_checkpoints_versions() {
    let store = Store::<u64>::new();
    store
        .append("other-1", ExpectedVersion::Any, ev(0))
        .unwrap();
    store.append("s-1", ExpectedVersion::Any, ev(1)).unwrap();
    let mut sub = store.subscribe(Target::stream("s-1")).open().unwrap();
    let checkpoints = sub.checkpoints();
    let e = sub.next().await.unwrap().unwrap();
    assert_eq!((e.version(), e.position()), (0, 1));
    assert_eq!(checkpoints.checkpoint(), 0);
    checkpoints.done(0);
    assert_eq!(checkpoints.checkpoint(), 1, "a version, not a position");
}
