//! The emitter handle, its builder, and subscription builder.

use std::fmt;
use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use flowgate_core::middleware::{Identity, Stack};
use flowgate_core::sync::atomic::{AtomicBool, Ordering};
use flowgate_core::sync::Mutex;
use flowgate_core::{
    BoxHandler, DeadLetterSink, Event, Handler, HandlerError, InlineCall, Layer, LogDeadLetters,
    Pattern, RetryPolicy,
};
use flume::{Sender, TrySendError};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::error::{HandlerFailure, HandlerFailures};
use crate::gate::{Enter, Gate};
use crate::pool::{run_worker, Interrupted, Task, WorkerContext};
use crate::registry::{Deliver, Entry, Registry, Sole};
use crate::room::{Admission, Room, Try};
use crate::stats::Counters;
use crate::subscription::Unsubscribe;
use crate::{EmitError, EmitterError, EmitterStats, Subscription, SubscriptionId};

/// The most workers an emitter accepts.
const MAX_WORKERS: usize = 1 << 16;
/// The largest queue an emitter accepts.
const MAX_QUEUE_CAPACITY: usize = 1 << 28;

/// What `emit_async` does when the queue is full.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use flowgate::emitter::{Backpressure, EmitError, Emitter};
/// use flowgate::Event;
/// let emitter = Emitter::<u32>::builder()
///     .workers(1)
///     .queue_capacity(1)
///     .backpressure(Backpressure::Reject)
///     .build()?;
/// emitter.on("slow", |_: Event<u32>| async { std::future::pending::<()>().await; Ok(()) })?.detach();
/// emitter.emit_async(Event::new("slow", 1)?).await?; // taken by the worker
/// tokio::task::yield_now().await;
/// emitter.emit_async(Event::new("slow", 2)?).await?; // fills the queue
/// let refused = emitter.emit_async(Event::new("slow", 3)?).await;
/// assert!(matches!(refused, Err(EmitError::QueueFull(_))));
/// # let _ = emitter.shutdown(Duration::ZERO).await;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Backpressure {
    /// Wait for room, at most `max_wait`; then fail with [`EmitError::Timeout`].
    Block {
        /// The longest an `emit_async` call waits for room.
        max_wait: Duration,
    },
    /// Fail at once with [`EmitError::QueueFull`].
    Reject,
}

impl Default for Backpressure {
    /// `Block` for at most 5 seconds.
    fn default() -> Self {
        Self::Block {
            max_wait: Duration::from_secs(5),
        }
    }
}

/// Configures an [`Emitter`]. Defaults: 4 workers, a queue of 1,024 events,
/// [`Backpressure::default`], [`RetryPolicy::default`], dead letters logged.
///
/// ```
/// use std::time::Duration;
/// use flowgate::emitter::{Backpressure, Emitter};
/// use flowgate::{DeadLetterQueue, RetryPolicy};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dead = DeadLetterQueue::new(100);
/// let emitter = Emitter::<String>::builder()
///     .workers(8)
///     .queue_capacity(10_000)
///     .backpressure(Backpressure::Reject)
///     .retry(RetryPolicy::exponential(3, Duration::from_millis(20)))
///     .dead_letters(dead.clone())
///     .build()?;
/// assert_eq!(emitter.stats().workers, 8);
/// # Ok(())
/// # }
/// ```
pub struct EmitterBuilder<T> {
    workers: usize,
    queue_capacity: usize,
    backpressure: Backpressure,
    retry: RetryPolicy,
    dead_letters: Arc<dyn DeadLetterSink<T>>,
}

