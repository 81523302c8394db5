//! A member of a consumer group on Redis (a plain subscriber is the only member of a group of
//! its own), and its coordinator: the task that keeps the member's heartbeat, takes and
//! renews partition leases, gives partitions up when other members join, and runs one
//! [`worker`](crate::worker) per partition it owns.
//!
//! Invariant: a partition's events are handled by at most one worker at a time in the whole
//! group. A worker runs only while its member holds the partition's lease: it reads and
//! acknowledges through scripts that check the lease, and it stops by itself (dropping its
//! deliveries in flight) when it has not seen a renewal for nine tenths of the lease, before
//! any other member may take the partition over. A member gives a partition up only after
//! its worker finished every event it had fetched, so the next owner starts after them.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use flowgate_bus::{BusError, SubscribeRequest};
use flowgate_core::{BoxHandler, DeadLetterSink, Event, EventId};
use redis::Value;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::bus::unavailable;
use crate::scripts::{ACQUIRE_SCRIPT, BACKLOG_SCRIPT, RELEASE_SCRIPT, RENEW_SCRIPT};
use crate::topic::TopicInner;
use crate::wire::{self, as_text, Body, EntryId};
use crate::worker::{self, Stop, WorkerExit};

/// What a member's stop left undone: events it was owed and did not start (`left`), and
/// deliveries cut short at the deadline (`interrupted`).
pub(crate) struct Stopped<T> {
    pub(crate) left: Vec<Event<T>>,
    pub(crate) interrupted: Vec<Event<T>>,
}

enum Command<T> {
    /// Work off what the group owes until it owes nothing or the deadline passes.
    Drain(Instant, oneshot::Sender<()>),
    /// Leave for good (unsubscribe): the last member ends the group.
    Leave(oneshot::Sender<Vec<Event<T>>>),
    /// Stop this process's part (shutdown, detach): a plain subscriber ends its group, a
    /// group member leaves the group's work in Redis.
    Stop(Instant, oneshot::Sender<Stopped<T>>),
}

pub(crate) struct Member<T> {
    pub(crate) topic: Arc<TopicInner<T>>,
    /// The consumer name in Redis and the lease owner: unique per member.
    pub(crate) id: String,
    /// The subscriber's name (stats, dead letters).
    pub(crate) name: Arc<str>,
    /// The name shutdown reports undelivered events under: the consumer group's, or the
    /// plain subscriber's (as the in-process bus does).
    pub(crate) reports_as: Arc<str>,
    /// The Redis consumer group: `g:<group>`, or `p:<name>:<id>` for a plain subscriber.
    pub(crate) group: String,
    pub(crate) plain: bool,
    pub(crate) handler: BoxHandler<T>,
    pub(crate) dead_letters: Arc<dyn DeadLetterSink<T>>,
    /// Events this member fetched and has not finished (queued or running).
    pub(crate) busy: AtomicUsize,
    commands: mpsc::UnboundedSender<Command<T>>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl<T: Send + Sync + 'static> Member<T> {
    pub(crate) async fn start(
        topic: Arc<TopicInner<T>>,
        request: SubscribeRequest<T>,
        runtime: &tokio::runtime::Handle,
    ) -> Result<Arc<Self>, BusError> {
        let id = EventId::new().to_string();
        let (group, plain) = match &request.group {
            Some(group) => (format!("g:{group}"), false),
            None => (format!("p:{}:{id}", request.name), true),
        };
        let mut conn = topic.conn();
        for keys in &topic.partitions {
            let created: redis::RedisResult<()> = redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(keys.stream())
                .arg(&group)
                .arg("$")
                .arg("MKSTREAM")
                .query_async(&mut conn)
                .await;
            match created {
                Ok(()) => {}
                Err(e) if e.code() == Some("BUSYGROUP") => {}
                Err(e) => return Err(unavailable(e)),
            }
        }
        // The first heartbeat, before the group can hold anything.
        let lease_ms = topic.shared.options.lease.as_millis() as u64;
        let (beats, beater) = if plain {
            (topic.keys.plain_groups(), &group)
        } else {
            (topic.keys.members(&group), &id)
        };
        let _: () = redis::cmd("ZADD")
            .arg(beats)
            .arg(now_ms() + lease_ms)
            .arg(beater)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let (commands, receiver) = mpsc::unbounded_channel();
        let reports_as: Arc<str> = Arc::from(request.group.as_deref().unwrap_or(&request.name));
        let member = Arc::new(Self {
            topic,
            id,
            reports_as,
            name: Arc::from(request.name),
            group,
            plain,
            handler: request.handler,
            dead_letters: request.dead_letters,
            busy: AtomicUsize::new(0),
            commands,
        });
        let coordinator = Coordinator {
            member: Arc::clone(&member),
            owned: BTreeMap::new(),
            releasing: Vec::new(),
            leaving: false,
        };
        runtime.spawn(coordinator.run(receiver));
        Ok(member)
    }

