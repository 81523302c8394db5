//! Event type names and the patterns that match them.
//!
//! An event type name is a dot-separated list of segments, such as `order.created` or
//! `billing.invoice.paid`. Each segment is one or more ASCII letters, digits, `_` or `-`; the
//! whole name is at most [`MAX_NAME_LEN`] bytes. Names are case-sensitive.
//!
//! A [`Pattern`] is a name whose segments may also be wildcards:
//!
//! | pattern          | matches                                   | does not match        |
//! |------------------|-------------------------------------------|-----------------------|
//! | `order.created`  | `order.created`                           | `order.created.v2`    |
//! | `order.*`        | `order.created`, `order.paid`             | `order`, `order.a.b`  |
//! | `*.created`      | `order.created`, `user.created`           | `a.b.created`         |
//! | `order.>`        | `order.created`, `order.line.added`       | `order`               |
//! | `>`              | every name                                |                       |
//!
//! `*` stands for exactly one segment, anywhere; `>` stands for one or more trailing segments and
//! may only be the last segment.

use std::fmt;

// Data, not synchronization: public types use std's `Arc` whatever the cfg, so the API
// is the same under loom.
use crate::CoreError;
use std::sync::Arc;

/// The longest event type name or pattern accepted, in bytes.
///
/// ```
/// # use flowgate::{EventType, MAX_NAME_LEN};
/// assert!(EventType::new("a".repeat(MAX_NAME_LEN)).is_ok());
/// assert!(EventType::new("a".repeat(MAX_NAME_LEN + 1)).is_err());
/// ```
pub const MAX_NAME_LEN: usize = 255;

fn is_segment_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// Checks one segment of a name; `Err` carries the reason.
fn check_segment(segment: &str) -> Result<(), &'static str> {
    if segment.is_empty() {
        return Err("empty segment (two dots in a row, or a leading or trailing dot)");
    }
    if !segment.bytes().all(is_segment_byte) {
        return Err("segments may contain only ASCII letters, digits, '_' and '-'");
    }
    Ok(())
}

fn check_length(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("the name is empty");
    }
    if name.len() > MAX_NAME_LEN {
        return Err("the name is longer than 255 bytes");
    }
    Ok(())
}

/// A validated event type name such as `order.created`.
///
/// Dot-separated segments of ASCII letters, digits, `_` or `-`, at most [`MAX_NAME_LEN`]
/// bytes, case-sensitive. Cheap to clone (one reference count).
///
/// ```
/// use flowgate::EventType;
///
/// let kind = EventType::new("order.created")?;
/// assert_eq!(kind.as_str(), "order.created");
/// assert!(EventType::new("order..created").is_err());
/// # Ok::<(), flowgate::CoreError>(())
/// ```
#[derive(Clone)]
pub struct EventType {
    name: Arc<str>,
    /// [`stable_name_hash`] of `name`, computed once so that routing never hashes the name.
    hash: u64,
}

/// FNV-1a (64-bit) of a name: cheap for short names, the same in every process and release.
fn stable_name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

impl PartialEq for EventType {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.name, &other.name) || (self.hash == other.hash && self.name == other.name)
    }
}

impl Eq for EventType {}

