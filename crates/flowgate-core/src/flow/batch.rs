//! Batch: items handed on together, as soon as `max` arrived or `window` passed since the
//! first item of the batch, whichever comes first.
//!
//! Invariant: the open batch holds at most `max` items and is handed on no later than `window`
//! after its first item arrived (when the stream is polled then); a partial batch is handed on
//! when the input ends. No item is dropped.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::Stream;
use tokio::time::{Instant, Sleep};

use super::stats::{Counters, FlowMeter};
use crate::CoreError;

/// How [`batch`](super::FlowExt::batch) groups items.
///
/// ```
/// use std::time::Duration;
/// use flowgate::flow::Batching;
/// let config = Batching::new(100, Duration::from_millis(50));
/// assert_eq!((config.max(), config.window()), (100, Duration::from_millis(50)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batching {
    max: usize,
    window: Duration,
}

/// The most items a batch preallocates room for; a larger `max` grows the batch as it fills.
const PREALLOCATE: usize = 256;

impl Batching {
    /// Hand a batch on when it holds `max` items or `window` after its first item arrived,
    /// whichever comes first.
    ///
    /// ```
    /// use std::time::Duration;
    /// let config = flowgate::flow::Batching::new(10, Duration::from_secs(1));
    /// assert_eq!(config.max(), 10);
    /// ```
    pub fn new(max: usize, window: Duration) -> Self {
        Self { max, window }
    }

    /// The most items in one batch.
    ///
    /// ```
    /// use std::time::Duration;
    /// assert_eq!(flowgate::flow::Batching::new(10, Duration::from_secs(1)).max(), 10);
    /// ```
    pub fn max(&self) -> usize {
        self.max
    }

    /// The longest a batch stays open after its first item.
    ///
    /// ```
    /// use std::time::Duration;
    /// let config = flowgate::flow::Batching::new(10, Duration::from_secs(1));
    /// assert_eq!(config.window(), Duration::from_secs(1));
    /// ```
    pub fn window(&self) -> Duration {
        self.window
    }

    pub(crate) fn validate(&self) -> Result<(), CoreError> {
        if self.max == 0 {
            return Err(CoreError::InvalidConfig {
                setting: "max",
                reason: "a batch must hold at least one item; use 1 or more".into(),
            });
        }
        if self.window.is_zero() {
            return Err(CoreError::InvalidConfig {
                setting: "window",
                reason: "a batch window must be longer than zero; to batch by count alone, use a long window".into(),
            });
        }
        Ok(())
    }
}

/// A stream of batches; from [`batch`](super::FlowExt::batch).
#[must_use = "streams do nothing unless polled"]
pub struct Batch<S: Stream> {
    /// `None` once the input ended.
    input: Option<S>,
    config: Batching,
    open: Vec<S::Item>,
    /// When the open batch is due; set by its first item.
    due: Option<Instant>,
    sleep: Option<Pin<Box<Sleep>>>,
    meter: FlowMeter,
}

// Never pins its fields: the input is polled through `Pin::new` (`S: Unpin`), the timer is boxed.
impl<S: Stream> Unpin for Batch<S> {}

impl<S: Stream + Unpin> Batch<S> {
    pub(crate) fn new(input: S, config: Batching) -> Result<Self, CoreError> {
        config.validate()?;
        Ok(Self {
            input: Some(input),
            config,
            open: Vec::new(),
            due: None,
            sleep: None,
            meter: FlowMeter::default(),
        })
    }

    /// A handle on this operator's counts; `outputs` counts batches, `passed` the items in
    /// them.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), flowgate::CoreError> {
    /// use std::time::Duration;
    /// use futures_util::{stream, StreamExt};
    /// use flowgate::flow::{Batching, FlowExt};
    /// let batches = stream::iter(1..=7).batch(Batching::new(3, Duration::from_secs(1)))?;
    /// let meter = batches.meter();
    /// let all: Vec<Vec<i32>> = batches.collect().await;
    /// assert_eq!(all, [vec![1, 2, 3], vec![4, 5, 6], vec![7]]);
    /// assert_eq!((meter.stats().outputs, meter.stats().passed), (3, 7));
    /// # Ok(())
    /// # }
    /// ```
    pub fn meter(&self) -> FlowMeter {
        self.meter.clone()
    }

    fn hand_on(&mut self) -> Vec<S::Item> {
        let room = self.config.max.min(PREALLOCATE);
        let batch = std::mem::replace(&mut self.open, Vec::with_capacity(room));
        self.due = None;
        let c = self.meter.counters();
        Counters::add(&c.passed, batch.len() as u64);
        Counters::add(&c.outputs, 1);
        Counters::set(&c.pending, 0);
        batch
    }
}

impl<S: Stream + Unpin> Stream for Batch<S> {
    type Item = Vec<S::Item>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Vec<S::Item>>> {
        let this = self.get_mut();
        loop {
            let now = Instant::now();
            if this.due.is_some_and(|due| due <= now) {
                return Poll::Ready(Some(this.hand_on()));
            }
            let Some(input) = this.input.as_mut() else {
                if this.open.is_empty() {
                    return Poll::Ready(None);
                }
                Counters::add(&this.meter.counters().flushed_early, 1);
                return Poll::Ready(Some(this.hand_on()));
            };
            match Pin::new(input).poll_next(cx) {
                Poll::Ready(Some(item)) => {
                    if this.open.is_empty() {
                        this.due = Some(now + this.config.window);
                        if this.open.capacity() == 0 {
                            this.open.reserve(this.config.max.min(PREALLOCATE));
                        }
                    }
                    this.open.push(item);
                    let c = this.meter.counters();
                    Counters::add(&c.received, 1);
                    Counters::set(&c.pending, this.open.len() as u64);
                    if this.open.len() >= this.config.max {
                        return Poll::Ready(Some(this.hand_on()));
                    }
                    continue;
                }
                Poll::Ready(None) => {
                    this.input = None;
                    continue;
                }
                Poll::Pending => {}
            }
            let Some(due) = this.due else {
                return Poll::Pending;
            };
            if super::wait_until(&mut this.sleep, due, cx).is_pending() {
                return Poll::Pending;
            }
        }
    }
}

impl<S: Stream> fmt::Debug for Batch<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Batch")
            .field("config", &self.config)
            .field("open", &self.open.len())
            .field("input_ended", &self.input.is_none())
            .finish_non_exhaustive()
    }
}
