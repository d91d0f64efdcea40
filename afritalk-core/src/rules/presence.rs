//! Presence status from raw facts (seed 000 §7): online = a live connection with
//! activity in the last minute; idle = connected but inactive, or seen less than
//! ten minutes ago; offline otherwise.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use afritalk_ports::{Presence, PresenceRecord, PresenceStatus, TenantId, UserId};
use chrono::{DateTime, TimeDelta, Utc};

/// Activity newer than this keeps a connected user online.
pub const ONLINE_WITHIN: TimeDelta = TimeDelta::minutes(1);

/// A user seen more recently than this is at least idle.
pub const IDLE_WITHIN: TimeDelta = TimeDelta::minutes(10);

/// The longest time between two presence sweeps of a node (each node sweeps
/// every 15 s). A status that time changed since the last sweep has not been
/// announced yet, so a change of the facts compares with the status this long
/// ago too, and tells such a change itself.
pub const SWEEP_INTERVAL_MAX: TimeDelta = TimeDelta::seconds(30);

/// A user found online when their activity was last recorded is not recorded
/// again for this long: they cannot leave online meanwhile (that takes a quiet
/// [`ONLINE_WITHIN`]), and their `lastSeen` lags by at most this. At one send
/// per second per user it spares nine presence writes in ten (a Redis script
/// each in a cluster).
pub const RECORD_ACTIVITY_EVERY: TimeDelta = TimeDelta::seconds(10);

/// When each user's activity was last recorded while they were online, so that
/// [`RECORD_ACTIVITY_EVERY`] can be applied (per service instance).
#[derive(Debug, Default)]
pub struct ActivityMemo {
    recorded: Mutex<HashMap<(TenantId, UserId), DateTime<Utc>>>,
}

impl ActivityMemo {
    /// Whether activity of `user` at `now` needs recording.
    pub fn due(&self, tenant: &TenantId, user: &UserId, now: DateTime<Utc>) -> bool {
        let recorded = self.recorded.lock().unwrap_or_else(PoisonError::into_inner);
        recorded
            .get(&(tenant.clone(), user.clone()))
            .is_none_or(|at| now - *at >= RECORD_ACTIVITY_EVERY || now < *at)
    }

    /// Notes that activity at `at` was recorded and left the user `status`;
    /// only an online user's recording spares the next ones.
    pub fn recorded(
        &self,
        tenant: &TenantId,
        user: &UserId,
        at: DateTime<Utc>,
        status: PresenceStatus,
    ) {
        let mut recorded = self.recorded.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (tenant.clone(), user.clone());
        if status != PresenceStatus::Online {
            recorded.remove(&key);
            return;
        }
        // Bound memory: entries past their use go whenever the map grows large.
        if recorded.len() >= 100_000 {
            recorded.retain(|_, seen| at - *seen < RECORD_ACTIVITY_EVERY);
        }
        recorded.insert(key, at);
    }
}

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

    #[test]
    fn an_online_users_activity_is_recorded_again_only_after_ten_seconds() {
        let memo = ActivityMemo::default();
        let (t, u) = (
            TenantId::parse("acme").unwrap(),
            UserId::parse("awa").unwrap(),
        );
        let other = UserId::parse("kofi").unwrap();
        let t0 = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        assert!(memo.due(&t, &u, t0));
        memo.recorded(&t, &u, t0, PresenceStatus::Online);
        assert!(!memo.due(&t, &u, t0 + TimeDelta::milliseconds(9_999)));
        assert!(memo.due(&t, &other, t0), "per user");
        assert!(
            memo.due(&TenantId::parse("globex").unwrap(), &u, t0),
            "per tenant"
        );
        assert!(memo.due(&t, &u, t0 + RECORD_ACTIVITY_EVERY));
        assert!(
            memo.due(&t, &u, t0 - TimeDelta::seconds(1)),
            "a clock moved back"
        );
        // A recording that did not leave the user online spares nothing.
        memo.recorded(&t, &u, t0, PresenceStatus::Idle);
        assert!(memo.due(&t, &u, t0 + TimeDelta::seconds(1)));
    }

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
