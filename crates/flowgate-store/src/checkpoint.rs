//! Checkpoints for a subscription whose events are handled concurrently.
//!
//! Invariant: [`Checkpoints::checkpoint`] is the lowest position the subscription yielded that
//! is not yet [`done`](Checkpoints::done), or, when every yielded position is done, the
//! position right after the last one yielded. Every position below the checkpoint was yielded
//! and handled, so a subscription restarted at the checkpoint (`Start::At`) loses nothing; it
//! may see again events that were finished above an unfinished one.

use std::collections::BTreeSet;
use std::fmt;
// Data, not synchronization: the tracker is shared with user tasks by std `Arc`.
use std::sync::Arc;

use flowgate_core::sync::Mutex;

#[derive(Debug)]
struct State {
    in_flight: BTreeSet<u64>,
    /// One past the last position yielded (or the subscription's start).
    next: u64,
}

/// Tracks which yielded positions are finished. Cheap to clone; clones share the tracker, so
/// each concurrent handler can hold one.
///
/// The checkpoint is the lowest yielded position not yet [`done`](Self::done), or, when all are
/// done, the position right after the last one yielded. Every position below it was yielded and
/// handled, so a subscription restarted there (`Start::At`) loses nothing; it may see again
/// events that finished above an unfinished one.
///
/// Positions are global positions, or versions for a stream subscription.
///
/// ```
/// use flowgate::store::{ExpectedVersion, Start, Store, Target};
/// use flowgate::Event;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = Store::<u32>::new();
/// for i in 0..3 {
///     store.append("job-1", ExpectedVersion::Any, Event::new("queued", i)?)?;
/// }
/// let mut sub = store.subscribe(Target::All).start(Start::Beginning).open()?;
/// let checkpoints = sub.checkpoints();
/// let a = sub.next().await.unwrap()?;
/// let b = sub.next().await.unwrap()?;
/// checkpoints.done(b.position()); // finished out of order
/// assert_eq!(checkpoints.checkpoint(), a.position(), "never past an unfinished event");
/// checkpoints.done(a.position());
/// assert_eq!(checkpoints.checkpoint(), b.position() + 1);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Checkpoints {
    state: Arc<Mutex<State>>,
}

impl fmt::Debug for Checkpoints {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state.lock();
        f.debug_struct("Checkpoints")
            .field("in_flight", &state.in_flight.len())
            .field("checkpoint", &checkpoint_of(&state))
            .finish()
    }
}

fn checkpoint_of(state: &State) -> u64 {
    state.in_flight.first().copied().unwrap_or(state.next)
}

impl Checkpoints {
    pub(crate) fn new(next: u64) -> Self {
        Self {
            state: Arc::new(Mutex::new(State {
                in_flight: BTreeSet::new(),
                next,
            })),
        }
    }

    /// The subscription yielded `position`: it is in flight until `done`.
    pub(crate) fn yielded(&self, position: u64) {
        let mut state = self.state.lock();
        state.in_flight.insert(position);
        state.next = state.next.max(position + 1);
    }

    /// The subscription skipped to `resume_at` (after a truncation signal).
    pub(crate) fn skipped_to(&self, resume_at: u64) {
        let mut state = self.state.lock();
        state.next = state.next.max(resume_at);
    }

    /// Marks `position` as handled; returns `false` when it was not in flight (never yielded
    /// since tracking began, or already done).
    ///
    /// ```
    /// # use flowgate::store::{Start, Store, Target};
    /// # let store = Store::<u32>::new();
    /// # let mut sub = store.subscribe(Target::All).start(Start::Beginning).open()?;
    /// let checkpoints = sub.checkpoints();
    /// assert!(!checkpoints.done(42), "nothing was yielded");
    /// # Ok::<(), flowgate::store::StoreError>(())
    /// ```
    pub fn done(&self, position: u64) -> bool {
        self.state.lock().in_flight.remove(&position)
    }

    /// Where a restarted subscription must start so that it loses nothing (see the type docs).
    ///
    /// ```
    /// # use flowgate::store::{Start, Store, Target};
    /// # let store = Store::<u32>::new();
    /// let mut sub = store.subscribe(Target::All).start(Start::At(7)).open()?;
    /// assert_eq!(sub.checkpoints().checkpoint(), 7, "nothing yielded yet");
    /// # Ok::<(), flowgate::store::StoreError>(())
    /// ```
    pub fn checkpoint(&self) -> u64 {
        checkpoint_of(&self.state.lock())
    }

    /// How many yielded positions are not done yet.
    ///
    /// ```
    /// # use flowgate::store::{Start, Store, Target};
    /// # let store = Store::<u32>::new();
    /// # let mut sub = store.subscribe(Target::All).start(Start::Beginning).open()?;
    /// assert_eq!(sub.checkpoints().in_flight(), 0);
    /// # Ok::<(), flowgate::store::StoreError>(())
    /// ```
    pub fn in_flight(&self) -> usize {
        self.state.lock().in_flight.len()
    }
}
