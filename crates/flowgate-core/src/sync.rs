//! The one place this crate (and the crates built on it) takes its synchronization primitives
//! from.
//!
//! Under `--cfg loom` every type here comes from [`loom`](https://docs.rs/loom), so the model
//! tests in `tests/loom_*.rs` explore the interleavings of the real code. Otherwise the same
//! API wraps `std`: a poison-free [`Mutex::lock`], the std atomics and `Arc`.
//!
//! No other module imports `std::sync` atomics, `Arc` or `Mutex` directly.

#[cfg(not(loom))]
pub use std::sync::Arc;

#[cfg(loom)]
pub use loom::sync::Arc;

/// Atomics: `std`'s, or loom's under `--cfg loom`.
pub mod atomic {
    #[cfg(not(loom))]
    pub use std::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

    #[cfg(loom)]
    pub use loom::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
}

#[cfg(not(loom))]
pub use std::thread_local;

#[cfg(loom)]
pub use loom::thread_local;

/// Yields the current thread inside a short spin-wait.
///
/// `std::thread::yield_now` outside loom; loom's yield under loom, so that the model lets the
/// thread being waited for make progress.
#[inline]
pub fn spin_yield() {
    #[cfg(not(loom))]
    std::thread::yield_now();
    #[cfg(loom)]
    loom::thread::yield_now();
}

/// A mutex whose `lock` never reports poisoning.
///
/// Handler panics are caught before they can unwind through a lock held by flowgate, so a
/// poisoned lock would only mean a bug inside flowgate itself; the data it protects is kept
/// consistent by each critical section, so the lock is simply taken again.
#[derive(Debug, Default)]
pub struct Mutex<T> {
    #[cfg(not(loom))]
    inner: std::sync::Mutex<T>,
    #[cfg(loom)]
    inner: loom::sync::Mutex<T>,
}

/// The guard returned by [`Mutex::lock`].
#[cfg(not(loom))]
pub type MutexGuard<'a, T> = std::sync::MutexGuard<'a, T>;
/// The guard returned by [`Mutex::lock`].
#[cfg(loom)]
pub type MutexGuard<'a, T> = loom::sync::MutexGuard<'a, T>;

impl<T> Mutex<T> {
    /// Creates a mutex holding `value`.
    pub fn new(value: T) -> Self {
        Self {
            #[cfg(not(loom))]
            inner: std::sync::Mutex::new(value),
            #[cfg(loom)]
            inner: loom::sync::Mutex::new(value),
        }
    }

    /// Locks the mutex, ignoring poisoning (see the type's docs).
    pub fn lock(&self) -> MutexGuard<'_, T> {
        match self.inner.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}
