//! Debounce by key: of the items of one key that arrive less than a grace period apart, only
//! the last is handed on, once the key was quiet for the grace period.
//!
//! Invariant: at most one item per key is held, and at most `max_keys` keys are held; every
//! held item has exactly one entry in `due`, ordered by the instant it is handed on. An item is
//! handed on at its due instant, earlier only to make room for a new key or when the input
//! ended (both counted as `flushed_early`), never dropped.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::Hash;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::Stream;
use tokio::time::{Instant, Sleep};

use super::stats::{Counters, FlowMeter};
use crate::CoreError;

/// How [`debounce_by`](super::FlowExt::debounce_by) coalesces.
///
/// ```
/// use std::time::Duration;
/// use flowgate::flow::Debouncing;
/// let config = Debouncing::new(Duration::from_millis(300))
///     .max_wait(Duration::from_secs(2))
///     .max_keys(50_000);
/// assert_eq!(config.grace(), Duration::from_millis(300));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Debouncing {
    grace: Duration,
    max_wait: Option<Duration>,
    max_keys: usize,
}

impl Debouncing {
    /// Hand a key's latest item on once the key was quiet for `grace`. No longest wait; at
    /// most 10,000 keys held.
    ///
    /// ```
    /// use std::time::Duration;
    /// let config = flowgate::flow::Debouncing::new(Duration::from_millis(300));
    /// assert_eq!((config.max_wait_limit(), config.key_limit()), (None, 10_000));
    /// ```
    pub fn new(grace: Duration) -> Self {
        Self {
            grace,
            max_wait: None,
            max_keys: 10_000,
        }
    }

    /// Hand a key's latest item on at the latest `max_wait` after the first item it coalesced,
    /// even if the key never goes quiet (without it, a key updated more often than the grace
    /// period is held for as long as the updates go on). At least the grace period.
    ///
    /// ```
    /// use std::time::Duration;
    /// let config = flowgate::flow::Debouncing::new(Duration::from_millis(100)).max_wait(Duration::from_secs(1));
    /// assert_eq!(config.max_wait_limit(), Some(Duration::from_secs(1)));
    /// ```
    #[must_use]
    pub fn max_wait(mut self, max_wait: Duration) -> Self {
        self.max_wait = Some(max_wait);
        self
    }

    /// Hold at most `max_keys` keys (default 10,000). An item of a new key beyond it first
    /// hands on the held item due soonest, early, so memory stays bounded whatever the number
    /// of keys.
    ///
    /// ```
    /// use std::time::Duration;
    /// let config = flowgate::flow::Debouncing::new(Duration::from_millis(100)).max_keys(16);
    /// assert_eq!(config.key_limit(), 16);
    /// ```
    #[must_use]
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys;
        self
    }

    /// The grace period.
    ///
    /// ```
    /// use std::time::Duration;
    /// assert_eq!(flowgate::flow::Debouncing::new(Duration::from_secs(1)).grace(), Duration::from_secs(1));
    /// ```
    pub fn grace(&self) -> Duration {
        self.grace
    }

    /// The longest an item is held after the first item of its run, if set.
    ///
    /// ```
    /// use std::time::Duration;
    /// assert_eq!(flowgate::flow::Debouncing::new(Duration::from_secs(1)).max_wait_limit(), None);
    /// ```
    pub fn max_wait_limit(&self) -> Option<Duration> {
        self.max_wait
    }

    /// The most keys held at once.
    ///
    /// ```
    /// use std::time::Duration;
    /// assert_eq!(flowgate::flow::Debouncing::new(Duration::from_secs(1)).key_limit(), 10_000);
    /// ```
    pub fn key_limit(&self) -> usize {
        self.max_keys
    }

    pub(crate) fn validate(&self) -> Result<(), CoreError> {
        if self.grace.is_zero() {
            return Err(CoreError::InvalidConfig {
                setting: "grace",
                reason: "a debounce grace period must be longer than zero; without one nothing is coalesced".into(),
            });
        }
        if let Some(max_wait) = self.max_wait {
            if max_wait < self.grace {
                return Err(CoreError::InvalidConfig {
                    setting: "max_wait",
                    reason: format!(
                        "{max_wait:?} is shorter than the grace period {:?}; use at least the grace period",
                        self.grace
                    ),
                });
            }
        }
        if self.max_keys == 0 {
            return Err(CoreError::InvalidConfig {
                setting: "max_keys",
                reason: "a debouncer must hold at least one key; use 1 or more".into(),
            });
        }
        Ok(())
    }
}

/// A stream debounced by key; from [`debounce_by`](super::FlowExt::debounce_by).
#[must_use = "streams do nothing unless polled"]
pub struct Debounce<S: Stream, K, F> {
    /// `None` once the input ended.
    input: Option<S>,
    key_of: F,
    config: Debouncing,
    /// The held item of each key.
    held: HashMap<K, Held<S::Item>>,
    /// Held keys by the instant their item is due, then by arrival (`seq`) to break ties.
    due: BTreeMap<(Instant, u64), K>,
    /// Tie-breaker for `due`: one more per item received.
    seq: u64,
    /// Armed for the first entry of `due`.
    sleep: Option<Pin<Box<Sleep>>>,
    meter: FlowMeter,
}

