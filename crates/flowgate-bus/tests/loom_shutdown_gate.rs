//! Loom model of a lane's shutdown gate (`flowgate_bus::lane`): a publish racing a close and
//! the lane's worker. Every publish accepted (pushed before the close) is delivered by the
//! worker before it stops, or, when the lane has no owner any more (the group's last member
//! left), handed back by the drain: never lost. No push lands after the close, and the
//! worker's parking protocol loses no wake-up (else the model would hang).
//!
//! Run with `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test --release -p flowgate-bus --test loom_shutdown_gate`.
#![cfg(loom)]

use std::sync::Arc;

use loom::sync::Mutex;
use loom::thread;

use flowgate_bus::lane::Lane;
use flowgate_core::Event;

/// Stands for the lane's `work: tokio::sync::Notify` (tokio is not loom-aware outside its own
/// tests): `notify_one` leaves one permit, `notified` waits for it and takes it.
#[derive(Default)]
struct Permit(Mutex<bool>);

impl Permit {
    fn notify_one(&self) {
        *self.0.lock().unwrap() = true;
    }

    fn notified(&self) {
        loop {
            {
                let mut permit = self.0.lock().unwrap();
                if *permit {
                    *permit = false;
                    return;
                }
            }
            thread::yield_now();
        }
    }
}

/// The publish side: refused once the lane is closed, else pushed, waking a parked worker.
fn publish(lane: &Lane<u32, ()>, work: &Permit, n: u32) -> bool {
    let wake = {
        let mut state = lane.lock();
        if state.is_closed() {
            return false;
        }
        state.push(Event::new("e", n).unwrap(), None, None, false).1
    };
    if wake {
        work.notify_one();
    }
    true
}

/// The worker side, as `group::work` runs it: take what may start, finish it, stop once the
/// lane is finished, else park and wait for work.
fn worker(lane: &Lane<u32, ()>, work: &Permit) -> Vec<u32> {
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
            state.park();
        }
        work.notified();
    }
}

fn race(owner_leaves: bool) {
    loom::model(move || {
        let lane: Arc<Lane<u32, ()>> = Arc::new(Lane::new(4, 1));
        lane.lock().assign(Some(Arc::new(())));
        let work = Arc::new(Permit::default());
        let publisher = {
            let (lane, work) = (Arc::clone(&lane), Arc::clone(&work));
            thread::spawn(move || [1, 2].map(|n| publish(&lane, &work, n)))
        };
        let consumer = {
            let (lane, work) = (Arc::clone(&lane), Arc::clone(&work));
            thread::spawn(move || worker(&lane, &work))
        };
        {
            let mut state = lane.lock();
            if owner_leaves {
                state.assign(None);
            }
            state.close();
        }
        work.notify_one();
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
        let work = Arc::new(Permit::default());
        let consumer = {
            let (lane, work) = (Arc::clone(&lane), Arc::clone(&work));
            thread::spawn(move || loop {
                {
                    let mut state = lane.lock();
                    if let Some((queued, _, _)) = state.take() {
                        state.finish(queued.seq);
                        return *queued.event.payload();
                    }
                    state.park();
                }
                work.notified();
            })
        };
        assert!(publish(&lane, &work, 7));
        assert_eq!(consumer.join().unwrap(), 7);
    });
}
