//! Flow-control operators for subscriptions: debounce by key, batch, per-key rate limit and
//! sampling, as [`Stream`] adapters ([`FlowExt`]).
//!
//! They apply to any `Stream`: a store subscription as it is, and an emitter, bus or Redis
//! subscription through [`channel`], whose handler moves the subscription's events into a
//! bounded stream. Each operator
//!
//! - keeps bounded memory whatever the number of keys (`max_keys`; an idle key's state is
//!   forgotten),
//! - runs on `tokio::time`, so tests drive it with a paused clock,
//! - counts what it received, passed, coalesced, dropped and delayed in a [`FlowMeter`], where
//!   every received item is accounted for once ([`FlowStats::balanced`]),
//! - hands on what it holds when its input ends (a partial batch, the last item of each
//!   debounced key): nothing is lost silently.
//!
//! A stream that is not `Unpin` goes in through `Box::pin(stream)`.
//!
//! # Which operator, and when not
//!
//! | operator | hands on | loses items? | do not use it for |
//! |---|---|---|---|
//! | [`debounce_by`](FlowExt::debounce_by) | a key's last item once the key was quiet for the grace period | yes: the items it replaced (`coalesced`) | events where every one matters: payments, orders, ledger entries. Debouncing `payment.authorized` then `payment.captured` hands on only the capture. Use it for state snapshots (a cart, a cursor, a search box) where the latest says it all. |
//! | [`batch`](FlowExt::batch) | up to `max` items together, at the latest `window` after the first | no | latency-sensitive single events: an item may wait the whole window. |
//! | [`rate_limit_by`](FlowExt::rate_limit_by) | items within `burst` + refill per key | with [`Overflow::Refuse`] (`dropped`) | work that must all be done: refusing drops it (use `Wait`). With `Wait` one waiting key holds back the whole stream; give hot keys their own partition or subscription. |
//! | [`sample`](FlowExt::sample) | every nth item or each with a probability | yes, by design (`dropped`) | anything but statistics and previews: it drops events regardless of content. |
//!
//! Operators sit after the delivery guarantee: the subscription's handler (the [`channel`]
//! handler) succeeds once an event is in the stream, so what an operator coalesces, refuses or
//! samples out is the operator's decision, counted, not a lost delivery.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use futures_util::StreamExt;
//! use flowgate::flow::{Batching, FlowExt};
//! use flowgate::{Bus, Event};
//!
//! let bus = Bus::new();
//! let clicks = bus.topic::<u32>("clicks").create()?;
//! let (handler, events) = flowgate::flow::channel(256)?;
//! let _sub = clicks.subscribe("analytics", handler).start()?;
//! let batches = events.batch(Batching::new(100, Duration::from_millis(50)))?;
//! let meter = batches.meter();
//! let writer = tokio::spawn(batches.map(|batch| batch.len()).collect::<Vec<_>>());
//! for n in 0..250 {
//!     clicks.publish(Event::new("click", n)?).await?;
//! }
//! bus.shutdown(Duration::from_secs(1)).await; // the stream ends; the partial batch is flushed
//! assert_eq!(writer.await?, [100, 100, 50]);
//! assert_eq!(meter.stats().passed, 250);
//! # Ok(())
//! # }
//! ```

mod batch;
mod channel;
mod debounce;
mod rate_limit;
mod sample;
mod stats;

use std::hash::Hash;

use futures_core::Stream;

pub use batch::{Batch, Batching};
pub use channel::{channel, EventStream, StreamHandler};
pub use debounce::{Debounce, Debouncing};
pub use rate_limit::{Overflow, RateLimit, RateLimited};
pub use sample::{Sample, Sampling};
pub use stats::{FlowMeter, FlowStats};

use crate::CoreError;

/// Polls a timer for `at`, made on first use (inside the runtime that polls the operator, so
/// that building an operator outside one does not panic) and reused after.
fn wait_until(
    sleep: &mut Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    at: tokio::time::Instant,
    cx: &mut std::task::Context<'_>,
) -> std::task::Poll<()> {
    use std::future::Future;
    let sleep = match sleep {
        Some(sleep) => {
            sleep.as_mut().reset(at);
            sleep
        }
        None => sleep.insert(Box::pin(tokio::time::sleep_until(at))),
    };
    sleep.as_mut().poll(cx)
}

