//! A subscriber group: the lanes (one per partition) of one subscriber or consumer group, the
//! members that share them, and the per-lane workers that deliver.
//!
//! A plain subscription is a group of one. A consumer group's members share the partitions:
//! partition `p` is assigned to member `p mod n` (members in join order), and a lane switches to
//! its new owner only once the old owner's deliveries of it finished (see [`crate::lane`]).
//! Because the queue belongs to the group, not to a member, what was queued moves with the
//! partition, in order.

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::pin;

use std::sync::Arc;

use flowgate_core::sync::atomic::{AtomicBool, Ordering};
use flowgate_core::sync::Mutex;
use flowgate_core::{BoxHandler, DeadLetter, DeadLetterSink, Event, RetryPolicy};
use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::sync::Notify;
use tokio::task::{AbortHandle, JoinHandle};
use tokio::time::Instant;

use crate::config::DeliveryMode;
use crate::dedupe::{Accepted, Begin, Dedupe};
use crate::lane::{task_waker, Lane, LaneGuard, Queued};
use crate::stats::Counters;

/// One member: a handler and where its dead letters go.
pub(crate) struct Member<T> {
    pub(crate) name: Arc<str>,
    pub(crate) handler: BoxHandler<T>,
    pub(crate) dead_letters: Arc<dyn DeadLetterSink<T>>,
}

pub(crate) type GroupLane<T> = Lane<T, Member<T>>;

/// The shared state of one subscriber (group).
pub(crate) struct Group<T> {
    /// The group's name (a consumer group's name, or the subscriber's).
    pub(crate) name: Arc<str>,
    /// Whether members join it by name (a consumer group) or it is a single subscriber.
    pub(crate) joinable: bool,
    pub(crate) mode: DeliveryMode,
    /// One lane per partition.
    pub(crate) lanes: Box<[GroupLane<T>]>,
    /// The topic's partition counters (shared with publishers).
    pub(crate) counters: Arc<[Counters]>,
    /// Members in join order. Locked by joins and leaves only.
    pub(crate) members: Mutex<Vec<Arc<Member<T>>>>,
    /// Keys this group handled `Ok` (exactly-once).
    pub(crate) done: Option<Dedupe>,
    /// The lane workers, one per partition: taken by whoever stops the group first (a last
    /// member's leave or a shutdown), who awaits them.
    pub(crate) workers: Mutex<Vec<JoinHandle<()>>>,
    /// Aborts the workers; kept for a shutdown whose deadline passes while another party (a
    /// leave, without a deadline) awaits them.
    pub(crate) aborts: Mutex<Vec<AbortHandle>>,
    /// Set (Release) once every worker ended; read with Acquire.
    pub(crate) stopped: AtomicBool,
    /// Notified when `stopped` is set.
    pub(crate) stopped_notify: Notify,
}

