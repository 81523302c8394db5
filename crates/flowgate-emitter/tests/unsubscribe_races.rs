//! Real threads racing `unsubscribe` against inline emits to a single handler (the path that
//! starts a handler without a gate): no handler may start after its `unsubscribe` returned.
//!
//! The checker: each handler reads, as the first thing it does, a flag the test raises right
//! after `unsubscribe` returns. A start finishes before `unsubscribe` returns, so a handler that
//! reads the flag raised started too late. The loom model `loom_registry.rs` explores the same
//! race exhaustively on a model; this runs the real code, arc-swap included.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use flowgate_core::Event;
use flowgate_emitter::Emitter;

/// Rounds of subscribe, race, unsubscribe; and emitting threads per round.
const ROUNDS: usize = 1_000;
const EMITTERS: usize = 2;

#[test]
fn no_handler_starts_after_its_unsubscribe_returned_under_real_threads() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let emitter = runtime.block_on(async { Emitter::<u32>::builder().build().unwrap() });
    let late_starts = Arc::new(AtomicU64::new(0));
    let mut raced = 0_u64;
    for _ in 0..ROUNDS {
        let returned = Arc::new(AtomicBool::new(false));
        let runs = Arc::new(AtomicU64::new(0));
        let subscription = {
            let (returned, runs, late) = (
                Arc::clone(&returned),
                Arc::clone(&runs),
                Arc::clone(&late_starts),
            );
            emitter
                .on("tick", move |_: Event<u32>| {
                    // The start: read the flag before anything else.
                    if returned.load(SeqCst) {
                        late.fetch_add(1, SeqCst);
                    }
                    runs.fetch_add(1, SeqCst);
                    async { Ok(()) }
                })
                .unwrap()
        };
        let stop = Arc::new(AtomicBool::new(false));
        let threads: Vec<_> = (0..EMITTERS)
            .map(|_| {
                let (emitter, stop) = (emitter.clone(), Arc::clone(&stop));
                thread::spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .build()
                        .unwrap();
                    while !stop.load(SeqCst) {
                        let event = Event::new("tick", 1).unwrap();
                        let _ = runtime.block_on(emitter.emit(event));
                    }
                })
            })
            .collect();
        // Unsubscribe while the emitters are busy: wait (with a deadline) until they run.
        let deadline = Instant::now() + Duration::from_secs(10);
        while runs.load(SeqCst) < 50 {
            assert!(Instant::now() < deadline, "the emitting threads never ran");
            thread::yield_now();
        }
        assert!(subscription.unsubscribe());
        returned.store(true, SeqCst);
        raced += runs.load(SeqCst);
        stop.store(true, SeqCst);
        for thread in threads {
            thread.join().unwrap();
        }
    }
    assert!(raced >= 50 * ROUNDS as u64);
    assert_eq!(
        late_starts.load(SeqCst),
        0,
        "handlers started after their unsubscribe returned"
    );
}
