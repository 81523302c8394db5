//! An append-only log with one writer at a time and readers that never wait for it.
//!
//! Invariant: every slot below [`Log::published`] is set and never changes; `published` only
//! grows; a slot is set before the `published` store that covers it (readers' `Acquire` loads
//! of `published` pair with that `Release` store, so a reader that sees index `i` below
//! `published` sees slot `i` set). The writer ([`LogWriter`]) is owned by whoever serializes the
//! writes (the store's commit lock), so no two writers ever exist for one log.
//!
//! The log is a list of fixed-size segments. The directory is the only strong owner of a
//! segment (besides the writer's tail and one segment per reader, see below): it maps every
//! index written to either the segment holding it or a run of released slots. A segment whose
//! entries are all dead is released wherever it is, not only at the front, and adjacent released
//! runs are merged, so the directory's size follows the segments still held, not the log's
//! length. Readers take the directory's mutex only to find the segment of an arbitrary index,
//! for the time of one clone; the writer takes it once per segment.
//!
//! A segment's `next` link is a `Weak` handle, set before any slot of the next segment is
//! published, so a reader holding a segment walks forward without a lock; since the link is
//! weak, a reader pins exactly the one segment it stands in, never the segments after it. When
//! the link no longer upgrades (the next segment was released), the reader asks the directory,
//! which answers [`Read::Dropped`] for released slots.
//!
//! Slots and segment links are std `OnceLock`s and segments are shared by std `Arc`/`Weak`
//! (loom has neither a `OnceLock` nor a `Weak`, and the core shim wraps neither): each is set
//! once by the single writer and read only after the `published` load that covers it, so they
//! never contend; the loom model checks that handshake around them.
//!
//! Public only for the loom model in `tests/`; not part of the API.

use std::collections::BTreeMap;
// Data, not synchronization: segments are shared by std `Arc`/`Weak` whatever the cfg.
use std::sync::{Arc, OnceLock, Weak};

use flowgate_core::sync::atomic::{AtomicU64, Ordering};
use flowgate_core::sync::Mutex;

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
    /// Weak, so that a reader holding this segment does not keep the later ones alive.
    next: OnceLock<Weak<Segment<S>>>,
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
}

impl<S> Segment<S> {
    fn contains(&self, index: u64) -> bool {
        index >= self.base && index - self.base < SEGMENT_LEN
    }

    /// The next segment, if it was opened and is still held.
    fn next(&self) -> Option<Arc<Segment<S>>> {
        self.next.get().and_then(Weak::upgrade)
    }
}

/// A run of released slots, as the directory reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Gap {
    /// The first released index of the run.
    start: u64,
    /// One past the last released index: the first index held after the run.
    end: u64,
    /// The largest key the trimmer reported for the released segments of the run.
    through: u64,
}

/// What the directory holds for a run of indexes starting at its key.
#[derive(Debug)]
enum Held<S> {
    /// One segment, `SEGMENT_LEN` slots.
    Segment(Arc<Segment<S>>),
    /// Released slots up to `end` (exclusive); `through` as in [`Gap`].
    Released { end: u64, through: u64 },
}

/// The segments of a log and the runs released between them, keyed by first index, covering
/// every index written with no gap and no overlap; two released runs are never adjacent.
#[derive(Debug)]
struct Directory<S> {
    runs: BTreeMap<u64, Held<S>>,
    /// How many runs are segments.
    segments: usize,
}

impl<S> Directory<S> {
    /// The segment holding `index` (the last segment for an index past it), or the released
    /// run holding it.
    fn find(&self, index: u64) -> Result<Arc<Segment<S>>, Gap> {
        if let Some((&start, held)) = self.runs.range(..=index).next_back() {
            match held {
                Held::Segment(segment) if segment.contains(index) => {
                    return Ok(Arc::clone(segment));
                }
                &Held::Released { end, through } if index < end => {
                    return Err(Gap {
                        start,
                        end,
                        through,
                    });
                }
                _ => {}
            }
        }
        // Past the last segment (which is never released): it reads nothing.
        match self.runs.last_key_value() {
            Some((_, Held::Segment(segment))) => Ok(Arc::clone(segment)),
            // Unreachable (the tail is never released); an empty gap reads as nothing.
            _ => Err(Gap {
                start: index,
                end: index,
                through: 0,
            }),
        }
    }

    /// The first held segment at or after index `from`, as its base.
    fn segment_from(&self, from: u64) -> Option<u64> {
        self.runs
            .range(from..)
            .find_map(|(&base, held)| matches!(held, Held::Segment(_)).then_some(base))
    }

    /// Replaces the segment at `base` by a released run reporting `through`, merged with the
    /// released runs right before and after it.
    fn release(&mut self, base: u64, through: u64) {
        if !matches!(self.runs.remove(&base), Some(Held::Segment(_))) {
            return;
        }
        self.segments -= 1;
        let (mut start, mut end, mut through) = (base, base + SEGMENT_LEN, through);
        if let Some((&before, &Held::Released { end: e, through: t })) =
            self.runs.range(..base).next_back()
        {
            if e == base {
                start = before;
                through = through.max(t);
            }
        }
        if let Some(&Held::Released { end: e, through: t }) = self.runs.get(&end) {
            self.runs.remove(&end);
            end = e;
            through = through.max(t);
        }
        self.runs.insert(start, Held::Released { end, through });
    }
}