struct Held<I> {
    item: I,
    /// This item's entry in `due`.
    due: (Instant, u64),
    /// Arrival of the first item of this run (for `max_wait`).
    first: Instant,
}

// The operator never pins its fields: the input is polled through `Pin::new`, which asks
// `S: Unpin` of the `Stream` impl, and the timer is boxed.
impl<S: Stream, K, F> Unpin for Debounce<S, K, F> {}

impl<S, K, F> Debounce<S, K, F>
where
    S: Stream + Unpin,
    K: Hash + Eq + Clone,
    F: FnMut(&S::Item) -> K,
{
    pub(crate) fn new(input: S, config: Debouncing, key_of: F) -> Result<Self, CoreError> {
        config.validate()?;
        Ok(Self {
            input: Some(input),
            key_of,
            config,
            held: HashMap::new(),
            due: BTreeMap::new(),
            seq: 0,
            sleep: None,
            meter: FlowMeter::default(),
        })
    }

    /// A handle on this operator's counts.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), flowgate::CoreError> {
    /// use std::time::Duration;
    /// use futures_util::{stream, StreamExt};
    /// use flowgate::flow::{Debouncing, FlowExt};
    /// let updates = stream::iter([("cart-1", 1), ("cart-1", 2), ("cart-2", 7), ("cart-1", 3)]);
    /// let latest = updates.debounce_by(Debouncing::new(Duration::from_millis(300)), |(cart, _)| *cart)?;
    /// let meter = latest.meter();
    /// // The input ends at once, so the held items are handed on then, the quiet soonest first.
    /// assert_eq!(latest.collect::<Vec<_>>().await, [("cart-2", 7), ("cart-1", 3)]);
    /// let stats = meter.stats();
    /// assert_eq!((stats.received, stats.passed, stats.coalesced), (4, 2, 2));
    /// # Ok(())
    /// # }
    /// ```
    pub fn meter(&self) -> FlowMeter {
        self.meter.clone()
    }

    /// Takes the key due soonest out of the held set.
    fn take_first(&mut self) -> Option<S::Item> {
        let (_, key) = self.due.pop_first()?;
        let held = self.held.remove(&key)?;
        let c = self.meter.counters();
        Counters::add(&c.passed, 1);
        Counters::add(&c.outputs, 1);
        Counters::set(&c.pending, self.held.len() as u64);
        Counters::set(&c.keys, self.held.len() as u64);
        Some(held.item)
    }

    fn take_in(&mut self, item: S::Item, now: Instant) -> Option<S::Item> {
        let c = self.meter.counters();
        Counters::add(&c.received, 1);
        let key = (self.key_of)(&item);
        self.seq += 1;
        let seq = self.seq;
        if let Some(held) = self.held.get_mut(&key) {
            Counters::add(&c.coalesced, 1);
            held.item = item;
            let mut at = now + self.config.grace;
            if let Some(max_wait) = self.config.max_wait {
                at = at.min(held.first + max_wait);
            }
            let old = std::mem::replace(&mut held.due, (at, seq));
            self.due.remove(&old);
            self.due.insert((at, seq), key);
            return None;
        }
        let mut out = None;
        if self.held.len() >= self.config.max_keys {
            out = self.take_first();
            Counters::add(&self.meter.counters().flushed_early, 1);
        }
        let at = now + self.config.grace;
        self.due.insert((at, seq), key.clone());
        self.held.insert(
            key,
            Held {
                item,
                due: (at, seq),
                first: now,
            },
        );
        let c = self.meter.counters();
        Counters::set(&c.pending, self.held.len() as u64);
        Counters::set(&c.keys, self.held.len() as u64);
        out
    }
}

impl<S, K, F> Stream for Debounce<S, K, F>
where
    S: Stream + Unpin,
    K: Hash + Eq + Clone,
    F: FnMut(&S::Item) -> K,
{
    type Item = S::Item;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        let this = self.get_mut();
        loop {
            let now = Instant::now();
            // What is due goes first: an item arriving now for a key whose quiet period just
            // ended starts a new run instead of replacing the finished one.
            if this
                .due
                .first_key_value()
                .is_some_and(|(&(at, _), _)| at <= now)
            {
                return Poll::Ready(this.take_first());
            }
            let Some(input) = this.input.as_mut() else {
                // The input ended: hand on what is held, soonest due first.
                if this.held.is_empty() {
                    return Poll::Ready(None);
                }
                Counters::add(&this.meter.counters().flushed_early, 1);
                return Poll::Ready(this.take_first());
            };
            match Pin::new(input).poll_next(cx) {
                Poll::Ready(Some(item)) => {
                    if let Some(out) = this.take_in(item, now) {
                        return Poll::Ready(Some(out));
                    }
                    continue;
                }
                Poll::Ready(None) => {
                    this.input = None;
                    continue;
                }
                Poll::Pending => {}
            }
            let Some((&(at, _), _)) = this.due.first_key_value() else {
                return Poll::Pending;
            };
            if super::wait_until(&mut this.sleep, at, cx).is_pending() {
                return Poll::Pending;
            }
        }
    }
}

impl<S: Stream, K, F> fmt::Debug for Debounce<S, K, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Debounce")
            .field("config", &self.config)
            .field("held", &self.held.len())
            .field("input_ended", &self.input.is_none())
            .finish_non_exhaustive()
    }
}