    pub(crate) async fn drain(&self, until: Instant) {
        let (done, wait) = oneshot::channel();
        if self.commands.send(Command::Drain(until, done)).is_ok() {
            let _ = wait.await;
        }
    }

    pub(crate) async fn leave(&self) -> Vec<Event<T>> {
        let (done, wait) = oneshot::channel();
        if self.commands.send(Command::Leave(done)).is_err() {
            return Vec::new();
        }
        wait.await.unwrap_or_default()
    }

    pub(crate) async fn stop_for_shutdown(&self, until: Instant) -> Stopped<T> {
        let (done, wait) = oneshot::channel();
        let nothing = || Stopped {
            left: Vec::new(),
            interrupted: Vec::new(),
        };
        if self.commands.send(Command::Stop(until, done)).is_err() {
            return nothing();
        }
        wait.await.unwrap_or_else(|_| nothing())
    }
}

/// A partition this member owns.
struct Owned<T> {
    token: String,
    stop: watch::Sender<Stop>,
    valid: watch::Sender<Instant>,
    task: JoinHandle<WorkerExit<T>>,
}

struct Coordinator<T> {
    member: Arc<Member<T>>,
    owned: BTreeMap<u32, Owned<T>>,
    /// Partitions being given up: their workers finish, then their leases are released.
    releasing: Vec<(u32, JoinHandle<()>)>,
    leaving: bool,
}

