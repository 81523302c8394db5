//! A full `DeadLetterQueue` evicts its oldest letter outside its lock: the letter's event (and
//! error) may run the user's `Drop`, which may look at the queue.
#![cfg(not(loom))]

use std::time::Duration;

use flowgate::{DeadLetter, DeadLetterQueue, DeadLetterSink, HandlerError};
use flowgate_testkit::drop_probe::{DropProbe, DropProbes};

#[test]
fn an_evicted_letter_is_dropped_outside_the_queue_lock() {
    let queue = DeadLetterQueue::<DropProbe>::new(1);
    let probes = DropProbes::new(Duration::from_secs(2));
    let event = probes.events(queue.clone(), |queue| {
        let _ = queue.len();
    });
    let letter = || DeadLetter::new(event(), HandlerError::permanent("no"), 1, "s");
    queue.dead_letter(letter());
    queue.dead_letter(letter());
    assert_eq!(queue.evicted(), 1);
    assert_eq!(probes.dropped(), 1, "the first letter was evicted");
    assert_eq!(probes.blocked(), 0);
}
