//! A global allocator that counts the bytes currently allocated, for tests that check memory
//! stays bounded. Only the test binaries that include this file (with `#[path]`) use it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Forwards to the system allocator and keeps a running total of live bytes.
pub(crate) struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call forwards to `System` with the caller's arguments unchanged, so `System`'s
// guarantees carry over; the counter is a side effect that never touches the memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which is `System`'s.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` was allocated by `System` (through `alloc` above) with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Bytes allocated and not yet freed, by every thread of this test binary.
pub(crate) fn live_bytes() -> usize {
    LIVE.load(Ordering::Relaxed)
}

/// Appends events to stream `busy-1`: first 20,000 to warm up (segments and maps reach
/// their working size), then 100,000 measured; returns how many live bytes the measured ones
/// added.
pub(crate) fn growth_of_100k_appends(store: &flowgate_store::Store<u64>) -> usize {
    let append_busy = |n: u64| {
        for i in 0..n {
            store
                .append(
                    "busy-1",
                    flowgate_store::ExpectedVersion::Any,
                    crate::common::ev(i),
                )
                .unwrap();
        }
    };
    append_busy(20_000);
    let warm = live_bytes();
    append_busy(100_000);
    live_bytes().saturating_sub(warm)
}
