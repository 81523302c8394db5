//! The event envelope.
//!
//! An [`Event<T>`] carries a unique [`EventId`] (UUID v7, so ids sort by creation time), an
//! [`EventType`] name, a wall-clock timestamp, a typed payload, string [`Metadata`], an optional
//! ordering [`Key`] and an optional idempotency key.
//!
//! The envelope lives behind one `Arc`: cloning an event (which every fan-out does, once per
//! handler) is one reference-count increment and never copies the payload or the metadata.
//! The payload is never serialized on the in-process path.

use std::collections::BTreeMap;
use std::fmt;
use std::time::SystemTime;

use uuid::Uuid;

// Data, not synchronization: public types use std's `Arc` whatever the cfg, so the API
// is the same under loom.
use crate::{CoreError, EventType};
use std::sync::Arc;

/// A unique event id: a UUID v7, so ids created later sort after earlier ones.
///
/// ```
/// use flowgate::EventId;
///
/// let a = EventId::new();
/// let b = EventId::new();
/// assert_ne!(a, b);
/// assert_eq!(a.as_uuid().get_version_num(), 7);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventId(Uuid);

impl EventId {
    /// A fresh UUID v7 id.
    ///
    /// Ids made by one thread strictly increase; ids made by different threads are ordered by
    /// their millisecond. Generation costs a clock read and a thread-local counter step: no
    /// lock, no system call.
    ///
    /// ```
    /// # use flowgate::EventId;
    /// let first = EventId::new();
    /// assert!(EventId::new() > first, "ids from one thread increase");
    /// ```
    pub fn new() -> Self {
        Self(next_v7())
    }

    /// Wraps an existing UUID (for example one read back from storage).
    ///
    /// ```
    /// # use flowgate::EventId;
    /// let id = EventId::new();
    /// assert_eq!(EventId::from_uuid(*id.as_uuid()), id);
    /// ```
    pub const fn from_uuid(uuid: Uuid) -> Self {
        Self(uuid)
    }

    /// The underlying UUID.
    ///
    /// ```
    /// # use flowgate::EventId;
    /// assert!(!EventId::new().as_uuid().is_nil());
    /// ```
    pub const fn as_uuid(&self) -> &Uuid {
        &self.0
    }
}

/// Counter bits per millisecond (as in RFC 9562, method 1 with a 42-bit counter): the top 12
/// go to `rand_a`, the rest to the top of `rand_b`; the remaining 32 bits of `rand_b` are random.
const COUNTER_BITS: u32 = 42;
/// A fresh millisecond seeds the counter below 2^41, leaving at least 2^41 steps before it
/// would overflow into the next millisecond.
const SEED_MASK: u64 = (1 << (COUNTER_BITS - 1)) - 1;
const COUNTER_MAX: u64 = (1 << COUNTER_BITS) - 1;

// Plain `std` thread-local, not the loom shim: id generation is not part of any model, and the
// state is per thread by design.
std::thread_local! {
    /// (millisecond of the last id, its counter) for this thread.
    static LAST_ID: std::cell::Cell<(u64, u64)> = const { std::cell::Cell::new((0, 0)) };
}

fn next_v7() -> Uuid {
    let now_ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let (ms, counter) = LAST_ID.with(|last| {
        let (last_ms, last_counter) = last.get();
        let next = if now_ms > last_ms {
            (now_ms, fastrand::u64(..) & SEED_MASK)
        } else if last_counter < COUNTER_MAX {
            // Same millisecond, or the clock stepped back: stay on the last one, count up.
            (last_ms, last_counter + 1)
        } else {
            (last_ms + 1, fastrand::u64(..) & SEED_MASK)
        };
        last.set(next);
        next
    });
    let random = fastrand::u32(..);
    let mut bytes = [0_u8; 10];
    // rand_a: counter bits 41..30 (the builder overwrites the high nibble with the version).
    bytes[0] = ((counter >> 38) & 0x0f) as u8;
    bytes[1] = (counter >> 30) as u8;
    // rand_b: counter bits 29..0 (the builder overwrites the top two bits with the variant).
    bytes[2] = ((counter >> 24) & 0x3f) as u8;
    bytes[3] = (counter >> 16) as u8;
    bytes[4] = (counter >> 8) as u8;
    bytes[5] = counter as u8;
    bytes[6..].copy_from_slice(&random.to_be_bytes());
    uuid::Builder::from_unix_timestamp_millis(ms, &bytes).into_uuid()
}

