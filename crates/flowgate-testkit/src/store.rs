//! The event store's contract checker.
//!
//! A [`StoreRecorder`] records, while a test runs, every append (the expected version, the
//! event ids, and whether it was accepted with which versions and positions or refused with
//! which actual version), every event each subscriber saw, and a final read of the whole store.
//! [`check`] then reports every way that history breaks the store contract:
//!
//! 1. **Positions**: the accepted events' global positions are exactly `0..n`, each once.
//! 2. **Versions**: each stream's accepted versions are exactly `0..k`, each once, in position
//!    order.
//! 3. **Expected versions**: an accepted append matched its expectation (the version before
//!    it), and a refused one did not (its reported actual version fails the expectation).
//! 4. **Readable**: the final read returns every accepted event at its position, with its
//!    stream, version and id, and nothing else. In a history recorded with retention
//!    ([`StoreRecorder::with_retention`]) events may be missing from it (removed), but what it
//!    returns must still be exactly what was accepted.
//! 5. **Subscribers**: each subscriber saw exactly the accepted events of its target (for a
//!    consumer group member, of its share of the category) at or after its start (a global
//!    position, or a version for a stream subscriber), in order, with no gap and no duplicate,
//!    except events inside a range it was told retention removed (`StoreError::Truncated`);
//!    and every event inside such a range is really gone from the final read: a truncation
//!    signal never hides an event that still exists.
//!
//! A checker that cannot fail is worthless: each rule has a test that feeds it a hand-made
//! broken history and sees it fail.
//!
//! ```
//! use flowgate::store::{ExpectedVersion, Start, Store, Target};
//! use flowgate::Event;
//! use flowgate_testkit::store::{check, StoreRecorder};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = Store::<u32>::new();
//! let recorder = StoreRecorder::new();
//! let mut sub = store.subscribe(Target::All).start(Start::Beginning).open()?;
//! let seen = recorder.subscriber("all", Target::All, 0);
//! for i in 0..3 {
//!     let event = Event::new("e", i)?;
//!     let result = store.append("s-1", ExpectedVersion::Any, event.clone());
//!     recorder.append("s-1", ExpectedVersion::Any, &[event.id()], &result);
//! }
//! for _ in 0..3 {
//!     seen.saw(&sub.next().await.unwrap()?);
//! }
//! recorder.final_read(&store.read_all(0, usize::MAX)?.events);
//! let report = check(&recorder.history());
//! assert!(report.is_ok(), "{report}");
//! # Ok(())
//! # }
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use std::num::NonZeroU32;

use flowgate_core::{partition_of_hash, stable_hash, EventId};
use flowgate_store::{category_of, id_of, Appended, ExpectedVersion, Recorded, StoreError, Target};

/// One event as the store reported it.
///
/// ```
/// use flowgate::EventId;
/// use flowgate_testkit::store::SeenEvent;
/// let e = SeenEvent { position: 0, stream: "a-1".into(), version: 0, id: EventId::new() };
/// assert_eq!(e.clone(), e);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenEvent {
    /// Global position.
    pub position: u64,
    /// Stream name.
    pub stream: String,
    /// Version in the stream.
    pub version: u64,
    /// The event's id.
    pub id: EventId,
}

impl SeenEvent {
    /// What a store handed out.
    ///
    /// ```
    /// use flowgate::store::{ExpectedVersion, Store};
    /// use flowgate::Event;
    /// use flowgate_testkit::store::SeenEvent;
    /// let store = Store::<u32>::new();
    /// store.append("a-1", ExpectedVersion::Any, Event::new("e", 1)?)?;
    /// let seen = SeenEvent::of(&store.read_all(0, 1)?.events[0]);
    /// assert_eq!((seen.position, seen.version), (0, 0));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn of<T>(recorded: &Recorded<T>) -> Self {
        Self {
            position: recorded.position(),
            stream: recorded.stream().to_owned(),
            version: recorded.version(),
            id: recorded.event().id(),
        }
    }
}

/// How an append ended.
///
/// ```
/// use flowgate_testkit::store::AppendOutcome;
/// let o = AppendOutcome::Refused { actual: Some(3) };
/// assert_ne!(o, AppendOutcome::Accepted { first_version: 0, first_position: 0 });
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppendOutcome {
    /// Accepted; its events got consecutive versions and positions from these.
    Accepted {
        /// Version of the first event.
        first_version: u64,
        /// Global position of the first event.
        first_position: u64,
    },
    /// Refused for a wrong expected version; the store reported this actual version.
    Refused {
        /// The actual version (`None`: no stream).
        actual: Option<u64>,
    },
    /// Failed for another reason (not checked).
    Failed(String),
}

