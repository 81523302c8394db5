//! flowgate's bus on Redis Streams: the same topics, partitions, consumer groups and
//! delivery promises as the in-process bus, shared by every process connected to one
//! server.
//!
//! Code written against the backend-neutral API ([`Backend`](flowgate_bus::Backend),
//! [`BackendTopic`](flowgate_bus::BackendTopic)) moves here by changing the line that builds
//! the bus. Payloads cross the wire through a [`Codec`] ([`Json`] by default, so a payload
//! type needs `serde`'s `Serialize` and `Deserialize`; a compact binary `Postcard` codec
//! comes with the `postcard` feature, `redis-postcard` on the `flowgate` facade).
//!
//! ```
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use std::sync::Arc;
//! use std::time::Duration;
//! use flowgate::bus::{Backend, BackendTopic, SubscribeRequest, TopicSettings};
//! use flowgate::redis::RedisBus;
//! use flowgate::Event;
//! # let server = flowgate_testkit::redis_server::RedisServer::start()?;
//! # let url = server.url();
//!
//! let bus = RedisBus::connect(&url).await?; // e.g. "redis://127.0.0.1:6379/"
//! let orders = bus.create_topic("orders", TopicSettings::default().partitions(4)).await?;
//! let billed = Arc::new(AtomicU64::new(0));
//! let total = Arc::clone(&billed);
//! let request = SubscribeRequest::new("billing-1", move |order: Event<u64>| {
//!     total.fetch_add(*order.payload(), Ordering::SeqCst);
//!     async { Ok(()) }
//! });
//! let _billing = orders.subscribe(request.group("billing")).await?;
//! for (customer, amount) in [("c-1", 30), ("c-2", 12), ("c-1", 5)] {
//!     orders.publish(Event::new("order.placed", amount)?.with_key(customer)).await?;
//! }
//! let report = bus.shutdown(Duration::from_secs(10)).await; // works off what is owed
//! assert_eq!(report.not_delivered(), 0);
//! assert_eq!(billed.load(Ordering::SeqCst), 47);
//! # Ok(())
//! # }
//! ```
//!
//! # Layout in Redis
//!
//! Every key starts with `fg:` and a hash tag, so that in Redis Cluster the keys that one
//! script touches share a slot:
//!
//! | key | what |
//! |---|---|
//! | `fg:{<ns>/<topic>/<p>}:s` | partition `p`'s stream: one entry per event |
//! | `fg:{<ns>/<topic>/<p>}:dedupe` | exactly-once: idempotency keys accepted (sorted by time) |
//! | `fg:{<ns>/<topic>/<p>}:lease:<group>` | which member of `group` owns `p`, and its epoch |
//! | `fg:{<ns>/<topic>/<p>}:done:<group>` | exactly-once: keys `group` handled `Ok` |
//! | `fg:{<ns>/<topic>/<p>}:c` | lease epochs, dedupe evictions |
//! | `fg:{<ns>/<topic>}:meta` | the partition count and mode every process must agree on |
//! | `fg:{<ns>/<topic>}:members:<group>` | live members and their heartbeat deadlines |
//! | `fg:{<ns>/<topic>}:dlq` | dead letters: the event, `error`, `attempts`, `subscriber` |
//!
//! A consumer group named `g` is the Redis group `g:g` on every partition stream; a plain
//! subscriber gets a group of its own (`p:<name>:<id>`), which ends with it. The partition of
//! an event is `stable_hash(ordering key) mod P`, the in-process bus's function: an
//! in-process publisher and a Redis one agree. An unkeyed event goes by its idempotency
//! key's XXH3-128 fingerprint (`Event::idempotency_fingerprint`), so a republished copy lands
//! in the first one's partition.
//!
//! # What each promise means across processes
//!
//! A publish is accepted when it returns `Ok`: the entry is in Redis. A publish that returns
//! an error promised nothing; [`PublishError::Unavailable`](flowgate_bus::PublishError)
//! (Redis unreachable) is retryable.
//!
//! - **At-most-once**: entries are read without acknowledgement (`NOACK`): an event fetched by
//!   a process that dies before running it is not run. Failures are counted, not retried.
//! - **At-least-once**: an entry is acknowledged (`XACK`) only after its handler returned `Ok`
//!   or it was dead-lettered. A process killed at any point leaves its entries pending in
//!   Redis; the partition's next owner claims them (`XAUTOCLAIM`) once the dead member's
//!   lease expired, and runs them before anything newer. The handler may therefore see an
//!   event again after a crash: that is what at-least-once allows.
//! - **Exactly-once**: at-least-once, plus: the publish checks the idempotency key against
//!   the partition's window and appends in one server-side script, so a duplicate publish is
//!   acknowledged and not appended; and the acknowledgement writes the group's done marker
//!   for the key in the same script, so a group whose handler returned `Ok` for a key never
//!   runs it again within the window.
//!
//!   **The one window no broker closes alone**: a process that dies after the handler's
//!   side effect and before the marker was written runs the handler again (on the next
//!   owner). Make the side effect idempotent with the key the handler gets,
//!   [`event.idempotency_key()`](flowgate_core::Event::idempotency_key): store it in the same
//!   transaction as the effect, and skip an effect whose key is stored.
//!
//!   An idempotency key is deduplicated within its partition, that is, among events of the
//!   same ordering key (or unkeyed events): a key reused under another ordering key is
//!   another key.
//!
//! Order: events of one ordering key are handled one at a time, in publish order, by one
//! member at a time, retries included. A partition is owned by one member of a group at a
//! time through a lease in Redis (default 10 s, [`RedisOptions::lease`]); the owner renews it
//! every third of the lease, also while a handler runs long, so live work is never taken
//! over. Reads and acknowledgements go through scripts that check the lease's owner and
//! epoch: a member that lost its partition can neither fetch nor acknowledge, and it stops
//! its deliveries by itself when it has not renewed for nine tenths of the lease, before any
//! other member may take the partition.
//!
//! Members share a group's partitions evenly (each takes at most `ceil(P / members)`); a
//! member that joins gets partitions as the others give theirs up, and a member gives a
//! partition up only after finishing every event of it that it had fetched. A member whose
//! heartbeat is late counts as live for one more lease before it is forgotten, so that a slow
//! member is never taken for gone by the last one leaving (which would end the group).
//!
//! # Backpressure and memory
//!
//! A partition's capacity bounds the entries some group has not consumed yet: when the
//! stream is full, the publish script first deletes the entries every group has consumed
//! (never one a group has not acknowledged), then applies the topic's policy: `Reject`
//! returns [`PublishError::Full`](flowgate_bus::PublishError), `Block` waits (polling with
//! backoff, 1 to 20 ms) up to its limit, and the at-most-once drop policies drop and count.
//! A stream without groups keeps nothing. A consumer group keeps its events in Redis until
//! it consumes them, even with no member running (that is what makes it durable), so a group
//! nobody runs any more holds its partitions' room: end it with `unsubscribe`. A plain
//! subscriber's group is deleted by the topic's other subscribers once its process has
//! stopped beating for three leases. Each partition worker holds at most
//! `min(capacity, 2 × read_batch)` fetched events (or `concurrency`, if larger). The
//! dead-letter stream keeps its newest 100,000 entries.
//!
//! # Throughput
//!
//! Publishes to one partition that overlap in time share one script call (group commit): a
//! lone publish goes at once, a burst goes in batches of up to 256. A worker reads
//! [`RedisOptions::read_batch`] entries per request while its handlers run, and acknowledges
//! in batches at most 2 ms late (so a crash may redeliver up to that much more under
//! at-least-once; exactly-once keeps the keys whose markers are on their way and skips their
//! copies). Figures beside the raw client are in `docs/performance.md`.
//!
//! # Leaving, stopping, faults
//!
//! - [`RedisSubscription::unsubscribe`] leaves. The last live member of a group (in any
//!   process), or a plain subscriber, ends the group: the events it was still owed are
//!   returned, and the group is deleted from Redis.
//! - [`RedisSubscription::detach`] stops this process's member and leaves the group's work in
//!   Redis for its other members or the next one to join (a deploy).
//! - [`RedisBus::shutdown`] stops publishing, works off what this process's groups owe until
//!   the deadline, then ends plain subscribers and detaches group members, reporting what was
//!   not delivered.
//! - When Redis is unreachable, publishes fail typed and retryable (each after the client's
//!   reconnect attempts, about half a second); workers retry their reads and
//!   acknowledgements with backoff and resume from the group's position in Redis, which never
//!   passes an unacknowledged entry (it stays pending until acknowledged). A read whose reply
//!   was lost is read again from the consumer's pending entries. Under at-most-once, which
//!   reads without acknowledgement, the events of such a read are lost unseen: that is the
//!   promise's price.
//! - An event's entry holds at most about 2,000 metadata entries (the publish script's
//!   argument limit); a publish with more is refused, alone.
//!
//! # Stats
//!
//! [`RedisTopic::stats`] counts what this process published and delivered; `depth` adds
//! what this process's groups have not read yet in Redis, and `subscribers` counts the
//! topic's groups in Redis (every process's).
#![forbid(unsafe_code)]

mod batch;
mod bus;
mod codec;
mod keys;
mod member;
mod scripts;
mod topic;
mod wire;
mod worker;

pub use bus::{RedisBus, RedisBusBuilder, RedisOptions};
#[cfg(feature = "postcard")]
pub use codec::Postcard;
pub use codec::{Codec, CodecError, Json};
pub use topic::{RedisSubscription, RedisTopic};

/// Locks `mutex`, also after a panic elsewhere poisoned it: every structure behind our
/// mutexes stays valid between statements.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
