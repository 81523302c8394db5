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

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
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

/// What a window knows of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// Remembered from this instant (publish side: accepted; subscriber side: handled `Ok`).
    /// Exactly these keys are in `order`, with the same instant.
    Since(Instant),
    /// Subscriber side: a delivery of the key runs now. Not in `order`, not counted against
    /// `max_keys` (at most one per delivery in flight).
    Running,
}

type Keys = HashMap<Fingerprint, Slot, BuildHasherDefault<FingerprintHasher>>;

use crate::config::DedupeWindowConfig;

/// The window's state; see the [module docs](self). One map probe answers every question
/// about a key (remembered, running, unknown), so an admit or a delivery's begin and end each
/// look the key up once.
#[derive(Debug)]
pub struct DedupeWindow {
    config: DedupeWindowConfig,
    /// Key → what is known of it.
    keys: Keys,
    /// Remembered keys in the order they were remembered (so also by age). An entry whose key
    /// no longer maps to `Since` of its instant is stale (forgotten, or remembered again
    /// later) and is skipped when it comes up.
    order: VecDeque<(Fingerprint, Instant)>,
    /// Keys forgotten before `max_age` because the window was full.
    evicted: u64,
    /// Keys in `keys` that are `Running`.
    running: usize,
}

impl DedupeWindow {
    /// An empty window.
    pub fn new(config: DedupeWindowConfig) -> Self {
        Self {
            config,
            keys: Keys::default(),
            order: VecDeque::new(),
            evicted: 0,
            running: 0,
        }
    }

    /// Removes the front of `order`, and its key from `keys` unless the entry is stale.
    /// Returns whether a live key went.
    fn pop_front(&mut self) -> bool {
        let Some((key, at)) = self.order.pop_front() else {
            return false;
        };
        match self.keys.entry(key) {
            Entry::Occupied(slot) if *slot.get() == Slot::Since(at) => {
                slot.remove();
                true
            }
            _ => false,
        }
    }

    /// Forgets the keys older than `max_age` at `now`.
    fn expire(&mut self, now: Instant) {
        // A key is older than `max_age` when it was remembered at or before `cutoff`.
        let Some(cutoff) = now.checked_sub(self.config.max_age) else {
            return;
        };
        while self.order.front().is_some_and(|&(_, at)| at <= cutoff) {
            self.pop_front();
        }
    }

    /// Appends a key just remembered at `at` to `order`, forgetting the oldest keys while the
    /// window holds more than `max_keys`.
    fn remembered(&mut self, key: Fingerprint, at: Instant) {
        self.order.push_back((key, at));
        while self.order.len() > self.config.max_keys {
            if self.pop_front() {
                self.evicted += 1;
            }
        }
    }

    /// Whether `key` is remembered at `now`.
    pub fn contains(&mut self, key: Fingerprint, now: Instant) -> bool {
        self.expire(now);
        matches!(self.keys.get(&key), Some(Slot::Since(_)))
    }

    /// Remembers `key` from `now` (no-op if it is known already).
    pub fn insert(&mut self, key: Fingerprint, now: Instant) {
        self.expire(now);
        if let Entry::Vacant(slot) = self.keys.entry(key) {
            slot.insert(Slot::Since(now));
            self.remembered(key, now);
        }
    }

    /// Subscriber side: see [`Dedupe::begin`].
    fn claim(&mut self, key: Fingerprint, now: Instant) -> Begin {
        self.expire(now);
        match self.keys.entry(key) {
            Entry::Occupied(slot) => match slot.get() {
                Slot::Since(_) => Begin::Done,
                Slot::Running => Begin::Busy,
            },
            Entry::Vacant(slot) => {
                slot.insert(Slot::Running);
                self.running += 1;
                Begin::Run
            }
        }
    }

    /// Subscriber side: see [`Dedupe::end`].
    fn release(&mut self, key: Fingerprint, ok_at: Option<Instant>) {
        let Entry::Occupied(mut slot) = self.keys.entry(key) else {
            return;
        };
        if *slot.get() != Slot::Running {
            return;
        }
        self.running -= 1;
        match ok_at {
            Some(at) => {
                slot.insert(Slot::Since(at));
                self.remembered(key, at);
            }
            None => {
                slot.remove();
            }
        }
    }

    /// Forgets `key` (its entry in `order` goes stale and is skipped when it comes up).
    pub fn forget(&mut self, key: Fingerprint) {
        if let Entry::Occupied(slot) = self.keys.entry(key) {
            if *slot.get() != Slot::Running {
                slot.remove();
            }
        }
    }

