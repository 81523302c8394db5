//! A lane: one subscriber's (or consumer group's) share of one partition. It holds the events
//! queued for that subscriber, tracks which ordering keys are in flight, and says which group
//! member may run them.
//!
//! Invariants (all under the lane's lock):
//!
//! 1. **Bounded.** At most `capacity` events are queued and at most `concurrency` in flight.
//! 2. **One key at a time, in order.** [`LaneState::take`] hands out the *first* queued event
//!    whose ordering key is not in flight. So an event of key K is taken only when no earlier
//!    event of K is queued or in flight: same-key events run one at a time, in queue (= publish)
//!    order, and an event held back by a retrying one of its key does not hold back other keys.
//!    Proof sketch: skipping an event only ever happens because its key is in flight, so every
//!    queued event before the one taken that has the same key would itself have been taken.
//! 3. **One owner at a time.** Deliveries run for the member in `active`. When the group is
//!    rebalanced, `assigned` changes; `active` follows only once nothing is in flight, so a
//!    partition moves to its new owner only after the old owner's deliveries finished, and
//!    its queue moves with it, in order.
//! 4. **Closed is final.** After [`LaneState::close`] nothing more is pushed; the worker drains
//!    what is queued and stops.
//! 5. **No lost wake-up.** The worker decides to wait under the lock, and leaves its task's
//!    waker there ([`LaneGuard::park`]); whoever then changes what the worker could do (a push,
//!    a close, a new owner) does so under the lock and takes the waker to wake it
//!    ([`LaneGuard::push`], [`LaneGuard::unpark`]). A change made before the worker looked is
//!    seen when it looks; a change made after finds the waker. The worker's wait
//!    ([`Parked`]) ends when it finds its waker taken, however many of its polls were skipped.
//!
//! Public only for the loom models in `tests/`; not part of the API.

use std::collections::VecDeque;
use std::fmt;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use std::sync::Arc;

use flowgate_core::sync::{Mutex, MutexGuard};
use flowgate_core::Event;
use tokio::sync::Notify;

use crate::dedupe::Accepted;

/// An event waiting in a lane.
pub struct Queued<T> {
    /// The event.
    pub event: Event<T>,
    /// The stable hash of its ordering key; `None` for unkeyed events (no order promise).
    pub key: Option<u64>,
    /// Lane-local sequence number (identifies it while in flight).
    pub seq: u64,
    /// Its idempotency key as the publish window accepted it (exactly-once topics).
    pub accepted: Option<Accepted>,
}

/// An event being delivered.
pub struct InFlight<T> {
    /// The event (kept for the shutdown report, should the delivery be interrupted).
    pub event: Event<T>,
    /// Its key hash.
    pub key: Option<u64>,
    /// Its lane sequence number.
    pub seq: u64,
}

/// The lane's state; see the [module docs](self).
struct LaneState<T, M> {
    queue: VecDeque<Queued<T>>,
    in_flight: Vec<InFlight<T>>,
    next_seq: u64,
    closed: bool,
    /// The member partitions are assigned to by the last rebalance.
    assigned: Option<Arc<M>>,
    /// The member whose deliveries run (or last ran).
    active: Option<Arc<M>>,
    /// The parked worker's waker: set when it waits for work, taken by whoever wakes it.
    /// A waker instead of a `tokio::sync::Notify`: the lane's lock is held for the decision
    /// anyway, and a `Notify` took its own lock at every park and every wake, which with a
    /// producer that keeps pace with the worker happens every few events.
    parked: Option<Waker>,
    /// Publishers waiting on `room`.
    waiting_publishers: usize,
    /// Others waiting on `room` for deliveries to end (rebalances, unsubscribes).
    watchers: usize,
}

/// See the [module docs](self).
pub struct Lane<T, M> {
    state: Mutex<LaneState<T, M>>,
    /// Wakes publishers waiting for room (after a take) and watchers waiting for deliveries
    /// to end (after a finish). Notified only when someone is counted as waiting: a
    /// `notify_waiters` takes tokio's internal lock even when nobody waits.
    pub room: Notify,
    capacity: usize,
    concurrency: usize,
}

