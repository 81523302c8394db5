//! The dedupe window of an exactly-once topic: which idempotency keys were accepted lately.
//!
//! Invariants:
//!
//! 1. **Bounded.** It holds at most `max_keys` keys; each is forgotten once older than
//!    `max_age`, or earlier when its shard is full: [`Dedupe`] splits the keys by fingerprint
//!    into up to 16 shards of `max_keys / shards` keys, and a full shard forgets its oldest
//!    key. Every early forgetting is counted (`evicted`), so an undersized window shows in
//!    stats.
//! 2. **One winner.** [`Dedupe::admit`] runs the caller's enqueue under the window's lock: of
//!    concurrent admits of one key, exactly one runs its enqueue while the key is unknown; the
//!    others see the key remembered. A key is remembered only if its enqueue succeeded, so a
//!    refused publish (buffer full) can be retried and is not mistaken for a duplicate.
//!
//! Keys are 128-bit fingerprints ([`Event::idempotency_fingerprint`]): no string is hashed,
//! cloned or allocated per publish, and a collision between two keys has probability about
//! 2⁻¹²⁸.
//!
//! Public only for the loom models in `tests/`; not part of the API.
//!
//! [`Event::idempotency_fingerprint`]: flowgate_core::Event::idempotency_fingerprint

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

use flowgate_core::sync::atomic::{AtomicUsize, Ordering};
use flowgate_core::sync::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;

/// An idempotency key's fingerprint.
pub type Fingerprint = u128;

/// Fingerprints are uniformly distributed already: the map uses their bits as the hash.
#[derive(Debug, Default)]
pub struct FingerprintHasher(u64);

