//! The handler trait and its closure adapter.
//!
//! A handler is anything that turns an [`Event<T>`] into a future resolving to
//! [`HandlerResult`]. Any `Fn(Event<T>) -> impl Future<Output = HandlerResult>` closure is a
//! handler, so a one-line handler needs no struct:
//!
//! ```
//! use flowgate::{Event, Handler, HandlerError};
//!
//! let handler = |event: Event<u32>| async move {
//!     if *event.payload() == 0 {
//!         return Err(HandlerError::permanent("zero is not a valid amount"));
//!     }
//!     Ok(())
//! };
//! # fn assert_handler<H: Handler<u32>>(_: &H) {}
//! # assert_handler(&handler);
//! ```
//!
//! [`Handler::call`] returns a boxed future: one heap allocation per invocation, and every
//! middleware layer wrapped around a handler adds one more. The emitter calls
//! [`Handler::call_inline`] instead, which writes a closure's future into an [`InlineSlot`]
//! inside the emitter's own future, so a small handler runs without any allocation.
//!
//! Calling a handler through [`invoke`] catches panics, both in `call` and while the future is
//! polled, and turns them into [`HandlerError::Panicked`] (a retryable failure), so a panicking
//! handler never takes a worker down with it.

use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

use crate::{Event, HandlerError, InlineSlot};

/// A boxed, `Send` future.
///
/// ```
/// use flowgate::BoxFuture;
///
/// fn len_later(s: &str) -> BoxFuture<'_, usize> {
///     Box::pin(async move { s.len() })
/// }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// assert_eq!(len_later("order").await, 5);
/// # }
/// ```
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a handler invocation resolves to.
///
/// ```
/// use flowgate::{invoke, Event, HandlerError, HandlerResult};
///
/// async fn refund(event: Event<i64>) -> HandlerResult {
///     if *event.payload() <= 0 {
///         return Err(HandlerError::permanent("refunds must be positive"));
///     }
///     Ok(())
/// }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), flowgate::CoreError> {
/// assert!(invoke(&refund, Event::new("refund", 10)?).await.is_ok());
/// assert!(invoke(&refund, Event::new("refund", -1)?).await.is_err());
/// # Ok(())
/// # }
/// ```
pub type HandlerResult = Result<(), HandlerError>;

/// An asynchronous event handler.
///
/// Implemented for every `Fn(Event<T>) -> Fut` closure whose `Fut` is a `Send + 'static`
/// future of [`HandlerResult`]. Implement it by hand for handlers that carry state:
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use std::sync::Arc;
/// use flowgate::{BoxFuture, Event, Handler, HandlerResult};
///
/// struct Sum(Arc<AtomicU64>);
///
/// impl Handler<u64> for Sum {
///     fn call(&self, event: Event<u64>) -> BoxFuture<'static, HandlerResult> {
///         let total = Arc::clone(&self.0);
///         Box::pin(async move {
///             total.fetch_add(*event.payload(), Ordering::Relaxed);
///             Ok(())
///         })
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), flowgate::CoreError> {
/// let total = Arc::new(AtomicU64::new(0));
/// let handler = Sum(Arc::clone(&total));
/// flowgate::invoke(&handler, Event::new("amount", 5)?).await.unwrap();
/// assert_eq!(total.load(Ordering::Relaxed), 5);
/// # Ok(())
/// # }
/// ```
pub trait Handler<T>: Send + Sync + 'static {
    /// Starts handling `event`. The returned future does the work; dropping it cancels it.
    fn call(&self, event: Event<T>) -> BoxFuture<'static, HandlerResult>;

    /// Like [`call`](Self::call), but writes the future into `slot`, which lives inside the
    /// caller's own future: see [`InlineSlot`]. An inline `emit` and the emitter's workers call
    /// this.
    ///
    /// The provided implementation stores [`call`](Self::call)'s boxed future (one allocation,
    /// as before); closures override it and allocate nothing when their future fits. Override
    /// it the same way in a handler of your own:
    ///
    /// ```
    /// use std::pin::{pin, Pin};
    /// use flowgate::{BoxFuture, Event, Handler, HandlerResult, InlineSlot};
    ///
    /// struct Audit;
    ///
    /// impl Handler<u64> for Audit {
    ///     fn call(&self, event: Event<u64>) -> BoxFuture<'static, HandlerResult> {
    ///         Box::pin(audit(event))
    ///     }
    ///     fn call_inline(&self, event: Event<u64>, slot: Pin<&mut InlineSlot>) {
    ///         slot.emplace(audit(event));
    ///     }
    /// }
    ///
    /// async fn audit(event: Event<u64>) -> HandlerResult {
    ///     assert!(*event.payload() > 0);
    ///     Ok(())
    /// }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), flowgate::CoreError> {
    /// let mut slot = pin!(InlineSlot::new());
    /// Audit.call_inline(Event::new("audit", 7)?, slot.as_mut());
    /// assert!(slot.is_inline());
    /// slot.await.unwrap();
    /// # Ok(())
    /// # }
    /// ```
    fn call_inline(&self, event: Event<T>, slot: Pin<&mut InlineSlot>) {
        slot.emplace_box(self.call(event));
    }
}

