//! The in-process rate limiter: a sliding window of allowed attempts per
//! tenant, user and action, timed by the [`Clock`] port so tests can pin time.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use afritalk_ports::{
    Clock, RateAction, RateDecision, RateLimiter, RateLimits, StoreResult, TenantId, UserId,
};
use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};

type Key = (TenantId, UserId, RateAction);

/// After this many checks, windows that have fully expired are dropped, so the
/// map holds only users active within their longest window.
const SWEEP_EVERY: u64 = 1_024;

/// Sliding-window rate limiter kept in process memory (one node).
///
/// Each (tenant, user, action) keeps the times of its allowed attempts within the
/// window, at most `max` of them. An attempt passes when fewer than `max` remain;
/// a refused attempt records nothing, so it does not consume allowance, and its
/// `retry_after` is the time until the oldest allowed attempt leaves the window.
pub struct LocalRateLimiter {
    clock: Arc<dyn Clock>,
    limits: RateLimits,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    windows: HashMap<Key, VecDeque<DateTime<Utc>>>,
    checks: u64,
}

/// When an attempt made at `at` stops counting (`None`: beyond the calendar).
fn expiry(at: DateTime<Utc>, window: TimeDelta) -> Option<DateTime<Utc>> {
    at.checked_add_signed(window)
}

impl LocalRateLimiter {
    /// A limiter applying `limits`, reading time from `clock`.
    pub fn new(clock: Arc<dyn Clock>, limits: RateLimits) -> Self {
        Self {
            clock,
            limits,
            state: Mutex::new(State::default()),
        }
    }

    /// A limiter with the default [`RateLimits`].
    pub fn with_defaults(clock: Arc<dyn Clock>) -> Self {
        Self::new(clock, RateLimits::default())
    }

    /// The limits in force.
    pub fn limits(&self) -> &RateLimits {
        &self.limits
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Each check is one consistent update of one window: a poisoned state is still valid.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn decide(&self, key: Key) -> RateDecision {
        let limit = self.limits.get(key.2);
        let window = TimeDelta::from_std(limit.per).unwrap_or(TimeDelta::MAX);
        let now = self.clock.now();
        if limit.max == 0 {
            return RateDecision::Limited {
                retry_after: limit.per,
            };
        }

        let mut state = self.lock();
        state.checks = state.checks.wrapping_add(1);
        if state.checks.is_multiple_of(SWEEP_EVERY) {
            let limits = self.limits;
            state.windows.retain(|(_, _, action), times| {
                let window = TimeDelta::from_std(limits.get(*action).per).unwrap_or(TimeDelta::MAX);
                times
                    .back()
                    .is_some_and(|last| expiry(*last, window).is_none_or(|end| end > now))
            });
        }

        let times = state.windows.entry(key).or_default();
        while times
            .front()
            .is_some_and(|first| expiry(*first, window).is_some_and(|end| end <= now))
        {
            times.pop_front();
        }
        if times.len() < limit.max as usize {
            times.push_back(now);
            return RateDecision::Allowed;
        }
        let retry_after = times
            .front()
            .and_then(|first| expiry(*first, window))
            .and_then(|end| (end - now).to_std().ok())
            .unwrap_or(limit.per);
        RateDecision::Limited { retry_after }
    }
}

impl fmt::Debug for LocalRateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalRateLimiter")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl RateLimiter for LocalRateLimiter {
    async fn check(
        &self,
        tenant: &TenantId,
        user: &UserId,
        action: RateAction,
    ) -> StoreResult<RateDecision> {
        Ok(self.decide((tenant.clone(), user.clone(), action)))
    }
}

#[cfg(test)]
mod tests {
    use futures::executor::block_on;

    use std::time::Duration;

    use afritalk_ports::RateLimit;

    use super::*;

    struct ManualClock(Mutex<DateTime<Utc>>);

    impl ManualClock {
        fn new() -> Arc<Self> {
            Arc::new(Self(Mutex::new(
                DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            )))
        }

        fn advance(&self, by: Duration) {
            let mut now = self.0.lock().unwrap();
            *now += TimeDelta::from_std(by).unwrap();
        }
    }

    impl Clock for ManualClock {
        fn now(&self) -> DateTime<Utc> {
            *self.0.lock().unwrap()
        }
    }

    fn tenant(id: &str) -> TenantId {
        TenantId::parse(id).unwrap()
    }

    fn user(id: &str) -> UserId {
        UserId::parse(id).unwrap()
    }

    fn limiter(clock: Arc<ManualClock>, max: u32, secs: u64) -> LocalRateLimiter {
        let limit = RateLimit::new(max, Duration::from_secs(secs));
        LocalRateLimiter::new(clock, RateLimits::default().with(RateAction::Send, limit))
    }

    fn check(limiter: &LocalRateLimiter, t: &str, u: &str, action: RateAction) -> RateDecision {
        block_on(limiter.check(&tenant(t), &user(u), action)).unwrap()
    }

