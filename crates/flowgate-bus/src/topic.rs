//! A topic: its partitions, its publish path and its subscriber groups.
//!
//! Publishing an event to partition `p` locks lane `p` of every subscriber group (in the order
//! of the groups list), checks that each has room and is open, and queues the event in all of
//! them before unlocking. So a publish is accepted for every subscriber or for none, and a
//! shutdown (which closes lanes under the same locks) never misses an accepted event.

use std::fmt;
use std::pin::pin;
use std::task::Waker;
use std::time::Duration;

use arc_swap::ArcSwap;
use flowgate_core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use tokio::sync::Notify;

use flowgate_core::sync::Mutex;
use flowgate_core::{
    partition_of_hash, stable_hash, BoxHandler, DeadLetterSink, Event, Handler, LogDeadLetters,
};
use tokio::time::Instant;
use tracing::Instrument;

use crate::config::{Backpressure, TopicConfig};
use crate::dedupe::{Accepted, Admit, Dedupe};
use crate::error::{BusError, PublishError};
use crate::group::{work, Group, GroupLane, Member};
use crate::lane::LaneGuard;
use crate::stats::{Counters, DedupeStats, PartitionStats, TopicStats};

/// What an accepted publish did.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use flowgate::{Bus, Event};
/// let bus = Bus::new();
/// let orders = bus.topic::<u32>("orders").partitions(4).create()?;
/// let placed = orders.publish(Event::new("placed", 1)?.with_key("order-1")).await?;
/// let paid = orders.publish(Event::new("paid", 1)?.with_key("order-1")).await?;
/// assert_eq!(placed.partition, paid.partition, "one key, one partition: in order");
/// assert!(!paid.duplicate, "only exactly-once topics acknowledge duplicates");
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Published {
    /// The partition the event went to.
    pub partition: u32,
    /// Exactly-once: the idempotency key was accepted before, within the dedupe window, so
    /// this publish was acknowledged and not delivered again.
    pub duplicate: bool,
}

impl Published {
    /// An acknowledgement (for backends that build their own).
    ///
    /// ```
    /// let published = flowgate::bus::Published::new(3, false);
    /// assert_eq!((published.partition, published.duplicate), (3, false));
    /// ```
    pub fn new(partition: u32, duplicate: bool) -> Self {
        Self {
            partition,
            duplicate,
        }
    }
}

pub(crate) struct TopicInner<T> {
    pub(crate) name: String,
    pub(crate) config: TopicConfig<T>,
    pub(crate) counters: Arc<[Counters]>,
    /// The subscriber groups. Replaced (under `writer`) on subscribe and unsubscribe.
    groups: ArcSwap<Vec<Arc<Group<T>>>>,
    /// Serializes changes to `groups` and the closing of the topic.
    writer: Mutex<()>,
    /// Every group whose workers may still run: those in `groups`, and those whose last
    /// member is leaving. Shutdown stops and reports them all. Changed under `writer`.
    live: Mutex<Vec<Arc<Group<T>>>>,
    /// Set (under `writer`) when shutdown begins; no group is added after.
    closed: AtomicBool,
    /// Publish-side dedupe (exactly-once).
    dedupe: Option<Dedupe>,
    /// Spreads unkeyed events over the partitions.
    next_unkeyed: AtomicU64,
    /// The topic's series in the `metrics` recorder installed when it was created.
    #[cfg(feature = "metrics")]
    metrics: crate::metrics::TopicMetrics,
}

/// A handle to a topic carrying payloads of type `T`. Cheap to clone; clones share the topic.
///
/// Created by [`Bus::topic`](crate::Bus::topic). See the [crate docs](crate) for what each
/// delivery mode promises.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use flowgate::{Bus, Event};
/// let bus = Bus::new();
/// let orders = bus.topic::<u32>("orders").create()?;
/// let producer = orders.clone();
/// let event = Event::new("placed", 1)?;
/// tokio::spawn(async move { producer.publish(event).await }).await??;
/// assert_eq!(orders.stats().total.published, 1, "clones share the topic");
/// # Ok(())
/// # }
/// ```
pub struct Topic<T> {
    pub(crate) inner: Arc<TopicInner<T>>,
}

impl<T> Clone for Topic<T> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

/// What a publish does with a full lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WhenFull {
    /// Queue it anyway, dropping the lane's oldest event.
    Push,
    /// Accept the publish without queueing it for this lane.
    Skip,
    /// Refuse the publish (or wait, under `Block`).
    Refuse,
}

/// Why a push to the lanes failed.
enum Refusal {
    /// Lane `group index` was full.
    Full(usize),
    Closed,
}

