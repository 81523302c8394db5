//! One partition's worker, run by the member that holds the partition's lease: fetches the
//! group's entries, delivers them with the topic's concurrency cap and per-key order, and
//! acknowledges them.
//!
//! Invariants:
//! - Events of one ordering key run one at a time, in stream (publish) order: an event
//!   starts only when no earlier fetched event of its key is running or waiting.
//! - An entry is acknowledged only after its delivery ended (the handler returned `Ok`, the
//!   event was dead-lettered, or exactly-once found it already done), and only by a script
//!   that checks this worker's lease: a worker that lost its partition acknowledges nothing.
//! - Fetched entries are counted in `queued` until started, then in `in_flight` until done.
//!   The fetch never holds more than the topic's capacity (or its concurrency, if larger).

use std::collections::{HashMap, HashSet, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use flowgate_bus::DeliveryMode;
use flowgate_core::{DeadLetter, Event, HandlerError, Key, RetryPolicy};
use futures_util::future::BoxFuture;
use redis::aio::MultiplexedConnection;
use redis::Value;
use tokio::sync::watch;
use tokio::task::{Id, JoinError, JoinHandle, JoinSet};
use tokio::time::Instant;

use crate::member::Member;
use crate::scripts::{eval, evalsha, ACK_SCRIPT, READ_SCRIPT};
use crate::topic::add;
use crate::wire::{self, as_int, as_text, Body, EntryId, Undecodable};

/// Takes the output of a task known to be finished.
trait Joined<O> {
    /// `None` when the task panicked or was cancelled.
    fn now_or_never_joined(self) -> Option<O>;
}

impl<O> Joined<O> for JoinHandle<O> {
    fn now_or_never_joined(self) -> Option<O> {
        // Unconstrained: with the task's coop budget spent, polling even a finished handle
        // answers Pending, and the output would be dropped with the handle (a read's entries,
        // already consumed on the server).
        futures_util::FutureExt::now_or_never(tokio::task::unconstrained(self)).and_then(Result::ok)
    }
}

/// The error of a request whose task panicked or was cancelled.
fn task_failed() -> redis::RedisError {
    redis::RedisError::from((redis::ErrorKind::Io, "the request's task failed"))
}

/// The longest an acknowledgement waits for others to share its round trip.
const ACK_DELAY: Duration = Duration::from_millis(2);

/// What the coordinator asks of a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// Keep going.
    Run,
    /// Fetch nothing more; finish what was fetched; exit (the partition moves).
    Release,
    /// Fetch nothing more; finish the deliveries in flight; exit returning the rest.
    HandBack,
    /// Exit now: drop the deliveries in flight (returned as interrupted) and the rest.
    Abort,
}

/// What a worker left when it exited.
pub(crate) struct WorkerExit<T> {
    pub(crate) partition: u32,
    /// Fetched, not started, in order.
    pub(crate) left: Vec<(EntryId, Event<T>)>,
    /// Started, cut short.
    pub(crate) interrupted: Vec<(EntryId, Event<T>)>,
    /// The lease was lost (or may have been): nothing more may be acknowledged.
    pub(crate) fenced: bool,
}

impl<T> Default for WorkerExit<T> {
    fn default() -> Self {
        Self {
            partition: 0,
            left: Vec::new(),
            interrupted: Vec::new(),
            fenced: false,
        }
    }
}

/// What to do with an entry once its delivery ended.
enum Ack {
    /// Nothing (at-most-once reads need no acknowledgement).
    None,
    /// Acknowledge.
    Plain,
    /// Acknowledge and mark the idempotency key done (exactly-once).
    Mark(String),
}

/// The requests a worker has in flight, and when to send the next ones.
struct Flight<T> {
    /// The read in flight: a task of its own (a request sent must be seen through, so the
    /// worker's select never cancels it), so that handlers run while it travels.
    reading: Option<JoinHandle<redis::RedisResult<Read<T>>>>,
    /// The acknowledgement in flight, and what it acknowledges.
    acking: Option<(JoinHandle<redis::RedisResult<i64>>, Acks)>,
    /// The wait for new entries (a blocking XREAD), when there was nothing to read.
    wait: Option<BoxFuture<'static, bool>>,
    wait_conn: Option<MultiplexedConnection>,
    /// The pause after a failed read (doubling, up to 1 s).
    pause: Duration,
    no_read_before: Instant,
    /// When the oldest acknowledgement not yet sent was recorded.
    oldest_ack: Option<Instant>,
    /// No acknowledgement before this (one just failed), and the next pause.
    no_ack_before: Instant,
    ack_pause: Duration,
    /// A read that ended, not yet looked at.
    read_output: Option<redis::RedisResult<Read<T>>>,
    /// An acknowledgement that ended, not yet looked at, and what it acknowledged.
    ack_output: Option<(Option<redis::RedisResult<i64>>, Acks)>,
}

