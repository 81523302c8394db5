//! Dead letters: events a subscriber gave up on, with the reason.
//!
//! When a delivery fails permanently, or keeps failing after the retry policy is exhausted, the
//! event is handed to the subscriber's [`DeadLetterSink`] together with the last error and the
//! number of attempts. Nothing is dropped silently: the default sink,
//! [`LogDeadLetters`], logs every letter at `error` level through `tracing`.
//!
//! A sink is called on the delivery path, so it should be quick: forward to a channel, a
//! bounded [`DeadLetterQueue`], or a table, and return.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;

use crate::sync::atomic::{AtomicU64, Ordering};
use crate::sync::Mutex;
use crate::{Event, HandlerError};

/// An event that a subscriber gave up on.
///
/// ```
/// use flowgate::{DeadLetter, Event, HandlerError};
///
/// let letter = DeadLetter::new(
///     Event::new("order.placed", 7)?,
///     HandlerError::retryable("payment service timed out"),
///     5,
///     "billing",
/// );
/// assert_eq!(letter.event.kind().as_str(), "order.placed");
/// assert_eq!(*letter.event.payload(), 7);
/// assert!(letter.error.is_retryable(), "given up on after the retries ran out");
/// assert_eq!(&*letter.subscriber, "billing");
/// # Ok::<(), flowgate::CoreError>(())
/// ```
#[non_exhaustive]
pub struct DeadLetter<T> {
    /// The event, as published.
    pub event: Event<T>,
    /// The last attempt's error.
    pub error: HandlerError,
    /// How many times the handler was invoked for this event.
    pub attempts: u32,
    /// The subscriber that gave up (its name, or its id when unnamed).
    pub subscriber: Arc<str>,
}

impl<T> DeadLetter<T> {
    /// Builds a dead letter.
    ///
    /// ```
    /// use flowgate::{DeadLetter, Event, HandlerError};
    /// let letter = DeadLetter::new(
    ///     Event::new("order.placed", 7)?,
    ///     HandlerError::permanent("unknown customer"),
    ///     1,
    ///     "billing",
    /// );
    /// assert_eq!(letter.attempts, 1);
    /// # Ok::<(), flowgate::CoreError>(())
    /// ```
    pub fn new(
        event: Event<T>,
        error: HandlerError,
        attempts: u32,
        subscriber: impl Into<Arc<str>>,
    ) -> Self {
        Self {
            event,
            error,
            attempts,
            subscriber: subscriber.into(),
        }
    }
}

impl<T> fmt::Debug for DeadLetter<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeadLetter")
            .field("event_id", &self.event.id())
            .field("kind", self.event.kind())
            .field("key", &self.event.key())
            .field("error", &self.error)
            .field("attempts", &self.attempts)
            .field("subscriber", &self.subscriber)
            .finish()
    }
}

/// Where dead letters go. Implemented for every `Fn(DeadLetter<T>)` closure.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use flowgate::{DeadLetter, DeadLetterSink, Event, HandlerError};
///
/// let gave_up = Arc::new(Mutex::new(Vec::new()));
/// let record = Arc::clone(&gave_up);
/// let sink = move |letter: DeadLetter<u32>| {
///     record.lock().unwrap().push((*letter.event.payload(), letter.attempts));
/// };
/// sink.dead_letter(DeadLetter::new(Event::new("a", 9)?, HandlerError::permanent("x"), 3, "s"));
/// assert_eq!(*gave_up.lock().unwrap(), [(9, 3)]);
/// # Ok::<(), flowgate::CoreError>(())
/// ```
pub trait DeadLetterSink<T>: Send + Sync + 'static {
    /// Takes one dead letter. Called on the delivery path: keep it quick.
    fn dead_letter(&self, letter: DeadLetter<T>);
}

impl<T, F> DeadLetterSink<T> for F
where
    F: Fn(DeadLetter<T>) + Send + Sync + 'static,
{
    fn dead_letter(&self, letter: DeadLetter<T>) {
        self(letter);
    }
}

/// The default sink: logs each letter at `error` level and keeps nothing.
///
/// ```
/// use flowgate::{DeadLetter, DeadLetterSink, Event, HandlerError, LogDeadLetters};
/// LogDeadLetters.dead_letter(DeadLetter::new(
///     Event::new("a", ())?, HandlerError::permanent("x"), 1, "s",
/// ));
/// # Ok::<(), flowgate::CoreError>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct LogDeadLetters;

impl<T: 'static> DeadLetterSink<T> for LogDeadLetters {
    fn dead_letter(&self, letter: DeadLetter<T>) {
        tracing::error!(
            event_id = %letter.event.id(),
            kind = %letter.event.kind(),
            key = ?letter.event.key().map(crate::Key::as_str),
            attempts = letter.attempts,
            subscriber = %letter.subscriber,
            error = %letter.error,
            cause = ?std::error::Error::source(&letter.error).map(ToString::to_string),
            "dead letter: the subscriber gave up on this event"
        );
    }
}

/// A bounded in-memory dead-letter queue, shareable by clone.
///
/// It keeps the newest `capacity` letters; when full, the oldest is evicted and counted in
/// [`evicted`](Self::evicted), so a flood of failures cannot grow memory without bound and no
/// eviction goes unreported.
///
/// ```
/// use flowgate::{DeadLetter, DeadLetterQueue, DeadLetterSink, Event, HandlerError};
///
/// let queue = DeadLetterQueue::new(2);
/// for n in 0..3 {
///     queue.dead_letter(DeadLetter::new(Event::new("a", n)?, HandlerError::permanent("x"), 1, "s"));
/// }
/// let letters = queue.drain();
/// assert_eq!(letters.len(), 2);
/// assert_eq!(*letters[0].event.payload(), 1);
/// assert_eq!(queue.evicted(), 1);
/// # Ok::<(), flowgate::CoreError>(())
/// ```
pub struct DeadLetterQueue<T> {
    shared: Arc<QueueShared<T>>,
}

