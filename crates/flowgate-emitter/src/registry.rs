//! The subscriber registry: an immutable snapshot swapped on every subscribe and unsubscribe.
//!
//! Invariants:
//!
//! 1. **No handler is skipped.** A subscription that `subscribe` returned before an emit began
//!    is in the snapshot that emit loads, so it is invoked.
//! 2. **No handler starts after its unsubscribe returned.** Each entry has a start [`Gate`].
//!    An invocation enters the gate, calls the handler and polls its future once, then leaves.
//!    `unsubscribe` closes the gate and waits until no invocation is inside, so when it returns
//!    every invocation has either started (and may still be running) or will never start.
//!    Exception: `unsubscribe` called from inside a handler's start (a handler unsubscribing
//!    itself or another) does not wait, since the invocation it would wait for may be waiting
//!    on this thread; then only invocations on this thread are covered.
//!
//! Public only for the loom models in `tests/`; not part of the API.
//!
//! Readers (every emit) never lock: they load the current snapshot. Writers (subscribe,
//! unsubscribe) are serialized by one mutex and build a new snapshot; they are rare.

use std::cell::Cell;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use flowgate_core::sync::atomic::{AtomicU64, Ordering};
use flowgate_core::sync::{spin_yield, thread_local, Mutex};
use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore};

use flowgate_core::{
    BoxFuture, BoxHandler, Event, EventType, HandlerResult, InlineCall, Pattern, PrehashedState,
};
use pin_project_lite::pin_project;

use crate::gate::{Enter, Gate};

/// One subscription.
pub struct Entry<T> {
    /// Identifies the subscription (returned to the user as [`SubscriptionId`](crate::SubscriptionId)).
    pub id: u64,
    /// The subscriber's name in reports and dead letters.
    pub name: Arc<str>,
    pub pattern: Pattern,
    pub handler: BoxHandler<T>,
    /// The subscription's concurrency cap: a permit is taken before each start.
    pub limit: Option<Arc<Semaphore>>,
    /// Entered by every invocation while it starts; closed by `unsubscribe`.
    gate: Gate,
}

impl<T> Entry<T> {
    pub fn new(
        id: u64,
        name: Arc<str>,
        pattern: Pattern,
        handler: BoxHandler<T>,
        limit: Option<Arc<Semaphore>>,
    ) -> Self {
        Self {
            id,
            name,
            pattern,
            handler,
            limit,
            gate: Gate::new(),
        }
    }
}

/// What one emit sees. Never changed after it is published.
pub struct Snapshot<T> {
    /// Exact-name subscriptions by name, each list in subscription order. Keyed by the
    /// prehashed `EventType`, so a lookup hashes nothing.
    exact: HashMap<EventType, Vec<Arc<Entry<T>>>, PrehashedState>,
    /// Wildcard subscriptions in subscription order.
    patterns: Vec<Arc<Entry<T>>>,
    len: usize,
}

impl<T> Snapshot<T> {
    fn empty() -> Self {
        Self {
            exact: HashMap::default(),
            patterns: Vec::new(),
            len: 0,
        }
    }

    fn from_entries(entries: impl Iterator<Item = Arc<Entry<T>>>) -> Self {
        let mut snapshot = Self::empty();
        for entry in entries {
            snapshot.len += 1;
            // An exact pattern is a valid name; were it ever not, the pattern list still
            // routes it correctly, only more slowly.
            match entry.pattern.as_exact().map(EventType::new) {
                Some(Ok(name)) => snapshot.exact.entry(name).or_default().push(entry),
                _ => snapshot.patterns.push(entry),
            }
        }
        snapshot
    }