/// Entries to acknowledge, each with the idempotency key to mark done (exactly-once).
type Acks = Vec<(EntryId, Option<String>)>;

enum Cursor {
    /// Reading this member's own pending entries (claimed from an earlier owner), after
    /// this id.
    History(String),
    /// Reading new entries.
    New,
}

/// What a finished acknowledgement leaves the worker to do.
enum AfterAck {
    Done,
    /// The lease is gone: stop.
    Fenced,
    /// Send them again after a pause.
    Failed,
}

/// What a finished read leaves the worker to do.
enum AfterRead {
    /// The lease (or the group) is gone: stop.
    Fenced,
    /// Read again (entries came in, or the claimed history is done).
    Again,
    /// Nothing to read: wait for entries after this id.
    Wait(String),
    /// The read failed: read again after a pause.
    Later,
}

enum Read<T> {
    Fenced,
    Entries(Vec<wire::Entry<T>>),
    /// Nothing to read; the stream's last id.
    Empty(String),
}

pub(crate) async fn run<T: Send + Sync + 'static>(
    member: Arc<Member<T>>,
    partition: u32,
    token: String,
    stop: watch::Receiver<Stop>,
    valid: watch::Receiver<Instant>,
) -> WorkerExit<T> {
    let keys = &member.topic.partitions[partition as usize];
    let acked = member.topic.config.mode != DeliveryMode::AtMostOnce;
    let worker = Worker {
        stream: keys.stream(),
        lease: keys.lease(&member.group),
        done: keys.done(&member.group),
        member: Arc::clone(&member),
        partition,
        token,
        acked,
        queue: VecDeque::new(),
        running: JoinSet::new(),
        running_events: HashMap::new(),
        busy_keys: HashSet::new(),
        busy_idempotency: HashSet::new(),
        pending_marks: HashSet::new(),
        acks: Vec::new(),
        cursor: if acked {
            Cursor::History("0-0".into())
        } else {
            Cursor::New
        },
        stop,
        valid,
        renewed_own: Instant::now(),
        highest_fetched: None,
        renew_retry_at: Instant::now(),
    };
    worker.run().await
}

struct Worker<T> {
    member: Arc<Member<T>>,
    partition: u32,
    token: String,
    stream: String,
    lease: String,
    done: String,
    acked: bool,
    queue: VecDeque<(EntryId, Event<T>)>,
    running: JoinSet<(EntryId, Ack)>,
    running_events: HashMap<Id, (EntryId, Event<T>)>,
    busy_keys: HashSet<Key>,
    /// Exactly-once: the idempotency keys of the deliveries running.
    busy_idempotency: HashSet<Key>,
    /// Exactly-once: keys handled `Ok` whose done markers wait in `acks`.
    pending_marks: HashSet<String>,
    acks: Acks,
    cursor: Cursor,
    stop: watch::Receiver<Stop>,
    valid: watch::Receiver<Instant>,
    /// When the worker's own latest renewal stops being trusted.
    renewed_own: Instant,
    /// No own renewal before this (one just failed).
    renew_retry_at: Instant,
    /// The highest entry id fetched: a lost read's entries come after it.
    highest_fetched: Option<EntryId>,
}