impl<T: Send + Sync + 'static> Topic<T> {
    pub(crate) fn create(name: String, config: TopicConfig<T>) -> Self {
        let partitions = config.partitions.get() as usize;
        let dedupe = config.mode.dedupe().map(|window| Dedupe::new(*window));
        let counters = (0..partitions as u32)
            .map(|p| Counters::new(&name, p))
            .collect();
        Self {
            inner: Arc::new(TopicInner {
                #[cfg(feature = "metrics")]
                metrics: crate::metrics::TopicMetrics::new(&name, partitions as u32),
                name,
                counters,
                config,
                groups: ArcSwap::from_pointee(Vec::new()),
                live: Mutex::new(Vec::new()),
                writer: Mutex::new(()),
                closed: AtomicBool::new(false),
                dedupe,
                next_unkeyed: AtomicU64::new(0),
            }),
        }
    }

    /// The topic's name.
    ///
    /// ```
    /// let bus = flowgate::Bus::new();
    /// let topic = bus.topic::<u8>("orders").create()?;
    /// assert_eq!(topic.name(), "orders");
    /// # Ok::<(), flowgate::bus::BusError>(())
    /// ```
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The topic's settings.
    ///
    /// ```
    /// let bus = flowgate::Bus::new();
    /// let topic = bus.topic::<u8>("orders").partitions(4).create()?;
    /// assert_eq!(topic.config().partitions.get(), 4);
    /// # Ok::<(), flowgate::bus::BusError>(())
    /// ```
    pub fn config(&self) -> &TopicConfig<T> {
        &self.inner.config
    }

    /// The partition an event goes to: the stable hash of its ordering key modulo the
    /// partition count (see [`flowgate::partition_for`](flowgate_core::partition_for)), or,
    /// for an unkeyed event, the next partition in turn.
    fn route(&self, event: &Event<T>) -> (u32, Option<u64>) {
        let partitions = self.inner.config.partitions;
        if let Some(key) = event.key() {
            let hash = stable_hash(key.as_str());
            (partition_of_hash(hash, partitions), Some(hash))
        } else {
            // Relaxed: only spreads load; no ordering is promised for unkeyed events.
            let turn = self.inner.next_unkeyed.fetch_add(1, Ordering::Relaxed);
            ((turn % u64::from(partitions.get())) as u32, None)
        }
    }

    /// Publishes `event`; `Ok` means accepted (see the crate docs for what that promises).
    ///
    /// The event goes to partition `stable_hash(key) mod P` (unkeyed events are spread), and
    /// is queued for every current subscriber of the topic, or for none. When a buffer is
    /// full, the topic's [`Backpressure`] policy decides.
    ///
    /// # Delivery
    ///
    /// Once this returns `Ok`, dropping anything never cancels the delivery. Dropping the
    /// future before it returns (while it waits for room) publishes nothing.
    ///
    /// # Errors
    ///
    /// [`PublishError::Full`] (policy `Reject`), [`PublishError::Timeout`] (policy `Block`
    /// with a `max_wait`), [`PublishError::ShutDown`], [`PublishError::TooLarge`]. Each hands
    /// the event back.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use flowgate::{Bus, Event};
    /// let bus = Bus::new();
    /// let orders = bus.topic::<u64>("orders").partitions(8).create()?;
    /// let published = orders.publish(Event::new("order.placed", 42)?.with_key("order-42")).await?;
    /// assert_eq!(published.partition, flowgate::partition_for(&"order-42".into(), 8.try_into()?));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn publish(&self, mut event: Event<T>) -> Result<Published, PublishError<T>> {
        let (partition, key) = self.route(&event);
        let span =
            flowgate_core::trace_context::publish_span(&self.inner.name, partition, &mut event);
        if span.is_disabled() {
            self.publish_routed(event, partition, key).await
        } else {
            self.publish_routed(event, partition, key)
                .instrument(span)
                .await
        }
    }

    /// `publish`, once the event's partition and key hash are known.
    async fn publish_routed(
        &self,
        mut event: Event<T>,
        partition: u32,
        key: Option<u64>,
    ) -> Result<Published, PublishError<T>> {
        let inner = &*self.inner;
        let counters = &inner.counters[partition as usize];
        if let Some((limit, size_of)) = &inner.config.max_payload {
            let size = size_of(event.payload());
            if size > *limit {
                Counters::add(&counters.rejected, 1);
                return Err(PublishError::TooLarge {
                    event,
                    size,
                    limit: *limit,
                });
            }
        }
        // Block's time limit, from the first wait for room (so a publish that finds room reads
        // no clock). `None` inside: no limit, also for a wait too long to add to the clock.
        let mut deadline: Option<Option<(Instant, Duration)>> = None;
        // Exactly-once: the key's fingerprint, and one clock read per attempt for its age in
        // the window (a second attempt comes only after a wait for room).
        let fingerprint = inner
            .dedupe
            .as_ref()
            .map(|_| event.idempotency_fingerprint());
        loop {
            let accepted = fingerprint.map(|key| Accepted {
                key,
                at: Instant::now(),
            });
            // The event moves into the lanes; a refusal hands it back. What no lane took is
            // dropped here, outside the window's lock (a payload's `Drop` is the user's code).
            let mut unqueued = None;
            let refusal = match (&inner.dedupe, accepted) {
                (Some(dedupe), Some(accepted)) => {
                    let push = || {
                        self.try_push(partition, key, Some(accepted), event)
                            .map(|rest| unqueued = rest)
                    };
                    match dedupe.admit(accepted.key, accepted.at, push) {
                        Admit::Accepted => None,
                        Admit::Duplicate => {
                            Counters::add(&counters.duplicates, 1);
                            return Ok(Published {
                                partition,
                                duplicate: true,
                            });
                        }
                        Admit::Refused(refusal) => Some(refusal),
                    }
                }
                _ => match self.try_push(partition, key, None, event) {
                    Ok(rest) => {
                        unqueued = rest;
                        None
                    }
                    Err(refused) => Some(refused),
                },
            };
            drop(unqueued);
            let Some((refusal, refused)) = refusal else {
                Counters::add(&counters.published, 1);
                return Ok(Published {
                    partition,
                    duplicate: false,
                });
            };
            event = refused;
            let group = match refusal {
                // A closed lane of a topic still open belongs to a group whose last member
                // just left; it was removed from the list before its lanes closed, so the next
                // attempt does not see it. Acquire: pairs with the Release in `shutdown_at`.
                Refusal::Closed if !inner.closed.load(Ordering::Acquire) => continue,
                Refusal::Closed => {
                    Counters::add(&counters.rejected, 1);
                    return Err(PublishError::ShutDown(event));
                }
                Refusal::Full(group) => group,
            };
            // Drop policies never refuse for room; Reject refuses now.
            if !matches!(inner.config.backpressure, Backpressure::Block { .. }) {
                Counters::add(&counters.rejected, 1);
                return Err(PublishError::Full(event));
            }
            let deadline = *deadline.get_or_insert_with(|| match inner.config.backpressure {
                Backpressure::Block {
                    max_wait: Some(wait),
                } => Instant::now().checked_add(wait).map(|at| (at, wait)),
                _ => None,
            });
            let wait = self.wait_for_room(group, partition);
            let waited = match deadline {
                None => {
                    wait.await;
                    true
                }
                Some((at, _)) => tokio::time::timeout_at(at, wait).await.is_ok(),
            };
            if !waited {
                Counters::add(&counters.rejected, 1);
                let allowed = deadline.map_or(Duration::ZERO, |(_, wait)| wait);
                return Err(PublishError::Timeout(event, allowed));
            }
        }
    }

    /// Queues the event in lane `partition` of every group, or in none (then hands it back).
    /// `Ok` carries the event back when no lane kept it (no subscriber, or `DropNewest` dropped
    /// it), for the caller to drop once it holds no lock.
    fn try_push(
        &self,
        partition: u32,
        key: Option<u64>,
        accepted: Option<Accepted>,
        event: Event<T>,
    ) -> Result<Option<Event<T>>, (Refusal, Event<T>)> {
        let inner = &*self.inner;
        let groups = inner.groups.load();
        let p = partition as usize;
        let policy = inner.config.backpressure;
        if groups.is_empty() {
            // Accepted with no one to deliver to, unless the topic is closed. Acquire: pairs
            // with the Release store in `close`.
            return if inner.closed.load(Ordering::Acquire) {
                Err((Refusal::Closed, event))
            } else {
                Ok(Some(event))
            };
        }
        if let [group] = &groups[..] {
            let lane = &group.lanes[p];
            let mut state = lane.lock();
            if state.is_closed() {
                return Err((Refusal::Closed, event));
            }
            if !state.has_room() {
                match self.when_full(p) {
                    WhenFull::Push => {}
                    WhenFull::Skip => return Ok(Some(event)),
                    WhenFull::Refuse => return Err((Refusal::Full(0), event)),
                }
            }
            let (dropped, parked) = self.push(&mut state, event, key, accepted, p);
            drop(state);
            drop(dropped);
            if let Some(worker) = parked {
                worker.wake();
            }
            return Ok(None);
        }
        // Lock every group's lane of this partition, in list order (the only order anyone
        // takes more than one lane lock in), so the publish lands in all of them or none.
        // Up to 4 groups the guards live on the stack.
        let mut inline: [Option<LaneGuard<'_, T, Member<T>>>; 4] = [None, None, None, None];
        let mut spilled = Vec::new();
        let locked: &mut [Option<LaneGuard<'_, T, Member<T>>>] = if groups.len() <= inline.len() {
            &mut inline[..groups.len()]
        } else {
            spilled.resize_with(groups.len(), || None);
            &mut spilled
        };
        for (slot, group) in locked.iter_mut().zip(groups.iter()) {
            *slot = Some(group.lanes[p].lock());
        }
        if locked.iter().flatten().any(LaneGuard::is_closed) {
            return Err((Refusal::Closed, event));
        }
        if matches!(policy, Backpressure::Block { .. } | Backpressure::Reject) {
            if let Some(full) = locked.iter().flatten().position(|state| !state.has_room()) {
                return Err((Refusal::Full(full), event));
            }
        }
        // Every lane is checked: push into each and unlock it at once.
        for slot in locked.iter_mut() {
            let Some(mut state) = slot.take() else {
                continue;
            };
            if !state.has_room() && self.when_full(p) == WhenFull::Skip {
                continue; // DropNewest: this subscriber does not get it (counted).
            }
            let (dropped, parked) = self.push(&mut state, event.clone(), key, accepted, p);
            drop(state);
            drop(dropped);
            if let Some(worker) = parked {
                worker.wake();
            }
        }
        // The lanes hold copies (or dropped it); this one is the caller's to drop.
        Ok(Some(event))
    }

    /// What to do with a full lane under the topic's policy. Counts a `DropNewest` drop
    /// (`DropOldest` drops, and counts, in `push`).
    fn when_full(&self, p: usize) -> WhenFull {
        match self.inner.config.backpressure {
            Backpressure::DropOldest => WhenFull::Push,
            Backpressure::DropNewest => {
                Counters::add(&self.inner.counters[p].dropped, 1);
                WhenFull::Skip
            }
            _ => WhenFull::Refuse,
        }
    }

    fn push(
        &self,
        state: &mut LaneGuard<'_, T, Member<T>>,
        event: Event<T>,
        key: Option<u64>,
        accepted: Option<Accepted>,
        p: usize,
    ) -> (Option<Event<T>>, Option<Waker>) {
        let drop_oldest = self.inner.config.backpressure == Backpressure::DropOldest;
        let (dropped, parked) = state.push(event, key, accepted, drop_oldest);
        if dropped.is_some() {
            Counters::add(&self.inner.counters[p].dropped, 1);
        }
        (dropped, parked)
    }

    /// Resolves once lane `partition` of group `index` (in the current list) may have room.
    async fn wait_for_room(&self, index: usize, partition: u32) {
        let groups = self.inner.groups.load_full();
        let Some(group) = groups.get(index) else {
            return; // The groups changed: just try again.
        };
        let lane = &group.lanes[partition as usize];
        let mut room = pin!(lane.room.notified());
        room.as_mut().enable();
        {
            let mut state = lane.lock();
            if state.has_room() || state.is_closed() {
                return;
            }
            state.wait();
        }
        let _counted = Waiting { lane };
        room.await;
    }

    /// Starts building a subscription with this handler.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use flowgate::{Bus, Event};
    /// let bus = Bus::new();
    /// let topic = bus.topic::<u32>("jobs").create()?;
    /// let sub = topic.subscribe("worker", |job: Event<u32>| async move {
    ///     println!("job {}", job.payload());
    ///     Ok(())
    /// }).start()?;
    /// topic.publish(Event::new("job", 7)?).await?;
    /// let handed_back = sub.unsubscribe().await; // queued events come back, not dropped
    /// assert_eq!(topic.stats().total.processed + handed_back.len() as u64, 1);
    /// # Ok(())
    /// # }
    /// ```
    pub fn subscribe(
        &self,
        name: impl Into<String>,
        handler: impl Handler<T>,
    ) -> SubscriptionBuilder<T> {
        SubscriptionBuilder {
            topic: self.clone(),
            name: name.into(),
            handler: BoxHandler::new(handler),
            group: None,
            dead_letters: Arc::new(LogDeadLetters),
        }
    }

    /// Copies the topic's figures into its `metrics` series (feature `metrics`); see
    /// [`metrics`](crate::metrics).
    ///
    /// ```
    /// let bus = flowgate::Bus::new();
    /// bus.topic::<u8>("t").create()?.report_metrics(); // a no-op without a recorder
    /// # Ok::<(), flowgate::bus::BusError>(())
    /// ```
    #[cfg(feature = "metrics")]
    pub fn report_metrics(&self) {
        self.inner.metrics.report(&self.stats());
    }

    /// The topic's figures now: per partition and summed.
    ///
    /// ```
    /// let bus = flowgate::Bus::new();
    /// let topic = bus.topic::<u8>("t").partitions(3).create()?;
    /// let stats = topic.stats();
    /// assert_eq!((stats.partitions.len(), stats.depth, stats.subscribers), (3, 0, 0));
    /// # Ok::<(), flowgate::bus::BusError>(())
    /// ```
    pub fn stats(&self) -> TopicStats {
        let inner = &*self.inner;
        let groups = inner.groups.load();
        let partitions = inner
            .counters
            .iter()
            .enumerate()
            .map(|(p, counters)| {
                let mut stats = PartitionStats::read(p as u32, counters);
                for group in groups.iter() {
                    let lane = group.lanes[p].lock();
                    stats.depth += lane.depth();
                    stats.in_flight += lane.in_flight();
                }
                stats
            })
            .collect();
        let dedupe = inner.dedupe.as_ref().map(|dedupe| {
            let (keys, evicted) = dedupe.sizes();
            let window = inner.config.mode.dedupe().copied().unwrap_or_default();
            DedupeStats {
                keys,
                max_keys: window.max_keys,
                max_age: window.max_age,
                evicted,
            }
        });
        TopicStats::new(
            inner.name.clone(),
            inner.config.mode.name(),
            groups.len(),
            partitions,
            dedupe,
        )
    }

    /// Adds `member` to the group named `group_name` (a consumer group), or to a new group.
    fn join(
        &self,
        group_name: Option<&str>,
        member: Arc<Member<T>>,
        runtime: &tokio::runtime::Handle,
    ) -> Result<Arc<Group<T>>, BusError> {
        let inner = &*self.inner;
        let _writer = inner.writer.lock();
        // Acquire/Release not needed under the writer lock; Relaxed reads the flag it guards.
        if inner.closed.load(Ordering::Relaxed) {
            return Err(BusError::ShutDown);
        }
        let current = inner.groups.load_full();
        if let Some(name) = group_name {
            if let Some(group) = current.iter().find(|g| g.joinable && &*g.name == name) {
                let mut members = group.members.lock();
                members.push(member);
                group.rebalance(&members);
                return Ok(Arc::clone(group));
            }
        }
        let config = &inner.config;
        let group = Arc::new(Group {
            name: Arc::from(group_name.unwrap_or(&member.name)),
            joinable: group_name.is_some(),
            mode: config.mode.clone(),
            lanes: (0..config.partitions.get())
                .map(|_| GroupLane::new(config.capacity, config.concurrency))
                .collect(),
            counters: Arc::clone(&inner.counters),
            members: Mutex::new(vec![Arc::clone(&member)]),
            done: config.mode.dedupe().map(|window| Dedupe::new(*window)),
            workers: Mutex::new(Vec::new()),
            aborts: Mutex::new(Vec::new()),
            stopped: AtomicBool::new(false),
            stopped_notify: Notify::new(),
        });
        group.rebalance(&[member]);
        // A consumer group of this name whose last member is still leaving: this one starts
        // once that one's deliveries ended, so no key runs in both at once.
        let mut live = inner.live.lock();
        let predecessor = group_name.and_then(|name| {
            live.iter()
                .rev()
                .find(|g| g.joinable && &*g.name == name)
                .cloned()
        });
        let workers = (0..group.lanes.len())
            .map(|p| runtime.spawn(work(Arc::clone(&group), p, predecessor.clone())))
            .collect();
        group.set_workers(workers);
        live.push(Arc::clone(&group));
        let mut next = Vec::clone(&current);
        next.push(Arc::clone(&group));
        inner.groups.store(Arc::new(next));
        Ok(group)
    }

    /// Removes `member` from `group`: see [`Subscription::unsubscribe`].
    async fn leave(&self, group: &Arc<Group<T>>, member: &Arc<Member<T>>) -> Vec<Event<T>> {
        let inner = &*self.inner;
        let last = {
            let _writer = inner.writer.lock();
            let mut members = group.members.lock();
            members.retain(|m| !Arc::ptr_eq(m, member));
            group.rebalance(&members);
            if members.is_empty() {
                let current = inner.groups.load_full();
                let next: Vec<_> = current
                    .iter()
                    .filter(|g| !Arc::ptr_eq(g, group))
                    .cloned()
                    .collect();
                inner.groups.store(Arc::new(next));
                group.close();
                true
            } else {
                false
            }
        };
        if !last {
            group.wait_released(member).await;
            return Vec::new();
        }
        // The last member: the group is gone from the topic; let its deliveries in flight
        // finish, then hand back what was still queued (unless a shutdown running meanwhile
        // reported it first: each event is reported once).
        group.stop(None).await;
        let (queued, interrupted) = group.drain();
        {
            let _writer = inner.writer.lock();
            inner.live.lock().retain(|g| !Arc::ptr_eq(g, group));
        }
        let handed_back: Vec<Event<T>> = queued.into_iter().chain(interrupted).collect();
        // Exactly-once: the caller may publish them again; the window must not call that a
        // duplicate (other subscribers that handled one Ok skip it by their own window).
        if let Some(dedupe) = &inner.dedupe {
            for event in &handed_back {
                dedupe.forget(event.idempotency_fingerprint());
            }
        }
        handed_back
    }

    /// Shutdown, first half: stops accepting (publishes and subscriptions) and closes every
    /// lane, so nothing more is queued. The bus closes every topic before draining any.
    pub(crate) fn close(&self) {
        let inner = &*self.inner;
        let live = {
            let _writer = inner.writer.lock();
            // Release: pairs with the Acquire in `try_push` for a topic without groups.
            inner.closed.store(true, Ordering::Release);
            inner.live.lock().clone()
        };
        for group in &live {
            group.close();
        }
    }

    /// Shutdown, second half: lets the lanes drain until `deadline`, cancels what still runs,
    /// and reports what was not delivered; see [`Bus::shutdown`](crate::Bus::shutdown).
    pub(crate) async fn drain_until(&self, deadline: Instant) -> TopicReport<T> {
        let inner = &*self.inner;
        self.close();
        let live = inner.live.lock().clone();
        let mut deadline_expired = false;
        for group in &live {
            deadline_expired |= group.stop(Some(deadline)).await;
        }
        let mut undelivered = Vec::new();
        for group in &live {
            // Drained first: an interrupted delivery's in-flight entry would keep its member
            // as the lane's active owner, and the member's handler alive.
            let (queued, interrupted) = group.drain();
            group.release_members();
            let subscriber = Arc::clone(&group.name);
            undelivered.extend(queued.into_iter().map(|event| Undelivered {
                event,
                subscriber: Arc::clone(&subscriber),
                interrupted: false,
            }));
            undelivered.extend(interrupted.into_iter().map(|event| Undelivered {
                event,
                subscriber: Arc::clone(&subscriber),
                interrupted: true,
            }));
        }
        TopicReport {
            not_delivered: undelivered.len(),
            undelivered: if inner.config.mode == crate::DeliveryMode::AtMostOnce {
                Vec::new()
            } else {
                undelivered
            },
            deadline_expired,
            stats: self.stats(),
        }
    }
}

