//! Loom model of a lane's shutdown gate (`flowgate_bus::lane`): a publish racing a close and
//! the lane's worker. Every publish accepted (pushed before the close) is delivered by the
//! worker before it stops, or, when the lane has no owner any more (the group's last member
//! left), handed back by the drain: never lost. No push lands after the close, and the
//! worker's parking protocol (its task's waker left in the lane, taken by whoever wakes it)
//! loses no wake-up: the worker runs under loom's `block_on`, which wakes it only through
//! that waker, so a lost wake-up leaves it parked forever and loom reports the deadlock.
//!
//! Run with `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test --release -p flowgate-bus --test loom_shutdown_gate`.
#![cfg(loom)]

use std::sync::Arc;

use loom::future::block_on;
use loom::thread;

use flowgate_bus::lane::{task_waker, Lane};
use flowgate_core::Event;

/// The publish side: refused once the lane is closed, else pushed, waking a parked worker.
fn publish(lane: &Lane<u32, ()>, n: u32) -> bool {
    let parked = {
        let mut state = lane.lock();
        if state.is_closed() {
            return false;
        }
        state.push(Event::new("e", n).unwrap(), None, None, false).1
    };
    if let Some(worker) = parked {
        worker.wake();
    }
    true
}

/// The worker side, as `group::work` runs it: take what may start, finish it, stop once the
/// lane is finished, else park with its waker and wait to be woken.
fn worker(lane: &Lane<u32, ()>) -> Vec<u32> {
    block_on(async {
        let waker = task_waker().await;
        let mut delivered = Vec::new();
        loop {
            {
                let mut state = lane.lock();
                while let Some((queued, _, _)) = state.take() {
                    delivered.push(*queued.event.payload());
                    state.finish(queued.seq);
                }
                if state.finished() {
                    return delivered;
                }
                state.park(&waker);
            }
            lane.parked().await;
        }
    })
}

/// The close side, as `group::close` runs it: close (after letting the owner go, when the
/// group's last member left) and wake the worker if it is parked.
fn close(lane: &Lane<u32, ()>, owner_leaves: bool) {
    lane.change(|state| {
        if owner_leaves {
            state.assign(None);
        }
        state.close();
    });
}

fn race(owner_leaves: bool) {
    loom::model(move || {
        let lane: Arc<Lane<u32, ()>> = Arc::new(Lane::new(4, 1));
        lane.lock().assign(Some(Arc::new(())));
        let publisher = {
            let lane = Arc::clone(&lane);
            thread::spawn(move || [1, 2].map(|n| publish(&lane, n)))
        };
        let consumer = {
            let lane = Arc::clone(&lane);
            thread::spawn(move || worker(&lane))
        };
        close(&lane, owner_leaves);
        let accepted = publisher.join().unwrap();
        let delivered = consumer.join().unwrap();
        let (handed_back, interrupted) = lane.lock().drain();
        assert!(interrupted.is_empty());
        let mut reached: Vec<u32> = delivered
            .iter()
            .copied()
            .chain(handed_back.iter().map(|e| *e.payload()))
            .collect();
        reached.sort_unstable();
        let expected: Vec<u32> = [1, 2]
            .into_iter()
            .zip(accepted)
            .filter_map(|(n, ok)| ok.then_some(n))
            .collect();
        assert_eq!(
            reached, expected,
            "each accepted event delivered or handed back, once"
        );
        if !owner_leaves {
            assert!(
                handed_back.is_empty(),
                "with an owner, the worker drains everything"
            );
        }
        assert!(
            accepted[1] <= accepted[0] || !accepted[0],
            "nothing accepted after a refusal"
        );
    });
}

#[test]
fn an_accepted_publish_is_delivered_before_the_worker_stops() {
    race(false);
}

#[test]
fn an_accepted_publish_is_handed_back_when_the_owner_left() {
    race(true);
}

/// No close to fall back on: the push alone must wake the parked worker.
#[test]
fn a_push_wakes_a_parked_worker() {
    loom::model(|| {
        let lane: Arc<Lane<u32, ()>> = Arc::new(Lane::new(4, 1));
        lane.lock().assign(Some(Arc::new(())));
        let consumer = {
            let lane = Arc::clone(&lane);
            thread::spawn(move || {
                block_on(async {
                    let waker = task_waker().await;
                    loop {
                        {
                            let mut state = lane.lock();
                            if let Some((queued, _, _)) = state.take() {
                                state.finish(queued.seq);
                                return *queued.event.payload();
                            }
                            state.park(&waker);
                        }
                        lane.parked().await;
                    }
                })
            })
        };
        assert!(publish(&lane, 7));
        assert_eq!(consumer.join().unwrap(), 7);
    });
}