    #[test]
    fn defaults_match_the_documented_limits() {
        let limits = RateLimits::default();
        assert_eq!(
            limits.get(RateAction::Send),
            RateLimit::new(30, Duration::from_secs(10))
        );
        assert_eq!(
            limits.get(RateAction::Modify),
            RateLimit::new(20, Duration::from_secs(60))
        );
        assert_eq!(
            limits.get(RateAction::Receipt),
            RateLimit::new(120, Duration::from_secs(10))
        );
        assert_eq!(
            limits.get(RateAction::Presence),
            RateLimit::new(30, Duration::from_secs(10))
        );
    }

    #[test]
    fn allows_max_attempts_then_refuses_with_the_time_until_the_next_passes() {
        let clock = ManualClock::new();
        let limiter = limiter(clock.clone(), 3, 10);
        for _ in 0..2 {
            assert_eq!(
                check(&limiter, "t", "u", RateAction::Send),
                RateDecision::Allowed
            );
            clock.advance(Duration::from_secs(1));
        }
        assert_eq!(
            check(&limiter, "t", "u", RateAction::Send),
            RateDecision::Allowed
        );
        // Attempts at t=0, 1, 2 s; now t=2 s: the first leaves the window at t=10 s.
        assert_eq!(
            check(&limiter, "t", "u", RateAction::Send),
            RateDecision::Limited {
                retry_after: Duration::from_secs(8)
            }
        );
        clock.advance(Duration::from_millis(7_999));
        assert_eq!(
            check(&limiter, "t", "u", RateAction::Send),
            RateDecision::Limited {
                retry_after: Duration::from_millis(1)
            }
        );
        clock.advance(Duration::from_millis(1));
        assert_eq!(
            check(&limiter, "t", "u", RateAction::Send),
            RateDecision::Allowed
        );
        // Only one slot came free.
        assert!(matches!(
            check(&limiter, "t", "u", RateAction::Send),
            RateDecision::Limited { .. }
        ));
    }

    #[test]
    fn refused_attempts_do_not_consume_allowance() {
        let clock = ManualClock::new();
        let limiter = limiter(clock.clone(), 2, 10);
        assert_eq!(
            check(&limiter, "t", "u", RateAction::Send),
            RateDecision::Allowed
        );
        assert_eq!(
            check(&limiter, "t", "u", RateAction::Send),
            RateDecision::Allowed
        );
        for _ in 0..50 {
            clock.advance(Duration::from_millis(100));
            assert!(matches!(
                check(&limiter, "t", "u", RateAction::Send),
                RateDecision::Limited { .. }
            ));
        }
        // Hammering did not push the window: both slots free 10 s after the first two.
        clock.advance(Duration::from_secs(5));
        assert_eq!(
            check(&limiter, "t", "u", RateAction::Send),
            RateDecision::Allowed
        );
        assert_eq!(
            check(&limiter, "t", "u", RateAction::Send),
            RateDecision::Allowed
        );
    }

    #[test]
    fn recovers_fully_after_the_window() {
        let clock = ManualClock::new();
        let limiter = limiter(clock.clone(), 5, 10);
        for _ in 0..5 {
            assert_eq!(
                check(&limiter, "t", "u", RateAction::Send),
                RateDecision::Allowed
            );
        }
        assert!(matches!(
            check(&limiter, "t", "u", RateAction::Send),
            RateDecision::Limited { retry_after } if retry_after == Duration::from_secs(10)
        ));
        clock.advance(Duration::from_secs(10));
        for _ in 0..5 {
            assert_eq!(
                check(&limiter, "t", "u", RateAction::Send),
                RateDecision::Allowed
            );
        }
    }

    #[test]
    fn users_actions_and_tenants_have_separate_allowances() {
        let clock = ManualClock::new();
        let limiter = limiter(clock, 1, 10);
        assert_eq!(
            check(&limiter, "t", "u", RateAction::Send),
            RateDecision::Allowed
        );
        assert!(matches!(
            check(&limiter, "t", "u", RateAction::Send),
            RateDecision::Limited { .. }
        ));
        assert_eq!(
            check(&limiter, "t", "v", RateAction::Send),
            RateDecision::Allowed
        );
        assert_eq!(
            check(&limiter, "other", "u", RateAction::Send),
            RateDecision::Allowed
        );
        assert_eq!(
            check(&limiter, "t", "u", RateAction::Modify),
            RateDecision::Allowed
        );
    }

    #[test]
    fn a_zero_limit_refuses_everything() {
        let clock = ManualClock::new();
        let limiter = limiter(clock, 0, 10);
        assert_eq!(
            check(&limiter, "t", "u", RateAction::Send),
            RateDecision::Limited {
                retry_after: Duration::from_secs(10)
            }
        );
    }

    #[test]
    fn expired_windows_are_swept() {
        let clock = ManualClock::new();
        let limiter = limiter(clock.clone(), 1, 10);
        for i in 0..SWEEP_EVERY - 1 {
            check(&limiter, "t", &format!("u{i}"), RateAction::Send);
        }
        clock.advance(Duration::from_secs(10));
        check(&limiter, "t", "last", RateAction::Send);
        assert_eq!(limiter.lock().windows.len(), 1);
    }
}
