//! [`InlineSlot`]: room for one handler future inside the caller's own future, so that running
//! a handler allocates nothing when its future is small.
//!
//! The one module of this crate with `unsafe` code: a type-erased future stored in place, in
//! the way a `RawWaker` erases a waker (a data area plus a table of two functions for the
//! concrete type).
//!
//! Invariants, which every `unsafe` block below relies on:
//!
//! 1. `vtable` is `Some(table)` exactly when `data` holds a live value of the type `F` that
//!    `table` was made for (`TableOf::<F>::TABLE`), written by `InlineSlot::write` (from
//!    `emplace`, `emplace_box`), which checks that `F` fits `data`'s size and alignment.
//!    Otherwise `data` holds nothing live. The data area is reached through a raw pointer made
//!    without a reference (`InlineSlot::storage`).
//! 2. The value is never moved: it is written in place, polled through `Pin<&mut InlineSlot>`
//!    (the slot is `!Unpin`, so safe code cannot move it once pinned), and dropped in place
//!    before `data` is reused or the slot is dropped (`Drop`). That is the pinning contract
//!    for the stored future.
//! 3. Only `Send + 'static` futures are stored, so the slot may be sent to another thread with
//!    its value, and the value borrows nothing that could end before it.
#![allow(unsafe_code)]

use std::fmt;
use std::future::Future;
use std::marker::PhantomPinned;
use std::mem::{align_of, size_of, MaybeUninit};
use std::pin::Pin;
use std::ptr;
use std::task::{Context, Poll};

use crate::{BoxFuture, HandlerError, HandlerResult};

/// Bytes of room an [`InlineSlot`] has for a handler's future.
///
/// A future this size or smaller (and aligned to at most 16 bytes) is stored in the slot; a
/// larger one is boxed, and the slot holds the box. `async` blocks that hold the event and a
/// few locals across their awaits fit; one that awaits a database client usually does not.
///
/// ```
/// assert_eq!(flowgate::INLINE_FUTURE_BYTES, 128);
/// ```
pub const INLINE_FUTURE_BYTES: usize = 128;

/// The storage, aligned for any ordinary future.
#[repr(C, align(16))]
struct Storage([MaybeUninit<u8>; INLINE_FUTURE_BYTES]);

/// How to poll and drop the value in a slot, for one concrete future type.
struct SlotVTable {
    /// # Safety
    /// The pointer is to a live, pinned value of the table's type.
    poll: unsafe fn(*mut (), &mut Context<'_>) -> Poll<HandlerResult>,
    /// # Safety
    /// The pointer is to a live value of the table's type, never used again afterwards.
    drop: unsafe fn(*mut ()),
}

/// The table for `F`, a constant (so `&TableOf::<F>::TABLE` is a `'static` reference).
struct TableOf<F>(F);

impl<F: Future<Output = HandlerResult>> TableOf<F> {
    const TABLE: SlotVTable = SlotVTable {
        poll: poll_erased::<F>,
        drop: drop_erased::<F>,
    };
}

/// # Safety
/// `data` points to a live `F` that is pinned (invariant 2).
unsafe fn poll_erased<F: Future<Output = HandlerResult>>(
    data: *mut (),
    cx: &mut Context<'_>,
) -> Poll<HandlerResult> {
    // SAFETY: the caller promises a live, pinned `F` at `data`; it is not moved here.
    let future = unsafe { Pin::new_unchecked(&mut *data.cast::<F>()) };
    future.poll(cx)
}

/// # Safety
/// `data` points to a live `F` that nobody uses afterwards.
unsafe fn drop_erased<F>(data: *mut ()) {
    // SAFETY: the caller promises a live `F` at `data`, never used again.
    unsafe { ptr::drop_in_place(data.cast::<F>()) }
}

/// Whether a value of type `F` fits an [`InlineSlot`].
const fn fits<F>() -> bool {
    size_of::<F>() <= INLINE_FUTURE_BYTES && align_of::<F>() <= align_of::<Storage>()
}

/// Room for one handler future, inside the value that holds the slot (usually a dispatcher's
/// own future), so storing the handler's future allocates nothing. What
/// [`Handler::call_inline`](crate::Handler::call_inline) writes into.
///
/// A future of at most [`INLINE_FUTURE_BYTES`] is stored in place; a larger one is boxed (one
/// allocation, as a [`BoxFuture`] would be). The slot must be pinned before anything is stored
/// in it, and the stored future is polled and dropped where it was written.
///
/// ```
/// use std::pin::pin;
/// use flowgate::InlineSlot;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let mut slot = pin!(InlineSlot::new());
/// slot.as_mut().emplace(async { Ok(()) });
/// assert!(slot.is_inline());
/// assert!(slot.as_mut().await.is_ok());
/// assert!(!slot.is_occupied()); // dropped once it finished
///
/// slot.as_mut().emplace(async {
///     let buffer = [1_u8; 4096];
///     tokio::task::yield_now().await;
///     assert_eq!(buffer.len(), 4096);
///     Ok(())
/// });
/// assert!(slot.is_occupied() && !slot.is_inline()); // too big: boxed
/// assert!(slot.as_mut().await.is_ok());
/// # }
/// ```
pub struct InlineSlot {
    data: MaybeUninit<Storage>,
    /// `Some` exactly when `data` holds a live future (invariant 1).
    vtable: Option<&'static SlotVTable>,
    /// Whether the live future is stored in place (`false`: the slot holds a box).
    inline: bool,
    /// A stored future is pinned where it was written (invariant 2).
    _pinned: PhantomPinned,
}

// SAFETY: only `Send` futures are stored (invariant 3), and `&InlineSlot` gives no access to the
// stored future at all, so sending the slot sends a `Send` value and sharing it shares nothing.
unsafe impl Send for InlineSlot {}
// SAFETY: see above: through `&InlineSlot` only the two flags can be read.
unsafe impl Sync for InlineSlot {}

impl Default for InlineSlot {
    fn default() -> Self {
        Self::new()
    }
}

impl InlineSlot {
    /// An empty slot.
    ///
    /// ```
    /// let slot = flowgate::InlineSlot::new();
    /// assert!(!slot.is_occupied());
    /// ```
    #[must_use]
    pub const fn new() -> Self {
        Self {
            data: MaybeUninit::uninit(),
            vtable: None,
            inline: false,
            _pinned: PhantomPinned,
        }
    }

