//! What the store hands out: recorded events, append results, read pages, expected versions.

use std::fmt;
// Data, not synchronization: recorded events are shared by std `Arc` whatever the cfg.
use std::sync::Arc;

use flowgate_core::Event;

/// What an append expects of the stream's current version (the version of its last event).
///
/// ```
/// use flowgate::store::{ExpectedVersion, Store};
/// use flowgate::Event;
///
/// let store = Store::<&str>::new();
/// store.append("cart-1", ExpectedVersion::NoStream, Event::new("created", "")?)?;
/// store.append("cart-1", ExpectedVersion::Exact(0), Event::new("item.added", "tea")?)?;
/// store.append("cart-1", ExpectedVersion::StreamExists, Event::new("item.added", "milk")?)?;
/// store.append("cart-1", ExpectedVersion::Any, Event::new("checked.out", "")?)?;
/// assert_eq!(store.stream_version("cart-1")?, Some(3));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExpectedVersion {
    /// No check.
    Any,
    /// The stream must not exist (it has no event yet).
    NoStream,
    /// The stream must exist.
    StreamExists,
    /// The stream's last event must have exactly this version.
    Exact(u64),
}

impl ExpectedVersion {
    /// Whether a stream at `actual` (`None`: no stream) satisfies this expectation.
    ///
    /// ```
    /// use flowgate::store::ExpectedVersion;
    /// assert!(ExpectedVersion::Exact(2).matches(Some(2)));
    /// assert!(!ExpectedVersion::NoStream.matches(Some(0)));
    /// ```
    pub fn matches(self, actual: Option<u64>) -> bool {
        match self {
            Self::Any => true,
            Self::NoStream => actual.is_none(),
            Self::StreamExists => actual.is_some(),
            Self::Exact(version) => actual == Some(version),
        }
    }
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("any version"),
            Self::NoStream => f.write_str("no stream"),
            Self::StreamExists => f.write_str("an existing stream"),
            Self::Exact(v) => write!(f, "version {v}"),
        }
    }
}

/// The stream an event belongs to, shared by all its events.
#[derive(Debug)]
pub(crate) struct StreamInfo {
    pub(crate) name: Arc<str>,
    /// Byte length of the category prefix.
    pub(crate) category_len: usize,
    /// `flowgate_core::stable_hash` of the id (the part after the first `-`).
    pub(crate) id_hash: u64,
}

impl StreamInfo {
    pub(crate) fn category(&self) -> &str {
        &self.name[..self.category_len]
    }
}

/// One stored event; immutable once published.
#[derive(Debug)]
pub(crate) struct Record<T> {
    pub(crate) event: Event<T>,
    pub(crate) stream: Arc<StreamInfo>,
    pub(crate) version: u64,
    pub(crate) position: u64,
    /// When it was appended, on the tokio clock; `None` when the store has no max age.
    pub(crate) appended_at: Option<tokio::time::Instant>,
    /// What the store's payload-size function reported (0 without one).
    pub(crate) size: u64,
}

/// An event as the store recorded it: the event, its stream, its version in the stream and its
/// global position. Cloning is one reference-count increment.
///
/// ```
/// use flowgate::store::{ExpectedVersion, Store};
/// use flowgate::Event;
///
/// let store = Store::<u32>::new();
/// store.append("order-1", ExpectedVersion::Any, Event::new("placed", 5)?)?;
/// let page = store.read_stream_forward("order-1", 0, 10)?;
/// let recorded = &page.events[0];
/// assert_eq!(recorded.stream(), "order-1");
/// assert_eq!(recorded.category(), "order");
/// assert_eq!((recorded.version(), recorded.position()), (0, 0));
/// assert_eq!(*recorded.event().payload(), 5);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Recorded<T> {
    pub(crate) inner: Arc<Record<T>>,
}

