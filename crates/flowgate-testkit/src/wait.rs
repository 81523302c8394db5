//! Waiting in concurrency tests without fixed sleeps: poll a condition against a deadline, or
//! bound an await. Both run on tokio's clock, so on a paused clock (`start_paused`) they take
//! no real time.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! use std::sync::atomic::{AtomicBool, Ordering};
//! use std::sync::Arc;
//! use std::time::Duration;
//! use flowgate_testkit::wait::{wait_until, within};
//!
//! let done = Arc::new(AtomicBool::new(false));
//! let flag = Arc::clone(&done);
//! let task = tokio::spawn(async move { flag.store(true, Ordering::SeqCst) });
//! assert!(wait_until(Duration::from_secs(10), || done.load(Ordering::SeqCst)).await);
//! within("the task", task).await.unwrap();
//! # }
//! ```

use std::future::Future;
use std::time::Duration;

/// Polls `condition` every millisecond (of tokio's clock) until it holds or `deadline` has
/// passed; returns whether it held. Assert on the result: a `false` is the test's failure.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use std::time::Duration;
/// use flowgate_testkit::wait::wait_until;
/// assert!(!wait_until(Duration::from_secs(1), || false).await, "gives up at the deadline");
/// # }
/// ```
pub async fn wait_until(deadline: Duration, mut condition: impl FnMut() -> bool) -> bool {
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

/// Awaits `future`, panicking with "timed out waiting for `what`" if it takes longer than
/// 10 s (of tokio's clock).
///
/// # Panics
///
/// When `future` does not finish within 10 s: that is the test failing.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use flowgate_testkit::wait::within;
/// assert_eq!(within("an answer", async { 42 }).await, 42);
/// # }
/// ```
pub async fn within<F: Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(10), future)
        .await
        .unwrap_or_else(|_elapsed| panic!("timed out waiting for {what}"))
}

/// Polls the async `probe` every millisecond (of tokio's clock) until it returns `Some` or
/// `deadline` has passed; returns what it found. For conditions that need an await (a stats
/// call over the network, a publish that may fail until a server is back).
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use std::time::Duration;
/// use flowgate_testkit::wait::wait_for;
/// let calls = AtomicU32::new(0);
/// let third = wait_for(Duration::from_secs(1), || async {
///     let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
///     (n == 3).then_some(n)
/// })
/// .await;
/// assert_eq!(third, Some(3));
/// assert_eq!(wait_for(Duration::from_secs(1), || async { None::<()> }).await, None);
/// # }
/// ```
pub async fn wait_for<T, F, Fut>(deadline: Duration, mut probe: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let end = tokio::time::Instant::now() + deadline;
    loop {
        if let Some(found) = probe().await {
            return Some(found);
        }
        if tokio::time::Instant::now() >= end {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