    /// Stores `future` (dropping any future already here first): in place when it fits, else
    /// boxed.
    ///
    /// ```
    /// use std::pin::pin;
    /// use flowgate::InlineSlot;
    ///
    /// let mut slot = pin!(InlineSlot::new());
    /// slot.as_mut().emplace(async { Ok(()) });
    /// assert!(slot.is_inline());
    /// ```
    #[inline]
    pub fn emplace<F>(self: Pin<&mut Self>, future: F)
    where
        F: Future<Output = HandlerResult> + Send + 'static,
    {
        // SAFETY: the value at `data` is only ever dropped in place or polled pinned below;
        // nothing is moved out of the slot.
        let this = unsafe { self.get_unchecked_mut() };
        this.clear_in_place();
        if fits::<F>() {
            // SAFETY: `F` fits (checked just above) and the slot is empty.
            unsafe { this.write(future) };
            this.inline = true;
        } else {
            this.write_box(Box::pin(future));
        }
    }

    /// Stores a future that is already boxed (no second allocation).
    ///
    /// ```
    /// use std::pin::pin;
    /// use flowgate::{BoxFuture, HandlerResult, InlineSlot};
    ///
    /// let boxed: BoxFuture<'static, HandlerResult> = Box::pin(async { Ok(()) });
    /// let mut slot = pin!(InlineSlot::new());
    /// slot.as_mut().emplace_box(boxed);
    /// assert!(slot.is_occupied() && !slot.is_inline());
    /// ```
    #[inline]
    pub fn emplace_box(self: Pin<&mut Self>, future: BoxFuture<'static, HandlerResult>) {
        // SAFETY: as in `emplace`: nothing is moved out of the slot.
        let this = unsafe { self.get_unchecked_mut() };
        this.clear_in_place();
        this.write_box(future);
    }

    /// Whether a future is stored (it is dropped once it finished).
    ///
    /// ```
    /// use std::pin::pin;
    /// use flowgate::InlineSlot;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let mut slot = pin!(InlineSlot::new());
    /// slot.as_mut().emplace(async { Ok(()) });
    /// assert!(slot.is_occupied());
    /// slot.as_mut().await.unwrap();
    /// assert!(!slot.is_occupied());
    /// # }
    /// ```
    #[must_use]
    pub fn is_occupied(&self) -> bool {
        self.vtable.is_some()
    }