/// Refuses an empty subscriber or group name: they appear in stats, reports and dead letters.
pub(crate) fn check_names(name: &str, group: Option<&str>) -> Result<(), BusError> {
    if name.trim().is_empty() || group.is_some_and(|g| g.trim().is_empty()) {
        return Err(BusError::InvalidConfig {
            what: "subscriber name",
            reason:
                "empty: name the subscriber (and its group), it appears in stats and dead letters"
                    .into(),
        });
    }
    Ok(())
}

/// Uncounts a publisher waiting for room when its wait ends (or is cancelled).
struct Waiting<'a, T> {
    lane: &'a GroupLane<T>,
}

impl<T> Drop for Waiting<'_, T> {
    fn drop(&mut self) {
        self.lane.lock().unwait();
    }
}

/// An accepted event that shutdown could not deliver to one subscriber.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use flowgate::{Bus, Event};
/// let bus = Bus::new();
/// let mail = bus.topic::<String>("mail").create()?;
/// let _smtp = mail.subscribe("smtp", |_: Event<String>| std::future::pending()).start()?;
/// mail.publish(Event::new("mail", "hello".to_owned())?).await?;
/// let report = bus.shutdown(Duration::from_millis(100)).await;
/// let undelivered = &report.topic::<String>("mail").unwrap().undelivered[0];
/// assert_eq!(undelivered.event.payload(), "hello");
/// assert_eq!(&*undelivered.subscriber, "smtp");
/// assert!(undelivered.interrupted, "it was running when the deadline came");
/// # Ok(())
/// # }
/// ```
#[non_exhaustive]
pub struct Undelivered<T> {
    /// The event.
    pub event: Event<T>,
    /// The subscriber (or consumer group) it was not delivered to.
    pub subscriber: Arc<str>,
    /// `true` if its delivery had started (and may have run partly, or be between retries)
    /// when the deadline cut it off; `false` if it was still queued.
    pub interrupted: bool,
}

