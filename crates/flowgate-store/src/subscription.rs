//! Subscriptions: a stream, a category (optionally one member's share of it) or all events,
//! from a position on, history first and then live.
//!
//! Invariant: a subscription is a cursor over the same ordered log that reads use (the global
//! log, a category log, or the stream's events). Catching up and following live are the same
//! loop: read what is published after the cursor into a buffer of at most `buffer` events,
//! hand them out, and when nothing is published, register a waker and read once more before
//! sleeping (the handshake in `notify.rs`). So there is no switch-over where an event could be
//! missed or seen twice, a slow subscription is never dropped or "lagged" (it simply reads
//! further behind), and its memory is its buffer. Every event the cursor passes over that
//! retention removed, and that this subscription would have received, is reported as
//! [`StoreError::Truncated`] before the next event, never skipped in silence.

use std::collections::VecDeque;
use std::fmt;
use std::future::poll_fn;
use std::num::NonZeroU32;
use std::pin::Pin;
// Data, not synchronization: the store handle is a std `Arc`.
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use flowgate_core::partition_of_hash;
use flowgate_core::sync::atomic::Ordering;

use crate::checkpoint::Checkpoints;
use crate::log::{Cursor, Log, Pair, Read, Slot};
use crate::name;
use crate::notify::Notifier;
use crate::read::{read_forward, Resolved};
use crate::record::Recorded;
use crate::store::{Inner, Store};
use crate::stream::{Category, Entry, Holder, PendingStream, Stream};
use crate::StoreError;

/// What a subscription follows.
///
/// ```
/// use flowgate::store::Target;
/// let _all = Target::All;
/// let _accounts = Target::category("account");
/// let _one = Target::stream("account-42");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Target {
    /// Every event of the store, in global order.
    All,
    /// Every event of the streams of one category, in global order.
    Category(String),
    /// One stream's events, in version order. Positions are versions. Opened before the stream
    /// exists, the subscription follows the first stream created under the name after it
    /// opened (and gets [`StoreError::StreamEvicted`] if that one is evicted).
    Stream(String),
}

impl Target {
    /// A category target.
    ///
    /// ```
    /// # use flowgate::store::Target;
    /// assert_eq!(Target::category("order"), Target::Category("order".into()));
    /// ```
    pub fn category(category: impl Into<String>) -> Self {
        Self::Category(category.into())
    }

    /// A stream target.
    ///
    /// ```
    /// # use flowgate::store::Target;
    /// assert_eq!(Target::stream("order-1"), Target::Stream("order-1".into()));
    /// ```
    pub fn stream(stream: impl Into<String>) -> Self {
        Self::Stream(stream.into())
    }
}

/// Where a subscription starts.
///
/// ```
/// use flowgate::store::Start;
/// assert_eq!(Start::default(), Start::Beginning);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Start {
    /// The first event (position 0, or version 0 for a stream).
    #[default]
    Beginning,
    /// Only events appended after the subscription opened.
    End,
    /// The first event at or after this global position (a version, for a stream target):
    /// pass a [`Checkpoints::checkpoint`] here to resume.
    At(u64),
}

/// Builds a [`Subscription`]; from [`Store::subscribe`].
///
/// ```
/// use flowgate::store::{Start, Store, Target};
/// let store = Store::<u32>::new();
/// let sub = store
///     .subscribe(Target::category("account"))
///     .start(Start::End)
///     .buffer(64)
///     .consumer_group(0, 2)
///     .open()?;
/// # drop(sub);
/// # Ok::<(), flowgate::store::StoreError>(())
/// ```
#[must_use = "a subscription builder does nothing until `open` is called"]
pub struct SubscribeBuilder<'a, T> {
    store: &'a Store<T>,
    target: Target,
    start: Start,
    buffer: usize,
    group: Option<(u32, u32)>,
}

impl<T> fmt::Debug for SubscribeBuilder<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubscribeBuilder")
            .field("target", &self.target)
            .field("start", &self.start)
            .field("buffer", &self.buffer)
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

