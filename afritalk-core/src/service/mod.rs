//! The messaging service: the use cases front ends and embedding services call.
//! Each use case checks the tenant's feature flag, applies the rules of
//! [`crate::rules`], acts through the ports, writes its audit row and publishes
//! the realtime events MISSION §4 names.

mod admin;
mod directory;
mod messages;
mod notifications;
mod presence;
mod reading;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use afritalk_ports::{
    ACCOUNT_DEACTIVATED, Audience, AuditAction, AuditEntry, AuditId, AuditLog, Clock, Directory,
    DirectoryUser, EventPublisher, FeatureFlags, IdGenerator, MessageStore, MessagingError,
    NotificationStore, PresenceTracker, RateAction, RateDecision, RateLimiter, RealtimeEvent, Role,
    TenantId, UserId,
};
use chrono::{DateTime, Utc};

/// A caller as the audit trail and the rate limiter know it: tenant, user
/// and client IP (a refusal may come before there is an [`Actor`]).
type Who<'a> = (&'a TenantId, &'a UserId, Option<&'a str>);
use serde_json::json;

use crate::actor::{Actor, ActorKind};
use crate::rules::presence::ActivityMemo;

pub use admin::{AUDIT_RETENTION, AuditPurge, NewAlert, audit_kept_since, start_of_utc_day};
pub use directory::DirectorySearch;

/// The refusal of a staff-only use case to a service token.
const STAFF_ONLY: &str = "only staff members can use messaging";

/// The adapters a [`MessagingService`] runs on. Any mix works: the standalone
/// server's Postgres/SQLite stores and Redis/in-process presence, or an
/// embedding service's own directory.
#[derive(Clone)]
pub struct Ports {
    /// Messages and conversations.
    pub messages: Arc<dyn MessageStore>,
    /// In-app notifications.
    pub notifications: Arc<dyn NotificationStore>,
    /// The compliance trail.
    pub audit: Arc<dyn AuditLog>,
    /// Who exists in each tenant.
    pub directory: Arc<dyn Directory>,
    /// Live connections and last activity.
    pub presence: Arc<dyn PresenceTracker>,
    /// Realtime event delivery.
    pub events: Arc<dyn EventPublisher>,
    /// Per-user rate limits.
    pub rate_limiter: Arc<dyn RateLimiter>,
    /// Per-tenant messaging switch.
    pub features: Arc<dyn FeatureFlags>,
    /// Time source.
    pub clock: Arc<dyn Clock>,
    /// Id source.
    pub ids: Arc<dyn IdGenerator>,
}

/// The AfriTalk use cases over a set of [`Ports`]. Cheap to clone and share.
#[derive(Clone)]
pub struct MessagingService {
    ports: Ports,
    activity: Arc<ActivityMemo>,
}

impl MessagingService {
    /// Builds the service over its adapters.
    pub fn new(ports: Ports) -> Self {
        Self {
            ports,
            activity: Arc::default(),
        }
    }

    /// The adapters this service runs on.
    pub fn ports(&self) -> &Ports {
        &self.ports
    }

    /// Refuses every use case of a tenant whose messaging is switched off.
    async fn ensure_enabled(&self, tenant: &TenantId) -> Result<(), MessagingError> {
        if self.ports.features.messaging_enabled(tenant).await? {
            Ok(())
        } else {
            Err(MessagingError::FeatureDisabled)
        }
    }

    /// Counts one attempt of `action`; over the limit is `RateLimited`. When the
    /// limiter itself is down (e.g. Redis restarting) the attempt is let through:
    /// losing rate limiting for a moment is better than losing messaging.
    async fn check_rate(&self, actor: &Actor, action: RateAction) -> Result<(), MessagingError> {
        self.check_rate_of(&actor.tenant, &actor.user, action).await
    }

    /// [`Self::check_rate`] for a caller known only by tenant and user.
    async fn check_rate_of(
        &self,
        tenant: &TenantId,
        user: &UserId,
        action: RateAction,
    ) -> Result<(), MessagingError> {
        match self.ports.rate_limiter.check(tenant, user, action).await {
            Ok(RateDecision::Allowed) => Ok(()),
            Ok(RateDecision::Limited { retry_after }) => {
                Err(MessagingError::RateLimited { retry_after })
            }
            Err(err) => {
                tracing::warn!(%err, action = action.as_str(), "rate limiter unavailable; allowing");
                Ok(())
            }
        }
    }

    /// An audit row for `actor`, stamped now.
    fn audit_entry(
        &self,
        actor: &Actor,
        action: AuditAction,
        entity: Option<(&str, String)>,
        details: serde_json::Value,
        at: DateTime<Utc>,
    ) -> AuditEntry {
        let who = (&actor.tenant, &actor.user, actor.ip.as_deref());
        self.audit_entry_of(who, action, entity, details, at)
    }

    /// [`Self::audit_entry`] for a caller known only by tenant, user and IP.
    fn audit_entry_of(
        &self,
        (tenant, user, ip): Who<'_>,
        action: AuditAction,
        entity: Option<(&str, String)>,
        details: serde_json::Value,
        at: DateTime<Utc>,
    ) -> AuditEntry {
        let (entity_type, entity_id) = match entity {
            Some((kind, id)) => (Some(kind.to_owned()), Some(id)),
            None => (None, None),
        };
        AuditEntry {
            id: AuditId::from_uuid(self.ports.ids.new_id()),
            tenant_id: tenant.clone(),
            user_id: Some(user.clone()),
            action,
            entity_type,
            entity_id,
            details,
            ip_address: ip.map(str::to_owned),
            created_at: at,
        }
    }