impl<T: Send + Sync + 'static> Worker<T> {
    fn counters(&self) -> &crate::topic::Counters {
        &self.member.topic.counters[self.partition as usize]
    }

    fn room(&self) -> usize {
        let config = &self.member.topic.config;
        config.capacity.max(config.concurrency)
    }

    async fn run(mut self) -> WorkerExit<T> {
        if self.acked {
            if let Err(error) = self.claim().await {
                tracing::warn!(topic = %self.member.topic.name, partition = self.partition, %error,
                    "could not claim the previous owner's pending entries; retrying on the next lease");
                return self.exit(true);
            }
        }
        let mut flight = Flight {
            reading: None,
            acking: None,
            wait: None,
            wait_conn: None,
            pause: Duration::from_millis(10),
            no_read_before: Instant::now(),
            oldest_ack: None,
            no_ack_before: Instant::now(),
            ack_pause: Duration::from_millis(10),
            read_output: None,
            ack_output: None,
        };
        loop {
            while let Some(done) = self.running.try_join_next_with_id() {
                self.finished(done);
            }
            if flight.reading.as_ref().is_some_and(JoinHandle::is_finished) {
                let output = flight.reading.take().and_then(Joined::now_or_never_joined);
                flight.read_output = Some(output.unwrap_or_else(|| Err(task_failed())));
            }
            if let Some(read) = flight.read_output.take() {
                match self.after_read(read, &mut flight.pause).await {
                    AfterRead::Fenced => return self.abort(true).await,
                    AfterRead::Again => {}
                    AfterRead::Wait(last) => {
                        if flight.wait_conn.is_none() {
                            let conn = self.member.topic.shared.blocking_connection().await;
                            flight.wait_conn = conn.ok();
                        }
                        match flight.wait_conn.clone() {
                            Some(conn) => flight.wait = Some(self.wait_for_entries(conn, last)),
                            None => flight.no_read_before = Instant::now() + flight.pause,
                        }
                    }
                    AfterRead::Later => flight.no_read_before = Instant::now() + flight.pause,
                }
            }
            if flight
                .acking
                .as_ref()
                .is_some_and(|(task, _)| task.is_finished())
            {
                if let Some((task, sent)) = flight.acking.take() {
                    flight.ack_output = Some((task.now_or_never_joined(), sent));
                }
            }
            if let Some((outcome, sent)) = flight.ack_output.take() {
                match self.after_ack(outcome, sent) {
                    AfterAck::Done => flight.ack_pause = Duration::from_millis(10),
                    AfterAck::Fenced => return self.abort_after(true, &mut flight).await,
                    AfterAck::Failed => {
                        flight.no_ack_before = Instant::now() + flight.ack_pause;
                        flight.ack_pause = (flight.ack_pause * 2).min(Duration::from_secs(1));
                    }
                }
            }
            if !self.acks.is_empty() && flight.oldest_ack.is_none() {
                flight.oldest_ack = Some(Instant::now());
            }
            let mode = *self.stop.borrow();
            let settled = self.running.is_empty()
                && self.acks.is_empty()
                && flight.acking.is_none()
                && flight.reading.is_none();
            match mode {
                Stop::Abort => return self.abort_after(false, &mut flight).await,
                Stop::HandBack if settled => return self.exit(false),
                Stop::Release if settled && self.queue.is_empty() => return self.exit(false),
                _ => {}
            }
            if Instant::now() >= self.renew_due() {
                self.renew_own().await;
            }
            if Instant::now() >= self.trusted_until() {
                tracing::warn!(topic = %self.member.topic.name, partition = self.partition,
                    "the lease could not be renewed in time: stopping, as another member may own the partition now");
                return self.abort_after(true, &mut flight).await;
            }
            if mode != Stop::HandBack {
                self.start_what_may_start();
            }
            self.send_what_is_due(&mut flight, mode);
            self.next_event(&mut flight).await;
        }
    }

    /// Sends the acknowledgements that are due and the next read, if none is in flight.
    fn send_what_is_due(&mut self, flight: &mut Flight<T>, mode: Stop) {
        let batch = self.member.topic.shared.options.read_batch;
        // Acknowledgements go in batches: when a read's worth is done, when they are
        // ACK_DELAY old, when the worker has nothing else to do, or when it stops.
        let idle = self.running.is_empty() && self.queue.is_empty();
        let due = flight
            .oldest_ack
            .is_some_and(|at| at.elapsed() >= ACK_DELAY);
        if !self.acks.is_empty()
            && flight.acking.is_none()
            && Instant::now() >= flight.no_ack_before
            && (self.acks.len() >= batch || idle || due || mode != Stop::Run)
        {
            let sent = std::mem::take(&mut self.acks);
            flight.acking = Some((self.send_acks(&sent), sent));
            flight.oldest_ack = None;
        }
        // Read ahead: another batch while fewer than a batch wait, within the room.
        let room = self.room().saturating_sub(self.queue.len());
        if mode == Stop::Run
            && room > 0
            && self.queue.len() < batch
            && flight.reading.is_none()
            && flight.wait.is_none()
            && Instant::now() >= flight.no_read_before
        {
            flight.reading = Some(self.send_read(room.min(batch)));
        }
    }

    /// Waits for the next thing to happen: a delivery ends, a request returns, entries
    /// arrive, the coordinator asks, or a deadline passes.
    async fn next_event(&mut self, flight: &mut Flight<T>) {
        let trusted = self.trusted_until();
        let renew_due = self.renew_due();
        let ack_due = if flight.acking.is_none() {
            flight
                .oldest_ack
                .map(|at| (at + ACK_DELAY).max(flight.no_ack_before))
        } else {
            None
        };
        let no_read_before = flight.no_read_before;
        let waiting = async {
            match flight.wait.as_mut() {
                Some(wait) => Some(wait.await),
                None => std::future::pending().await,
            }
        };
        let read_done = async {
            match flight.reading.as_mut() {
                Some(task) => task.await.ok(),
                None => std::future::pending().await,
            }
        };
        let ack_done = async {
            match flight.acking.as_mut() {
                Some((task, _)) => task.await.ok(),
                None => std::future::pending().await,
            }
        };
        let mut waited = None;
        let mut read = None;
        let mut acked = None;
        tokio::select! {
            Some(done) = self.running.join_next_with_id(), if !self.running.is_empty() => {
                self.finished(done);
            }
            _ = self.stop.changed() => {}
            output = read_done => read = Some(output),
            output = ack_done => acked = Some(output),
            broken = waiting => waited = broken,
            () = tokio::time::sleep_until(trusted) => {}
            () = tokio::time::sleep_until(renew_due) => {}
            () = tokio::time::sleep_until(no_read_before), if no_read_before > Instant::now() => {}
            () = tokio::time::sleep_until(ack_due.unwrap_or(trusted)), if ack_due.is_some() => {}
        }
        // A JoinHandle is polled to its end once: keep what it gave.
        if let Some(output) = read {
            flight.reading = None;
            flight.read_output = Some(output.unwrap_or_else(|| Err(task_failed())));
        }
        if let Some(output) = acked {
            if let Some((_, sent)) = flight.acking.take() {
                flight.ack_output = Some((output, sent));
            }
        }
        if let Some(broken) = waited {
            flight.wait = None;
            if broken {
                // A new connection for the next wait (the server may be back).
                flight.wait_conn = None;
            }
        }
    }

    /// Settles a finished acknowledgement.
    fn after_ack(&mut self, outcome: Option<redis::RedisResult<i64>>, sent: Acks) -> AfterAck {
        match outcome {
            Some(Ok(acked)) if acked >= 0 => {
                for mark in sent.iter().filter_map(|(_, mark)| mark.as_ref()) {
                    self.pending_marks.remove(mark);
                }
                AfterAck::Done
            }
            Some(Ok(_)) => AfterAck::Fenced,
            failed => {
                if let Some(Err(error)) = failed {
                    tracing::warn!(topic = %self.member.topic.name, %error, "acknowledgement failed; retrying");
                }
                // Send them again, ahead of what came since.
                let newer = std::mem::replace(&mut self.acks, sent);
                self.acks.extend(newer);
                AfterAck::Failed
            }
        }
    }

    /// What a finished read leaves to do.
    async fn after_read(
        &mut self,
        read: redis::RedisResult<Read<T>>,
        pause: &mut Duration,
    ) -> AfterRead {
        match read {
            Ok(Read::Fenced) => AfterRead::Fenced,
            Ok(Read::Entries(entries)) => {
                *pause = Duration::from_millis(10);
                self.fetched(entries).await;
                AfterRead::Again
            }
            Ok(Read::Empty(last)) => {
                if matches!(self.cursor, Cursor::History(_)) {
                    self.cursor = Cursor::New;
                    return AfterRead::Again;
                }
                AfterRead::Wait(last)
            }
            Err(error) if error.code() == Some("NOGROUP") => {
                tracing::warn!(topic = %self.member.topic.name, subscriber = %self.member.name,
                    "the group was deleted (its last member left elsewhere): stopping");
                AfterRead::Fenced
            }
            Err(error) => {
                tracing::warn!(topic = %self.member.topic.name, %error, "read failed; retrying");
                *pause = (*pause * 2).min(Duration::from_secs(1));
                // The server may have run the read and the reply been lost: its entries
                // would be pending for this consumer, past everything fetched so far. Read
                // this consumer's pending entries from there before new ones.
                if self.acked {
                    let after = self
                        .highest_fetched
                        .map_or_else(|| "0-0".to_owned(), |id| id.to_string());
                    self.cursor = Cursor::History(after);
                }
                AfterRead::Later
            }
        }
    }

    /// Takes over the group's pending entries of this partition: an earlier owner's, which
    /// it fetched and did not acknowledge (it died, or lost its lease).
    async fn claim(&mut self) -> redis::RedisResult<()> {
        let mut conn = self.member.topic.conn();
        let mut cursor = String::from("0-0");
        loop {
            let reply: Value = redis::cmd("XAUTOCLAIM")
                .arg(&self.stream)
                .arg(&self.member.group)
                .arg(&self.member.id)
                .arg(0)
                .arg(&cursor)
                .arg("COUNT")
                .arg(1000)
                .arg("JUSTID")
                .query_async(&mut conn)
                .await?;
            let next = match &reply {
                Value::Array(parts) => parts.first().and_then(as_text),
                _ => None,
            };
            match next {
                Some(next) if next != "0-0" => cursor = next,
                _ => return Ok(()),
            }
        }
    }

    /// Sends a fenced read of up to `count` entries, as a task (which also decodes them).
    fn send_read(&self, count: usize) -> JoinHandle<redis::RedisResult<Read<T>>> {
        let start = match &self.cursor {
            Cursor::History(after) => after.clone(),
            Cursor::New => ">".into(),
        };
        let mut conn = self.member.topic.conn();
        let mut call = evalsha(&READ_SCRIPT, 2);
        call.arg(&self.lease)
            .arg(&self.stream)
            .arg(&self.token)
            .arg(&self.member.group)
            .arg(&self.member.id)
            .arg(count)
            .arg(if self.acked { "0" } else { "1" })
            .arg(start);
        let codec = Arc::clone(&self.member.topic.codec);
        tokio::spawn(async move {
            let reply = eval(&READ_SCRIPT, &call, &mut conn).await?;
            let Value::Array(mut parts) = reply else {
                return Ok(Read::Fenced);
            };
            let status = parts.first().and_then(as_int).unwrap_or(-1);
            Ok(match status {
                1 => {
                    let entries = parts.pop().unwrap_or(Value::Nil);
                    Read::Entries(wire::decode_entries(entries, &*codec))
                }
                0 => Read::Empty(
                    parts
                        .get(1)
                        .and_then(as_text)
                        .unwrap_or_else(|| "0-0".into()),
                ),
                _ => Read::Fenced,
            })
        })
    }

    /// A future that ends when the stream has an entry after `last` (or after the blocking
    /// read's timeout), with whether the connection failed. It only reads (XREAD, not
    /// XREADGROUP), so dropping it loses nothing.
    fn wait_for_entries(
        &self,
        mut conn: MultiplexedConnection,
        last: String,
    ) -> BoxFuture<'static, bool> {
        let stream = self.stream.clone();
        let block = self.member.topic.shared.options.block.as_millis() as u64;
        Box::pin(async move {
            let waited: redis::RedisResult<Value> = redis::cmd("XREAD")
                .arg("COUNT")
                .arg(1)
                .arg("BLOCK")
                .arg(block)
                .arg("STREAMS")
                .arg(&stream)
                .arg(&last)
                .query_async(&mut conn)
                .await;
            if waited.is_err() {
                // Do not spin while the server is away; the next read reports the fault.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            waited.is_err()
        })
    }

    async fn fetched(&mut self, entries: Vec<wire::Entry<T>>) {
        for entry in entries {
            self.highest_fetched = self.highest_fetched.max(Some(entry.id));
            if let Cursor::History(after) = &mut self.cursor {
                *after = entry.id.to_string();
            }
            match entry.body {
                Body::Event(event) => {
                    self.counters().queued.fetch_add(1, Ordering::Relaxed);
                    self.member.busy.fetch_add(1, Ordering::AcqRel);
                    self.queue.push_back((entry.id, event));
                }
                Body::Deleted => {
                    if self.acked {
                        self.acks.push((entry.id, None));
                    }
                }
                Body::Undecodable(undecodable) => {
                    dead_letter_raw(&self.member, self.partition, entry.id, &undecodable).await;
                    if self.acked {
                        self.acks.push((entry.id, None));
                    }
                }
            }
        }
    }

    /// Starts queued events, in order, while the concurrency cap allows and no earlier event
    /// of their key is running or waiting.
    fn start_what_may_start(&mut self) {
        let cap = self.member.topic.config.concurrency;
        let exactly = matches!(self.member.topic.config.mode, DeliveryMode::ExactlyOnce(..));
        let mut held_keys: HashSet<Key> = HashSet::new();
        let mut held_idempotency: HashSet<Key> = HashSet::new();
        let mut i = 0;
        while i < self.queue.len() && self.running.len() < cap {
            let event = &self.queue[i].1;
            let key = event.key().cloned();
            // Exactly-once: copies of one idempotency key run one at a time too, so that a
            // copy after an `Ok` finds the key done.
            let idempotency = exactly.then(|| event.idempotency_key());
            let key_busy = key
                .as_ref()
                .is_some_and(|k| self.busy_keys.contains(k) || held_keys.contains(k));
            let copy_busy = idempotency
                .as_ref()
                .is_some_and(|k| self.busy_idempotency.contains(k) || held_idempotency.contains(k));
            if key_busy || copy_busy {
                held_keys.extend(key);
                held_idempotency.extend(idempotency);
                i += 1;
                continue;
            }
            let Some((id, event)) = self.queue.remove(i) else {
                break;
            };
            let topic = Arc::clone(&self.member.topic);
            let counters = &topic.counters[self.partition as usize];
            counters.queued.fetch_sub(1, Ordering::Relaxed);
            if let Some(idempotency) = &idempotency {
                if self.pending_marks.contains(idempotency.as_str()) {
                    // Done `Ok` here; its marker is on its way to Redis with the next acks.
                    add(&counters.deduplicated, 1);
                    self.member.busy.fetch_sub(1, Ordering::AcqRel);
                    self.acks.push((id, None));
                    continue;
                }
                self.busy_idempotency.insert(idempotency.clone());
            }
            if let Some(key) = key {
                self.busy_keys.insert(key);
            }
            counters.in_flight.fetch_add(1, Ordering::Relaxed);
            let member = Arc::clone(&self.member);
            let partition = self.partition;
            let done = self.done.clone();
            let copy = event.clone();
            let task = self.running.spawn(async move {
                let ack = deliver(&member, partition, &done, copy).await;
                (id, ack)
            });
            self.running_events.insert(task.id(), (id, event));
        }
    }

    fn finished(&mut self, done: Result<(Id, (EntryId, Ack)), JoinError>) {
        let task = match &done {
            Ok((task, _)) => *task,
            Err(error) => error.id(),
        };
        let Some((id, event)) = self.running_events.remove(&task) else {
            return;
        };
        if let Some(key) = event.key() {
            self.busy_keys.remove(key);
        }
        if !self.busy_idempotency.is_empty() {
            self.busy_idempotency.remove(&event.idempotency_key());
        }
        self.counters().in_flight.fetch_sub(1, Ordering::Relaxed);
        self.member.busy.fetch_sub(1, Ordering::AcqRel);
        match done {
            Ok((_, (_, Ack::None))) => {}
            Ok((_, (_, Ack::Plain))) => self.acks.push((id, None)),
            Ok((_, (_, Ack::Mark(key)))) => {
                self.pending_marks.insert(key.clone());
                self.acks.push((id, Some(key)));
            }
            Err(error) => {
                tracing::error!(topic = %self.member.topic.name, partition = self.partition, %error,
                    "a delivery task failed outside the handler; the entry stays pending for the partition's next owner");
            }
        }
    }

    /// Sends a fenced acknowledgement of `acks`, as a task; it answers the number
    /// acknowledged, or -1 when fenced (the lease is gone).
    fn send_acks(&self, acks: &Acks) -> JoinHandle<redis::RedisResult<i64>> {
        let (max_keys, max_age) = self.member.topic.window();
        let exactly = matches!(self.member.topic.config.mode, DeliveryMode::ExactlyOnce(..));
        let mut call = evalsha(&ACK_SCRIPT, 3);
        call.arg(&self.lease)
            .arg(&self.stream)
            .arg(&self.done)
            .arg(&self.token)
            .arg(&self.member.group)
            .arg(if exactly { "1" } else { "0" })
            .arg(max_keys)
            .arg(max_age.to_string());
        for (id, mark) in acks {
            call.arg(id.to_string()).arg(mark.as_deref().unwrap_or(""));
        }
        let mut conn = self.member.topic.conn();
        tokio::spawn(async move {
            let reply = eval(&ACK_SCRIPT, &call, &mut conn).await?;
            Ok(as_int(&reply).unwrap_or(-1))
        })
    }

    /// Until when this worker may trust its lease: nine tenths of it after the latest renewal
    /// that began, the coordinator's or its own.
    fn trusted_until(&self) -> Instant {
        (*self.valid.borrow()).max(self.renewed_own)
    }

    /// When the worker renews its lease itself: the coordinator renews every third of the
    /// lease, so this only comes when it is late by a fifth of the lease or more.
    fn renew_due(&self) -> Instant {
        let lease = self.member.topic.shared.options.lease;
        (self.trusted_until() - lease * 3 / 10).max(self.renew_retry_at)
    }

    /// Renews the lease itself (the coordinator's renewal is late: a busy runtime, a slow
    /// server), giving up at the trust deadline: past it, another member may own the
    /// partition, whatever the answer.
    async fn renew_own(&mut self) {
        let lease = self.member.topic.shared.options.lease;
        let began = Instant::now();
        let mut conn = self.member.topic.conn();
        let mut invocation = crate::scripts::RENEW_SCRIPT.prepare_invoke();
        invocation
            .key(&self.lease)
            .arg(&self.token)
            .arg(lease.as_millis() as u64);
        let renewal = invocation.invoke_async::<i64>(&mut conn);
        match tokio::time::timeout_at(self.trusted_until(), renewal).await {
            Ok(Ok(1)) => self.renewed_own = began + lease * 9 / 10,
            _ => self.renew_retry_at = Instant::now() + lease / 20,
        }
    }

    /// Aborts, after taking in what a read in flight brings: the server has read it already
    /// (without acknowledgement under at-most-once), so dropping it would lose it unseen.
    async fn abort_after(mut self, fenced: bool, flight: &mut Flight<T>) -> WorkerExit<T> {
        if let Some(task) = flight.reading.take() {
            if let Ok(Ok(Read::Entries(entries))) = task.await {
                self.fetched(entries).await;
            }
        }
        // An acknowledgement in flight carries done markers: see it through.
        if let Some((task, sent)) = flight.acking.take() {
            if !matches!(task.await, Ok(Ok(acked)) if acked >= 0) {
                let newer = std::mem::replace(&mut self.acks, sent);
                self.acks.extend(newer);
            }
        }
        self.abort(fenced).await
    }

    async fn abort(mut self, fenced: bool) -> WorkerExit<T> {
        self.running.abort_all();
        let mut interrupted = Vec::new();
        while let Some(done) = self.running.join_next_with_id().await {
            match done {
                Err(error) if error.is_cancelled() => {
                    if let Some((id, event)) = self.running_events.remove(&error.id()) {
                        self.counters().in_flight.fetch_sub(1, Ordering::Relaxed);
                        self.member.busy.fetch_sub(1, Ordering::AcqRel);
                        interrupted.push((id, event));
                    }
                }
                done => self.finished(done),
            }
        }
        // Always try: the script acknowledges only if the lease is still this worker's, so
        // a fenced worker's try is refused, and a worker that merely could not renew in
        // time still writes its done markers.
        if !self.acks.is_empty() {
            let acks = std::mem::take(&mut self.acks);
            let _ = self.send_acks(&acks).await;
        }
        let mut exit = self.exit(fenced);
        exit.interrupted = interrupted;
        exit
    }

    fn exit(mut self, fenced: bool) -> WorkerExit<T> {
        let left: Vec<_> = self.queue.drain(..).collect();
        let counters = self.counters();
        counters.queued.fetch_sub(left.len(), Ordering::Relaxed);
        self.member.busy.fetch_sub(left.len(), Ordering::AcqRel);
        WorkerExit {
            partition: self.partition,
            left,
            interrupted: Vec::new(),
            fenced,
        }
    }
}