impl<T: Send + Sync + 'static> Group<T> {
    /// Assigns each lane to its member under the current membership and wakes the workers.
    pub(crate) fn rebalance(&self, members: &[Arc<Member<T>>]) {
        for (p, lane) in self.lanes.iter().enumerate() {
            let owner = (!members.is_empty()).then(|| Arc::clone(&members[p % members.len()]));
            lane.change(|state| state.assign(owner));
        }
    }

    /// Lets go of the members once the group stopped (shutdown): their handlers, and what those
    /// hold, are dropped when the last reference goes, here, outside every lock.
    pub(crate) fn release_members(&self) {
        let members = std::mem::take(&mut *self.members.lock());
        self.rebalance(&[]);
        drop(members);
    }

    /// Waits until no lane runs deliveries for `member` (or the group stopped: deliveries a
    /// shutdown cut off do not end on their own).
    pub(crate) async fn wait_released(&self, member: &Arc<Member<T>>) {
        for lane in &*self.lanes {
            loop {
                let mut idle = pin!(lane.room.notified());
                idle.as_mut().enable();
                {
                    let mut state = lane.lock();
                    // Acquire: pairs with the Release in `stop`.
                    if !state.running_for(member) || self.stopped.load(Ordering::Acquire) {
                        break;
                    }
                    state.watch();
                }
                let _watching = Watching { lane };
                idle.await;
            }
        }
    }

    /// Waits until every worker of this group ended.
    pub(crate) async fn wait_stopped(&self) {
        loop {
            let mut stopped = pin!(self.stopped_notify.notified());
            stopped.as_mut().enable();
            // Acquire: pairs with the Release in `stop`.
            if self.stopped.load(Ordering::Acquire) {
                return;
            }
            stopped.await;
        }
    }

    /// Records the workers just spawned.
    pub(crate) fn set_workers(&self, workers: Vec<JoinHandle<()>>) {
        *self.aborts.lock() = workers.iter().map(JoinHandle::abort_handle).collect();
        *self.workers.lock() = workers;
    }

    /// Waits until every worker ended; at `deadline` (if any) aborts those still running.
    /// Whoever calls first awaits the workers; a later caller waits for that, with its own
    /// deadline. Returns whether the deadline cut the wait short. Call after `close`.
    pub(crate) async fn stop(&self, deadline: Option<Instant>) -> bool {
        let workers = std::mem::take(&mut *self.workers.lock());
        let mut expired = false;
        if workers.is_empty() {
            // Another party is stopping the group (or did).
            let mut deadline = deadline;
            loop {
                let mut stopped = pin!(self.stopped_notify.notified());
                stopped.as_mut().enable();
                // Acquire: pairs with the Release below.
                if self.stopped.load(Ordering::Acquire) {
                    return expired;
                }
                match deadline {
                    Some(at) => {
                        if tokio::time::timeout_at(at, stopped).await.is_err() {
                            expired = true;
                            deadline = None;
                            for abort in &*self.aborts.lock() {
                                abort.abort();
                            }
                        }
                    }
                    None => stopped.await,
                }
            }
        }
        for mut worker in workers {
            let ended = match deadline {
                Some(at) => tokio::time::timeout_at(at, &mut worker).await.ok(),
                None => Some((&mut worker).await),
            };
            let outcome = if let Some(outcome) = ended {
                outcome
            } else {
                expired = true;
                worker.abort();
                worker.await
            };
            if let Err(error) = outcome {
                if error.is_panic() {
                    tracing::error!(group = &*self.name, "a partition worker panicked");
                }
            }
        }
        // Release: whoever sees `stopped` sees the lanes as the workers left them.
        self.stopped.store(true, Ordering::Release);
        self.stopped_notify.notify_waiters();
        // Watchers of deliveries that an abort cut off: they will not end on their own.
        for lane in &*self.lanes {
            lane.room.notify_waiters();
        }
        expired
    }

    /// Closes every lane (nothing more is queued) and wakes the workers so they drain and stop.
    pub(crate) fn close(&self) {
        for lane in &*self.lanes {
            lane.change(LaneGuard::close);
            lane.room.notify_waiters();
        }
    }

    /// Removes what is left in the lanes: `(queued, interrupted)`. Call once the group
    /// stopped; a second call finds nothing, so each event is reported once.
    pub(crate) fn drain(&self) -> (Vec<Event<T>>, Vec<Event<T>>) {
        let (mut queued, mut interrupted) = (Vec::new(), Vec::new());
        for lane in &*self.lanes {
            let (q, i) = lane.lock().drain();
            queued.extend(q);
            interrupted.extend(i);
        }
        (queued, interrupted)
    }
}

/// The worker of lane `p`: takes what the lane hands out, runs up to the concurrency cap at
/// once, and stops when the lane is closed and drained.
///
/// A group re-created under the name of one whose last member is still leaving starts only
/// once that one stopped, so a key's deliveries never overlap across the two.
pub(crate) async fn work<T: Send + Sync + 'static>(
    group: Arc<Group<T>>,
    p: usize,
    predecessor: Option<Arc<Group<T>>>,
) {
    if let Some(predecessor) = predecessor {
        predecessor.wait_stopped().await;
    }
    if group.lanes[p].concurrency() == 1 {
        work_one_at_a_time(&group, p).await;
    } else {
        work_concurrently(&group, p).await;
    }
    // A worker that parked while deliveries ran may have left its waker: let it go (it keeps
    // the finished task's memory alive).
    let parked = group.lanes[p].lock().unpark();
    drop(parked);
    // Whoever waits for this lane's deliveries to end: they did.
    group.lanes[p].room.notify_waiters();
}

