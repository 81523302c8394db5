//! The inline handler-future slot: every stored future is polled where it was written and
//! dropped exactly once (when it finishes, panics, is replaced, or the slot goes away); futures
//! too big or too aligned for the slot are boxed; panics anywhere come back as
//! `HandlerError::Panicked`.

use std::future::{poll_fn, Future};
use std::mem::size_of;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use flowgate_core::{
    Event, Handler, HandlerError, HandlerResult, InlineCall, InlineSlot, INLINE_FUTURE_BYTES,
};

/// Counts its drops.
struct DropCount(Arc<AtomicUsize>);

impl Drop for DropCount {
    fn drop(&mut self) {
        self.0.fetch_add(1, SeqCst);
    }
}

/// A future that yields once, then finishes; it owns `guard` until it is dropped.
async fn yields_once(guard: DropCount) -> HandlerResult {
    tokio::task::yield_now().await;
    let _keep = &guard;
    Ok(())
}

/// Starts `handler` in `call` with a fresh event, on the test's own task.
async fn start_in(
    mut call: Pin<&mut InlineCall>,
    handler: &impl Handler<u32>,
) -> Poll<HandlerResult> {
    let mut event = Some(Event::new("a", 1).unwrap());
    poll_fn(|cx| Poll::Ready(call.as_mut().start(handler, event.take().unwrap(), cx))).await
}

fn noop_cx() -> Context<'static> {
    Context::from_waker(Waker::noop())
}

#[tokio::test(flavor = "current_thread")]
async fn a_small_future_runs_in_place_and_is_dropped_once_when_it_finishes() {
    let drops = Arc::new(AtomicUsize::new(0));
    let mut slot = pin!(InlineSlot::new());
    slot.as_mut()
        .emplace(yields_once(DropCount(Arc::clone(&drops))));
    assert!(slot.is_occupied() && slot.is_inline());
    assert!(slot.as_mut().poll(&mut noop_cx()).is_pending());
    assert_eq!(drops.load(SeqCst), 0, "dropped while still running");
    assert!(matches!(
        slot.as_mut().poll(&mut noop_cx()),
        Poll::Ready(Ok(()))
    ));
    assert_eq!(drops.load(SeqCst), 1, "not dropped once it finished");
    assert!(!slot.is_occupied());
    // Polled again with nothing stored: an error, never undefined behaviour.
    assert!(matches!(
        slot.as_mut().poll(&mut noop_cx()),
        Poll::Ready(Err(HandlerError::Panicked { .. }))
    ));
}

#[test]
fn a_running_future_is_dropped_once_when_cleared_replaced_or_the_slot_goes() {
    let drops = Arc::new(AtomicUsize::new(0));
    let guard = || DropCount(Arc::clone(&drops));
    {
        let mut slot = pin!(InlineSlot::new());
        slot.as_mut().emplace(yields_once(guard()));
        assert!(slot.as_mut().poll(&mut noop_cx()).is_pending());
        slot.as_mut().clear();
        assert_eq!(drops.load(SeqCst), 1, "clear");
        assert!(!slot.is_occupied());

        slot.as_mut().emplace(yields_once(guard()));
        assert!(slot.as_mut().poll(&mut noop_cx()).is_pending());
        slot.as_mut().emplace(yields_once(guard()));
        assert_eq!(
            drops.load(SeqCst),
            2,
            "replacing drops the old future first"
        );
        assert!(slot.as_mut().poll(&mut noop_cx()).is_pending());
    }
    assert_eq!(drops.load(SeqCst), 3, "the slot's own drop");
}

#[repr(align(64))]
struct Aligned(u8);

#[tokio::test(flavor = "current_thread")]
async fn futures_too_big_or_too_aligned_for_the_slot_are_boxed() {
    let drops = Arc::new(AtomicUsize::new(0));
    let guard = DropCount(Arc::clone(&drops));
    let mut slot = pin!(InlineSlot::new());
    slot.as_mut().emplace(async move {
        let big = [7_u8; INLINE_FUTURE_BYTES * 2];
        tokio::task::yield_now().await;
        let _keep = &guard;
        assert_eq!(
            big.iter().map(|&b| usize::from(b)).sum::<usize>(),
            7 * big.len()
        );
        Ok(())
    });
    assert!(slot.is_occupied() && !slot.is_inline());
    assert!(slot.as_mut().await.is_ok());
    assert_eq!(drops.load(SeqCst), 1);

    let aligned = Aligned(3);
    slot.as_mut().emplace(async move {
        tokio::task::yield_now().await;
        assert_eq!(aligned.0, 3);
        assert_eq!(std::ptr::from_ref(&aligned) as usize % 64, 0);
        Ok(())
    });
    assert!(!slot.is_inline(), "an over-aligned future must be boxed");
    assert!(slot.as_mut().await.is_ok());
}