    /// Keys remembered now.
    pub fn len(&self) -> usize {
        self.keys.len() - self.running
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
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

/// One shard's lock and window, alone on its cache lines: the workers of a subscriber run on
/// several threads, and two shards on one line would make their locks contend.
#[derive(Debug)]
#[repr(align(128))]
struct Shard(Mutex<DedupeWindow>);

/// Shards of a [`Dedupe`]: enough that the partition workers of a subscriber rarely meet on
/// one lock.
const SHARDS: usize = 16;

/// A [`DedupeWindow`] behind locks, shared by the publishers of one topic (or the partition
/// workers of one subscriber). It is split into up to 16 shards by fingerprint, each with its
/// share of `max_keys` (at least one key), so that concurrent workers rarely contend; a key
/// always lands in the same shard, so "remembered" means the same as with one window.
#[derive(Debug)]
pub struct Dedupe {
    shards: Box<[Shard]>,
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
                .map(|_| Shard(Mutex::new(DedupeWindow::new(per_shard))))
                .collect(),
            ended: Notify::new(),
            waiting: AtomicUsize::new(0),
        }
    }

    fn shard(&self, key: Fingerprint) -> &Mutex<DedupeWindow> {
        // The low bits of a fingerprint are uniform; the remainder is below `SHARDS`.
        &self.shards[(key as usize) % self.shards.len()].0
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
        window.expire(now);
        let Entry::Vacant(slot) = window.keys.entry(key) else {
            return Admit::Duplicate;
        };
        match enqueue() {
            Ok(()) => {
                slot.insert(Slot::Since(now));
                window.remembered(key, now);
                Admit::Accepted
            }
            Err(error) => Admit::Refused(error),
        }
    }

    /// Forgets `key` (an event handed back undelivered may be published again).
    pub fn forget(&self, key: Fingerprint) {
        self.shard(key).lock().forget(key);
    }

    /// Subscriber side: claims `key` for one delivery, unless it was handled `Ok` within the
    /// window or another delivery of it runs. A `Run` must be followed by [`end`](Self::end).
    pub fn begin(&self, key: Fingerprint, now: Instant) -> Begin {
        self.shard(key).lock().claim(key, now)
    }

    /// Ends the delivery `begin` let run: remembers the key from `ok_at` if it was handled
    /// `Ok`, and wakes deliveries waiting for it.
    pub fn end(&self, key: Fingerprint, ok_at: Option<Instant>) {
        self.shard(key).lock().release(key, ok_at);
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
            let mut window = shard.0.lock();
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

    #[test]
    fn a_delivery_claims_its_key_until_it_ends() {
        let d = Dedupe::new(DedupeWindowConfig::new(16, Duration::from_secs(60)));
        let now = Instant::now();
        assert_eq!(d.begin(1, now), Begin::Run);
        assert_eq!(
            d.begin(1, now),
            Begin::Busy,
            "one delivery of a key at a time"
        );
        assert_eq!(d.sizes().0, 0, "a running key is not remembered yet");
        d.end(1, None);
        assert_eq!(
            d.begin(1, now),
            Begin::Run,
            "a failed delivery may run again"
        );
        d.end(1, Some(now));
        assert_eq!(d.begin(1, now), Begin::Done, "handled Ok: never again");
        assert_eq!(d.sizes(), (1, 0));
        d.forget(1);
        assert_eq!(d.begin(1, now), Begin::Run);
    }

    #[test]
    fn running_keys_do_not_take_room_from_remembered_ones() {
        let mut w = window(2, 60);
        let d = Dedupe::new(DedupeWindowConfig::new(1, Duration::from_secs(60)));
        let now = Instant::now();
        assert_eq!(d.begin(1, now), Begin::Run);
        assert_eq!(d.begin(2, now), Begin::Run);
        d.end(2, Some(now));
        assert_eq!(d.sizes(), (1, 0), "key 1 still runs and evicted nothing");
        d.end(1, Some(now));
        assert_eq!(
            d.sizes(),
            (1, 1),
            "the window holds one key: 2 went early, counted"
        );
        assert_eq!(d.begin(2, now), Begin::Run);
        w.insert(1, now);
        w.insert(1, now);
        assert_eq!(
            (w.len(), w.evicted()),
            (1, 0),
            "inserting a remembered key is a no-op"
        );
    }
}