impl<T> Clone for Recorded<T> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<T> Recorded<T> {
    /// The event (id, type, payload, metadata, keys).
    ///
    /// ```
    /// # use flowgate::store::{ExpectedVersion, Store};
    /// # use flowgate::Event;
    /// # let store = Store::<u32>::new();
    /// let e = Event::new("placed", 5)?;
    /// store.append("order-1", ExpectedVersion::Any, e.clone())?;
    /// let page = store.read_all(0, 1)?;
    /// assert_eq!(page.events[0].event().id(), e.id());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn event(&self) -> &Event<T> {
        &self.inner.event
    }

    /// The stream name.
    ///
    /// ```
    /// # use flowgate::store::{ExpectedVersion, Store};
    /// # use flowgate::Event;
    /// # let store = Store::<u32>::new();
    /// store.append("order-1", ExpectedVersion::Any, Event::new("placed", 5)?)?;
    /// assert_eq!(store.read_all(0, 1)?.events[0].stream(), "order-1");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn stream(&self) -> &str {
        &self.inner.stream.name
    }

    /// The stream's category (the part of its name before the first `-`).
    ///
    /// ```
    /// # use flowgate::store::{ExpectedVersion, Store};
    /// # use flowgate::Event;
    /// # let store = Store::<u32>::new();
    /// store.append("order-1", ExpectedVersion::Any, Event::new("placed", 5)?)?;
    /// assert_eq!(store.read_all(0, 1)?.events[0].category(), "order");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn category(&self) -> &str {
        self.inner.stream.category()
    }

    /// The event's version in its stream: 0 for the stream's first event, then 1, 2, ...
    ///
    /// ```
    /// # use flowgate::store::{ExpectedVersion, Store};
    /// # use flowgate::Event;
    /// # let store = Store::<u32>::new();
    /// store.append("order-1", ExpectedVersion::Any, Event::new("placed", 5)?)?;
    /// store.append("order-2", ExpectedVersion::Any, Event::new("placed", 6)?)?;
    /// assert_eq!(store.read_all(1, 1)?.events[0].version(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn version(&self) -> u64 {
        self.inner.version
    }

    /// The event's global position: its place in the order of every event of the store,
    /// starting at 0; never reused, also after retention removed earlier events.
    ///
    /// ```
    /// # use flowgate::store::{ExpectedVersion, Store};
    /// # use flowgate::Event;
    /// # let store = Store::<u32>::new();
    /// store.append("order-1", ExpectedVersion::Any, Event::new("placed", 5)?)?;
    /// store.append("order-2", ExpectedVersion::Any, Event::new("placed", 6)?)?;
    /// assert_eq!(store.read_all(1, 1)?.events[0].position(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn position(&self) -> u64 {
        self.inner.position
    }

    /// Whether two handles share one record.
    ///
    /// ```
    /// # use flowgate::store::{ExpectedVersion, Store};
    /// # use flowgate::Event;
    /// # let store = Store::<u32>::new();
    /// store.append("order-1", ExpectedVersion::Any, Event::new("placed", 5)?)?;
    /// let a = store.read_all(0, 1)?.events.remove(0);
    /// let b = store.read_stream_forward("order-1", 0, 1)?.events.remove(0);
    /// assert!(a.ptr_eq(&b), "reads share the stored record, never copy it");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn ptr_eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl<T: fmt::Debug> fmt::Debug for Recorded<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recorded")
            .field("stream", &self.stream())
            .field("version", &self.version())
            .field("position", &self.position())
            .field("event", self.event())
            .finish()
    }
}

/// What an accepted append wrote: the versions and global positions of its first and last
/// events (equal for a single event).
///
/// ```
/// use flowgate::store::{ExpectedVersion, Store};
/// use flowgate::Event;
///
/// let store = Store::<u32>::new();
/// let events = (0..3).map(|i| Event::new("tick", i)).collect::<Result<Vec<_>, _>>()?;
/// let appended = store.append_batch("clock-1", ExpectedVersion::NoStream, events)?;
/// assert_eq!((appended.first_version, appended.last_version), (0, 2));
/// assert_eq!((appended.first_position, appended.last_position), (0, 2));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Appended {
    /// Version of the first event appended.
    pub first_version: u64,
    /// Version of the last event appended: the stream's version now (pass it as
    /// `ExpectedVersion::Exact` to append next).
    pub last_version: u64,
    /// Global position of the first event appended.
    pub first_position: u64,
    /// Global position of the last event appended.
    pub last_position: u64,
}

/// One page of a read: at most `max_count` events, and where the next page starts.
///
/// Pages never overlap and never leave a hole: passing `next` to the same read continues right
/// after this page. Events removed by retention are counted in `truncated`, not returned.
///
/// ```
/// use flowgate::store::{ExpectedVersion, Store};
/// use flowgate::Event;
///
/// let store = Store::<u32>::new();
/// for i in 0..5 {
///     store.append("meter-1", ExpectedVersion::Any, Event::new("reading", i)?)?;
/// }
/// let mut seen = Vec::new();
/// let mut from = 0;
/// loop {
///     let page = store.read_stream_forward("meter-1", from, 2)?;
///     seen.extend(page.events.iter().map(|e| *e.event().payload()));
///     if page.is_end {
///         break;
///     }
///     from = page.next;
/// }
/// assert_eq!(seen, [0, 1, 2, 3, 4]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[non_exhaustive]
pub struct Page<T> {
    /// The events, in read order.
    pub events: Vec<Recorded<T>>,
    /// Where the next page starts (a version for stream reads, a global position otherwise).
    /// For a backward read, the next (lower) version to read; meaningless once `is_end`.
    pub next: u64,
    /// Whether the read reached the end (the head, or version 0 going backward): a read from
    /// `next` returns nothing now (though appends may add more later).
    pub is_end: bool,
    /// Events in the range this page covered that retention had removed (for a category
    /// read over log segments already released, the released slots it passed: an estimate that
    /// may include other streams' slots just below the start).
    pub truncated: u64,
}

impl<T: fmt::Debug> fmt::Debug for Page<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Page")
            .field("events", &self.events)
            .field("next", &self.next)
            .field("is_end", &self.is_end)
            .field("truncated", &self.truncated)
            .finish()
    }
}
