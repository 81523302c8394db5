//! The subscriber registry: an immutable snapshot swapped on every subscribe and unsubscribe.
//!
//! Invariants:
//!
//! 1. **No handler is skipped.** A subscription that `subscribe` returned before an emit began
//!    is in the snapshot that emit loads, so it is invoked.
//! 2. **No handler starts after its unsubscribe returned.** An invocation starts (calls the
//!    handler and polls its future once) in one of two ways, and `unsubscribe` waits for both:
//!    - *Through the entry's start [`Gate`]* (workers, and inline emits to several handlers, to
//!      patterns or to a capped subscription): the invocation enters the gate, starts, then
//!      leaves. `unsubscribe` closes the gate and waits until no invocation is inside.
//!    - *Under a peek* ([`Registry::start_sole`], an inline emit to its one handler, the common
//!      case): the invocation starts while it holds its peek of the `current` snapshot and lets
//!      go of the peek before it ever waits. `unsubscribe` replaces `current`, then waits until
//!      every `current` snapshot replaced so far that may hold the entry is no longer peeked
//!      (the list `retired`; after a replacement each peek of the old snapshot holds a strong
//!      reference to it, so "no longer peeked" is "its strong count reached zero"). This costs
//!      the emit no atomic read-modify-write of its own.
//!
//!    So when `unsubscribe` returns, every invocation has either started (and may still be
//!    running) or will never start. Exception: `unsubscribe` called from inside a handler's
//!    start (a handler unsubscribing itself or another) does not wait, since the invocation it
//!    would wait for may be waiting on this thread; then only invocations on this thread are
//!    covered.
//!
//! Public only for the loom models in `tests/`; not part of the API.
//!
//! Readers (every emit) never lock: they peek at or load a snapshot. Writers (subscribe,
//! unsubscribe) are serialized by one mutex and build new snapshots; they are rare. There are
//! two cells with the same entries: `current`, only ever peeked for the length of a start, and
//! `shared`, which workers and the other emit paths load and may hold for long (holding it
//! never delays an `unsubscribe`).

use std::cell::Cell;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
#[cfg(not(loom))]
use std::sync::Weak;
use std::task::{Context, Poll};

use flowgate_core::sync::atomic::{fence, AtomicU64, Ordering};
use flowgate_core::sync::{spin_yield, thread_local, Mutex};
use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore};

use flowgate_core::{
    BoxFuture, BoxHandler, Event, EventType, HandlerResult, InlineCall, Pattern, PrehashedState,
};

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
    /// Under loom only: peeks of this snapshot now held. Outside loom the same fact is the
    /// snapshot's strong count once it was replaced (see `SnapshotCell::swap`); loom cannot
    /// see `std::sync::Arc`'s counts, so the model counts peeks with a loom atomic instead.
    #[cfg(loom)]
    peeks: flowgate_core::sync::atomic::AtomicUsize,
}

