//! [`StoreBuilder`]: retention, payload sizing and subscription buffer settings.

// Data, not synchronization: the size function is shared by std `Arc`.
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::{Store, StoreError};

/// What the store does when a new stream would exceed `max_streams`.
///
/// ```
/// use flowgate::store::{ExpectedVersion, Store, StoreError, StreamLimit};
/// use flowgate::Event;
///
/// let store = Store::<u32>::builder().max_streams(1, StreamLimit::Reject).build()?;
/// store.append("a-1", ExpectedVersion::Any, Event::new("e", 1)?)?;
/// let err = store.append("a-2", ExpectedVersion::Any, Event::new("e", 2)?).unwrap_err();
/// assert!(matches!(err, StoreError::StreamLimitReached { limit: 1, .. }));
/// assert_eq!(store.stats().rejected_streams, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamLimit {
    /// Refuse to create the stream: the append fails with
    /// [`StoreError::StreamLimitReached`]. Counted in `stats().rejected_streams`.
    Reject,
    /// Evict the stream whose last append is the oldest (its events are removed and counted as
    /// truncated; its subscribers get [`StoreError::StreamEvicted`]). Counted in
    /// `stats().evicted_streams`.
    EvictLeastRecent,
}

/// Sizes a payload for `stats().bytes`.
type SizeFn<T> = Arc<dyn Fn(&T) -> usize + Send + Sync>;

pub(crate) struct Config<T> {
    /// The `store` label of its metrics.
    pub(crate) name: Arc<str>,
    pub(crate) max_events_per_stream: Option<usize>,
    pub(crate) max_age: Option<Duration>,
    pub(crate) max_streams: Option<(usize, StreamLimit)>,
    pub(crate) size_of: Option<SizeFn<T>>,
    pub(crate) subscription_buffer: usize,
}

impl<T> Clone for Config<T> {
    fn clone(&self) -> Self {
        Self {
            name: Arc::clone(&self.name),
            max_events_per_stream: self.max_events_per_stream,
            max_age: self.max_age,
            max_streams: self.max_streams,
            size_of: self.size_of.clone(),
            subscription_buffer: self.subscription_buffer,
        }
    }
}

impl<T> Config<T> {
    /// The default store's settings: keeps everything.
    pub(crate) fn keep_everything() -> Self {
        Self {
            name: Arc::from("store"),
            max_events_per_stream: None,
            max_age: None,
            max_streams: None,
            size_of: None,
            subscription_buffer: DEFAULT_SUBSCRIPTION_BUFFER,
        }
    }
}

impl<T> fmt::Debug for Config<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("name", &self.name)
            .field("max_events_per_stream", &self.max_events_per_stream)
            .field("max_age", &self.max_age)
            .field("max_streams", &self.max_streams)
            .field("sizes_payloads", &self.size_of.is_some())
            .field("subscription_buffer", &self.subscription_buffer)
            .finish()
    }
}

/// The default bound of a subscription's buffer, in events.
///
/// ```
/// use flowgate::store::DEFAULT_SUBSCRIPTION_BUFFER;
/// assert_eq!(DEFAULT_SUBSCRIPTION_BUFFER, 256);
/// ```
pub const DEFAULT_SUBSCRIPTION_BUFFER: usize = 256;

/// Builds a [`Store`] with retention and sizing settings. Every setting is optional; the
/// default store keeps everything.
///
/// ```
/// use std::time::Duration;
/// use flowgate::store::{Store, StreamLimit};
///
/// let store = Store::<String>::builder()
///     .max_events_per_stream(10_000)
///     .max_age(Duration::from_secs(3600))
///     .max_streams(1_000, StreamLimit::EvictLeastRecent)
///     .payload_size(|s: &String| s.len())
///     .subscription_buffer(128)
///     .build()?;
/// assert_eq!(store.stats().streams, 0);
/// # Ok::<(), flowgate::store::StoreError>(())
/// ```
pub struct StoreBuilder<T> {
    config: Config<T>,
    error: Option<StoreError>,
}