impl<T> fmt::Debug for EmitterBuilder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmitterBuilder")
            .field("workers", &self.workers)
            .field("queue_capacity", &self.queue_capacity)
            .field("backpressure", &self.backpressure)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl<T: Send + Sync + 'static> EmitterBuilder<T> {
    fn new() -> Self {
        Self {
            workers: 4,
            queue_capacity: 1024,
            backpressure: Backpressure::default(),
            retry: RetryPolicy::default(),
            dead_letters: Arc::new(LogDeadLetters),
        }
    }

    /// Worker tasks serving `emit_async` (at least 1).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use flowgate::Emitter;
    /// assert_eq!(Emitter::<()>::builder().workers(2).build()?.stats().workers, 2);
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = workers;
        self
    }

    /// The most events `emit_async` may have waiting (at least 1); idle workers being handed an
    /// event add at most one each.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use flowgate::Emitter;
    /// let emitter = Emitter::<()>::builder().queue_capacity(16).build()?;
    /// assert_eq!(emitter.stats().queue_capacity, 16);
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = capacity;
        self
    }

    /// What `emit_async` does when the queue is full.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use flowgate::emitter::{Backpressure, Emitter};
    /// let emitter = Emitter::<()>::builder()
    ///     .backpressure(Backpressure::Block { max_wait: Duration::from_millis(100) })
    ///     .build()?;
    /// # drop(emitter);
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub fn backpressure(mut self, policy: Backpressure) -> Self {
        self.backpressure = policy;
        self
    }

    /// How the worker pool retries failed handlers (inline `emit` never retries).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use flowgate::{Emitter, Event, HandlerError, RetryPolicy};
    /// let emitter = Emitter::<()>::builder()
    ///     .retry(RetryPolicy::exponential(3, Duration::from_millis(10)))
    ///     .build()?;
    /// let calls = Arc::new(AtomicU32::new(0));
    /// let seen = Arc::clone(&calls);
    /// emitter
    ///     .on("flaky", move |_: Event<()>| {
    ///         let n = seen.fetch_add(1, Ordering::SeqCst);
    ///         async move { if n < 2 { Err(HandlerError::retryable("try again")) } else { Ok(()) } }
    ///     })?
    ///     .detach();
    /// emitter.emit_async(Event::new("flaky", ())?).await?;
    /// let report = emitter.shutdown(Duration::from_secs(5)).await;
    /// assert_eq!((report.stats.retried, report.stats.handled), (2, 1));
    /// assert_eq!(calls.load(Ordering::SeqCst), 3);
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Where the worker pool sends events a handler gave up on.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use flowgate::{DeadLetterQueue, Emitter, Event, HandlerError};
    /// let dead = DeadLetterQueue::new(10);
    /// let emitter = Emitter::<u32>::builder().dead_letters(dead.clone()).build()?;
    /// emitter
    ///     .subscribe("pay", |_: Event<u32>| async { Err(HandlerError::permanent("card declined")) })
    ///     .name("payments")
    ///     .start()?
    ///     .detach();
    /// emitter.emit_async(Event::new("pay", 5)?).await?;
    /// let _ = emitter.shutdown(Duration::from_secs(1)).await;
    /// let letter = dead.drain().pop().unwrap();
    /// assert_eq!((&*letter.subscriber, letter.attempts), ("payments", 1));
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub fn dead_letters(mut self, sink: impl DeadLetterSink<T>) -> Self {
        self.dead_letters = Arc::new(sink);
        self
    }

    /// Builds the emitter and starts its workers on the current tokio runtime.
    ///
    /// # Errors
    ///
    /// [`EmitterError::InvalidConfig`] for zero workers or a zero queue capacity,
    /// [`EmitterError::Core`] for an invalid retry policy, [`EmitterError::NoRuntime`] outside
    /// a tokio runtime.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use flowgate::emitter::{Emitter, EmitterError};
    /// assert!(matches!(
    ///     Emitter::<()>::builder().workers(0).build(),
    ///     Err(EmitterError::InvalidConfig { setting: "workers", .. })
    /// ));
    /// assert!(Emitter::<()>::builder().build().is_ok());
    /// # Ok(())
    /// # }
    /// ```
    pub fn build(self) -> Result<Emitter<T>, EmitterError> {
        if self.workers == 0 {
            return Err(EmitterError::InvalidConfig {
                setting: "workers",
                reason: "must be at least 1; use 1 for strictly sequential emit_async handling",
            });
        }
        if self.workers > MAX_WORKERS {
            return Err(EmitterError::InvalidConfig {
                setting: "workers",
                reason: "must be at most 65,536; a worker is a task, and more of them than that only adds contention",
            });
        }
        if self.queue_capacity > MAX_QUEUE_CAPACITY {
            return Err(EmitterError::InvalidConfig {
                setting: "queue_capacity",
                reason:
                    "must be at most 2^28 events; a bounded queue that large bounds nothing useful",
            });
        }
        if self.queue_capacity == 0 {
            return Err(EmitterError::InvalidConfig {
                setting: "queue_capacity",
                reason: "must be at least 1; the queue bounds memory, so pick the most events you accept to have waiting",
            });
        }
        self.retry.validate()?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| EmitterError::NoRuntime)?;

        let (sender, queue) = flume::bounded(self.queue_capacity);
        let counters = Arc::new(Counters::new(self.workers));
        let interrupted = Arc::new(Mutex::new(Vec::new()));
        let registry = Arc::new(Registry::new());
        let room = Arc::new(Room::default());
        let context = Arc::new(WorkerContext {
            room: Arc::clone(&room),
            room_batch: Room::batch(self.queue_capacity, self.workers),
            registry: Arc::clone(&registry),
            queue: queue.clone(),
            counters: Arc::clone(&counters),
            retry: self.retry,
            dead_letters: self.dead_letters,
            interrupted: Arc::clone(&interrupted),
        });
        let workers: Vec<JoinHandle<()>> = (0..self.workers)
            .map(|index| runtime.spawn(run_worker(Arc::clone(&context), index)))
            .collect();
        let worker_ids = workers.iter().map(JoinHandle::id).collect();
        Ok(Emitter {
            shared: Arc::new(Shared {
                registry,
                room,
                counters,
                sender,
                queue,
                submit_gate: Gate::new(),
                submitters_left: Notify::new(),
                draining: AtomicBool::new(false),
                drained_flag: AtomicBool::new(false),
                drained: Notify::new(),
                worker_ids,
                workers: Mutex::new(workers),
                interrupted,
                backpressure: self.backpressure,
                queue_capacity: self.queue_capacity,
                worker_count: self.workers,
            }),
        })
    }
}

/// Direct, typed event dispatch: inline with [`emit`](Self::emit), or through a bounded worker
/// pool with [`emit_async`](Self::emit_async).
///
/// Handlers subscribe to an event type name or a pattern (`order.*`, `order.>`; see
/// [`Pattern`]). Every matching handler gets the event (fan-out shares one allocation); they
/// run in subscription order.
///
/// Cloning an `Emitter` gives another handle to the same emitter. When the last handle is
/// dropped without [`shutdown`](Self::shutdown), the workers are stopped at once and what they
/// had not run is logged as lost; call `shutdown` to drain and get a report instead. A handler
/// that emits follow-up events should hold a [`WeakEmitter`] (from
/// [`downgrade`](Self::downgrade)): holding an `Emitter` would keep it alive for ever.
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use std::sync::Arc;
/// use std::time::Duration;
/// use flowgate::{Emitter, Event};
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let emitter = Emitter::<u64>::builder().workers(2).build()?;
/// let total = Arc::new(AtomicU64::new(0));
/// let sum = Arc::clone(&total);
/// emitter
///     .on("payment.*", move |event: Event<u64>| {
///         let sum = Arc::clone(&sum);
///         async move {
///             sum.fetch_add(*event.payload(), Ordering::Relaxed);
///             Ok(())
///         }
///     })?
///     .detach();
///
/// // Inline: returns once every matching handler ran.
/// emitter.emit(Event::new("payment.received", 5)?).await?;
/// // Through the pool: returns once queued.
/// emitter.emit_async(Event::new("payment.received", 7)?).await?;
///
/// let report = emitter.shutdown(Duration::from_secs(1)).await;
/// assert!(report.is_complete());
/// assert_eq!(total.load(Ordering::Relaxed), 12);
/// # Ok(())
/// # }
/// ```
pub struct Emitter<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Clone for Emitter<T> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<T> fmt::Debug for Emitter<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Emitter")
            .field("workers", &self.shared.worker_count)
            .field("queue_capacity", &self.shared.queue_capacity)
            .field("backpressure", &self.shared.backpressure)
            .field("shut_down", &self.shared.submit_gate.is_closed())
            .finish_non_exhaustive()
    }
}

