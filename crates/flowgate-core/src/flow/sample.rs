//! Sampling: every nth item, or each item with a probability. Counted: every item received is
//! either passed or dropped. Holds no per-key state.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;

use super::stats::{Counters, FlowMeter};
use crate::CoreError;

/// Which items [`sample`](super::FlowExt::sample) keeps.
///
/// ```
/// use flowgate::flow::Sampling;
/// let every_tenth = Sampling::every_nth(10);
/// let one_percent = Sampling::probability(0.01).seed(7);
/// # let _ = (every_tenth, one_percent);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    rule: Rule,
    seed: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Rule {
    EveryNth(u64),
    Probability(f64),
}

impl Sampling {
    /// Keep the first item, then every `n`th after it (items 1, n + 1, 2n + 1, ...).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), flowgate::CoreError> {
    /// use futures_util::{stream, StreamExt};
    /// use flowgate::flow::{FlowExt, Sampling};
    /// let kept: Vec<u32> = stream::iter(1..=7).sample(Sampling::every_nth(2))?.collect().await;
    /// assert_eq!(kept, [1, 3, 5, 7]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn every_nth(n: u64) -> Self {
        Self {
            rule: Rule::EveryNth(n),
            seed: None,
        }
    }

    /// Keep each item with probability `p` (0.0 to 1.0), independently.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), flowgate::CoreError> {
    /// use futures_util::{stream, StreamExt};
    /// use flowgate::flow::{FlowExt, Sampling};
    /// let sampled = stream::iter(0..1000).sample(Sampling::probability(0.1).seed(1))?;
    /// let meter = sampled.meter();
    /// let kept = sampled.count().await as u64;
    /// let stats = meter.stats();
    /// assert_eq!((stats.passed, stats.passed + stats.dropped), (kept, 1000));
    /// # Ok(())
    /// # }
    /// ```
    pub fn probability(p: f64) -> Self {
        Self {
            rule: Rule::Probability(p),
            seed: None,
        }
    }

    /// Draw from a generator seeded with `seed`, so that a run can be repeated (for
    /// [`probability`](Self::probability); `every_nth` draws nothing).
    ///
    /// ```
    /// let a = flowgate::flow::Sampling::probability(0.5).seed(42);
    /// assert_eq!(a, flowgate::flow::Sampling::probability(0.5).seed(42));
    /// ```
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    pub(crate) fn validate(&self) -> Result<(), CoreError> {
        match self.rule {
            Rule::EveryNth(0) => Err(CoreError::InvalidConfig {
                setting: "every_nth",
                reason: "n must be at least 1 (1 keeps every item)".into(),
            }),
            Rule::Probability(p) if !(0.0..=1.0).contains(&p) => Err(CoreError::InvalidConfig {
                setting: "probability",
                reason: format!("{p} is not a probability; use a number from 0.0 to 1.0"),
            }),
            _ => Ok(()),
        }
    }
}

/// A sampled stream; from [`sample`](super::FlowExt::sample).
#[must_use = "streams do nothing unless polled"]
pub struct Sample<S> {
    input: S,
    rule: Rule,
    rng: fastrand::Rng,
    /// Items received so far.
    seen: u64,
    meter: FlowMeter,
}

impl<S: Stream + Unpin> Sample<S> {
    pub(crate) fn new(input: S, config: Sampling) -> Result<Self, CoreError> {
        config.validate()?;
        Ok(Self {
            input,
            rule: config.rule,
            rng: config
                .seed
                .map_or_else(fastrand::Rng::new, fastrand::Rng::with_seed),
            seen: 0,
            meter: FlowMeter::default(),
        })
    }

    /// A handle on this operator's counts: `passed` kept, `dropped` sampled out.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), flowgate::CoreError> {
    /// use futures_util::{stream, StreamExt};
    /// use flowgate::flow::{FlowExt, Sampling};
    /// let sampled = stream::iter(0..10).sample(Sampling::every_nth(5))?;
    /// let meter = sampled.meter();
    /// sampled.for_each(|_| async {}).await;
    /// assert_eq!((meter.stats().passed, meter.stats().dropped), (2, 8));
    /// # Ok(())
    /// # }
    /// ```
    pub fn meter(&self) -> FlowMeter {
        self.meter.clone()
    }
}

impl<S: Stream + Unpin> Stream for Sample<S> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        let this = &mut *self;
        loop {
            let Some(item) = std::task::ready!(Pin::new(&mut this.input).poll_next(cx)) else {
                return Poll::Ready(None);
            };
            let c = this.meter.counters();
            Counters::add(&c.received, 1);
            let keep = match this.rule {
                Rule::EveryNth(n) => this.seen % n == 0,
                Rule::Probability(p) => this.rng.f64() < p,
            };
            this.seen += 1;
            if keep {
                Counters::add(&c.passed, 1);
                Counters::add(&c.outputs, 1);
                return Poll::Ready(Some(item));
            }
            Counters::add(&c.dropped, 1);
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, self.input.size_hint().1)
    }
}

impl<S> fmt::Debug for Sample<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sample")
            .field("rule", &self.rule)
            .field("seen", &self.seen)
            .finish_non_exhaustive()
    }
}
