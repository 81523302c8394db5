//! Loom model of the worker pool's shutdown gate and the room's door: `emit_async` hand-offs
//! (the synchronous one inside the gate, and a blocked producer's retry at the door) racing
//! `shutdown`.
//! Every hand-off that was accepted lands in the queue before shutdown collects it (so it is
//! run or reported, never lost), no hand-off is accepted after the gate closed, and the closer
//! is always woken by the last party to leave.
//!
//! Run with `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test --release -p flowgate-emitter --test loom_shutdown_gate`.
#![cfg(loom)]

use std::collections::VecDeque;

use loom::sync::{Arc, Mutex};
use loom::thread;

use flowgate_emitter::gate::{Enter, Gate};

/// Stands for `tokio::sync::Notify` as shutdown uses it: `notify_one` leaves one permit,
/// `notified` waits for it and takes it. A mutex, not an atomic flag, because loom treats
/// `SeqCst` as `AcqRel` and would report wake-ups lost that `Notify` cannot lose.
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

/// The emitter's side, reduced to the protocol: enter the gate, push into the queue, leave;
/// the last one out of a closed gate wakes the closer.
fn hand_off(gate: &Gate, queue: &Mutex<VecDeque<u32>>, woken: &Permit, value: u32) -> bool {
    match gate.try_enter() {
        Enter::Entered => {
            queue.lock().unwrap().push_back(value);
            if gate.leave() {
                woken.notify_one();
            }
            true
        }
        Enter::Refused { last_out } => {
            if last_out {
                woken.notify_one();
            }
            false
        }
    }
}

/// Shutdown's side: close, wait (for a wake-up, never by polling the count in a loop) until
/// no party is inside, then collect the queue.
fn shut_down(gate: &Gate, queue: &Mutex<VecDeque<u32>>, woken: &Permit) -> Vec<u32> {
    gate.close();
    while gate.inside() > 0 {
        // A lost wake-up would wait here forever and fail the model.
        woken.notified();
    }
    queue.lock().unwrap().drain(..).collect()
}

#[test]
fn every_accepted_hand_off_is_collected_and_none_lands_after() {
    loom::model(|| {
        let gate = Arc::new(Gate::new());
        let queue = Arc::new(Mutex::new(VecDeque::new()));
        let woken = Arc::new(Permit::default());

        let producers: Vec<_> = (0..2)
            .map(|value| {
                let (gate, queue, woken) =
                    (Arc::clone(&gate), Arc::clone(&queue), Arc::clone(&woken));
                thread::spawn(move || (value, hand_off(&gate, &queue, &woken, value)))
            })
            .collect();
        let collected = shut_down(&gate, &queue, &woken);
        for producer in producers {
            let (value, accepted) = producer.join().unwrap();
            assert_eq!(
                accepted,
                collected.contains(&value),
                "hand-off {value}: accepted = {accepted}, collected = {collected:?}"
            );
        }
        assert!(
            queue.lock().unwrap().is_empty(),
            "a hand-off landed after shutdown collected"
        );
        assert!(gate.is_closed());
    });
}

#[test]
fn closing_twice_reports_one_closer() {
    loom::model(|| {
        let gate = Arc::new(Gate::new());
        let other = {
            let gate = Arc::clone(&gate);
            thread::spawn(move || gate.close())
        };
        let mine = gate.close();
        let theirs = other.join().unwrap();
        assert!(mine ^ theirs, "exactly one close call closes the gate");
        // A closed gate refuses without touching the count.
        assert_eq!(gate.try_enter(), Enter::Refused { last_out: false });
        assert_eq!(gate.inside(), 0);
    });
}

/// The slow path of a blocked producer: outside the gate, it retries under the room's door
/// lock and gives up once the door is closed.
fn hand_off_through_the_door(door: &Mutex<bool>, queue: &Mutex<VecDeque<u32>>, value: u32) -> bool {
    let closed = door.lock().unwrap();
    if *closed {
        return false;
    }
    queue.lock().unwrap().push_back(value);
    true
}

#[test]
fn a_blocked_producer_retrying_at_the_door_is_collected_or_refused() {
    loom::model(|| {
        let gate = Arc::new(Gate::new());
        let door = Arc::new(Mutex::new(false));
        let queue = Arc::new(Mutex::new(VecDeque::new()));
        let woken = Arc::new(Permit::default());

        let fast = {
            let (gate, queue, woken) = (Arc::clone(&gate), Arc::clone(&queue), Arc::clone(&woken));
            thread::spawn(move || (0, hand_off(&gate, &queue, &woken, 0)))
        };
        let slow = {
            let (door, queue) = (Arc::clone(&door), Arc::clone(&queue));
            thread::spawn(move || (1, hand_off_through_the_door(&door, &queue, 1)))
        };
        // Shutdown: close the gate, close the door, wait for the gate, collect.
        gate.close();
        *door.lock().unwrap() = true;
        let collected = shut_down(&gate, &queue, &woken);
        for producer in [fast, slow] {
            let (value, accepted) = producer.join().unwrap();
            assert_eq!(
                accepted,
                collected.contains(&value),
                "hand-off {value}: accepted = {accepted}, collected = {collected:?}"
            );
        }
        assert!(
            queue.lock().unwrap().is_empty(),
            "a hand-off landed after shutdown collected"
        );
    });
}
