//! Per-key rate limit: a token bucket per key, holding up to `burst` tokens and refilled with
//! `tokens` every `per`; an item takes one token. An item finding its key's bucket empty waits
//! for the next token or is refused, per [`Overflow`].
//!
//! Each bucket is kept as one number, the instant its bucket will be full again (the
//! "theoretical arrival time" of the generic cell rate algorithm), in units of
//! nanoseconds × `tokens`, so that every rate is exact in integers: over any span `t` from a
//! full bucket, a key is admitted exactly `floor(burst + tokens * t / per)` items.
//!
//! Invariant: at most `max_keys` buckets are kept. A bucket that is full again is the same as
//! no bucket, so such buckets are forgotten first; forgetting a bucket that is still limiting
//! is counted (`evicted_keys`) and errs on admitting.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::Stream;
use tokio::time::{Instant, Sleep};

use super::stats::{Counters, FlowMeter};
use crate::CoreError;

/// What a rate limiter does with an item whose key has no token left.
///
/// ```
/// assert_eq!(flowgate::flow::Overflow::default(), flowgate::flow::Overflow::Wait);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Overflow {
    /// Hold the item until its key has a token. The stream hands items on in order, so a
    /// waiting item also holds back the items behind it, of every key. Counted as `delayed`.
    #[default]
    Wait,
    /// Drop the item. Counted as `dropped`.
    Refuse,
}

/// How [`rate_limit_by`](super::FlowExt::rate_limit_by) limits each key.
///
/// ```
/// use std::time::Duration;
/// use flowgate::flow::{Overflow, RateLimit};
/// // Bursts of 20, then 5 per second, per key; excess refused.
/// let config = RateLimit::new(20, 5, Duration::from_secs(1)).overflow(Overflow::Refuse);
/// assert_eq!(config.burst(), 20);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    burst: u32,
    tokens: u32,
    per: Duration,
    overflow: Overflow,
    max_keys: usize,
}

impl RateLimit {
    /// Buckets of `burst` tokens, refilled with `tokens` every `per` (evenly, one token every
    /// `per / tokens`). Excess waits; at most 10,000 keys tracked.
    ///
    /// ```
    /// use std::time::Duration;
    /// let config = flowgate::flow::RateLimit::new(10, 100, Duration::from_secs(1));
    /// assert_eq!(config.refill(), (100, Duration::from_secs(1)));
    /// ```
    pub fn new(burst: u32, tokens: u32, per: Duration) -> Self {
        Self {
            burst,
            tokens,
            per,
            overflow: Overflow::Wait,
            max_keys: 10_000,
        }
    }

    /// What to do with an item whose key has no token (default [`Overflow::Wait`]).
    ///
    /// ```
    /// use std::time::Duration;
    /// use flowgate::flow::{Overflow, RateLimit};
    /// let config = RateLimit::new(1, 1, Duration::from_secs(1)).overflow(Overflow::Refuse);
    /// assert_eq!(config.overflow_policy(), Overflow::Refuse);
    /// ```
    #[must_use]
    pub fn overflow(mut self, overflow: Overflow) -> Self {
        self.overflow = overflow;
        self
    }