/// What a topic's shutdown left undone.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use flowgate::{Bus, Event};
/// let bus = Bus::new();
/// let ticks = bus.topic::<u32>("ticks").at_most_once().create()?;
/// let _stuck = ticks.subscribe("stuck", |_: Event<u32>| std::future::pending()).start()?;
/// ticks.publish(Event::new("tick", 1)?).await?;
/// ticks.publish(Event::new("tick", 2)?).await?;
/// let report = bus.shutdown(Duration::from_millis(100)).await;
/// let ticks_report = report.topic::<u32>("ticks").unwrap();
/// assert_eq!(ticks_report.not_delivered, 2);
/// assert!(ticks_report.undelivered.is_empty(), "at-most-once keeps no events");
/// assert!(ticks_report.deadline_expired);
/// assert_eq!(ticks_report.stats.total.published, 2);
/// # Ok(())
/// # }
/// ```
#[non_exhaustive]
pub struct TopicReport<T> {
    /// How many (event, subscriber) deliveries did not complete.
    pub not_delivered: usize,
    /// The deliveries that did not complete, with their events (at-least-once and
    /// exactly-once topics; empty for at-most-once, whose promise allows the loss — see
    /// `not_delivered`).
    pub undelivered: Vec<Undelivered<T>>,
    /// Whether the deadline cut the drain short.
    pub deadline_expired: bool,
    /// The topic's figures at the end.
    pub stats: TopicStats,
}

