//! The handle that subscribing returns.

use std::fmt;
use std::sync::Weak;

/// Identifies one subscription; unique within its emitter.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use flowgate::{Emitter, Event};
/// let emitter = Emitter::<()>::builder().build()?;
/// let sub = emitter.on("a", |_: Event<()>| async { Ok(()) })?;
/// assert!(sub.id().to_string().starts_with("subscription-"));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubscriptionId(pub(crate) u64);

impl fmt::Display for SubscriptionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "subscription-{}", self.0)
    }
}

/// What a subscription needs from its registry, without naming the event type.
pub(crate) trait Unsubscribe: Send + Sync {
    fn unsubscribe(&self, id: u64) -> bool;
}

/// A live subscription. Dropping it unsubscribes (use [`detach`](Self::detach) to keep the
/// handler for the emitter's lifetime).
///
/// When [`unsubscribe`](Self::unsubscribe) (or the drop) returns, no invocation of the handler
/// is starting or will start; invocations that had already started may still be running.
/// (Called from inside a handler while it starts, it does not wait for invocations starting
/// on other threads, which could be waiting on this one; it then covers this thread only.)
/// Unsubscribing one of two identical subscriptions leaves the other.
///
/// The wait covers the synchronous part of a start (the handler's call and its first poll,
/// up to its first `.await` that waits) of inline emits already under way on other threads,
/// to *any* subscription of this emitter: an emit to a single handler starts it without
/// per-subscription bookkeeping, so the wait cannot tell which one it is starting. Starts are
/// short, so this is brief; but a handler whose synchronous part blocks holds up every
/// unsubscribe (and every drop of a `Subscription`) of this emitter until it returns, and
/// one that blocks on the unsubscribing thread (a `std::sync::Mutex` that thread holds, a
/// `OnceLock` it is initializing, a channel it should send on) deadlocks with it. Keep the
/// part of a handler before its first `.await` free of blocking waits.
///
/// ```
/// use flowgate::{Emitter, Event};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let emitter = Emitter::<u32>::builder().build()?;
/// let a = emitter.on("tick", |_: Event<u32>| async { Ok(()) })?;
/// let b = emitter.on("tick", |_: Event<u32>| async { Ok(()) })?;
/// assert_ne!(a.id(), b.id());
/// assert!(a.unsubscribe());
/// assert_eq!(emitter.emit(Event::new("tick", 1)?).await?.handlers, 1);
/// b.detach();
/// # Ok(())
/// # }
/// ```
#[must_use = "dropping a Subscription unsubscribes it at once; call .detach() to keep it"]
pub struct Subscription {
    id: SubscriptionId,
    registry: Option<Weak<dyn Unsubscribe>>,
}

impl Subscription {
    pub(crate) fn new(id: u64, registry: Weak<dyn Unsubscribe>) -> Self {
        Self {
            id: SubscriptionId(id),
            registry: Some(registry),
        }
    }

    /// This subscription's id.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use flowgate::{Emitter, Event};
    /// let emitter = Emitter::<()>::builder().build()?;
    /// let a = emitter.on("a", |_: Event<()>| async { Ok(()) })?;
    /// let b = emitter.on("a", |_: Event<()>| async { Ok(()) })?;
    /// assert!(a.id() < b.id());
    /// # Ok(())
    /// # }
    /// ```
    pub fn id(&self) -> SubscriptionId {
        self.id
    }

    /// Removes the handler. Returns `false` if the emitter is already gone.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use flowgate::{Emitter, Event};
    /// let emitter = Emitter::<()>::builder().build()?;
    /// let sub = emitter.on("a", |_: Event<()>| async { Ok(()) })?;
    /// assert!(sub.unsubscribe());
    /// assert_eq!(emitter.stats().subscriptions, 0);
    /// # Ok(())
    /// # }
    /// ```
    pub fn unsubscribe(mut self) -> bool {
        self.remove()
    }

    /// Keeps the handler subscribed for as long as the emitter lives.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use flowgate::{Emitter, Event};
    /// let emitter = Emitter::<()>::builder().build()?;
    /// emitter.on("a", |_: Event<()>| async { Ok(()) })?.detach();
    /// assert_eq!(emitter.emit(Event::new("a", ())?).await?.handlers, 1);
    /// # Ok(())
    /// # }
    /// ```
    pub fn detach(mut self) {
        self.registry = None;
    }

    fn remove(&mut self) -> bool {
        match self.registry.take().and_then(|weak| weak.upgrade()) {
            Some(registry) => registry.unsubscribe(self.id.0),
            None => false,
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.remove();
    }
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("id", &self.id)
            .field("detached", &self.registry.is_none())
            .finish()
    }
}