/// A handle that does not keep the emitter alive: what a handler should hold when it emits
/// follow-up events (a handler holding an [`Emitter`] would keep the emitter, and its
/// workers, alive for ever).
///
/// ```
/// use flowgate::{Emitter, Event};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let emitter = Emitter::<u32>::builder().build()?;
/// let weak = emitter.downgrade();
/// emitter
///     .on("order.placed", move |event: Event<u32>| {
///         let weak = weak.clone();
///         async move {
///             if let Some(emitter) = weak.upgrade() {
///                 let _ = emitter.emit_async(Event::new("invoice.due", *event.payload())?).await;
///             }
///             Ok(())
///         }
///     })?
///     .detach();
/// emitter.emit(Event::new("order.placed", 1)?).await?;
/// let weak = emitter.downgrade();
/// drop(emitter);
/// assert!(weak.upgrade().is_none(), "the handler's weak handle did not keep it alive");
/// # Ok(())
/// # }
/// ```
pub struct WeakEmitter<T> {
    shared: Weak<Shared<T>>,
}

impl<T> Clone for WeakEmitter<T> {
    fn clone(&self) -> Self {
        Self {
            shared: Weak::clone(&self.shared),
        }
    }
}

impl<T> fmt::Debug for WeakEmitter<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeakEmitter")
            .field("alive", &(self.shared.strong_count() > 0))
            .finish()
    }
}

impl<T> WeakEmitter<T> {
    /// The emitter, if a strong handle still exists.
    ///
    /// ```
    /// # use flowgate::Emitter;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let emitter = Emitter::<()>::builder().build()?;
    /// assert!(emitter.downgrade().upgrade().is_some());
    /// # Ok(())
    /// # }
    /// ```
    pub fn upgrade(&self) -> Option<Emitter<T>> {
        self.shared.upgrade().map(|shared| Emitter { shared })
    }
}

struct Shared<T> {
    registry: Arc<Registry<T>>,
    /// Where blocked `emit_async` calls wait for a worker to take an event.
    room: Arc<Room>,
    counters: Arc<Counters>,
    sender: Sender<Task<T>>,
    /// A receiver kept to read the depth and to collect what was never run at shutdown.
    queue: flume::Receiver<Task<T>>,
    /// Entered by `emit_async` while it hands an event over; closed by shutdown.
    submit_gate: Gate,
    /// Woken when the last `emit_async` inside a closed submit gate leaves.
    submitters_left: Notify,
    /// Held by the shutdown call that drains (released if that call is cancelled).
    draining: AtomicBool,
    /// Set when a shutdown call finished draining; `drained` wakes waiting calls on any change.
    drained_flag: AtomicBool,
    drained: Notify,
    /// The worker tasks' ids, so a shutdown called from a handler knows it runs on a worker.
    worker_ids: Vec<tokio::task::Id>,
    /// Taken by the first shutdown (or by drop).
    workers: Mutex<Vec<JoinHandle<()>>>,
    interrupted: Arc<Mutex<Vec<Interrupted<T>>>>,
    backpressure: Backpressure,
    queue_capacity: usize,
    worker_count: usize,
}

impl<T> Shared<T> {
    fn leave_submit_gate(&self) {
        if self.submit_gate.leave() {
            self.submitters_left.notify_waiters();
        }
    }

    /// Counts a refused `emit_async` and builds its error (the task is always a `Run`).
    fn refuse(&self, task: Task<T>, error: fn(Event<T>) -> EmitError<T>) -> EmitError<T> {
        Counters::add(&self.counters.rejected, 1);
        match task.into_event() {
            Some(event) => error(event),
            None => unreachable!("emit_async only sends Task::Run"),
        }
    }
}

/// The right to drain, held by one shutdown call at a time. Dropped without
/// [`finish`](Self::finish) (the call was cancelled), it is released and waiting calls are
/// woken, so one of them drains instead.
struct DrainClaim<'a, T> {
    shared: &'a Shared<T>,
    finished: bool,
}

impl<'a, T> DrainClaim<'a, T> {
    fn try_claim(shared: &'a Shared<T>) -> Option<Self> {
        shared
            .draining
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| Self {
                shared,
                finished: false,
            })
    }

    fn finish(mut self) {
        self.finished = true;
        // Release: pairs with the Acquire loads of waiting calls.
        self.shared.drained_flag.store(true, Ordering::Release);
        self.shared.drained.notify_waiters();
    }
}

impl<T> Drop for DrainClaim<'_, T> {
    fn drop(&mut self) {
        if !self.finished {
            self.shared.draining.store(false, Ordering::Release);
            self.shared.drained.notify_waiters();
        }
    }
}

impl<T> Drop for Shared<T> {
    fn drop(&mut self) {
        for worker in std::mem::take(&mut *self.workers.lock()) {
            worker.abort();
        }
        let queued = self.queue.drain().filter_map(Task::into_event).count();
        if queued > 0 {
            tracing::warn!(
                queued,
                "emitter dropped with {queued} accepted events that will not run; call Emitter::shutdown to drain and get them back"
            );
        }
    }
}

