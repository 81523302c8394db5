//! Loom model of a lane's per-key in-flight tracker (`flowgate_bus::lane`): however deliveries
//! are taken and finished concurrently, two events of one ordering key are never in flight at
//! once, and they are taken in queue (publish) order; another key is not held back.
//!
//! The bus runs one worker per lane; the model lets two threads take and finish at once, a
//! superset of what the worker does.
//!
//! Run with `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test --release -p flowgate-bus --test loom_key_tracker`.
#![cfg(loom)]

use loom::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use loom::sync::Mutex;
use loom::thread;

use flowgate_bus::lane::Lane;
use flowgate_core::Event;

const KEY_A: u64 = 1;
const KEY_B: u64 = 2;

#[test]
fn one_key_at_a_time_in_order() {
    loom::model(|| {
        let lane: Arc<Lane<u32, ()>> = Arc::new(Lane::new(4, 2));
        {
            let mut state = lane.lock();
            state.assign(Some(Arc::new(())));
            for (n, key) in [(1, KEY_A), (2, KEY_A), (3, KEY_B)] {
                state.push(Event::new("e", n).unwrap(), Some(key), None, false);
            }
        }
        let running: Arc<Mutex<Vec<u64>>> = Arc::default();
        let finished_a: Arc<Mutex<Vec<u32>>> = Arc::default();
        let done = Arc::new(AtomicUsize::new(0));
        let worker = || {
            let (lane, running, finished_a, done) = (
                Arc::clone(&lane),
                Arc::clone(&running),
                Arc::clone(&finished_a),
                Arc::clone(&done),
            );
            move || {
                while done.load(Ordering::Acquire) < 3 {
                    let taken = lane.lock().take();
                    let Some((queued, _owner, _)) = taken else {
                        thread::yield_now();
                        continue;
                    };
                    let key = queued.key.unwrap();
                    {
                        let mut running = running.lock().unwrap();
                        assert!(!running.contains(&key), "two events of key {key} in flight");
                        running.push(key);
                    }
                    thread::yield_now(); // the delivery runs
                    running.lock().unwrap().retain(|k| *k != key);
                    if key == KEY_A {
                        finished_a.lock().unwrap().push(*queued.event.payload());
                    }
                    lane.lock().finish(queued.seq);
                    done.fetch_add(1, Ordering::Release);
                }
            }
        };
        let other = thread::spawn(worker());
        worker()();
        other.join().unwrap();
        assert_eq!(
            *finished_a.lock().unwrap(),
            [1, 2],
            "key A in publish order"
        );
        assert!(lane.lock().is_idle());
    });
}

#[test]
fn a_busy_key_does_not_hold_back_another() {
    loom::model(|| {
        let lane: Lane<u32, ()> = Lane::new(4, 2);
        let mut state = lane.lock();
        state.assign(Some(Arc::new(())));
        for (n, key) in [(1, KEY_A), (2, KEY_A), (3, KEY_B)] {
            state.push(Event::new("e", n).unwrap(), Some(key), None, false);
        }
        let (first, _, _) = state.take().unwrap();
        let (second, _, _) = state.take().unwrap();
        assert_eq!(
            (*first.event.payload(), *second.event.payload()),
            (1, 3),
            "B passes A's 2"
        );
        assert!(
            state.take().is_none(),
            "A's 2 waits for A's 1, and the cap is reached"
        );
        state.finish(first.seq);
        assert_eq!(*state.take().unwrap().0.event.payload(), 2);
    });
}