/// One recorded append.
///
/// ```
/// use flowgate::store::ExpectedVersion;
/// use flowgate::EventId;
/// use flowgate_testkit::store::{AppendOutcome, AppendRecord};
/// let a = AppendRecord {
///     stream: "a-1".into(),
///     expected: ExpectedVersion::NoStream,
///     ids: vec![EventId::new()],
///     outcome: AppendOutcome::Accepted { first_version: 0, first_position: 0 },
/// };
/// assert_eq!(a.ids.len(), 1);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendRecord {
    /// The stream appended to.
    pub stream: String,
    /// The expectation passed.
    pub expected: ExpectedVersion,
    /// The ids of the events, in order.
    pub ids: Vec<EventId>,
    /// What happened.
    pub outcome: AppendOutcome,
}

/// What one subscriber saw.
///
/// ```
/// use flowgate::store::Target;
/// use flowgate_testkit::store::SubscriberRecord;
/// let s = SubscriberRecord {
///     name: "p".into(),
///     target: Target::All,
///     group: None,
///     start: 0,
///     seen: vec![],
///     truncated: vec![],
/// };
/// assert!(s.seen.is_empty());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriberRecord {
    /// A name for reports.
    pub name: String,
    /// What it subscribed to.
    pub target: Target,
    /// `(member, size)` for a consumer group member of a category.
    pub group: Option<(u32, u32)>,
    /// Where it started: a global position, or a version for a stream target.
    pub start: u64,
    /// The ranges `missed_from..resume_at` it was told retention removed.
    pub truncated: Vec<(u64, u64)>,
    /// The events it saw, in the order it saw them.
    pub seen: Vec<SeenEvent>,
}

/// A whole recorded run.
///
/// ```
/// use flowgate_testkit::store::{check, StoreHistory};
/// assert!(check(&StoreHistory::default()).is_ok(), "nothing happened, nothing broke");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreHistory {
    /// Every append, in the order they were recorded.
    pub appends: Vec<AppendRecord>,
    /// Every subscriber.
    pub subscribers: Vec<SubscriberRecord>,
    /// A read of every event from position 0 after the run, if one was made.
    pub final_read: Option<Vec<SeenEvent>>,
    /// Whether the store had retention: accepted events may then be missing from the final
    /// read.
    pub retention: bool,
}

/// Records a run; cheap to clone (clones share the history) and safe to use from many threads.
///
/// ```
/// use flowgate_testkit::store::StoreRecorder;
/// let recorder = StoreRecorder::new();
/// assert!(recorder.history().appends.is_empty());
/// ```
#[derive(Debug, Clone, Default)]
pub struct StoreRecorder {
    history: Arc<Mutex<StoreHistory>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A test that panicked mid-record leaves a history worth reporting.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl StoreRecorder {
    /// An empty recorder.
    ///
    /// ```
    /// # use flowgate_testkit::store::StoreRecorder;
    /// let recorder = StoreRecorder::new();
    /// # drop(recorder);
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// A recorder for a store with retention: accepted events may be missing from the final
    /// read (rule 4), and subscribers may have been told of removed ranges (rule 5).
    ///
    /// ```
    /// # use flowgate_testkit::store::StoreRecorder;
    /// assert!(StoreRecorder::with_retention().history().retention);
    /// ```
    pub fn with_retention() -> Self {
        let recorder = Self::default();
        lock(&recorder.history).retention = true;
        recorder
    }

    /// Records one append and its result.
    ///
    /// ```
    /// use flowgate::store::{ExpectedVersion, Store};
    /// use flowgate::Event;
    /// use flowgate_testkit::store::{AppendOutcome, StoreRecorder};
    /// let (store, recorder) = (Store::<u32>::new(), StoreRecorder::new());
    /// let e = Event::new("e", 1)?;
    /// let result = store.append("a-1", ExpectedVersion::Exact(4), e.clone());
    /// recorder.append("a-1", ExpectedVersion::Exact(4), &[e.id()], &result);
    /// assert_eq!(recorder.history().appends[0].outcome, AppendOutcome::Refused { actual: None });
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        ids: &[EventId],
        result: &Result<Appended, StoreError>,
    ) {
        let outcome = match result {
            Ok(appended) => AppendOutcome::Accepted {
                first_version: appended.first_version,
                first_position: appended.first_position,
            },
            Err(StoreError::WrongExpectedVersion { actual, .. }) => {
                AppendOutcome::Refused { actual: *actual }
            }
            Err(other) => AppendOutcome::Failed(other.to_string()),
        };
        lock(&self.history).appends.push(AppendRecord {
            stream: stream.to_owned(),
            expected,
            ids: ids.to_vec(),
            outcome,
        });
    }

