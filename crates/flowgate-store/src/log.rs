//! An append-only log with one writer at a time and readers that never wait for it.
//!
//! Invariant: every slot below [`Log::published`] is set and never changes; `published` only
//! grows; a slot is set before the `published` store that covers it (readers' `Acquire` loads
//! of `published` pair with that `Release` store, so a reader that sees index `i` below
//! `published` sees slot `i` set). The writer ([`LogWriter`]) is owned by whoever serializes the
//! writes (the store's commit lock), so no two writers ever exist for one log.
//!
//! The log is a linked list of fixed-size segments. A segment's `next` link is set before any
//! slot of the next segment is published, so a reader holding a segment walks forward without a
//! lock. The directory (the segments still held, oldest first) is behind a mutex that readers
//! take only to find the segment of an arbitrary index, for the time of one clone; the writer
//! takes it once per segment. Front segments whose entries are all dead are dropped from the
//! directory; a reader still holding one keeps it alive until it moves on.
//!
//! Slots and segment links are std `OnceLock`s (loom has none, and the core shim does not
//! wrap one): each is set once by the single writer and read only after the `published` load
//! that covers it, so they never contend; the loom model checks that handshake around them.
//!
//! Public only for the loom model in `tests/`; not part of the API.

use std::collections::VecDeque;
use std::sync::OnceLock;

use flowgate_core::sync::atomic::{AtomicU64, Ordering};
use flowgate_core::sync::{Arc, Mutex};

/// Slots per segment. Tiny under loom so that a model crosses segments.
#[cfg(not(loom))]
pub const SEGMENT_LEN: u64 = 128;
/// Slots per segment. Tiny under loom so that a model crosses segments.
#[cfg(loom)]
pub const SEGMENT_LEN: u64 = 2;

/// One slot of a log: written once by the writer before `published` covers it.
pub trait Slot: Send + Sync {
    /// What the slot holds.
    type Value;
    /// An unwritten slot.
    fn empty() -> Self;
    /// Writes the slot (the writer, once, before publishing it).
    fn set(&self, value: Self::Value);
    /// Calls `f` on the value, if the slot was written.
    fn with<R>(&self, f: impl FnOnce(&Self::Value) -> R) -> Option<R>;
}

impl<E: Send + Sync> Slot for OnceLock<E> {
    type Value = E;

    fn empty() -> Self {
        OnceLock::new()
    }

    fn set(&self, value: E) {
        let _ = OnceLock::set(self, value);
    }

    fn with<R>(&self, f: impl FnOnce(&E) -> R) -> Option<R> {
        self.get().map(f)
    }
}

/// A slot of two integers, cheaper to write than a `OnceLock` (two relaxed stores, no
/// read-modify-write): the `Release` store of `published` that covers it orders them for
/// readers.
#[derive(Debug)]
pub struct Pair {
    first: AtomicU64,
    second: AtomicU64,
}

impl Slot for Pair {
    type Value = (u64, u64);

    fn empty() -> Self {
        Self {
            first: AtomicU64::new(0),
            second: AtomicU64::new(0),
        }
    }

    fn set(&self, (first, second): (u64, u64)) {
        // Relaxed: published by the writer's Release store of `published`.
        self.first.store(first, Ordering::Relaxed);
        self.second.store(second, Ordering::Relaxed);
    }

    fn with<R>(&self, f: impl FnOnce(&(u64, u64)) -> R) -> Option<R> {
        // Relaxed: the reader's Acquire load of `published` came first.
        let value = (
            self.first.load(Ordering::Relaxed),
            self.second.load(Ordering::Relaxed),
        );
        Some(f(&value))
    }
}

/// A run of [`SEGMENT_LEN`] slots starting at index `base`.
#[derive(Debug)]
pub struct Segment<S> {
    base: u64,
    /// Set once each, by the writer, before `published` covers them.
    slots: Box<[S]>,
    /// Set by the writer when it opens the next segment, before publishing any slot there.
    next: OnceLock<Arc<Segment<S>>>,
}