/// A started subscription: a member of its subscriber group.
///
/// It runs until [`unsubscribe`](Self::unsubscribe) or the bus's shutdown. Dropping the
/// handle does **not** stop it (an accepted event is never abandoned by accident).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use flowgate::{Bus, Event};
/// let bus = Bus::new();
/// let jobs = bus.topic::<u32>("jobs").create()?;
/// let worker = jobs.subscribe("worker", |_: Event<u32>| async { Ok(()) }).start()?;
/// drop(worker);
/// jobs.publish(Event::new("job", 1)?).await?;
/// bus.shutdown(Duration::from_secs(1)).await;
/// assert_eq!(jobs.stats().total.processed, 1, "still subscribed");
/// # Ok(())
/// # }
/// ```
pub struct Subscription<T> {
    topic: Topic<T>,
    group: Arc<Group<T>>,
    /// The group owns its members; a shutdown lets go of them once the group stopped, so that
    /// their handlers (and what those hold, such as a stream's sender) are dropped then.
    member: Weak<Member<T>>,
    name: Arc<str>,
}

impl<T: Send + Sync + 'static> Subscription<T> {
    /// Leaves the subscription.
    ///
    /// In a consumer group with other members, this member's partitions move to them: the
    /// call returns once this member's deliveries in flight finished, and what was queued for
    /// it is delivered by the new owners, in order. The returned list is then empty.
    ///
    /// The last member of a group (or a plain subscriber) stops receiving new events at once;
    /// its deliveries in flight finish, and the events still queued for it are returned, not
    /// delivered: the caller decides what to do with them.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use flowgate::{Bus, Event};
    /// let bus = Bus::new();
    /// let topic = bus.topic::<u32>("t").create()?;
    /// let a = topic.subscribe("a", |_: Event<u32>| async { Ok(()) }).group("g").start()?;
    /// let b = topic.subscribe("b", |_: Event<u32>| async { Ok(()) }).group("g").start()?;
    /// assert!(a.unsubscribe().await.is_empty(), "b takes over a's partitions");
    /// topic.publish(Event::new("e", 1)?).await?;
    /// let left = b.unsubscribe().await; // the last member: queued events come back
    /// assert!(left.len() <= 1);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn unsubscribe(self) -> Vec<Event<T>> {
        // Held until the leave returned, so that the handler is dropped here, outside the
        // bus's locks. Gone only after a shutdown, which reported what was left.
        let Some(member) = self.member.upgrade() else {
            return Vec::new();
        };
        self.topic.leave(&self.group, &member).await
    }

    /// The subscriber's name (a consumer group member's own name, not its group's).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use flowgate::{Bus, Event};
    /// let bus = Bus::new();
    /// let jobs = bus.topic::<u32>("jobs").create()?;
    /// let sub = jobs.subscribe("worker-1", |_: Event<u32>| async { Ok(()) }).group("workers").start()?;
    /// assert_eq!(sub.name(), "worker-1");
    /// # Ok(())
    /// # }
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Builds a subscription; from [`Topic::subscribe`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use flowgate::{Bus, DeadLetterQueue, Event};
/// let bus = Bus::new();
/// let jobs = bus.topic::<u32>("jobs").create()?;
/// let dead = DeadLetterQueue::new(100);
/// let builder = jobs.subscribe("worker-1", |_: Event<u32>| async { Ok(()) });
/// assert_eq!(jobs.stats().subscribers, 0, "nothing happens before start");
/// let _sub = builder.group("workers").dead_letters(dead.clone()).start()?;
/// assert_eq!(jobs.stats().subscribers, 1);
/// # Ok(())
/// # }
/// ```
#[must_use = "a subscription builder does nothing until `start` is called"]
pub struct SubscriptionBuilder<T> {
    topic: Topic<T>,
    name: String,
    handler: BoxHandler<T>,
    group: Option<String>,
    dead_letters: Arc<dyn DeadLetterSink<T>>,
}

impl<T: Send + Sync + 'static> SubscriptionBuilder<T> {
    /// Joins the consumer group `name`: its members share the topic's partitions, and each
    /// event is handled by one of them. Without a group, the subscription gets every event.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use flowgate::{Bus, Event};
    /// let bus = Bus::new();
    /// let jobs = bus.topic::<u32>("jobs").partitions(4).create()?;
    /// let ok = |_: Event<u32>| async { Ok(()) };
    /// let _w1 = jobs.subscribe("worker-1", ok).group("workers").start()?;
    /// let _w2 = jobs.subscribe("worker-2", ok).group("workers").start()?;
    /// let _audit = jobs.subscribe("audit", ok).start()?;
    /// for n in 0..10 {
    ///     jobs.publish(Event::new("job", n)?).await?;
    /// }
    /// bus.shutdown(Duration::from_secs(1)).await;
    /// let stats = jobs.stats();
    /// assert_eq!(stats.subscribers, 2, "a group counts once");
    /// assert_eq!(stats.total.processed, 20, "10 for the group, 10 for audit");
    /// # Ok(())
    /// # }
    /// ```
    pub fn group(mut self, name: impl Into<String>) -> Self {
        self.group = Some(name.into());
        self
    }

    /// Where this subscriber's dead letters go (default: logged at `error` level).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use flowgate::bus::{Bus, DeliveryMode};
    /// use flowgate::{DeadLetterQueue, DeadLetterSink, Event, HandlerError, RetryPolicy};
    /// let bus = Bus::new();
    /// let topic = bus
    ///     .topic::<u32>("t")
    ///     .mode(DeliveryMode::AtLeastOnce(RetryPolicy::exponential(3, Duration::ZERO)))
    ///     .create()?;
    /// let dead = Arc::new(DeadLetterQueue::new(100));
    /// let sink = Arc::clone(&dead);
    /// let _sub = topic
    ///     .subscribe("s", |_: Event<u32>| async { Err(HandlerError::retryable("down")) })
    ///     .dead_letters(move |letter| sink.dead_letter(letter))
    ///     .start()?;
    /// topic.publish(Event::new("e", 1)?).await?;
    /// bus.shutdown(Duration::from_secs(1)).await; // drains: the event is dead-lettered
    /// let letters = dead.drain();
    /// assert_eq!(letters[0].attempts, 3);
    /// # Ok(())
    /// # }
    /// ```
    pub fn dead_letters(mut self, sink: impl DeadLetterSink<T>) -> Self {
        self.dead_letters = Arc::new(sink);
        self
    }

    /// Starts the subscription: it receives every event published after this returns.
    ///
    /// # Errors
    ///
    /// [`BusError::ShutDown`] after the bus began shutting down; [`BusError::NoRuntime`]
    /// outside a tokio runtime; [`BusError::InvalidConfig`] for an empty name.
    ///
    /// ```
    /// use flowgate::bus::BusError;
    /// use flowgate::{Bus, Event};
    /// let bus = Bus::new();
    /// let jobs = bus.topic::<u32>("jobs").create()?;
    /// let ok = |_: Event<u32>| async { Ok(()) };
    /// let outside = jobs.subscribe("worker", ok).start();
    /// assert!(matches!(outside, Err(BusError::NoRuntime)));
    /// let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    /// let inside = runtime.block_on(async { jobs.subscribe("worker", ok).start() })?;
    /// assert_eq!(inside.name(), "worker");
    /// let unnamed = runtime.block_on(async { jobs.subscribe(" ", ok).start() });
    /// assert!(matches!(unnamed, Err(BusError::InvalidConfig { .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn start(self) -> Result<Subscription<T>, BusError> {
        check_names(&self.name, self.group.as_deref())?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| BusError::NoRuntime)?;
        self.topic.attach(
            Arc::from(self.name),
            self.handler,
            self.dead_letters,
            self.group.as_deref(),
            &runtime,
        )
    }
}

