//! The store: streams, the global log, category logs, appends, reads and retention.
//!
//! Invariant: global positions are handed out under the commit lock, in the order the events
//! are written to the global log and to their category's log, and both logs are published
//! before the lock is released; so positions are gapless, never reused, and every log is in
//! position order. An appender takes its stream's lock first and the commit lock inside it,
//! for the time of writing the slots only; readers take neither the commit lock nor any lock
//! of another stream, so a read never blocks appends to other streams.
//!
//! Lock order (never taken the other way round): the stream map, then the category map, then
//! the commit lock; the stream map, then the pending map (stream creation, stream
//! subscriptions); the stream map, then one stream (eviction); one stream, then the commit
//! lock (append). No user code (the `payload_size` function) runs under any of them.

use std::collections::HashMap;
use std::fmt;
// Data, not synchronization: the store handle and records use std `Arc` whatever the cfg.
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use flowgate_core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use flowgate_core::sync::{Mutex, MutexGuard};
use flowgate_core::{stable_hash, Event};

use crate::builder::{Config, StoreBuilder, StreamLimit};
use crate::hasher::SeededState;
use crate::log::{Cursor, Log, LogWriter, Pair, Read, SEGMENT_LEN};
use crate::name;
use crate::notify::{handshake_fence, Notifier};
use crate::read::{empty_page, read_forward, read_log, Resolved};
use crate::record::{Appended, ExpectedVersion, Page, Record, Recorded, StreamInfo};
use crate::stats::StoreStats;
use crate::stream::{AllLog, Category, Entry, Holder, PendingStream, Stream, StreamState};
use crate::subscription::{SubscribeBuilder, Target};
use crate::StoreError;

type Map<V> = HashMap<Arc<str>, V, SeededState>;

/// What the commit lock guards: the writers of the global log and of every category log.
#[derive(Debug)]
struct Commit<T> {
    all: LogWriter<OnceLock<Entry<T>>>,
    /// Indexed by [`Category::writer`]; `None` for a slot whose category was removed, until a
    /// new category takes it from `free_writers`.
    categories: Vec<Option<LogWriter<Pair>>>,
    free_writers: Vec<usize>,
}

impl<T> Commit<T> {
    fn category(&self, writer: usize) -> Option<&LogWriter<Pair>> {
        self.categories.get(writer).and_then(Option::as_ref)
    }

    fn category_mut(&mut self, writer: usize) -> Option<&mut LogWriter<Pair>> {
        self.categories.get_mut(writer).and_then(Option::as_mut)
    }
}

/// Statistics counters; `Relaxed`, read without ordering.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) truncated: AtomicU64,
    pub(crate) evicted_streams: AtomicU64,
    pub(crate) rejected_streams: AtomicU64,
    pub(crate) version_conflicts: AtomicU64,
    pub(crate) bytes: AtomicU64,
    pub(crate) subscriptions: AtomicUsize,
}

pub(crate) struct Inner<T> {
    pub(crate) config: Config<T>,
    streams: Mutex<Map<Arc<Stream<T>>>>,
    /// Stream subscriptions opened before their stream existed, by name: the first stream
    /// created under the name is handed to them here (under the stream map's lock), so they
    /// follow that incarnation even if it is evicted before they look. Entries go when the
    /// stream is created or the last such subscription is dropped.
    pending: Mutex<Map<PendingStream<T>>>,
    categories: Mutex<Map<Arc<Category>>>,
    commit: Mutex<Commit<T>>,
    /// Every event, indexed by global position.
    pub(crate) all: AllLog<T>,
    /// Wakes subscriptions to all events, and stream subscriptions waiting for their stream to
    /// be created.
    pub(crate) all_notifier: Notifier,
    pub(crate) counters: Counters,
    /// Held (set) by the one thread running an age sweep.
    sweeping: AtomicBool,
    /// Global positions below this were already checked by the age sweep.
    swept_to: AtomicU64,
    /// The store's series in the `metrics` recorder installed when it was built.
    #[cfg(feature = "metrics")]
    pub(crate) metrics: crate::metrics::StoreMetrics,
}

impl<T> fmt::Debug for Inner<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("config", &self.config)
            .field("head_position", &self.all.published())
            .finish_non_exhaustive()
    }
}

/// An in-memory event store: streams of events with per-stream versions and global positions,
/// optimistic concurrency, paged reads, subscriptions, retention.
///
/// Cloning a `Store` gives another handle to the same store.
///
/// ```
/// use flowgate::store::{ExpectedVersion, Store};
/// use flowgate::Event;
///
/// let store = Store::<i64>::new();
/// let opened = store.append("account-1", ExpectedVersion::NoStream, Event::new("opened", 0)?)?;
/// store.append("account-1", ExpectedVersion::Exact(opened.last_version), Event::new("deposited", 50)?)?;
/// store.append("account-2", ExpectedVersion::NoStream, Event::new("opened", 0)?)?;
///
/// let account_1 = store.read_stream_forward("account-1", 0, 100)?;
/// assert_eq!(account_1.events.len(), 2);
/// let accounts = store.read_category("account", 0, 100)?;
/// assert_eq!(accounts.events.len(), 3);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Store<T> {
    pub(crate) inner: Arc<Inner<T>>,
}