impl<T, M> Lane<T, M> {
    /// An empty, open lane with no owner.
    pub fn new(capacity: usize, concurrency: usize) -> Self {
        Self {
            state: Mutex::new(LaneState {
                queue: VecDeque::new(),
                in_flight: Vec::new(),
                next_seq: 0,
                closed: false,
                assigned: None,
                active: None,
                parked: None,
                waiting_publishers: 0,
                watchers: 0,
            }),
            room: Notify::new(),
            capacity,
            concurrency,
        }
    }

    /// At most this many deliveries run at once.
    pub fn concurrency(&self) -> usize {
        self.concurrency
    }

    /// The worker's wait after [`LaneGuard::park`]: see [`Parked`].
    pub fn parked(&self) -> Parked<'_, T, M> {
        Parked { lane: self }
    }

    /// Changes the lane with `change` under its lock, then wakes the worker if it was parked
    /// (it must look again: the lane was closed, or its owner changed).
    pub fn change<'a>(&'a self, change: impl FnOnce(&mut LaneGuard<'a, T, M>)) {
        let parked = {
            let mut state = self.lock();
            change(&mut state);
            state.unpark()
        };
        if let Some(worker) = parked {
            worker.wake();
        }
    }

    /// Locks the lane.
    pub fn lock(&self) -> LaneGuard<'_, T, M> {
        LaneGuard {
            state: self.state.lock(),
            capacity: self.capacity,
            concurrency: self.concurrency,
        }
    }
}

/// The locked lane.
pub struct LaneGuard<'a, T, M> {
    state: MutexGuard<'a, LaneState<T, M>>,
    capacity: usize,
    concurrency: usize,
}

