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

use flowgate_bus::dedupe::{Admit, Begin, Dedupe};
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

/// The subscriber side: of two deliveries of one key claiming it at once, exactly one runs
/// (the other finds it busy); once the runner ends with `Ok`, the key is done for everyone.
#[test]
fn one_delivery_of_a_key_runs_at_a_time_and_ok_is_final() {
    loom::model(|| {
        let dedupe = Arc::new(window());
        let now = Instant::now();
        let other = {
            let dedupe = Arc::clone(&dedupe);
            thread::spawn(move || {
                let begin = dedupe.begin(PAY_1, now);
                if begin == Begin::Run {
                    dedupe.end(PAY_1, Some(now));
                }
                begin
            })
        };
        let mine = dedupe.begin(PAY_1, now);
        if mine == Begin::Run {
            dedupe.end(PAY_1, Some(now));
        }
        let theirs = other.join().unwrap();
        let runs = [mine, theirs].iter().filter(|b| **b == Begin::Run).count();
        assert_eq!(runs, 1, "exactly one ran: {mine:?} {theirs:?}");
        assert_eq!(
            dedupe.begin(PAY_1, now),
            Begin::Done,
            "Ok is final within the window"
        );
    });
}

/// A failed delivery gives its key back: the next one runs.
#[test]
fn a_failed_delivery_releases_its_key() {
    loom::model(|| {
        let dedupe = Arc::new(window());
        let now = Instant::now();
        assert_eq!(dedupe.begin(PAY_1, now), Begin::Run);
        let waiter = {
            let dedupe = Arc::clone(&dedupe);
            thread::spawn(move || loop {
                match dedupe.begin(PAY_1, now) {
                    Begin::Busy => thread::yield_now(),
                    other => return other,
                }
            })
        };
        dedupe.end(PAY_1, None); // failed for good (dead-lettered)
        assert_eq!(waiter.join().unwrap(), Begin::Run, "not done: it may run");
    });
}