#[test]
fn a_future_whose_destructor_panics_is_never_dropped_twice() {
    struct PanicsOnDrop(Arc<AtomicUsize>);
    impl Drop for PanicsOnDrop {
        fn drop(&mut self) {
            self.0.fetch_add(1, SeqCst);
            panic!("destructor panicked");
        }
    }
    let drops = Arc::new(AtomicUsize::new(0));
    let guard = PanicsOnDrop(Arc::clone(&drops));
    let mut slot = Box::pin(InlineSlot::new());
    slot.as_mut().emplace(async move {
        tokio::task::yield_now().await;
        let _keep = &guard;
        Ok(())
    });
    assert!(catch_unwind(AssertUnwindSafe(|| slot.as_mut().clear())).is_err());
    assert!(!slot.is_occupied());
    drop(slot);
    assert_eq!(drops.load(SeqCst), 1);
}

#[test]
fn a_slot_with_its_future_can_move_to_another_thread() {
    let drops = Arc::new(AtomicUsize::new(0));
    let mut slot = Box::pin(InlineSlot::new());
    slot.as_mut()
        .emplace(yields_once(DropCount(Arc::clone(&drops))));
    assert!(slot.as_mut().poll(&mut noop_cx()).is_pending());
    let finished = std::thread::spawn(move || {
        let mut slot = slot;
        matches!(slot.as_mut().poll(&mut noop_cx()), Poll::Ready(Ok(())))
    })
    .join()
    .unwrap();
    assert!(finished);
    assert_eq!(drops.load(SeqCst), 1);
}

#[tokio::test(flavor = "current_thread")]
async fn inline_call_turns_panics_in_the_call_and_in_any_poll_into_errors() {
    // Panics in `call` itself (before any future exists).
    let panics_in_call = |_: Event<u32>| -> std::future::Ready<HandlerResult> { panic!("in call") };
    let mut call = pin!(InlineCall::new());
    let first = start_in(call.as_mut(), &panics_in_call).await;
    assert!(matches!(
        first,
        Poll::Ready(Err(HandlerError::Panicked { .. }))
    ));
    assert!(!call.is_running());

    // Panics on a later poll: the future is dropped, and polling again is an error.
    let drops = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&drops);
    let panics_later = move |_: Event<u32>| {
        let guard = DropCount(Arc::clone(&counted));
        async move {
            tokio::task::yield_now().await;
            let _keep = &guard;
            panic!("in poll");
        }
    };
    let mut call = pin!(InlineCall::new());
    let first = start_in(call.as_mut(), &panics_later).await;
    assert!(first.is_pending() && call.is_running());
    assert!(matches!(
        call.as_mut().await,
        Err(HandlerError::Panicked { message }) if message.contains("in poll")
    ));
    assert!(!call.is_running());
    assert_eq!(drops.load(SeqCst), 1, "the panicked future was not dropped");
    assert!(matches!(
        call.as_mut().await,
        Err(HandlerError::Panicked { message }) if message.contains("no handler future")
    ));
}

/// A future of exactly `N` bytes (alignment 1) that checks, when polled, that it was not
/// moved since its first poll.
struct Sized<const N: usize> {
    bytes: [u8; N],
    first_at: Option<usize>,
}

impl<const N: usize> Future for Sized<N> {
    type Output = HandlerResult;

    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<HandlerResult> {
        // Sound: `Sized` is `Unpin` (plain data), so it may be taken out of the pin.
        let this = self.get_mut();
        let at = std::ptr::from_ref(this) as usize;
        match this.first_at {
            None => {
                this.first_at = Some(at);
                Poll::Pending
            }
            Some(first) => {
                assert_eq!(first, at, "the future moved between polls");
                assert!(this.bytes.iter().all(|&b| b == 9));
                Poll::Ready(Ok(()))
            }
        }
    }
}