    fn entries(&self) -> impl Iterator<Item = &Arc<Entry<T>>> {
        let mut all: Vec<_> = self
            .exact
            .values()
            .flatten()
            .chain(&self.patterns)
            .collect();
        all.sort_by_key(|e| e.id);
        all.into_iter()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no subscription is registered.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether any subscription uses a wildcard pattern.
    #[inline]
    pub fn has_patterns(&self) -> bool {
        !self.patterns.is_empty()
    }

    /// The exact-name subscriptions for `kind`, in subscription order (all of the matches when
    /// [`has_patterns`](Self::has_patterns) is false).
    #[inline]
    pub fn exact(&self, kind: &EventType) -> &[Arc<Entry<T>>] {
        self.exact.get(kind).map_or(&[][..], Vec::as_slice)
    }

    /// The entries whose pattern matches `kind`, in subscription order.
    pub fn matching<'a>(&'a self, kind: &'a EventType) -> Matching<'a, T> {
        let exact = self.exact(kind);
        Matching {
            kind: kind.as_str(),
            exact,
            patterns: &self.patterns,
        }
    }
}

/// Iterator over matching entries: a merge of the exact list and the matching patterns by
/// subscription id, so handlers run in the order they subscribed. Allocates nothing.
pub struct Matching<'a, T> {
    kind: &'a str,
    exact: &'a [Arc<Entry<T>>],
    patterns: &'a [Arc<Entry<T>>],
}

impl<'a, T> Iterator for Matching<'a, T> {
    type Item = &'a Arc<Entry<T>>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        // Skip patterns that do not match, so the head of `patterns` is a candidate.
        while let Some((first, rest)) = self.patterns.split_first() {
            if first.pattern.matches(self.kind) {
                break;
            }
            self.patterns = rest;
        }
        let take_exact = match (self.exact.first(), self.patterns.first()) {
            (None, None) => return None,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(e), Some(p)) => e.id < p.id,
        };
        let list = if take_exact {
            &mut self.exact
        } else {
            &mut self.patterns
        };
        let (first, rest) = list.split_first()?;
        *list = rest;
        Some(first)
    }
}

/// The cell holding the current snapshot: lock-free `ArcSwap` normally, a mutex under loom
/// (arc-swap is not loom-aware; the protocol modelled is the gate and the publish order).
struct SnapshotCell<T> {
    #[cfg(not(loom))]
    inner: arc_swap::ArcSwap<Snapshot<T>>,
    #[cfg(loom)]
    inner: Mutex<Arc<Snapshot<T>>>,
}

impl<T> SnapshotCell<T> {
    fn new(snapshot: Snapshot<T>) -> Self {
        Self {
            #[cfg(not(loom))]
            inner: arc_swap::ArcSwap::from_pointee(snapshot),
            #[cfg(loom)]
            inner: Mutex::new(Arc::new(snapshot)),
        }
    }

    /// A short-lived reference to the current snapshot: no reference-count traffic on the
    /// fast path.
    #[inline]
    fn peek(&self) -> SnapshotRef<T> {
        #[cfg(not(loom))]
        return self.inner.load();
        #[cfg(loom)]
        return Arc::clone(&self.inner.lock());
    }

    #[inline]
    fn load(&self) -> Arc<Snapshot<T>> {
        #[cfg(not(loom))]
        return self.inner.load_full();
        #[cfg(loom)]
        return Arc::clone(&self.inner.lock());
    }

    fn store(&self, snapshot: Snapshot<T>) {
        #[cfg(not(loom))]
        self.inner.store(Arc::new(snapshot));
        #[cfg(loom)]
        {
            *self.inner.lock() = Arc::new(snapshot);
        }
    }
}

/// What [`Registry::peek`] returns: derefs to `Arc<Snapshot<T>>`.
#[cfg(not(loom))]
pub type SnapshotRef<T> = arc_swap::Guard<Arc<Snapshot<T>>>;
/// What [`Registry::peek`] returns: derefs to `Arc<Snapshot<T>>`.
#[cfg(loom)]
pub type SnapshotRef<T> = Arc<Snapshot<T>>;

/// The registry; see the [module docs](self).
pub struct Registry<T> {
    current: SnapshotCell<T>,
    /// Serializes writers so no subscribe or unsubscribe is lost between load and store.
    writer: Mutex<()>,
    /// Source of subscription ids; ids grow with subscription order.
    next_id: AtomicU64,
    /// Bumped (Release) after every new snapshot is stored; workers compare it (Acquire) to
    /// decide whether their cached snapshot is stale.
    version: AtomicU64,
}

