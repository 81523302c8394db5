//! [`StoreError`]: every way a store call can fail, and the signals a subscription yields.

use crate::ExpectedVersion;

/// A store call that failed, or a signal from a subscription. Each variant says whether to
/// retry.
///
/// ```
/// use flowgate::store::{ExpectedVersion, Store, StoreError};
/// use flowgate::Event;
///
/// let store = Store::<u32>::new();
/// store.append("account-1", ExpectedVersion::NoStream, Event::new("opened", 0)?)?;
/// let err = store
///     .append("account-1", ExpectedVersion::NoStream, Event::new("opened", 0)?)
///     .unwrap_err();
/// assert!(matches!(err, StoreError::WrongExpectedVersion { actual: Some(0), .. }));
/// assert!(err.is_retryable());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The stream's version was not the expected one; nothing was appended. Retryable: read
    /// the stream up to `actual`, decide again, and append with `ExpectedVersion::Exact`.
    #[error("wrong expected version for stream {stream:?}: expected {expected}, but the stream {}; nothing was appended, read the stream again and retry", actual_text(*actual))]
    WrongExpectedVersion {
        /// The stream.
        stream: String,
        /// What the caller expected.
        expected: ExpectedVersion,
        /// The stream's version when the append was refused (`None`: no such stream).
        actual: Option<u64>,
    },
    /// A stream name broke the naming rules. Final: fix the name.
    #[error("invalid stream name {name:?}: {reason}; write `category-id`, such as \"account-42\"")]
    InvalidStreamName {
        /// The rejected name.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A category name broke the naming rules. Final: fix the name.
    #[error("invalid category {category:?}: {reason}; a category is the part of a stream name before the first '-', such as \"account\"")]
    InvalidCategory {
        /// The rejected category.
        category: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An append carried no events. Final: pass at least one event.
    #[error("append to {stream:?} carried no events; pass at least one")]
    EmptyAppend {
        /// The stream.
        stream: String,
    },
    /// The store holds `limit` streams and its policy is `StreamLimit::Reject`; the new stream
    /// was not created. Retryable once streams are evicted or the limit is raised.
    #[error("stream {stream:?} not created: the store already holds its limit of {limit} streams (policy Reject); raise max_streams or choose StreamLimit::EvictLeastRecent")]
    StreamLimitReached {
        /// The stream that was not created.
        stream: String,
        /// The configured limit.
        limit: usize,
    },
    /// A configuration value is out of range. Final: fix the setting.
    #[error("invalid {setting}: {reason}")]
    InvalidConfig {
        /// The builder method that set it.
        setting: &'static str,
        /// What is accepted.
        reason: &'static str,
    },
    /// A call that starts a task was made outside a tokio runtime. Final for that call: make
    /// it from inside a runtime (for example in an async fn under `#[tokio::main]`).
    #[error("no tokio runtime is running: call this from inside one (for example in an async fn under #[tokio::main]); the task runs on that runtime")]
    NoRuntime,
    /// A consumer group member index is not below the group size, or the size is zero. Final.
    #[error("invalid consumer group member {member} of {size}: the size must be at least 1 and the member below it")]
    InvalidGroupMember {
        /// The member index given.
        member: u32,
        /// The group size given.
        size: u32,
    },
    /// The store's `payload_size` function panicked while sizing event `index` (0-based) of an
    /// append to `stream`. Every size is computed before the append takes a lock or writes
    /// anything, so nothing was appended and the store is unchanged. Final: fix the function
    /// (its panic message went to the panic hook as usual). With `panic = "abort"` the process
    /// aborts instead, as for any panic.
    #[error("the payload_size function panicked on event {index} of the append to {stream:?}; nothing was appended, fix the function")]
    PayloadSizePanicked {
        /// The stream appended to.
        stream: String,
        /// The event's index in the batch (0 for a single append).
        index: usize,
    },
    /// Subscription signal: events this subscription had not yet received were removed by
    /// retention before it read them. It continues at `resume_at`. Not a failure of the
    /// subscription: decide whether the gap matters (for example rebuild from a snapshot).
    #[error("retention removed events this subscription had not read yet: from {missed_from} up to (not including) {resume_at}; the subscription continues at {resume_at}")]
    Truncated {
        /// The first position (a version, for a stream subscription) that was missed.
        missed_from: u64,
        /// Where the subscription continues.
        resume_at: u64,
    },
    /// Subscription signal: the subscribed stream was evicted by the stream limit (policy
    /// `EvictLeastRecent`). The subscription ends after this item; a stream created again under
    /// that name starts at version 0 and needs a new subscription.
    #[error("stream {stream:?} was evicted by the store's stream limit; this subscription ends, subscribe again to follow a new stream of that name")]
    StreamEvicted {
        /// The evicted stream.
        stream: String,
    },
}

fn actual_text(actual: Option<u64>) -> String {
    match actual {
        Some(version) => format!("is at version {version}"),
        None => "does not exist".to_owned(),
    }
}

impl StoreError {
    /// Whether the same call may succeed later (after reading again, or once room is made).
    ///
    /// ```
    /// use flowgate::store::StoreError;
    /// let e = StoreError::EmptyAppend { stream: "a-1".into() };
    /// assert!(!e.is_retryable());
    /// ```
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::WrongExpectedVersion { .. } | Self::StreamLimitReached { .. }
        )
    }
}