impl<T, F, Fut> Handler<T> for F
where
    F: Fn(Event<T>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = HandlerResult> + Send + 'static,
{
    fn call(&self, event: Event<T>) -> BoxFuture<'static, HandlerResult> {
        Box::pin(self(event))
    }

    #[inline]
    fn call_inline(&self, event: Event<T>, slot: Pin<&mut InlineSlot>) {
        slot.emplace(self(event));
    }
}

/// A type-erased, shareable handler. Clones share the one handler.
///
/// ```
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use std::sync::Arc;
/// use flowgate::{invoke, BoxHandler, Event};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), flowgate::CoreError> {
/// let calls = Arc::new(AtomicU32::new(0));
/// let counter = Arc::clone(&calls);
/// let handler = BoxHandler::new(move |_: Event<()>| {
///     counter.fetch_add(1, Ordering::Relaxed);
///     async { Ok(()) }
/// });
/// let copy = handler.clone();
/// invoke(&handler, Event::new("a", ())?).await.unwrap();
/// invoke(&copy, Event::new("a", ())?).await.unwrap();
/// assert_eq!(calls.load(Ordering::Relaxed), 2);
/// # Ok(())
/// # }
/// ```
pub struct BoxHandler<T> {
    inner: Arc<dyn Handler<T>>,
}

impl<T: 'static> BoxHandler<T> {
    /// Erases `handler`'s type, so that handlers of different types fit in one collection.
    ///
    /// ```
    /// use flowgate::{invoke, BoxHandler, Event, HandlerError, HandlerResult};
    ///
    /// async fn accept(_: Event<u32>) -> HandlerResult {
    ///     Ok(())
    /// }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), flowgate::CoreError> {
    /// let handlers = vec![
    ///     BoxHandler::new(accept),
    ///     BoxHandler::new(|_: Event<u32>| async { Err(HandlerError::permanent("no")) }),
    /// ];
    /// let mut failed = 0;
    /// for handler in &handlers {
    ///     if invoke(handler, Event::new("a", 1)?).await.is_err() {
    ///         failed += 1;
    ///     }
    /// }
    /// assert_eq!(failed, 1);
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(handler: impl Handler<T>) -> Self {
        Self {
            inner: Arc::new(handler),
        }
    }
}

impl<T> Clone for BoxHandler<T> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<T> fmt::Debug for BoxHandler<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BoxHandler")
    }
}

impl<T: 'static> Handler<T> for BoxHandler<T> {
    fn call(&self, event: Event<T>) -> BoxFuture<'static, HandlerResult> {
        self.inner.call(event)
    }

    #[inline]
    fn call_inline(&self, event: Event<T>, slot: Pin<&mut InlineSlot>) {
        self.inner.call_inline(event, slot);
    }
}

/// Calls `handler` with panics caught; see [`Invoke`].
///
/// ```
/// use flowgate::{invoke, Event, HandlerError};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), flowgate::CoreError> {
/// let handler = |_: Event<()>| async { panic!("bug in handler") };
/// let outcome = invoke(&handler, Event::new("a", ())?).await;
/// assert!(matches!(outcome, Err(HandlerError::Panicked { .. })));
/// # Ok(())
/// # }
/// ```
pub fn invoke<T, H: Handler<T> + ?Sized>(handler: &H, event: Event<T>) -> Invoke {
    match catch_unwind(AssertUnwindSafe(|| handler.call(event))) {
        Ok(future) => Invoke {
            state: InvokeState::Running(future),
        },
        Err(payload) => Invoke {
            state: InvokeState::Failed(Some(HandlerError::from_panic(payload.as_ref()))),
        },
    }
}

