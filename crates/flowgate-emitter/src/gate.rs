//! A gate: many parties enter and leave; one closer shuts it for good and then waits for the
//! parties inside.
//!
//! Invariant: once [`Gate::close`] has returned, every later [`Gate::try_enter`] fails; and once
//! a closer has also seen [`Gate::inside`] reach the number of entries its own thread holds,
//! no other party is inside or will ever be again.
//!
//! Public only for the loom models in `tests/`; not part of the API.
//!
//! Used twice: as the emitter's submit gate (an `emit_async` is inside while it hands an event
//! to the queue, so shutdown knows when no hand-off can still land) and as each subscription's
//! start gate (an invocation is inside while its handler starts, so `unsubscribe` can return only
//! once no invocation is starting).

use flowgate_core::sync::atomic::{AtomicUsize, Ordering};

/// Set once the gate is closed; the other bits count parties inside.
const CLOSED: usize = 1 << (usize::BITS - 1);

/// What [`Gate::try_enter`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enter {
    /// Inside; call [`Gate::leave`] once.
    Entered,
    /// The gate is closed. `last_out` is `true` when this party's brief optimistic entry was
    /// the last one a closer may be waiting on (the closer must then be woken).
    Refused { last_out: bool },
}

/// See the [module docs](self).
#[derive(Debug, Default)]
pub struct Gate {
    /// `CLOSED` bit plus the count of parties inside. Every party increments before checking
    /// the bit (so a closer that saw the count reach zero after setting the bit knows nobody
    /// slipped in) and decrements when it leaves.
    state: AtomicUsize,
}

impl Gate {
    pub fn new() -> Self {
        Self::default()
    }

    /// Enters unless the gate is closed. [`Enter::Entered`] must be paired with one
    /// [`leave`](Self::leave).
    #[inline]
    pub fn try_enter(&self) -> Enter {
        // A closed gate refuses without touching the count, so a flood of refused callers
        // cannot keep a closer waiting on their brief optimistic entries.
        if self.state.load(Ordering::Acquire) & CLOSED != 0 {
            return Enter::Refused { last_out: false };
        }
        // AcqRel: Acquire pairs with the closer's AcqRel `fetch_or`, so a party that enters
        // after the close sees the bit; Release publishes the increment to the closer's
        // Acquire loads in `inside`.
        let prev = self.state.fetch_add(1, Ordering::AcqRel);
        if prev & CLOSED != 0 {
            let prev = self.state.fetch_sub(1, Ordering::AcqRel);
            return Enter::Refused {
                last_out: prev == CLOSED | 1,
            };
        }
        Enter::Entered
    }

    /// Leaves; returns `true` when this was the last party inside a closed gate.
    #[inline]
    pub fn leave(&self) -> bool {
        // Release: everything the party did inside happens-before a closer's Acquire load that
        // sees the count drop.
        let prev = self.state.fetch_sub(1, Ordering::AcqRel);
        prev == CLOSED | 1
    }

    /// Closes the gate; returns `true` if this call closed it (the first call does).
    pub fn close(&self) -> bool {
        let prev = self.state.fetch_or(CLOSED, Ordering::AcqRel);
        prev & CLOSED == 0
    }

    /// Whether the gate is closed.
    pub fn is_closed(&self) -> bool {
        self.state.load(Ordering::Acquire) & CLOSED != 0
    }

    /// Parties inside now (including parties that are about to find the gate closed and leave).
    ///
    /// A closer may read a stale non-zero count before it synchronizes with the last party to
    /// leave; that party's `leave` returns `true` (it saw `CLOSED | 1`), so the closer is woken
    /// and reads again. Closers must therefore wait for that wake-up, not give up.
    pub fn inside(&self) -> usize {
        self.state.load(Ordering::Acquire) & !CLOSED
    }
}