impl Default for EventId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventId({})", self.0)
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// An ordering or idempotency key: a cheap-to-clone string.
///
/// Build one from a string or an integer id.
///
/// ```
/// use flowgate::Key;
///
/// assert_eq!(Key::from(42_u64).as_str(), "42");
/// assert_eq!(Key::from("order-7").as_str(), "order-7");
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(Arc<str>);

impl Key {
    /// The key as a string slice.
    ///
    /// ```
    /// # use flowgate::Key;
    /// assert_eq!(Key::from("acct-1").as_str(), "acct-1");
    /// ```
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Key {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Key {
    fn from(s: &str) -> Self {
        Self(Arc::from(s))
    }
}

impl From<String> for Key {
    fn from(s: String) -> Self {
        Self(Arc::from(s))
    }
}

impl From<Uuid> for Key {
    fn from(u: Uuid) -> Self {
        Self(Arc::from(u.to_string()))
    }
}

impl From<EventId> for Key {
    fn from(id: EventId) -> Self {
        Self::from(id.0)
    }
}

macro_rules! key_from_int {
    ($($t:ty),*) => {$(
        impl From<$t> for Key {
            fn from(n: $t) -> Self {
                Self(Arc::from(n.to_string()))
            }
        }
    )*};
}
key_from_int!(u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize);

/// String metadata attached to an event (trace context, tenant, causation id, ...).
///
/// An ordered map; empty metadata does not allocate.
///
/// ```
/// # use flowgate::{Event, Metadata};
/// let e = Event::new("a", ())?.with_metadata("tenant", "acme");
/// let meta: &Metadata = e.metadata();
/// assert_eq!(meta.len(), 1);
/// # Ok::<(), flowgate::CoreError>(())
/// ```
pub type Metadata = BTreeMap<String, String>;

/// The shared part of an event. Built once, then only read.
struct Envelope<T> {
    id: EventId,
    kind: EventType,
    timestamp: SystemTime,
    payload: Arc<T>,
    metadata: Metadata,
    key: Option<Key>,
    idempotency_key: Option<Key>,
}

// By hand: the payload sits behind its own `Arc`, so copying an envelope needs no `T: Clone`.
impl<T> Clone for Envelope<T> {
    fn clone(&self) -> Self {
        Self {
            id: self.id,
            kind: self.kind.clone(),
            timestamp: self.timestamp,
            payload: Arc::clone(&self.payload),
            metadata: self.metadata.clone(),
            key: self.key.clone(),
            idempotency_key: self.idempotency_key.clone(),
        }
    }
}

/// An event: envelope plus typed payload, shared by `Arc`.
///
/// Cloning is one reference-count increment. The `with_*` methods are meant for building an
/// event before it is emitted; on an event that is already shared they copy the envelope (not
/// the payload) first, so other holders never see it change.
///
/// ```
/// use flowgate::{Event, Key};
///
/// #[derive(Debug)]
/// struct OrderPlaced { id: u64, total_cents: u64 }
///
/// let event = Event::new("order.placed", OrderPlaced { id: 7, total_cents: 1250 })?
///     .with_key(7_u64)
///     .with_metadata("tenant", "acme");
/// assert_eq!(event.kind().as_str(), "order.placed");
/// assert_eq!(event.payload().total_cents, 1250);
/// assert_eq!(event.payload().id, 7);
/// assert_eq!(event.key(), Some(&Key::from(7_u64)));
/// assert_eq!(event.metadata().get("tenant").map(String::as_str), Some("acme"));
/// // Without an explicit idempotency key, the event id is used.
/// assert_eq!(event.idempotency_key(), Key::from(event.id()));
/// # Ok::<(), flowgate::CoreError>(())
/// ```
pub struct Event<T> {
    inner: Arc<Envelope<T>>,
}

impl<T> Clone for Event<T> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<T> Event<T> {
    /// Creates an event of type `kind` with a fresh id and the current time.
    ///
    /// # Errors
    ///
    /// [`CoreError::InvalidEventType`] when `kind` is not a valid type name (see
    /// [`EventType::new`]).
    ///
    /// ```
    /// # use flowgate::{CoreError, Event};
    /// let e = Event::new("order.placed", 42_u32)?;
    /// assert_eq!(*e.payload(), 42);
    /// assert!(matches!(Event::new("bad name", 1), Err(CoreError::InvalidEventType { .. })));
    /// # Ok::<(), CoreError>(())
    /// ```
    pub fn new(kind: impl AsRef<str>, payload: T) -> Result<Self, CoreError> {
        Ok(Self::with_type(EventType::new(kind)?, payload))
    }

    /// Creates an event from an already validated type name.
    ///
    /// ```
    /// # use flowgate::{Event, EventType};
    /// let kind = EventType::new("tick")?;
    /// let a = Event::with_type(kind.clone(), 1);
    /// let b = Event::with_type(kind, 2);
    /// assert!(a.id() < b.id());
    /// # Ok::<(), flowgate::CoreError>(())
    /// ```
    pub fn with_type(kind: EventType, payload: T) -> Self {
        Self::from_shared(kind, Arc::new(payload))
    }

    /// Creates an event around a payload that is already shared.
    ///
    /// ```
    /// # use flowgate::{Event, EventType};
    /// use std::sync::Arc;
    /// let payload = Arc::new(String::from("big"));
    /// let event = Event::from_shared(EventType::new("blob")?, Arc::clone(&payload));
    /// assert!(Arc::ptr_eq(event.shared_payload(), &payload));
    /// # Ok::<(), flowgate::CoreError>(())
    /// ```
    pub fn from_shared(kind: EventType, payload: Arc<T>) -> Self {
        Self {
            inner: Arc::new(Envelope {
                id: EventId::new(),
                kind,
                timestamp: SystemTime::now(),
                payload,
                metadata: Metadata::new(),
                key: None,
                idempotency_key: None,
            }),
        }
    }

    fn envelope_mut(&mut self) -> &mut Envelope<T> {
        Arc::make_mut(&mut self.inner)
    }

    /// The metadata, to change in place (copies a shared envelope first).
    pub(crate) fn metadata_mut(&mut self) -> &mut Metadata {
        &mut self.envelope_mut().metadata
    }

    /// Sets the ordering key: events with the same key are handled in order, one at a time.
    ///
    /// ```
    /// # use flowgate::Event;
    /// let e = Event::new("a", ())?.with_key("k");
    /// assert_eq!(e.key().unwrap().as_str(), "k");
    /// # Ok::<(), flowgate::CoreError>(())
    /// ```
    #[must_use]
    pub fn with_key(mut self, key: impl Into<Key>) -> Self {
        self.envelope_mut().key = Some(key.into());
        self
    }

    /// Sets the idempotency key used by exactly-once delivery (default: the event id).
    ///
    /// ```
    /// # use flowgate::Event;
    /// let e = Event::new("a", ())?.with_idempotency_key("payment-9");
    /// assert_eq!(e.idempotency_key().as_str(), "payment-9");
    /// # Ok::<(), flowgate::CoreError>(())
    /// ```
    #[must_use]
    pub fn with_idempotency_key(mut self, key: impl Into<Key>) -> Self {
        self.envelope_mut().idempotency_key = Some(key.into());
        self
    }

    /// Adds one metadata entry, replacing an earlier value of the same name.
    ///
    /// ```
    /// # use flowgate::Event;
    /// let e = Event::new("a", ())?.with_metadata("trace", "abc");
    /// assert_eq!(e.metadata()["trace"], "abc");
    /// # Ok::<(), flowgate::CoreError>(())
    /// ```
    #[must_use]
    pub fn with_metadata(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.envelope_mut()
            .metadata
            .insert(name.into(), value.into());
        self
    }

    /// Sets the timestamp (for example when re-creating an event read from storage).
    ///
    /// ```
    /// # use flowgate::Event;
    /// use std::time::SystemTime;
    /// let e = Event::new("a", ())?.with_timestamp(SystemTime::UNIX_EPOCH);
    /// assert_eq!(e.timestamp(), SystemTime::UNIX_EPOCH);
    /// # Ok::<(), flowgate::CoreError>(())
    /// ```
    #[must_use]
    pub fn with_timestamp(mut self, timestamp: SystemTime) -> Self {
        self.envelope_mut().timestamp = timestamp;
        self
    }

    /// Sets the id (for example when re-creating an event read from storage).
    ///
    /// ```
    /// # use flowgate::{Event, EventId};
    /// let id = EventId::new();
    /// assert_eq!(Event::new("a", ())?.with_id(id).id(), id);
    /// # Ok::<(), flowgate::CoreError>(())
    /// ```
    #[must_use]
    pub fn with_id(mut self, id: EventId) -> Self {
        self.envelope_mut().id = id;
        self
    }

    /// The event id.
    ///
    /// ```
    /// # use flowgate::Event;
    /// let e = Event::new("a", ())?;
    /// assert_eq!(e.clone().id(), e.id(), "clones share the id");
    /// # Ok::<(), flowgate::CoreError>(())
    /// ```
    pub fn id(&self) -> EventId {
        self.inner.id
    }

    /// The event type name.
    ///
    /// ```
    /// # use flowgate::Event;
    /// assert_eq!(Event::new("user.created", ())?.kind().as_str(), "user.created");
    /// # Ok::<(), flowgate::CoreError>(())
    /// ```
    pub fn kind(&self) -> &EventType {
        &self.inner.kind
    }

    /// When the event was created.
    ///
    /// ```
    /// # use flowgate::Event;
    /// use std::time::SystemTime;
    /// let before = SystemTime::now();
    /// assert!(Event::new("a", ())?.timestamp() >= before);
    /// # Ok::<(), flowgate::CoreError>(())
    /// ```
    pub fn timestamp(&self) -> SystemTime {
        self.inner.timestamp
    }

    /// The payload.
    ///
    /// ```
    /// # use flowgate::Event;
    /// assert_eq!(Event::new("a", "hello")?.payload().len(), 5);
    /// # Ok::<(), flowgate::CoreError>(())
    /// ```
    pub fn payload(&self) -> &T {
        &self.inner.payload
    }

    /// The payload's shared allocation (fan-out never copies it).
    ///
    /// ```
    /// # use flowgate::Event;
    /// use std::sync::Arc;
    /// let e = Event::new("a", vec![1, 2, 3])?;
    /// let copy = e.clone();
    /// assert!(Arc::ptr_eq(e.shared_payload(), copy.shared_payload()));
    /// # Ok::<(), flowgate::CoreError>(())
    /// ```
    pub fn shared_payload(&self) -> &Arc<T> {
        &self.inner.payload
    }

    /// The metadata.
    ///
    /// ```
    /// # use flowgate::Event;
    /// assert!(Event::new("a", ())?.metadata().is_empty());
    /// # Ok::<(), flowgate::CoreError>(())
    /// ```
    pub fn metadata(&self) -> &Metadata {
        &self.inner.metadata
    }

    /// The ordering key, if any.
    ///
    /// ```
    /// # use flowgate::Event;
    /// assert!(Event::new("a", ())?.key().is_none());
    /// assert_eq!(Event::new("a", ())?.with_key(9_u64).key().unwrap().as_str(), "9");
    /// # Ok::<(), flowgate::CoreError>(())
    /// ```
    pub fn key(&self) -> Option<&Key> {
        self.inner.key.as_ref()
    }

    /// The idempotency key: the one set with [`with_idempotency_key`](Self::with_idempotency_key),
    /// or else the event id.
    ///
    /// ```
    /// # use flowgate::{Event, Key};
    /// let e = Event::new("a", ())?;
    /// assert_eq!(e.idempotency_key(), Key::from(e.id()));
    /// # Ok::<(), flowgate::CoreError>(())
    /// ```
    pub fn idempotency_key(&self) -> Key {
        self.inner
            .idempotency_key
            .clone()
            .unwrap_or_else(|| Key::from(self.inner.id))
    }

    /// A 128-bit fingerprint of [`idempotency_key`](Self::idempotency_key), computed without
    /// allocating: XXH3-128 of the key's string, except that a key which is a UUID in its
    /// canonical form (lowercase, hyphenated: what an id-derived key is) is hashed from its 16
    /// bytes. Equal keys give equal fingerprints; two different keys collide with probability
    /// about 2⁻¹²⁸ per pair, so dedupe windows can store fingerprints instead of strings.
    ///
    /// ```
    /// # use flowgate::Event;
    /// let a = Event::new("a", ())?.with_idempotency_key("pay-1");
    /// let b = Event::new("b", ())?.with_idempotency_key("pay-1");
    /// assert_eq!(a.idempotency_fingerprint(), b.idempotency_fingerprint());
    /// let by_id = Event::new("c", ())?;
    /// let same = Event::new("c", ())?.with_idempotency_key(by_id.id());
    /// assert_eq!(by_id.idempotency_fingerprint(), same.idempotency_fingerprint());
    /// let upper = Event::new("c", ())?.with_idempotency_key(by_id.id().to_string().to_uppercase());
    /// assert_ne!(by_id.idempotency_fingerprint(), upper.idempotency_fingerprint(), "another key");
    /// # Ok::<(), flowgate::CoreError>(())
    /// ```
    pub fn idempotency_fingerprint(&self) -> u128 {
        match &self.inner.idempotency_key {
            None => uuid_fingerprint(self.inner.id.0),
            Some(key) => match canonical_uuid(key.as_str()) {
                Some(uuid) => uuid_fingerprint(uuid),
                None => xxhash_rust::xxh3::xxh3_128(key.as_str().as_bytes()),
            },
        }
    }

    /// Whether two handles share one envelope (true for clones of one event).
    ///
    /// ```
    /// # use flowgate::Event;
    /// let e = Event::new("a", ())?;
    /// assert!(Event::ptr_eq(&e, &e.clone()));
    /// # Ok::<(), flowgate::CoreError>(())
    /// ```
    pub fn ptr_eq(a: &Self, b: &Self) -> bool {
        Arc::ptr_eq(&a.inner, &b.inner)
    }
}

impl<T: fmt::Debug> fmt::Debug for Event<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = &*self.inner;
        f.debug_struct("Event")
            .field("id", &e.id)
            .field("kind", &e.kind)
            .field("key", &e.key)
            .field("payload", &e.payload)
            .finish_non_exhaustive()
    }
}