    /// Track at most `max_keys` keys (default 10,000). Keys whose bucket is full again are
    /// forgotten first; when that frees less than an eighth of `max_keys`, the buckets
    /// closest to full are forgotten too (erring on admitting), counted as `evicted_keys`.
    ///
    /// ```
    /// use std::time::Duration;
    /// let config = flowgate::flow::RateLimit::new(1, 1, Duration::from_secs(1)).max_keys(64);
    /// assert_eq!(config.key_limit(), 64);
    /// ```
    #[must_use]
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys;
        self
    }

    /// The bucket size.
    ///
    /// ```
    /// use std::time::Duration;
    /// assert_eq!(flowgate::flow::RateLimit::new(3, 1, Duration::from_secs(1)).burst(), 3);
    /// ```
    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// The refill: `tokens` every `per`.
    ///
    /// ```
    /// use std::time::Duration;
    /// let config = flowgate::flow::RateLimit::new(3, 2, Duration::from_secs(1));
    /// assert_eq!(config.refill(), (2, Duration::from_secs(1)));
    /// ```
    pub fn refill(&self) -> (u32, Duration) {
        (self.tokens, self.per)
    }

    /// The overflow policy.
    ///
    /// ```
    /// use std::time::Duration;
    /// use flowgate::flow::{Overflow, RateLimit};
    /// assert_eq!(RateLimit::new(3, 2, Duration::from_secs(1)).overflow_policy(), Overflow::Wait);
    /// ```
    pub fn overflow_policy(&self) -> Overflow {
        self.overflow
    }

    /// The most keys tracked at once.
    ///
    /// ```
    /// use std::time::Duration;
    /// assert_eq!(flowgate::flow::RateLimit::new(3, 2, Duration::from_secs(1)).key_limit(), 10_000);
    /// ```
    pub fn key_limit(&self) -> usize {
        self.max_keys
    }

    pub(crate) fn validate(&self) -> Result<(), CoreError> {
        let invalid = |setting, reason: &str| {
            Err(CoreError::InvalidConfig {
                setting,
                reason: reason.into(),
            })
        };
        if self.burst == 0 {
            return invalid(
                "burst",
                "a bucket must hold at least one token; use 1 or more",
            );
        }
        if self.tokens == 0 {
            return invalid(
                "tokens",
                "a bucket must be refilled with at least one token per period; use 1 or more",
            );
        }
        if self.per.is_zero() {
            return invalid(
                "per",
                "the refill period must be longer than zero; for no limit, leave the operator out",
            );
        }
        if self.max_keys == 0 {
            return invalid(
                "max_keys",
                "a rate limiter must track at least one key; use 1 or more",
            );
        }
        Ok(())
    }
}

/// A per-key rate-limited stream; from [`rate_limit_by`](super::FlowExt::rate_limit_by).
#[must_use = "streams do nothing unless polled"]
pub struct RateLimited<S: Stream, K, F> {
    /// `None` once the input ended.
    input: Option<S>,
    key_of: F,
    config: RateLimit,
    /// Per key: the instant its bucket is full again, in scaled units since `epoch`.
    buckets: HashMap<K, u128>,
    /// The time base of `buckets`.
    epoch: Instant,
    /// One token's worth of time, scaled: `per` in nanoseconds (a token every `per / tokens`,
    /// times `tokens`).
    step: u128,
    /// How far ahead of now a bucket may be and still admit: `(burst - 1) * step`.
    slack: u128,
    /// The item waiting for a token (`Overflow::Wait`), its key, and since when.
    waiting: Option<(S::Item, K, Instant)>,
    sleep: Option<Pin<Box<Sleep>>>,
    meter: FlowMeter,
}

// Never pins its fields: the input is polled through `Pin::new` (`S: Unpin`), the timer is boxed.
impl<S: Stream, K, F> Unpin for RateLimited<S, K, F> {}

