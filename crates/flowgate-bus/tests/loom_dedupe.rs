//! Loom model of the exactly-once dedupe window (`flowgate_bus::dedupe`): concurrent publishes
//! of one idempotency key enqueue it exactly once, and a publish refused for room leaves no
//! trace, so a retry of it is never mistaken for a duplicate.
//!
//! Run with `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test --release -p flowgate-bus --test loom_dedupe`.
#![cfg(loom)]

use std::time::Duration;

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::thread;
use std::sync::Arc;

use flowgate_bus::dedupe::{Admit, Dedupe};
use flowgate_bus::DedupeWindowConfig;
use tokio::time::Instant;

/// An idempotency key's fingerprint.
const PAY_1: u128 = 0x5eed;

fn window() -> Dedupe {
    Dedupe::new(DedupeWindowConfig::new(4, Duration::from_secs(60)))
}

#[test]
fn concurrent_admits_of_one_key_enqueue_once() {
    loom::model(|| {
        let dedupe = Arc::new(window());
        let enqueued = Arc::new(AtomicUsize::new(0));
        let admit = |dedupe: &Dedupe, enqueued: &AtomicUsize| {
            dedupe.admit::<()>(PAY_1, Instant::now(), || {
                enqueued.fetch_add(1, Ordering::Relaxed);
                Ok(())
            })
        };
        let other = {
            let (dedupe, enqueued) = (Arc::clone(&dedupe), Arc::clone(&enqueued));
            thread::spawn(move || admit(&dedupe, &enqueued))
        };
        let mine = admit(&dedupe, &enqueued);
        let theirs = other.join().unwrap();
        assert_eq!(enqueued.load(Ordering::Relaxed), 1, "enqueued exactly once");
        let mut outcomes = [mine, theirs];
        outcomes.sort_by_key(|o| matches!(o, Admit::Duplicate));
        assert_eq!(outcomes, [Admit::Accepted, Admit::Duplicate]);
    });
}

#[test]
fn a_refused_publish_is_not_remembered() {
    loom::model(|| {
        let dedupe = Arc::new(window());
        let refused = {
            let dedupe = Arc::clone(&dedupe);
            thread::spawn(move || dedupe.admit(PAY_1, Instant::now(), || Err("full")))
        };
        let accepted = dedupe.admit::<&str>(PAY_1, Instant::now(), || Ok(()));
        let refused = refused.join().unwrap();
        // Refused if it ran first; a duplicate if the accepted one did.
        assert!(
            matches!(refused, Admit::Refused("full") | Admit::Duplicate),
            "{refused:?}"
        );
        assert_eq!(accepted, Admit::Accepted, "a refusal leaves no trace");
        assert_eq!(dedupe.sizes(), (1, 0));
    });
}