impl<'a, T: Send + Sync + 'static> SubscribeBuilder<'a, T> {
    pub(crate) fn new(store: &'a Store<T>, target: Target) -> Self {
        Self {
            store,
            target,
            start: Start::Beginning,
            buffer: store.inner.config.subscription_buffer,
            group: None,
        }
    }

    /// Where to start (default [`Start::Beginning`]).
    ///
    /// ```
    /// # use flowgate::store::{Start, Store, Target};
    /// # let store = Store::<u32>::new();
    /// let sub = store.subscribe(Target::All).start(Start::At(10)).open()?;
    /// assert_eq!(sub.position(), 10);
    /// # Ok::<(), flowgate::store::StoreError>(())
    /// ```
    pub fn start(mut self, start: Start) -> Self {
        self.start = start;
        self
    }

    /// The most events the subscription holds at once (default: the store's
    /// `subscription_buffer`). A value of 0 is taken as 1.
    ///
    /// ```
    /// # use flowgate::store::{Store, Target};
    /// # let store = Store::<u32>::new();
    /// let sub = store.subscribe(Target::All).buffer(16).open()?;
    /// # drop(sub);
    /// # Ok::<(), flowgate::store::StoreError>(())
    /// ```
    pub fn buffer(mut self, events: usize) -> Self {
        self.buffer = events.max(1);
        self
    }

    /// Makes this subscription member `member` of a consumer group of `size` over a category:
    /// it receives exactly the streams whose id (the part of the name after the first `-`)
    /// has a [`stable_hash`](flowgate_core::stable_hash) that maps to `member`
    /// (`partition_of_hash(stable_hash(id), size) == member`), each stream in order. Only for
    /// category targets.
    ///
    /// ```
    /// use flowgate::{partition_of_hash, stable_hash};
    /// use std::num::NonZeroU32;
    /// // Which member of 4 gets stream "account-42":
    /// let member = partition_of_hash(stable_hash("42"), NonZeroU32::new(4).unwrap());
    /// assert!(member < 4);
    /// ```
    pub fn consumer_group(mut self, member: u32, size: u32) -> Self {
        self.group = Some((member, size));
        self
    }

    /// Opens the subscription.
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidStreamName`] / [`StoreError::InvalidCategory`] for a bad target
    /// name; [`StoreError::InvalidGroupMember`] for a member not below a non-zero size, or a
    /// consumer group on a target other than a category.
    ///
    /// ```
    /// use flowgate::store::{Store, StoreError, Target};
    /// let store = Store::<u32>::new();
    /// let err = store.subscribe(Target::category("acc")).consumer_group(3, 3).open().unwrap_err();
    /// assert!(matches!(err, StoreError::InvalidGroupMember { member: 3, size: 3 }));
    /// assert!(store.subscribe(Target::stream("bad name")).open().is_err());
    /// ```
    pub fn open(self) -> Result<Subscription<T>, StoreError> {
        let inner = Arc::clone(&self.store.inner);
        let group = match self.group {
            None => None,
            Some((member, size)) => match NonZeroU32::new(size) {
                Some(n) if member < size && matches!(self.target, Target::Category(_)) => {
                    Some((member, n))
                }
                _ => return Err(StoreError::InvalidGroupMember { member, size }),
            },
        };
        let (source, start) = match self.target {
            Target::All => {
                let start = match self.start {
                    Start::Beginning => 0,
                    Start::End => inner.all.published(),
                    Start::At(p) => p,
                };
                (
                    Source::All {
                        cursor: Cursor::new(start),
                    },
                    start,
                )
            }
            Target::Category(category) => {
                name::parse_category(&category)?;
                let category = inner.category(&category, Holder::Subscription);
                let start = match self.start {
                    Start::Beginning => 0,
                    Start::End => inner.all.published(),
                    Start::At(p) => p,
                };
                // A released run that held a position at or after `start` may hold the first
                // entry to read: the cursor starts at it, and reports it (see `fill_log`).
                let index = category.log.partition_point(
                    0,
                    |&(position, _)| position >= start,
                    |through| through > start,
                );
                (
                    Source::Category {
                        category,
                        cursor: Cursor::new(index),
                        finder: Cursor::new(start),
                        scanned_to: start,
                        start,
                    },
                    start,
                )
            }
            Target::Stream(stream) => {
                name::parse(&stream)?;
                let (bound, pending) = match inner.stream_or_pending(&stream) {
                    Ok(found) => (Some(found), None),
                    Err(waiting) => (None, Some(waiting)),
                };
                let start = match self.start {
                    Start::Beginning => 0,
                    Start::End => bound.as_ref().map_or(0, |s| s.state.lock().next_version),
                    Start::At(v) => v,
                };
                (
                    Source::Stream {
                        name: stream,
                        stream: bound,
                        pending,
                        next_version: start,
                    },
                    start,
                )
            }
        };
        inner.counters.subscriptions.fetch_add(1, Ordering::Relaxed);
        Ok(Subscription {
            inner,
            source,
            buffer: VecDeque::new(),
            capacity: self.buffer,
            expected: start,
            yielded_to: start,
            group,
            checkpoints: None,
            waiting: None,
            ended: false,
        })
    }
}