impl<T: Send + Sync + 'static> Topic<T> {
    /// Starts a subscription whose workers run on `runtime`.
    pub(crate) fn attach(
        &self,
        name: Arc<str>,
        handler: BoxHandler<T>,
        dead_letters: Arc<dyn DeadLetterSink<T>>,
        group: Option<&str>,
        runtime: &tokio::runtime::Handle,
    ) -> Result<Subscription<T>, BusError> {
        let member = Arc::new(Member {
            name,
            handler,
            dead_letters,
        });
        let group = self.join(group, Arc::clone(&member), runtime)?;
        Ok(Subscription {
            topic: self.clone(),
            group,
            member: Arc::downgrade(&member),
            name: Arc::clone(&member.name),
        })
    }
}

impl<T> fmt::Debug for Topic<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Topic")
            .field("name", &self.inner.name)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl<T> fmt::Debug for Subscription<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("name", &self.name)
            .field("group", &self.group.name)
            .finish_non_exhaustive()
    }
}

impl<T> fmt::Debug for SubscriptionBuilder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubscriptionBuilder")
            .field("name", &self.name)
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

impl<T> Undelivered<T> {
    /// An undelivered event (for backends that build their own reports).
    ///
    /// ```
    /// use flowgate::bus::Undelivered;
    /// use flowgate::Event;
    /// let undelivered = Undelivered::new(Event::new("order", 7)?, "billing", true);
    /// assert_eq!((*undelivered.event.payload(), &*undelivered.subscriber), (7, "billing"));
    /// assert!(undelivered.interrupted);
    /// # Ok::<(), flowgate::CoreError>(())
    /// ```
    pub fn new(event: Event<T>, subscriber: impl Into<Arc<str>>, interrupted: bool) -> Self {
        Self {
            event,
            subscriber: subscriber.into(),
            interrupted,
        }
    }
}

