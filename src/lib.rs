#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]
#![doc(test(attr(deny(warnings))))]

pub use flowgate_core::*;

/// Direct dispatch by event type: inline [`emit`](emitter::Emitter::emit) and a bounded worker
/// pool behind [`emit_async`](emitter::Emitter::emit_async).
#[cfg(feature = "emitter")]
pub mod emitter {
    pub use flowgate_emitter::*;
}

#[cfg(feature = "emitter")]
pub use flowgate_emitter::Emitter;

/// Partitioned topics with ordering keys and at-most-once, at-least-once or exactly-once
/// delivery: [`Bus`](bus::Bus), [`Topic`](bus::Topic).
#[cfg(feature = "bus")]
pub mod bus {
    pub use flowgate_bus::*;
}

#[cfg(feature = "bus")]
pub use flowgate_bus::Bus;

/// The bus on Redis Streams: the same topics and delivery promises across processes and
/// hosts ([`RedisBus`](redis::RedisBus)). Behind the `redis` feature.
#[cfg(feature = "redis")]
pub mod redis {
    pub use flowgate_redis::*;
}

/// The in-memory event store: streams, categories, global positions, optimistic concurrency,
/// paged reads, subscriptions that never lag or skip, checkpoints and retention.
#[cfg(feature = "store")]
pub mod store {
    pub use flowgate_store::*;
}

/// Guides: the guarantees in prose and how to tune each part. Their examples run as doctests.
pub mod guide {
    /// The emitter: what `emit`, `emit_async`, unsubscribe and shutdown promise, and how to size
    /// workers, queues and backpressure.
    #[cfg(feature = "emitter")]
    #[doc = include_str!("../docs/emitter.md")]
    pub mod emitter {}

    /// The bus: the delivery contract of each mode, ordering, shutdown and consumer groups,
    /// how they are checked, and how to size partitions, concurrency and buffers.
    #[cfg(feature = "bus")]
    #[doc = include_str!("../docs/bus.md")]
    pub mod bus {}

    /// Observability: `stats()`, the `metrics` series and what they cost, the tracing spans and
    /// how a trace crosses topics and processes.
    #[doc = include_str!("../docs/observability.md")]
    pub mod observability {}

    /// The event store: what appends, reads and subscriptions promise, retention, and how to
    /// size subscription buffers.
    #[cfg(feature = "store")]
    #[doc = include_str!("../docs/store.md")]
    pub mod store {}
}