impl<S, K, F> RateLimited<S, K, F>
where
    S: Stream + Unpin,
    K: Hash + Eq + Clone,
    F: FnMut(&S::Item) -> K,
{
    pub(crate) fn new(input: S, config: RateLimit, key_of: F) -> Result<Self, CoreError> {
        config.validate()?;
        let step = config.per.as_nanos();
        Ok(Self {
            input: Some(input),
            key_of,
            config,
            buckets: HashMap::new(),
            epoch: Instant::now(),
            step,
            slack: u128::from(config.burst - 1) * step,
            waiting: None,
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
    /// use flowgate::flow::{FlowExt, Overflow, RateLimit};
    /// let logins = stream::iter(["ann", "ann", "ann", "bob"]);
    /// let limit = RateLimit::new(2, 1, Duration::from_secs(60)).overflow(Overflow::Refuse);
    /// let admitted = logins.rate_limit_by(limit, |user| *user)?;
    /// let meter = admitted.meter();
    /// assert_eq!(admitted.collect::<Vec<_>>().await, ["ann", "ann", "bob"]);
    /// assert_eq!(meter.stats().dropped, 1);
    /// # Ok(())
    /// # }
    /// ```
    pub fn meter(&self) -> FlowMeter {
        self.meter.clone()
    }

    /// Now, in the buckets' scaled units.
    fn scaled(&self, now: Instant) -> u128 {
        (now - self.epoch).as_nanos() * u128::from(self.config.tokens)
    }

    /// Takes a token of `key` at `now` if there is one.
    fn try_take(&mut self, key: &K, now: u128) -> bool {
        let full_at = self.buckets.get(key).copied().unwrap_or(now).max(now);
        if full_at - now > self.slack {
            return false;
        }
        let next = full_at + self.step;
        if let Some(bucket) = self.buckets.get_mut(key) {
            *bucket = next;
        } else {
            self.make_room(now);
            self.buckets.insert(key.clone(), next);
        }
        Counters::set(&self.meter.counters().keys, self.buckets.len() as u64);
        true
    }

    /// Keeps the buckets under `max_keys` before one more is added. When the map is full, it
    /// forgets the full buckets, and if that left less than an eighth of `max_keys` free, the
    /// buckets closest to full until an eighth is free: the scan is paid once per
    /// `max_keys / 8` new keys at most, whatever the keys' pattern.
    fn make_room(&mut self, now: u128) {
        let max = self.config.max_keys;
        if self.buckets.len() < max {
            return;
        }
        self.buckets.retain(|_, full_at| *full_at > now);
        let keep = max - (max / 8).max(1);
        if self.buckets.len() <= keep {
            return;
        }
        let evict = self.buckets.len() - keep;
        let mut full_at: Vec<u128> = self.buckets.values().copied().collect();
        let (_, &mut cut, _) = full_at.select_nth_unstable(evict - 1);
        let before = self.buckets.len();
        let mut left = evict;
        self.buckets.retain(|_, full_at| {
            if left > 0 && *full_at <= cut {
                left -= 1;
                false
            } else {
                true
            }
        });
        Counters::add(
            &self.meter.counters().evicted_keys,
            (before - self.buckets.len()) as u64,
        );
    }

    /// When `key` has a token again.
    fn next_token(&self, key: &K) -> Instant {
        let full_at = self.buckets.get(key).copied().unwrap_or(0);
        let scaled = full_at.saturating_sub(self.slack);
        let tokens = u128::from(self.config.tokens);
        let nanos = scaled.div_ceil(tokens);
        self.epoch + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    fn pass(&self) {
        let c = self.meter.counters();
        Counters::add(&c.passed, 1);
        Counters::add(&c.outputs, 1);
    }
}

impl<S, K, F> Stream for RateLimited<S, K, F>
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
            if let Some((item, key, since)) = this.waiting.take() {
                if this.try_take(&key, this.scaled(now)) {
                    let c = this.meter.counters();
                    Counters::add(&c.delayed, 1);
                    let waited = u64::try_from((now - since).as_nanos()).unwrap_or(u64::MAX);
                    Counters::add(&c.delayed_nanos, waited);
                    Counters::set(&c.pending, 0);
                    this.pass();
                    return Poll::Ready(Some(item));
                }
                let at = this.next_token(&key);
                this.waiting = Some((item, key, since));
                if super::wait_until(&mut this.sleep, at, cx).is_pending() {
                    return Poll::Pending;
                }
                continue;
            }
            let Some(input) = this.input.as_mut() else {
                return Poll::Ready(None);
            };
            match Pin::new(input).poll_next(cx) {
                Poll::Ready(Some(item)) => {
                    Counters::add(&this.meter.counters().received, 1);
                    let key = (this.key_of)(&item);
                    if this.try_take(&key, this.scaled(now)) {
                        this.pass();
                        return Poll::Ready(Some(item));
                    }
                    match this.config.overflow {
                        Overflow::Refuse => Counters::add(&this.meter.counters().dropped, 1),
                        Overflow::Wait => {
                            Counters::set(&this.meter.counters().pending, 1);
                            this.waiting = Some((item, key, now));
                        }
                    }
                }
                Poll::Ready(None) => {
                    this.input = None;
                    return Poll::Ready(None);
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl<S: Stream, K, F> fmt::Debug for RateLimited<S, K, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimited")
            .field("config", &self.config)
            .field("keys", &self.buckets.len())
            .field("waiting", &self.waiting.is_some())
            .finish_non_exhaustive()
    }
}