    /// Adds a subscriber; record what it sees through the returned handle.
    ///
    /// ```
    /// use flowgate::store::Target;
    /// use flowgate_testkit::store::StoreRecorder;
    /// let recorder = StoreRecorder::new();
    /// let seen = recorder.subscriber("projection", Target::category("account"), 0);
    /// # drop(seen);
    /// assert_eq!(recorder.history().subscribers.len(), 1);
    /// ```
    pub fn subscriber(&self, name: &str, target: Target, start: u64) -> SubscriberLog {
        self.add_subscriber(name, target, None, start)
    }

    /// Adds member `member` of a consumer group of `size` over `category`.
    ///
    /// ```
    /// use flowgate_testkit::store::StoreRecorder;
    /// let recorder = StoreRecorder::new();
    /// let seen = recorder.group_member("billing-0", "account", 0, 2, 0);
    /// # drop(seen);
    /// assert_eq!(recorder.history().subscribers[0].group, Some((0, 2)));
    /// ```
    pub fn group_member(
        &self,
        name: &str,
        category: &str,
        member: u32,
        size: u32,
        start: u64,
    ) -> SubscriberLog {
        self.add_subscriber(
            name,
            Target::category(category),
            Some((member, size)),
            start,
        )
    }

    fn add_subscriber(
        &self,
        name: &str,
        target: Target,
        group: Option<(u32, u32)>,
        start: u64,
    ) -> SubscriberLog {
        let mut history = lock(&self.history);
        history.subscribers.push(SubscriberRecord {
            name: name.to_owned(),
            target,
            group,
            start,
            seen: Vec::new(),
            truncated: Vec::new(),
        });
        SubscriberLog {
            history: Arc::clone(&self.history),
            index: history.subscribers.len() - 1,
        }
    }

    /// Records the final read of the whole store (every page, in order).
    ///
    /// ```
    /// use flowgate::store::Store;
    /// use flowgate_testkit::store::StoreRecorder;
    /// let (store, recorder) = (Store::<u32>::new(), StoreRecorder::new());
    /// recorder.final_read(&store.read_all(0, usize::MAX)?.events);
    /// assert_eq!(recorder.history().final_read, Some(vec![]));
    /// # Ok::<(), flowgate::store::StoreError>(())
    /// ```
    pub fn final_read<T>(&self, events: &[Recorded<T>]) {
        lock(&self.history).final_read = Some(events.iter().map(SeenEvent::of).collect());
    }

    /// A copy of the history so far.
    ///
    /// ```
    /// # use flowgate_testkit::store::StoreRecorder;
    /// assert!(StoreRecorder::new().history().final_read.is_none());
    /// ```
    pub fn history(&self) -> StoreHistory {
        lock(&self.history).clone()
    }
}

/// Records what one subscriber saw; from [`StoreRecorder::subscriber`].
///
/// ```
/// use flowgate::store::{ExpectedVersion, Store, Target};
/// use flowgate::Event;
/// use flowgate_testkit::store::StoreRecorder;
/// let (store, recorder) = (Store::<u32>::new(), StoreRecorder::new());
/// store.append("a-1", ExpectedVersion::Any, Event::new("e", 1)?)?;
/// let log = recorder.subscriber("s", Target::All, 0);
/// log.saw(&store.read_all(0, 1)?.events[0]);
/// assert_eq!(log.count(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct SubscriberLog {
    history: Arc<Mutex<StoreHistory>>,
    index: usize,
}

impl SubscriberLog {
    /// Records one event the subscriber received.
    ///
    /// ```
    /// # use flowgate::store::{ExpectedVersion, Store, Target};
    /// # use flowgate::Event;
    /// # use flowgate_testkit::store::StoreRecorder;
    /// # let (store, recorder) = (Store::<u32>::new(), StoreRecorder::new());
    /// # store.append("a-1", ExpectedVersion::Any, Event::new("e", 1)?)?;
    /// let log = recorder.subscriber("s", Target::All, 0);
    /// log.saw(&store.read_all(0, 1)?.events[0]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn saw<T>(&self, recorded: &Recorded<T>) {
        if let Some(sub) = lock(&self.history).subscribers.get_mut(self.index) {
            sub.seen.push(SeenEvent::of(recorded));
        }
    }

    /// Records one item of a subscription: an event, or a `StoreError::Truncated` signal
    /// (other errors are not recorded).
    ///
    /// ```
    /// use flowgate::store::{StoreError, Target};
    /// use flowgate_testkit::store::StoreRecorder;
    /// let recorder = StoreRecorder::with_retention();
    /// let log = recorder.subscriber("s", Target::All, 0);
    /// log.item::<u32>(&Err(StoreError::Truncated { missed_from: 0, resume_at: 4 }));
    /// assert_eq!(recorder.history().subscribers[0].truncated, [(0, 4)]);
    /// ```
    pub fn item<T>(&self, item: &Result<Recorded<T>, StoreError>) {
        match item {
            Ok(recorded) => self.saw(recorded),
            Err(StoreError::Truncated {
                missed_from,
                resume_at,
            }) => {
                if let Some(sub) = lock(&self.history).subscribers.get_mut(self.index) {
                    sub.truncated.push((*missed_from, *resume_at));
                }
            }
            Err(_) => {}
        }
    }

    /// How many events it saw so far.
    ///
    /// ```
    /// # use flowgate::store::Target;
    /// # use flowgate_testkit::store::StoreRecorder;
    /// let log = StoreRecorder::new().subscriber("s", Target::All, 0);
    /// assert_eq!(log.count(), 0);
    /// ```
    pub fn count(&self) -> usize {
        lock(&self.history)
            .subscribers
            .get(self.index)
            .map_or(0, |s| s.seen.len())
    }
}