/// The worker handles, out of `Shared` while a shutdown joins them. Whatever is not finished
/// when this is dropped (a cancelled shutdown, or the worker running the shutdown call) goes
/// back to `Shared`, so that the emitter's drop still stops it.
struct TakenWorkers<'a, T> {
    shared: &'a Shared<T>,
    handles: Vec<JoinHandle<()>>,
}

impl<'a, T> TakenWorkers<'a, T> {
    fn take(shared: &'a Shared<T>) -> Self {
        let handles = std::mem::take(&mut *shared.workers.lock());
        Self { shared, handles }
    }
}

impl<T> Drop for TakenWorkers<'_, T> {
    fn drop(&mut self) {
        let unfinished = self.handles.drain(..).filter(|w| !w.is_finished());
        self.shared.workers.lock().extend(unfinished);
    }
}

/// `now + wait`, or a far-off instant when that overflows (`Duration::MAX` means "no limit").
fn deadline_after(wait: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(wait)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

/// A successful inline emit.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use flowgate::{Emitter, Event};
/// let emitter = Emitter::<()>::builder().build()?;
/// let _a = emitter.on("a.*", |_: Event<()>| async { Ok(()) })?;
/// let _b = emitter.on("a.b", |_: Event<()>| async { Ok(()) })?;
/// assert_eq!(emitter.emit(Event::new("a.b", ())?).await?.handlers, 2);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Emitted {
    /// Handlers that ran and succeeded (0 when nothing matched).
    pub handlers: usize,
}

/// What [`Emitter::shutdown`] reports.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use flowgate::{Emitter, Event};
/// let emitter = Emitter::<u32>::builder().build()?;
/// let _sub = emitter.on("job", |_: Event<u32>| async { Ok(()) })?;
/// emitter.emit_async(Event::new("job", 1)?).await?;
/// let report = emitter.shutdown(Duration::from_secs(1)).await;
/// assert!(report.is_complete() && !report.deadline_expired);
/// assert_eq!(report.stats.handled, 1);
/// # Ok(())
/// # }
/// ```
#[non_exhaustive]
pub struct ShutdownReport<T> {
    /// Accepted events no worker had started when the deadline passed, in queue order.
    pub not_run: Vec<Event<T>>,
    /// Events a worker was running when the deadline passed (cancelled mid-way).
    pub interrupted: Vec<Interrupted<T>>,
    /// Whether the deadline passed before the pool drained.
    pub deadline_expired: bool,
    /// `true` when another `shutdown` call was still draining when this one returned (its
    /// deadline passed, or it runs in a handler and must not wait): this report then says
    /// nothing about the events; that call's report does.
    pub drain_in_progress: bool,
    /// The counters once the pool stopped.
    pub stats: EmitterStats,
}

impl<T> ShutdownReport<T> {
    /// Whether every accepted event was run to the end, as far as this report knows (a report
    /// with `drain_in_progress` is never complete).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use flowgate::Emitter;
    /// let emitter = Emitter::<()>::builder().build()?;
    /// assert!(emitter.shutdown(Duration::from_secs(1)).await.is_complete());
    /// # Ok(())
    /// # }
    /// ```
    pub fn is_complete(&self) -> bool {
        !self.drain_in_progress && self.not_run.is_empty() && self.interrupted.is_empty()
    }
}

impl<T> fmt::Debug for ShutdownReport<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShutdownReport")
            .field("not_run", &self.not_run.len())
            .field("interrupted", &self.interrupted)
            .field("deadline_expired", &self.deadline_expired)
            .field("drain_in_progress", &self.drain_in_progress)
            .field("stats", &self.stats)
            .finish()
    }
}