/// What one subscription reads from.
enum Source<T> {
    All {
        cursor: Cursor<OnceLock<Entry<T>>>,
    },
    Category {
        category: Arc<Category>,
        cursor: Cursor<Pair>,
        /// Looks the category's positions up in the global log.
        finder: Cursor<OnceLock<Entry<T>>>,
        /// One past the position of the last entry the cursor passed.
        scanned_to: u64,
        /// The start position: when it was past the head at open, the cursor starts at the
        /// log's end and entries below it must still be passed over.
        start: u64,
    },
    Stream {
        name: String,
        /// `None` until the stream exists.
        stream: Option<Arc<Stream<T>>>,
        /// Until then, where the store hands over the first stream created under `name` after
        /// the subscription opened (so an incarnation evicted before the subscription looks is
        /// still the one it follows, and reports as evicted).
        pending: Option<PendingStream<T>>,
        next_version: u64,
    },
}

/// The notifier slot a subscription holds while it may sleep.
struct Waiting<T> {
    /// `None`: the store's all-events notifier.
    stream: Option<Arc<Stream<T>>>,
    category: Option<Arc<Category>>,
    slot: usize,
}

/// The item a subscription yields: an event, or a signal ([`StoreError::Truncated`],
/// [`StoreError::StreamEvicted`]).
///
/// ```
/// use flowgate::store::{StoreError, SubscriptionItem};
/// fn describe(item: &SubscriptionItem<u32>) -> String {
///     match item {
///         Ok(event) => format!("event at {}", event.position()),
///         Err(StoreError::Truncated { missed_from, resume_at }) => {
///             format!("removed by retention: {missed_from}..{resume_at}")
///         }
///         Err(other) => other.to_string(),
///     }
/// }
/// let signal = Err(StoreError::Truncated { missed_from: 0, resume_at: 3 });
/// assert_eq!(describe(&signal), "removed by retention: 0..3");
/// ```
pub type SubscriptionItem<T> = Result<Recorded<T>, StoreError>;

/// A live subscription: a [`futures_core::Stream`] of [`SubscriptionItem`]s, also readable with
/// [`next`](Self::next); from [`Store::subscribe`].
///
/// It reads the same ordered log that reads use, from its position into a buffer of at most
/// `buffer` events: catching up on history and following live are one loop, so no event is lost
/// or doubled between them, and a slow subscription is never dropped or "lagged"; it reads
/// further behind, and its memory stays its buffer.
///
/// It never ends on its own, except after [`StoreError::StreamEvicted`]. Dropping it
/// unsubscribes.
///
/// # Delivery
///
/// Every event of the target at or after the start position, in order, exactly once, except
/// those retention removed first, which are reported as [`StoreError::Truncated`] in their
/// place. Dropping a `next()` future loses nothing: the event stays buffered.
///
/// ```
/// use flowgate::store::{ExpectedVersion, Start, Store, Target};
/// use flowgate::Event;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = Store::<u32>::new();
/// let mut sub = store.subscribe(Target::stream("counter-1")).start(Start::Beginning).open()?;
/// let writer = store.clone();
/// tokio::spawn(async move {
///     for i in 0..3 {
///         writer.append("counter-1", ExpectedVersion::Any, Event::new("incremented", i)?)?;
///         tokio::task::yield_now().await;
///     }
///     Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
/// });
/// for expected in 0..3 {
///     let event = sub.next().await.unwrap()?;
///     assert_eq!(event.version(), expected);
/// }
/// # Ok(())
/// # }
/// ```
pub struct Subscription<T> {
    inner: Arc<Inner<T>>,
    source: Source<T>,
    buffer: VecDeque<SubscriptionItem<T>>,
    capacity: usize,
    /// One past the last position put in the buffer (or the start).
    expected: u64,
    /// One past the last position handed out (or the start).
    yielded_to: u64,
    group: Option<(u32, NonZeroU32)>,
    checkpoints: Option<Checkpoints>,
    waiting: Option<Waiting<T>>,
    ended: bool,
}