impl<T: Send + Sync + 'static> Coordinator<T> {
    fn lease(&self) -> Duration {
        self.member.topic.shared.options.lease
    }

    /// How long after a renewal began the worker may still trust the lease.
    fn trusted(&self, renewal_began: Instant) -> Instant {
        renewal_began + self.lease() * 9 / 10
    }

    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command<T>>) {
        let period = self.lease() / 3;
        let mut next_tick = Instant::now();
        let mut draining: Option<(Instant, oneshot::Sender<()>)> = None;
        let topic = Arc::clone(&self.member.topic);
        loop {
            let membership = topic.membership.notified();
            tokio::select! {
                () = tokio::time::sleep_until(next_tick) => {
                    self.rebalance().await;
                    next_tick = Instant::now() + period;
                }
                () = membership => self.rebalance().await,
                () = tokio::time::sleep(Duration::from_millis(5)), if draining.is_some() => {
                    let until = draining.as_ref().map_or_else(Instant::now, |d| d.0);
                    if Instant::now() >= until || self.drained().await {
                        if let Some((_, done)) = draining.take() {
                            let _ = done.send(());
                        }
                    }
                }
                command = commands.recv() => match command {
                    Some(Command::Drain(until, done)) => draining = Some((until, done)),
                    Some(Command::Leave(done)) => {
                        let stopped = self.end(None).await;
                        let _ = done.send(stopped.left);
                        return;
                    }
                    Some(Command::Stop(until, done)) => {
                        let stopped = if self.member.plain {
                            self.end(Some(until)).await
                        } else {
                            self.detach(until).await
                        };
                        let _ = done.send(stopped);
                        return;
                    }
                    None => {
                        self.detach(Instant::now() + Duration::from_secs(60)).await;
                        return;
                    }
                },
            }
        }
    }

    /// Heartbeat, renewals, and the partition count this member should own.
    async fn rebalance(&mut self) {
        if self.leaving {
            return;
        }
        self.forget_ended().await;
        self.sweep_dead_plain_groups().await;
        let Some(live) = self.heartbeat().await else {
            return;
        };
        self.renew().await;
        let partitions = self.member.topic.partition_count();
        let share = partitions.div_ceil(u32::try_from(live).unwrap_or(u32::MAX)) as usize;
        while self.owned.len() > share {
            let Some((p, owned)) = self.owned.pop_last() else {
                break;
            };
            let _ = owned.stop.send(Stop::Release);
            let member = Arc::clone(&self.member);
            self.releasing.push((
                p,
                tokio::spawn(async move {
                    if let Ok(exit) = owned.task.await {
                        account_for_stranded(&member, &exit);
                        forget_consumer_if_clean(&member, &exit).await;
                    }
                    release(&member, p, &owned.token).await;
                    member.topic.membership.notify_waiters();
                }),
            ));
        }
        if self.owned.len() < share {
            self.acquire_up_to(share).await;
        }
    }

    /// Deletes the groups of plain subscribers whose process died: no heartbeat for three
    /// leases. Their entries would otherwise hold every partition's room for good.
    async fn sweep_dead_plain_groups(&self) {
        let topic = &self.member.topic;
        let stale_before = now_ms().saturating_sub(3 * self.lease().as_millis() as u64);
        let mut conn = topic.conn();
        let stale: redis::RedisResult<Vec<String>> = redis::cmd("ZRANGEBYSCORE")
            .arg(topic.keys.plain_groups())
            .arg("-inf")
            .arg(stale_before)
            .arg("LIMIT")
            .arg(0)
            .arg(16)
            .query_async(&mut conn)
            .await;
        for group in stale.unwrap_or_default() {
            tracing::warn!(topic = %topic.name, group = %group,
                "deleting a plain subscriber's group whose process stopped beating");
            delete_group(topic, &group, true).await;
        }
    }

    /// Forgets workers that ended by themselves (lease lost, group deleted) and finished
    /// releases.
    async fn forget_ended(&mut self) {
        let ended: Vec<u32> = self
            .owned
            .iter()
            .filter(|(_, o)| o.task.is_finished())
            .map(|(p, _)| *p)
            .collect();
        for p in ended {
            if let Some(owned) = self.owned.remove(&p) {
                if let Ok(exit) = owned.task.await {
                    account_for_stranded(&self.member, &exit);
                }
                self.release_lease(p, &owned.token).await;
            }
        }
        self.releasing.retain(|(_, task)| !task.is_finished());
    }

    /// Refreshes this member's entry among the group's members; returns how many are live.
    async fn heartbeat(&self) -> Option<u64> {
        let member = &self.member;
        if member.plain {
            let lease_ms = self.lease().as_millis() as u64;
            let mut conn = member.topic.conn();
            let beat: redis::RedisResult<()> = redis::cmd("ZADD")
                .arg(member.topic.keys.plain_groups())
                .arg(now_ms() + lease_ms)
                .arg(&member.group)
                .query_async(&mut conn)
                .await;
            if let Err(error) = beat {
                tracing::warn!(topic = %member.topic.name, %error, "heartbeat failed; retrying at the next renewal");
            }
            return Some(1);
        }
        let topic = &member.topic;
        let now = now_ms();
        let members = topic.keys.members(&member.group);
        let mut conn = topic.conn();
        let lease_ms = self.lease().as_millis() as u64;
        // Shares count the members within their deadline; entries are forgotten one lease
        // later (see `quit_members`).
        let counted: redis::RedisResult<(i64, i64, u64)> = redis::pipe()
            .zadd(&members, &member.id, now + lease_ms)
            .zrembyscore(&members, "-inf", now.saturating_sub(lease_ms))
            .zcount(&members, now, "+inf")
            .query_async(&mut conn)
            .await;
        match counted {
            Ok((_, _, live)) => Some(live.max(1)),
            Err(error) => {
                tracing::warn!(topic = %topic.name, %error, "heartbeat failed; retrying at the next renewal");
                None
            }
        }
    }

    /// Renews every lease held; stops the workers of leases lost.
    async fn renew(&mut self) {
        let member = Arc::clone(&self.member);
        let topic = &member.topic;
        let mut conn = topic.conn();
        let began = Instant::now();
        let mut lost = Vec::new();
        for (&p, owned) in &self.owned {
            let renewed: redis::RedisResult<i64> = RENEW_SCRIPT
                .key(topic.partitions[p as usize].lease(&member.group))
                .arg(&owned.token)
                .arg(self.lease().as_millis() as u64)
                .invoke_async(&mut conn)
                .await;
            match renewed {
                Ok(1) => {
                    let _ = owned.valid.send(self.trusted(began));
                }
                Ok(_) => lost.push(p),
                Err(error) => {
                    tracing::warn!(topic = %topic.name, partition = p, %error, "lease renewal failed; the worker stops if none succeeds in time");
                }
            }
        }
        for p in lost {
            if let Some(owned) = self.owned.remove(&p) {
                tracing::warn!(topic = %topic.name, partition = p, "lease lost: stopping this partition's worker");
                let _ = owned.stop.send(Stop::Abort);
                let member = Arc::clone(&self.member);
                self.releasing.push((
                    p,
                    tokio::spawn(async move {
                        if let Ok(exit) = owned.task.await {
                            account_for_stranded(&member, &exit);
                        }
                    }),
                ));
            }
        }
    }

    /// Takes free partitions until this member owns `share` of them.
    async fn acquire_up_to(&mut self, share: usize) {
        let member = Arc::clone(&self.member);
        let topic = &member.topic;
        let partitions = topic.partition_count();
        let mut conn = topic.conn();
        let busy: HashSet<u32> = self.releasing.iter().map(|(p, _)| *p).collect();
        let offset = (flowgate_core::stable_hash(&member.id) % u64::from(partitions)) as u32;
        for i in 0..partitions {
            if self.owned.len() >= share {
                break;
            }
            let p = (offset + i) % partitions;
            if self.owned.contains_key(&p) || busy.contains(&p) {
                continue;
            }
            let keys = &topic.partitions[p as usize];
            let began = Instant::now();
            let acquired: redis::RedisResult<Option<String>> = ACQUIRE_SCRIPT
                .key(keys.lease(&member.group))
                .key(keys.counters())
                .arg(&member.id)
                .arg(self.lease().as_millis() as u64)
                .arg(&member.group)
                .invoke_async(&mut conn)
                .await;
            match acquired {
                Ok(Some(token)) => self.start_worker(p, token, began),
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(topic = %topic.name, partition = p, %error, "lease request failed");
                    break;
                }
            }
        }
    }

    fn start_worker(&mut self, p: u32, token: String, began: Instant) {
        let (stop, stop_rx) = watch::channel(Stop::Run);
        let (valid, valid_rx) = watch::channel(self.trusted(began));
        let task = tokio::spawn(worker::run(
            Arc::clone(&self.member),
            p,
            token.clone(),
            stop_rx,
            valid_rx,
        ));
        self.owned.insert(
            p,
            Owned {
                token,
                stop,
                valid,
                task,
            },
        );
    }

    async fn release_lease(&self, p: u32, token: &str) {
        release(&self.member, p, token).await;
    }

    /// Whether the group owes nothing on any partition and this member holds nothing.
    async fn drained(&self) -> bool {
        let member = &self.member;
        if member.busy.load(Ordering::Acquire) > 0 {
            return false;
        }
        let mut conn = member.topic.conn();
        for keys in &member.topic.partitions {
            let backlog: redis::RedisResult<(usize, usize)> = BACKLOG_SCRIPT
                .key(keys.stream())
                .arg(&member.group)
                .arg(1)
                .invoke_async(&mut conn)
                .await;
            if backlog.map_or(true, |(pending, unread)| pending + unread > 0) {
                return false;
            }
        }
        true
    }

    /// Stops every worker with `mode`; past `deadline` (if any), aborts what still runs.
    async fn stop_all(&mut self, mode: Stop, deadline: Option<Instant>) -> Vec<WorkerExit<T>> {
        let owned = std::mem::take(&mut self.owned);
        for o in owned.values() {
            let _ = o.stop.send(mode);
        }
        let mut exits = Vec::with_capacity(owned.len());
        for (p, mut o) in owned {
            let on_time = match deadline {
                Some(deadline) => tokio::time::timeout_at(deadline, &mut o.task).await.ok(),
                None => Some((&mut o.task).await),
            };
            let joined = if let Some(joined) = on_time {
                joined
            } else {
                let _ = o.stop.send(Stop::Abort);
                (&mut o.task).await
            };
            let exit = joined.unwrap_or_else(|error| {
                tracing::error!(topic = %self.member.topic.name, partition = p, %error, "partition worker failed");
                WorkerExit::default()
            });
            if !exit.fenced {
                forget_consumer_if_clean(&self.member, &exit).await;
                self.release_lease(p, &o.token).await;
            }
            exits.push(exit);
        }
        for (_, task) in std::mem::take(&mut self.releasing) {
            let _ = task.await;
        }
        exits
    }

    /// Leaves the group's members in Redis; returns whether no live member is left.
    async fn quit_members(&self) -> bool {
        if self.member.plain {
            return true;
        }
        let member = &self.member;
        let members = member.topic.keys.members(&member.group);
        let mut conn = member.topic.conn();
        // A member counts as live for one lease past its heartbeat's deadline: one whose
        // coordinator is merely slow must not be taken for gone, or the group would be ended
        // under it. (A member that died is then counted for up to two leases; the group
        // survives it, and its events stay in Redis.)
        let lease_ms = self.lease().as_millis() as u64;
        let left: redis::RedisResult<(i64, u64)> = redis::pipe()
            .zrem(&members, &member.id)
            .zcount(&members, now_ms().saturating_sub(lease_ms), "+inf")
            .query_async(&mut conn)
            .await;
        match left {
            Ok((_, live)) => live == 0,
            Err(error) => {
                tracing::warn!(topic = %member.topic.name, %error, "could not leave the group's members; its lease will expire");
                false
            }
        }
    }

    /// Stops this process's part and leaves the group's work in Redis.
    async fn detach(&mut self, until: Instant) -> Stopped<T> {
        self.leaving = true;
        self.quit_members().await;
        let exits = self.stop_all(Stop::Release, Some(until)).await;
        self.member.topic.membership.notify_waiters();
        let mut stopped = Stopped {
            left: Vec::new(),
            interrupted: Vec::new(),
        };
        for exit in exits {
            stopped.left.extend(exit.left.into_iter().map(|(_, e)| e));
            stopped
                .interrupted
                .extend(exit.interrupted.into_iter().map(|(_, e)| e));
        }
        stopped
    }

    /// Leaves; the last member ends the group and returns all it was still owed.
    async fn end(&mut self, deadline: Option<Instant>) -> Stopped<T> {
        self.leaving = true;
        let last = self.quit_members().await;
        let mode = if last { Stop::HandBack } else { Stop::Release };
        let exits = self.stop_all(mode, deadline).await;
        self.member.topic.membership.notify_waiters();
        let mut local: BTreeMap<(u32, EntryId), Event<T>> = BTreeMap::new();
        let mut interrupted = Vec::new();
        for exit in exits {
            for (id, event) in exit.left {
                local.insert((exit.partition, id), event);
            }
            for (id, event) in exit.interrupted {
                interrupted.push((exit.partition, id, event));
            }
        }
        if !last {
            return Stopped {
                left: local.into_values().collect(),
                interrupted: interrupted.into_iter().map(|(_, _, e)| e).collect(),
            };
        }
        let skip: HashSet<(u32, EntryId)> =
            interrupted.iter().map(|(p, id, _)| (*p, *id)).collect();
        if let Err(error) = self.collect_owed(&mut local, &skip).await {
            tracing::error!(topic = %self.member.topic.name, subscriber = %self.member.name, %error,
                "could not read what the group was owed; it stays in Redis");
            return Stopped {
                left: local.into_values().collect(),
                interrupted: interrupted.into_iter().map(|(_, _, e)| e).collect(),
            };
        }
        self.delete_group().await;
        Stopped {
            left: local.into_values().collect(),
            interrupted: interrupted.into_iter().map(|(_, _, e)| e).collect(),
        }
    }

    /// Adds to `owed` every entry the group has not consumed: pending (fetched by any member,
    /// not acknowledged) and unread.
    async fn collect_owed(
        &self,
        owed: &mut BTreeMap<(u32, EntryId), Event<T>>,
        skip: &HashSet<(u32, EntryId)>,
    ) -> redis::RedisResult<()> {
        let member = &self.member;
        let topic = &member.topic;
        let mut conn = topic.conn();
        for (p, keys) in topic.partitions.iter().enumerate() {
            let p = p as u32;
            let stream = keys.stream();
            let pending: Value = redis::cmd("XPENDING")
                .arg(&stream)
                .arg(&member.group)
                .arg("-")
                .arg("+")
                .arg(1_000_000)
                .query_async(&mut conn)
                .await?;
            let mut ids = Vec::new();
            if let Value::Array(rows) = pending {
                for row in rows {
                    if let Value::Array(fields) = row {
                        if let Some(id) = fields.first().and_then(as_text) {
                            ids.push(id);
                        }
                    }
                }
            }
            let mut entries = Vec::new();
            for id in ids {
                let parsed = EntryId::parse(&id);
                if parsed.is_some_and(|e| owed.contains_key(&(p, e)) || skip.contains(&(p, e))) {
                    continue;
                }
                let found: Value = redis::cmd("XRANGE")
                    .arg(&stream)
                    .arg(&id)
                    .arg(&id)
                    .query_async(&mut conn)
                    .await?;
                entries.extend(wire::decode_entries(found, &*topic.codec));
            }
            let groups: Value = redis::cmd("XINFO")
                .arg("GROUPS")
                .arg(&stream)
                .query_async(&mut conn)
                .await?;
            if let Some(last) = last_delivered(&groups, &member.group) {
                let unread: Value = redis::cmd("XRANGE")
                    .arg(&stream)
                    .arg(format!("({last}"))
                    .arg("+")
                    .query_async(&mut conn)
                    .await?;
                entries.extend(wire::decode_entries(unread, &*topic.codec));
            }
            for entry in entries {
                match entry.body {
                    Body::Event(event) => {
                        owed.insert((p, entry.id), event);
                    }
                    Body::Undecodable(undecodable) => {
                        worker::dead_letter_raw(member, p, entry.id, &undecodable).await;
                    }
                    Body::Deleted => {}
                }
            }
        }
        Ok(())
    }

    async fn delete_group(&self) {
        delete_group(&self.member.topic, &self.member.group, self.member.plain).await;
    }
}