impl<S: Slot> Segment<S> {
    fn new(base: u64) -> Self {
        Self {
            base,
            slots: (0..SEGMENT_LEN).map(|_| S::empty()).collect(),
            next: OnceLock::new(),
        }
    }

    fn with<R>(&self, index: u64, f: impl FnOnce(&S::Value) -> R) -> Option<R> {
        let offset = index.checked_sub(self.base)?;
        self.slots.get(offset as usize)?.with(f)
    }

    fn contains(&self, index: u64) -> bool {
        index >= self.base && index - self.base < SEGMENT_LEN
    }
}

/// See the [module docs](self).
#[derive(Debug)]
pub struct Log<S> {
    /// How many entries are readable: indexes `0..published`. Written by the writer only
    /// (`Release`, paired with readers' `Acquire`; the waiter handshake adds its fences, see
    /// [`crate::notify`]).
    published: AtomicU64,
    /// Segments still held, oldest first and contiguous. Readers lock it to find one segment;
    /// the writer locks it to add a segment or drop dead ones at the front.
    directory: Mutex<VecDeque<Arc<Segment<S>>>>,
}

/// The single writer of one [`Log`]; see the [module docs](self).
#[derive(Debug)]
pub struct LogWriter<S> {
    tail: Arc<Segment<S>>,
    /// Entries written (published or not yet).
    len: u64,
}

/// What a [`Cursor::read`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// This many entries were passed to the callback (0: nothing new is published).
    Entries(usize),
    /// The cursor's index was below the oldest segment still held (dropped by retention); the
    /// cursor moved to `front`, the oldest index still readable. Nothing was read.
    Dropped {
        /// The oldest index still held.
        front: u64,
    },
}

impl<S: Slot> Log<S> {
    /// An empty log and its writer.
    pub fn new() -> (Self, LogWriter<S>) {
        let first = Arc::new(Segment::new(0));
        let log = Self {
            published: AtomicU64::new(0),
            directory: Mutex::new(VecDeque::from([Arc::clone(&first)])),
        };
        (
            log,
            LogWriter {
                tail: first,
                len: 0,
            },
        )
    }
}

impl<S> Log<S> {
    /// How many entries are readable.
    #[inline]
    pub fn published(&self) -> u64 {
        // Acquire: pairs with the writer's Release store, so the slots below are visible.
        self.published.load(Ordering::Acquire)
    }

    /// The oldest index still held.
    pub fn front(&self) -> u64 {
        self.directory.lock().front().map_or(0, |s| s.base)
    }

    /// The segment holding `index`, or `Err(front)` when it was dropped.
    fn segment_for(&self, index: u64) -> Result<Arc<Segment<S>>, u64> {
        let directory = self.directory.lock();
        let front = directory.front().map_or(0, |s| s.base);
        if index < front {
            return Err(front);
        }
        let at = ((index - front) / SEGMENT_LEN) as usize;
        // An index past the last segment reads nothing: hand back the last one.
        let segment = directory.get(at).or_else(|| directory.back());
        segment.map(Arc::clone).ok_or(front)
    }
}

impl<S: Slot> Log<S> {
    /// Calls `f` on the entry at `index`, if it is published and still held.
    pub fn with<R>(&self, index: u64, f: impl FnOnce(&S::Value) -> R) -> Option<R> {
        if index >= self.published() {
            return None;
        }
        self.segment_for(index).ok()?.with(index, f)
    }

    /// The first index in `from..published` whose entry satisfies `at_or_after` (a predicate
    /// that is false then true along the log, such as "position >= p"); `published` if none.
    pub fn partition_point(&self, from: u64, at_or_after: impl Fn(&S::Value) -> bool) -> u64 {
        let (mut low, mut high) = (from, self.published());
        while low < high {
            let mid = low + (high - low) / 2;
            match self.segment_for(mid) {
                Ok(segment) => match segment.with(mid, &at_or_after) {
                    Some(false) => low = mid + 1,
                    _ => high = mid,
                },
                Err(front) => low = front.max(mid + 1),
            }
        }
        low
    }
}