/// The worker of a lane with a cap of 1: one delivery at a time, awaited in place; the end of
/// one and the take of the next share one lock.
async fn work_one_at_a_time<T: Send + Sync + 'static>(group: &Group<T>, p: usize) {
    let lane = &group.lanes[p];
    let counters = &group.counters[p];
    let mut ended: Option<u64> = None;
    let waker = task_waker().await;
    // The member this worker delivers to; replaced by `take_for` when the owner changes.
    let mut member: Option<Arc<Member<T>>> = None;
    loop {
        // The copy of the event that just ended, dropped after the lock (see `finish`); declared
        // before the guard, so also an early return drops it after the guard.
        let mut released = None;
        let mut former_owner = None;
        let (next, notify) = {
            let mut state = lane.lock();
            let watched = match ended.take() {
                Some(seq) => {
                    let (watched, event) = state.finish(seq);
                    released = event;
                    former_owner = state.release_idle_owner();
                    watched
                }
                None => false,
            };
            match state.take_for(&mut member) {
                Some((queued, member, publishers_wait)) => {
                    (Some((queued, member)), watched || publishers_wait)
                }
                None if state.finished() => {
                    drop(state);
                    if watched {
                        lane.room.notify_waiters();
                    }
                    return;
                }
                None => {
                    state.park(&waker);
                    (None, watched)
                }
            }
        };
        drop((released, former_owner));
        if notify {
            lane.room.notify_waiters();
        }
        if let Some((queued, member)) = next {
            ended = Some(deliver(group, counters, member, queued).await);
        } else {
            // Let go of the member while idle: it may have left, and its handler's state is
            // the user's to see dropped.
            member = None;
            lane.parked().await;
        }
    }
}

/// The worker of a lane with a cap above 1: up to the cap of deliveries run at once, in this
/// one task.
async fn work_concurrently<T: Send + Sync + 'static>(group: &Group<T>, p: usize) {
    let lane = &group.lanes[p];
    let counters = &group.counters[p];
    let mut running = FuturesUnordered::new();
    let waker = task_waker().await;
    loop {
        let (notify, wait_for_work) = {
            let mut state = lane.lock();
            let mut notify = false;
            while let Some((queued, member, publishers_wait)) = state.take() {
                notify |= publishers_wait;
                running.push(async move { deliver(group, counters, &member, queued).await });
            }
            if running.is_empty() && state.finished() {
                return;
            }
            // Wait for pushes only if a push could let more start (the cap is not reached).
            let could_take_more = running.len() < lane.concurrency();
            if could_take_more {
                state.park(&waker);
            }
            (notify, could_take_more)
        };
        if notify {
            lane.room.notify_waiters();
        }
        let ended = if wait_for_work {
            tokio::select! {
                seq = running.next(), if !running.is_empty() => seq,
                () = lane.parked() => None,
            }
        } else {
            running.next().await
        };
        if let Some(seq) = ended {
            // The guard ends with this block: `released` and the former owner outlive it.
            let (watched, released, former_owner) = {
                let mut state = lane.lock();
                let (watched, released) = state.finish(seq);
                (watched, released, state.release_idle_owner())
            };
            drop((released, former_owner));
            if watched {
                lane.room.notify_waiters();
            }
        }
    }
}

/// Uncounts a watcher of a lane when its wait ends (or is cancelled).
struct Watching<'a, T> {
    lane: &'a GroupLane<T>,
}

impl<T> Drop for Watching<'_, T> {
    fn drop(&mut self) {
        self.lane.lock().unwatch();
    }
}

