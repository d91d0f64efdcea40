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
use crate::rules::presence::{SWEEP_INTERVAL_MAX, presence_at, status_at};
use crate::views::PresenceSweep;

/// Most rounds of [`MessagingService::confirm_published`]: each needs a
/// change of the same user landing within one publish's time of the last.
const CONFIRM_ROUNDS: usize = 3;

impl MessagingService {
    /// A realtime connection was authenticated: checks the tenant and the caller's
    /// role, records the connection, audits `ws.connect`, and publishes the new
    /// status if it changed. On an error nothing stays recorded.
    pub async fn connect(
        &self,
        actor: &Actor,
        connection: &ConnectionId,
    ) -> Result<Presence, MessagingError> {
        self.ensure_may_use(actor, "ws.connect").await?;
        self.ensure_staff(actor, "ws.connect").await?;
        // A client reconnecting in a loop would write a ws.connect row a turn.
        self.check_rate(actor, RateAction::Presence).await?;
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
        self.ensure_may_use(actor, "presence.ping").await?;
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
        self.ensure_may_use(actor, "presence.list").await?;
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
        self.ensure_may_use(actor, "presence.read").await?;
        let now = self.ports.clock.now();
        let records = self.ports.presence.records(&actor.tenant, users).await?;
        Ok(records.iter().map(|r| presence_at(r, now)).collect())
    }

    /// Publishes what time alone changed for some `users` of a tenant between
    /// `since` and now: online → idle a quiet minute after the last activity,
    /// idle → offline ten minutes after the last disconnect. A change of the
    /// facts themselves (connect, disconnect, ping, send) was published by its
    /// own use case, so both ends of the window are judged on the facts as they
    /// are now and only a threshold crossed inside the window is published:
    /// nothing twice (but a threshold crossed just as another publisher
    /// confirmed its status, see `confirm_published`). With no `since` (users
    /// just taken in) nothing is published yet. Reads those users' facts
    /// alone, never the whole tenant's.
    pub async fn sweep_presence(
        &self,
        tenant: &TenantId,
        users: &[UserId],
        since: Option<DateTime<Utc>>,
    ) -> Result<PresenceSweep, MessagingError> {
        let now = self.ports.clock.now();
        let records = self.ports.presence.records(tenant, users).await?;
        let mut still_changing = Vec::with_capacity(records.len());
        let mut published = Vec::new();
        for record in &records {
            let status = status_at(record, now);
            let before = since.map_or(status, |since| status_at(record, since));
            if status != before {
                self.publish_presence(tenant, presence_at(record, now))
                    .await;
                published.push((record.user_id.clone(), status));
            }
            // Offline stays offline until the facts change, and that change
            // (a connect, a send) is announced by its use case.
            if status != PresenceStatus::Offline {
                still_changing.push(record.user_id.clone());
            }
        }
        self.confirm_published(tenant, published).await;
        Ok(PresenceSweep {
            swept_to: now,
            still_changing,
        })
    }

    /// Tells the watchers of some `users` of a tenant, taken over from a node
    /// that stopped without closing their sockets (it crashed), what their
    /// status is now. Their connections there expired in the shared presence,
    /// a change of the facts that no use case saw, so it is published
    /// whatever it was before (a repeat is harmless; a stale "online" is not).
    /// Users still connected elsewhere kept their status and are left to the
    /// nodes serving them. Returns the users published who are not offline
    /// yet, for the caller to keep sweeping until they are.
    pub async fn announce_orphaned_presence(
        &self,
        tenant: &TenantId,
        users: &[UserId],
    ) -> Result<Vec<UserId>, MessagingError> {
        let now = self.ports.clock.now();
        let records = self.ports.presence.records(tenant, users).await?;
        let mut still_changing = Vec::new();
        let mut published = Vec::new();
        for record in records.iter().filter(|r| r.connections == 0) {
            let presence = presence_at(record, now);
            if presence.status != PresenceStatus::Offline {
                still_changing.push(record.user_id.clone());
            }
            published.push((record.user_id.clone(), presence.status));
            self.publish_presence(tenant, presence).await;
        }
        self.confirm_published(tenant, published).await;
        Ok(still_changing)
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
        // Time may have changed the old facts' status since the last sweep,
        // unannounced: a quiet user gone idle seconds before closing their last
        // socket still shows online to watchers. Their status as the last sweep
        // saw it counts too (a repeat of what it did announce is harmless).
        let before = change.before.as_ref().map(|r| status_at(r, now));
        let swept = change
            .before
            .as_ref()
            .map(|r| status_at(r, now - SWEEP_INTERVAL_MAX));
        if before != Some(after.status) || swept != Some(after.status) {
            self.publish_presence(&actor.tenant, after.clone()).await;
            let published = vec![(actor.user.clone(), after.status)];
            self.confirm_published(&actor.tenant, published).await;
        }
        after
    }

    /// Makes sure the last status watchers got for each of some users is
    /// their status now, after `published` (user, status) went out. A status
    /// is computed from the facts a change stored, then published; another
    /// task or node may store a later change meanwhile and publish it first
    /// (a page reload: the old socket's disconnect on one node, the new
    /// socket's connect on another), and watchers would then keep the older
    /// status. So once its publish is done each publisher reads the facts
    /// again, and publishes the status they give now if it differs: whichever
    /// publish lands last, the one after it is right. Up to
    /// [`CONFIRM_ROUNDS`] rounds, since a republish can race a further
    /// change in turn; a failed read only costs that confirmation (logged).
    async fn confirm_published(
        &self,
        tenant: &TenantId,
        mut published: Vec<(UserId, PresenceStatus)>,
    ) {
        for _ in 0..CONFIRM_ROUNDS {
            if published.is_empty() {
                return;
            }
            let users: Vec<UserId> = published.iter().map(|(u, _)| u.clone()).collect();
            let records = match self.ports.presence.records(tenant, &users).await {
                Ok(records) => records,
                Err(err) => {
                    tracing::warn!(%err, "presence not confirmed after publishing");
                    return;
                }
            };
            let now = self.ports.clock.now();
            let told: HashMap<&UserId, PresenceStatus> =
                published.iter().map(|(u, s)| (u, *s)).collect();
            let mut republished = Vec::new();
            for record in &records {
                let current = presence_at(record, now);
                if told
                    .get(&record.user_id)
                    .is_some_and(|s| *s != current.status)
                {
                    republished.push((record.user_id.clone(), current.status));
                    self.publish_presence(tenant, current).await;
                }
            }
            published = republished;
        }
    }

    /// Tells the watchers of `presence`'s user what it is now.
    async fn publish_presence(&self, tenant: &TenantId, presence: Presence) {
        let audience = Audience::PresenceWatchers(tenant.clone(), presence.user_id.clone());
        let event = RealtimeEvent::PresenceUpdate(PresenceEvent {
            user_id: presence.user_id,
            status: presence.status,
            last_seen: presence.last_seen,
        });
        self.publish(audience, event).await;
    }
}