/// See the [module docs](self).
#[derive(Debug)]
pub struct Log<S> {
    /// How many entries are readable: indexes `0..published`. Written by the writer only
    /// (`Release`, paired with readers' `Acquire`; the waiter handshake adds its fences, see
    /// [`crate::notify`]).
    published: AtomicU64,
    /// Segments still held and runs released. Readers lock it to find one segment; the writer
    /// locks it to add a segment or release dead ones.
    directory: Mutex<Directory<S>>,
}

/// The single writer of one [`Log`]; see the [module docs](self).
#[derive(Debug)]
pub struct LogWriter<S> {
    tail: Arc<Segment<S>>,
    /// Entries written (published or not yet).
    len: u64,
    /// Where the next [`trim`](Self::trim) goes on checking segments behind the front.
    sweep: u64,
}

/// What a [`Cursor::read`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// This many entries were passed to the callback (0: nothing new is published).
    Entries(usize),
    /// The cursor's index was in a run of slots released by retention; the cursor moved to
    /// `front`, the first index held after the run. Nothing was read.
    Dropped {
        /// The first index held after the released run.
        front: u64,
        /// The largest key the trimmer reported for the released run (see
        /// [`LogWriter::trim`]): for the store's logs, one past the last position released.
        through: u64,
    },
}

impl Read {
    fn dropped(gap: Gap) -> Self {
        Self::Dropped {
            front: gap.end,
            through: gap.through,
        }
    }
}