impl<S: Slot> LogWriter<S> {
    /// Writes `entry` at the next index without publishing it; returns the index.
    pub fn push(&mut self, log: &Log<S>, entry: S::Value) -> u64 {
        if !self.tail.contains(self.len) {
            let segment = Arc::new(Segment::new(self.len));
            // Linked before any of its slots is published (module invariant).
            let _ = self.tail.next.set(Arc::clone(&segment));
            log.directory.lock().push_back(Arc::clone(&segment));
            self.tail = segment;
        }
        let index = self.len;
        self.tail.slots[(index - self.tail.base) as usize].set(entry);
        self.len += 1;
        index
    }

    /// Entries written so far (the next index).
    pub fn written(&self) -> u64 {
        self.len
    }

    /// Makes every written entry readable.
    pub fn publish(&self, log: &Log<S>) {
        // Release: the slots written before it are visible to readers that see the length.
        log.published.store(self.len, Ordering::Release);
    }

    /// Drops whole segments at the front whose every entry is `dead`, never the tail;
    /// `dropped` sees the last entry of each segment dropped, just before it goes.
    pub fn trim(
        &self,
        log: &Log<S>,
        mut dead: impl FnMut(u64, &S::Value) -> bool,
        mut dropped: impl FnMut(&S::Value),
    ) {
        let mut directory = log.directory.lock();
        while directory.len() > 1 {
            let Some(front) = directory.front() else {
                break;
            };
            let all_dead = (front.base..front.base + SEGMENT_LEN)
                .all(|index| front.with(index, |e| dead(index, e)).unwrap_or(true));
            if !all_dead {
                break;
            }
            front.with(front.base + SEGMENT_LEN - 1, &mut dropped);
            directory.pop_front();
        }
    }
}

/// A reader's place in a [`Log`]: the next index to read and the segment that holds it.
#[derive(Debug)]
pub struct Cursor<S> {
    index: u64,
    segment: Option<Arc<Segment<S>>>,
}

/// How far a [`Cursor::lookup`] walks segment links before asking the directory instead.
const WALK: u64 = 4;

impl<S> Cursor<S> {
    /// A cursor whose next read starts at `index`.
    pub fn new(index: u64) -> Self {
        Self {
            index,
            segment: None,
        }
    }

    /// The next index this cursor reads.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// Moves the cursor to `index`.
    pub fn seek(&mut self, index: u64) {
        if self.index != index {
            self.index = index;
            self.segment = None;
        }
    }
}

impl<S: Slot> Cursor<S> {
    /// Passes up to `max` published entries, from the cursor on, to `each` (with their index)
    /// and moves past them. `each` returns `false` to stop before consuming that entry.
    pub fn read(
        &mut self,
        log: &Log<S>,
        max: usize,
        mut each: impl FnMut(u64, &S::Value) -> bool,
    ) -> Read {
        let published = log.published();
        if self.index >= published || max == 0 {
            return Read::Entries(0);
        }
        let mut segment = match self.segment.take() {
            Some(s) if s.contains(self.index) => s,
            _ => match log.segment_for(self.index) {
                Ok(s) => s,
                Err(front) => {
                    self.index = front;
                    return Read::Dropped { front };
                }
            },
        };
        let mut read = 0;
        while read < max && self.index < published {
            if !segment.contains(self.index) {
                match segment.next.get() {
                    Some(next) => segment = Arc::clone(next),
                    // Unreachable by the module invariant; stop rather than spin.
                    None => break,
                }
            }
            let index = self.index;
            match segment.with(index, |entry| each(index, entry)) {
                Some(true) => {}
                // `None` is unreachable by the module invariant; stop rather than spin.
                Some(false) | None => break,
            }
            self.index += 1;
            read += 1;
        }
        self.segment = Some(segment);
        Read::Entries(read)
    }