impl<T> fmt::Debug for Subscription<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let target = match &self.source {
            Source::All { .. } => "all".to_owned(),
            Source::Category { category, .. } => format!("category {}", category.name),
            Source::Stream { name, .. } => format!("stream {name}"),
        };
        f.debug_struct("Subscription")
            .field("target", &target)
            .field("position", &self.yielded_to)
            .field("buffered", &self.buffer.len())
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

impl<T: Send + Sync + 'static> Subscription<T> {
    /// The next item; waits for an append when there is none.
    ///
    /// Cancel-safe: dropping the future loses nothing.
    ///
    /// ```
    /// # use flowgate::store::{ExpectedVersion, Store, Target};
    /// # use flowgate::Event;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = Store::<u32>::new();
    /// store.append("a-1", ExpectedVersion::Any, Event::new("e", 1)?)?;
    /// let mut sub = store.subscribe(Target::All).open()?;
    /// assert_eq!(sub.next().await.unwrap()?.position(), 0);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn next(&mut self) -> Option<SubscriptionItem<T>> {
        poll_fn(|cx| self.poll_item(cx)).await
    }

    /// The position (version, for a stream) right after the last item handed out; where the
    /// subscription stands.
    ///
    /// ```
    /// # use flowgate::store::{Start, Store, Target};
    /// # let store = Store::<u32>::new();
    /// let sub = store.subscribe(Target::stream("a-1")).start(Start::At(3)).open()?;
    /// assert_eq!(sub.position(), 3);
    /// # Ok::<(), flowgate::store::StoreError>(())
    /// ```
    pub fn position(&self) -> u64 {
        self.yielded_to
    }

    /// Starts tracking which yielded events are finished, for a subscriber that handles events
    /// concurrently. Every event yielded from now on is in flight until
    /// [`Checkpoints::done`]; [`Checkpoints::checkpoint`] never passes the lowest unfinished
    /// one. Calling it again returns the same tracker.
    ///
    /// ```
    /// # use flowgate::store::{Store, Target};
    /// # let store = Store::<u32>::new();
    /// let mut sub = store.subscribe(Target::All).open()?;
    /// let checkpoints = sub.checkpoints();
    /// assert_eq!(checkpoints.checkpoint(), 0);
    /// # Ok::<(), flowgate::store::StoreError>(())
    /// ```
    pub fn checkpoints(&mut self) -> Checkpoints {
        self.checkpoints
            .get_or_insert_with(|| Checkpoints::new(self.yielded_to))
            .clone()
    }

    fn poll_item(&mut self, cx: &mut Context<'_>) -> Poll<Option<SubscriptionItem<T>>> {
        loop {
            if let Some(item) = self.buffer.pop_front() {
                self.handed_out(&item);
                return Poll::Ready(Some(item));
            }
            if self.ended {
                return Poll::Ready(None);
            }
            if self.fill() {
                continue;
            }
            self.register(cx);
            if !self.fill() {
                return Poll::Pending;
            }
        }
    }

    fn handed_out(&mut self, item: &SubscriptionItem<T>) {
        match item {
            Ok(recorded) => {
                #[cfg(feature = "metrics")]
                self.inner
                    .metrics
                    .lag(self.inner.all.published(), recorded.position());
                let position = match self.source {
                    Source::Stream { .. } => recorded.version(),
                    _ => recorded.position(),
                };
                self.yielded_to = position + 1;
                if let Some(checkpoints) = &self.checkpoints {
                    checkpoints.yielded(position);
                }
            }
            Err(StoreError::Truncated { resume_at, .. }) => {
                self.yielded_to = self.yielded_to.max(*resume_at);
                if let Some(checkpoints) = &self.checkpoints {
                    checkpoints.skipped_to(*resume_at);
                }
            }
            Err(_) => {}
        }
    }

    /// Registers the waker with the notifier of what this subscription waits for.
    fn register(&mut self, cx: &mut Context<'_>) {
        let (stream, category) = match &self.source {
            Source::All { .. } => (None, None),
            Source::Category { category, .. } => (None, Some(category)),
            Source::Stream { stream, .. } => (stream.as_ref(), None),
        };
        let same = self.waiting.as_ref().is_some_and(|w| {
            opt_ptr_eq(w.stream.as_ref(), stream) && opt_ptr_eq(w.category.as_ref(), category)
        });
        if !same {
            let (stream, category) = (stream.cloned(), category.cloned());
            self.release_slot();
            let notifier = notifier_of(&self.inner, stream.as_deref(), category.as_deref());
            let slot = notifier.slot();
            self.waiting = Some(Waiting {
                stream,
                category,
                slot,
            });
        }
        if let Some(waiting) = &self.waiting {
            notifier_of(
                &self.inner,
                waiting.stream.as_deref(),
                waiting.category.as_deref(),
            )
            .register(waiting.slot, cx.waker());
        }
    }

    fn release_slot(&mut self) {
        if let Some(waiting) = self.waiting.take() {
            notifier_of(
                &self.inner,
                waiting.stream.as_deref(),
                waiting.category.as_deref(),
            )
            .release(waiting.slot);
        }
    }

    /// Reads what is published after the cursor into the buffer; `true` if it added an item.
    fn fill(&mut self) -> bool {
        let before = self.buffer.len();
        match &mut self.source {
            Source::All { cursor } => {
                fill_log(
                    &self.inner.all,
                    cursor,
                    0,
                    None,
                    &mut self.buffer,
                    &mut self.expected,
                    self.capacity,
                    self.group,
                    |front| front,
                    |position, entry| Resolved {
                        position,
                        record: entry.upgrade(),
                    },
                    |_, entry| entry.id_hash,
                );
            }
            Source::Category {
                category,
                cursor,
                finder,
                scanned_to,
                start,
            } => {
                let log = &category.log;
                let all = &self.inner.all;
                fill_log(
                    log,
                    cursor,
                    *start,
                    Some(scanned_to),
                    &mut self.buffer,
                    &mut self.expected,
                    self.capacity,
                    self.group,
                    |front| log.with(front, |&(position, _)| position).unwrap_or(front),
                    |_, &(position, _)| Resolved {
                        position,
                        record: finder.lookup(all, position, Entry::upgrade).ok().flatten(),
                    },
                    |_, &(_, id_hash)| id_hash,
                );
            }
            Source::Stream {
                name,
                stream,
                pending,
                next_version,
            } => {
                if stream.is_none() {
                    *stream = pending.as_ref().and_then(|waiting| waiting.lock().clone());
                    if stream.is_some() {
                        pending.take();
                    }
                }
                let Some(bound) = stream else {
                    return false;
                };
                let state = bound.state.lock();
                if state.evicted {
                    self.buffer.push_back(Err(StoreError::StreamEvicted {
                        stream: name.clone(),
                    }));
                    self.ended = true;
                } else {
                    let page = read_forward(&state, *next_version, self.capacity);
                    drop(state);
                    if page.truncated > 0 {
                        self.buffer.push_back(Err(StoreError::Truncated {
                            missed_from: *next_version,
                            resume_at: *next_version + page.truncated,
                        }));
                    }
                    *next_version = page.next;
                    self.expected = page.next;
                    self.buffer.extend(page.events.into_iter().map(Ok));
                }
            }
        }
        self.buffer.len() > before
    }
}

