//! Group commit of concurrent publishes to one partition: a publish queues its entry, and
//! whoever finds no flush running starts one, which sends everything queued in one script
//! call and goes on until the queue is empty. Publishes that arrive while a call is in flight
//! share the next one. A lone publish is sent at once, alone; under load one server-side
//! script runs per batch instead of per event.
//!
//! Invariant: entries are sent in the order their publishes queued them, and every queued
//! entry gets exactly one reply. The flush runs in a task of its own, so a caller that stops
//! waiting (its future dropped) never strands the others.

use std::sync::{Arc, Mutex};

use redis::aio::ConnectionManager;
use redis::Value;
use tokio::sync::oneshot;

use crate::scripts::{eval, evalsha, PUBLISH_SCRIPT};
use crate::wire::{as_text, Fields};

/// Entries per script call at most: bounds how long one call holds the server.
const MAX_BATCH: usize = 256;

/// What the script did with one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Appended; `dropped` deliveries were dropped to make room (DropOldest).
    Appended { dropped: u64 },
    /// Its idempotency key was accepted before (exactly-once).
    Duplicate,
    /// No room (Block, Reject).
    Full,
    /// Not appended, counted as dropped for `groups` groups (DropNewest).
    Dropped { groups: u64 },
}

pub(crate) type Reply = Result<Outcome, Arc<redis::RedisError>>;

/// An entry to append: its idempotency key ("" for none) and fields. Shared, so that a
/// publish waiting for room sends it again without copying it.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) idempotency: String,
    pub(crate) fields: Fields,
}

struct Request {
    entry: Arc<Entry>,
    reply: oneshot::Sender<Reply>,
}

#[derive(Default)]
struct Queue {
    requests: Vec<Request>,
    flushing: bool,
}

/// One partition's publish path.
pub(crate) struct Batcher {
    conn: ConnectionManager,
    stream: String,
    dedupe: String,
    counters: String,
    capacity: usize,
    policy: &'static str,
    window: (usize, u128),
    queue: Mutex<Queue>,
}

impl Batcher {
    pub(crate) fn new(
        conn: ConnectionManager,
        keys: &crate::keys::PartitionKeys,
        capacity: usize,
        policy: &'static str,
        window: (usize, u128),
    ) -> Self {
        Self {
            conn,
            stream: keys.stream(),
            dedupe: keys.dedupe(),
            counters: keys.counters(),
            capacity,
            policy,
            window,
            queue: Mutex::new(Queue::default()),
        }
    }

    /// Appends one entry (with `idempotency`, or "" for none); resolves once Redis answered.
    pub(crate) async fn publish(self: &Arc<Self>, entry: Arc<Entry>) -> Reply {
        let (reply, answer) = oneshot::channel();
        let start = {
            let mut queue = crate::lock(&self.queue);
            queue.requests.push(Request { entry, reply });
            !std::mem::replace(&mut queue.flushing, true)
        };
        if start {
            let batcher = Arc::clone(self);
            tokio::spawn(async move { batcher.flush().await });
        }
        answer.await.unwrap_or_else(|_| {
            Err(Arc::new(redis::RedisError::from((
                redis::ErrorKind::Io,
                "the publish batch was dropped (runtime shutting down)",
            ))))
        })
    }

    async fn flush(&self) {
        let mut conn = self.conn.clone();
        loop {
            let batch: Vec<Request> = {
                let mut queue = crate::lock(&self.queue);
                if queue.requests.is_empty() {
                    queue.flushing = false;
                    return;
                }
                let n = queue.requests.len().min(MAX_BATCH);
                queue.requests.drain(..n).collect()
            };
            let mut call = evalsha(&PUBLISH_SCRIPT, 3);
            call.arg(&self.stream)
                .arg(&self.dedupe)
                .arg(&self.counters)
                .arg(self.capacity)
                .arg(self.policy)
                .arg(self.window.0)
                .arg(self.window.1.to_string());
            for request in &batch {
                call.arg(&request.entry.idempotency)
                    .arg(request.entry.fields.len())
                    .arg(&request.entry.fields);
            }
            let replies = eval(&PUBLISH_SCRIPT, &call, &mut conn).await;
            match replies.map(|reply| outcomes(&reply, batch.len())) {
                Ok(Some(outcomes)) => {
                    for (request, outcome) in batch.into_iter().zip(outcomes) {
                        let _ = request.reply.send(Ok(outcome));
                    }
                }
                Ok(None) => {
                    let error = Arc::new(redis::RedisError::from((
                        redis::ErrorKind::Parse,
                        "unexpected reply from the publish script",
                    )));
                    for request in batch {
                        let _ = request.reply.send(Err(Arc::clone(&error)));
                    }
                }
                Err(error) => {
                    let error = Arc::new(error);
                    for request in batch {
                        let _ = request.reply.send(Err(Arc::clone(&error)));
                    }
                }
            }
        }
    }
}

/// The outcomes of `n` entries from the script's `{codes, drops}`.
fn outcomes(reply: &Value, n: usize) -> Option<Vec<Outcome>> {
    let Value::Array(parts) = reply else {
        return None;
    };
    let codes = parts.first().and_then(as_text)?;
    if codes.len() != n {
        return None;
    }
    let mut dropped = vec![0u64; n];
    for item in parts
        .get(1)
        .and_then(as_text)
        .unwrap_or_default()
        .split(',')
    {
        if let Some((entry, count)) = item.split_once(':') {
            let (entry, count): (usize, u64) = (entry.parse().ok()?, count.parse().ok()?);
            *dropped.get_mut(entry.checked_sub(1)?)? = count;
        }
    }
    codes
        .bytes()
        .zip(dropped)
        .map(|(code, dropped)| match code {
            b'o' => Some(Outcome::Appended { dropped }),
            b'd' => Some(Outcome::Duplicate),
            b'f' => Some(Outcome::Full),
            b'x' => Some(Outcome::Dropped { groups: dropped }),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(codes: &str, drops: &str) -> Value {
        Value::Array(vec![
            Value::BulkString(codes.as_bytes().to_vec()),
            Value::BulkString(drops.as_bytes().to_vec()),
        ])
    }

    #[test]
    fn each_entry_gets_its_own_outcome() {
        let got = outcomes(&reply("odfxo", "4:2,5:1"), 5).unwrap();
        assert_eq!(
            got,
            [
                Outcome::Appended { dropped: 0 },
                Outcome::Duplicate,
                Outcome::Full,
                Outcome::Dropped { groups: 2 },
                Outcome::Appended { dropped: 1 },
            ]
        );
    }

    #[test]
    fn a_reply_that_does_not_fit_the_batch_is_refused() {
        assert!(outcomes(&reply("oo", ""), 3).is_none(), "too few codes");
        assert!(outcomes(&reply("o?", ""), 2).is_none(), "unknown code");
        assert!(
            outcomes(&reply("oo", "3:1"), 2).is_none(),
            "a drop for no entry"
        );
        assert!(outcomes(&Value::Nil, 0).is_none());
    }
}
