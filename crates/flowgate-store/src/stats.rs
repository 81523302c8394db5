//! [`StoreStats`], the snapshot behind [`Store::stats`](crate::Store::stats).

/// A snapshot of a store's counters. Each field is read on its own, so a snapshot taken while
/// appends run may be a few events apart between fields.
///
/// ```
/// use flowgate::store::{ExpectedVersion, Store};
/// use flowgate::Event;
/// let store = Store::<u32>::builder().max_events_per_stream(1).build()?;
/// store.append("a-1", ExpectedVersion::Any, Event::new("e", 1)?)?;
/// store.append("a-1", ExpectedVersion::Any, Event::new("e", 2)?)?;
/// let stats = store.stats();
/// assert_eq!((stats.appended, stats.events, stats.truncated), (2, 1, 1));
/// assert_eq!(stats.bytes, None, "no payload_size configured");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct StoreStats {
    /// Streams held.
    pub streams: usize,
    /// Categories held: those with a stream or an open category subscription (a category goes
    /// when its last stream is evicted and no subscription holds it).
    pub categories: usize,
    /// Events ever appended: the next global position.
    pub appended: u64,
    /// Events held now: appended minus truncated.
    pub events: u64,
    /// Payload bytes held, when the store was built with `payload_size`.
    pub bytes: Option<u64>,
    /// Open subscriptions.
    pub subscriptions: usize,
    /// Events removed by retention (per-stream limit, age, or stream eviction).
    pub truncated: u64,
    /// Streams evicted by the stream limit (`StreamLimit::EvictLeastRecent`).
    pub evicted_streams: u64,
    /// New streams refused by the stream limit (`StreamLimit::Reject`).
    pub rejected_streams: u64,
    /// Appends refused for a wrong expected version.
    pub version_conflicts: u64,
}