impl<T: Send + Sync + 'static> Emitter<T> {
    /// Starts configuring an emitter.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use flowgate::Emitter;
    /// let emitter = Emitter::<String>::builder().workers(1).build()?;
    /// assert_eq!(emitter.stats().workers, 1);
    /// # Ok(())
    /// # }
    /// ```
    pub fn builder() -> EmitterBuilder<T> {
        EmitterBuilder::new()
    }

    /// Subscribes `handler` to events whose type matches `pattern`; see
    /// [`subscribe`](Self::subscribe) for options.
    ///
    /// # Errors
    ///
    /// [`EmitterError::Core`] for an invalid pattern, [`EmitterError::ShutDown`] after
    /// shutdown.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use flowgate::{Emitter, Event};
    /// let emitter = Emitter::<u32>::builder().build()?;
    /// let sub = emitter.on("order.*", |event: Event<u32>| async move {
    ///     assert!(*event.payload() > 0);
    ///     Ok(())
    /// })?;
    /// assert_eq!(emitter.emit(Event::new("order.placed", 3)?).await?.handlers, 1);
    /// sub.unsubscribe();
    /// assert_eq!(emitter.emit(Event::new("order.placed", 3)?).await?.handlers, 0);
    /// # Ok(())
    /// # }
    /// ```
    pub fn on(
        &self,
        pattern: &str,
        handler: impl Handler<T>,
    ) -> Result<Subscription, EmitterError> {
        self.subscribe(pattern, handler).start()
    }

    /// Starts a subscription with options: a name, a concurrency cap, middleware.
    ///
    /// ```
    /// use std::time::Duration;
    /// use flowgate::{Emitter, Event};
    /// use flowgate::middleware::TimeoutLayer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let emitter = Emitter::<u32>::builder().build()?;
    /// let sub = emitter
    ///     .subscribe("order.>", |_: Event<u32>| async { Ok(()) })
    ///     .name("audit")
    ///     .concurrency(2)
    ///     .layer(TimeoutLayer::new(Duration::from_secs(1)))
    ///     .start()?;
    /// # drop(sub);
    /// # Ok(())
    /// # }
    /// ```
    pub fn subscribe<H: Handler<T>>(
        &self,
        pattern: &str,
        handler: H,
    ) -> SubscribeBuilder<'_, T, H, Identity> {
        SubscribeBuilder {
            emitter: self,
            pattern: Pattern::new(pattern),
            handler,
            layers: Identity,
            name: None,
            concurrency: None,
        }
    }

    /// Runs every handler matching the event's type, one after another in subscription order,
    /// and returns once all have finished.
    ///
    /// # Delivery
    ///
    /// Each matching handler is invoked once; a failing handler never hides the event from the
    /// others. Inline emits do not retry and do not dead-letter: the failures come back to the
    /// caller in [`EmitError::HandlersFailed`]. A panicking handler counts as failed.
    /// Dropping the returned future cancels the handlers not yet finished.
    ///
    /// # Errors
    ///
    /// [`EmitError::HandlersFailed`] when any handler failed; [`EmitError::ShutDown`] after
    /// shutdown began.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use flowgate::emitter::{EmitError, Emitter};
    /// use flowgate::{Event, HandlerError};
    /// let emitter = Emitter::<u32>::builder().build()?;
    /// let _ok = emitter.on("x", |_: Event<u32>| async { Ok(()) })?;
    /// let _bad = emitter.on("x", |_: Event<u32>| async { Err(HandlerError::permanent("nope")) })?;
    /// match emitter.emit(Event::new("x", 1)?).await {
    ///     Err(EmitError::HandlersFailed(report)) => {
    ///         assert_eq!((report.succeeded, report.failures.len()), (1, 1));
    ///     }
    ///     other => panic!("unexpected {other:?}"),
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn emit(&self, event: Event<T>) -> Result<Emitted, EmitError<T>> {
        let shared = &*self.shared;
        if shared.submit_gate.is_closed() {
            return Err(EmitError::ShutDown(event));
        }
        let counters = &*shared.counters;
        let mut call = pin!(InlineCall::new());
        let registry = &shared.registry;
        let sole = with_context(|cx| registry.start_sole(event, call.as_mut(), cx)).await;
        let (succeeded, failures) = match sole {
            // The common case, counted with one update (one emit and one handled).
            Sole::Done => {
                counters.inline_ok.add(1);
                return Ok(Emitted { handlers: 1 });
            }
            Sole::Removed => {
                Counters::add(&counters.emitted, 1);
                (0, Vec::new())
            }
            Sole::Started { poll, id, name } => {
                // Counted before waiting, so an emit dropped while its handler waits counts.
                Counters::add(&counters.emitted, 1);
                let outcome = match poll {
                    Poll::Ready(outcome) => outcome,
                    Poll::Pending => call.await,
                };
                match outcome {
                    Ok(()) => (1, Vec::new()),
                    Err(error) => (0, vec![failure(counters, id, name, error)]),
                }
            }
            Sole::Other(event) => {
                Counters::add(&counters.emitted, 1);
                let snapshot = registry.load();
                if snapshot.has_patterns() {
                    // The iterator matches patterns against the name while the event moves on.
                    let kind = event.kind().clone();
                    run_inline(counters, snapshot.matching(&kind), event, call).await
                } else {
                    let entries = snapshot.exact(event.kind()).iter();
                    run_inline(counters, entries, event, call).await
                }
            }
        };
        if succeeded > 0 {
            Counters::add(&counters.handled, succeeded as u64);
        }
        if failures.is_empty() {
            Ok(Emitted {
                handlers: succeeded,
            })
        } else {
            Counters::add(&shared.counters.failed, failures.len() as u64);
            Err(EmitError::HandlersFailed(HandlerFailures {
                succeeded,
                failures,
            }))
        }
    }

    /// Queues the event for the worker pool and returns once it is queued (or refused).
    ///
    /// # Delivery
    ///
    /// Once this returns `Ok`, the event is accepted: every handler subscribed when this call
    /// began (and not unsubscribed since) runs it, with retries and dead letters per the
    /// emitter's policies, or [`shutdown`](Self::shutdown) reports it. Dropping anything after
    /// `Ok` never cancels the delivery. (A worker routes the event when it takes it, so a
    /// handler subscribed in between may get it too.) An `Err` means not accepted; the error
    /// hands the event
    /// back.
    ///
    /// # Errors
    ///
    /// [`EmitError::QueueFull`] (policy `Reject`), [`EmitError::Timeout`] (policy `Block`, wait
    /// expired), [`EmitError::ShutDown`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use flowgate::{Emitter, Event};
    /// let emitter = Emitter::<u32>::builder().build()?;
    /// let _sub = emitter.on("job", |_: Event<u32>| async { Ok(()) })?;
    /// emitter.emit_async(Event::new("job", 1)?).await?; // queued; a worker runs it
    /// let report = emitter.shutdown(Duration::from_secs(1)).await;
    /// assert_eq!(report.stats.handled, 1);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn emit_async(&self, event: Event<T>) -> Result<(), EmitError<T>> {
        let shared = &*self.shared;
        let counters = &*shared.counters;
        // The fast path: one synchronous hand-off inside the submit gate, with no await inside,
        // so shutdown never waits long for it.
        let task = match shared.submit_gate.try_enter() {
            Enter::Entered => {
                let sent = shared.sender.try_send(Task::Run(event));
                shared.leave_submit_gate();
                match sent {
                    Ok(()) => {
                        Counters::add(&counters.emitted, 1);
                        return Ok(());
                    }
                    Err(TrySendError::Full(task)) => task,
                    Err(TrySendError::Disconnected(task)) => {
                        return Err(shared.refuse(task, EmitError::ShutDown));
                    }
                }
            }
            Enter::Refused { last_out } => {
                if last_out {
                    shared.submitters_left.notify_waiters();
                }
                Counters::add(&counters.rejected, 1);
                return Err(EmitError::ShutDown(event));
            }
        };
        let Backpressure::Block { max_wait } = shared.backpressure else {
            return Err(shared.refuse(task, EmitError::QueueFull));
        };
        // The slow path waits outside the gate; the room's door keeps it out of the queue once
        // shutdown has begun.
        let admission = shared
            .room
            .wait_for_room(task, deadline_after(max_wait), |task| {
                match shared.sender.try_send(task) {
                    Ok(()) => Try::Sent,
                    Err(TrySendError::Full(task)) => Try::Full(task),
                    Err(TrySendError::Disconnected(task)) => Try::Closed(task),
                }
            })
            .await;
        match admission {
            Admission::Sent => {
                Counters::add(&counters.emitted, 1);
                Ok(())
            }
            Admission::Closed(task) => Err(shared.refuse(task, EmitError::ShutDown)),
            Admission::TimedOut(task) => Err(shared.refuse(task, EmitError::Timeout)),
        }
    }

    /// Stops accepting events, lets the workers finish what is queued and running for at most
    /// `deadline`, then stops them and reports what did not run.
    ///
    /// # Delivery
    ///
    /// Every `emit_async` that returned `Ok` is, afterwards, either run to the end or listed in
    /// the report (`not_run` or `interrupted`). An `emit_async` still waiting for room when
    /// shutdown begins is refused with [`EmitError::ShutDown`] (not accepted). One call drains;
    /// another call (concurrent, or later) returns an empty report once the drain is done, or
    /// one marked `drain_in_progress` if its own deadline passes first or it runs inside a
    /// handler. A drain whose call is cancelled is taken over by the next call. A handler that blocks its thread (never reaching an `.await`) cannot be
    /// cancelled: past the deadline, shutdown still waits for it to return.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use flowgate::emitter::{EmitError, Emitter};
    /// use flowgate::Event;
    /// let emitter = Emitter::<u32>::builder().build()?;
    /// let _sub = emitter.on("job", |_: Event<u32>| async { Ok(()) })?;
    /// for n in 0..10 {
    ///     emitter.emit_async(Event::new("job", n)?).await?;
    /// }
    /// let report = emitter.shutdown(Duration::from_secs(5)).await;
    /// assert!(report.is_complete());
    /// assert_eq!(report.stats.handled, 10);
    /// assert!(matches!(emitter.emit_async(Event::new("job", 11)?).await, Err(EmitError::ShutDown(_))));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn shutdown(&self, deadline: Duration) -> ShutdownReport<T> {
        let shared = &*self.shared;
        let end = deadline_after(deadline);
        shared.submit_gate.close();
        shared.room.close();
        let on_worker = tokio::task::try_id().is_some_and(|id| shared.worker_ids.contains(&id));
        loop {
            if shared.drained_flag.load(Ordering::Acquire) {
                return self.report_from_elsewhere(false);
            }
            if let Some(claim) = DrainClaim::try_claim(shared) {
                // Hand-offs inside the gate take no await, so this wait is brief; after it, and
                // with the room's door closed, nothing more can enter the queue.
                while shared.submit_gate.inside() > 0 {
                    let mut left = pin!(shared.submitters_left.notified());
                    // Registered before the re-check, so the last leaver's wake-up is not missed.
                    left.as_mut().enable();
                    if shared.submit_gate.inside() == 0 {
                        break;
                    }
                    left.await;
                }
                let report = self.drain(end).await;
                claim.finish();
                return report;
            }
            // Another call is draining. A handler must not wait for it: that call may be
            // waiting for this very worker.
            if on_worker {
                return self.report_from_elsewhere(true);
            }
            let mut changed = pin!(shared.drained.notified());
            changed.as_mut().enable();
            if shared.drained_flag.load(Ordering::Acquire)
                || !shared.draining.load(Ordering::Acquire)
            {
                continue;
            }
            if tokio::time::timeout_at(end, changed).await.is_err() {
                return self.report_from_elsewhere(true);
            }
        }
    }

    /// The draining half of [`shutdown`](Self::shutdown), run by its first caller.
    async fn drain(&self, end: Instant) -> ShutdownReport<T> {
        let shared = &*self.shared;
        // Put back, on every way out (cancellation included), the workers not yet finished, so
        // that a later shutdown or the emitter's drop still stops them.
        let mut workers = TakenWorkers::take(shared);
        // A handler that calls shutdown runs on a worker: that worker is not waited for (it
        // would wait for itself); it stops after its handler returns.
        let caller = tokio::task::try_id();
        let is_caller = |worker: &JoinHandle<()>| Some(worker.id()) == caller;
        // One stop per worker, queued behind every accepted event: the workers drain, then stop.
        let mut deadline_expired = false;
        let others = workers.handles.iter().filter(|w| !is_caller(w)).count();
        for _ in 0..others {
            let stop = shared.sender.send_async(Task::Stop);
            if !matches!(tokio::time::timeout_at(end, stop).await, Ok(Ok(()))) {
                deadline_expired = true;
                break;
            }
        }
        // Join the workers; a joined handle leaves the list (it must not be polled again).
        let mut index = 0;
        while index < workers.handles.len() && !deadline_expired {
            let worker = &mut workers.handles[index];
            if is_caller(worker) {
                index += 1;
            } else if tokio::time::timeout_at(end, worker).await.is_ok() {
                workers.handles.swap_remove(index);
            } else {
                deadline_expired = true;
            }
        }
        if deadline_expired {
            for worker in workers.handles.iter().filter(|w| !is_caller(w)) {
                worker.abort();
            }
            let mut index = 0;
            while index < workers.handles.len() {
                if is_caller(&workers.handles[index]) {
                    index += 1;
                } else {
                    // Err(cancelled) is the expected outcome; the worker's guards have run.
                    let _ = (&mut workers.handles[index]).await;
                    workers.handles.swap_remove(index);
                }
            }
        }
        let not_run: Vec<_> = shared.queue.drain().filter_map(Task::into_event).collect();
        if workers.handles.iter().any(is_caller) {
            // The drain above took the calling worker's stop; give it one back.
            let _ = shared.sender.try_send(Task::Stop);
        }
        drop(workers);
        let interrupted = std::mem::take(&mut *shared.interrupted.lock());
        ShutdownReport {
            not_run,
            interrupted,
            deadline_expired,
            drain_in_progress: false,
            stats: self.stats(),
        }
    }

    /// The report of a call that did not drain: another call did, or still does (`in_progress`).
    fn report_from_elsewhere(&self, in_progress: bool) -> ShutdownReport<T> {
        ShutdownReport {
            not_run: Vec::new(),
            interrupted: Vec::new(),
            deadline_expired: in_progress,
            drain_in_progress: in_progress,
            stats: self.stats(),
        }
    }

    /// A handle that does not keep the emitter alive; see [`WeakEmitter`].
    ///
    /// ```
    /// # use flowgate::Emitter;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let emitter = Emitter::<()>::builder().build()?;
    /// let weak = emitter.downgrade();
    /// drop(emitter);
    /// assert!(weak.upgrade().is_none());
    /// # Ok(())
    /// # }
    /// ```
    pub fn downgrade(&self) -> WeakEmitter<T> {
        WeakEmitter {
            shared: Arc::downgrade(&self.shared),
        }
    }

    /// Whether [`shutdown`](Self::shutdown) has begun.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use flowgate::Emitter;
    /// let emitter = Emitter::<()>::builder().build()?;
    /// assert!(!emitter.is_shut_down());
    /// let _ = emitter.shutdown(Duration::ZERO).await;
    /// assert!(emitter.is_shut_down());
    /// # Ok(())
    /// # }
    /// ```
    pub fn is_shut_down(&self) -> bool {
        self.shared.submit_gate.is_closed()
    }

    /// A snapshot of the counters and gauges.
    ///
    /// ```
    /// # use flowgate::{Emitter, Event};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let emitter = Emitter::<()>::builder().queue_capacity(8).build()?;
    /// emitter.emit(Event::new("nobody.listens", ())?).await?;
    /// let stats = emitter.stats();
    /// assert_eq!((stats.emitted, stats.handled, stats.queue_capacity), (1, 0, 8));
    /// # Ok(())
    /// # }
    /// ```
    pub fn stats(&self) -> EmitterStats {
        let shared = &*self.shared;
        let c = &*shared.counters;
        // Read once: it stands for one emit and one handled.
        let inline_ok = c.inline_ok.get();
        EmitterStats {
            emitted: Counters::get(&c.emitted) + inline_ok,
            handled: Counters::get(&c.handled)
                + inline_ok
                + c.sum(|w| w.handled.load(Ordering::Relaxed)),
            failed: Counters::get(&c.failed) + c.sum(|w| w.failed.load(Ordering::Relaxed)),
            panicked: Counters::get(&c.panicked) + c.sum(|w| w.panicked.load(Ordering::Relaxed)),
            retried: c.sum(|w| w.retried.load(Ordering::Relaxed)),
            dead_lettered: c.sum(|w| w.dead_lettered.load(Ordering::Relaxed)),
            rejected: Counters::get(&c.rejected),
            queued: shared.queue.len(),
            in_flight: c
                .workers
                .iter()
                .map(|w| w.busy.load(Ordering::Relaxed))
                .sum(),
            queue_capacity: shared.queue_capacity,
            workers: shared.worker_count,
            subscriptions: shared.registry.load().len(),
        }
    }
}

