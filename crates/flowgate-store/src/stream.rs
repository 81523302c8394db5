//! One stream's state, and one category's log.
//!
//! Invariant of [`Stream`]: under its `state` lock, `events` holds versions
//! `first_version..next_version` in order, with no gap; `next_version` only grows (it is the
//! number of events ever appended, so versions are never reused, also after truncation); once
//! `evicted` is set the stream takes no more appends and holds no events. The lock is held by an
//! appender of this stream (around its commit), by a reader copying a page, by retention
//! trimming the front, and by eviction; never across anything that waits on another stream.
//!
//! Invariant of [`Category`]: its log holds, in global position order, the position of every
//! event ever appended to a stream of the category; it is written only under the store's
//! commit lock. The store's category map holds it while it has a stream or a subscription
//! (both counted under the map's lock); once it has neither it is removed, and its writer slot
//! is freed: no appender can still write to it, since all its streams were evicted.

use std::collections::VecDeque;
// Data, not synchronization: records are shared by std `Arc`/`Weak` whatever the cfg.
use std::sync::{Arc, OnceLock, Weak};

use flowgate_core::sync::atomic::{AtomicU64, AtomicUsize};
use flowgate_core::sync::Mutex;

use crate::log::{Log, Pair};
use crate::notify::Notifier;
use crate::record::{Record, Recorded, StreamInfo};

/// One slot of the global log (whose index is the position).
#[derive(Debug)]
pub(crate) struct Entry<T> {
    /// Dead once retention removed the event from its stream.
    pub(crate) record: Weak<Record<T>>,
    /// The stream id's stable hash, kept for consumer-group filtering of dead entries.
    pub(crate) id_hash: u64,
}

impl<T> Entry<T> {
    pub(crate) fn is_dead(&self) -> bool {
        self.record.strong_count() == 0
    }

    pub(crate) fn upgrade(&self) -> Option<Recorded<T>> {
        self.record.upgrade().map(|inner| Recorded { inner })
    }
}

/// The global log: one [`Entry`] per position.
pub(crate) type AllLog<T> = Log<OnceLock<Entry<T>>>;

/// A category log: (global position, stream id hash) of each event of the category; the
/// record itself is looked up in the global log.
pub(crate) type CategoryLog = Log<Pair>;

/// See the [module docs](self).
#[derive(Debug)]
pub(crate) struct Category {
    pub(crate) name: Arc<str>,
    /// Index of this category's writer in the commit state.
    pub(crate) writer: usize,
    pub(crate) log: CategoryLog,
    pub(crate) notifier: Notifier,
    /// Streams of this category in the store. Changed under the store's category map lock.
    pub(crate) streams: AtomicUsize,
    /// Open subscriptions to this category. Changed under the store's category map lock.
    pub(crate) subscriptions: AtomicUsize,
}

/// Who holds a [`Category`], for the counts that decide when it is removed.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Holder {
    Stream,
    Subscription,
}

impl Holder {
    pub(crate) fn counter(self, category: &Category) -> &AtomicUsize {
        match self {
            Self::Stream => &category.streams,
            Self::Subscription => &category.subscriptions,
        }
    }
}

/// Where the first stream created under a name is handed to the subscriptions that were
/// opened before it existed (set once, under the store's stream map lock). A shim mutex rather
/// than a `OnceLock`, so that loom sees the hand-over order the subscription's reads of the new
/// stream.
pub(crate) type PendingStream<T> = Arc<Mutex<Option<Arc<Stream<T>>>>>;

/// See the [module docs](self).
#[derive(Debug)]
pub(crate) struct Stream<T> {
    pub(crate) info: Arc<StreamInfo>,
    pub(crate) category: Arc<Category>,
    pub(crate) state: Mutex<StreamState<T>>,
    /// Global position of the last append (`u64::MAX` until the first, so that a stream being
    /// created is not the one evicted): the eviction order. Written under `state`'s lock, read
    /// by eviction without it.
    pub(crate) last_appended: AtomicU64,
    /// Wakes this stream's subscriptions; registration happens under `state`'s lock.
    pub(crate) notifier: Notifier,
}

#[derive(Debug)]
pub(crate) struct StreamState<T> {
    pub(crate) events: VecDeque<Recorded<T>>,
    pub(crate) first_version: u64,
    pub(crate) next_version: u64,
    pub(crate) evicted: bool,
}

impl<T> StreamState<T> {
    pub(crate) fn new() -> Self {
        Self {
            events: VecDeque::new(),
            first_version: 0,
            next_version: 0,
            evicted: false,
        }
    }

    /// The version of the last event, `None` before the first append.
    pub(crate) fn version(&self) -> Option<u64> {
        self.next_version.checked_sub(1)
    }

    /// Removes the oldest event; returns its size for the byte count, and the record itself.
    /// Drop the record once the lock is released: it is often the payload's last reference, and
    /// the payload's `Drop` is the user's code (which may call the store).
    pub(crate) fn pop_front(&mut self) -> Option<(u64, Recorded<T>)> {
        let record = self.events.pop_front()?;
        self.first_version += 1;
        Some((record.inner.size, record))
    }
}