fn opt_ptr_eq<X>(a: Option<&Arc<X>>, b: Option<&Arc<X>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        (None, None) => true,
        _ => false,
    }
}

fn notifier_of<'n, T>(
    inner: &'n Inner<T>,
    stream: Option<&'n Stream<T>>,
    category: Option<&'n Category>,
) -> &'n Notifier {
    match (stream, category) {
        (Some(stream), _) => &stream.notifier,
        (None, Some(category)) => &category.notifier,
        (None, None) => &inner.all_notifier,
    }
}

/// Reads a log (global or category) from `cursor` into `buffer`, turning runs of entries that
/// retention removed into one [`StoreError::Truncated`] each (see the module docs).
///
/// Entries below `skip_below` are passed over. `scanned_to` (category logs) tracks the position after the last entry passed; for the
/// global log the cursor index is the position. `resume(front)` is the position of the entry
/// at log index `front`.
#[allow(clippy::too_many_arguments)] // one call per log kind; a struct would only rename them
fn fill_log<S: Slot, T>(
    log: &Log<S>,
    cursor: &mut Cursor<S>,
    skip_below: u64,
    mut scanned_to: Option<&mut u64>,
    buffer: &mut VecDeque<SubscriptionItem<T>>,
    expected: &mut u64,
    capacity: usize,
    group: Option<(u32, NonZeroU32)>,
    resume: impl Fn(u64) -> u64,
    mut resolve: impl FnMut(u64, &S::Value) -> Resolved<T>,
    id_hash: impl Fn(u64, &S::Value) -> u64,
) {
    // Start of the current run of removed entries of ours, if any.
    let mut missed_from: Option<u64> = None;
    let in_group =
        |hash: u64| group.is_none_or(|(member, size)| partition_of_hash(hash, size) == member);
    loop {
        if buffer.len() >= capacity {
            break;
        }
        let room = capacity - buffer.len();
        let mut passed = None;
        let read = cursor.read(log, room, |index, slot| {
            if buffer.len() >= capacity {
                return false;
            }
            if !in_group(id_hash(index, slot)) {
                return true;
            }
            let entry = resolve(index, slot);
            passed = Some(entry.position);
            if entry.position < skip_below {
                return true;
            }
            match entry.record {
                None => {
                    missed_from.get_or_insert(entry.position);
                }
                Some(recorded) => {
                    if let Some(from) = missed_from.take().filter(|&f| f < entry.position) {
                        buffer.push_back(Err(StoreError::Truncated {
                            missed_from: from,
                            resume_at: entry.position,
                        }));
                    }
                    *expected = entry.position + 1;
                    buffer.push_back(Ok(recorded));
                }
            }
            true
        });
        if let (Some(position), Some(scanned)) = (passed, scanned_to.as_deref_mut()) {
            *scanned = position + 1;
        }
        match read {
            Read::Entries(0) => break,
            Read::Entries(_) => {}
            Read::Dropped { front, through } => {
                // The released run is ours to report only if it held a position this
                // subscription would still receive (`through` is one past its last position):
                // at or after the start, and after every entry already passed (for a category,
                // `scanned_to`; those were delivered, not ours, or opened the run already).
                let passed = scanned_to
                    .as_deref()
                    .map_or(*expected, |&s| s.max(*expected));
                let from = passed.max(skip_below);
                if through > from {
                    missed_from.get_or_insert(from);
                }
                let resumed = resume(front);
                if let Some(scanned) = scanned_to.as_deref_mut() {
                    *scanned = (*scanned).max(resumed);
                }
            }
        }
    }
    if let Some(from) = missed_from {
        let resume_at = match scanned_to {
            Some(scanned) => *scanned,
            None => cursor.index(),
        };
        // Never an empty or backward range.
        if from < resume_at {
            buffer.push_back(Err(StoreError::Truncated {
                missed_from: from,
                resume_at,
            }));
            *expected = resume_at;
        }
    }
}