/// Records one inline handler failure.
fn failure(counters: &Counters, id: u64, name: Arc<str>, error: HandlerError) -> HandlerFailure {
    if error.is_panic() {
        Counters::add(&counters.panicked, 1);
    }
    HandlerFailure {
        subscription: SubscriptionId(id),
        subscriber: name,
        error,
    }
}

/// Runs `f` with the task's context and resolves at once, on the first poll.
fn with_context<R>(f: impl FnOnce(&mut Context<'_>) -> R) -> impl Future<Output = R> {
    let mut f = Some(f);
    poll_fn(move |cx| match f.take() {
        Some(f) => Poll::Ready(f(cx)),
        // Never polled again after it resolved.
        None => Poll::Pending,
    })
}

/// Runs `entries` one after another for an inline emit; returns (succeeded, failures).
async fn run_inline<'a, T: Send + Sync + 'static>(
    counters: &Counters,
    entries: impl Iterator<Item = &'a Arc<Entry<T>>>,
    event: Event<T>,
    mut call: Pin<&mut InlineCall>,
) -> (usize, Vec<HandlerFailure>) {
    let mut succeeded = 0;
    let mut failures = Vec::new();
    let mut entries = entries.peekable();
    let mut event = Some(event);
    while let Some(entry) = entries.next() {
        // The last handler takes the event itself: one reference-count round trip less.
        let this = if entries.peek().is_some() {
            event.clone()
        } else {
            event.take()
        };
        let Some(this) = this else { break };
        match Deliver::new(entry, this, call.as_mut()).await {
            None => {}
            Some(Ok(())) => succeeded += 1,
            Some(Err(error)) => {
                failures.push(failure(counters, entry.id, Arc::clone(&entry.name), error));
            }
        }
    }
    (succeeded, failures)
}

impl<T: Send + Sync + 'static> Unsubscribe for Registry<T> {
    fn unsubscribe(&self, id: u64) -> bool {
        Registry::unsubscribe(self, id)
    }
}

