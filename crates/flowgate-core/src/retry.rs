//! Retry policy: how many attempts, and how long to wait between them.
//!
//! The wait before retry `n` (after `n` failed attempts) is
//! `min(max_backoff, initial_backoff * multiplier^(n-1))`, then jittered:
//!
//! - [`Jitter::None`]: exactly that;
//! - [`Jitter::Full`]: uniformly random in `[0, d]` (spreads retry storms the most);
//! - [`Jitter::Equal`] (default): uniformly random in `[d/2, d]` (never retries at once).
//!
//! Waits are meant for `tokio::time::sleep`, so tests run them on a paused clock.

use std::time::Duration;

use crate::{CoreError, HandlerError};

/// How a backoff delay is randomised.
///
/// `d` is the un-jittered wait before retry `n`:
/// `min(max_backoff, initial_backoff * multiplier^(n-1))`.
///
/// ```
/// use std::time::Duration;
/// use flowgate::{Jitter, RetryPolicy};
///
/// assert_eq!(Jitter::default(), Jitter::Equal);
/// // The same 100 ms wait and the same random draw (0.0), under each kind of jitter:
/// let policy = RetryPolicy::exponential(3, Duration::from_millis(100));
/// let wait = |jitter| policy.clone().jitter(jitter).backoff_with(1, 0.0);
/// assert_eq!(wait(Jitter::None), Duration::from_millis(100));
/// assert_eq!(wait(Jitter::Full), Duration::ZERO);
/// assert_eq!(wait(Jitter::Equal), Duration::from_millis(50));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Jitter {
    /// No randomness.
    None,
    /// Uniform in `[0, d]`.
    Full,
    /// Uniform in `[d/2, d]`.
    #[default]
    Equal,
}

/// How many times a failing delivery is attempted, and the backoff between attempts.
///
/// ```
/// use std::time::Duration;
/// use flowgate::{Jitter, RetryPolicy};
///
/// let policy = RetryPolicy::exponential(5, Duration::from_millis(50))
///     .max_backoff(Duration::from_secs(2))
///     .jitter(Jitter::None);
/// policy.validate()?;
/// assert_eq!(policy.max_attempts(), 5);
/// assert_eq!(policy.backoff(1), Duration::from_millis(50));
/// assert_eq!(policy.backoff(3), Duration::from_millis(200));
/// assert_eq!(policy.backoff(30), Duration::from_secs(2));
/// # Ok::<(), flowgate::CoreError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    max_attempts: u32,
    initial_backoff: Duration,
    max_backoff: Duration,
    multiplier: f64,
    jitter: Jitter,
}

impl Default for RetryPolicy {
    /// Five attempts, 100 ms doubling up to 10 s, equal jitter.
    fn default() -> Self {
        Self::exponential(5, Duration::from_millis(100))
    }
}

impl RetryPolicy {
    /// One attempt, no retry.
    ///
    /// ```
    /// # use flowgate::{HandlerError, RetryPolicy};
    /// let e = HandlerError::retryable("flaky");
    /// assert!(!RetryPolicy::never().should_retry(1, &e));
    /// ```
    pub fn never() -> Self {
        Self {
            max_attempts: 1,
            ..Self::exponential(1, Duration::ZERO)
        }
    }

    /// Up to `max_attempts` attempts in all (the first one included), waiting `initial_backoff`
    /// before the first retry and doubling after each, up to 10 s, with [`Jitter::Equal`].
    ///
    /// ```
    /// # use flowgate::RetryPolicy;
    /// # use std::time::Duration;
    /// let p = RetryPolicy::exponential(3, Duration::from_millis(10));
    /// assert_eq!(p.max_attempts(), 3);
    /// ```
    pub fn exponential(max_attempts: u32, initial_backoff: Duration) -> Self {
        Self {
            max_attempts,
            initial_backoff,
            max_backoff: Duration::from_secs(10).max(initial_backoff),
            multiplier: 2.0,
            jitter: Jitter::Equal,
        }
    }