impl<S: Slot> Log<S> {
    /// An empty log and its writer.
    pub fn new() -> (Self, LogWriter<S>) {
        let first = Arc::new(Segment::new(0));
        let log = Self {
            published: AtomicU64::new(0),
            directory: Mutex::new(Directory {
                runs: BTreeMap::from([(0, Held::Segment(Arc::clone(&first)))]),
                segments: 1,
            }),
        };
        (
            log,
            LogWriter {
                tail: first,
                len: 0,
                sweep: 0,
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

    /// The first index of the oldest segment still held.
    pub fn front(&self) -> u64 {
        self.directory.lock().segment_from(0).unwrap_or(0)
    }

    /// How many segments the directory holds (each of [`SEGMENT_LEN`] slots).
    pub fn segments(&self) -> usize {
        self.directory.lock().segments
    }

    /// The segment holding `index`, or the released run holding it.
    fn segment_for(&self, index: u64) -> Result<Arc<Segment<S>>, Gap> {
        self.directory.lock().find(index)
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
    /// A released run counts as satisfying it when `gap_at_or_after(through)` (its reported
    /// key) holds, and the answer is then at most the run's first index.
    pub fn partition_point(
        &self,
        from: u64,
        at_or_after: impl Fn(&S::Value) -> bool,
        gap_at_or_after: impl Fn(u64) -> bool,
    ) -> u64 {
        let (mut low, mut high) = (from, self.published());
        while low < high {
            let mid = low + (high - low) / 2;
            match self.segment_for(mid) {
                Ok(segment) => match segment.with(mid, &at_or_after) {
                    Some(false) => low = mid + 1,
                    _ => high = mid,
                },
                Err(gap) if gap_at_or_after(gap.through) => high = gap.start.max(low),
                Err(gap) => low = gap.end.max(mid + 1),
            }
        }
        low
    }
}

/// How many segments behind the front one [`LogWriter::trim`] checks per call, round-robin,
/// so that a segment kept by one live event does not keep the dead ones behind it: the
/// directory then holds at most about twice the segments that still have a live event.
const SWEEP_PER_TRIM: usize = 2;

impl<S: Slot> LogWriter<S> {
    /// Writes `entry` at the next index without publishing it; returns the index.
    pub fn push(&mut self, log: &Log<S>, entry: S::Value) -> u64 {
        if !self.tail.contains(self.len) {
            let segment = Arc::new(Segment::new(self.len));
            // Linked before any of its slots is published (module invariant).
            let _ = self.tail.next.set(Arc::downgrade(&segment));
            let mut directory = log.directory.lock();
            directory
                .runs
                .insert(self.len, Held::Segment(Arc::clone(&segment)));
            directory.segments += 1;
            drop(directory);
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

    /// Releases segments whose every entry is `dead`, never the tail: the oldest ones while
    /// they are dead, then up to [`SWEEP_PER_TRIM`] more, round-robin over the rest.
    /// `dropped(index, entry)` sees the last entry of each segment released and returns its key
    /// (the largest key of a released run is reported to readers as `through`).
    pub fn trim(
        &mut self,
        log: &Log<S>,
        mut dead: impl FnMut(u64, &S::Value) -> bool,
        mut dropped: impl FnMut(u64, &S::Value) -> u64,
    ) {
        let tail = self.tail.base;
        let mut directory = log.directory.lock();
        let mut release_if_dead = |directory: &mut Directory<S>, base: u64| -> bool {
            let Some(Held::Segment(segment)) = directory.runs.get(&base) else {
                return false;
            };
            let all_dead = (base..base + SEGMENT_LEN)
                .all(|index| segment.with(index, |e| dead(index, e)).unwrap_or(true));
            if !all_dead {
                return false;
            }
            let last = base + SEGMENT_LEN - 1;
            let through = segment.with(last, |e| dropped(last, e)).unwrap_or(0);
            directory.release(base, through);
            true
        };
        while let Some(front) = directory.segment_from(0) {
            if front == tail || !release_if_dead(&mut directory, front) {
                break;
            }
        }
        for _ in 0..SWEEP_PER_TRIM {
            match directory.segment_from(self.sweep) {
                Some(base) if base != tail => {
                    self.sweep = base + SEGMENT_LEN;
                    release_if_dead(&mut directory, base);
                }
                // Reached the tail: start over from the front next time.
                _ => {
                    self.sweep = 0;
                    break;
                }
            }
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
                Err(gap) => {
                    self.index = gap.end;
                    return Read::dropped(gap);
                }
            },
        };
        let mut read = 0;
        while read < max && self.index < published {
            if !segment.contains(self.index) {
                // The link, or the directory if the link no longer upgrades; `None`: the next
                // segment was released, which the next read reports (`read` > 0 here).
                match segment.next().or_else(|| log.segment_for(self.index).ok()) {
                    Some(next) => segment = next,
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
            _ => log.segment_for(index).map_err(Read::dropped)?,
        };
        while !segment.contains(index) {
            segment = if let Some(next) = segment.next() {
                next
            } else {
                let found = log.segment_for(index).map_err(Read::dropped)?;
                if !found.contains(index) {
                    return Err(Read::Entries(0));
                }
                found
            };
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
        assert_eq!(log.partition_point(0, |e| *e >= 200, |_| true), 200);
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
        writer.trim(
            &log,
            |_, e| *e < SEGMENT_LEN,
            |_, e| {
                last_dropped = Some(*e);
                *e + 1
            },
        );
        assert_eq!(last_dropped, Some(SEGMENT_LEN - 1));
        assert_eq!(log.front(), SEGMENT_LEN);
        let mut cursor = Cursor::new(3);
        let dropped = Read::Dropped {
            front: SEGMENT_LEN,
            through: SEGMENT_LEN,
        };
        assert_eq!(cursor.read(&log, 1, |_, _| true), dropped);
        assert_eq!(Cursor::new(0).lookup(&log, 1, |e| *e), Err(dropped));
        assert_eq!(cursor.read(&log, 1, |_, _| true), Read::Entries(1));
        assert_eq!(cursor.index(), SEGMENT_LEN + 1);
        // The tail is never dropped.
        writer.trim(&log, |_, _| true, |_, e| *e + 1);
        assert_eq!(log.front(), SEGMENT_LEN * 2);
        assert_eq!(log.segments(), 1);
    }

    /// A live segment at the front does not keep the dead ones behind it; released runs merge,
    /// and a reader walking from the live segment is told where the released run ends.
    #[test]
    fn dead_segments_behind_a_live_one_are_released_and_merged() {
        let (log, mut writer) = Log::<Ints>::new();
        let live = |i: u64| i == 5 || i >= SEGMENT_LEN * 40;
        let mut reader = Cursor::new(0);
        for i in 0..SEGMENT_LEN * 41 {
            writer.push(&log, i);
            writer.publish(&log);
            if i == 5 {
                assert_eq!(reader.read(&log, 10, |_, _| true), Read::Entries(6));
            }
            if (i + 1) % SEGMENT_LEN == 1 {
                writer.trim(&log, |_, e| !live(*e), |_, e| *e + 1);
            }
        }
        assert!(log.segments() <= 4, "{} segments held", log.segments());
        let runs = log.directory.lock().runs.len();
        assert_eq!(runs, log.segments() + 1, "released runs were not merged");
        assert_eq!(log.front(), 0);
        assert_eq!(log.with(5, |e| *e), Some(5));
        assert_eq!(log.with(SEGMENT_LEN * 3, |e| *e), None);
        // The reader stands in segment 0: it reads the rest of it, then learns of the run.
        let mut seen = Vec::new();
        let first = reader.read(&log, 1_000, |_, e| {
            seen.push(*e);
            true
        });
        assert_eq!(first, Read::Entries((SEGMENT_LEN - 6) as usize));
        let Read::Dropped { front, through } = reader.read(&log, 1, |_, _| true) else {
            panic!("the released run was not reported");
        };
        assert_eq!(through, front);
        assert!(front >= SEGMENT_LEN * 37);
        assert_eq!(
            log.partition_point(0, |e| *e >= 1_000, |through| through > 1_000),
            SEGMENT_LEN
        );
        assert_eq!(
            log.partition_point(0, |e| *e >= 6, |through| through > 6),
            6
        );
    }
}
