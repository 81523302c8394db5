//! The inline handler-future slot: every stored future is polled where it was written and
//! dropped exactly once (when it finishes, panics, is replaced, or the slot goes away); futures
//! too big or too aligned for the slot are boxed; panics anywhere come back as
//! `HandlerError::Panicked`.

use std::future::{poll_fn, Future};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use flowgate_core::{
    Event, HandlerError, HandlerResult, InlineCall, InlineSlot, INLINE_FUTURE_BYTES,
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
    let mut event = Some(Event::new("a", 1).unwrap());
    let first = poll_fn(|cx| {
        Poll::Ready(
            call.as_mut()
                .start(&panics_in_call, event.take().unwrap(), cx),
        )
    })
    .await;
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
    let mut event = Some(Event::new("a", 1).unwrap());
    let first = poll_fn(|cx| {
        Poll::Ready(
            call.as_mut()
                .start(&panics_later, event.take().unwrap(), cx),
        )
    })
    .await;
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
