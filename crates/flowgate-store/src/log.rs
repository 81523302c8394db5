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

/// A run of [`SEGMENT_LEN`] slots starting at index `base`.
#[derive(Debug)]
pub struct Segment<E> {
    base: u64,
    /// Set once each, by the writer, before `published` covers them.
    slots: Box<[OnceLock<E>]>,
    /// Set by the writer when it opens the next segment, before publishing any slot there.
    next: OnceLock<Arc<Segment<E>>>,
}

impl<E> Segment<E> {
    fn new(base: u64) -> Self {
        Self {
            base,
            slots: (0..SEGMENT_LEN).map(|_| OnceLock::new()).collect(),
            next: OnceLock::new(),
        }
    }

    fn get(&self, index: u64) -> Option<&E> {
        let offset = index.checked_sub(self.base)?;
        self.slots.get(offset as usize)?.get()
    }

    fn contains(&self, index: u64) -> bool {
        index >= self.base && index - self.base < SEGMENT_LEN
    }
}

/// See the [module docs](self).
#[derive(Debug)]
pub struct Log<E> {
    /// How many entries are readable: indexes `0..published`. Written by the writer only
    /// (`Release`, paired with readers' `Acquire`; the waiter handshake adds its fences, see
    /// [`crate::notify`]).
    published: AtomicU64,
    /// Segments still held, oldest first and contiguous. Readers lock it to find one segment;
    /// the writer locks it to add a segment or drop dead ones at the front.
    directory: Mutex<VecDeque<Arc<Segment<E>>>>,
}

/// The single writer of one [`Log`]; see the [module docs](self).
#[derive(Debug)]
pub struct LogWriter<E> {
    tail: Arc<Segment<E>>,
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

impl<E> Log<E> {
    /// An empty log and its writer.
    pub fn new() -> (Self, LogWriter<E>) {
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
    fn segment_for(&self, index: u64) -> Result<Arc<Segment<E>>, u64> {
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

    /// The entry at `index`, if it is published and still held.
    pub fn get(&self, index: u64) -> Option<E>
    where
        E: Clone,
    {
        if index >= self.published() {
            return None;
        }
        self.segment_for(index).ok()?.get(index).cloned()
    }

    /// The first index in `from..published` whose entry satisfies `at_or_after` (a predicate
    /// that is false then true along the log, such as "position >= p"); `published` if none.
    pub fn partition_point(&self, from: u64, at_or_after: impl Fn(&E) -> bool) -> u64 {
        let (mut low, mut high) = (from, self.published());
        while low < high {
            let mid = low + (high - low) / 2;
            match self.segment_for(mid) {
                Ok(segment) => match segment.get(mid) {
                    Some(entry) if !at_or_after(entry) => low = mid + 1,
                    _ => high = mid,
                },
                Err(front) => low = front.max(mid + 1),
            }
        }
        low
    }
}

impl<E> LogWriter<E> {
    /// Writes `entry` at the next index without publishing it; returns the index.
    pub fn push(&mut self, log: &Log<E>, entry: E) -> u64 {
        if !self.tail.contains(self.len) {
            let segment = Arc::new(Segment::new(self.len));
            // Linked before any of its slots is published (module invariant).
            let _ = self.tail.next.set(Arc::clone(&segment));
            log.directory.lock().push_back(Arc::clone(&segment));
            self.tail = segment;
        }
        let index = self.len;
        let _ = self.tail.slots[(index - self.tail.base) as usize].set(entry);
        self.len += 1;
        index
    }

    /// Entries written so far (the next index).
    pub fn written(&self) -> u64 {
        self.len
    }

    /// Makes every written entry readable.
    pub fn publish(&self, log: &Log<E>) {
        // Release: the slots written before it are visible to readers that see the length.
        log.published.store(self.len, Ordering::Release);
    }

    /// Drops whole segments at the front whose every entry is `dead`, never the tail.
    pub fn trim(&self, log: &Log<E>, dead: impl Fn(&E) -> bool) {
        let mut directory = log.directory.lock();
        while directory.len() > 1 {
            let all_dead = directory
                .front()
                .is_some_and(|s| s.slots.iter().all(|slot| slot.get().is_none_or(&dead)));
            if !all_dead {
                break;
            }
            directory.pop_front();
        }
    }
}

/// A reader's place in a [`Log`]: the next index to read and the segment that holds it.
#[derive(Debug)]
pub struct Cursor<E> {
    index: u64,
    segment: Option<Arc<Segment<E>>>,
}

impl<E> Cursor<E> {
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

    /// Passes up to `max` published entries, from the cursor on, to `each` (with their index)
    /// and moves past them. `each` returns `false` to stop before consuming that entry.
    pub fn read(
        &mut self,
        log: &Log<E>,
        max: usize,
        mut each: impl FnMut(u64, &E) -> bool,
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
            let Some(entry) = segment.get(self.index) else {
                break;
            };
            if !each(self.index, entry) {
                break;
            }
            self.index += 1;
            read += 1;
        }
        self.segment = Some(segment);
        Read::Entries(read)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_reads_what_was_published_across_segments() {
        let (log, mut writer) = Log::new();
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
        assert_eq!(log.get(5), Some(5));
    }

    #[test]
    fn dead_front_segments_are_dropped_and_reported() {
        let (log, mut writer) = Log::new();
        for i in 0..=(SEGMENT_LEN * 2) {
            writer.push(&log, i);
        }
        writer.publish(&log);
        writer.trim(&log, |e| *e < SEGMENT_LEN);
        assert_eq!(log.front(), SEGMENT_LEN);
        let mut cursor = Cursor::new(3);
        assert_eq!(
            cursor.read(&log, 1, |_, _| true),
            Read::Dropped { front: SEGMENT_LEN }
        );
        assert_eq!(cursor.read(&log, 1, |_, _| true), Read::Entries(1));
        assert_eq!(cursor.index(), SEGMENT_LEN + 1);
        // The tail is never dropped.
        writer.trim(&log, |_| true);
        assert_eq!(log.front(), SEGMENT_LEN * 2);
    }
}