/// One event's delivery: the mode's attempts, retries and dead letter.
async fn deliver<T: Send + Sync + 'static>(
    member: &Member<T>,
    partition: u32,
    done: &str,
    event: Event<T>,
) -> Ack {
    let counters = &member.topic.counters[partition as usize];
    match &member.topic.config.mode {
        DeliveryMode::AtMostOnce => {
            let ok = handle(member, partition, 1, event).await.is_ok();
            add(
                if ok {
                    &counters.processed
                } else {
                    &counters.failed
                },
                1,
            );
            Ack::None
        }
        DeliveryMode::AtLeastOnce(retry) => until_done(member, partition, event, retry, None).await,
        DeliveryMode::ExactlyOnce(retry, _) => {
            let key = event.idempotency_key().as_str().to_owned();
            if marked_done(member, done, &key).await {
                add(&counters.deduplicated, 1);
                return Ack::Plain;
            }
            until_done(member, partition, event, retry, Some(key)).await
        }
        _ => {
            tracing::error!(topic = %member.topic.name, "unknown delivery mode: the event is left pending");
            std::future::pending().await
        }
    }
}

/// Whether the group marked `key` done (exactly-once). Retries until Redis answers: running
/// the handler without knowing could run it twice.
async fn marked_done<T>(member: &Member<T>, done: &str, key: &str) -> bool {
    let mut pause = Duration::from_millis(10);
    loop {
        let mut conn = member.topic.conn();
        let score: redis::RedisResult<Option<f64>> = redis::cmd("ZSCORE")
            .arg(done)
            .arg(key)
            .query_async(&mut conn)
            .await;
        match score {
            Ok(score) => return score.is_some(),
            Err(error) => {
                tracing::warn!(topic = %member.topic.name, %error, "done-marker check failed; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
        }
    }
}

async fn until_done<T: Send + Sync + 'static>(
    member: &Member<T>,
    partition: u32,
    event: Event<T>,
    retry: &RetryPolicy,
    mark: Option<String>,
) -> Ack {
    let counters = &member.topic.counters[partition as usize];
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        match handle(member, partition, attempts, event.clone()).await {
            Ok(()) => {
                add(&counters.processed, 1);
                return mark.map_or(Ack::Plain, Ack::Mark);
            }
            Err(error) => {
                add(&counters.failed, 1);
                if retry.should_retry(attempts, &error) {
                    add(&counters.retried, 1);
                    tokio::time::sleep(retry.backoff(attempts)).await;
                    continue;
                }
                add(&counters.dead_lettered, 1);
                dead_letter(member, partition, event, error, attempts).await;
                return Ack::Plain;
            }
        }
    }
}

