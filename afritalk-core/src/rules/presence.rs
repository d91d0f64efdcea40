//! Presence status from raw facts (seed 000 §7): online = a live connection with
//! activity in the last minute; idle = connected but inactive, or seen less than
//! ten minutes ago; offline otherwise.

use afritalk_ports::{Presence, PresenceRecord, PresenceStatus};
use chrono::{DateTime, TimeDelta, Utc};

/// Activity newer than this keeps a connected user online.
pub const ONLINE_WITHIN: TimeDelta = TimeDelta::minutes(1);

/// A user seen more recently than this is at least idle.
pub const IDLE_WITHIN: TimeDelta = TimeDelta::minutes(10);

/// The status shown for `record` at `now`.
pub fn status_at(record: &PresenceRecord, now: DateTime<Utc>) -> PresenceStatus {
    let since = now - record.last_seen;
    if record.connections > 0 && since < ONLINE_WITHIN {
        PresenceStatus::Online
    } else if record.connections > 0 || since < IDLE_WITHIN {
        PresenceStatus::Idle
    } else {
        PresenceStatus::Offline
    }
}

/// The public view of `record` at `now`.
pub fn presence_at(record: &PresenceRecord, now: DateTime<Utc>) -> Presence {
    Presence {
        user_id: record.user_id.clone(),
        status: status_at(record, now),
        last_seen: record.last_seen,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use afritalk_ports::UserId;

    fn record(connections: u32, seen_secs_ago: i64, now: DateTime<Utc>) -> PresenceRecord {
        PresenceRecord {
            user_id: UserId::parse("u").unwrap(),
            connections,
            last_seen: now - TimeDelta::seconds(seen_secs_ago),
        }
    }

    #[test]
    fn connected_and_active_is_online() {
        let now = Utc::now();
        assert_eq!(status_at(&record(1, 0, now), now), PresenceStatus::Online);
        assert_eq!(status_at(&record(2, 59, now), now), PresenceStatus::Online);
    }

    #[test]
    fn connected_but_quiet_for_a_minute_is_idle() {
        let now = Utc::now();
        assert_eq!(status_at(&record(1, 60, now), now), PresenceStatus::Idle);
        assert_eq!(status_at(&record(1, 3_600, now), now), PresenceStatus::Idle);
    }

    #[test]
    fn disconnected_is_idle_for_ten_minutes_then_offline() {
        let now = Utc::now();
        assert_eq!(status_at(&record(0, 0, now), now), PresenceStatus::Idle);
        assert_eq!(status_at(&record(0, 599, now), now), PresenceStatus::Idle);
        assert_eq!(
            status_at(&record(0, 600, now), now),
            PresenceStatus::Offline
        );
    }
}
