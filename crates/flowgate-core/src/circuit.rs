//! A circuit breaker: stop calling a handler that keeps failing, probe it again later.
//!
//! States:
//!
//! - **closed**: calls pass; `failure_threshold` consecutive failures open the circuit.
//! - **open**: calls are refused at once for `open_for`; then the circuit is half-open.
//! - **half-open**: up to `half_open_probes` calls pass at a time; a success closes the circuit,
//!   a failure opens it again for another `open_for`.
//!
//! Time is `tokio::time::Instant`, so tests drive the breaker on a paused clock.
//!
//! Invariant: the state is only changed under the one lock, and a [`CircuitPermit`] that was
//! granted in half-open state gives its probe slot back exactly once (on success, failure or
//! drop).

use std::time::Duration;

use tokio::time::Instant;

use crate::sync::Mutex;
use crate::CoreError;

/// Circuit breaker settings.
///
/// ```
/// use std::time::Duration;
/// use flowgate::CircuitBreakerConfig;
///
/// let config = CircuitBreakerConfig::new(5, Duration::from_secs(30)).half_open_probes(1);
/// assert!(config.validate().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CircuitBreakerConfig {
    failure_threshold: u32,
    open_for: Duration,
    half_open_probes: u32,
}

impl CircuitBreakerConfig {
    /// Opens after `failure_threshold` consecutive failures, for `open_for`.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use flowgate::{CircuitBreaker, CircuitBreakerConfig, CircuitState};
    /// let breaker = CircuitBreaker::new(CircuitBreakerConfig::new(3, Duration::from_secs(30)))?;
    /// for _ in 0..2 {
    ///     breaker.try_acquire().unwrap().failure();
    /// }
    /// assert_eq!(breaker.state(), CircuitState::Closed);
    /// breaker.try_acquire().unwrap().failure();
    /// assert_eq!(breaker.state(), CircuitState::Open);
    /// # Ok::<(), flowgate::CoreError>(())
    /// ```
    pub fn new(failure_threshold: u32, open_for: Duration) -> Self {
        Self {
            failure_threshold,
            open_for,
            half_open_probes: 1,
        }
    }

    /// How many calls may probe a half-open circuit at once (default 1).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use flowgate::{CircuitBreaker, CircuitBreakerConfig};
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), flowgate::CoreError> {
    /// let config = CircuitBreakerConfig::new(1, Duration::from_secs(5)).half_open_probes(2);
    /// let breaker = CircuitBreaker::new(config)?;
    /// breaker.try_acquire().unwrap().failure();
    /// tokio::time::advance(Duration::from_secs(5)).await;
    /// let _probe1 = breaker.try_acquire().expect("first probe");
    /// let _probe2 = breaker.try_acquire().expect("second probe");
    /// assert!(breaker.try_acquire().is_none(), "no third probe at once");
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub fn half_open_probes(mut self, probes: u32) -> Self {
        self.half_open_probes = probes;
        self
    }

    /// Checks the settings.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use flowgate::{CircuitBreakerConfig, CoreError};
    /// assert!(CircuitBreakerConfig::new(1, Duration::ZERO).validate().is_ok());
    /// let zero_threshold = CircuitBreakerConfig::new(0, Duration::from_secs(1));
    /// assert!(matches!(
    ///     zero_threshold.validate(),
    ///     Err(CoreError::InvalidConfig { setting: "failure_threshold", .. })
    /// ));
    /// let no_probes = CircuitBreakerConfig::new(1, Duration::from_secs(1)).half_open_probes(0);
    /// assert!(no_probes.validate().is_err());
    /// ```
    ///
    /// # Errors
    ///
    /// [`CoreError::InvalidConfig`] when the threshold or the probe count is 0.
    pub fn validate(&self) -> Result<(), CoreError> {
        if self.failure_threshold == 0 {
            return Err(CoreError::InvalidConfig {
                setting: "failure_threshold",
                reason: "must be at least 1".to_owned(),
            });
        }
        if self.half_open_probes == 0 {
            return Err(CoreError::InvalidConfig {
                setting: "half_open_probes",
                reason: "must be at least 1, or the circuit could never close again".to_owned(),
            });
        }
        Ok(())
    }
}

