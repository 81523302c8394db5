//! Loom model of the subscriber registry snapshot, the per-subscription start gate and the
//! gate-free start of an emit's one handler: subscribe and unsubscribe racing an emit. No
//! handler starts after its `unsubscribe` returned, and no handler subscribed before an emit
//! began is skipped.
//!
//! Run with `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test --release -p flowgate-emitter --test loom_registry`.
#![cfg(loom)]

use std::future::poll_fn;
use std::pin::pin;
use std::task::Poll;

use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use loom::sync::Arc;
use loom::thread;

use flowgate_core::{BoxHandler, Event, HandlerResult, InlineCall, Pattern};
use flowgate_emitter::registry::{Deliver, Registry, Sole};

/// A handler that raises `flag` when its body runs (on the first poll, like user code in an
/// async block).
fn raising(flag: &Arc<AtomicBool>) -> BoxHandler<u32> {
    let flag = Arc::clone(flag);
    BoxHandler::new(move |_: Event<u32>| {
        let flag = Arc::clone(&flag);
        async move {
            flag.store(true, SeqCst);
            HandlerResult::Ok(())
        }
    })
}

/// What one emit does: start the one handler without a gate when there is exactly one, else
/// load the snapshot and deliver to every match through their gates.
fn emit(registry: &Registry<u32>, event: &Event<u32>) -> usize {
    let mut call = pin!(InlineCall::new());
    let sole = loom::future::block_on(poll_fn(|cx| {
        Poll::Ready(registry.start_sole(event.clone(), call.as_mut(), cx))
    }));
    match sole {
        Sole::Done => return 1,
        Sole::Removed => return 0,
        Sole::Started { poll, .. } => {
            if poll.is_pending() {
                let _ = loom::future::block_on(call);
            }
            return 1;
        }
        Sole::Other(_) => {}
    }
    let snapshot = registry.load();
    let mut delivered = 0;
    for entry in snapshot.matching(event.kind()) {
        if loom::future::block_on(Deliver::new(entry, event.clone(), call.as_mut())).is_some() {
            delivered += 1;
        }
    }
    delivered
}

#[test]
fn no_handler_starts_after_its_unsubscribe_returned() {
    no_start_after_unsubscribe(false);
}

/// The emit peeks at a snapshot that a third thread's subscribe replaces before the
/// unsubscribe runs: the unsubscribe must still wait for that older peek.
#[test]
fn unsubscribe_waits_for_a_start_under_a_snapshot_another_writer_replaced() {
    no_start_after_unsubscribe(true);
}

/// An emit races `unsubscribe` of its one handler (and, with `other_writer`, a subscribe of
/// another name on a third thread).
fn no_start_after_unsubscribe(other_writer: bool) {
    loom::model(move || {
        let registry = Arc::new(Registry::<u32>::new());
        let ran = Arc::new(AtomicBool::new(false));
        let id = registry.subscribe(None, Pattern::new("a").unwrap(), raising(&ran), None);
        let event = Event::new("a", 1).unwrap();

        let emitter = {
            let registry = Arc::clone(&registry);
            thread::spawn(move || emit(&registry, &event))
        };
        let subscriber = other_writer.then(|| {
            let registry = Arc::clone(&registry);
            let other = Arc::new(AtomicBool::new(false));
            thread::spawn(move || {
                registry.subscribe(None, Pattern::new("b").unwrap(), raising(&other), None);
            })
        });
        assert!(registry.unsubscribe(id));
        let ran_when_unsubscribe_returned = ran.load(SeqCst);
        let delivered = emitter.join().unwrap();
        if let Some(subscriber) = subscriber {
            subscriber.join().unwrap();
        }

        assert_eq!(
            ran.load(SeqCst),
            ran_when_unsubscribe_returned,
            "the handler started after unsubscribe returned"
        );
        assert_eq!(
            delivered == 1,
            ran.load(SeqCst),
            "delivered means the handler ran"
        );
    });
}

#[test]
fn no_handler_subscribed_before_an_emit_began_is_skipped() {
    no_subscription_made_before_an_emit_is_skipped("a.*", "a.b");
}

/// The same through the gate-free path: an exact name with one subscription, so the emit
/// starts it under its peek (and the subscribe races `publish`'s two stores).
#[test]
fn a_sole_handler_subscribed_before_an_emit_began_is_not_skipped() {
    no_subscription_made_before_an_emit_is_skipped("a", "a");
}

fn no_subscription_made_before_an_emit_is_skipped(pattern: &'static str, kind: &'static str) {
    loom::model(move || {
        let registry = Arc::new(Registry::<u32>::new());
        let ran = Arc::new(AtomicBool::new(false));
        let subscribed = Arc::new(AtomicBool::new(false));

        let subscriber = {
            let (registry, ran, subscribed) = (
                Arc::clone(&registry),
                Arc::clone(&ran),
                Arc::clone(&subscribed),
            );
            thread::spawn(move || {
                registry.subscribe(None, Pattern::new(pattern).unwrap(), raising(&ran), None);
                subscribed.store(true, SeqCst);
            })
        };
        let subscribed_before_emit = subscribed.load(SeqCst);
        let delivered = emit(&registry, &Event::new(kind, 1).unwrap());
        if subscribed_before_emit {
            assert_eq!(
                delivered, 1,
                "a subscription made before the emit was skipped"
            );
            assert!(ran.load(SeqCst));
        }
        subscriber.join().unwrap();
    });
}

#[test]
fn two_identical_subscriptions_are_removed_one_at_a_time() {
    loom::model(|| {
        let registry = Arc::new(Registry::<u32>::new());
        let count = Arc::new(AtomicUsize::new(0));
        let counting = |count: &Arc<AtomicUsize>| {
            let count = Arc::clone(count);
            BoxHandler::new(move |_: Event<u32>| {
                count.fetch_add(1, SeqCst);
                async { HandlerResult::Ok(()) }
            })
        };
        let first = registry.subscribe(None, Pattern::new("a").unwrap(), counting(&count), None);
        let _second = registry.subscribe(None, Pattern::new("a").unwrap(), counting(&count), None);

        let unsubscriber = {
            let registry = Arc::clone(&registry);
            thread::spawn(move || assert!(registry.unsubscribe(first)))
        };
        let delivered = emit(&registry, &Event::new("a", 1).unwrap());
        unsubscriber.join().unwrap();

        assert!(
            (1..=2).contains(&delivered),
            "the second subscription always runs"
        );
        assert_eq!(emit(&registry, &Event::new("a", 2).unwrap()), 1);
        assert_eq!(count.load(SeqCst), delivered + 1);
    });
}