impl<T: Send + Sync + 'static> futures_core::Stream for Subscription<T> {
    type Item = SubscriptionItem<T>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_item(cx)
    }
}

impl<T> Drop for Subscription<T> {
    fn drop(&mut self) {
        match &mut self.source {
            Source::Stream { name, pending, .. } => {
                if let Some(waiting) = pending.take() {
                    self.inner.forget_pending(name, &waiting);
                }
            }
            Source::Category { category, .. } => {
                self.inner.release_category(category, Holder::Subscription);
            }
            Source::All { .. } => {}
        }
        if let Some(waiting) = self.waiting.take() {
            notifier_of(
                &self.inner,
                waiting.stream.as_deref(),
                waiting.category.as_deref(),
            )
            .release(waiting.slot);
        }
        self.inner
            .counters
            .subscriptions
            .fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::ExpectedVersion;
    use flowgate_core::Event;

    /// However far behind it is, a subscription holds at most its buffer (plus one truncation
    /// signal in front of an event).
    #[test]
    fn a_subscription_holds_at_most_its_buffer() {
        let store = Store::<u64>::new();
        for i in 0..5_000 {
            let stream = format!("c{}-1", i % 2);
            store
                .append(&stream, ExpectedVersion::Any, Event::new("e", i).unwrap())
                .unwrap();
        }
        for target in [Target::All, Target::category("c0"), Target::stream("c1-1")] {
            let mut sub = store.subscribe(target).buffer(7).open().unwrap();
            let mut cx = Context::from_waker(std::task::Waker::noop());
            let mut seen = 0;
            while let Poll::Ready(Some(item)) = sub.poll_item(&mut cx) {
                item.unwrap();
                seen += 1;
                assert!(sub.buffer.len() <= 7, "{} buffered", sub.buffer.len());
            }
            assert!(seen >= 2_500);
        }
    }
}
