//! Presence use cases: connect, disconnect, ping, snapshot. A `presence:update`
//! is published only when the visible status changes, and only to the user's
//! presence watchers, so heartbeats cause no fan-out.

use std::collections::HashMap;

use afritalk_ports::{
    Audience, AuditAction, ConnectionId, MessagingError, Presence, PresenceChange, PresenceEvent,
    PresenceStatus, RateAction, RealtimeEvent, StoreResult, TenantId, UserId,
};
use chrono::{DateTime, Utc};
use serde_json::json;

use super::MessagingService;
use crate::actor::Actor;
use crate::rules::presence::{presence_at, status_at};

impl MessagingService {
    /// A realtime connection was authenticated: checks the tenant and the caller's
    /// role, records the connection, audits `ws.connect`, and publishes the new
    /// status if it changed. On an error nothing stays recorded.
    pub async fn connect(
        &self,
        actor: &Actor,
        connection: &ConnectionId,
    ) -> Result<Presence, MessagingError> {
        self.ensure_enabled(&actor.tenant).await?;
        actor.staff_role()?;
        let now = self.ports.clock.now();
        let change = self
            .ports
            .presence
            .connect(&actor.tenant, &actor.user, connection, now)
            .await?;
        let audit = self.audit_entry(
            actor,
            AuditAction::WsConnect,
            Some(("connection", connection.to_string())),
            json!({}),
            now,
        );
        if let Err(err) = self.append_audit(audit).await {
            // The connection is refused: it must not stay counted, or the user
            // would show connected for good (with no socket to disconnect it).
            if let Err(undo) = self
                .ports
                .presence
                .disconnect(&actor.tenant, &actor.user, connection, now)
                .await
            {
                tracing::warn!(%undo, "refused connection left in presence");
            }
            return Err(err);
        }
        Ok(self.announce(actor, &change, now).await)
    }

    /// A realtime connection closed: records it, audits `ws.disconnect`, and publishes
    /// the new status if it changed. Runs even for a tenant switched off meanwhile.
    pub async fn disconnect(
        &self,
        actor: &Actor,
        connection: &ConnectionId,
    ) -> Result<Presence, MessagingError> {
        let now = self.ports.clock.now();
        let change = self
            .ports
            .presence
            .disconnect(&actor.tenant, &actor.user, connection, now)
            .await?;
        let audit = self.audit_entry(
            actor,
            AuditAction::WsDisconnect,
            Some(("connection", connection.to_string())),
            json!({}),
            now,
        );
        self.append_audit(audit).await?;
        Ok(self.announce(actor, &change, now).await)
    }

    /// A heartbeat (`presence:ping`): records activity; publishes only on a change.
    pub async fn ping(&self, actor: &Actor) -> Result<Presence, MessagingError> {
        self.ensure_enabled(&actor.tenant).await?;
        self.check_rate(actor, RateAction::Presence).await?;
        let now = self.ports.clock.now();
        let change = self
            .ports
            .presence
            .touch(&actor.tenant, &actor.user, now)
            .await?;
        Ok(self.announce(actor, &change, now).await)
    }

    /// Every user of the caller's tenant seen so far, with their status now.
    pub async fn presence(&self, actor: &Actor) -> Result<Vec<Presence>, MessagingError> {
        self.ensure_enabled(&actor.tenant).await?;
        let now = self.ports.clock.now();
        let records = self.ports.presence.snapshot(&actor.tenant).await?;
        Ok(records.iter().map(|r| presence_at(r, now)).collect())
    }

    /// The status now of some users of the caller's tenant (those never seen are
    /// left out), read for them alone: a client subscribing to a few colleagues
    /// must not cost a read of a 10,000-user tenant.
    pub async fn presence_of_users(
        &self,
        actor: &Actor,
        users: &[UserId],
    ) -> Result<Vec<Presence>, MessagingError> {
        self.ensure_enabled(&actor.tenant).await?;
        let now = self.ports.clock.now();
        let records = self.ports.presence.records(&actor.tenant, users).await?;
        Ok(records.iter().map(|r| presence_at(r, now)).collect())
    }

    /// Publishes what time alone changed (online → idle after a quiet minute, idle →
    /// offline ten minutes after the last disconnect) for the `watched` users of a
    /// tenant, given the status each had when last seen by the caller. Returns every
    /// watched user's status now, for the next sweep. Users with no presence facts
    /// are offline.
    pub async fn sweep_presence(
        &self,
        tenant: &TenantId,
        watched: &HashMap<UserId, PresenceStatus>,
    ) -> Result<HashMap<UserId, PresenceStatus>, MessagingError> {
        let now = self.ports.clock.now();
        let records = self.ports.presence.snapshot(tenant).await?;
        let by_user: HashMap<&UserId, &afritalk_ports::PresenceRecord> =
            records.iter().map(|r| (&r.user_id, r)).collect();
        let mut current = HashMap::with_capacity(watched.len());
        for (user, before) in watched {
            let (status, last_seen) = match by_user.get(user) {
                Some(record) => (status_at(record, now), record.last_seen),
                None => (PresenceStatus::Offline, now),
            };
            if status != *before {
                let event = RealtimeEvent::PresenceUpdate(PresenceEvent {
                    user_id: user.clone(),
                    status,
                    last_seen,
                });
                let audience = Audience::PresenceWatchers(tenant.clone(), user.clone());
                self.publish(audience, event).await;
            }
            current.insert(user.clone(), status);
        }
        Ok(current)
    }

    /// Records activity as a side effect of another use case (a send), unless
    /// the user was found online less than
    /// [`RECORD_ACTIVITY_EVERY`](crate::rules::presence::RECORD_ACTIVITY_EVERY) ago;
    /// failures only cost presence accuracy, so they are logged, not returned.
    pub(super) async fn note_activity(&self, actor: &Actor, now: DateTime<Utc>) {
        if !self.activity.due(&actor.tenant, &actor.user, now) {
            return;
        }
        let result: StoreResult<PresenceChange> = self
            .ports
            .presence
            .touch(&actor.tenant, &actor.user, now)
            .await;
        match result {
            Ok(change) => {
                let presence = self.announce(actor, &change, now).await;
                self.activity
                    .recorded(&actor.tenant, &actor.user, now, presence.status);
            }
            Err(err) => tracing::warn!(%err, "presence not updated after activity"),
        }
    }

    /// Publishes `presence:update` to the user's watchers if the status moved;
    /// returns the presence after the change.
    async fn announce(
        &self,
        actor: &Actor,
        change: &PresenceChange,
        now: DateTime<Utc>,
    ) -> Presence {
        let after = presence_at(&change.after, now);
        let before = change.before.as_ref().map(|r| status_at(r, now));
        if before != Some(after.status) {
            let event = RealtimeEvent::PresenceUpdate(PresenceEvent {
                user_id: after.user_id.clone(),
                status: after.status,
                last_seen: after.last_seen,
            });
            let audience = Audience::PresenceWatchers(actor.tenant.clone(), actor.user.clone());
            self.publish(audience, event).await;
        }
        after
    }
}
