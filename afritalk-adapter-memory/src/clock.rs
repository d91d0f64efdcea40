//! The real time source.

use afritalk_ports::Clock;
use chrono::{DateTime, SubsecRound, Utc};

/// The system clock in UTC, truncated to microseconds (the precision every store keeps).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl SystemClock {
    /// The system clock.
    pub fn new() -> Self {
        Self
    }
}

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        // Truncated here so that a time read back from any store equals the time written.
        Utc::now().trunc_subsecs(6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_has_microsecond_precision() {
        for _ in 0..100 {
            let now = SystemClock::new().now();
            assert_eq!(now.timestamp_subsec_nanos() % 1_000, 0);
        }
    }

    #[test]
    fn now_is_close_to_the_system_time() {
        let before = Utc::now();
        let now = SystemClock.now();
        let after = Utc::now();
        assert!(now <= after);
        assert!(before - now < chrono::TimeDelta::microseconds(1));
    }
}