    /// Caps each wait.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use flowgate::{Jitter, RetryPolicy};
    /// let p = RetryPolicy::exponential(10, Duration::from_millis(100))
    ///     .max_backoff(Duration::from_secs(1))
    ///     .jitter(Jitter::None);
    /// assert_eq!(p.backoff(4), Duration::from_millis(800));
    /// assert_eq!(p.backoff(5), Duration::from_secs(1)); // 1.6 s, capped
    /// ```
    #[must_use]
    pub fn max_backoff(mut self, max: Duration) -> Self {
        self.max_backoff = max;
        self
    }

    /// Growth factor between waits (at least 1.0; default 2.0).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use flowgate::{Jitter, RetryPolicy};
    /// let p = RetryPolicy::exponential(5, Duration::from_millis(100))
    ///     .multiplier(3.0)
    ///     .jitter(Jitter::None);
    /// assert_eq!(p.backoff(3), Duration::from_millis(900));
    /// // 1.0 makes the backoff constant.
    /// let constant = p.multiplier(1.0);
    /// assert_eq!(constant.backoff(4), Duration::from_millis(100));
    /// ```
    #[must_use]
    pub fn multiplier(mut self, multiplier: f64) -> Self {
        self.multiplier = multiplier;
        self
    }

    /// Jitter kind (default [`Jitter::Equal`]).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use flowgate::{Jitter, RetryPolicy};
    /// let p = RetryPolicy::exponential(5, Duration::from_millis(100)).jitter(Jitter::Full);
    /// for _ in 0..100 {
    ///     assert!(p.backoff(2) <= Duration::from_millis(200));
    /// }
    /// ```
    #[must_use]
    pub fn jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// Attempts in all, the first one included.
    ///
    /// ```
    /// # use flowgate::RetryPolicy;
    /// assert_eq!(RetryPolicy::default().max_attempts(), 5);
    /// assert_eq!(RetryPolicy::never().max_attempts(), 1);
    /// ```
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// Checks the policy; components that take a policy call this when they are built.
    ///
    /// ```
    /// # use flowgate::RetryPolicy;
    /// # use std::time::Duration;
    /// assert!(RetryPolicy::exponential(0, Duration::ZERO).validate().is_err());
    /// assert!(RetryPolicy::default().multiplier(0.5).validate().is_err());
    /// ```
    ///
    /// # Errors
    ///
    /// [`CoreError::InvalidConfig`] when `max_attempts` is 0, the multiplier is below 1 or not
    /// finite, or `max_backoff` is below `initial_backoff`.
    pub fn validate(&self) -> Result<(), CoreError> {
        if self.max_attempts == 0 {
            return Err(CoreError::InvalidConfig {
                setting: "max_attempts",
                reason: "must be at least 1 (1 means no retry)".to_owned(),
            });
        }
        if !self.multiplier.is_finite() || self.multiplier < 1.0 {
            return Err(CoreError::InvalidConfig {
                setting: "multiplier",
                reason: format!("must be a finite number >= 1.0, got {}", self.multiplier),
            });
        }
        if self.max_backoff < self.initial_backoff {
            return Err(CoreError::InvalidConfig {
                setting: "max_backoff",
                reason: format!(
                    "{:?} is below the initial backoff {:?}",
                    self.max_backoff, self.initial_backoff
                ),
            });
        }
        Ok(())
    }

    /// Whether to try again after `attempts` failed attempts ending in `error`.
    ///
    /// ```
    /// # use flowgate::{HandlerError, RetryPolicy};
    /// # use std::time::Duration;
    /// let p = RetryPolicy::exponential(2, Duration::ZERO);
    /// assert!(p.should_retry(1, &HandlerError::retryable("x")));
    /// assert!(!p.should_retry(2, &HandlerError::retryable("x")));
    /// assert!(!p.should_retry(1, &HandlerError::permanent("x")));
    /// ```
    pub fn should_retry(&self, attempts: u32, error: &HandlerError) -> bool {
        error.is_retryable() && attempts < self.max_attempts
    }