impl<T> Snapshot<T> {
    fn empty() -> Self {
        Self {
            exact: HashMap::default(),
            patterns: Vec::new(),
            len: 0,
            #[cfg(loom)]
            peeks: flowgate_core::sync::atomic::AtomicUsize::new(0),
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

    /// The one subscription `kind` goes to, when it goes to exactly one, by its exact name,
    /// without a concurrency cap: the case [`Registry::start_sole`] starts without a gate.
    #[inline]
    pub fn sole(&self, kind: &EventType) -> Option<&Arc<Entry<T>>> {
        if self.has_patterns() {
            return None;
        }
        match self.exact(kind) {
            [entry] if entry.limit.is_none() => Some(entry),
            _ => None,
        }
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
        {
            let current = self.inner.lock();
            current.peeks.fetch_add(1, Ordering::AcqRel);
            LoomPeek(Arc::clone(&current))
        }
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

    /// Replaces the snapshot and returns the old one. When this returns, every peek of the old
    /// snapshot that is still held owns a strong reference to it (arc-swap pays its debts on a
    /// swap: a peek must keep the value alive after the returned `Arc` is dropped).
    fn swap(&self, snapshot: Snapshot<T>) -> Arc<Snapshot<T>> {
        #[cfg(not(loom))]
        return self.inner.swap(Arc::new(snapshot));
        #[cfg(loom)]
        return std::mem::replace(&mut *self.inner.lock(), Arc::new(snapshot));
    }
}

/// What `SnapshotCell::peek` returns: derefs to the snapshot.
#[cfg(not(loom))]
type SnapshotRef<T> = arc_swap::Guard<Arc<Snapshot<T>>>;
/// What `SnapshotCell::peek` returns: derefs to the snapshot.
#[cfg(loom)]
type SnapshotRef<T> = LoomPeek<T>;

/// A peek under loom: counted in the snapshot's `peeks` until dropped.
#[cfg(loom)]
struct LoomPeek<T>(Arc<Snapshot<T>>);

#[cfg(loom)]
impl<T> std::ops::Deref for LoomPeek<T> {
    type Target = Snapshot<T>;

    fn deref(&self) -> &Snapshot<T> {
        &self.0
    }
}

#[cfg(loom)]
impl<T> Drop for LoomPeek<T> {
    fn drop(&mut self) {
        // Release: the start made under this peek happens-before an unsubscribe that sees it.
        self.0.peeks.fetch_sub(1, Ordering::Release);
    }
}

/// A replaced `current` snapshot, kept to learn when nobody peeks at it any more: a `Weak`
/// (no peek left once its strong count is zero), or under loom the snapshot itself (its
/// `peeks` count).
#[cfg(not(loom))]
type Retired<T> = Weak<Snapshot<T>>;
#[cfg(loom)]
type Retired<T> = Arc<Snapshot<T>>;

#[cfg(not(loom))]
fn retire<T>(old: &Arc<Snapshot<T>>) -> Retired<T> {
    Arc::downgrade(old)
}

#[cfg(loom)]
fn retire<T>(old: &Arc<Snapshot<T>>) -> Retired<T> {
    Arc::clone(old)
}

/// Whether some peek of a replaced snapshot may still be held (a Relaxed read: follow a
/// `false` with an Acquire fence before relying on it).
#[cfg(not(loom))]
fn still_peeked<T>(retired: &Retired<T>) -> bool {
    retired.strong_count() > 0
}

#[cfg(loom)]
fn still_peeked<T>(retired: &Retired<T>) -> bool {
    retired.peeks.load(Ordering::Relaxed) > 0
}

/// The registry; see the [module docs](self).
pub struct Registry<T> {
    /// Peeked by [`start_sole`](Self::start_sole) for the length of one start, never longer.
    current: SnapshotCell<T>,
    /// The same entries in their own snapshot, for [`load`](Self::load) (see the module docs).
    shared: SnapshotCell<T>,
    /// Serializes writers so no subscribe or unsubscribe is lost between load and store, and
    /// holds the `current` snapshots replaced so far that may still be peeked.
    writer: Mutex<Vec<Retired<T>>>,
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
            shared: SnapshotCell::new(Snapshot::empty()),
            writer: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(1),
            version: AtomicU64::new(1),
        }
    }

    /// The current snapshot, owned (for work that outlives the caller, such as a queued job).
    #[inline]
    pub fn load(&self) -> Arc<Snapshot<T>> {
        self.shared.load()
    }

    /// Changes whenever a subscription is added or removed (never 0).
    #[inline]
    pub fn version(&self) -> u64 {
        // Acquire: pairs with the Release bump after each store, so a reader that sees a new
        // version loads a snapshot at least that new.
        self.version.load(Ordering::Acquire)
    }

    /// Starts `event`'s one handler when it has exactly one (see [`Snapshot::sole`]), without
    /// a gate: under a peek of the `current` snapshot, let go of before this returns (see the
    /// module docs). `call` must be empty; on [`Sole::Started`] with `Pending`, poll it on.
    #[inline]
    pub fn start_sole(
        &self,
        event: Event<T>,
        call: Pin<&mut InlineCall>,
        cx: &mut Context<'_>,
    ) -> Sole<T>
    where
        T: 'static,
    {
        let snapshot = self.current.peek();
        let Some(entry) = snapshot.sole(event.kind()) else {
            return Sole::Other(event);
        };
        if entry.gate.is_closed() {
            // Being unsubscribed: as if it were gone already. (The event, a parameter, is
            // dropped after the peek, a local: never under it.)
            return Sole::Removed;
        }
        let poll = {
            let _starting = Starting::enter();
            call.start(&entry.handler, event, cx)
        };
        match poll {
            Poll::Ready(Ok(())) => Sole::Done,
            poll => Sole::Started {
                poll,
                id: entry.id,
                name: Arc::clone(&entry.name),
            },
        }
    }

    /// Publishes `entries` as the new snapshots (writers only, under the writer lock).
    fn publish(&self, retired: &mut Vec<Retired<T>>, entries: &[Arc<Entry<T>>]) {
        self.shared
            .store(Snapshot::from_entries(entries.iter().cloned()));
        let old = self
            .current
            .swap(Snapshot::from_entries(entries.iter().cloned()));
        retired.retain(still_peeked);
        // Acquire: a snapshot pruned here was seen unpeeked with a Relaxed read; this makes the
        // starts made under its last peeks happen-before this writer, and through the writer
        // lock before every later unsubscribe, which no longer looks at that snapshot.
        fence(Ordering::Acquire);
        retired.push(retire(&old));
        // Release: pairs with the workers' Acquire in `version`.
        self.version.fetch_add(1, Ordering::Release);
    }

    /// Adds a subscription; it is visible to every emit that begins after this returns.
    pub fn subscribe(
        &self,
        name: Option<Arc<str>>,
        pattern: Pattern,
        handler: BoxHandler<T>,
        limit: Option<Arc<Semaphore>>,
    ) -> u64 {
        let mut retired = self.writer.lock();
        // Relaxed: ids only need to be unique and increasing, which the writer lock orders.
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let name = name.unwrap_or_else(|| Arc::from(format!("subscription-{id}")));
        let entry = Arc::new(Entry::new(id, name, pattern, handler, limit));
        let now = self.shared.load();
        let entries: Vec<_> = now.entries().cloned().chain([entry]).collect();
        self.publish(&mut retired, &entries);
        id
    }

    /// Removes subscription `id`. Returns `false` if it was not subscribed. When this returns,
    /// no invocation of it is starting or will start (see the module docs).
    pub fn unsubscribe(&self, id: u64) -> bool {
        let (removed, peeked) = {
            let mut retired = self.writer.lock();
            let now = self.shared.load();
            let Some(removed) = now.entries().find(|e| e.id == id).cloned() else {
                return false;
            };
            let entries: Vec<_> = now.entries().filter(|e| e.id != id).cloned().collect();
            self.publish(&mut retired, &entries);
            // Every replaced `current` snapshot still alive; the ones holding `removed` are
            // among them.
            (removed, retired.clone())
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
            // Starts under a peek: each ends before its peek is let go of.
            while peeked.iter().any(still_peeked) {
                spin_yield();
            }
            // Acquire: the counts were read Relaxed; the last peek's release (a Release
            // decrement) then happens-before this return, and with it that start.
            fence(Ordering::Acquire);
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
            .field("shared", &self.load())
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

/// What [`Registry::start_sole`] did.
///
/// `repr(u8)`: an explicit tag, so the caller tells the common `Done` from the rest by one
/// byte instead of through the niche of a `Poll<HandlerResult>` (which cost a copy of the
/// whole value and a store-forwarding stall on every emit).
#[derive(Debug)]
#[repr(u8)]
pub enum Sole<T> {
    /// Not the one-handler case: the event back, for the gated way.
    Other(Event<T>),
    /// Its one subscription is being removed: nothing ran.
    Removed,
    /// The handler succeeded on its first poll.
    Done,
    /// The handler failed on its first poll (`Ready(Err)`), or waits (`Pending`: poll the
    /// call on). The subscription's id and name, for a failure report.
    Started {
        poll: Poll<HandlerResult>,
        id: u64,
        name: Arc<str>,
    },
}

/// Starting a handler outside any gate, for the current scope: counted in `DEPTH` so that an
/// `unsubscribe` from inside this start does not wait for it.
struct Starting;

impl Starting {
    #[inline]
    fn enter() -> Self {
        DEPTH.with(|depth| depth.set(depth.get() + 1));
        Self
    }
}

impl Drop for Starting {
    #[inline]
    fn drop(&mut self) {
        DEPTH.with(|depth| depth.set(depth.get().saturating_sub(1)));
    }
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

/// One invocation of one entry. Resolves to `None` when the subscription was removed before
/// the invocation could start, else to the handler's outcome (panics caught).
///
/// The handler's future lives in `call`, an [`InlineCall`] the caller pinned once and lends to
/// each invocation in turn, so an invocation allocates nothing for a small future and moves
/// no future-sized buffer around.
pub struct Deliver<'a, T> {
    entry: &'a Entry<T>,
    event: Option<Event<T>>,
    /// Waiting for one of the entry's concurrency permits (boxed: only when contended).
    acquiring: Option<BoxFuture<'static, Result<OwnedSemaphorePermit, AcquireError>>>,
    /// Held from before the start until the invocation ends, so a cancelled or panicking
    /// invocation gives it back.
    permit: Option<OwnedSemaphorePermit>,
    call: Pin<&'a mut InlineCall>,
}

impl<'a, T> Deliver<'a, T> {
    /// `call` must not be running (a running call would be cancelled by this start).
    pub fn new(entry: &'a Entry<T>, event: Event<T>, call: Pin<&'a mut InlineCall>) -> Self {
        Self {
            entry,
            event: Some(event),
            acquiring: None,
            permit: None,
            call,
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

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if this.call.is_running() {
            return this.call.as_mut().poll(cx).map(Some);
        }
        let entry = this.entry;
        if this.event.is_none() || entry.gate.is_closed() {
            // Unsubscribed before the start (no need to wait for a permit first), or done.
            return Poll::Ready(None);
        }
        match poll_permit(
            entry.limit.as_ref(),
            &mut this.acquiring,
            &mut this.permit,
            cx,
        ) {
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
        this.call
            .as_mut()
            .start(&entry.handler, event, cx)
            .map(Some)
    }
}

/// Dropping a delivery cancels its handler (the call it borrowed is left empty).
impl<T> Drop for Deliver<'_, T> {
    fn drop(&mut self) {
        if self.call.is_running() {
            self.call.as_mut().cancel();
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::sync::Arc;

    /// What `unsubscribe` relies on from arc-swap: once `swap` returned, every guard of the old
    /// value still held owns a strong reference to it (also guards beyond a thread's few fast
    /// debt slots, which take another path), so "strong count zero" means "no guard left".
    #[test]
    fn after_a_swap_every_held_guard_of_the_old_value_is_a_strong_reference() {
        let cell = arc_swap::ArcSwap::from_pointee(1_u32);
        // More guards than arc-swap's fast slots per thread (8).
        let guards: Vec<_> = (0..20).map(|_| cell.load()).collect();
        let old = cell.swap(Arc::new(2));
        let weak = Arc::downgrade(&old);
        drop(old);
        assert_eq!(weak.strong_count(), guards.len());
        let others = std::thread::spawn({
            let weak = weak.clone();
            move || weak.strong_count()
        });
        assert_eq!(others.join().unwrap(), guards.len());
        drop(guards);
        assert_eq!(weak.strong_count(), 0);
        assert_eq!(**cell.load(), 2);
    }
}