impl<T> fmt::Debug for StoreBuilder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreBuilder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<T: Send + Sync + 'static> StoreBuilder<T> {
    pub(crate) fn new(config: Config<T>) -> Self {
        Self {
            config,
            error: None,
        }
    }

    fn invalid(mut self, setting: &'static str, reason: &'static str) -> Self {
        self.error
            .get_or_insert(StoreError::InvalidConfig { setting, reason });
        self
    }

    /// The store's name: the `store` label of its metrics (feature `metrics`), so that two
    /// stores in one process keep apart; default `"store"`. It must not be empty.
    ///
    /// ```
    /// use flowgate::store::{Store, StoreError};
    /// let orders = Store::<u32>::builder().name("orders").build()?;
    /// # let _ = orders;
    /// let err = Store::<u32>::builder().name("").build().unwrap_err();
    /// assert!(matches!(err, StoreError::InvalidConfig { setting: "name", .. }));
    /// # Ok::<(), StoreError>(())
    /// ```
    #[must_use]
    pub fn name(mut self, name: &str) -> Self {
        if name.trim().is_empty() {
            return self.invalid("name", "empty: name the store, it labels its metrics");
        }
        self.config.name = Arc::from(name);
        self
    }

    /// Keeps at most `n` events per stream; appending more removes the oldest (counted in
    /// `stats().truncated`). `n` must be at least 1.
    ///
    /// ```
    /// use flowgate::store::{ExpectedVersion, Store};
    /// use flowgate::Event;
    /// let store = Store::<u32>::builder().max_events_per_stream(2).build()?;
    /// for i in 0..5 {
    ///     store.append("s-1", ExpectedVersion::Any, Event::new("e", i)?)?;
    /// }
    /// let page = store.read_stream_forward("s-1", 0, 10)?;
    /// assert_eq!(page.events.len(), 2);
    /// assert_eq!((page.events[0].version(), page.truncated), (3, 3));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn max_events_per_stream(mut self, n: usize) -> Self {
        if n == 0 {
            return self.invalid("max_events_per_stream", "must be at least 1");
        }
        self.config.max_events_per_stream = Some(n);
        self
    }

    /// Removes events older than `age` (on the tokio clock). Expiry runs during appends (at
    /// most once per 64 positions), whenever [`Store::expire`] is called, and periodically
    /// once [`Store::expire_every`] started it. `age` must be above zero.
    ///
    /// ```
    /// use std::time::Duration;
    /// use flowgate::store::Store;
    /// let store = Store::<u32>::builder().max_age(Duration::from_secs(60)).build()?;
    /// assert_eq!(store.expire(), 0);
    /// # Ok::<(), flowgate::store::StoreError>(())
    /// ```
    #[must_use]
    pub fn max_age(mut self, age: Duration) -> Self {
        if age.is_zero() {
            return self.invalid("max_age", "must be above zero");
        }
        self.config.max_age = Some(age);
        self
    }

    /// Holds at most `n` streams; `policy` says what creating one more does. `n` must be at
    /// least 1.
    ///
    /// ```
    /// use flowgate::store::{ExpectedVersion, Store, StreamLimit};
    /// use flowgate::Event;
    /// let store = Store::<u32>::builder().max_streams(2, StreamLimit::EvictLeastRecent).build()?;
    /// for s in ["a-1", "a-2", "a-3"] {
    ///     store.append(s, ExpectedVersion::Any, Event::new("e", 0)?)?;
    /// }
    /// assert_eq!(store.stream_version("a-1")?, None, "the least recently appended went");
    /// assert_eq!(store.stats().evicted_streams, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn max_streams(mut self, n: usize, policy: StreamLimit) -> Self {
        if n == 0 {
            return self.invalid("max_streams", "must be at least 1");
        }
        self.config.max_streams = Some((n, policy));
        self
    }

    /// Reports each payload's size, so that `stats().bytes` counts the bytes held.
    ///
    /// The function runs in the appending thread before the append takes any lock. If it
    /// panics, the panic is caught and the append returns
    /// [`StoreError::PayloadSizePanicked`] having written nothing (with `panic = "abort"`,
    /// the process aborts, as for any panic).
    ///
    /// ```
    /// use flowgate::store::{ExpectedVersion, Store, StoreError};
    /// use flowgate::Event;
    /// let store = Store::<Vec<u8>>::builder().payload_size(Vec::len).build()?;
    /// store.append("blob-1", ExpectedVersion::Any, Event::new("e", vec![0; 100])?)?;
    /// assert_eq!(store.stats().bytes, Some(100));
    ///
    /// let sized = Store::<Vec<u8>>::builder()
    ///     .payload_size(|bytes: &Vec<u8>| {
    ///         assert!(!bytes.is_empty(), "no size for an empty payload"); // a buggy sizer
    ///         bytes.len()
    ///     })
    ///     .build()?;
    /// let empty = Event::new("e", Vec::new())?;
    /// let err = sized.append("blob-2", ExpectedVersion::Any, empty).unwrap_err();
    /// assert!(matches!(err, StoreError::PayloadSizePanicked { index: 0, .. }));
    /// assert_eq!(sized.stream_version("blob-2")?, None, "nothing was appended");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn payload_size(mut self, size_of: impl Fn(&T) -> usize + Send + Sync + 'static) -> Self {
        self.config.size_of = Some(Arc::new(size_of));
        self
    }

    /// The default bound of each subscription's buffer (default
    /// [`DEFAULT_SUBSCRIPTION_BUFFER`]); at least 1.
    ///
    /// ```
    /// use flowgate::store::Store;
    /// assert!(Store::<u32>::builder().subscription_buffer(0).build().is_err());
    /// ```
    #[must_use]
    pub fn subscription_buffer(mut self, events: usize) -> Self {
        if events == 0 {
            return self.invalid("subscription_buffer", "must be at least 1");
        }
        self.config.subscription_buffer = events;
        self
    }

    /// Builds the store.
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidConfig`] for the first setting that was out of range.
    ///
    /// ```
    /// use flowgate::store::{Store, StoreError};
    /// let err = Store::<u32>::builder().max_events_per_stream(0).build().unwrap_err();
    /// assert!(matches!(err, StoreError::InvalidConfig { setting: "max_events_per_stream", .. }));
    /// ```
    pub fn build(self) -> Result<Store<T>, StoreError> {
        if let Some(error) = self.error {
            return Err(error);
        }
        Ok(Store::with_config(self.config))
    }
}