/// Deletes `group` from every partition of `topic`, with its bookkeeping: done markers,
/// leases, lease epochs, members (or its heartbeat among the plain groups).
async fn delete_group<T>(topic: &TopicInner<T>, group: &str, plain: bool) {
    let mut conn = topic.conn();
    for keys in &topic.partitions {
        let deleted: redis::RedisResult<()> = redis::pipe()
            .cmd("XGROUP")
            .arg("DESTROY")
            .arg(keys.stream())
            .arg(group)
            .ignore()
            .del(keys.done(group))
            .ignore()
            .del(keys.lease(group))
            .ignore()
            .hdel(keys.counters(), format!("epoch:{group}"))
            .ignore()
            .query_async(&mut conn)
            .await;
        if let Err(error) = deleted {
            tracing::warn!(topic = %topic.name, %error, "could not delete an ended group");
        }
    }
    let bookkeeping: redis::RedisResult<()> = if plain {
        redis::cmd("ZREM")
            .arg(topic.keys.plain_groups())
            .arg(group)
            .query_async(&mut conn)
            .await
    } else {
        redis::cmd("DEL")
            .arg(topic.keys.members(group))
            .query_async(&mut conn)
            .await
    };
    if let Err(error) = bookkeeping {
        tracing::warn!(topic = %topic.name, %error, "could not delete an ended group's members");
    }
}