    /// Records that an access rule refused `actor`, then returns the refusal.
    ///
    /// Each refusal counts against the caller's `modify` budget, and past it
    /// the answer is `rate_limited` with no row: the trail is kept a year, and
    /// a client looping on a refused call must not be able to fill it.
    async fn refuse(
        &self,
        actor: &Actor,
        reason: &str,
        entity: Option<(&str, String)>,
        details: serde_json::Value,
    ) -> MessagingError {
        let who = (&actor.tenant, &actor.user, actor.ip.as_deref());
        self.refuse_of(who, reason, entity, details).await
    }

    /// [`Self::refuse`] for a caller known only by tenant, user and IP.
    async fn refuse_of(
        &self,
        who: Who<'_>,
        reason: &str,
        entity: Option<(&str, String)>,
        mut details: serde_json::Value,
    ) -> MessagingError {
        let (tenant, user, _) = who;
        if let Err(limited) = self.check_rate_of(tenant, user, RateAction::Modify).await {
            return limited;
        }
        if let Some(map) = details.as_object_mut() {
            map.insert("reason".into(), reason.into());
        }
        let now = self.ports.clock.now();
        let entry = self.audit_entry_of(who, AuditAction::ForbiddenAttempt, entity, details, now);
        if let Err(err) = self.ports.audit.append(entry).await {
            // The refusal stands even if the trail could not be written; say so loudly.
            tracing::error!(%tenant, %user, %err, "forbidden_attempt audit row lost");
        }
        MessagingError::Forbidden(reason.to_owned())
    }

    /// Refuses a caller whose genuine token names a role the permission
    /// matrix does not know (the role must be known from the connection on),
    /// with a `forbidden_attempt` row naming that `role` and the `operation`,
    /// budgeted like every refusal.
    pub async fn refuse_unknown_role(
        &self,
        tenant: &TenantId,
        user: &UserId,
        ip: Option<&str>,
        role: &str,
        operation: &str,
    ) -> MessagingError {
        let reason = format!("your role ({role}) is not one messaging knows (PDG, DG or EMPLOYE)");
        let details = json!({ "operation": operation, "role": role });
        // Past the budget, no row but the same answer: `rate_limited` would
        // invite a retry that cannot succeed.
        match self
            .refuse_of((tenant, user, ip), &reason, None, details)
            .await
        {
            MessagingError::RateLimited { .. } => MessagingError::Forbidden(reason),
            refused => refused,
        }
    }

    /// Refuses what a staff caller whom an administrator deactivated tries with
    /// a token that outlives the decision: every use case but the end of a
    /// connection and the delivery ack (see [`Self::ensure_may_use`]).
    /// Audited, like every refusal; `details` go into the row. The entry is
    /// read from the directory's cache, so a deactivation made on another
    /// node counts within the cache's life. Services have no directory entry
    /// and pass. Returns the caller's entry (a send needs their name), `None`
    /// when there is none.
    async fn ensure_active(
        &self,
        actor: &Actor,
        details: serde_json::Value,
    ) -> Result<Option<DirectoryUser>, MessagingError> {
        if actor.kind == ActorKind::Service {
            return Ok(None);
        }
        let me = self
            .ports
            .directory
            .user(&actor.tenant, &actor.user)
            .await?;
        if me.as_ref().is_some_and(|me| !me.active) {
            // Past the refusals' budget the trail takes no more rows, but the
            // answer stays "deactivated": `rate_limited` would invite a retry,
            // and the socket that asked would stay open until the sweep.
            return Err(
                match self.refuse(actor, ACCOUNT_DEACTIVATED, None, details).await {
                    MessagingError::RateLimited { .. } => {
                        MessagingError::Forbidden(ACCOUNT_DEACTIVATED.to_owned())
                    }
                    refused => refused,
                },
            );
        }
        Ok(me)
    }

    /// Refuses a use case of a tenant whose messaging is switched off, then
    /// one of a deactivated caller (see [`Self::ensure_active`]), `operation`
    /// naming it in the refusal's audit row.
    async fn ensure_may_use(&self, actor: &Actor, operation: &str) -> Result<(), MessagingError> {
        self.ensure_enabled(&actor.tenant).await?;
        self.ensure_active(actor, json!({ "operation": operation }))
            .await
            .map(drop)
    }

    /// The caller's role, for use cases open to staff only: a service token is
    /// refused (`forbidden`, audited like every refusal), `operation` naming
    /// what it tried in the audit row.
    async fn ensure_staff(&self, actor: &Actor, operation: &str) -> Result<Role, MessagingError> {
        match actor.kind {
            ActorKind::Staff(role) => Ok(role),
            ActorKind::Service => Err(self
                .refuse(actor, STAFF_ONLY, None, json!({ "operation": operation }))
                .await),
        }
    }

    /// Appends an audit row; a failure fails the use case (the trail is a requirement).
    async fn append_audit(&self, entry: AuditEntry) -> Result<(), MessagingError> {
        self.ports.audit.append(entry).await?;
        Ok(())
    }

    /// Hands an event to the publisher. Delivery is best effort: the data is
    /// already stored and clients catch up on reconnect, so a failure is logged.
    async fn publish(&self, audience: Audience, event: RealtimeEvent) {
        let name = event.name();
        if let Err(err) = self.ports.events.publish(audience, event).await {
            tracing::warn!(event = name, %err, "realtime event not published");
        }
    }

    /// Hands several events to the publisher at once, in order (one broker
    /// round trip where the adapter can); best effort, as [`Self::publish`].
    async fn publish_all(&self, events: Vec<(Audience, RealtimeEvent)>) {
        let count = events.len();
        if let Err(err) = self.ports.events.publish_all(events).await {
            tracing::warn!(events = count, %err, "realtime events not published");
        }
    }
}