/// The observable state of a [`CircuitBreaker`].
///
/// ```
/// # use std::time::Duration;
/// use flowgate::{CircuitBreaker, CircuitBreakerConfig, CircuitState};
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), flowgate::CoreError> {
/// let breaker = CircuitBreaker::new(CircuitBreakerConfig::new(1, Duration::from_secs(5)))?;
/// assert_eq!(breaker.state(), CircuitState::Closed);
/// breaker.try_acquire().unwrap().failure();
/// assert_eq!(breaker.state(), CircuitState::Open);
/// tokio::time::advance(Duration::from_secs(5)).await;
/// assert_eq!(breaker.state(), CircuitState::HalfOpen);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CircuitState {
    /// Calls pass.
    Closed,
    /// Calls are refused.
    Open,
    /// A limited number of probe calls pass.
    HalfOpen,
}

#[derive(Debug)]
enum State {
    Closed { consecutive_failures: u32 },
    Open { until: Instant },
    HalfOpen { probes_in_flight: u32 },
}

/// A circuit breaker: stop calling something that keeps failing, probe it again later.
///
/// - **closed**: calls pass; `failure_threshold` consecutive failures open the circuit.
/// - **open**: calls are refused at once for `open_for`; then the circuit is half-open.
/// - **half-open**: up to `half_open_probes` calls pass at a time; a success closes the circuit,
///   a failure opens it again for another `open_for`.
///
/// Time is `tokio::time::Instant`, so tests drive the breaker on a paused clock.
///
/// ```
/// use std::time::Duration;
/// use flowgate::{CircuitBreaker, CircuitBreakerConfig, CircuitState};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), flowgate::CoreError> {
/// let breaker = CircuitBreaker::new(CircuitBreakerConfig::new(2, Duration::from_secs(10)))?;
/// breaker.try_acquire().unwrap().failure();
/// breaker.try_acquire().unwrap().failure();
/// assert_eq!(breaker.state(), CircuitState::Open);
/// assert!(breaker.try_acquire().is_none());
///
/// tokio::time::advance(Duration::from_secs(10)).await;
/// let probe = breaker.try_acquire().expect("half-open lets one probe through");
/// probe.success();
/// assert_eq!(breaker.state(), CircuitState::Closed);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct CircuitBreaker {
    config: CircuitBreakerConfig,
    /// Changed only by `try_acquire` and by permits settling.
    state: Mutex<Locked>,
}

/// The state and the number of the period it is in: every change of state starts a new
/// period, and a permit settles only in the period that granted it.
#[derive(Debug)]
struct Locked {
    state: State,
    period: u64,
}

impl Locked {
    fn enter(&mut self, state: State) {
        self.state = state;
        self.period += 1;
    }
}

impl CircuitBreaker {
    /// Creates a closed breaker.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use flowgate::{CircuitBreaker, CircuitBreakerConfig, CircuitState};
    /// let breaker = CircuitBreaker::new(CircuitBreakerConfig::new(5, Duration::from_secs(30)))?;
    /// assert_eq!(breaker.state(), CircuitState::Closed);
    /// assert!(CircuitBreaker::new(CircuitBreakerConfig::new(0, Duration::from_secs(30))).is_err());
    /// # Ok::<(), flowgate::CoreError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// See [`CircuitBreakerConfig::validate`].
    pub fn new(config: CircuitBreakerConfig) -> Result<Self, CoreError> {
        config.validate()?;
        Ok(Self::from_validated(config))
    }

    /// Creates a closed breaker from a config that passed `validate`.
    pub(crate) fn from_validated(config: CircuitBreakerConfig) -> Self {
        Self {
            config,
            state: Mutex::new(Locked {
                state: State::Closed {
                    consecutive_failures: 0,
                },
                period: 0,
            }),
        }
    }