impl Hasher for FingerprintHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u128` is used; fold anything else in so this stays a valid hasher.
        for &byte in bytes {
            self.0 = (self.0 ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn write_u128(&mut self, fingerprint: u128) {
        self.0 ^= fingerprint as u64 ^ (fingerprint >> 64) as u64;
    }
}

type Keys = HashMap<Fingerprint, Instant, BuildHasherDefault<FingerprintHasher>>;
type Running = HashSet<Fingerprint, BuildHasherDefault<FingerprintHasher>>;

use crate::config::DedupeWindowConfig;

/// The window's state; see the [module docs](self).
#[derive(Debug)]
pub struct DedupeWindow {
    config: DedupeWindowConfig,
    /// Key → when it was remembered. Exactly the keys in `order`.
    keys: Keys,
    /// Keys in the order they were remembered (so also by age).
    order: VecDeque<(Fingerprint, Instant)>,
    /// Keys forgotten before `max_age` because the window was full.
    evicted: u64,
    /// Keys being delivered now (subscriber side): at most one delivery of a key at a time.
    running: Running,
}

impl DedupeWindow {
    /// An empty window.
    pub fn new(config: DedupeWindowConfig) -> Self {
        Self {
            config,
            keys: Keys::default(),
            order: VecDeque::new(),
            evicted: 0,
            running: Running::default(),
        }
    }

    /// Removes the front of `order`, and its key from `keys` unless the entry is stale (the
    /// key was forgotten, or remembered again later). Returns whether a live key went.
    fn pop_front(&mut self) -> bool {
        let Some((key, at)) = self.order.pop_front() else {
            return false;
        };
        if self.keys.get(&key) == Some(&at) {
            self.keys.remove(&key);
            true
        } else {
            false
        }
    }

    /// Forgets the keys older than `max_age` at `now`.
    fn expire(&mut self, now: Instant) {
        while let Some((_, at)) = self.order.front() {
            if now.saturating_duration_since(*at) < self.config.max_age {
                break;
            }
            self.pop_front();
        }
    }

    /// Whether `key` is remembered at `now`.
    pub fn contains(&mut self, key: Fingerprint, now: Instant) -> bool {
        self.expire(now);
        self.keys.contains_key(&key)
    }

    /// Remembers `key` from `now` (no-op if it is remembered already).
    pub fn insert(&mut self, key: Fingerprint, now: Instant) {
        self.expire(now);
        if self.keys.contains_key(&key) {
            return;
        }
        self.insert_new(key, now);
    }

    /// Remembers `key`, which the caller just found absent (after expiring at `now`).
    fn insert_new(&mut self, key: Fingerprint, now: Instant) {
        while self.order.len() >= self.config.max_keys {
            if self.pop_front() {
                self.evicted += 1;
            }
        }
        self.keys.insert(key, now);
        self.order.push_back((key, now));
    }

    /// Forgets `key` (its entry in `order` goes stale and is skipped when it comes up).
    pub fn forget(&mut self, key: Fingerprint) {
        self.keys.remove(&key);
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

/// Uncounts a waiter when its wait ends or is cancelled.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What [`Dedupe::begin`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Begin {
    /// Nobody handled the key `Ok` and nobody runs it: the caller runs it (and must `end` it).
    Run,
    /// The key was handled `Ok` within the window: do not run it.
    Done,
    /// Another delivery of the key is running: wait for it to end, then ask again.
    Busy,
}

/// An exactly-once event's key as the publish window accepted it: its fingerprint and when.
/// It travels with the event to the delivery, where the subscriber's window counts the key's
/// age from the same instant (no second clock read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    /// The idempotency key's fingerprint.
    pub key: Fingerprint,
    /// When the publish window accepted it.
    pub at: Instant,
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

/// Shards of a [`Dedupe`]: enough that the partition workers of a subscriber rarely meet on
/// one lock.
const SHARDS: usize = 16;

/// A [`DedupeWindow`] behind locks, shared by the publishers of one topic (or the partition
/// workers of one subscriber). It is split into up to 16 shards by fingerprint, each with its
/// share of `max_keys` (at least one key), so that concurrent workers rarely contend; a key
/// always lands in the same shard, so "remembered" means the same as with one window.
#[derive(Debug)]
pub struct Dedupe {
    shards: Box<[Mutex<DedupeWindow>]>,
    /// Wakes deliveries that found their key `Busy` when a delivery of a key ends.
    ended: Notify,
    /// Deliveries waiting on `ended`. Relaxed suffices: a waiter counts itself before it takes
    /// the shard lock to check, and `end` reads the count after releasing that lock, so either
    /// `end` sees the count or the waiter sees the key no longer running.
    waiting: AtomicUsize,
}

impl Dedupe {
    /// An empty window.
    pub fn new(config: DedupeWindowConfig) -> Self {
        let shards = SHARDS.min(config.max_keys.max(1));
        let per_shard = DedupeWindowConfig::new(config.max_keys / shards, config.max_age);
        Self {
            shards: (0..shards)
                .map(|_| Mutex::new(DedupeWindow::new(per_shard)))
                .collect(),
            ended: Notify::new(),
            waiting: AtomicUsize::new(0),
        }
    }

    fn shard(&self, key: Fingerprint) -> &Mutex<DedupeWindow> {
        // The low bits of a fingerprint are uniform; the remainder is below `SHARDS`.
        &self.shards[(key as usize) % self.shards.len()]
    }

    /// Runs `enqueue` if `key` is not remembered, and remembers it if `enqueue` succeeded; see
    /// the module docs. `enqueue` runs under the key's shard lock: keep it short, never await.
    pub fn admit<E>(
        &self,
        key: Fingerprint,
        now: Instant,
        enqueue: impl FnOnce() -> Result<(), E>,
    ) -> Admit<E> {
        let mut window = self.shard(key).lock();
        if window.contains(key, now) {
            return Admit::Duplicate;
        }
        match enqueue() {
            Ok(()) => {
                window.insert_new(key, now);
                Admit::Accepted
            }
            Err(error) => Admit::Refused(error),
        }
    }

    /// Whether `key` is remembered at `now`.
    pub fn contains(&self, key: Fingerprint, now: Instant) -> bool {
        self.shard(key).lock().contains(key, now)
    }

    /// Remembers `key` from `now`.
    pub fn insert(&self, key: Fingerprint, now: Instant) {
        self.shard(key).lock().insert(key, now);
    }

    /// Forgets `key` (an event handed back undelivered may be published again).
    pub fn forget(&self, key: Fingerprint) {
        self.shard(key).lock().forget(key);
    }

    /// Subscriber side: claims `key` for one delivery, unless it was handled `Ok` within the
    /// window or another delivery of it runs. A `Run` must be followed by [`end`](Self::end).
    pub fn begin(&self, key: Fingerprint, now: Instant) -> Begin {
        let mut window = self.shard(key).lock();
        if window.contains(key, now) {
            Begin::Done
        } else if window.running.insert(key) {
            Begin::Run
        } else {
            Begin::Busy
        }
    }

    /// Ends the delivery `begin` let run: remembers the key from `ok_at` if it was handled
    /// `Ok`, and wakes deliveries waiting for it.
    pub fn end(&self, key: Fingerprint, ok_at: Option<Instant>) {
        {
            let mut window = self.shard(key).lock();
            window.running.remove(&key);
            if let Some(at) = ok_at {
                window.insert(key, at);
            }
        }
        if self.waiting.load(Ordering::Relaxed) > 0 {
            self.ended.notify_waiters();
        }
    }

    /// Waits until `begin(key)` is not `Busy`, and returns what it is then.
    pub async fn begin_when_free(&self, key: Fingerprint, now: Instant) -> Begin {
        loop {
            let mut ended = std::pin::pin!(self.ended.notified());
            ended.as_mut().enable();
            self.waiting.fetch_add(1, Ordering::Relaxed);
            let _counted = Waiting(&self.waiting);
            let begin = self.begin(key, now);
            if begin != Begin::Busy {
                return begin;
            }
            ended.await;
        }
    }

    /// `(keys remembered, keys evicted early)`.
    pub fn sizes(&self) -> (usize, u64) {
        let now = Instant::now();
        self.shards.iter().fold((0, 0), |(keys, evicted), shard| {
            let mut window = shard.lock();
            window.expire(now);
            (keys + window.len(), evicted + window.evicted())
        })
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
        w.insert(1, t0);
        assert!(w.contains(1, t0 + Duration::from_secs(59)));
        assert!(!w.contains(1, t0 + Duration::from_secs(60)));
        assert!(w.is_empty());
        assert_eq!(w.evicted(), 0, "expiry by age is not an early eviction");
    }

    #[test]
    fn bounded_by_count_and_counts_evictions() {
        let t0 = Instant::now();
        let mut w = window(3, 60);
        for k in 1..=5 {
            w.insert(k, t0);
        }
        assert_eq!(w.len(), 3);
        assert_eq!(w.evicted(), 2);
        assert!(!w.contains(1, t0));
        assert!(w.contains(5, t0));
    }

    #[test]
    fn refused_enqueue_is_not_remembered() {
        let d = Dedupe::new(DedupeWindowConfig::new(10, Duration::from_secs(60)));
        let k = 7;
        let now = Instant::now();
        assert_eq!(d.admit(k, now, || Err("full")), Admit::Refused("full"));
        assert_eq!(d.admit::<()>(k, now, || Ok(())), Admit::Accepted);
        assert_eq!(
            d.admit::<()>(k, now, || panic!("must not run for a duplicate")),
            Admit::Duplicate
        );
    }
}
