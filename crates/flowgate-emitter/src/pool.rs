//! The worker pool behind `emit_async`: N tasks pulling jobs from one bounded queue.
//!
//! A worker takes an event and runs it through the handlers of the registry snapshot current at
//! that moment: that snapshot holds every handler subscribed when `emit_async` began and not
//! unsubscribed since (and possibly handlers subscribed later). Not carrying a snapshot in the
//! queue keeps its reference count off the hand-off path, where producer and worker would
//! bounce it between cores on every event.
//!
//! A worker runs a job's handlers one after another; a failing handler is retried with backoff
//! (holding its worker, so retries count against the pool's concurrency) and, once the policy
//! gives up or on a permanent error, handed to the dead-letter sink.
//!
//! If a worker is cancelled mid-job (shutdown deadline, emitter dropped), the job's
//! [`Progress`] guard records it as interrupted, with the subscribers that had not finished.

use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::{pin, Pin};
use std::sync::Arc;

use flowgate_core::sync::atomic::Ordering;
use flowgate_core::sync::Mutex;
use flowgate_core::{DeadLetter, DeadLetterSink, Event, HandlerError, InlineCall, RetryPolicy};
use flume::Receiver;

use crate::registry::{Deliver, Entry, Registry, Snapshot};
use crate::room::Room;
use crate::stats::{Counters, WorkerCounters};

/// What the queue carries.
pub(crate) enum Task<T> {
    /// Run an event.
    Run(Event<T>),
    /// Stop the worker that takes this (shutdown sends one per worker, after the queued jobs).
    Stop,
}

impl<T> Task<T> {
    /// The event of a `Run`; `emit_async` only ever sends `Run`.
    pub(crate) fn into_event(self) -> Option<Event<T>> {
        match self {
            Self::Run(event) => Some(event),
            Self::Stop => None,
        }
    }
}

/// An event a worker had started when it was stopped.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use flowgate::{Emitter, Event};
/// let emitter = Emitter::<u32>::builder().workers(1).build()?;
/// emitter
///     .on("stuck", |_: Event<u32>| async { std::future::pending::<()>().await; Ok(()) })?
///     .detach();
/// emitter.emit_async(Event::new("stuck", 1)?).await?;
/// let report = emitter.shutdown(Duration::from_millis(50)).await;
/// let interrupted = &report.interrupted[0];
/// assert_eq!(*interrupted.event.payload(), 1);
/// assert_eq!(interrupted.pending.len(), 1);
/// # Ok(())
/// # }
/// ```
#[non_exhaustive]
pub struct Interrupted<T> {
    /// The event.
    pub event: Event<T>,
    /// Subscribers that had not finished with it (the first one may have been mid-call).
    pub pending: Vec<Arc<str>>,
}

impl<T> fmt::Debug for Interrupted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Interrupted")
            .field("event_id", &self.event.id())
            .field("pending", &self.pending)
            .finish()
    }
}

/// What every worker shares.
pub(crate) struct WorkerContext<T> {
    pub(crate) registry: Arc<Registry<T>>,
    /// Told after every `room_batch` takes, so blocked producers retry.
    pub(crate) room: Arc<Room>,
    pub(crate) room_batch: usize,
    pub(crate) queue: Receiver<Task<T>>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) retry: RetryPolicy,
    pub(crate) dead_letters: Arc<dyn DeadLetterSink<T>>,
    /// Filled by `Progress` guards of cancelled jobs; drained by shutdown.
    pub(crate) interrupted: Arc<Mutex<Vec<Interrupted<T>>>>,
}

/// The worker loop: runs until it takes a `Stop` (or the queue is gone, or the task is
/// aborted). `index` picks this worker's own counters.
pub(crate) async fn run_worker<T: Send + Sync + 'static>(
    context: Arc<WorkerContext<T>>,
    index: usize,
) {
    let Some(counters) = context.counters.workers.get(index) else {
        return;
    };
    let mut snapshot = SnapshotCache::default();
    let mut wake = Wake {
        room: &context.room,
        batch: context.room_batch,
        takes: 0,
    };
    loop {
        let task = match context.queue.try_recv() {
            Ok(task) => task,
            Err(flume::TryRecvError::Disconnected) => break,
            Err(flume::TryRecvError::Empty) => {
                // About to park: let go of the snapshot, so handlers unsubscribed meanwhile
                // (and whatever they captured) are not kept alive by an idle worker.
                snapshot.clear();
                match context.queue.recv_async().await {
                    Ok(task) => task,
                    Err(_) => break,
                }
            }
        };
        let Task::Run(event) = task else { break };
        wake.took();
        let snapshot = snapshot.current(&context.registry);
        let mut progress = Progress::start(&context, counters, &event, snapshot);
        for entry in snapshot.matching(event.kind()) {
            deliver_with_retry(&context, counters, &mut wake, entry, &event).await;
            progress.completed += 1;
        }
        progress.finish();
    }
}