/// Removes this member's consumer from the partition's group after its worker exited
/// having acknowledged everything it fetched (nothing pending is lost: there is none), so
/// that consumers do not pile up in Redis as members come and go.
async fn forget_consumer_if_clean<T>(member: &Member<T>, exit: &WorkerExit<T>) {
    if exit.fenced || !exit.left.is_empty() || !exit.interrupted.is_empty() {
        return;
    }
    let mut conn = member.topic.conn();
    let forgotten: redis::RedisResult<i64> = redis::cmd("XGROUP")
        .arg("DELCONSUMER")
        .arg(member.topic.partitions[exit.partition as usize].stream())
        .arg(&member.group)
        .arg(&member.id)
        .query_async(&mut conn)
        .await;
    if let Ok(pending) = forgotten {
        debug_assert_eq!(pending, 0, "a clean exit leaves nothing pending");
    }
}

/// A worker that stopped by itself (its lease lost or untrusted, its group deleted) leaves
/// what it had fetched. Under at-least-once and exactly-once that stays pending in Redis for
/// the partition's next owner; under at-most-once it was read without acknowledgement, so
/// the events it never started are lost: they are counted as dropped, and logged.
fn account_for_stranded<T>(member: &Member<T>, exit: &WorkerExit<T>) {
    if exit.left.is_empty() {
        return;
    }
    if member.topic.config.mode == flowgate_bus::DeliveryMode::AtMostOnce {
        crate::topic::add(
            &member.topic.counters[exit.partition as usize].dropped,
            exit.left.len() as u64,
        );
        tracing::warn!(topic = %member.topic.name, partition = exit.partition, subscriber = %member.name,
            dropped = exit.left.len(), "a worker lost its partition: at-most-once events it had fetched are dropped");
    } else {
        tracing::info!(topic = %member.topic.name, partition = exit.partition, subscriber = %member.name,
            pending = exit.left.len(), "a worker lost its partition: its fetched events stay pending for the next owner");
    }
}