/// Writes a dead letter to the topic's dead-letter stream (until Redis takes it), then
/// hands it to the subscriber's sink.
async fn dead_letter<T: Send + Sync + 'static>(
    member: &Member<T>,
    partition: u32,
    event: Event<T>,
    error: HandlerError,
    attempts: u32,
) {
    let topic = &member.topic;
    let mut fields = match wire::encode(&event, &*topic.codec) {
        Ok(fields) => fields,
        Err(codec) => {
            let mut fields = wire::Fields::default();
            fields.push(b"encode_error", codec.to_string().as_bytes());
            fields
        }
    };
    for (name, value) in [
        ("error", error.to_string()),
        ("attempts", attempts.to_string()),
        ("subscriber", member.name.to_string()),
        ("partition", partition.to_string()),
    ] {
        fields.push(name.as_bytes(), value.as_bytes());
    }
    write_dead_letter(member, &fields).await;
    let letter = DeadLetter::new(event, error, attempts, Arc::clone(&member.name));
    let sink = &member.dead_letters;
    if catch_unwind(AssertUnwindSafe(|| sink.dead_letter(letter))).is_err() {
        tracing::error!(
            subscriber = &*member.name,
            "dead-letter sink panicked; the dead letter is in the topic's dead-letter stream"
        );
    }
}