/// One event's delivery to one member, with the mode's retries and dead letter. Resolves to the
/// event's lane sequence number.
async fn deliver<T: Send + Sync + 'static>(
    group: &Group<T>,
    counters: &Counters,
    member: &Member<T>,
    queued: Queued<T>,
) -> u64 {
    let Queued {
        event,
        seq,
        accepted,
        ..
    } = queued;
    match &group.mode {
        DeliveryMode::AtMostOnce => {
            let outcome = counters
                .invoke(&member.handler, &member.name, 1, event)
                .await;
            let counter = if outcome.is_ok() {
                &counters.processed
            } else {
                &counters.failed
            };
            Counters::add(counter, 1);
        }
        DeliveryMode::AtLeastOnce(retry) => {
            deliver_until_done(counters, member, event, retry, None).await;
        }
        DeliveryMode::ExactlyOnce(retry, _) => {
            let done = group.done.as_ref().zip(accepted);
            deliver_until_done(counters, member, event, retry, done).await;
        }
    }
    seq
}

/// At-least-once delivery (and exactly-once, with `done`): invoke until `Ok`, retrying with
/// backoff while the policy allows, then dead-letter.
///
/// Exactly-once: the delivery first claims its key in the group's `done` window. A key
/// handled `Ok` within the window is skipped (counted as deduplicated); while another
/// delivery of the key runs (a copy the publish window had forgotten), this one waits for it,
/// so a key never runs twice at once and never again after an `Ok`.
async fn deliver_until_done<T: Send + Sync + 'static>(
    counters: &Counters,
    member: &Member<T>,
    event: Event<T>,
    retry: &RetryPolicy,
    done: Option<(&Dedupe, Accepted)>,
) {
    // The key's age counts from its acceptance, as in the publish window: no clock read here
    // (a read costs ~30 ns on this machine, on the delivery's critical path).
    let mut claim = None;
    if let Some((done, accepted)) = done {
        let begin = match done.begin(accepted.key, accepted.at) {
            Begin::Busy => done.begin_when_free(accepted.key, accepted.at).await,
            begin => begin,
        };
        if begin == Begin::Done {
            Counters::add(&counters.deduplicated, 1);
            return;
        }
        claim = Some(Claim {
            done,
            accepted,
            ok: false,
        });
    }
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        match counters
            .invoke(&member.handler, &member.name, attempts, event.clone())
            .await
        {
            Ok(()) => {
                Counters::add(&counters.processed, 1);
                if let Some(claim) = &mut claim {
                    claim.ok = true;
                }
                return;
            }
            Err(error) => {
                Counters::add(&counters.failed, 1);
                if retry.should_retry(attempts, &error) {
                    Counters::add(&counters.retried, 1);
                    tokio::time::sleep(retry.backoff(attempts)).await;
                    continue;
                }
                Counters::add(&counters.dead_lettered, 1);
                let letter = DeadLetter::new(event, error, attempts, Arc::clone(&member.name));
                let sink = &member.dead_letters;
                if catch_unwind(AssertUnwindSafe(|| sink.dead_letter(letter))).is_err() {
                    tracing::error!(
                        subscriber = &*member.name,
                        "dead-letter sink panicked; the dead letter was counted but may not have been stored"
                    );
                }
                return;
            }
        }
    }
}

/// An exactly-once delivery's claim on its key; ends it when the delivery ends (also when the
/// delivery is cancelled), remembering the key if it was handled `Ok`.
struct Claim<'a> {
    done: &'a Dedupe,
    accepted: Accepted,
    ok: bool,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        let ok_at = self.ok.then_some(self.accepted.at);
        self.done.end(self.accepted.key, ok_at);
    }
}

impl<T> fmt::Debug for Member<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Member")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl<T> fmt::Debug for Group<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Group")
            .field("name", &self.name)
            .field("joinable", &self.joinable)
            .field("lanes", &self.lanes.len())
            .finish_non_exhaustive()
    }
}