struct QueueShared<T> {
    capacity: usize,
    /// Locked by `dead_letter` (push) and `drain`/`len` (read).
    letters: Mutex<VecDeque<DeadLetter<T>>>,
    /// Letters pushed out by newer ones. Relaxed: a statistic, no data depends on it.
    evicted: AtomicU64,
}

impl<T> Clone for DeadLetterQueue<T> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<T> fmt::Debug for DeadLetterQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeadLetterQueue")
            .field("capacity", &self.shared.capacity)
            .field("len", &self.len())
            .field("evicted", &self.evicted())
            .finish()
    }
}

impl<T> DeadLetterQueue<T> {
    /// A queue keeping at most `capacity` letters (a capacity of 0 is raised to 1).
    ///
    /// ```
    /// # use flowgate::{DeadLetter, DeadLetterQueue, DeadLetterSink, Event, HandlerError};
    /// # fn letter(n: u32) -> DeadLetter<u32> {
    /// #     DeadLetter::new(Event::new("a", n).unwrap(), HandlerError::permanent("x"), 1, "s")
    /// # }
    /// let queue = DeadLetterQueue::new(0);
    /// queue.dead_letter(letter(1));
    /// queue.dead_letter(letter(2));
    /// assert_eq!(queue.len(), 1);
    /// assert_eq!(queue.evicted(), 1);
    /// ```
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            shared: Arc::new(QueueShared {
                capacity,
                letters: Mutex::new(VecDeque::with_capacity(capacity.min(1024))),
                evicted: AtomicU64::new(0),
            }),
        }
    }

    /// Takes every letter out, oldest first.
    ///
    /// ```
    /// # use flowgate::{DeadLetter, DeadLetterQueue, DeadLetterSink, Event, HandlerError};
    /// # fn letter(n: u32) -> DeadLetter<u32> {
    /// #     DeadLetter::new(Event::new("a", n).unwrap(), HandlerError::permanent("x"), 1, "s")
    /// # }
    /// let queue = DeadLetterQueue::new(10);
    /// let sink = queue.clone(); // clones share the letters
    /// sink.dead_letter(letter(1));
    /// sink.dead_letter(letter(2));
    /// let payloads: Vec<u32> = queue.drain().iter().map(|l| *l.event.payload()).collect();
    /// assert_eq!(payloads, [1, 2]);
    /// assert!(sink.is_empty());
    /// ```
    pub fn drain(&self) -> Vec<DeadLetter<T>> {
        self.shared.letters.lock().drain(..).collect()
    }

    /// Letters held now.
    ///
    /// ```
    /// # use flowgate::{DeadLetter, DeadLetterQueue, DeadLetterSink, Event, HandlerError};
    /// # fn letter(n: u32) -> DeadLetter<u32> {
    /// #     DeadLetter::new(Event::new("a", n).unwrap(), HandlerError::permanent("x"), 1, "s")
    /// # }
    /// let queue = DeadLetterQueue::new(10);
    /// queue.dead_letter(letter(1));
    /// assert_eq!(queue.len(), 1);
    /// ```
    pub fn len(&self) -> usize {
        self.shared.letters.lock().len()
    }

    /// Whether no letter is held.
    ///
    /// ```
    /// # use flowgate::{DeadLetter, DeadLetterQueue, DeadLetterSink, Event, HandlerError};
    /// # fn letter(n: u32) -> DeadLetter<u32> {
    /// #     DeadLetter::new(Event::new("a", n).unwrap(), HandlerError::permanent("x"), 1, "s")
    /// # }
    /// let queue = DeadLetterQueue::new(10);
    /// assert!(queue.is_empty());
    /// queue.dead_letter(letter(1));
    /// assert!(!queue.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Letters evicted because the queue was full. Draining does not reset it.
    ///
    /// ```
    /// # use flowgate::{DeadLetter, DeadLetterQueue, DeadLetterSink, Event, HandlerError};
    /// # fn letter(n: u32) -> DeadLetter<u32> {
    /// #     DeadLetter::new(Event::new("a", n).unwrap(), HandlerError::permanent("x"), 1, "s")
    /// # }
    /// let queue = DeadLetterQueue::new(2);
    /// for n in 0..5 {
    ///     queue.dead_letter(letter(n));
    /// }
    /// assert_eq!(queue.evicted(), 3);
    /// let _kept = queue.drain();
    /// assert_eq!(queue.evicted(), 3);
    /// ```
    pub fn evicted(&self) -> u64 {
        self.shared.evicted.load(Ordering::Relaxed)
    }
}

impl<T: Send + Sync + 'static> DeadLetterSink<T> for DeadLetterQueue<T> {
    fn dead_letter(&self, letter: DeadLetter<T>) {
        let mut letters = self.shared.letters.lock();
        let mut oldest = None;
        if letters.len() >= self.shared.capacity {
            oldest = letters.pop_front();
            self.shared.evicted.fetch_add(1, Ordering::Relaxed);
        }
        letters.push_back(letter);
        drop(letters);
        // After the lock: the evicted letter's event and error may run the user's `Drop`,
        // which may look at this queue.
        drop(oldest);
    }
}
