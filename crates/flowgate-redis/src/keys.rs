//! Key names. Every key of one partition carries the hash tag `{<namespace>/<topic>/<p>}`,
//! so that the partition's stream and its bookkeeping keys (dedupe window, counters, leases,
//! done markers) live in one Redis Cluster slot and one script may touch them together. The
//! topic's own keys (settings, members, dead letters) carry `{<namespace>/<topic>}`.

/// The keys of one topic.
#[derive(Debug, Clone)]
pub(crate) struct TopicKeys {
    tag: String,
}

impl TopicKeys {
    pub(crate) fn new(namespace: &str, topic: &str) -> Self {
        Self {
            tag: format!("{namespace}/{topic}"),
        }
    }

    /// The topic's settings (a hash), which every process that opens the topic compares.
    pub(crate) fn meta(&self) -> String {
        format!("fg:{{{}}}:meta", self.tag)
    }

    /// The live members of a group: a sorted set of member id -> lease deadline (ms).
    pub(crate) fn members(&self, group: &str) -> String {
        format!("fg:{{{}}}:members:{group}", self.tag)
    }

    /// The plain subscribers' groups: a sorted set of group -> heartbeat deadline (ms). A
    /// group whose subscriber stopped beating long ago (its process died) is deleted, so
    /// that the entries it will never read stop holding the partitions' room.
    pub(crate) fn plain_groups(&self) -> String {
        format!("fg:{{{}}}:plain", self.tag)
    }

    /// The topic's dead-letter stream.
    pub(crate) fn dead_letters(&self) -> String {
        format!("fg:{{{}}}:dlq", self.tag)
    }

    pub(crate) fn partition(&self, partition: u32) -> PartitionKeys {
        PartitionKeys {
            prefix: format!("fg:{{{}/{partition}}}", self.tag),
        }
    }
}

/// The keys of one partition (one slot).
#[derive(Debug, Clone)]
pub(crate) struct PartitionKeys {
    prefix: String,
}

impl PartitionKeys {
    /// The partition's stream.
    pub(crate) fn stream(&self) -> String {
        format!("{}:s", self.prefix)
    }

    /// Exactly-once publish dedupe window: idempotency key -> accepted at (ms).
    pub(crate) fn dedupe(&self) -> String {
        format!("{}:dedupe", self.prefix)
    }

    /// Counters kept in Redis (a hash): lease epochs, dedupe evictions.
    pub(crate) fn counters(&self) -> String {
        format!("{}:c", self.prefix)
    }

    /// Which member of `group` owns the partition: "<member>/<epoch>", expiring.
    pub(crate) fn lease(&self, group: &str) -> String {
        format!("{}:lease:{group}", self.prefix)
    }

    /// Exactly-once done markers of `group`: idempotency key -> handled at (ms).
    pub(crate) fn done(&self, group: &str) -> String {
        format!("{}:done:{group}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Redis Cluster hashes only the part between the first `{` and the next `}`.
    fn hash_tag(key: &str) -> &str {
        let open = key.find('{').expect("a hash tag");
        let close = key[open..].find('}').expect("closed") + open;
        &key[open + 1..close]
    }

    #[test]
    fn a_partitions_keys_share_one_slot_and_partitions_do_not() {
        let topic = TopicKeys::new("app", "orders");
        let p1 = topic.partition(1);
        let tags = [
            p1.stream(),
            p1.dedupe(),
            p1.counters(),
            p1.lease("g:billing"),
            p1.done("g:billing"),
        ];
        for key in &tags {
            assert_eq!(hash_tag(key), "app/orders/1", "{key}");
        }
        assert_eq!(hash_tag(&topic.partition(2).stream()), "app/orders/2");
        assert_eq!(hash_tag(&topic.members("g:billing")), "app/orders");
        assert_ne!(p1.stream(), topic.partition(2).stream());
    }
}