impl std::hash::Hash for EventType {
    /// Writes the precomputed hash only (equal names have equal hashes), so a map keyed by
    /// `EventType` with [`PrehashedState`] does no hashing work on lookup.
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl PartialOrd for EventType {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for EventType {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.name.cmp(&other.name)
    }
}

/// A `BuildHasher` for maps keyed by [`EventType`]: it passes the name's precomputed hash
/// through instead of hashing again.
///
/// ```
/// use std::collections::HashMap;
/// use flowgate::{EventType, PrehashedState};
///
/// let mut routes: HashMap<EventType, u32, PrehashedState> = HashMap::default();
/// routes.insert(EventType::new("order.placed")?, 1);
/// assert_eq!(routes.get(&EventType::new("order.placed")?), Some(&1));
/// # Ok::<(), flowgate::CoreError>(())
/// ```
pub type PrehashedState = std::hash::BuildHasherDefault<PrehashedHasher>;

/// The hasher behind [`PrehashedState`].
///
/// ```
/// use std::hash::{BuildHasher, Hash, Hasher};
/// # use flowgate::{EventType, PrehashedState};
/// let kind = EventType::new("a.b")?;
/// let state = PrehashedState::default();
/// let mut hasher = state.build_hasher();
/// kind.hash(&mut hasher);
/// assert_eq!(hasher.finish(), state.hash_one(&EventType::new("a.b")?));
/// # Ok::<(), flowgate::CoreError>(())
/// ```
#[derive(Debug, Default, Clone, Copy)]
pub struct PrehashedHasher(u64);

impl std::hash::Hasher for PrehashedHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Not used by `EventType`; folds other keys in so the hasher stays a valid hasher.
        for &byte in bytes {
            self.0 = (self.0 ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn write_u64(&mut self, hash: u64) {
        self.0 ^= hash;
    }
}

impl EventType {
    /// Validates `name` and makes it an event type.
    ///
    /// # Errors
    ///
    /// [`CoreError::InvalidEventType`] when the name is empty, too long, or has a segment that
    /// is empty or holds a character other than ASCII letters, digits, `_` and `-`.
    ///
    /// ```
    /// # use flowgate::{CoreError, EventType};
    /// assert!(EventType::new("billing.invoice.paid").is_ok());
    /// assert!(matches!(EventType::new(""), Err(CoreError::InvalidEventType { .. })));
    /// ```
    pub fn new(name: impl AsRef<str>) -> Result<Self, CoreError> {
        let name = name.as_ref();
        let invalid = |reason: &'static str| CoreError::InvalidEventType {
            name: name.to_owned(),
            reason,
        };
        check_length(name).map_err(invalid)?;
        for segment in name.split('.') {
            check_segment(segment).map_err(invalid)?;
        }
        Ok(Self {
            name: Arc::from(name),
            hash: stable_name_hash(name),
        })
    }

    /// The name as a string slice.
    ///
    /// ```
    /// # use flowgate::EventType;
    /// assert_eq!(EventType::new("a.b")?.as_str(), "a.b");
    /// # Ok::<(), flowgate::CoreError>(())
    /// ```
    pub fn as_str(&self) -> &str {
        &self.name
    }
}

impl fmt::Debug for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.name, f)
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl AsRef<str> for EventType {
    fn as_ref(&self) -> &str {
        &self.name
    }
}

impl TryFrom<&str> for EventType {
    type Error = CoreError;
    fn try_from(name: &str) -> Result<Self, CoreError> {
        Self::new(name)
    }
}

impl TryFrom<String> for EventType {
    type Error = CoreError;
    fn try_from(name: String) -> Result<Self, CoreError> {
        Self::new(name)
    }
}

/// One segment of a parsed pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Literal(Box<str>),
    /// `*`: exactly one segment.
    One,
    /// `>`: one or more trailing segments.
    Rest,
}

/// A subscription pattern over event type names, such as `order.*` or `order.>`.
///
/// A pattern without wildcards matches exactly one name.
///
/// | pattern          | matches                                   | does not match        |
/// |------------------|-------------------------------------------|-----------------------|
/// | `order.created`  | `order.created`                           | `order.created.v2`    |
/// | `order.*`        | `order.created`, `order.paid`             | `order`, `order.a.b`  |
/// | `*.created`      | `order.created`, `user.created`           | `a.b.created`         |
/// | `order.>`        | `order.created`, `order.line.added`       | `order`               |
/// | `>`              | every name                                |                       |
///
/// `*` stands for exactly one segment, anywhere; `>` stands for one or more trailing segments and
/// may only be the last segment.
///
/// ```
/// use flowgate::Pattern;
///
/// let p = Pattern::new("order.*")?;
/// assert!(p.matches("order.created"));
/// assert!(!p.matches("order.line.added"));
/// assert!(Pattern::new("order.>")?.matches("order.line.added"));
/// assert!(Pattern::new("order.>.x").is_err());
/// # Ok::<(), flowgate::CoreError>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Pattern {
    source: Arc<str>,
    segments: Box<[Segment]>,
}

