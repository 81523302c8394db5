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
//! Each invocation costs one heap allocation: the boxed future that erases the handler's
//! concrete future type. Every middleware layer wrapped around a handler adds one more.
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

use crate::{Event, HandlerError};

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
}

impl<T, F, Fut> Handler<T> for F
where
    F: Fn(Event<T>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = HandlerResult> + Send + 'static,
{
    fn call(&self, event: Event<T>) -> BoxFuture<'static, HandlerResult> {
        Box::pin(self(event))
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

/// How [`start`] left an invocation.
///
/// ```
/// use std::future::poll_fn;
/// use std::task::Poll;
/// use flowgate::{start, Event, Started};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), flowgate::CoreError> {
/// let waits_once = |_: Event<()>| async {
///     tokio::task::yield_now().await;
///     Ok(())
/// };
/// let mut event = Some(Event::new("a", ())?);
/// let started = poll_fn(|cx| Poll::Ready(start(&waits_once, event.take().unwrap(), cx))).await;
/// let Started::Pending(rest) = started else {
///     panic!("the handler yields on its first poll");
/// };
/// assert!(rest.await.is_ok());
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
#[must_use = "a pending invocation does nothing until polled"]
pub enum Started {
    /// The handler finished on its first poll (panics turned into
    /// [`HandlerError::Panicked`]).
    Done(HandlerResult),
    /// The handler is waiting; poll the [`Invoke`] to drive it on.
    Pending(Invoke),
}

/// Calls `handler` and polls its future once, with panics caught in both, under a single unwind
/// guard. Most handlers finish on their first poll, so this is the cheap way in; a dispatcher
/// that must know when a handler *started* also gets that moment from it.
///
/// ```
/// use std::task::{Context, Waker};
/// use flowgate::{start, Event, HandlerError, Started};
///
/// let mut cx = Context::from_waker(Waker::noop());
/// let ok = |_: Event<()>| async { Ok(()) };
/// assert!(matches!(start(&ok, Event::new("a", ())?, &mut cx), Started::Done(Ok(()))));
/// let boom = |_: Event<()>| async { panic!("bug") };
/// assert!(matches!(
///     start(&boom, Event::new("a", ())?, &mut cx),
///     Started::Done(Err(HandlerError::Panicked { .. }))
/// ));
/// # Ok::<(), flowgate::CoreError>(())
/// ```
pub fn start<T, H: Handler<T> + ?Sized>(
    handler: &H,
    event: Event<T>,
    cx: &mut Context<'_>,
) -> Started {
    let first = catch_unwind(AssertUnwindSafe(|| {
        let mut future = handler.call(event);
        match future.as_mut().poll(cx) {
            Poll::Ready(result) => Ok(result),
            Poll::Pending => Err(future),
        }
    }));
    match first {
        Ok(Ok(result)) => Started::Done(result),
        Ok(Err(future)) => Started::Pending(Invoke {
            state: InvokeState::Running(future),
        }),
        Err(payload) => Started::Done(Err(HandlerError::from_panic(payload.as_ref()))),
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
        // A panicked future may hold broken state: drop it now, never poll it again.
        self.state = InvokeState::Done;
        Poll::Ready(result)
    }
}