async fn release<T>(member: &Member<T>, p: u32, token: &str) {
    let mut conn = member.topic.conn();
    let released: redis::RedisResult<i64> = RELEASE_SCRIPT
        .key(member.topic.partitions[p as usize].lease(&member.group))
        .arg(token)
        .invoke_async(&mut conn)
        .await;
    if let Err(error) = released {
        tracing::warn!(topic = %member.topic.name, partition = p, %error, "lease release failed; it expires by itself");
    }
}

/// The `last-delivered-id` of `group` in an `XINFO GROUPS` reply.
fn last_delivered(groups: &Value, group: &str) -> Option<String> {
    let Value::Array(groups) = groups else {
        return None;
    };
    for g in groups {
        let fields: Vec<(String, &Value)> = match g {
            Value::Array(flat) => flat
                .chunks(2)
                .filter_map(|pair| Some((as_text(&pair[0])?, pair.get(1)?)))
                .collect(),
            Value::Map(pairs) => pairs
                .iter()
                .filter_map(|(k, v)| Some((as_text(k)?, v)))
                .collect(),
            _ => continue,
        };
        let field = |name: &str| {
            fields
                .iter()
                .find(|(k, _)| k == name)
                .and_then(|(_, v)| as_text(v))
        };
        if field("name").as_deref() == Some(group) {
            return field("last-delivered-id");
        }
    }
    None
}