/// The fingerprint of a UUID key: XXH3-128 of its 16 bytes.
fn uuid_fingerprint(uuid: Uuid) -> u128 {
    xxhash_rust::xxh3::xxh3_128(uuid.as_bytes())
}

/// `key` as a UUID, if it is one in canonical form (lowercase, hyphenated), the form
/// `Key::from(Uuid)` produces.
fn canonical_uuid(key: &str) -> Option<Uuid> {
    if key.len() != uuid::fmt::Hyphenated::LENGTH {
        return None;
    }
    let uuid = Uuid::try_parse(key).ok()?;
    let mut buffer = [0u8; uuid::fmt::Hyphenated::LENGTH];
    (uuid.hyphenated().encode_lower(&mut buffer) == key).then_some(uuid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn building_a_shared_event_copies_the_envelope_not_the_payload() {
        let a = Event::new("a.b", vec![1, 2, 3]).unwrap();
        let b = a.clone().with_key("k");
        assert!(
            a.key().is_none(),
            "the other holder must not see the change"
        );
        assert_eq!(b.key().unwrap().as_str(), "k");
        assert!(Arc::ptr_eq(a.shared_payload(), b.shared_payload()));
    }

    #[test]
    fn ids_from_one_thread_strictly_increase_and_are_valid_v7() {
        let ids: Vec<EventId> = (0..100_000).map(|_| EventId::new()).collect();
        for pair in ids.windows(2) {
            assert!(pair[0] < pair[1], "{:?} !< {:?}", pair[0], pair[1]);
        }
        for id in &ids[..10] {
            assert_eq!(id.as_uuid().get_version_num(), 7);
            assert_eq!(id.as_uuid().get_variant(), uuid::Variant::RFC4122);
        }
        let now_ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis();
        let (secs, nanos) = ids[0].as_uuid().get_timestamp().unwrap().to_unix();
        let id_ms = u128::from(secs) * 1000 + u128::from(nanos / 1_000_000);
        assert!(
            now_ms.abs_diff(id_ms) < 5_000,
            "timestamp {id_ms} far from now {now_ms}"
        );
    }

    #[test]
    fn invalid_type_is_a_typed_error() {
        assert!(matches!(
            Event::new("", 1),
            Err(CoreError::InvalidEventType { .. })
        ));
    }
}