impl<T> Default for Registry<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Registry<T> {
    pub fn new() -> Self {
        Self {
            current: SnapshotCell::new(Snapshot::empty()),
            writer: Mutex::new(()),
            next_id: AtomicU64::new(1),
            version: AtomicU64::new(1),
        }
    }

    /// The current snapshot, owned (for work that outlives the caller, such as a queued job).
    #[inline]
    pub fn load(&self) -> Arc<Snapshot<T>> {
        self.current.load()
    }

    /// Changes whenever a subscription is added or removed (never 0).
    #[inline]
    pub fn version(&self) -> u64 {
        // Acquire: pairs with the Release bump after each store, so a reader that sees a new
        // version loads a snapshot at least that new.
        self.version.load(Ordering::Acquire)
    }

    /// The current snapshot, borrowed for the duration of one emit.
    #[inline]
    pub fn peek(&self) -> SnapshotRef<T> {
        self.current.peek()
    }

    /// Adds a subscription; it is visible to every emit that begins after this returns.
    pub fn subscribe(
        &self,
        name: Option<Arc<str>>,
        pattern: Pattern,
        handler: BoxHandler<T>,
        limit: Option<Arc<Semaphore>>,
    ) -> u64 {
        let _writer = self.writer.lock();
        // Relaxed: ids only need to be unique and increasing, which the writer lock orders.
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let name = name.unwrap_or_else(|| Arc::from(format!("subscription-{id}")));
        let entry = Arc::new(Entry::new(id, name, pattern, handler, limit));
        let current = self.current.load();
        let next = Snapshot::from_entries(current.entries().cloned().chain([entry]));
        self.current.store(next);
        self.version.fetch_add(1, Ordering::Release);
        id
    }

    /// Removes subscription `id`. Returns `false` if it was not subscribed. When this returns,
    /// no invocation of it is starting or will start (see the module docs).
    pub fn unsubscribe(&self, id: u64) -> bool {
        let removed = {
            let _writer = self.writer.lock();
            let current = self.current.load();
            let Some(removed) = current.entries().find(|e| e.id == id).cloned() else {
                return false;
            };
            let next = Snapshot::from_entries(current.entries().filter(|e| e.id != id).cloned());
            self.current.store(next);
            self.version.fetch_add(1, Ordering::Release);
            removed
        };
        removed.gate.close();
        if let Some(limit) = &removed.limit {
            // Invocations waiting for a permit give up now (they have not started).
            limit.close();
        }
        // Called from inside a handler's start (this thread is inside some start gate), do not
        // wait: the invocation being waited for could itself be waiting on this thread (a lock
        // the handler holds, another gate it is inside), and both would hang.
        if !held_by_this_thread_at_all() {
            while removed.gate.inside() > 0 {
                spin_yield();
            }
        }
        true
    }
}

impl<T> fmt::Debug for Entry<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("pattern", &self.pattern)
            .field("gate", &self.gate)
            .finish_non_exhaustive()
    }
}

impl<T> fmt::Debug for Snapshot<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.entries()).finish()
    }
}

impl<T> fmt::Debug for Matching<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Matching")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl<T> fmt::Debug for Registry<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("current", &self.load())
            .finish_non_exhaustive()
    }
}

impl<T> fmt::Debug for Deliver<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Deliver")
            .field("entry", &self.entry.id)
            .field("running", &self.call.is_running())
            .finish_non_exhaustive()
    }
}

#[cfg(not(loom))]
thread_local! {
    /// How many start gates this thread is inside right now. `unsubscribe` does not wait when
    /// it is called from inside one (see the module docs); no destructor, so access is cheap.
    static DEPTH: Cell<usize> = const { Cell::new(0) };
}

// loom's `thread_local!` takes no `const` initializer.
#[cfg(loom)]
thread_local! {
    static DEPTH: Cell<usize> = Cell::new(0);
}

