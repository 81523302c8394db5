//! Helpers shared by the bus's integration tests.
#![allow(dead_code)] // each test file uses a different subset

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Sets its flag when dropped: shows that a handler's future was dropped (cancelled).
pub(crate) struct SetOnDrop(pub(crate) Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Polls `condition` until it holds or `deadline` (on the tokio clock) passes; returns whether
/// it held. On a paused clock the polling sleeps advance virtual time only.
pub(crate) async fn wait_until(deadline: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let end = tokio::time::Instant::now() + deadline;
    loop {
        if condition() {
            return true;
        }
        if tokio::time::Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Awaits `future`, failing the test with `what` if it takes longer than 10 s.
pub(crate) async fn within<F: Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(10), future)
        .await
        .unwrap_or_else(|_elapsed| panic!("timed out waiting for {what}"))
}
