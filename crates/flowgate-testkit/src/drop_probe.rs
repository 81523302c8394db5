//! Checks that a library never runs the user's `Drop` while it holds one of its own locks.
//!
//! A payload's `Drop` is user code, and user code may call back into flowgate (read `stats()`,
//! publish, append). If flowgate dropped the payload while holding a lock that call needs, the
//! thread would wait for itself. A [`DropProbe`] is a payload whose `Drop` runs a check (say,
//! `topic.stats()`) **on another thread** and waits for it up to a deadline: a check that does
//! not finish in time means the probe was dropped under a lock the check needed. The probe
//! records that and returns, so a failing run reports instead of hanging.
//!
//! The check runs on a plain thread: it has no tokio runtime context, so it should call
//! synchronous methods (`stats()`, reads), not spawn or await. A check that panics, or whose
//! thread cannot be started, does not finish either and is counted with the blocked ones. A
//! probe that keeps a handle of the thing it is dropped by (as [`DropProbes::events`] makes
//! them) forms a reference cycle with it while it is held there: a test can afford that leak.
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use std::time::Duration;
//! use flowgate_testkit::drop_probe::DropProbes;
//!
//! let lock = Arc::new(Mutex::new(()));
//! let probes = DropProbes::new(Duration::from_millis(200));
//! let check = {
//!     let lock = Arc::clone(&lock);
//!     move || drop(lock.lock())
//! };
//! drop(probes.probe(check.clone())); // dropped with the lock free
//! let guard = lock.lock().unwrap();
//! drop(probes.probe(check)); // dropped under the lock its check needs
//! drop(guard);
//! assert_eq!((probes.dropped(), probes.blocked()), (2, 1));
//! ```

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use flowgate_core::Event;

/// The probes of one test, and what their drops saw.
pub struct DropProbes {
    wait: Duration,
    dropped: AtomicUsize,
    blocked: AtomicUsize,
}

impl DropProbes {
    /// Probes whose check gets `wait` to finish (a second or two: the check only needs a lock
    /// that nobody should hold for long; a wait near zero would count nearly every drop).
    pub fn new(wait: Duration) -> Arc<Self> {
        Arc::new(Self {
            wait,
            dropped: AtomicUsize::new(0),
            blocked: AtomicUsize::new(0),
        })
    }

    /// A probe that runs `check` on another thread when dropped.
    pub fn probe(self: &Arc<Self>, check: impl Fn() + Send + Sync + 'static) -> DropProbe {
        DropProbe {
            probes: Arc::clone(self),
            check: Arc::new(check),
        }
    }

    /// A maker of events (of type `probe`) whose payload is a probe checking
    /// `check(&handle)`: for a topic, a store, a queue that the events will go through. Each
    /// probe keeps a clone of `handle` (see the [module docs](self) on the cycle).
    ///
    /// # Panics
    ///
    /// Does not: `probe` is a valid event type.
    pub fn events<H>(self: &Arc<Self>, handle: H, check: fn(&H)) -> impl Fn() -> Event<DropProbe>
    where
        H: Clone + Send + Sync + 'static,
    {
        let probes = Arc::clone(self);
        move || {
            let handle = handle.clone();
            let probe = probes.probe(move || check(&handle));
            Event::new("probe", probe).expect("a valid event type")
        }
    }

    /// Probes dropped so far.
    pub fn dropped(&self) -> usize {
        self.dropped.load(Ordering::SeqCst)
    }

    /// Probes whose check did not finish within the wait (dropped under a lock it needed), or
    /// could not run (it panicked, or its thread could not be started).
    pub fn blocked(&self) -> usize {
        self.blocked.load(Ordering::SeqCst)
    }
}

impl fmt::Debug for DropProbes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DropProbes")
            .field("wait", &self.wait)
            .field("dropped", &self.dropped())
            .field("blocked", &self.blocked())
            .finish()
    }
}

/// A value whose `Drop` runs its check on another thread and waits for it (see the
/// [module docs](self)).
pub struct DropProbe {
    probes: Arc<DropProbes>,
    check: Arc<dyn Fn() + Send + Sync>,
}

impl Drop for DropProbe {
    fn drop(&mut self) {
        let check = Arc::clone(&self.check);
        let (done, finished) = mpsc::channel();
        let started = std::thread::Builder::new()
            .name("drop-probe-check".into())
            .spawn(move || {
                check();
                let _ = done.send(());
            });
        if started.is_err() || finished.recv_timeout(self.probes.wait).is_err() {
            self.probes.blocked.fetch_add(1, Ordering::SeqCst);
        }
        self.probes.dropped.fetch_add(1, Ordering::SeqCst);
    }
}

impl fmt::Debug for DropProbe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DropProbe").finish_non_exhaustive()
    }
}