impl<T> Clone for Store<T> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<T> fmt::Debug for Store<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.inner, f)
    }
}

impl<T: Send + Sync + 'static> Default for Store<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// How many positions pass between two automatic age sweeps.
const SWEEP_EVERY: u64 = 64;

impl<T: Send + Sync + 'static> Store<T> {
    /// A store without retention: it keeps every event.
    ///
    /// ```
    /// use flowgate::store::Store;
    /// let store = Store::<u32>::new();
    /// assert_eq!(store.head_position(), 0);
    /// ```
    pub fn new() -> Self {
        Self::with_config(Config::keep_everything())
    }

    /// A builder for a store with retention or payload sizing.
    ///
    /// ```
    /// use flowgate::store::Store;
    /// let store = Store::<u32>::builder().max_events_per_stream(100).build()?;
    /// # drop(store);
    /// # Ok::<(), flowgate::store::StoreError>(())
    /// ```
    pub fn builder() -> StoreBuilder<T> {
        StoreBuilder::new(Config::keep_everything())
    }

    pub(crate) fn with_config(config: Config<T>) -> Self {
        let seed = SeededState::random();
        let (all, writer) = Log::new();
        Self {
            inner: Arc::new(Inner {
                #[cfg(feature = "metrics")]
                metrics: crate::metrics::StoreMetrics::new(&config.name),
                config,
                streams: Mutex::new(HashMap::with_hasher(seed)),
                pending: Mutex::new(HashMap::with_hasher(seed)),
                categories: Mutex::new(HashMap::with_hasher(seed)),
                commit: Mutex::new(Commit {
                    all: writer,
                    categories: Vec::new(),
                    free_writers: Vec::new(),
                }),
                all,
                all_notifier: Notifier::new(),
                counters: Counters::default(),
                sweeping: AtomicBool::new(false),
                swept_to: AtomicU64::new(0),
            }),
        }
    }

    /// Appends one event to `stream` if its version is as `expected`.
    ///
    /// Creates the stream on its first event. The event gets the stream's next version and the
    /// next global position.
    ///
    /// # Errors
    ///
    /// - [`StoreError::WrongExpectedVersion`] (retryable) with the stream's actual version when
    ///   it does not match `expected`; nothing was appended.
    /// - [`StoreError::InvalidStreamName`] when `stream` is not `category-id`.
    /// - [`StoreError::StreamLimitReached`] when a new stream would pass `max_streams` under
    ///   [`StreamLimit::Reject`].
    ///
    /// ```
    /// use flowgate::store::{ExpectedVersion, Store, StoreError};
    /// use flowgate::Event;
    ///
    /// let store = Store::<u32>::new();
    /// let first = store.append("order-9", ExpectedVersion::NoStream, Event::new("placed", 1)?)?;
    /// assert_eq!((first.last_version, first.last_position), (0, 0));
    /// let stale = store.append("order-9", ExpectedVersion::NoStream, Event::new("placed", 1)?);
    /// let Err(StoreError::WrongExpectedVersion { actual, .. }) = stale else { panic!() };
    /// assert_eq!(actual, Some(0));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        event: Event<T>,
    ) -> Result<Appended, StoreError> {
        let category_len = checked(stream, 1)?;
        let size = self.inner.payload_size(stream, 0, &event)?;
        self.append_sized(
            stream,
            category_len,
            expected,
            std::iter::once((event, size)),
            1,
        )
    }

    /// Appends `events` to `stream`, all or none, if its version is as `expected`. The events
    /// get consecutive versions and consecutive global positions; no event of another append
    /// lands between them.
    ///
    /// # Errors
    ///
    /// As [`append`](Self::append), and [`StoreError::EmptyAppend`] when `events` is empty.
    ///
    /// ```
    /// use flowgate::store::{ExpectedVersion, Store};
    /// use flowgate::Event;
    ///
    /// let store = Store::<u32>::new();
    /// let batch = vec![Event::new("a", 1)?, Event::new("b", 2)?];
    /// let appended = store.append_batch("job-1", ExpectedVersion::Any, batch)?;
    /// assert_eq!(appended.last_version, 1);
    /// assert!(store.append_batch("job-1", ExpectedVersion::Any, Vec::new()).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn append_batch(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: impl IntoIterator<Item = Event<T>>,
    ) -> Result<Appended, StoreError> {
        let events: Vec<Event<T>> = events.into_iter().collect();
        let category_len = checked(stream, events.len())?;
        let mut sized = Vec::with_capacity(events.len());
        for (index, event) in events.into_iter().enumerate() {
            let size = self.inner.payload_size(stream, index, &event)?;
            sized.push((event, size));
        }
        let count = sized.len();
        self.append_sized(stream, category_len, expected, sized.into_iter(), count)
    }

    /// Appends events already sized (no user code runs from here on, so a panic cannot leave
    /// an append half done).
    fn append_sized(
        &self,
        stream: &str,
        category_len: usize,
        expected: ExpectedVersion,
        events: impl Iterator<Item = (Event<T>, u64)>,
        count: usize,
    ) -> Result<Appended, StoreError> {
        loop {
            let target = self
                .inner
                .stream_for_append(stream, category_len, expected)?;
            let state = target.state.lock();
            // Evicted between the lookup and the lock: look it up (or create it) again.
            if state.evicted {
                continue;
            }
            return self.append_locked(&target, state, expected, events, count);
        }
    }

    /// The append itself, under the stream's lock.
    fn append_locked(
        &self,
        target: &Stream<T>,
        mut state: MutexGuard<'_, StreamState<T>>,
        expected: ExpectedVersion,
        mut events: impl Iterator<Item = (Event<T>, u64)>,
        count: usize,
    ) -> Result<Appended, StoreError> {
        let inner = &*self.inner;
        let actual = state.version();
        if !expected.matches(actual) {
            // Before `events` goes (at the return): it owns the events not appended, whose
            // payloads' `Drop` is the user's code.
            drop(state);
            inner
                .counters
                .version_conflicts
                .fetch_add(1, Ordering::Relaxed);
            return Err(StoreError::WrongExpectedVersion {
                stream: target.info.name.to_string(),
                expected,
                actual,
            });
        }
        let first_version = state.next_version;
        let mut bytes = 0;
        let first_position;
        let last_position;
        {
            let mut commit = inner.commit.lock();
            let appended_at = inner.config.max_age.map(|_| tokio::time::Instant::now());
            first_position = commit.all.written();
            let category = &target.category;
            let category_first = commit
                .category(category.writer)
                .map_or(0, LogWriter::written);
            for version in first_version..first_version + count as u64 {
                let Some((event, size)) = events.next() else {
                    break;
                };
                bytes += size;
                let position = commit.all.written();
                let record = Arc::new(Record {
                    event,
                    stream: Arc::clone(&target.info),
                    version,
                    position,
                    appended_at,
                    size,
                });
                let id_hash = target.info.id_hash;
                commit.all.push(
                    &inner.all,
                    Entry {
                        record: Arc::downgrade(&record),
                        id_hash,
                    },
                );
                if let Some(writer) = commit.category_mut(category.writer) {
                    writer.push(&category.log, (position, id_hash));
                }
                state.events.push_back(Recorded { inner: record });
            }
            last_position = commit.all.written() - 1;
            // The global log first: a reader that sees a category entry must find its
            // position published in the global log.
            commit.all.publish(&inner.all);
            if let Some(writer) = commit.category(category.writer) {
                writer.publish(&category.log);
            }
            inner.trim_logs(&mut commit, category, first_position, category_first);
        }
        state.next_version = first_version + (last_position - first_position) + 1;
        if bytes > 0 {
            inner.counters.bytes.fetch_add(bytes, Ordering::Relaxed);
        }
        // Trimmed records are dropped after the lock (see `StreamState::pop_front`).
        let mut trimmed = Vec::new();
        if let Some(max) = inner.config.max_events_per_stream {
            while state.events.len() > max {
                if let Some((size, record)) = state.pop_front() {
                    inner.removed(1, size);
                    trimmed.push(record);
                }
            }
        }
        // Relaxed: an eviction order hint, read under the stream map's lock.
        target.last_appended.store(last_position, Ordering::Relaxed);
        let last_version = state.next_version - 1;
        drop(state);
        // One handshake fence for the three notifiers (see `notify.rs`).
        handshake_fence();
        target.notifier.notify_fenced();
        target.category.notifier.notify_fenced();
        inner.all_notifier.notify_fenced();
        if inner.config.max_age.is_some()
            && first_position / SWEEP_EVERY != (last_position + 1) / SWEEP_EVERY
        {
            inner.sweep_expired(false);
        }
        Ok(Appended {
            first_version,
            last_version,
            first_position,
            last_position,
        })
    }

    /// The version of the stream's last event; `None` when the stream does not exist.
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidStreamName`] when `stream` is not `category-id`.
    ///
    /// ```
    /// use flowgate::store::{ExpectedVersion, Store};
    /// use flowgate::Event;
    /// let store = Store::<u32>::new();
    /// assert_eq!(store.stream_version("x-1")?, None);
    /// store.append("x-1", ExpectedVersion::Any, Event::new("e", 1)?)?;
    /// assert_eq!(store.stream_version("x-1")?, Some(0));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn stream_version(&self, stream: &str) -> Result<Option<u64>, StoreError> {
        name::parse(stream)?;
        Ok(self
            .inner
            .lookup(stream)
            .and_then(|s| s.state.lock().version()))
    }

    /// The next global position: how many events were ever appended.
    ///
    /// ```
    /// use flowgate::store::{ExpectedVersion, Store};
    /// use flowgate::Event;
    /// let store = Store::<u32>::new();
    /// store.append("x-1", ExpectedVersion::Any, Event::new("e", 1)?)?;
    /// assert_eq!(store.head_position(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn head_position(&self) -> u64 {
        self.inner.all.published()
    }

    /// Reads up to `max_count` events of `stream` with versions from `from_version` up.
    ///
    /// A stream that does not exist reads as empty. Events removed by retention are skipped and
    /// counted in [`Page::truncated`]. Takes only this stream's lock, for the copy of at most
    /// `max_count` handles.
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidStreamName`] when `stream` is not `category-id`.
    ///
    /// ```
    /// use flowgate::store::{ExpectedVersion, Store};
    /// use flowgate::Event;
    /// let store = Store::<u32>::new();
    /// for i in 0..3 {
    ///     store.append("x-1", ExpectedVersion::Any, Event::new("e", i)?)?;
    /// }
    /// let page = store.read_stream_forward("x-1", 1, 10)?;
    /// assert_eq!(page.events.iter().map(|e| e.version()).collect::<Vec<_>>(), [1, 2]);
    /// assert!(page.is_end);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn read_stream_forward(
        &self,
        stream: &str,
        from_version: u64,
        max_count: usize,
    ) -> Result<Page<T>, StoreError> {
        name::parse(stream)?;
        let Some(target) = self.inner.lookup(stream) else {
            return Ok(empty_page(from_version));
        };
        let state = target.state.lock();
        Ok(read_forward(&state, from_version, max_count))
    }

    /// Reads up to `max_count` events of `stream` backward, from `from_version` (inclusive;
    /// `u64::MAX` for the last event) down.
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidStreamName`] when `stream` is not `category-id`.
    ///
    /// ```
    /// use flowgate::store::{ExpectedVersion, Store};
    /// use flowgate::Event;
    /// let store = Store::<u32>::new();
    /// for i in 0..5 {
    ///     store.append("x-1", ExpectedVersion::Any, Event::new("e", i)?)?;
    /// }
    /// let page = store.read_stream_backward("x-1", u64::MAX, 2)?;
    /// assert_eq!(page.events.iter().map(|e| e.version()).collect::<Vec<_>>(), [4, 3]);
    /// assert_eq!((page.next, page.is_end), (2, false));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn read_stream_backward(
        &self,
        stream: &str,
        from_version: u64,
        max_count: usize,
    ) -> Result<Page<T>, StoreError> {
        name::parse(stream)?;
        let Some(target) = self.inner.lookup(stream) else {
            return Ok(empty_page(0));
        };
        let state = target.state.lock();
        let Some(last) = state.version() else {
            return Ok(empty_page(0));
        };
        let top = from_version.min(last);
        if top < state.first_version || max_count == 0 {
            return Ok(Page {
                events: Vec::new(),
                next: top,
                is_end: top < state.first_version,
                truncated: if top < state.first_version {
                    top + 1
                } else {
                    0
                },
            });
        }
        let offset = (top - state.first_version) as usize;
        let events: Vec<Recorded<T>> = state
            .events
            .range(..=offset)
            .rev()
            .take(max_count)
            .cloned()
            .collect();
        let lowest = top + 1 - events.len() as u64;
        let is_end = lowest == state.first_version;
        Ok(Page {
            events,
            next: lowest.saturating_sub(1),
            is_end,
            truncated: if is_end { state.first_version } else { 0 },
        })
    }

    /// Reads up to `max_count` events of every stream of `category`, from global position
    /// `from_position` up, in global order.
    ///
    /// Pass [`Page::next`] to read the following page. Reads the logs without locks, except
    /// a log's segment directory for the time of one lookup (appenders take it once per
    /// 128 positions, to add a segment).
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidCategory`] when `category` is not a valid category name.
    ///
    /// ```
    /// use flowgate::store::{ExpectedVersion, Store};
    /// use flowgate::Event;
    /// let store = Store::<u32>::new();
    /// store.append("order-1", ExpectedVersion::Any, Event::new("placed", 1)?)?;
    /// store.append("user-1", ExpectedVersion::Any, Event::new("joined", 2)?)?;
    /// store.append("order-2", ExpectedVersion::Any, Event::new("placed", 3)?)?;
    /// let page = store.read_category("order", 0, 10)?;
    /// assert_eq!(page.events.iter().map(|e| e.position()).collect::<Vec<_>>(), [0, 2]);
    /// assert_eq!(page.next, 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn read_category(
        &self,
        category: &str,
        from_position: u64,
        max_count: usize,
    ) -> Result<Page<T>, StoreError> {
        name::parse_category(category)?;
        let Some(category) = self.inner.categories.lock().get(category).cloned() else {
            return Ok(empty_page(from_position));
        };
        let start = category.log.partition_point(
            0,
            |&(position, _)| position >= from_position,
            |through| through > from_position,
        );
        let mut cursor = Cursor::new(start);
        let mut finder = Cursor::new(from_position);
        let all = &self.inner.all;
        Ok(read_log(
            &category.log,
            &mut cursor,
            from_position,
            max_count,
            |_, &(position, _)| Resolved {
                position,
                record: finder.lookup(all, position, Entry::upgrade).ok().flatten(),
            },
        ))
    }

    /// Reads up to `max_count` events of the whole store from global position `from_position`
    /// up, in global order.
    ///
    /// # Errors
    ///
    /// None today; the `Result` leaves room for backends that can fail.
    ///
    /// ```
    /// use flowgate::store::{ExpectedVersion, Store};
    /// use flowgate::Event;
    /// let store = Store::<u32>::new();
    /// for i in 0..5 {
    ///     store.append(&format!("s-{i}"), ExpectedVersion::Any, Event::new("e", i)?)?;
    /// }
    /// let first = store.read_all(0, 3)?;
    /// let second = store.read_all(first.next, 3)?;
    /// assert_eq!(first.events.len() + second.events.len(), 5);
    /// assert!(second.is_end);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn read_all(&self, from_position: u64, max_count: usize) -> Result<Page<T>, StoreError> {
        let mut cursor = Cursor::new(from_position);
        Ok(read_log(
            &self.inner.all,
            &mut cursor,
            from_position,
            max_count,
            |position, entry| Resolved {
                position,
                record: entry.upgrade(),
            },
        ))
    }

    /// Starts building a subscription to `target`.
    ///
    /// ```
    /// use flowgate::store::{ExpectedVersion, Start, Store, Target};
    /// use flowgate::Event;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = Store::<u32>::new();
    /// store.append("order-1", ExpectedVersion::Any, Event::new("placed", 1)?)?;
    /// let mut orders = store.subscribe(Target::category("order")).start(Start::Beginning).open()?;
    /// store.append("order-2", ExpectedVersion::Any, Event::new("placed", 2)?)?;
    /// let first = orders.next().await.unwrap()?; // from history
    /// let second = orders.next().await.unwrap()?; // live
    /// assert_eq!((first.position(), second.position()), (0, 1));
    /// # Ok(())
    /// # }
    /// ```
    pub fn subscribe(&self, target: Target) -> SubscribeBuilder<'_, T> {
        SubscribeBuilder::new(self, target)
    }

    /// Removes every event older than the store's `max_age` now; returns how many. Does
    /// nothing (returns 0) without a `max_age`. Appends call it on their own every 64
    /// positions; call it when appends are rare and memory must be given back on time.
    ///
    /// ```
    /// use std::time::Duration;
    /// use flowgate::store::{ExpectedVersion, Store};
    /// use flowgate::Event;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = Store::<u32>::builder().max_age(Duration::from_secs(60)).build()?;
    /// store.append("s-1", ExpectedVersion::Any, Event::new("e", 1)?)?;
    /// tokio::time::advance(Duration::from_secs(61)).await;
    /// assert_eq!(store.expire(), 1);
    /// assert!(store.read_all(0, 10)?.events.is_empty());
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// If a sweep is already running (an append started one), this waits for it to finish and
    /// then sweeps itself, so that everything expired by the time of the call is gone when it
    /// returns (the count is what this call removed).
    pub fn expire(&self) -> u64 {
        self.inner.sweep_expired(true)
    }

    /// Runs [`expire`](Self::expire) every `period` on the current tokio runtime, so that old
    /// events go on time even when appends are rare. The task holds no strong reference: it
    /// ends on its own once every handle to the store is dropped (or when the returned handle
    /// is aborted).
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidConfig`] for a zero `period`; [`StoreError::NoRuntime`] outside a
    /// tokio runtime.
    ///
    /// ```
    /// use std::time::Duration;
    /// use flowgate::store::{ExpectedVersion, Store};
    /// use flowgate::Event;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = Store::<u32>::builder().max_age(Duration::from_secs(60)).build()?;
    /// let expiry = store.expire_every(Duration::from_secs(10))?;
    /// store.append("s-1", ExpectedVersion::Any, Event::new("e", 1)?)?;
    /// tokio::time::sleep(Duration::from_secs(75)).await; // paused clock: no real wait
    /// assert_eq!(store.stats().events, 0, "expired without another append");
    /// drop(store);
    /// expiry.await?; // the task ends with the store
    /// # Ok(())
    /// # }
    /// ```
    pub fn expire_every(
        &self,
        period: Duration,
    ) -> Result<tokio::task::JoinHandle<()>, StoreError> {
        if period.is_zero() {
            return Err(StoreError::InvalidConfig {
                setting: "expire_every",
                reason: "the period must be above zero",
            });
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| StoreError::NoRuntime)?;
        let store = Arc::downgrade(&self.inner);
        Ok(runtime.spawn(async move {
            let mut ticks = tokio::time::interval(period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(inner) = store.upgrade() else {
                    return;
                };
                inner.sweep_expired(false);
            }
        }))
    }

    /// Copies the store's figures into its `metrics` series (feature `metrics`); call it in a
    /// `/metrics` handler right before rendering. See [`metrics`](crate::metrics).
    ///
    /// ```
    /// let store = flowgate::store::Store::<u32>::new();
    /// store.report_metrics(); // a no-op without a recorder
    /// ```
    #[cfg(feature = "metrics")]
    pub fn report_metrics(&self) {
        self.inner.metrics.report(&self.stats());
    }

    /// A snapshot of the store's counters.
    ///
    /// ```
    /// use flowgate::store::{ExpectedVersion, Store};
    /// use flowgate::Event;
    /// let store = Store::<u32>::new();
    /// store.append("s-1", ExpectedVersion::Any, Event::new("e", 1)?)?;
    /// let _ = store.append("s-1", ExpectedVersion::NoStream, Event::new("e", 1)?);
    /// let stats = store.stats();
    /// assert_eq!((stats.streams, stats.events, stats.appended), (1, 1, 1));
    /// assert_eq!(stats.version_conflicts, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn stats(&self) -> StoreStats {
        let inner = &*self.inner;
        let counters = &inner.counters;
        let appended = inner.all.published();
        let truncated = counters.truncated.load(Ordering::Relaxed);
        StoreStats {
            streams: inner.streams.lock().len(),
            categories: inner.categories.lock().len(),
            appended,
            events: appended.saturating_sub(truncated),
            bytes: inner
                .config
                .size_of
                .as_ref()
                .map(|_| counters.bytes.load(Ordering::Relaxed)),
            subscriptions: counters.subscriptions.load(Ordering::Relaxed),
            truncated,
            evicted_streams: counters.evicted_streams.load(Ordering::Relaxed),
            rejected_streams: counters.rejected_streams.load(Ordering::Relaxed),
            version_conflicts: counters.version_conflicts.load(Ordering::Relaxed),
        }
    }
}