/// Tells the room about this worker's takes: after every `batch` of them, and before the
/// worker waits on anything (a handler that is not done at once, a retry backoff), so a
/// producer blocked on a full queue is never left waiting while room exists.
struct Wake<'a> {
    room: &'a Room,
    batch: usize,
    /// Takes since the room was last told.
    takes: usize,
}

impl Wake<'_> {
    fn took(&mut self) {
        self.takes += 1;
        if self.takes >= self.batch {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.takes > 0 {
            self.takes = 0;
            self.room.taken();
        }
    }
}

/// A worker's copy of the registry snapshot, refreshed only when the registry changed, so
/// that the steady state touches no shared reference count.
struct SnapshotCache<T> {
    version: u64,
    snapshot: Option<Arc<Snapshot<T>>>,
}

impl<T> Default for SnapshotCache<T> {
    fn default() -> Self {
        Self {
            version: 0,
            snapshot: None,
        }
    }
}

impl<T> SnapshotCache<T> {
    fn clear(&mut self) {
        self.snapshot = None;
    }

    fn current(&mut self, registry: &Registry<T>) -> &Snapshot<T> {
        // The version is read before the snapshot: a change between the two loads leaves a
        // newer snapshot under an older version, which only costs a reload next time. The
        // registry's versions start at 1, so the first call always loads.
        let version = registry.version();
        if version != self.version {
            self.version = version;
            self.snapshot = None;
        }
        self.snapshot.get_or_insert_with(|| registry.load())
    }
}

/// Runs one subscriber's handler for one event until it succeeds or is dead-lettered.
async fn deliver_with_retry<T: Send + Sync + 'static>(
    context: &WorkerContext<T>,
    counters: &WorkerCounters,
    wake: &mut Wake<'_>,
    entry: &Entry<T>,
    event: &Event<T>,
) {
    let mut attempts = 0_u32;
    let mut call = pin!(InlineCall::new());
    loop {
        attempts += 1;
        let mut deliver = Deliver::new(entry, event.clone(), call.as_mut());
        let outcome = std::future::poll_fn(|cx| {
            let poll = Pin::new(&mut deliver).poll(cx);
            if poll.is_pending() {
                wake.flush();
            }
            poll
        })
        .await;
        let error = match outcome {
            // Unsubscribed before this attempt could start: nothing to do.
            None => return,
            Some(Ok(())) => {
                WorkerCounters::bump(&counters.handled);
                return;
            }
            Some(Err(error)) => error,
        };
        WorkerCounters::bump(&counters.failed);
        if error.is_panic() {
            WorkerCounters::bump(&counters.panicked);
        }
        if context.retry.should_retry(attempts, &error) {
            WorkerCounters::bump(&counters.retried);
            wake.flush();
            tokio::time::sleep(context.retry.backoff(attempts)).await;
            continue;
        }
        WorkerCounters::bump(&counters.dead_lettered);
        dead_letter(context, entry, event, error, attempts);
        return;
    }
}

fn dead_letter<T: 'static>(
    context: &WorkerContext<T>,
    entry: &Entry<T>,
    event: &Event<T>,
    error: HandlerError,
    attempts: u32,
) {
    let letter = DeadLetter::new(event.clone(), error, attempts, Arc::clone(&entry.name));
    let sink = &context.dead_letters;
    // A panicking sink must not take the worker down with it; the letter is then reported
    // here, since the sink could not take it.
    if let Err(panic) = catch_unwind(AssertUnwindSafe(|| sink.dead_letter(letter))) {
        let message = HandlerError::from_panic(panic.as_ref());
        tracing::error!(
            event_id = %event.id(),
            subscriber = %entry.name,
            attempts,
            %message,
            "the dead-letter sink panicked; this dead letter is reported only here"
        );
    }
}

/// Tracks one job while a worker runs it; if dropped before [`finish`](Self::finish) (the
/// worker was cancelled), records the job as interrupted.
struct Progress<'a, T> {
    context: &'a WorkerContext<T>,
    counters: &'a WorkerCounters,
    event: &'a Event<T>,
    snapshot: &'a Snapshot<T>,
    /// Matching subscribers done with the event (succeeded, dead-lettered or unsubscribed).
    completed: usize,
    finished: bool,
}

impl<'a, T> Progress<'a, T> {
    fn start(
        context: &'a WorkerContext<T>,
        counters: &'a WorkerCounters,
        event: &'a Event<T>,
        snapshot: &'a Snapshot<T>,
    ) -> Self {
        counters.busy.store(1, Ordering::Relaxed);
        Self {
            context,
            counters,
            event,
            snapshot,
            completed: 0,
            finished: false,
        }
    }

    fn finish(mut self) {
        self.finished = true;
    }
}

impl<T> Drop for Progress<'_, T> {
    fn drop(&mut self) {
        self.counters.busy.store(0, Ordering::Relaxed);
        if self.finished {
            return;
        }
        let pending = self
            .snapshot
            .matching(self.event.kind())
            .skip(self.completed)
            .map(|entry| Arc::clone(&entry.name))
            .collect();
        self.context.interrupted.lock().push(Interrupted {
            event: self.event.clone(),
            pending,
        });
    }
}