/// One broken rule (see the [module docs](self) for the rules).
///
/// ```
/// use flowgate_testkit::store::StoreViolation;
/// let v = StoreViolation::PositionMissing { position: 3 };
/// assert!(v.to_string().contains('3'));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreViolation {
    /// Rule 1: no accepted event got this position, though a later one exists.
    PositionMissing {
        /// The missing position.
        position: u64,
    },
    /// Rule 1: two accepted events got this position.
    PositionReused {
        /// The position.
        position: u64,
    },
    /// Rule 2: the stream's accepted versions are not `0..k` in position order.
    VersionsBroken {
        /// The stream.
        stream: String,
        /// Its versions, in position order.
        versions: Vec<u64>,
    },
    /// Rule 3: an accepted append did not match its expectation.
    AcceptedAgainstExpectation {
        /// The stream.
        stream: String,
        /// The expectation.
        expected: ExpectedVersion,
        /// The version of the first event it wrote.
        first_version: u64,
    },
    /// Rule 3: a refused append reported an actual version that matched its expectation.
    RefusedThoughMatching {
        /// The stream.
        stream: String,
        /// The expectation.
        expected: ExpectedVersion,
        /// The actual version reported.
        actual: Option<u64>,
    },
    /// Rule 4: an accepted event was not in the final read (or differed there).
    NotReadable {
        /// Its position.
        position: u64,
    },
    /// Rule 4: the final read returned an event at a position no accepted event has.
    ReadUnknown {
        /// The position.
        position: u64,
    },
    /// Rule 5: a subscriber did not see an event of its target after its start.
    Missed {
        /// The subscriber.
        subscriber: String,
        /// The event's position.
        position: u64,
    },
    /// Rule 5: a subscriber saw an event more than once.
    Duplicated {
        /// The subscriber.
        subscriber: String,
        /// The event's position.
        position: u64,
    },
    /// Rule 5: a subscriber saw an event before one that precedes it.
    OutOfOrder {
        /// The subscriber.
        subscriber: String,
        /// The event seen too late.
        position: u64,
        /// The event seen before it.
        after: u64,
    },
    /// Rule 5: a subscriber was told an event was removed by retention, but the final read
    /// still returns it.
    FalselyTruncated {
        /// The subscriber.
        subscriber: String,
        /// The event's position.
        position: u64,
    },
    /// Rule 5: a subscriber saw an event that is not one of its target's accepted events
    /// after its start, or that differs from the accepted one.
    Unexpected {
        /// The subscriber.
        subscriber: String,
        /// The event's position.
        position: u64,
    },
}

impl fmt::Display for StoreViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PositionMissing { position } => {
                write!(f, "no accepted event has position {position}")
            }
            Self::PositionReused { position } => {
                write!(f, "two accepted events have position {position}")
            }
            Self::VersionsBroken { stream, versions } => {
                write!(f, "stream {stream}: versions in position order are {versions:?}, not 0..{}", versions.len())
            }
            Self::AcceptedAgainstExpectation { stream, expected, first_version } => write!(
                f,
                "stream {stream}: append expecting {expected} was accepted at version {first_version}"
            ),
            Self::RefusedThoughMatching { stream, expected, actual } => write!(
                f,
                "stream {stream}: append expecting {expected} was refused with actual {actual:?}, which matches"
            ),
            Self::NotReadable { position } => {
                write!(f, "accepted event at position {position} is not in the final read")
            }
            Self::ReadUnknown { position } => {
                write!(f, "the final read returned position {position}, which no accepted event has")
            }
            Self::Missed { subscriber, position } => {
                write!(f, "subscriber {subscriber} missed position {position}")
            }
            Self::Duplicated { subscriber, position } => {
                write!(f, "subscriber {subscriber} saw position {position} more than once")
            }
            Self::OutOfOrder { subscriber, position, after } => write!(
                f,
                "subscriber {subscriber} saw position {position} after {after}"
            ),
            Self::FalselyTruncated { subscriber, position } => write!(
                f,
                "subscriber {subscriber} was told position {position} was removed, but it is still readable"
            ),
            Self::Unexpected { subscriber, position } => write!(
                f,
                "subscriber {subscriber} saw position {position}, which is not an accepted event of its target after its start"
            ),
        }
    }
}

