//! [`RedisTopic`]: publish, subscribe, stats; and [`RedisSubscription`].

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use flowgate_bus::{
    BackendSubscription, BackendTopic, Backpressure, BusError, DedupeStats, DeliveryMode,
    PartitionCounters, PublishError, Published, SubscribeRequest, TopicConfig, TopicReport,
    TopicStats, Undelivered,
};
use flowgate_core::{partition_for, partition_of_hash, BoxFuture, Event};
use redis::aio::ConnectionManager;
use redis::Value;
use tokio::sync::Notify;
use tracing::Instrument;

use crate::batch::{Batcher, Entry, Outcome};
use crate::bus::{unavailable, AnyTopic, ReportPart, Shared};
use crate::codec::Codec;
use crate::keys::{PartitionKeys, TopicKeys};
use crate::member::{Member, Stopped};
use crate::scripts::BACKLOG_SCRIPT;
use crate::wire;

/// The most field names and values one entry may have: the publish script hands an entry's
/// fields to `XADD` with Lua's `unpack`, which returns at most about 8,000 values.
const MAX_FIELDS: usize = 4_000;

/// This process's counters of one partition: the bus's (so every backend counts, times and
/// traces deliveries alike), and what this process holds of it.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) common: PartitionCounters,
    /// Entries this process fetched and has not started.
    pub(crate) queued: AtomicUsize,
    /// Deliveries this process runs.
    pub(crate) in_flight: AtomicUsize,
}

impl std::ops::Deref for Counters {
    type Target = PartitionCounters;

    fn deref(&self) -> &PartitionCounters {
        &self.common
    }
}

pub(crate) fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

pub(crate) struct TopicInner<T> {
    pub(crate) name: String,
    pub(crate) shared: Arc<Shared>,
    pub(crate) keys: TopicKeys,
    pub(crate) partitions: Vec<PartitionKeys>,
    pub(crate) config: TopicConfig<T>,
    pub(crate) codec: Arc<dyn Codec<T>>,
    pub(crate) counters: Vec<Counters>,
    /// Each partition's publish path (group commit of concurrent publishes).
    batchers: Vec<Arc<Batcher>>,
    /// This process's live members (plain subscribers and consumer-group members).
    pub(crate) members: Mutex<Vec<Arc<Member<T>>>>,
    /// Wakes this process's members of the topic to rebalance at once (a member joined or
    /// left) instead of at their next renewal.
    pub(crate) membership: Notify,
    closed: AtomicBool,
    /// The topic's series in the `metrics` recorder installed when it was opened.
    #[cfg(feature = "metrics")]
    metrics: flowgate_bus::metrics::TopicMetrics,
}

impl<T> TopicInner<T> {
    pub(crate) fn conn(&self) -> ConnectionManager {
        self.shared.conn.clone()
    }

    pub(crate) fn partition_count(&self) -> u32 {
        self.config.partitions.get()
    }

    /// The window (max keys, max age in ms) of an exactly-once topic; (0, 0) otherwise.
    pub(crate) fn window(&self) -> (usize, u128) {
        window_of(&self.config.mode)
    }
}

/// The dedupe window (max keys, max age in ms) of `mode`; (0, 0) unless exactly-once.
fn window_of(mode: &DeliveryMode) -> (usize, u128) {
    mode.dedupe()
        .map_or((0, 0), |w| (w.max_keys, w.max_age.as_millis()))
}

/// A topic on Redis; from [`RedisBus::create_topic_with`](crate::RedisBus::create_topic_with)
/// or [`Backend::create_topic`](flowgate_bus::Backend::create_topic). Cheap to clone.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use flowgate::bus::{Backend, TopicSettings};
/// use flowgate::redis::{RedisBus, RedisTopic};
/// use flowgate::Event;
/// let bus = RedisBus::connect("redis://127.0.0.1/").await?;
/// let orders: RedisTopic<u64> = bus.create_topic("orders", TopicSettings::default()).await?;
/// let published = orders.publish(Event::new("order.placed", 7)?.with_key("customer-1")).await?;
/// assert!(!published.duplicate);
/// # Ok(())
/// # }
/// ```
pub struct RedisTopic<T> {
    pub(crate) inner: Arc<TopicInner<T>>,
}

