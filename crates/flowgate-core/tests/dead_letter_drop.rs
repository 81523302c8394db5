//! A full `DeadLetterQueue` evicts its oldest letter outside its lock: the letter's event (and
//! error) may run the user's `Drop`, which may look at the queue.
#![cfg(not(loom))]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use flowgate::{DeadLetter, DeadLetterQueue, DeadLetterSink, Event, HandlerError};
use flowgate_testkit::drop_probe::{DropProbe, DropProbes};

#[test]
fn an_evicted_letter_is_dropped_outside_the_queue_lock() {
    let queue = DeadLetterQueue::<DropProbe>::new(1);
    let cell = Arc::new(OnceLock::new());
    assert!(cell.set(queue.clone()).is_ok());
    let probes = DropProbes::new(Duration::from_secs(2));
    let letter = || {
        let cell = Arc::clone(&cell);
        let probe = probes.probe(move || {
            if let Some(queue) = cell.get() {
                let _ = queue.len();
            }
        });
        let event = Event::new("e", probe).unwrap();
        DeadLetter::new(event, HandlerError::permanent("no"), 1, "s")
    };
    queue.dead_letter(letter());
    queue.dead_letter(letter());
    assert_eq!(queue.evicted(), 1);
    assert_eq!(probes.dropped(), 1, "the first letter was evicted");
    assert_eq!(probes.blocked(), 0);
}