    /// The current state (an open circuit whose period ended reports half-open).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use flowgate::{CircuitBreaker, CircuitBreakerConfig, CircuitState};
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), flowgate::CoreError> {
    /// let breaker = CircuitBreaker::new(CircuitBreakerConfig::new(1, Duration::from_secs(5)))?;
    /// breaker.try_acquire().unwrap().failure();
    /// tokio::time::advance(Duration::from_millis(4_999)).await;
    /// assert_eq!(breaker.state(), CircuitState::Open);
    /// tokio::time::advance(Duration::from_millis(1)).await;
    /// assert_eq!(breaker.state(), CircuitState::HalfOpen);
    /// # Ok(())
    /// # }
    /// ```
    pub fn state(&self) -> CircuitState {
        match self.state.lock().state {
            State::Closed { .. } => CircuitState::Closed,
            State::Open { until } if Instant::now() < until => CircuitState::Open,
            State::Open { .. } | State::HalfOpen { .. } => CircuitState::HalfOpen,
        }
    }

    /// Asks to make one call: `None` while the circuit is open (or half-open with every probe
    /// slot taken). Settle the permit with [`CircuitPermit::success`] or
    /// [`CircuitPermit::failure`]; dropping it unsettled counts as neither.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use flowgate::{CircuitBreaker, CircuitBreakerConfig, CircuitState};
    /// let breaker = CircuitBreaker::new(CircuitBreakerConfig::new(1, Duration::from_secs(30)))?;
    /// drop(breaker.try_acquire().unwrap()); // abandoned: not a failure
    /// assert_eq!(breaker.state(), CircuitState::Closed);
    /// breaker.try_acquire().unwrap().failure();
    /// assert!(breaker.try_acquire().is_none(), "open: the call must not be made");
    /// # Ok::<(), flowgate::CoreError>(())
    /// ```
    pub fn try_acquire(&self) -> Option<CircuitPermit<'_>> {
        let mut locked = self.state.lock();
        let probe = match locked.state {
            State::Closed { .. } => false,
            State::Open { until } => {
                if Instant::now() < until {
                    return None;
                }
                locked.enter(State::HalfOpen {
                    probes_in_flight: 1,
                });
                true
            }
            State::HalfOpen {
                ref mut probes_in_flight,
            } => {
                if *probes_in_flight >= self.config.half_open_probes {
                    return None;
                }
                *probes_in_flight += 1;
                true
            }
        };
        Some(CircuitPermit {
            breaker: self,
            probe,
            period: locked.period,
            settled: false,
        })
    }

    fn settle(&self, permit: &CircuitPermit<'_>, outcome: Option<bool>) {
        let mut locked = self.state.lock();
        if locked.period != permit.period {
            // Granted in an earlier period (e.g. while closed, settled after the circuit
            // opened, or a probe settled after another probe closed it): it says nothing
            // about the current period.
            return;
        }
        match (&mut locked.state, outcome) {
            (
                State::Closed {
                    consecutive_failures,
                },
                Some(true),
            ) => *consecutive_failures = 0,
            (
                State::Closed {
                    consecutive_failures,
                },
                Some(false),
            ) => {
                *consecutive_failures += 1;
                if *consecutive_failures >= self.config.failure_threshold {
                    locked.enter(self.open_state());
                }
            }
            (State::HalfOpen { .. }, Some(true)) if permit.probe => {
                locked.enter(State::Closed {
                    consecutive_failures: 0,
                });
            }
            (State::HalfOpen { .. }, Some(false)) if permit.probe => {
                locked.enter(self.open_state());
            }
            (State::HalfOpen { probes_in_flight }, None) if permit.probe => {
                *probes_in_flight = probes_in_flight.saturating_sub(1);
            }
            // An abandoned closed-state permit counts as nothing.
            _ => {}
        }
    }

    fn open_state(&self) -> State {
        let now = Instant::now();
        // An `open_for` too large to add means "open for good" (until far in the future).
        let until = now
            .checked_add(self.config.open_for)
            .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600));
        State::Open { until }
    }
}

/// Permission for one call through a [`CircuitBreaker`].
///
/// ```
/// # use std::time::Duration;
/// use flowgate::{CircuitBreaker, CircuitBreakerConfig, CircuitState};
///
/// fn call_service(fail: bool) -> Result<(), &'static str> {
///     if fail { Err("unavailable") } else { Ok(()) }
/// }
///
/// let breaker = CircuitBreaker::new(CircuitBreakerConfig::new(1, Duration::from_secs(30)))?;
/// for fail in [false, true, false] {
///     let Some(permit) = breaker.try_acquire() else {
///         continue; // open: skip the call
///     };
///     match call_service(fail) {
///         Ok(()) => permit.success(),
///         Err(_) => permit.failure(),
///     }
/// }
/// assert_eq!(breaker.state(), CircuitState::Open);
/// # Ok::<(), flowgate::CoreError>(())
/// ```
#[derive(Debug)]
#[must_use = "settle the permit with success() or failure()"]
pub struct CircuitPermit<'a> {
    breaker: &'a CircuitBreaker,
    probe: bool,
    /// The breaker's period when this permit was granted.
    period: u64,
    settled: bool,
}