/// Options for one subscription; finish with [`start`](Self::start).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use flowgate::{Emitter, Event};
/// let emitter = Emitter::<u32>::builder().build()?;
/// let builder = emitter.subscribe("a", |_: Event<u32>| async { Ok(()) }).name("audit");
/// let sub = builder.start()?;
/// # drop(sub);
/// # Ok(())
/// # }
/// ```
#[must_use = "a subscription starts only when .start() is called"]
pub struct SubscribeBuilder<'a, T, H, L> {
    emitter: &'a Emitter<T>,
    pattern: Result<Pattern, flowgate_core::CoreError>,
    handler: H,
    layers: L,
    name: Option<Arc<str>>,
    concurrency: Option<usize>,
}

impl<T, H, L> fmt::Debug for SubscribeBuilder<'_, T, H, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubscribeBuilder")
            .field("pattern", &self.pattern)
            .field("name", &self.name)
            .field("concurrency", &self.concurrency)
            .finish_non_exhaustive()
    }
}

impl<'a, T: Send + Sync + 'static, H: Handler<T>, L> SubscribeBuilder<'a, T, H, L> {
    /// Names the subscriber in dead letters, reports and logs (default `subscription-<id>`).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use flowgate::emitter::{EmitError, Emitter};
    /// use flowgate::{Event, HandlerError};
    /// let emitter = Emitter::<()>::builder().build()?;
    /// let _sub = emitter
    ///     .subscribe("a", |_: Event<()>| async { Err(HandlerError::permanent("x")) })
    ///     .name("billing")
    ///     .start()?;
    /// let Err(EmitError::HandlersFailed(report)) = emitter.emit(Event::new("a", ())?).await else {
    ///     panic!("the handler fails");
    /// };
    /// assert_eq!(&*report.failures[0].subscriber, "billing");
    /// # Ok(())
    /// # }
    /// ```
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// At most `max` invocations of this handler run at once (at least 1), across inline
    /// emits and the worker pool.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use flowgate::emitter::{Emitter, EmitterError};
    /// use flowgate::Event;
    /// let emitter = Emitter::<()>::builder().build()?;
    /// let _capped = emitter.subscribe("a", |_: Event<()>| async { Ok(()) }).concurrency(4).start()?;
    /// let zero = emitter.subscribe("a", |_: Event<()>| async { Ok(()) }).concurrency(0).start();
    /// assert!(matches!(zero, Err(EmitterError::InvalidConfig { setting: "concurrency", .. })));
    /// # Ok(())
    /// # }
    /// ```
    pub fn concurrency(mut self, max: usize) -> Self {
        self.concurrency = Some(max);
        self
    }

    /// Wraps the handler in `layer`; the first layer added is the outermost.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use flowgate::emitter::{EmitError, Emitter};
    /// use flowgate::middleware::TimeoutLayer;
    /// use flowgate::{Event, HandlerError};
    /// let emitter = Emitter::<()>::builder().build()?;
    /// let _slow = emitter
    ///     .subscribe("a", |_: Event<()>| async {
    ///         tokio::time::sleep(Duration::from_secs(60)).await;
    ///         Ok(())
    ///     })
    ///     .layer(TimeoutLayer::new(Duration::from_secs(1)))
    ///     .start()?;
    /// let Err(EmitError::HandlersFailed(report)) = emitter.emit(Event::new("a", ())?).await else {
    ///     panic!("the handler times out");
    /// };
    /// assert!(matches!(report.failures[0].error, HandlerError::TimedOut(_)));
    /// # Ok(())
    /// # }
    /// ```
    pub fn layer<N>(self, layer: N) -> SubscribeBuilder<'a, T, H, Stack<N, L>> {
        SubscribeBuilder {
            emitter: self.emitter,
            pattern: self.pattern,
            handler: self.handler,
            layers: Stack::new(layer, self.layers),
            name: self.name,
            concurrency: self.concurrency,
        }
    }

    /// Subscribes. Every emit that begins after this returns reaches the handler.
    ///
    /// # Errors
    ///
    /// [`EmitterError::Core`] for an invalid pattern, [`EmitterError::InvalidConfig`] for a
    /// zero concurrency cap, [`EmitterError::ShutDown`] after shutdown.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use flowgate::emitter::{Emitter, EmitterError};
    /// use flowgate::Event;
    /// let emitter = Emitter::<()>::builder().build()?;
    /// let bad = emitter.subscribe("a..b", |_: Event<()>| async { Ok(()) }).start();
    /// assert!(matches!(bad, Err(EmitterError::Core(_))));
    /// let good = emitter.subscribe("a.b", |_: Event<()>| async { Ok(()) }).start()?;
    /// assert_eq!(emitter.stats().subscriptions, 1);
    /// # drop(good);
    /// # Ok(())
    /// # }
    /// ```
    pub fn start(self) -> Result<Subscription, EmitterError>
    where
        L: Layer<H>,
        L::Handler: Handler<T>,
    {
        let pattern = self.pattern?;
        if self.concurrency == Some(0) || self.concurrency > Some(Semaphore::MAX_PERMITS) {
            return Err(EmitterError::InvalidConfig {
                setting: "concurrency",
                reason: "must be at least 1 and at most tokio's Semaphore::MAX_PERMITS",
            });
        }
        let shared = &*self.emitter.shared;
        if shared.submit_gate.is_closed() {
            return Err(EmitterError::ShutDown);
        }
        let handler = BoxHandler::new(self.layers.layer(self.handler));
        // The cap is taken by the dispatcher before each start (not by a layer around the
        // handler), so an invocation waiting for a permit has not started yet.
        let limit = self.concurrency.map(|max| Arc::new(Semaphore::new(max)));
        let id = shared
            .registry
            .subscribe(self.name, pattern, handler, limit);
        let registry: Arc<dyn Unsubscribe> = shared.registry.clone();
        let weak: Weak<dyn Unsubscribe> = Arc::downgrade(&registry);
        Ok(Subscription::new(id, weak))
    }
}