/// What [`check`] found.
///
/// ```
/// use flowgate_testkit::store::{check, StoreHistory};
/// let report = check(&StoreHistory::default());
/// assert!(report.is_ok());
/// assert!(report.violations.is_empty());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreReport {
    /// Every broken rule found.
    pub violations: Vec<StoreViolation>,
    /// Accepted events in the history.
    pub accepted_events: usize,
    /// Events seen by all subscribers together.
    pub seen_events: usize,
}

impl StoreReport {
    /// Whether no rule was broken.
    ///
    /// ```
    /// # use flowgate_testkit::store::{check, StoreHistory};
    /// assert!(check(&StoreHistory::default()).is_ok());
    /// ```
    pub fn is_ok(&self) -> bool {
        self.violations.is_empty()
    }
}

impl fmt::Display for StoreReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} accepted events, {} seen by subscribers, {} violation(s)",
            self.accepted_events,
            self.seen_events,
            self.violations.len()
        )?;
        for violation in self.violations.iter().take(20) {
            write!(f, "\n  - {violation}")?;
        }
        if self.violations.len() > 20 {
            write!(f, "\n  ... and {} more", self.violations.len() - 20)?;
        }
        Ok(())
    }
}

/// Checks a history against the store contract (the rules in the [module docs](self)).
///
/// ```
/// use flowgate::store::ExpectedVersion;
/// use flowgate::EventId;
/// use flowgate_testkit::store::{check, AppendOutcome, AppendRecord, StoreHistory, StoreViolation};
///
/// // Two accepted appends that both claim position 0.
/// let accepted = |stream: &str| AppendRecord {
///     stream: stream.into(),
///     expected: ExpectedVersion::Any,
///     ids: vec![EventId::new()],
///     outcome: AppendOutcome::Accepted { first_version: 0, first_position: 0 },
/// };
/// let history = StoreHistory { appends: vec![accepted("a-1"), accepted("b-1")], ..Default::default() };
/// let report = check(&history);
/// assert!(report.violations.contains(&StoreViolation::PositionReused { position: 0 }));
/// ```
pub fn check(history: &StoreHistory) -> StoreReport {
    let mut violations = Vec::new();
    // Every accepted event, by position (the first claim wins; reuse is reported).
    let mut accepted: BTreeMap<u64, SeenEvent> = BTreeMap::new();
    for append in &history.appends {
        match &append.outcome {
            AppendOutcome::Accepted {
                first_version,
                first_position,
            } => {
                let before = first_version.checked_sub(1);
                if !append.expected.matches(before) {
                    violations.push(StoreViolation::AcceptedAgainstExpectation {
                        stream: append.stream.clone(),
                        expected: append.expected,
                        first_version: *first_version,
                    });
                }
                for (i, id) in append.ids.iter().enumerate() {
                    let position = first_position + i as u64;
                    let event = SeenEvent {
                        position,
                        stream: append.stream.clone(),
                        version: first_version + i as u64,
                        id: *id,
                    };
                    if accepted.insert(position, event).is_some() {
                        violations.push(StoreViolation::PositionReused { position });
                    }
                }
            }
            AppendOutcome::Refused { actual } => {
                if append.expected.matches(*actual) {
                    violations.push(StoreViolation::RefusedThoughMatching {
                        stream: append.stream.clone(),
                        expected: append.expected,
                        actual: *actual,
                    });
                }
            }
            AppendOutcome::Failed(_) => {}
        }
    }
    check_positions(&accepted, &mut violations);
    check_versions(&accepted, &mut violations);
    if let Some(read) = &history.final_read {
        check_read(&accepted, read, history.retention, &mut violations);
    }
    let readable: Option<BTreeSet<u64>> = history
        .final_read
        .as_ref()
        .map(|read| read.iter().map(|e| e.position).collect());
    let mut seen_events = 0;
    for subscriber in &history.subscribers {
        seen_events += subscriber.seen.len();
        check_subscriber(&accepted, readable.as_ref(), subscriber, &mut violations);
    }
    StoreReport {
        violations,
        accepted_events: accepted.len(),
        seen_events,
    }
}

fn check_positions(accepted: &BTreeMap<u64, SeenEvent>, violations: &mut Vec<StoreViolation>) {
    let Some(&last) = accepted.keys().next_back() else {
        return;
    };
    for position in 0..last {
        if !accepted.contains_key(&position) {
            violations.push(StoreViolation::PositionMissing { position });
        }
    }
}