impl<T> Clone for RedisTopic<T> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<T> fmt::Debug for RedisTopic<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisTopic")
            .field("name", &self.inner.name)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl<T: Send + Sync + 'static> RedisTopic<T> {
    pub(crate) async fn open(
        shared: Arc<Shared>,
        name: String,
        config: TopicConfig<T>,
        codec: Arc<dyn Codec<T>>,
    ) -> Result<Self, BusError> {
        let keys = TopicKeys::new(&shared.options.namespace, &name);
        let settings = format!(
            "partitions={};mode={}",
            config.partitions.get(),
            config.mode.name()
        );
        let mut conn = shared.conn.clone();
        let (_, recorded): (i64, String) = redis::pipe()
            .hset_nx(keys.meta(), "settings", &settings)
            .hget(keys.meta(), "settings")
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        if recorded != settings {
            tracing::error!(topic = %name, ours = %settings, %recorded, "topic settings differ from Redis's");
            return Err(BusError::TopicExists {
                topic: name,
                detail: " in Redis with another partition count or mode",
            });
        }
        let partitions: Vec<PartitionKeys> = (0..config.partitions.get())
            .map(|p| keys.partition(p))
            .collect();
        let counters = (0..config.partitions.get())
            .map(|p| Counters {
                common: PartitionCounters::new(&name, p),
                ..Counters::default()
            })
            .collect();
        let policy = match config.backpressure {
            Backpressure::DropNewest => "newest",
            Backpressure::DropOldest => "oldest",
            _ => "full",
        };
        let window = window_of(&config.mode);
        let batchers = partitions
            .iter()
            .map(|keys| {
                Arc::new(Batcher::new(
                    shared.conn.clone(),
                    keys,
                    config.capacity,
                    policy,
                    window,
                ))
            })
            .collect();
        Ok(Self {
            inner: Arc::new(TopicInner {
                #[cfg(feature = "metrics")]
                metrics: flowgate_bus::metrics::TopicMetrics::new(&name, config.partitions.get()),
                name,
                shared,
                keys,
                partitions,
                config,
                codec,
                counters,
                batchers,
                members: Mutex::new(Vec::new()),
                membership: Notify::new(),
                closed: AtomicBool::new(false),
            }),
        })
    }

    /// The topic's name.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), flowgate::bus::BusError> {
    /// use flowgate::bus::{Backend, TopicSettings};
    /// let bus = flowgate::redis::RedisBus::connect("redis://127.0.0.1/").await?;
    /// let orders: flowgate::redis::RedisTopic<u64> = bus.create_topic("orders", TopicSettings::default()).await?;
    /// assert_eq!(orders.name(), "orders");
    /// # Ok(())
    /// # }
    /// ```
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The topic's validated settings.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), flowgate::bus::BusError> {
    /// use flowgate::bus::{Backend, TopicSettings};
    /// let bus = flowgate::redis::RedisBus::connect("redis://127.0.0.1/").await?;
    /// let settings = TopicSettings::default().partitions(4);
    /// let orders: flowgate::redis::RedisTopic<u64> = bus.create_topic("orders", settings).await?;
    /// assert_eq!(orders.config().partitions.get(), 4);
    /// # Ok(())
    /// # }
    /// ```
    pub fn config(&self) -> &TopicConfig<T> {
        &self.inner.config
    }

    /// The partition `event` goes to: `stable_hash(ordering key) mod P`, the in-process
    /// bus's function, so that every process agrees. An unkeyed event goes by its idempotency
    /// key's fingerprint (its id unless set; see `Event::idempotency_fingerprint`), so that a
    /// republished copy meets the first in one partition's dedupe window.
    fn partition_of(&self, event: &Event<T>) -> u32 {
        let partitions = self.inner.config.partitions;
        match event.key() {
            Some(key) => partition_for(key, partitions),
            // The key's XXH3-128 fingerprint (stable, documented, and computed without
            // formatting an id-derived key as text).
            None => partition_of_hash(event.idempotency_fingerprint() as u64, partitions),
        }
    }

    /// Publishes `event`: one server-side step checks the exactly-once dedupe window, the
    /// partition's room (entries some group has not consumed, at most the topic's capacity)
    /// and appends the entry. Publishes to one partition that overlap in time share one such
    /// step (group commit), and all share one pipelined connection.
    ///
    /// # Errors
    ///
    /// As the in-process [`Topic::publish`](flowgate_bus::Topic::publish), plus
    /// [`PublishError::Unavailable`] when Redis cannot be reached (retryable: nothing was
    /// promised) or the codec refuses the payload (not retryable).
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// use flowgate::bus::{Backend, PublishError, TopicSettings};
    /// use flowgate::Event;
    /// let bus = flowgate::redis::RedisBus::connect("redis://127.0.0.1/").await?;
    /// let orders: flowgate::redis::RedisTopic<u64> = bus.create_topic("orders", TopicSettings::default()).await?;
    /// match orders.publish(Event::new("order.placed", 7)?).await {
    ///     Ok(_) => {}
    ///     Err(refused) if refused.is_retryable() => { /* Redis down or buffer full: retry later */ }
    ///     Err(refused) => return Err(refused.into()),
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn publish(&self, mut event: Event<T>) -> Result<Published, PublishError<T>> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(PublishError::ShutDown(event));
        }
        let partition = self.partition_of(&event);
        // The trace context goes into the event's metadata, and so across the wire.
        let span =
            flowgate_core::trace_context::publish_span(&self.inner.name, partition, &mut event);
        if span.is_disabled() {
            self.publish_routed(event, partition).await
        } else {
            self.publish_routed(event, partition).instrument(span).await
        }
    }

    /// `publish`, once the event's partition is known.
    async fn publish_routed(
        &self,
        event: Event<T>,
        partition: u32,
    ) -> Result<Published, PublishError<T>> {
        let inner = &*self.inner;
        let counters = &inner.counters[partition as usize];
        let fields = match wire::encode(&event, &*inner.codec) {
            Ok(fields) => fields,
            Err(error) => {
                add(&counters.rejected, 1);
                return Err(PublishError::Unavailable {
                    event,
                    error: Box::new(error),
                    retryable: false,
                });
            }
        };
        if fields.len() > MAX_FIELDS {
            add(&counters.rejected, 1);
            return Err(PublishError::Unavailable {
                event,
                error: format!(
                    "{} metadata entries: a Redis entry takes at most {} (the publish script's argument limit)",
                    fields.len() / 2 - 4,
                    MAX_FIELDS / 2 - 8
                )
                .into(),
                retryable: false,
            });
        }
        let idempotency = match inner.config.mode {
            DeliveryMode::ExactlyOnce(..) => event.idempotency_key().as_str().to_owned(),
            _ => String::new(),
        };
        let entry = Arc::new(Entry {
            idempotency,
            fields,
        });
        let batcher = &inner.batchers[partition as usize];
        let began = tokio::time::Instant::now();
        let mut pause = Duration::from_millis(1);
        loop {
            match batcher.publish(Arc::clone(&entry)).await {
                Ok(Outcome::Appended { dropped }) => {
                    add(&counters.published, 1);
                    add(&counters.dropped, dropped);
                    return Ok(Published::new(partition, false));
                }
                Ok(Outcome::Duplicate) => {
                    add(&counters.duplicates, 1);
                    return Ok(Published::new(partition, true));
                }
                Ok(Outcome::Dropped { groups }) => {
                    add(&counters.published, 1);
                    add(&counters.dropped, groups);
                    return Ok(Published::new(partition, false));
                }
                Ok(Outcome::Full) => {}
                Err(error) => {
                    add(&counters.rejected, 1);
                    return Err(PublishError::Unavailable {
                        event,
                        error: Box::new(error),
                        retryable: true,
                    });
                }
            }
            // Full.
            let waited = began.elapsed();
            let Backpressure::Block { max_wait } = inner.config.backpressure else {
                add(&counters.rejected, 1);
                return Err(PublishError::Full(event));
            };
            if inner.closed.load(Ordering::Acquire) {
                add(&counters.rejected, 1);
                return Err(PublishError::ShutDown(event));
            }
            if let Some(max_wait) = max_wait {
                let Some(left) = max_wait.checked_sub(waited).filter(|l| !l.is_zero()) else {
                    add(&counters.rejected, 1);
                    return Err(PublishError::Timeout(event, max_wait));
                };
                pause = pause.min(left);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }

    /// Starts a subscription: a plain subscriber gets its own consumer group (every event
    /// published from now on), a member joins its group (the group's events, shared with the
    /// other members, in every process). The call returns once the group exists in Redis:
    /// events published after it returned are the subscription's.
    ///
    /// # Errors
    ///
    /// [`BusError::InvalidConfig`] for a blank name, [`BusError::NoRuntime`] outside a tokio
    /// runtime, [`BusError::ShutDown`] after shutdown, [`BusError::Unavailable`] when Redis
    /// cannot be reached.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// use flowgate::bus::{Backend, SubscribeRequest, TopicSettings};
    /// use flowgate::Event;
    /// let bus = flowgate::redis::RedisBus::connect("redis://127.0.0.1/").await?;
    /// let orders: flowgate::redis::RedisTopic<u64> = bus.create_topic("orders", TopicSettings::default()).await?;
    /// let request = SubscribeRequest::new("billing-1", |_: Event<u64>| async { Ok(()) });
    /// let member = orders.subscribe(request.group("billing")).await?;
    /// assert!(member.unsubscribe().await.is_empty() || true);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn subscribe(
        &self,
        request: SubscribeRequest<T>,
    ) -> Result<RedisSubscription<T>, BusError> {
        request.validate()?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| BusError::NoRuntime)?;
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(BusError::ShutDown);
        }
        let member = Member::start(Arc::clone(&self.inner), request, &runtime).await?;
        {
            let mut members = crate::lock(&self.inner.members);
            members.push(Arc::clone(&member));
        }
        self.inner.membership.notify_waiters();
        Ok(RedisSubscription {
            topic: Arc::clone(&self.inner),
            name: Arc::clone(&member.name),
            group: member.group.clone(),
            member: Arc::downgrade(&member),
        })
    }

    /// Copies the topic's figures, as [`stats`](Self::stats) reads them from Redis, into its
    /// `metrics` series (feature `metrics`; the series of `flowgate::bus::metrics`).
    #[cfg(feature = "metrics")]
    pub async fn report_metrics(&self) {
        let stats = self.stats().await;
        self.inner.metrics.report(&stats);
    }

    /// The topic's figures: this process's counters, and from Redis what this process's
    /// subscriptions' groups have not consumed yet (`depth`), the dedupe window, and the
    /// number of consumer groups on the topic in every process (`subscribers`).
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// use flowgate::bus::{Backend, TopicSettings};
    /// let bus = flowgate::redis::RedisBus::connect("redis://127.0.0.1/").await?;
    /// let orders: flowgate::redis::RedisTopic<u64> = bus.create_topic("orders", TopicSettings::default()).await?;
    /// let stats = orders.stats().await;
    /// assert_eq!(stats.topic, "orders");
    /// # Ok(())
    /// # }
    /// ```
    pub async fn stats(&self) -> TopicStats {
        let inner = &*self.inner;
        let groups: Vec<String> = {
            let members = crate::lock(&inner.members);
            let mut groups: Vec<String> = members.iter().map(|m| m.group.clone()).collect();
            groups.sort();
            groups.dedup();
            groups
        };
        let mut conn = inner.conn();
        let mut partitions = Vec::with_capacity(inner.partitions.len());
        let mut subscribers = 0;
        let mut dedupe_keys = 0usize;
        let mut evicted = 0u64;
        for (p, keys) in inner.partitions.iter().enumerate() {
            let counters = &inner.counters[p];
            let mut stats = counters.stats();
            stats.in_flight = counters.in_flight.load(Ordering::Relaxed);
            stats.depth = counters.queued.load(Ordering::Relaxed);
            for group in &groups {
                let backlog: redis::RedisResult<(usize, usize)> = BACKLOG_SCRIPT
                    .key(keys.stream())
                    .arg(group)
                    .arg(100_000)
                    .invoke_async(&mut conn)
                    .await;
                stats.depth += backlog.map_or(0, |(_, unread)| unread);
            }
            if p == 0 {
                let info: redis::RedisResult<Value> = redis::cmd("XINFO")
                    .arg("GROUPS")
                    .arg(keys.stream())
                    .query_async(&mut conn)
                    .await;
                if let Ok(Value::Array(all)) = info {
                    subscribers = all.len();
                }
            }
            if inner.config.mode.dedupe().is_some() {
                let (keys_now, evicted_now): (usize, Option<u64>) = redis::pipe()
                    .zcard(keys.dedupe())
                    .hget(keys.counters(), "evicted")
                    .query_async(&mut conn)
                    .await
                    .unwrap_or((0, None));
                dedupe_keys += keys_now;
                evicted += evicted_now.unwrap_or(0);
            }
            partitions.push(stats);
        }
        let dedupe = inner
            .config
            .mode
            .dedupe()
            .map(|w| DedupeStats::new(dedupe_keys, w.max_keys, w.max_age, evicted));
        TopicStats::new(
            inner.name.clone(),
            inner.config.mode.name(),
            subscribers,
            partitions,
            dedupe,
        )
    }
}