pin_project! {
    /// One handler invocation whose future lives inside this value ([`InlineSlot`]), with
    /// panics caught in `call` and in every poll and turned into [`HandlerError::Panicked`].
    ///
    /// [`start`](Self::start) calls the handler and polls its future once, under a single
    /// unwind guard: a dispatcher that must know when a handler *started* gets that moment from
    /// it, and most handlers finish there. One that is still waiting is driven on by polling
    /// this value, which must stay pinned where it started (it is usually a field of the
    /// dispatcher's own future).
    ///
    /// ```
    /// use std::future::poll_fn;
    /// use std::pin::pin;
    /// use std::task::Poll;
    /// use flowgate::{Event, HandlerError, InlineCall};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), flowgate::CoreError> {
    /// let waits_once = |_: Event<()>| async {
    ///     tokio::task::yield_now().await;
    ///     Ok(())
    /// };
    /// let mut call = pin!(InlineCall::new());
    /// let mut event = Some(Event::new("a", ())?);
    /// let first = poll_fn(|cx| Poll::Ready(call.as_mut().start(&waits_once, event.take().unwrap(), cx))).await;
    /// assert!(first.is_pending() && call.is_running());
    /// assert!(call.await.is_ok());
    ///
    /// let boom = |_: Event<()>| async { panic!("bug") };
    /// let mut call = pin!(InlineCall::new());
    /// let mut event = Some(Event::new("a", ())?);
    /// let first = poll_fn(|cx| Poll::Ready(call.as_mut().start(&boom, event.take().unwrap(), cx))).await;
    /// assert!(matches!(first, Poll::Ready(Err(HandlerError::Panicked { .. }))));
    /// # Ok(())
    /// # }
    /// ```
    #[must_use = "a pending invocation does nothing until polled"]
    #[derive(Default)]
    pub struct InlineCall {
        #[pin]
        slot: InlineSlot,
    }
}

impl InlineCall {
    /// An invocation not started yet.
    ///
    /// ```
    /// assert!(!flowgate::InlineCall::new().is_running());
    /// ```
    pub const fn new() -> Self {
        Self {
            slot: InlineSlot::new(),
        }
    }

    /// Calls `handler` with `event` and polls its future once. `Ready` is the outcome (the
    /// future is dropped then); `Pending` means the handler is waiting: poll `self` on.
    ///
    /// A call that is still running is dropped (cancelled) first.
    ///
    /// ```
    /// use std::pin::pin;
    /// use std::task::{Context, Poll, Waker};
    /// use flowgate::{Event, InlineCall};
    ///
    /// let mut cx = Context::from_waker(Waker::noop());
    /// let mut call = pin!(InlineCall::new());
    /// let ok = |_: Event<()>| async { Ok(()) };
    /// let first = call.as_mut().start(&ok, Event::new("a", ())?, &mut cx);
    /// assert!(matches!(first, Poll::Ready(Ok(()))));
    /// # Ok::<(), flowgate::CoreError>(())
    /// ```
    pub fn start<T, H: Handler<T> + ?Sized>(
        self: Pin<&mut Self>,
        handler: &H,
        event: Event<T>,
        cx: &mut Context<'_>,
    ) -> Poll<HandlerResult> {
        let mut slot = self.project().slot;
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| {
            handler.call_inline(event, slot.as_mut());
        })) {
            clear_caught(slot);
            return Poll::Ready(Err(HandlerError::from_panic(payload.as_ref())));
        }
        poll_caught(slot, cx)
    }

    /// Drops a started handler's future, if one is still waiting (cancelling it). A
    /// destructor that panics is contained here.
    ///
    /// ```
    /// use std::pin::pin;
    /// use std::task::{Context, Waker};
    /// use flowgate::{Event, HandlerResult, InlineCall};
    ///
    /// let mut cx = Context::from_waker(Waker::noop());
    /// let mut call = pin!(InlineCall::new());
    /// let never = |_: Event<()>| std::future::pending::<HandlerResult>();
    /// assert!(call.as_mut().start(&never, Event::new("a", ())?, &mut cx).is_pending());
    /// assert!(call.is_running());
    /// call.as_mut().cancel();
    /// assert!(!call.is_running());
    /// # Ok::<(), flowgate::CoreError>(())
    /// ```
    pub fn cancel(self: Pin<&mut Self>) {
        clear_caught(self.project().slot);
    }

    /// Whether a started handler is still waiting (see [`cancel`](Self::cancel) for an
    /// example).
    #[must_use]
    pub fn is_running(&self) -> bool {
        self.slot.is_occupied()
    }
}