impl Pattern {
    /// Parses a pattern.
    ///
    /// # Errors
    ///
    /// [`CoreError::InvalidPattern`] when the pattern is empty or too long, a segment is empty
    /// or holds a character other than ASCII letters, digits, `_`, `-`, or a wildcard segment
    /// (`*`, `>`) mixes with other characters, or `>` is not the last segment.
    ///
    /// ```
    /// # use flowgate::{CoreError, Pattern};
    /// assert!(Pattern::new("order.*")?.matches("order.paid"));
    /// assert!(matches!(Pattern::new("order*"), Err(CoreError::InvalidPattern { .. })));
    /// # Ok::<(), CoreError>(())
    /// ```
    pub fn new(pattern: impl AsRef<str>) -> Result<Self, CoreError> {
        let source = pattern.as_ref();
        let invalid = |reason: &'static str| CoreError::InvalidPattern {
            pattern: source.to_owned(),
            reason,
        };
        check_length(source).map_err(invalid)?;
        let count = source.split('.').count();
        let mut segments = Vec::with_capacity(count);
        for (index, segment) in source.split('.').enumerate() {
            let parsed = match segment {
                "*" => Segment::One,
                ">" if index + 1 == count => Segment::Rest,
                ">" => return Err(invalid("'>' may only be the last segment")),
                _ if segment.contains(['*', '>']) => {
                    return Err(invalid(
                        "a wildcard must be a whole segment: write 'order.*', not 'order*'",
                    ))
                }
                _ => {
                    check_segment(segment).map_err(invalid)?;
                    Segment::Literal(segment.into())
                }
            };
            segments.push(parsed);
        }
        Ok(Self {
            source: Arc::from(source),
            segments: segments.into_boxed_slice(),
        })
    }

    /// The pattern as written.
    ///
    /// ```
    /// # use flowgate::Pattern;
    /// assert_eq!(Pattern::new("a.*")?.as_str(), "a.*");
    /// # Ok::<(), flowgate::CoreError>(())
    /// ```
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The exact name this pattern matches, when it has no wildcard.
    ///
    /// ```
    /// # use flowgate::Pattern;
    /// assert_eq!(Pattern::new("a.b")?.as_exact(), Some("a.b"));
    /// assert_eq!(Pattern::new("a.*")?.as_exact(), None);
    /// # Ok::<(), flowgate::CoreError>(())
    /// ```
    pub fn as_exact(&self) -> Option<&str> {
        self.segments
            .iter()
            .all(|s| matches!(s, Segment::Literal(_)))
            .then_some(&*self.source)
    }

    /// Whether `name` matches this pattern.
    ///
    /// ```
    /// # use flowgate::Pattern;
    /// assert!(Pattern::new("*.created")?.matches("user.created"));
    /// # Ok::<(), flowgate::CoreError>(())
    /// ```
    pub fn matches(&self, name: &str) -> bool {
        let mut parts = name.split('.');
        for segment in &*self.segments {
            match segment {
                Segment::Rest => return parts.next().is_some(),
                Segment::One => {
                    if parts.next().is_none() {
                        return false;
                    }
                }
                Segment::Literal(lit) => {
                    if parts.next() != Some(&**lit) {
                        return false;
                    }
                }
            }
        }
        parts.next().is_none()
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pattern({:?})", &*self.source)
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl TryFrom<&str> for Pattern {
    type Error = CoreError;
    fn try_from(pattern: &str) -> Result<Self, CoreError> {
        Self::new(pattern)
    }
}

impl From<EventType> for Pattern {
    fn from(kind: EventType) -> Self {
        let segments = kind
            .as_str()
            .split('.')
            .map(|s| Segment::Literal(s.into()))
            .collect();
        Self {
            source: kind.name,
            segments,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_reject_bad_input_with_a_reason() {
        for bad in ["", ".", "a.", ".a", "a..b", "a b", "ä", "a.*", "a.>"] {
            let err = EventType::new(bad).unwrap_err();
            assert!(
                matches!(err, CoreError::InvalidEventType { .. }),
                "{bad:?} gave {err:?}"
            );
            assert!(err.to_string().contains("event type"), "{err}");
        }
        let long = "a".repeat(MAX_NAME_LEN + 1);
        assert!(EventType::new(long).is_err());
        assert!(EventType::new("a".repeat(MAX_NAME_LEN)).is_ok());
    }

    #[test]
    fn the_name_hash_is_pinned() {
        // Routing maps rely on this function; pin its output so no change slips in unnoticed.
        assert_eq!(stable_name_hash(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(stable_name_hash("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(
            EventType::new("order.placed").unwrap().hash,
            stable_name_hash("order.placed")
        );
    }

    #[test]
    fn patterns_reject_bad_input() {
        for bad in ["", "a..b", "a.>.b", "a*", "a.b>", "*x", ">.a"] {
            assert!(
                matches!(Pattern::new(bad), Err(CoreError::InvalidPattern { .. })),
                "{bad:?} was accepted"
            );
        }
    }

    #[test]
    fn wildcards_match_as_documented() {
        let cases = [
            ("order.created", "order.created", true),
            ("order.created", "order.created.v2", false),
            ("order.*", "order.created", true),
            ("order.*", "order", false),
            ("order.*", "order.a.b", false),
            ("*.created", "user.created", true),
            ("*.created", "a.b.created", false),
            ("order.>", "order.created", true),
            ("order.>", "order.line.added", true),
            ("order.>", "order", false),
            (">", "anything.at.all", true),
            ("*", "one", true),
            ("*", "one.two", false),
        ];
        for (pattern, name, expected) in cases {
            assert_eq!(
                Pattern::new(pattern).unwrap().matches(name),
                expected,
                "{pattern} vs {name}"
            );
        }
    }
}