    /// Whether the stored future sits in the slot itself (`false`: boxed, or nothing stored).
    ///
    /// ```
    /// use std::pin::pin;
    /// use flowgate::InlineSlot;
    ///
    /// let mut slot = pin!(InlineSlot::new());
    /// assert!(!slot.is_inline());
    /// let table = [0_u64; 64]; // 512 bytes: more than the slot holds
    /// slot.as_mut().emplace(async move {
    ///     assert_eq!(table.len(), 64);
    ///     Ok(())
    /// });
    /// assert!(slot.is_occupied() && !slot.is_inline());
    /// ```
    #[must_use]
    pub fn is_inline(&self) -> bool {
        self.vtable.is_some() && self.inline
    }

    /// Drops the stored future, if any (cancelling it).
    ///
    /// ```
    /// use std::pin::pin;
    /// use flowgate::InlineSlot;
    ///
    /// let mut slot = pin!(InlineSlot::new());
    /// slot.as_mut().emplace(std::future::pending());
    /// slot.as_mut().clear();
    /// assert!(!slot.is_occupied());
    /// ```
    pub fn clear(self: Pin<&mut Self>) {
        // SAFETY: dropping in place moves nothing.
        unsafe { self.get_unchecked_mut() }.clear_in_place();
    }

    /// # Safety
    /// `fits::<F>()` holds and the slot is empty.
    #[inline]
    unsafe fn write<F: Future<Output = HandlerResult>>(&mut self, future: F) {
        assert!(fits::<F>() && self.vtable.is_none());
        // SAFETY: `F` fits `data`'s size and alignment (caller), and nothing live is
        // overwritten (the slot is empty).
        unsafe { self.storage().cast::<F>().write(future) };
        self.vtable = Some(&TableOf::<F>::TABLE);
    }

    /// The storage's address, made without a reference to it: a `&mut` to the (`Unpin`)
    /// storage on every access would, under Rust's aliasing rules, invalidate the pointers a
    /// stored future keeps into itself across an await (its locals borrowed by its state).
    #[inline]
    fn storage(&mut self) -> *mut () {
        (&raw mut self.data).cast()
    }

    /// Stores a boxed future (the box pointer sits in the slot), clearing the slot first.
    fn write_box(&mut self, future: BoxFuture<'static, HandlerResult>) {
        const { assert!(fits::<BoxFuture<'static, HandlerResult>>()) };
        self.clear_in_place();
        // SAFETY: a `BoxFuture` fits (asserted at compile time) and the slot is empty.
        unsafe { self.write(future) };
        self.inline = false;
    }

    fn clear_in_place(&mut self) {
        // Taken first: if the future's destructor panics, the slot is already empty, so it is
        // never dropped twice (it leaks instead).
        if let Some(table) = self.vtable.take() {
            // SAFETY: `table` was made for the live value at `data` (invariant 1), which is
            // not used again: the slot is marked empty above.
            unsafe { (table.drop)(self.storage()) }
        }
    }
}

impl Future for InlineSlot {
    type Output = HandlerResult;

    /// Polls the stored future; drops it once it finished. Panics in it are not caught here
    /// (see [`InlineCall`](crate::InlineCall)). Polled with nothing stored, it resolves to a
    /// [`HandlerError::Panicked`] saying so.
    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<HandlerResult> {
        // SAFETY: the stored value stays where it is: polled pinned, dropped in place.
        let this = unsafe { self.get_unchecked_mut() };
        let Some(table) = this.vtable else {
            return Poll::Ready(Err(HandlerError::Panicked {
                message: "no handler future stored: polled before it was started or after it \
                          finished"
                    .to_owned(),
            }));
        };
        // SAFETY: `table` belongs to the live value at `data` (invariant 1), and that value is
        // pinned: it was written in place into a pinned slot and never moved (invariant 2).
        let poll = unsafe { (table.poll)(this.storage(), cx) };
        if poll.is_ready() {
            this.clear_in_place();
        }
        poll
    }
}

impl Drop for InlineSlot {
    fn drop(&mut self) {
        // In place, as the pinning contract asks of a pinned value's memory.
        self.clear_in_place();
    }
}

impl fmt::Debug for InlineSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InlineSlot")
            .field("occupied", &self.is_occupied())
            .field("inline", &self.is_inline())
            .finish()
    }
}