impl CircuitPermit<'_> {
    /// The call succeeded. In the closed state this resets the count of consecutive
    /// failures; a half-open probe's success closes the circuit.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use flowgate::{CircuitBreaker, CircuitBreakerConfig, CircuitState};
    /// let breaker = CircuitBreaker::new(CircuitBreakerConfig::new(2, Duration::from_secs(30)))?;
    /// breaker.try_acquire().unwrap().failure();
    /// breaker.try_acquire().unwrap().success();
    /// breaker.try_acquire().unwrap().failure();
    /// assert_eq!(breaker.state(), CircuitState::Closed, "the failures were not consecutive");
    /// # Ok::<(), flowgate::CoreError>(())
    /// ```
    pub fn success(mut self) {
        self.settled = true;
        self.breaker.settle(&self, Some(true));
    }

    /// The call failed. Enough consecutive failures open the circuit; a half-open probe's
    /// failure opens it again at once.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use flowgate::{CircuitBreaker, CircuitBreakerConfig, CircuitState};
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), flowgate::CoreError> {
    /// let breaker = CircuitBreaker::new(CircuitBreakerConfig::new(3, Duration::from_secs(5)))?;
    /// for _ in 0..3 {
    ///     breaker.try_acquire().unwrap().failure();
    /// }
    /// tokio::time::advance(Duration::from_secs(5)).await;
    /// breaker.try_acquire().expect("half-open probe").failure();
    /// assert_eq!(breaker.state(), CircuitState::Open);
    /// # Ok(())
    /// # }
    /// ```
    pub fn failure(mut self) {
        self.settled = true;
        self.breaker.settle(&self, Some(false));
    }
}

impl Drop for CircuitPermit<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.breaker.settle(self, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(threshold: u32, probes: u32) -> CircuitBreaker {
        CircuitBreaker::new(
            CircuitBreakerConfig::new(threshold, Duration::from_secs(5)).half_open_probes(probes),
        )
        .unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_success_resets_the_failure_count() {
        let b = breaker(3, 1);
        b.try_acquire().unwrap().failure();
        b.try_acquire().unwrap().failure();
        b.try_acquire().unwrap().success();
        b.try_acquire().unwrap().failure();
        b.try_acquire().unwrap().failure();
        assert_eq!(b.state(), CircuitState::Closed);
        b.try_acquire().unwrap().failure();
        assert_eq!(b.state(), CircuitState::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn open_refuses_until_the_period_ends_then_probes_are_limited() {
        let b = breaker(1, 2);
        b.try_acquire().unwrap().failure();
        tokio::time::advance(Duration::from_millis(4_999)).await;
        assert!(b.try_acquire().is_none(), "still open 1 ms before the end");
        tokio::time::advance(Duration::from_millis(1)).await;
        let p1 = b.try_acquire().expect("first probe");
        let p2 = b.try_acquire().expect("second probe");
        assert!(b.try_acquire().is_none(), "only two probes at once");
        drop(p2);
        let p3 = b
            .try_acquire()
            .expect("a dropped probe gives its slot back");
        p1.failure();
        assert_eq!(b.state(), CircuitState::Open, "a failed probe reopens");
        p3.success();
        assert_eq!(
            b.state(),
            CircuitState::Open,
            "a stale probe does not close it"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_permit_settles_only_in_the_period_that_granted_it() {
        let b = breaker(2, 2);
        let old = b.try_acquire().unwrap(); // granted while closed, period 0
        b.try_acquire().unwrap().failure();
        b.try_acquire().unwrap().failure();
        assert_eq!(b.state(), CircuitState::Open);
        tokio::time::advance(Duration::from_secs(5)).await;
        let p1 = b.try_acquire().unwrap();
        let p2 = b.try_acquire().unwrap();
        p1.success();
        assert_eq!(b.state(), CircuitState::Closed);
        // A second probe failing after the first one closed the circuit is stale...
        p2.failure();
        // ...and so is the permit from before the circuit opened.
        old.failure();
        b.try_acquire().unwrap().failure();
        assert_eq!(
            b.state(),
            CircuitState::Closed,
            "only one failure counts in the new closed period"
        );
    }

    #[test]
    fn zero_threshold_is_a_typed_error() {
        assert!(CircuitBreaker::new(CircuitBreakerConfig::new(0, Duration::ZERO)).is_err());
        assert!(CircuitBreaker::new(
            CircuitBreakerConfig::new(1, Duration::ZERO).half_open_probes(0)
        )
        .is_err());
    }
}