    /// Calls `f` on the published entry at `index` without moving the cursor's index; keeps
    /// the segment found for the next lookup (cheap for lookups that move forward a little,
    /// as a category's positions do through the global log). `Err(Read::Dropped { front })`
    /// when `index` was dropped, `Err(Read::Entries(0))` when it is not published yet.
    pub fn lookup<R>(
        &mut self,
        log: &Log<S>,
        index: u64,
        f: impl FnOnce(&S::Value) -> R,
    ) -> Result<R, Read> {
        if index >= log.published() {
            return Err(Read::Entries(0));
        }
        let mut segment = match self.segment.take() {
            Some(s) if s.base <= index && index < s.base + WALK * SEGMENT_LEN => s,
            _ => log
                .segment_for(index)
                .map_err(|front| Read::Dropped { front })?,
        };
        while !segment.contains(index) {
            match segment.next.get() {
                Some(next) => segment = Arc::clone(next),
                None => return Err(Read::Entries(0)),
            }
        }
        let found = segment.with(index, f).ok_or(Read::Entries(0));
        self.segment = Some(segment);
        found
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    type Ints = OnceLock<u64>;

    #[test]
    fn a_cursor_reads_what_was_published_across_segments() {
        let (log, mut writer) = Log::<Ints>::new();
        for i in 0..(SEGMENT_LEN * 3 + 5) {
            writer.push(&log, i);
        }
        let mut cursor = Cursor::new(0);
        assert_eq!(cursor.read(&log, 10, |_, _| true), Read::Entries(0));
        writer.publish(&log);
        let mut seen = Vec::new();
        while let Read::Entries(n @ 1..) = cursor.read(&log, 7, |i, e| {
            assert_eq!(i, *e);
            seen.push(*e);
            true
        }) {
            assert!(n <= 7);
        }
        assert_eq!(seen, (0..(SEGMENT_LEN * 3 + 5)).collect::<Vec<_>>());
        assert_eq!(log.partition_point(0, |e| *e >= 200), 200);
        assert_eq!(log.with(5, |e| *e), Some(5));
        let mut finder = Cursor::new(0);
        for i in [3, 4, 130, 131, 300, 2] {
            assert_eq!(finder.lookup(&log, i, |e| *e), Ok(i));
        }
        assert_eq!(finder.lookup(&log, 10_000, |e| *e), Err(Read::Entries(0)));
    }

    #[test]
    fn dead_front_segments_are_dropped_and_reported() {
        let (log, mut writer) = Log::<Ints>::new();
        for i in 0..=(SEGMENT_LEN * 2) {
            writer.push(&log, i);
        }
        writer.publish(&log);
        let mut last_dropped = None;
        writer.trim(&log, |_, e| *e < SEGMENT_LEN, |e| last_dropped = Some(*e));
        assert_eq!(last_dropped, Some(SEGMENT_LEN - 1));
        assert_eq!(log.front(), SEGMENT_LEN);
        let mut cursor = Cursor::new(3);
        assert_eq!(
            cursor.read(&log, 1, |_, _| true),
            Read::Dropped { front: SEGMENT_LEN }
        );
        assert_eq!(
            Cursor::new(0).lookup(&log, 1, |e| *e),
            Err(Read::Dropped { front: SEGMENT_LEN })
        );
        assert_eq!(cursor.read(&log, 1, |_, _| true), Read::Entries(1));
        assert_eq!(cursor.index(), SEGMENT_LEN + 1);
        // The tail is never dropped.
        writer.trim(&log, |_, _| true, |_| {});
        assert_eq!(log.front(), SEGMENT_LEN * 2);
    }
}