fn check_versions(accepted: &BTreeMap<u64, SeenEvent>, violations: &mut Vec<StoreViolation>) {
    let mut by_stream: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for event in accepted.values() {
        by_stream
            .entry(&event.stream)
            .or_default()
            .push(event.version);
    }
    for (stream, versions) in by_stream {
        if versions.iter().enumerate().any(|(i, v)| *v != i as u64) {
            violations.push(StoreViolation::VersionsBroken {
                stream: stream.to_owned(),
                versions,
            });
        }
    }
}

fn check_read(
    accepted: &BTreeMap<u64, SeenEvent>,
    read: &[SeenEvent],
    retention: bool,
    violations: &mut Vec<StoreViolation>,
) {
    let by_position: BTreeMap<u64, &SeenEvent> = read.iter().map(|e| (e.position, e)).collect();
    for (position, event) in accepted {
        let found = by_position.get(position);
        // With retention an event may be gone; if it is there, it must be the accepted one.
        if retention && found.is_none() {
            continue;
        }
        if found != Some(&event) {
            violations.push(StoreViolation::NotReadable {
                position: *position,
            });
        }
    }
    for event in read {
        if !accepted.contains_key(&event.position) {
            violations.push(StoreViolation::ReadUnknown {
                position: event.position,
            });
        }
    }
}

/// Whether an accepted event belongs to a subscriber (its target, its consumer group share)
/// after its start, and the key it is ordered by (its position, or its version for a stream
/// subscriber).
fn key_for(subscriber: &SubscriberRecord, event: &SeenEvent) -> Option<u64> {
    let key = match &subscriber.target {
        Target::Stream(stream) if *stream == event.stream => event.version,
        Target::Category(category) if category_of(&event.stream).ok() == Some(category) => {
            event.position
        }
        Target::All => event.position,
        _ => return None,
    };
    if let Some((member, size)) = subscriber.group {
        let size = NonZeroU32::new(size)?;
        let id = id_of(&event.stream).ok()?;
        if partition_of_hash(stable_hash(id), size) != member {
            return None;
        }
    }
    (key >= subscriber.start).then_some(key)
}

