//! Helpers shared by the store's integration tests.
#![allow(dead_code)] // each test file uses a different subset

use std::future::Future;
use std::time::Duration;

use flowgate_core::Event;

/// Awaits `future`, failing the test with `what` if it takes longer than 10 s.
pub(crate) async fn within<F: Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(10), future)
        .await
        .unwrap_or_else(|_elapsed| panic!("timed out waiting for {what}"))
}

/// An event of type `e` carrying `payload`.
pub(crate) fn ev(payload: u64) -> Event<u64> {
    Event::new("e", payload).expect("valid type")
}