/// The flow-control operators, on every [`Stream`] that is `Unpin`.
///
/// Each checks its configuration and returns [`CoreError::InvalidConfig`] with what to change,
/// never panics.
pub trait FlowExt: Stream + Sized + Unpin {
    /// Of the items of one key (`key(&item)`) that arrive less than the grace period apart,
    /// hands on only the last, once the key was quiet for the grace period (or at the latest
    /// [`max_wait`](Debouncing::max_wait) after the run's first item). Replaced items are
    /// counted as `coalesced`.
    ///
    /// # Errors
    ///
    /// [`CoreError::InvalidConfig`] for a zero grace period, a `max_wait` shorter than it, or
    /// zero `max_keys`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), flowgate::CoreError> {
    /// use std::time::Duration;
    /// use futures_util::StreamExt;
    /// use flowgate::flow::{Debouncing, FlowExt};
    /// let (tx, mut rx) = tokio::sync::mpsc::channel(8);
    /// let input = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    /// let mut latest = input.debounce_by(Debouncing::new(Duration::from_millis(100)), |_| ())?;
    /// tx.send("draft 1").await.unwrap();
    /// tx.send("draft 2").await.unwrap();
    /// let start = tokio::time::Instant::now();
    /// assert_eq!(latest.next().await, Some("draft 2")); // the clock runs to the quiet period's end
    /// assert_eq!(start.elapsed(), Duration::from_millis(100));
    /// # Ok(())
    /// # }
    /// ```
    fn debounce_by<K, F>(
        self,
        config: Debouncing,
        key: F,
    ) -> Result<Debounce<Self, K, F>, CoreError>
    where
        K: Hash + Eq + Clone,
        F: FnMut(&Self::Item) -> K,
    {
        Debounce::new(self, config, key)
    }

    /// Hands items on in batches (`Vec`s) of up to `max`, each at the latest `window` after
    /// its first item arrived; a partial batch when the input ends.
    ///
    /// # Errors
    ///
    /// [`CoreError::InvalidConfig`] for a zero `max` or window.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), flowgate::CoreError> {
    /// use std::time::Duration;
    /// use futures_util::{stream, StreamExt};
    /// use flowgate::flow::{Batching, FlowExt};
    /// let batches: Vec<Vec<u8>> = stream::iter(0..5).batch(Batching::new(2, Duration::from_secs(1)))?.collect().await;
    /// assert_eq!(batches, [vec![0, 1], vec![2, 3], vec![4]]);
    /// # Ok(())
    /// # }
    /// ```
    fn batch(self, config: Batching) -> Result<Batch<Self>, CoreError> {
        Batch::new(self, config)
    }

    /// Limits each key (`key(&item)`) to a token bucket: `burst` items at once, then the
    /// refill rate. Excess waits or is refused, per [`Overflow`].
    ///
    /// # Errors
    ///
    /// [`CoreError::InvalidConfig`] for a zero burst, refill, period or `max_keys`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), flowgate::CoreError> {
    /// use std::time::Duration;
    /// use futures_util::{stream, StreamExt};
    /// use flowgate::flow::{FlowExt, RateLimit};
    /// let start = tokio::time::Instant::now();
    /// let calls = stream::iter(0..4).rate_limit_by(RateLimit::new(2, 1, Duration::from_secs(1)), |_| "api")?;
    /// assert_eq!(calls.collect::<Vec<_>>().await, [0, 1, 2, 3]); // 2 at once, then 1 a second
    /// assert_eq!(start.elapsed(), Duration::from_secs(2));
    /// # Ok(())
    /// # }
    /// ```
    fn rate_limit_by<K, F>(
        self,
        config: RateLimit,
        key: F,
    ) -> Result<RateLimited<Self, K, F>, CoreError>
    where
        K: Hash + Eq + Clone,
        F: FnMut(&Self::Item) -> K,
    {
        RateLimited::new(self, config, key)
    }

    /// Keeps a sample of the items; the rest are counted as `dropped`.
    ///
    /// # Errors
    ///
    /// [`CoreError::InvalidConfig`] for `every_nth(0)` or a probability outside 0.0..=1.0.
    ///
    /// ```
    /// use futures_util::stream;
    /// use flowgate::flow::{FlowExt, Sampling};
    /// assert!(stream::iter(0..3).sample(Sampling::probability(1.5)).is_err());
    /// assert!(stream::iter(0..3).sample(Sampling::every_nth(0)).is_err());
    /// ```
    fn sample(self, config: Sampling) -> Result<Sample<Self>, CoreError> {
        Sample::new(self, config)
    }
}

impl<S: Stream + Unpin> FlowExt for S {}