impl<T> Inner<T> {
    /// `holder` no longer holds `category` (its stream was evicted, or its subscription
    /// dropped). A category that then has neither a stream nor a subscription is removed,
    /// with its log and its writer (whose slot a later category reuses). No appender writes to
    /// it any more: its streams are all evicted, and appenders recheck that under the stream's
    /// lock.
    pub(crate) fn release_category(&self, category: &Category, holder: Holder) {
        let mut categories = self.categories.lock();
        // Relaxed: read and written under the category map's lock only.
        holder.counter(category).fetch_sub(1, Ordering::Relaxed);
        if category.streams.load(Ordering::Relaxed) > 0
            || category.subscriptions.load(Ordering::Relaxed) > 0
        {
            return;
        }
        let is_this = categories
            .get(&category.name)
            .is_some_and(|held| std::ptr::eq(Arc::as_ptr(held), category));
        if is_this {
            categories.remove(&category.name);
            let mut commit = self.commit.lock();
            if let Some(slot) = commit.categories.get_mut(category.writer) {
                *slot = None;
                commit.free_writers.push(category.writer);
            }
        }
    }

    /// A subscription waiting in `waiting` for stream `stream` is gone: forgets the entry when
    /// no other subscription waits on it.
    pub(crate) fn forget_pending(&self, stream: &str, waiting: &PendingStream<T>) {
        let mut pending = self.pending.lock();
        let last = pending
            .get(stream)
            // Two: the map's and `waiting`; others clone it only under this lock.
            .is_some_and(|held| Arc::ptr_eq(held, waiting) && Arc::strong_count(held) == 2);
        if last {
            pending.remove(stream);
        }
    }
}