impl<T> TopicReport<T> {
    /// A topic report (for backends that build their own): `not_delivered` is the length of
    /// `undelivered` unless the mode keeps no events (at-most-once), then pass the count.
    ///
    /// ```
    /// use flowgate::bus::{Bus, TopicReport};
    /// // A backend takes the figures from its own topic; here, an in-process one.
    /// let stats = Bus::new().topic::<u32>("ticks").at_most_once().create()?.stats();
    /// let report = TopicReport::<u32>::new(3, Vec::new(), true, stats);
    /// assert_eq!((report.not_delivered, report.deadline_expired), (3, true));
    /// assert_eq!(report.stats.mode, "at-most-once");
    /// # Ok::<(), flowgate::bus::BusError>(())
    /// ```
    pub fn new(
        not_delivered: usize,
        undelivered: Vec<Undelivered<T>>,
        deadline_expired: bool,
        stats: TopicStats,
    ) -> Self {
        Self {
            not_delivered,
            undelivered,
            deadline_expired,
            stats,
        }
    }
}

impl<T> fmt::Debug for Undelivered<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Undelivered")
            .field("event_id", &self.event.id())
            .field("subscriber", &self.subscriber)
            .field("interrupted", &self.interrupted)
            .finish()
    }
}

impl<T> fmt::Debug for TopicReport<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TopicReport")
            .field("not_delivered", &self.not_delivered)
            .field("undelivered", &self.undelivered)
            .field("deadline_expired", &self.deadline_expired)
            .field("stats", &self.stats)
            .finish()
    }
}