impl Future for InlineCall {
    type Output = HandlerResult;

    /// Drives a started handler on. Polled when none is running (never started, or already
    /// finished), it resolves to a [`HandlerError::Panicked`] saying so.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<HandlerResult> {
        poll_caught(self.project().slot, cx)
    }
}

/// Polls the stored future with panics caught. The slot drops it once it finished; one that
/// panicked is dropped here (it may hold broken state: never poll it again).
#[inline]
fn poll_caught(mut slot: Pin<&mut InlineSlot>, cx: &mut Context<'_>) -> Poll<HandlerResult> {
    match catch_unwind(AssertUnwindSafe(|| slot.as_mut().poll(cx))) {
        Ok(poll) => poll,
        Err(payload) => {
            clear_caught(slot);
            Poll::Ready(Err(HandlerError::from_panic(payload.as_ref())))
        }
    }
}

/// Drops what the slot holds; a destructor that panics too is contained here (the failure is
/// already being reported), so it never unwinds into the dispatcher.
fn clear_caught(slot: Pin<&mut InlineSlot>) {
    let _ = catch_unwind(AssertUnwindSafe(|| slot.clear()));
}

impl fmt::Debug for InlineCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InlineCall")
            .field("running", &self.is_running())
            .finish()
    }
}

/// The future of one handler invocation, with panics turned into
/// [`HandlerError::Panicked`]. Returned by [`invoke`].
///
/// It owns everything it needs (`'static` and `Send`), so it can be spawned.
///
/// ```
/// use flowgate::{invoke, Event, HandlerError, Invoke};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), flowgate::CoreError> {
/// let handler = |_: Event<()>| async {
///     tokio::task::yield_now().await;
///     panic!("bug after the first await")
/// };
/// let invocation: Invoke = invoke(&handler, Event::new("a", ())?);
/// let outcome = tokio::spawn(invocation).await.expect("the panic was caught inside");
/// assert!(matches!(
///     outcome,
///     Err(HandlerError::Panicked { message }) if message == "bug after the first await"
/// ));
/// # Ok(())
/// # }
/// ```
#[must_use = "a handler does nothing until its future is polled"]
pub struct Invoke {
    state: InvokeState,
}

enum InvokeState {
    Running(BoxFuture<'static, HandlerResult>),
    /// `call` itself panicked; the error is handed out on the first poll.
    Failed(Option<HandlerError>),
    Done,
}

impl fmt::Debug for Invoke {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            InvokeState::Running(_) => "running",
            InvokeState::Failed(_) => "failed",
            InvokeState::Done => "done",
        };
        f.debug_struct("Invoke").field("state", &state).finish()
    }
}

impl Future for Invoke {
    type Output = HandlerResult;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<HandlerResult> {
        let result = match &mut self.state {
            InvokeState::Running(future) => {
                match catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx))) {
                    Ok(Poll::Pending) => return Poll::Pending,
                    Ok(Poll::Ready(result)) => result,
                    Err(payload) => Err(HandlerError::from_panic(payload.as_ref())),
                }
            }
            InvokeState::Failed(error) => Err(error.take().unwrap_or(HandlerError::Panicked {
                message: "handler future polled after it failed".to_owned(),
            })),
            InvokeState::Done => Err(HandlerError::Panicked {
                message: "handler future polled after completion".to_owned(),
            }),
        };
        // A panicked future may hold broken state: drop it now, never poll it again. A
        // destructor that panics too is contained (the state is `Done` before it runs).
        let finished = std::mem::replace(&mut self.state, InvokeState::Done);
        let _ = catch_unwind(AssertUnwindSafe(move || drop(finished)));
        Poll::Ready(result)
    }
}