fn check_subscriber(
    accepted: &BTreeMap<u64, SeenEvent>,
    readable: Option<&BTreeSet<u64>>,
    subscriber: &SubscriberRecord,
    violations: &mut Vec<StoreViolation>,
) {
    let name = &subscriber.name;
    let expected: BTreeSet<u64> = accepted
        .values()
        .filter(|e| key_for(subscriber, e).is_some())
        .map(|e| e.position)
        .collect();
    let signalled = |event: &SeenEvent| {
        key_for(subscriber, event).is_some_and(|key| {
            subscriber
                .truncated
                .iter()
                .any(|&(from, resume)| from <= key && key < resume)
        })
    };
    let mut seen_positions = BTreeSet::new();
    let mut last_key: Option<(u64, u64)> = None;
    for event in &subscriber.seen {
        let matches =
            accepted.get(&event.position) == Some(event) && expected.contains(&event.position);
        if !matches {
            violations.push(StoreViolation::Unexpected {
                subscriber: name.clone(),
                position: event.position,
            });
            continue;
        }
        if !seen_positions.insert(event.position) {
            violations.push(StoreViolation::Duplicated {
                subscriber: name.clone(),
                position: event.position,
            });
            continue;
        }
        let key = key_for(subscriber, event).unwrap_or(0);
        if let Some((last, after)) = last_key {
            if key < last {
                violations.push(StoreViolation::OutOfOrder {
                    subscriber: name.clone(),
                    position: event.position,
                    after,
                });
            }
        }
        last_key = Some((key, event.position));
    }
    for position in expected.difference(&seen_positions) {
        let covered = accepted.get(position).is_some_and(signalled);
        if !covered {
            violations.push(StoreViolation::Missed {
                subscriber: name.clone(),
                position: *position,
            });
        } else if readable.is_some_and(|r| r.contains(position)) {
            violations.push(StoreViolation::FalselyTruncated {
                subscriber: name.clone(),
                position: *position,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    //! Each rule, fed a broken history, reports it; the correct history reports nothing.
    use super::*;

    fn ids(n: usize) -> Vec<EventId> {
        (0..n).map(|_| EventId::new()).collect()
    }

    fn accepted(stream: &str, ids: &[EventId], version: u64, position: u64) -> AppendRecord {
        AppendRecord {
            stream: stream.into(),
            expected: ExpectedVersion::Any,
            ids: ids.to_vec(),
            outcome: AppendOutcome::Accepted {
                first_version: version,
                first_position: position,
            },
        }
    }

    /// a-1 gets two events (positions 0, 1), b-1 one (position 2); a full read; one
    /// subscriber to everything from 0 that saw all three.
    fn good() -> StoreHistory {
        let a = ids(2);
        let b = ids(1);
        let appends = vec![accepted("a-1", &a, 0, 0), accepted("b-1", &b, 0, 2)];
        let events = vec![
            SeenEvent {
                position: 0,
                stream: "a-1".into(),
                version: 0,
                id: a[0],
            },
            SeenEvent {
                position: 1,
                stream: "a-1".into(),
                version: 1,
                id: a[1],
            },
            SeenEvent {
                position: 2,
                stream: "b-1".into(),
                version: 0,
                id: b[0],
            },
        ];
        StoreHistory {
            appends,
            subscribers: vec![SubscriberRecord {
                name: "all".into(),
                target: Target::All,
                group: None,
                start: 0,
                seen: events.clone(),
                truncated: vec![],
            }],
            final_read: Some(events),
            retention: false,
        }
    }

    fn violations(history: &StoreHistory) -> Vec<StoreViolation> {
        check(history).violations
    }

    #[test]
    fn a_correct_history_passes() {
        let report = check(&good());
        assert!(report.is_ok(), "{report}");
        assert_eq!((report.accepted_events, report.seen_events), (3, 3));
    }

    #[test]
    fn rule_1_a_missing_position_fails() {
        let mut h = good();
        let AppendOutcome::Accepted { first_position, .. } = &mut h.appends[1].outcome else {
            unreachable!()
        };
        *first_position = 3;
        assert!(violations(&h).contains(&StoreViolation::PositionMissing { position: 2 }));
    }

    #[test]
    fn rule_1_a_reused_position_fails() {
        let mut h = good();
        let AppendOutcome::Accepted { first_position, .. } = &mut h.appends[1].outcome else {
            unreachable!()
        };
        *first_position = 1;
        assert!(violations(&h).contains(&StoreViolation::PositionReused { position: 1 }));
    }

    #[test]
    fn rule_2_a_version_gap_or_repeat_fails() {
        let mut h = good();
        h.appends.push(accepted("b-1", &ids(1), 2, 3)); // skips version 1
        assert!(violations(&h).iter().any(
            |v| matches!(v, StoreViolation::VersionsBroken { stream, .. } if stream == "b-1")
        ));
        let mut h = good();
        h.appends.push(accepted("b-1", &ids(1), 0, 3)); // version 0 again
        assert!(violations(&h).iter().any(
            |v| matches!(v, StoreViolation::VersionsBroken { stream, .. } if stream == "b-1")
        ));
    }

    #[test]
    fn rule_3_an_append_accepted_against_its_expectation_fails() {
        let mut h = good();
        h.appends[1].expected = ExpectedVersion::StreamExists; // b-1 did not exist
        assert!(violations(&h).iter().any(|v| matches!(
            v,
            StoreViolation::AcceptedAgainstExpectation {
                first_version: 0,
                ..
            }
        )));
        let mut h = good();
        // Only the appends matter here.
        h.final_read = None;
        h.subscribers.clear();
        h.appends.push(AppendRecord {
            expected: ExpectedVersion::Exact(0),
            ..accepted("b-1", &ids(1), 1, 3)
        });
        assert!(check(&h).is_ok(), "Exact(0) then version 1 is right");
        h.appends.last_mut().unwrap().expected = ExpectedVersion::Exact(5);
        assert!(!check(&h).is_ok());
    }

    #[test]
    fn rule_3_a_refusal_whose_actual_matches_fails() {
        let mut h = good();
        h.appends.push(AppendRecord {
            stream: "a-1".into(),
            expected: ExpectedVersion::Exact(1),
            ids: ids(1),
            outcome: AppendOutcome::Refused { actual: Some(1) },
        });
        assert!(violations(&h)
            .iter()
            .any(|v| matches!(v, StoreViolation::RefusedThoughMatching { .. })));
        h.appends.last_mut().unwrap().outcome = AppendOutcome::Refused { actual: Some(4) };
        assert!(check(&h).is_ok(), "a genuine conflict is fine");
    }

    #[test]
    fn rule_4_an_unreadable_or_unknown_event_fails() {
        let mut h = good();
        h.final_read.as_mut().unwrap().remove(1);
        assert_eq!(
            violations(&h),
            [StoreViolation::NotReadable { position: 1 }]
        );
        let mut h = good();
        h.final_read.as_mut().unwrap()[2].version = 7; // differs from what was accepted
        assert_eq!(
            violations(&h),
            [StoreViolation::NotReadable { position: 2 }]
        );
        let mut h = good();
        let extra = SeenEvent {
            position: 9,
            stream: "c-1".into(),
            version: 0,
            id: EventId::new(),
        };
        h.final_read.as_mut().unwrap().push(extra);
        assert_eq!(
            violations(&h),
            [StoreViolation::ReadUnknown { position: 9 }]
        );
    }

    #[test]
    fn rule_5_a_subscriber_gap_fails() {
        let mut h = good();
        h.subscribers[0].seen.remove(1);
        assert_eq!(
            violations(&h),
            [StoreViolation::Missed {
                subscriber: "all".into(),
                position: 1
            }]
        );
    }

    #[test]
    fn rule_5_a_subscriber_duplicate_fails() {
        let mut h = good();
        let again = h.subscribers[0].seen[1].clone();
        h.subscribers[0].seen.insert(2, again);
        assert_eq!(
            violations(&h),
            [StoreViolation::Duplicated {
                subscriber: "all".into(),
                position: 1
            }]
        );
    }

    #[test]
    fn rule_5_a_subscriber_out_of_order_fails() {
        let mut h = good();
        h.subscribers[0].seen.swap(0, 2);
        assert!(violations(&h)
            .iter()
            .any(|v| matches!(v, StoreViolation::OutOfOrder { .. })));
    }

    #[test]
    fn rule_5_an_event_outside_the_target_or_before_the_start_fails() {
        // A category subscriber that also saw b-1's event.
        let mut h = good();
        h.subscribers[0].target = Target::category("a");
        assert_eq!(
            violations(&h),
            [StoreViolation::Unexpected {
                subscriber: "all".into(),
                position: 2
            }]
        );
        // A subscriber from position 1 that saw position 0.
        let mut h = good();
        h.subscribers[0].start = 1;
        assert_eq!(
            violations(&h),
            [StoreViolation::Unexpected {
                subscriber: "all".into(),
                position: 0
            }]
        );
        // A stream subscriber from version 1 that saw exactly a-1's version 1: fine.
        let mut h = good();
        h.subscribers[0].target = Target::stream("a-1");
        h.subscribers[0].start = 1;
        h.subscribers[0].seen = vec![h.final_read.as_ref().unwrap()[1].clone()];
        assert!(check(&h).is_ok(), "{}", check(&h));
        // An event with the right position but another id (not what was accepted).
        let mut h = good();
        h.subscribers[0].seen[0].id = EventId::new();
        assert!(violations(&h).contains(&StoreViolation::Unexpected {
            subscriber: "all".into(),
            position: 0
        }));
    }

    #[test]
    fn rule_4_with_retention_a_removed_event_may_be_missing_but_not_altered() {
        let mut h = good();
        h.subscribers.clear();
        h.retention = true;
        h.final_read.as_mut().unwrap().remove(0);
        assert!(check(&h).is_ok(), "{}", check(&h));
        h.final_read.as_mut().unwrap()[0].version = 9;
        assert_eq!(
            violations(&h),
            [StoreViolation::NotReadable { position: 1 }]
        );
    }

    #[test]
    fn rule_5_a_signalled_removal_covers_a_gap_only_if_the_event_is_gone() {
        // Position 1 was removed, the subscriber was told so: fine.
        let mut h = good();
        h.retention = true;
        h.final_read.as_mut().unwrap().remove(1);
        h.subscribers[0].seen.remove(1);
        h.subscribers[0].truncated.push((1, 2));
        assert!(check(&h).is_ok(), "{}", check(&h));
        // The same gap without the signal: a silent jump.
        let mut silent = h.clone();
        silent.subscribers[0].truncated.clear();
        assert_eq!(
            violations(&silent),
            [StoreViolation::Missed {
                subscriber: "all".into(),
                position: 1
            }]
        );
        // A signal over an event that is still readable hides it: a false truncation.
        let mut false_signal = good();
        false_signal.subscribers[0].seen.remove(1);
        false_signal.subscribers[0].truncated.push((1, 2));
        assert_eq!(
            violations(&false_signal),
            [StoreViolation::FalselyTruncated {
                subscriber: "all".into(),
                position: 1
            }]
        );
    }

    #[test]
    fn rule_5_a_group_member_must_get_exactly_its_share() {
        let n = NonZeroU32::new(2).unwrap();
        let member_of = |stream: &str| partition_of_hash(stable_hash(id_of(stream).unwrap()), n);
        let mut h = good();
        // Only a-1's events (positions 0 and 1) and b-1's event (2), as a group of 2 over
        // category "a": the member owning a-1 gets 0 and 1, the other nothing.
        h.subscribers[0].target = Target::category("a");
        h.subscribers[0].group = Some((member_of("a-1"), 2));
        h.subscribers[0].seen.truncate(2);
        assert!(check(&h).is_ok(), "{}", check(&h));
        let mut other = h.clone();
        other.subscribers[0].group = Some((1 - member_of("a-1"), 2));
        let found = violations(&other);
        assert!(
            found
                .iter()
                .all(|v| matches!(v, StoreViolation::Unexpected { .. }))
                && found.len() == 2,
            "{found:?}"
        );
    }
}