impl<T, M> LaneGuard<'_, T, M> {
    /// Whether the lane was closed.
    pub fn is_closed(&self) -> bool {
        self.state.closed
    }

    /// Whether one more event fits.
    pub fn has_room(&self) -> bool {
        self.state.queue.len() < self.capacity
    }

    /// Queues `event` (with its key hash). The caller checked `has_room` and `is_closed`,
    /// unless `drop_oldest` is set, in which case a full lane drops its oldest event.
    ///
    /// Returns the oldest event if it was dropped to make room, and the parked worker's
    /// waker. Drop the one and wake the other once the lock is released: the event may hold
    /// the last reference to a payload whose `Drop` is the user's code (which may publish).
    pub fn push(
        &mut self,
        event: Event<T>,
        key: Option<u64>,
        accepted: Option<Accepted>,
        drop_oldest: bool,
    ) -> (Option<Event<T>>, Option<Waker>) {
        let state = &mut *self.state;
        let mut dropped = None;
        if drop_oldest && state.queue.len() >= self.capacity {
            dropped = state.queue.pop_front().map(|oldest| oldest.event);
        }
        let seq = state.next_seq;
        state.next_seq += 1;
        state.queue.push_back(Queued {
            event,
            key,
            seq,
            accepted,
        });
        (dropped, state.parked.take())
    }

    /// Hands out the next event to deliver and the member to deliver it to, or `None` if
    /// nothing may start now (see the module docs). Also returns whether publishers wait for
    /// the room this made.
    pub fn take(&mut self) -> Option<(Queued<T>, Arc<M>, bool)> {
        let (queued, owner, publishers_wait) = self.next()?;
        Some((queued, Arc::clone(owner), publishers_wait))
    }

    /// As [`take`](Self::take), for a worker that keeps the member it delivers to in `owner`:
    /// `owner` is replaced only when the lane's owner changed since the worker's last take.
    /// The members of a group are shared by all its lanes, whose workers run on different
    /// threads; a reference-count increment and decrement on the member for every event made
    /// its cache line travel between the cores at every delivery.
    pub fn take_for<'o>(
        &mut self,
        owner: &'o mut Option<Arc<M>>,
    ) -> Option<(Queued<T>, &'o Arc<M>, bool)> {
        let (queued, active, publishers_wait) = self.next()?;
        if owner
            .as_ref()
            .is_some_and(|current| !Arc::ptr_eq(current, active))
        {
            *owner = None;
        }
        let owner = owner.get_or_insert_with(|| Arc::clone(active));
        Some((queued, owner, publishers_wait))
    }

    /// The next event to deliver, moved to in-flight, with the member that owns the lane now.
    fn next(&mut self) -> Option<(Queued<T>, &Arc<M>, bool)> {
        let state = &mut *self.state;
        if state.in_flight.len() >= self.concurrency || state.queue.is_empty() {
            return None;
        }
        if !same(state.active.as_ref(), state.assigned.as_ref()) {
            if !state.in_flight.is_empty() {
                return None;
            }
            state.active.clone_from(&state.assigned);
        }
        let owner = state.active.as_ref()?;
        let in_flight = &state.in_flight;
        let index = state.queue.iter().position(|queued| match queued.key {
            None => true,
            Some(key) => !in_flight.iter().any(|f| f.key == Some(key)),
        })?;
        let queued = state.queue.remove(index)?;
        state.in_flight.push(InFlight {
            event: queued.event.clone(),
            key: queued.key,
            seq: queued.seq,
        });
        Some((queued, owner, state.waiting_publishers > 0))
    }

    /// Records that delivery `seq` ended. Returns whether someone watches for that (then
    /// notify `room`), and the copy of the event kept for the shutdown report: drop it once
    /// the lock is released, as it is often the last reference to the payload, whose `Drop`
    /// is the user's code (and may publish to this very lane).
    pub fn finish(&mut self, seq: u64) -> (bool, Option<Event<T>>) {
        let in_flight = &mut self.state.in_flight;
        let ended = in_flight
            .iter()
            .position(|f| f.seq == seq)
            .map(|i| in_flight.remove(i).event);
        (self.state.watchers > 0, ended)
    }

    /// Once nothing is in flight, hands the lane to the member it was assigned to and returns
    /// the owner it had (a member that left or lost the lane), for the caller to drop after
    /// releasing the lock: it may be the last reference to a handler, whose `Drop` is the
    /// user's code.
    pub fn release_idle_owner(&mut self) -> Option<Arc<M>> {
        let state = &mut *self.state;
        if !state.in_flight.is_empty() || same(state.active.as_ref(), state.assigned.as_ref()) {
            return None;
        }
        std::mem::replace(&mut state.active, state.assigned.clone())
    }

    /// Counts a watcher waiting on `room` for deliveries to end (undo with
    /// [`unwatch`](Self::unwatch)).
    pub fn watch(&mut self) {
        self.state.watchers += 1;
    }

    /// Uncounts a watcher.
    pub fn unwatch(&mut self) {
        self.state.watchers = self.state.watchers.saturating_sub(1);
    }

    /// Marks the worker as about to wait for work: the next push (or close, or change of
    /// owner) takes `waker` and wakes it.
    pub fn park(&mut self, waker: &Waker) {
        // The worker parks with its task's waker every time: clone it only the first time.
        if !self
            .state
            .parked
            .as_ref()
            .is_some_and(|parked| parked.will_wake(waker))
        {
            self.state.parked = Some(waker.clone());
        }
    }

    /// Takes the parked worker's waker, if it is parked; wake it once the lock is released.
    pub fn unpark(&mut self) -> Option<Waker> {
        self.state.parked.take()
    }

    /// Whether the worker's job is over: closed, and nothing left it could run.
    pub fn finished(&self) -> bool {
        let state = &*self.state;
        state.closed
            && state.in_flight.is_empty()
            && (state.queue.is_empty() || state.assigned.is_none())
    }

    /// Whether nothing is queued or in flight.
    pub fn is_idle(&self) -> bool {
        self.state.queue.is_empty() && self.state.in_flight.is_empty()
    }

    /// Closes the lane: nothing more is pushed.
    pub fn close(&mut self) {
        self.state.closed = true;
    }

    /// Assigns the lane to `member` (`None`: to nobody). Takes effect once nothing is in flight.
    pub fn assign(&mut self, member: Option<Arc<M>>) {
        if self.state.in_flight.is_empty() {
            // Nothing runs for the old owner: let it go now (it may hold a handler's state).
            self.state.active.clone_from(&member);
        }
        self.state.assigned = member;
    }

    /// Whether deliveries for `member` are in flight here.
    pub fn running_for(&self, member: &Arc<M>) -> bool {
        !self.state.in_flight.is_empty()
            && self
                .state
                .active
                .as_ref()
                .is_some_and(|active| Arc::ptr_eq(active, member))
    }

    /// Counts a publisher waiting for room (undo with [`unwait`](Self::unwait)).
    pub fn wait(&mut self) {
        self.state.waiting_publishers += 1;
    }

    /// Uncounts a publisher waiting for room.
    pub fn unwait(&mut self) {
        self.state.waiting_publishers = self.state.waiting_publishers.saturating_sub(1);
    }

    /// Events queued.
    pub fn depth(&self) -> usize {
        self.state.queue.len()
    }

    /// Deliveries in flight.
    pub fn in_flight(&self) -> usize {
        self.state.in_flight.len()
    }

    /// Removes and returns the queued events and the in-flight ones (for a report, once the
    /// worker is gone), and lets go of the waker of a worker that was stopped while parked.
    pub fn drain(&mut self) -> (Vec<Event<T>>, Vec<Event<T>>) {
        self.state.parked = None;
        let queued = self.state.queue.drain(..).map(|q| q.event).collect();
        let in_flight = self.state.in_flight.drain(..).map(|f| f.event).collect();
        (queued, in_flight)
    }
}