/// Dead-letters an entry that is not an event of this topic's payload type: it goes to the
/// topic's dead-letter stream (the subscriber's sink takes typed events only).
pub(crate) async fn dead_letter_raw<T>(
    member: &Member<T>,
    partition: u32,
    id: EntryId,
    undecodable: &Undecodable,
) {
    add(&member.topic.counters[partition as usize].dead_lettered, 1);
    tracing::error!(topic = %member.topic.name, partition, entry = %id, reason = %undecodable.reason,
        "an entry could not be decoded; it goes to the dead-letter stream");
    let mut fields = wire::Fields::default();
    for (name, value) in &undecodable.fields {
        fields.push(name, value);
    }
    for (name, value) in [
        ("error", format!("undecodable: {}", undecodable.reason)),
        ("attempts", "0".to_owned()),
        ("subscriber", member.name.to_string()),
        ("partition", partition.to_string()),
        ("entry", id.to_string()),
    ] {
        fields.push(name.as_bytes(), value.as_bytes());
    }
    write_dead_letter(member, &fields).await;
}

/// The dead-letter stream keeps its newest entries, up to this many.
const DEAD_LETTERS_KEPT: usize = 100_000;

async fn write_dead_letter<T>(member: &Member<T>, fields: &wire::Fields) {
    let stream = member.topic.keys.dead_letters();
    let mut pause = Duration::from_millis(10);
    loop {
        let mut conn = member.topic.conn();
        let mut cmd = redis::cmd("XADD");
        cmd.arg(&stream)
            .arg("MAXLEN")
            .arg("~")
            .arg(DEAD_LETTERS_KEPT)
            .arg("*")
            .arg(fields);
        let written: redis::RedisResult<String> = cmd.query_async(&mut conn).await;
        match written {
            Ok(_) => return,
            Err(error) => {
                tracing::warn!(topic = %member.topic.name, %error, "dead-letter stream write failed; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// One handler invocation, inside its `flowgate.handle` span (linked through the event's
/// `traceparent` to the publish, in whichever process it ran) and timed into the partition's
/// handle-latency histogram (feature `metrics`).
async fn handle<T: Send + Sync + 'static>(
    member: &Member<T>,
    partition: u32,
    attempt: u32,
    event: Event<T>,
) -> flowgate_core::HandlerResult {
    member.topic.counters[partition as usize]
        .invoke(&member.handler, &member.name, attempt, event)
        .await
}