impl<T: Send + Sync + 'static> AnyTopic for RedisTopic<T> {
    fn close(&self) {
        self.inner.closed.store(true, Ordering::Release);
    }

    #[cfg(feature = "metrics")]
    fn report_metrics(&self) -> BoxFuture<'static, ()> {
        let topic = self.clone();
        Box::pin(async move { topic.report_metrics().await })
    }

    fn shutdown(&self, deadline: tokio::time::Instant) -> BoxFuture<'static, ReportPart> {
        let topic = self.clone();
        Box::pin(async move {
            let members: Vec<_> = {
                let members = crate::lock(&topic.inner.members);
                members.clone()
            };
            // Every member works off what its group owes, all at once, then each stops.
            futures_util::future::join_all(members.iter().map(|m| m.drain(deadline))).await;
            let deadline_expired = tokio::time::Instant::now() >= deadline;
            let stopped = futures_util::future::join_all(
                members.iter().map(|m| m.stop_for_shutdown(deadline)),
            )
            .await;
            {
                let mut live = crate::lock(&topic.inner.members);
                live.clear();
            }
            let mut undelivered = Vec::new();
            for (member, Stopped { left, interrupted }) in members.iter().zip(stopped) {
                let subscriber: Arc<str> = Arc::clone(&member.reports_as);
                for event in left {
                    undelivered.push(Undelivered::new(event, Arc::clone(&subscriber), false));
                }
                for event in interrupted {
                    undelivered.push(Undelivered::new(event, Arc::clone(&subscriber), true));
                }
            }
            let stats = topic.stats().await;
            let name = topic.inner.name.clone();
            let report = TopicReport::new(undelivered.len(), undelivered, deadline_expired, stats);
            Box::new(move |bus_report: &mut flowgate_bus::BusReport| {
                bus_report.push(&name, report);
            }) as ReportPart
        })
    }
}