    /// The un-jittered wait after `failed_attempts` failures (1 = before the first retry).
    fn base_backoff(&self, failed_attempts: u32) -> Duration {
        let exponent = failed_attempts.saturating_sub(1).min(1024);
        let factor = self
            .multiplier
            .powi(i32::try_from(exponent).unwrap_or(i32::MAX));
        let secs = self.initial_backoff.as_secs_f64() * factor;
        if secs.is_finite() && secs < self.max_backoff.as_secs_f64() {
            Duration::from_secs_f64(secs)
        } else {
            self.max_backoff
        }
    }

    /// The jittered wait after `failed_attempts` failures, with randomness drawn from
    /// `unit` (a number in `[0, 1)`). Deterministic, for tests and simulations.
    ///
    /// ```
    /// # use flowgate::{Jitter, RetryPolicy};
    /// # use std::time::Duration;
    /// let p = RetryPolicy::exponential(5, Duration::from_millis(100)).jitter(Jitter::Full);
    /// assert_eq!(p.backoff_with(2, 0.5), Duration::from_millis(100));
    /// ```
    pub fn backoff_with(&self, failed_attempts: u32, unit: f64) -> Duration {
        let base = self.base_backoff(failed_attempts);
        let unit = if unit.is_finite() {
            unit.clamp(0.0, 1.0)
        } else {
            0.0
        };
        match self.jitter {
            Jitter::None => base,
            Jitter::Full => base.mul_f64(unit),
            Jitter::Equal => base / 2 + (base / 2).mul_f64(unit),
        }
    }

    /// The jittered wait after `failed_attempts` failures.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use flowgate::RetryPolicy;
    /// // Default jitter (`Equal`): somewhere in [d/2, d], with d = 100 ms * 2 = 200 ms.
    /// let p = RetryPolicy::exponential(5, Duration::from_millis(100));
    /// let wait = p.backoff(2);
    /// assert!(wait >= Duration::from_millis(100) && wait <= Duration::from_millis(200));
    /// ```
    pub fn backoff(&self, failed_attempts: u32) -> Duration {
        match self.jitter {
            Jitter::None => self.base_backoff(failed_attempts),
            _ => self.backoff_with(failed_attempts, fastrand::f64()),
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn jittered_backoff_stays_within_its_bounds(
            attempts in 1_u32..200,
            initial_ms in 0_u64..10_000,
            extra_ms in 0_u64..100_000,
            multiplier in 1.0_f64..8.0,
            unit in 0.0_f64..1.0,
        ) {
            let initial = Duration::from_millis(initial_ms);
            let max = initial + Duration::from_millis(extra_ms);
            for jitter in [Jitter::None, Jitter::Full, Jitter::Equal] {
                let p = RetryPolicy::exponential(10, initial)
                    .max_backoff(max)
                    .multiplier(multiplier)
                    .jitter(jitter);
                prop_assert!(p.validate().is_ok());
                let base = p.base_backoff(attempts);
                prop_assert!(base <= max, "base {base:?} above max {max:?}");
                let d = p.backoff_with(attempts, unit);
                prop_assert!(d <= base, "{jitter:?}: {d:?} above base {base:?}");
                if jitter == Jitter::Equal {
                    prop_assert!(d >= base / 2, "equal jitter {d:?} below half of {base:?}");
                }
            }
        }

        #[test]
        fn backoff_never_shrinks_as_attempts_grow(attempts in 1_u32..100) {
            let p = RetryPolicy::exponential(10, Duration::from_millis(3)).jitter(Jitter::None);
            prop_assert!(p.backoff(attempts + 1) >= p.backoff(attempts));
        }
    }
}
