//! The 2-minute edit window: a message may be edited strictly less than two
//! minutes after its creation, by the server clock.

use chrono::{DateTime, TimeDelta, Utc};

/// How long after creation a message stays editable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EditWindow {
    length: TimeDelta,
}

impl EditWindow {
    /// The product's window: two minutes.
    pub const STANDARD: EditWindow = EditWindow {
        length: TimeDelta::minutes(2),
    };

    /// Whether a message created at `created_at` may still be edited at `now`.
    /// Open at 1:59.999, closed at 2:00.000 exactly.
    pub fn is_open(&self, created_at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        now - created_at < self.length
    }
}

impl Default for EditWindow {
    fn default() -> Self {
        Self::STANDARD
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_700_000_000_000 + ms).unwrap()
    }

    #[test]
    fn open_until_the_last_millisecond() {
        let w = EditWindow::STANDARD;
        assert!(w.is_open(at(0), at(0)));
        assert!(w.is_open(at(0), at(119_999)));
    }

    #[test]
    fn closed_at_exactly_two_minutes() {
        let w = EditWindow::STANDARD;
        assert!(!w.is_open(at(0), at(120_000)));
        assert!(!w.is_open(at(0), at(3_600_000)));
    }

    #[test]
    fn the_boundary_is_exact_below_the_millisecond() {
        let w = EditWindow::STANDARD;
        let created = at(0);
        let just_before = created + TimeDelta::minutes(2) - TimeDelta::microseconds(1);
        assert!(w.is_open(created, just_before));
    }
}