/// Checks an append's stream name and event count; returns the category's length.
fn checked(stream: &str, count: usize) -> Result<usize, StoreError> {
    let category_len = name::parse(stream)?;
    if count == 0 {
        return Err(StoreError::EmptyAppend {
            stream: stream.to_owned(),
        });
    }
    Ok(category_len)
}

impl<T: Send + Sync + 'static> Inner<T> {
    /// The size of `event`'s payload by the user's `payload_size` function (0 without one),
    /// called before the append takes any lock; a panic in it is caught and returned as
    /// [`StoreError::PayloadSizePanicked`].
    fn payload_size(
        &self,
        stream: &str,
        index: usize,
        event: &Event<T>,
    ) -> Result<u64, StoreError> {
        let Some(size_of) = &self.config.size_of else {
            return Ok(0);
        };
        // AssertUnwindSafe: the function sees only the caller's payload, which is dropped with
        // the failed append; no state of the store is reachable from it.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            size_of(event.payload()) as u64
        }))
        .map_err(|_panic| StoreError::PayloadSizePanicked {
            stream: stream.to_owned(),
            index,
        })
    }

    pub(crate) fn lookup(&self, stream: &str) -> Option<Arc<Stream<T>>> {
        self.streams.lock().get(stream).cloned()
    }

    /// The stream named `stream`, or (when there is none) where the first stream created under
    /// that name will be handed over.
    pub(crate) fn stream_or_pending(
        &self,
        stream: &str,
    ) -> Result<Arc<Stream<T>>, PendingStream<T>> {
        let streams = self.streams.lock();
        if let Some(found) = streams.get(stream) {
            return Ok(Arc::clone(found));
        }
        let mut pending = self.pending.lock();
        if let Some(waiting) = pending.get(stream) {
            return Err(Arc::clone(waiting));
        }
        let waiting = PendingStream::default();
        pending.insert(Arc::from(stream), Arc::clone(&waiting));
        Err(waiting)
    }

    /// The category, created if needed (with its writer in the commit state). `Holder` says
    /// who will hold it: a new stream or a subscription, counted under the category map's lock
    /// so that [`release_category`](Self::release_category) removes only categories nobody
    /// holds.
    pub(crate) fn category(&self, category: &str, holder: Holder) -> Arc<Category> {
        let mut categories = self.categories.lock();
        let found = if let Some(found) = categories.get(category) {
            Arc::clone(found)
        } else {
            let name: Arc<str> = Arc::from(category);
            let (log, writer) = Log::new();
            let mut commit = self.commit.lock();
            let index = if let Some(index) = commit.free_writers.pop() {
                commit.categories[index] = Some(writer);
                index
            } else {
                commit.categories.push(Some(writer));
                commit.categories.len() - 1
            };
            drop(commit);
            let created = Arc::new(Category {
                name: Arc::clone(&name),
                writer: index,
                log,
                notifier: Notifier::new(),
                streams: AtomicUsize::new(0),
                subscriptions: AtomicUsize::new(0),
            });
            categories.insert(name, Arc::clone(&created));
            created
        };
        // Relaxed: read and written under the category map's lock only.
        holder.counter(&found).fetch_add(1, Ordering::Relaxed);
        found
    }

    /// After an append that opened a segment in the global log or in `category`'s log,
    /// releases segments whose events are all gone (under the commit lock).
    fn trim_logs(
        &self,
        commit: &mut Commit<T>,
        category: &Category,
        first_position: u64,
        category_first: u64,
    ) {
        if first_position / SEGMENT_LEN != commit.all.written() / SEGMENT_LEN {
            commit.all.trim(
                &self.all,
                |_, entry| entry.is_dead(),
                // The index is the position: one past the last position released.
                |index, _| index + 1,
            );
        }
        if let Some(writer) = commit.category_mut(category.writer) {
            if category_first / SEGMENT_LEN != writer.written() / SEGMENT_LEN {
                let mut finder = Cursor::new(0);
                writer.trim(
                    &category.log,
                    |_, &(position, _)| {
                        // A position in a released run of the global log is dead too.
                        finder
                            .lookup(&self.all, position, Entry::is_dead)
                            .unwrap_or(true)
                    },
                    |_, &(position, _)| position + 1,
                );
            }
        }
    }

    /// The stream to append to: found, or created when `expected` allows a new stream.
    fn stream_for_append(
        &self,
        stream: &str,
        category_len: usize,
        expected: ExpectedVersion,
    ) -> Result<Arc<Stream<T>>, StoreError> {
        // The records of streams evicted for room: declared before the map's guard, so that
        // they are dropped after it on every path (see `StreamState::pop_front`).
        let mut emptied: Vec<Recorded<T>> = Vec::new();
        let mut streams = self.streams.lock();
        if let Some(found) = streams.get(stream) {
            return Ok(Arc::clone(found));
        }
        if matches!(
            expected,
            ExpectedVersion::StreamExists | ExpectedVersion::Exact(_)
        ) {
            self.counters
                .version_conflicts
                .fetch_add(1, Ordering::Relaxed);
            return Err(StoreError::WrongExpectedVersion {
                stream: stream.to_owned(),
                expected,
                actual: None,
            });
        }
        let mut evicted = Vec::new();
        if let Some((limit, policy)) = self.config.max_streams {
            while streams.len() >= limit {
                match policy {
                    StreamLimit::Reject => {
                        self.counters
                            .rejected_streams
                            .fetch_add(1, Ordering::Relaxed);
                        return Err(StoreError::StreamLimitReached {
                            stream: stream.to_owned(),
                            limit,
                        });
                    }
                    StreamLimit::EvictLeastRecent => {
                        let Some(victim) = streams
                            .values()
                            .min_by_key(|s| s.last_appended.load(Ordering::Relaxed))
                            .map(|s| Arc::clone(&s.info.name))
                        else {
                            break;
                        };
                        if let Some(gone) = streams.remove(&victim) {
                            emptied.extend(self.evict(&gone));
                            self.release_category(&gone.category, Holder::Stream);
                            evicted.push(gone);
                        }
                    }
                }
            }
        }
        let name: Arc<str> = Arc::from(stream);
        let category = self.category(&stream[..category_len], Holder::Stream);
        let created = Arc::new(Stream {
            info: Arc::new(StreamInfo {
                name: Arc::clone(&name),
                category_len,
                id_hash: stable_hash(&stream[category_len + 1..]),
            }),
            category,
            state: Mutex::new(StreamState::new()),
            // Evicted last: its creator is about to append to it.
            last_appended: AtomicU64::new(u64::MAX),
            notifier: Notifier::new(),
        });
        if let Some(waiting) = self.pending.lock().remove(stream) {
            waiting.lock().get_or_insert_with(|| Arc::clone(&created));
        }
        streams.insert(name, Arc::clone(&created));
        drop(streams);
        drop(emptied);
        // Woken outside the map's lock: a woken subscription looks streams up.
        for gone in evicted {
            gone.notifier.notify();
        }
        Ok(created)
    }

    /// Empties an evicted stream (already out of the map); the caller wakes its subscribers,
    /// and drops the records returned once it holds no lock (see `StreamState::pop_front`).
    fn evict(&self, stream: &Stream<T>) -> Vec<Recorded<T>> {
        let mut state = stream.state.lock();
        state.evicted = true;
        let mut emptied = Vec::with_capacity(state.events.len());
        while let Some((size, record)) = state.pop_front() {
            self.removed(1, size);
            emptied.push(record);
        }
        drop(state);
        self.counters
            .evicted_streams
            .fetch_add(1, Ordering::Relaxed);
        emptied
    }

    /// Counts events removed by retention.
    fn removed(&self, events: u64, bytes: u64) {
        self.counters.truncated.fetch_add(events, Ordering::Relaxed);
        if bytes > 0 {
            self.counters.bytes.fetch_sub(bytes, Ordering::Relaxed);
        }
    }

    /// Removes events older than `max_age`, walking the global log from where the last sweep
    /// stopped; one sweeper at a time (others return 0 at once).
    /// Removes the expired events. With `wait`, a sweep already running is waited for (a short
    /// spin: a sweep only pops records); without, this returns 0 at once if one runs.
    fn sweep_expired(&self, wait: bool) -> u64 {
        let Some(max_age) = self.config.max_age else {
            return 0;
        };
        // Acquire: pairs with the previous sweeper's Release store of `false` below, so this
        // sweeper sees the `swept_to` it left.
        while self
            .sweeping
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            if !wait {
                return 0;
            }
            flowgate_core::sync::spin_yield();
        }
        let now = tokio::time::Instant::now();
        let expired = |record: &Record<T>| {
            record
                .appended_at
                .is_some_and(|at| now.saturating_duration_since(at) >= max_age)
        };
        let mut removed = 0;
        // Every record the sweep let go of, dropped once it is over: a payload's `Drop` is the
        // user's code, and may call the store (even `expire`, which waits for this sweep). This
        // holds one pointer per record until the sweep ends; the records themselves were in
        // memory before it began.
        let mut swept: Vec<Recorded<T>> = Vec::new();
        let mut cursor = Cursor::new(self.swept_to.load(Ordering::Relaxed));
        loop {
            let mut stop = false;
            let mut to_trim: Vec<Recorded<T>> = Vec::new();
            let read = cursor.read(&self.all, 256, |_, entry| match entry.upgrade() {
                None => true,
                Some(recorded) if expired(&recorded.inner) => {
                    to_trim.push(recorded);
                    true
                }
                Some(recorded) => {
                    // Not expired: kept too, in case a trim let go of it meanwhile.
                    swept.push(recorded);
                    stop = true;
                    false
                }
            });
            for recorded in to_trim {
                let Some(stream) = self.lookup(recorded.stream()) else {
                    // Evicted meanwhile: this may be the last reference.
                    swept.push(recorded);
                    continue;
                };
                let mut state = stream.state.lock();
                while state.events.front().is_some_and(|r| expired(&r.inner)) {
                    if let Some((size, record)) = state.pop_front() {
                        self.removed(1, size);
                        removed += 1;
                        swept.push(record);
                    }
                }
                drop(state);
                swept.push(recorded);
            }
            if stop || read == Read::Entries(0) {
                break;
            }
        }
        // Relaxed: only sweepers read it, ordered by the Release store that follows.
        self.swept_to.store(cursor.index(), Ordering::Relaxed);
        self.sweeping.store(false, Ordering::Release);
        drop(swept);
        removed
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn ev(i: u64) -> Event<u64> {
        Event::new("e", i).unwrap()
    }

    /// A stream read holds that stream's lock while it copies. With stream A's lock held (as
    /// by a read in progress), appends to other streams, all-events and category reads and
    /// subscriptions still complete: none of them needs A's lock.
    #[test]
    fn a_read_holding_one_stream_blocks_no_other_stream() {
        let store = Store::<u64>::new();
        store.append("a-1", ExpectedVersion::Any, ev(0)).unwrap();
        let held = store.inner.lookup("a-1").unwrap();
        let guard = held.state.lock();
        let (done, finished) = std::sync::mpsc::channel();
        let other = store.clone();
        let worker = std::thread::spawn(move || {
            for i in 0..100 {
                other.append("b-1", ExpectedVersion::Any, ev(i)).unwrap();
                other.append("a-2", ExpectedVersion::Any, ev(i)).unwrap();
            }
            let all = other.read_all(0, 1_000).unwrap().events.len();
            let category = other.read_category("a", 0, 1_000).unwrap().events.len();
            done.send((all, category)).unwrap();
        });
        let outcome = finished.recv_timeout(std::time::Duration::from_secs(10));
        drop(guard);
        worker.join().unwrap();
        assert_eq!(
            outcome.expect("appends to other streams waited for a-1's lock"),
            (201, 101)
        );
    }

    #[test]
    fn dead_front_segments_of_the_logs_are_released() {
        let store = Store::<u64>::builder()
            .max_events_per_stream(10)
            .build()
            .unwrap();
        for i in 0..5_000 {
            store.append("big-1", ExpectedVersion::Any, ev(i)).unwrap();
        }
        let inner = &store.inner;
        let held = |front: u64| 5_000 - front;
        assert!(
            held(inner.all.front()) <= 2 * SEGMENT_LEN,
            "global log still holds {} slots",
            held(inner.all.front())
        );
        let category = inner.category("big", Holder::Subscription);
        assert!(held(category.log.front()) <= 2 * SEGMENT_LEN);
        assert_eq!(store.read_all(0, 100).unwrap().events.len(), 10);
    }

    /// A quiet stream's event keeps its segment, and only it: the segments of the busy stream
    /// behind it are released from both logs.
    #[test]
    fn a_live_segment_does_not_keep_the_dead_ones_behind_it() {
        let store = Store::<u64>::builder()
            .max_events_per_stream(10)
            .build()
            .unwrap();
        store.append("big-0", ExpectedVersion::Any, ev(0)).unwrap();
        for i in 0..20_000 {
            store.append("big-1", ExpectedVersion::Any, ev(i)).unwrap();
        }
        let inner = &store.inner;
        assert!(
            inner.all.segments() <= 6,
            "{} segments",
            inner.all.segments()
        );
        let category = inner.category("big", Holder::Subscription);
        assert!(
            category.log.segments() <= 6,
            "{} segments",
            category.log.segments()
        );
        let page = store.read_category("big", 0, 100).unwrap();
        assert_eq!(page.events.len(), 11);
        assert_eq!(page.truncated, 20_000 - 10);
    }
}