fn sized<const N: usize>() -> Sized<N> {
    Sized {
        bytes: [9; N],
        first_at: None,
    }
}

#[repr(align(16))]
struct Sixteen(u128);

/// A zero-sized future.
struct Nothing;

impl Future for Nothing {
    type Output = HandlerResult;
    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<HandlerResult> {
        Poll::Ready(Ok(()))
    }
}

#[test]
fn the_size_boundary_and_sixteen_byte_alignment_are_honoured() {
    assert_eq!(
        size_of::<Sized<{ INLINE_FUTURE_BYTES - 16 }>>(),
        INLINE_FUTURE_BYTES
    );
    let mut slot = pin!(InlineSlot::new());
    slot.as_mut()
        .emplace(sized::<{ INLINE_FUTURE_BYTES - 16 }>());
    assert!(slot.is_inline(), "a future of exactly the slot's size fits");
    assert!(slot.as_mut().poll(&mut noop_cx()).is_pending());
    assert!(matches!(
        slot.as_mut().poll(&mut noop_cx()),
        Poll::Ready(Ok(()))
    ));

    assert!(size_of::<Sized<{ INLINE_FUTURE_BYTES - 15 }>>() > INLINE_FUTURE_BYTES);
    slot.as_mut()
        .emplace(sized::<{ INLINE_FUTURE_BYTES - 15 }>());
    assert!(!slot.is_inline(), "one byte more is boxed");
    assert!(slot.as_mut().poll(&mut noop_cx()).is_pending());
    assert!(matches!(
        slot.as_mut().poll(&mut noop_cx()),
        Poll::Ready(Ok(()))
    ));

    let sixteen = Sixteen(7);
    slot.as_mut().emplace(async move {
        assert_eq!(std::ptr::from_ref(&sixteen) as usize % 16, 0);
        tokio::task::yield_now().await;
        assert_eq!(sixteen.0, 7);
        Ok(())
    });
    assert!(slot.is_inline(), "16-byte alignment is stored in place");
    assert!(slot.as_mut().poll(&mut noop_cx()).is_pending());
    assert!(matches!(
        slot.as_mut().poll(&mut noop_cx()),
        Poll::Ready(Ok(()))
    ));

    slot.as_mut().emplace(Nothing);
    assert!(slot.is_inline());
    assert!(matches!(
        slot.as_mut().poll(&mut noop_cx()),
        Poll::Ready(Ok(()))
    ));
}

#[tokio::test(flavor = "current_thread")]
async fn a_future_borrowing_its_own_locals_across_awaits_keeps_them() {
    let mut slot = pin!(InlineSlot::new());
    slot.as_mut().emplace(async {
        let mut total = 0_u32;
        let running = &mut total;
        for n in 1..=4 {
            tokio::task::yield_now().await;
            *running += n;
        }
        assert_eq!(total, 10);
        Ok(())
    });
    assert!(slot.is_inline());
    assert!(slot.as_mut().await.is_ok());
}

/// A hand-written future: pending once, then its poll panics; its destructor panics too.
/// (An `async` block cannot do this: its unwinding drops its state, and the second panic
/// aborts the process whatever the caller does.)
struct PanicsTwice {
    polled: bool,
}

impl Future for PanicsTwice {
    type Output = HandlerResult;

    fn poll(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<HandlerResult> {
        if !self.polled {
            self.polled = true;
            return Poll::Pending;
        }
        panic!("in poll");
    }
}

impl Drop for PanicsTwice {
    fn drop(&mut self) {
        assert!(std::thread::panicking(), "destructor panicked");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_panicking_destructor_after_a_panicking_poll_never_unwinds_out_of_the_call() {
    let both = |_: Event<u32>| PanicsTwice { polled: false };
    let mut call = pin!(InlineCall::new());
    let first = start_in(call.as_mut(), &both).await;
    assert!(first.is_pending());
    let outcome = catch_unwind(AssertUnwindSafe(|| call.as_mut().poll(&mut noop_cx())));
    let Ok(Poll::Ready(Err(HandlerError::Panicked { message }))) = outcome else {
        panic!("the destructor's panic escaped, or the poll's was lost: {outcome:?}");
    };
    assert!(message.contains("in poll"));
    assert!(!call.is_running());
}
