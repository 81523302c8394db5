//! The dedupe window of an exactly-once topic: which idempotency keys were accepted lately.
//!
//! Invariants:
//!
//! 1. **Bounded.** It holds at most `max_keys` keys; each is forgotten once older than
//!    `max_age`, or earlier when `max_keys` newer keys push it out. Every early forgetting is
//!    counted (`evicted`), so an undersized window shows in stats.
//! 2. **One winner.** [`Dedupe::admit`] runs the caller's enqueue under the window's lock: of
//!    concurrent admits of one key, exactly one runs its enqueue while the key is unknown; the
//!    others see the key remembered. A key is remembered only if its enqueue succeeded, so a
//!    refused publish (buffer full) can be retried and is not mistaken for a duplicate.
//!
//! Public only for the loom models in `tests/`; not part of the API.

use std::collections::{HashMap, VecDeque};

use flowgate_core::sync::Mutex;
use flowgate_core::Key;
use tokio::time::Instant;

use crate::config::DedupeWindowConfig;

/// The window's state; see the [module docs](self).
#[derive(Debug)]
pub struct DedupeWindow {
    config: DedupeWindowConfig,
    /// Key → when it was remembered. Exactly the keys in `order`.
    keys: HashMap<Key, Instant>,
    /// Keys in the order they were remembered (so also by age).
    order: VecDeque<(Key, Instant)>,
    /// Keys forgotten before `max_age` because the window was full.
    evicted: u64,
}

impl DedupeWindow {
    /// An empty window.
    pub fn new(config: DedupeWindowConfig) -> Self {
        Self {
            config,
            keys: HashMap::new(),
            order: VecDeque::new(),
            evicted: 0,
        }
    }

    /// Forgets the keys older than `max_age` at `now`.
    fn expire(&mut self, now: Instant) {
        while let Some((key, at)) = self.order.front() {
            if now.saturating_duration_since(*at) < self.config.max_age {
                break;
            }
            self.keys.remove(key);
            self.order.pop_front();
        }
    }

    /// Whether `key` is remembered at `now`.
    pub fn contains(&mut self, key: &Key, now: Instant) -> bool {
        self.expire(now);
        self.keys.contains_key(key)
    }

    /// Remembers `key` from `now` (no-op if it is remembered already).
    pub fn insert(&mut self, key: Key, now: Instant) {
        self.expire(now);
        if self.keys.contains_key(&key) {
            return;
        }
        while self.order.len() >= self.config.max_keys {
            if let Some((old, _)) = self.order.pop_front() {
                self.keys.remove(&old);
                self.evicted += 1;
            }
        }
        self.keys.insert(key.clone(), now);
        self.order.push_back((key, now));
    }

    /// Keys remembered now.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Keys forgotten early because the window was full.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }
}

/// What [`Dedupe::admit`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Admit<E> {
    /// The key was new and the enqueue succeeded: the key is remembered now.
    Accepted,
    /// The key was remembered: the enqueue did not run.
    Duplicate,
    /// The key was new but the enqueue failed: the key is not remembered.
    Refused(E),
}

/// A [`DedupeWindow`] behind a lock, shared by the publishers of one topic (or the partition
/// workers of one subscriber).
#[derive(Debug)]
pub struct Dedupe {
    window: Mutex<DedupeWindow>,
}

impl Dedupe {
    /// An empty window.
    pub fn new(config: DedupeWindowConfig) -> Self {
        Self {
            window: Mutex::new(DedupeWindow::new(config)),
        }
    }

    /// Runs `enqueue` if `key` is not remembered, and remembers it if `enqueue` succeeded; see
    /// the module docs. `enqueue` runs under the window's lock: keep it short and never await.
    pub fn admit<E>(&self, key: &Key, enqueue: impl FnOnce() -> Result<(), E>) -> Admit<E> {
        let mut window = self.window.lock();
        let now = Instant::now();
        if window.contains(key, now) {
            return Admit::Duplicate;
        }
        match enqueue() {
            Ok(()) => {
                window.insert(key.clone(), now);
                Admit::Accepted
            }
            Err(error) => Admit::Refused(error),
        }
    }

    /// Whether `key` is remembered.
    pub fn contains(&self, key: &Key) -> bool {
        self.window.lock().contains(key, Instant::now())
    }

    /// Remembers `key`.
    pub fn insert(&self, key: Key) {
        self.window.lock().insert(key, Instant::now());
    }

    /// `(keys remembered, keys evicted early)`.
    pub fn sizes(&self) -> (usize, u64) {
        let mut window = self.window.lock();
        window.expire(Instant::now());
        (window.len(), window.evicted())
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::time::Duration;

    fn window(max_keys: usize, secs: u64) -> DedupeWindow {
        DedupeWindow::new(DedupeWindowConfig::new(max_keys, Duration::from_secs(secs)))
    }

    #[test]
    fn remembers_until_max_age() {
        let t0 = Instant::now();
        let mut w = window(10, 60);
        w.insert(Key::from("a"), t0);
        assert!(w.contains(&Key::from("a"), t0 + Duration::from_secs(59)));
        assert!(!w.contains(&Key::from("a"), t0 + Duration::from_secs(60)));
        assert!(w.is_empty());
        assert_eq!(w.evicted(), 0, "expiry by age is not an early eviction");
    }

    #[test]
    fn bounded_by_count_and_counts_evictions() {
        let t0 = Instant::now();
        let mut w = window(3, 60);
        for k in ["a", "b", "c", "d", "e"] {
            w.insert(Key::from(k), t0);
        }
        assert_eq!(w.len(), 3);
        assert_eq!(w.evicted(), 2);
        assert!(!w.contains(&Key::from("a"), t0));
        assert!(w.contains(&Key::from("e"), t0));
    }

    #[test]
    fn refused_enqueue_is_not_remembered() {
        let d = Dedupe::new(DedupeWindowConfig::new(10, Duration::from_secs(60)));
        let k = Key::from("k");
        assert_eq!(d.admit(&k, || Err("full")), Admit::Refused("full"));
        assert_eq!(d.admit::<()>(&k, || Ok(())), Admit::Accepted);
        assert_eq!(
            d.admit::<()>(&k, || panic!("must not run for a duplicate")),
            Admit::Duplicate
        );
    }
}