impl<T: Send + Sync + 'static> BackendTopic<T> for RedisTopic<T> {
    type Subscription = RedisSubscription<T>;

    async fn publish(&self, event: Event<T>) -> Result<Published, PublishError<T>> {
        RedisTopic::publish(self, event).await
    }

    async fn subscribe(
        &self,
        request: SubscribeRequest<T>,
    ) -> Result<RedisSubscription<T>, BusError> {
        RedisTopic::subscribe(self, request).await
    }

    async fn stats(&self) -> TopicStats {
        RedisTopic::stats(self).await
    }
}

/// A subscription on a [`RedisTopic`]: a plain subscriber or a consumer-group member.
///
/// Dropping it leaves the subscription running until the bus shuts down;
/// [`unsubscribe`](Self::unsubscribe) leaves, [`detach`](Self::detach) stops this process's
/// part and leaves the group's work in Redis.
pub struct RedisSubscription<T> {
    topic: Arc<TopicInner<T>>,
    /// The topic's live members own it; a shutdown lets go of it once it stopped, so that its
    /// handler (and what that holds, such as a stream's sender) is dropped then.
    member: Weak<Member<T>>,
    name: Arc<str>,
    group: String,
}

impl<T> fmt::Debug for RedisSubscription<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSubscription")
            .field("topic", &self.topic.name)
            .field("name", &self.name)
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

