#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

pub use flowgate_core::*;

/// Direct dispatch by event type: inline [`emit`](emitter::Emitter::emit) and a bounded worker
/// pool behind [`emit_async`](emitter::Emitter::emit_async).
#[cfg(feature = "emitter")]
pub mod emitter {
    pub use flowgate_emitter::*;
}

#[cfg(feature = "emitter")]
pub use flowgate_emitter::Emitter;