/// The waker of the task polling this: a worker is a task of its own, so the waker it parks
/// with ([`LaneGuard::park`]) is fetched once.
pub async fn task_waker() -> Waker {
    poll_fn(|cx| Poll::Ready(cx.waker().clone())).await
}

/// A parked worker's wait ([`Lane::parked`]): ends once whoever changed the lane took the
/// waker the worker left there with [`LaneGuard::park`].
///
/// It looks at the lane at every poll rather than counting its own polls: a poll can be
/// skipped (`tokio::select!` returns `Pending` without polling its branches when the task's
/// cooperative budget is spent), and a wake-up that landed in between must still end the wait.
pub struct Parked<'a, T, M> {
    lane: &'a Lane<T, M>,
}

impl<T, M> Future for Parked<'_, T, M> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.lane.state.lock();
        match &mut state.parked {
            None => Poll::Ready(()),
            Some(parked) => {
                // Normally the waker parked with is this task's already.
                if !parked.will_wake(cx.waker()) {
                    parked.clone_from(cx.waker());
                }
                Poll::Pending
            }
        }
    }
}

impl<T, M> fmt::Debug for Parked<'_, T, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Parked").finish_non_exhaustive()
    }
}

fn same<M>(a: Option<&Arc<M>>, b: Option<&Arc<M>>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        _ => false,
    }
}

impl<T, M> fmt::Debug for Lane<T, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("Lane")
            .field("depth", &state.depth())
            .field("in_flight", &state.in_flight())
            .field("closed", &state.is_closed())
            .finish_non_exhaustive()
    }
}

impl<T, M> fmt::Debug for LaneGuard<'_, T, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LaneGuard")
            .field("depth", &self.depth())
            .field("in_flight", &self.in_flight())
            .finish_non_exhaustive()
    }
}

impl<T> fmt::Debug for Queued<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queued")
            .field("event_id", &self.event.id())
            .field("key", &self.key)
            .field("seq", &self.seq)
            .field("accepted", &self.accepted)
            .finish()
    }
}

impl<T> fmt::Debug for InFlight<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InFlight")
            .field("event_id", &self.event.id())
            .field("key", &self.key)
            .field("seq", &self.seq)
            .finish()
    }
}