impl<T: Send + Sync + 'static> RedisSubscription<T> {
    /// Takes this member out of the topic's live members; `None` after a shutdown, which
    /// already stopped it and reported what it left.
    fn forget(&self) -> Option<Arc<Member<T>>> {
        let member = self.member.upgrade()?;
        let mut members = crate::lock(&self.topic.members);
        members.retain(|m| !Arc::ptr_eq(m, &member));
        Some(member)
    }

    /// Leaves. A member with other live members (in any process) finishes its deliveries in
    /// flight and the events it had fetched, then gives its partitions up to them: the
    /// returned list is empty. The last member of a group, or a plain subscriber, ends the
    /// group: its deliveries in flight finish, and every event the group was still owed is
    /// returned (not delivered) and the group is deleted from Redis.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// use flowgate::bus::{Backend, SubscribeRequest, TopicSettings};
    /// use flowgate::Event;
    /// let bus = flowgate::redis::RedisBus::connect("redis://127.0.0.1/").await?;
    /// let jobs: flowgate::redis::RedisTopic<u64> = bus.create_topic("jobs", TopicSettings::default()).await?;
    /// let worker = jobs.subscribe(SubscribeRequest::new("w", |_: Event<u64>| async { Ok(()) })).await?;
    /// let handed_back = worker.unsubscribe().await;
    /// println!("{} events for the caller to deal with", handed_back.len());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn unsubscribe(self) -> Vec<Event<T>> {
        let Some(member) = self.forget() else {
            return Vec::new();
        };
        let left = member.leave().await;
        self.topic.membership.notify_waiters();
        left
    }

    /// Stops this process's part of the subscription and leaves the group's work in Redis
    /// for its other members, or for the next member that joins (a process restarting in a
    /// deploy). Deliveries in flight and fetched events are finished first.
    ///
    /// For a plain subscriber (whose group only it can use) this is
    /// [`unsubscribe`](Self::unsubscribe), and what it was owed is dropped after a warning:
    /// use `unsubscribe` to get it back.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// use flowgate::bus::{Backend, SubscribeRequest, TopicSettings};
    /// use flowgate::Event;
    /// let bus = flowgate::redis::RedisBus::connect("redis://127.0.0.1/").await?;
    /// let jobs: flowgate::redis::RedisTopic<u64> = bus.create_topic("jobs", TopicSettings::default()).await?;
    /// let request = SubscribeRequest::new("w-1", |_: Event<u64>| async { Ok(()) }).group("workers");
    /// jobs.subscribe(request).await?.detach().await; // the group keeps its events in Redis
    /// # Ok(())
    /// # }
    /// ```
    pub async fn detach(self) {
        let Some(member) = self.forget() else {
            return;
        };
        if member.plain {
            let left = member.leave().await;
            if !left.is_empty() {
                tracing::warn!(
                    topic = %self.topic.name,
                    subscriber = %member.name,
                    dropped = left.len(),
                    "a plain subscriber detached: the events it was owed are dropped"
                );
            }
        } else {
            member
                .stop_for_shutdown(
                    tokio::time::Instant::now() + Duration::from_secs(3600 * 24 * 365),
                )
                .await;
        }
        self.topic.membership.notify_waiters();
    }
}

impl<T: Send + Sync + 'static> BackendSubscription<T> for RedisSubscription<T> {
    async fn unsubscribe(self) -> Vec<Event<T>> {
        RedisSubscription::unsubscribe(self).await
    }
}