fn held_by_this_thread_at_all() -> bool {
    DEPTH.with(|depth| depth.get() > 0)
}

/// Inside a start gate for the current scope; leaving the scope (also by unwinding) leaves it.
struct Inside<'a> {
    gate: &'a Gate,
}

impl<'a> Inside<'a> {
    fn enter(gate: &'a Gate) -> Option<Self> {
        if gate.try_enter() != Enter::Entered {
            return None;
        }
        DEPTH.with(|depth| depth.set(depth.get() + 1));
        Some(Self { gate })
    }
}

impl Drop for Inside<'_> {
    fn drop(&mut self) {
        DEPTH.with(|depth| depth.set(depth.get().saturating_sub(1)));
        self.gate.leave();
    }
}

pin_project! {
    /// One invocation of one entry. Resolves to `None` when the subscription was removed
    /// before the invocation could start, else to the handler's outcome (panics caught).
    ///
    /// The handler's future lives inside this value ([`InlineCall`]) when it is small enough,
    /// so an invocation allocates nothing for it.
    pub struct Deliver<'a, T> {
        entry: &'a Entry<T>,
        event: Option<Event<T>>,
        // Waiting for one of the entry's concurrency permits (boxed: only when contended).
        acquiring: Option<BoxFuture<'static, Result<OwnedSemaphorePermit, AcquireError>>>,
        // Held from before the start until the invocation ends, so a cancelled or panicking
        // invocation gives it back.
        permit: Option<OwnedSemaphorePermit>,
        #[pin]
        call: InlineCall,
    }
}

impl<'a, T> Deliver<'a, T> {
    pub fn new(entry: &'a Entry<T>, event: Event<T>) -> Self {
        Self {
            entry,
            event: Some(event),
            acquiring: None,
            permit: None,
            call: InlineCall::new(),
        }
    }
}

/// Takes one of the entry's concurrency permits, if it has a cap. `Ready(false)` means the
/// semaphore was closed: the subscription was removed while this invocation waited.
fn poll_permit(
    limit: Option<&Arc<Semaphore>>,
    acquiring: &mut Option<BoxFuture<'static, Result<OwnedSemaphorePermit, AcquireError>>>,
    permit: &mut Option<OwnedSemaphorePermit>,
    cx: &mut Context<'_>,
) -> Poll<bool> {
    let Some(limit) = limit else {
        return Poll::Ready(true);
    };
    if permit.is_some() {
        return Poll::Ready(true);
    }
    let waiting = match acquiring {
        Some(waiting) => waiting,
        None => match Arc::clone(limit).try_acquire_owned() {
            Ok(taken) => {
                *permit = Some(taken);
                return Poll::Ready(true);
            }
            Err(_) => acquiring.insert(Box::pin(Arc::clone(limit).acquire_owned())),
        },
    };
    match waiting.as_mut().poll(cx) {
        Poll::Pending => Poll::Pending,
        Poll::Ready(acquired) => {
            *acquiring = None;
            *permit = acquired.ok();
            Poll::Ready(permit.is_some())
        }
    }
}

impl<T: Send + Sync + 'static> Future for Deliver<'_, T> {
    type Output = Option<HandlerResult>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if this.call.is_running() {
            return this.call.poll(cx).map(Some);
        }
        let entry = *this.entry;
        if this.event.is_none() || entry.gate.is_closed() {
            // Unsubscribed before the start (no need to wait for a permit first), or done.
            return Poll::Ready(None);
        }
        match poll_permit(entry.limit.as_ref(), this.acquiring, this.permit, cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(false) => return Poll::Ready(None),
            Poll::Ready(true) => {}
        }
        let Some(event) = this.event.take() else {
            return Poll::Ready(None);
        };
        // The permit is taken first, so the start below is the handler's real start: a
        // concurrency cap never lets a call begin after its unsubscribe returned.
        let Some(_inside) = Inside::enter(&entry.gate) else {
            return Poll::Ready(None);
        };
        // The start: the call and the first poll happen inside the gate.
        this.call.start(&entry.handler, event, cx).map(Some)
    }
}
