//! Administration use cases: alert/system notifications from other services,
//! the directory, the tenant's messaging switch, and the audit trail. These work
//! even while a tenant's messaging is switched off, so it can be prepared first,
//! except alerts: users would only see them in messaging, so they are refused
//! then (`messaging_disabled`) rather than left where nobody looks.

use afritalk_ports::{
    Audience, AuditAction, AuditEntry, AuditFilter, AuditId, DirectoryUser, DisplayName,
    MessageContent, MessagingError, Missing, Notification, NotificationId, NotificationKind,
    NotificationStatus, NotifyEvent, PageSize, PurgeReceipt, RealtimeEvent, RelatedEntity, Role,
    UserId, ValidationError,
};
use chrono::{DateTime, DurationRound, Months, TimeDelta, Utc};
use serde_json::json;

use super::MessagingService;
use crate::actor::{Actor, ActorKind};
use crate::rules::permissions::PermissionMatrix;

/// How long audit rows are kept (MISSION §3: 12 months), in calendar months:
/// a year that holds a 29 February is 366 days.
pub const AUDIT_RETENTION: Months = Months::new(12);

/// The oldest moment whose audit rows must still be kept at `now`.
pub fn audit_kept_since(now: DateTime<Utc>) -> DateTime<Utc> {
    now.checked_sub_months(AUDIT_RETENTION)
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// The start of `at`'s UTC day. A purge's cutoff is one, so that purges run
/// the same day (by several nodes, or by a node and a cron job) agree on it:
/// the first removes the rows, the others find nothing and write nothing.
/// Rows are thereby kept up to a day longer, never shorter.
pub fn start_of_utc_day(at: DateTime<Utc>) -> DateTime<Utc> {
    at.duration_trunc(TimeDelta::days(1)).unwrap_or(at)
}

/// What an audit purge removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditPurge {
    /// Rows created before this moment went.
    pub cutoff: DateTime<Utc>,
    /// How many rows went, all tenants together.
    pub removed: u64,
    /// How many tenants lost rows (each has an `audit.purge` row saying so).
    pub tenants: usize,
    /// Whether the age asked for was under 12 months, so the cutoff is 12
    /// months ago instead.
    pub kept_longer: bool,
}

/// An alert or system notification another service wants a user to see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAlert {
    recipient: UserId,
    kind: NotificationKind,
    title: DisplayName,
    message: MessageContent,
    related: Option<RelatedEntity>,
}

impl NewAlert {
    /// Checks an alert: `alert` or `system` kind (message notifications come from
    /// sends only), a 1–200 character title and a 1–4,000 character body.
    pub fn new(
        recipient: UserId,
        kind: NotificationKind,
        title: &str,
        message: &str,
        related: Option<RelatedEntity>,
    ) -> Result<Self, ValidationError> {
        if kind == NotificationKind::Message {
            return Err(ValidationError::new(
                "type",
                "must be alert or system (message notifications come from sends)",
            ));
        }
        let title = DisplayName::parse(title)
            .map_err(|_| ValidationError::new("title", "must be 1 to 200 characters"))?;
        let message = MessageContent::parse(message)
            .map_err(|e| ValidationError::new("message", e.reason))?;
        Ok(Self {
            recipient,
            kind,
            title,
            message,
            related,
        })
    }
}

impl MessagingService {
    /// Refuses (and audits) a caller who is neither the PDG nor a service, or
    /// a PDG who was deactivated (who could otherwise switch themselves back on).
    async fn ensure_admin(&self, actor: &Actor, operation: &str) -> Result<(), MessagingError> {
        if PermissionMatrix::may_administer(actor.kind) {
            self.ensure_active(actor, json!({ "operation": operation }))
                .await
                .map(drop)
        } else {
            Err(self
                .refuse(
                    actor,
                    "only the PDG or a service may do this",
                    None,
                    json!({ "operation": operation }),
                )
                .await)
        }
    }

    /// Creates an alert or system notification for a user of the tenant (services
    /// and the PDG) and pushes it with `notify:new`.
    pub async fn create_notification(
        &self,
        actor: &Actor,
        alert: NewAlert,
    ) -> Result<Notification, MessagingError> {
        self.ensure_enabled(&actor.tenant).await?;
        self.ensure_admin(actor, "notification.create").await?;
        self.ports
            .directory
            .user(&actor.tenant, &alert.recipient)
            .await?
            .ok_or(MessagingError::NotFound(Missing::User))?;
        let now = self.ports.clock.now();
        let notification = Notification {
            id: NotificationId::from_uuid(self.ports.ids.new_id()),
            tenant_id: actor.tenant.clone(),
            user_id: alert.recipient.clone(),
            title: alert.title.as_str().to_owned(),
            message: alert.message.as_str().to_owned(),
            kind: alert.kind,
            status: NotificationStatus::Unread,
            related: alert.related,
            push_sent: false,
            push_sent_at: None,
            created_at: now,
        };
        let audit = self.audit_entry(
            actor,
            AuditAction::NotificationCreate,
            Some(("notification", notification.id.to_string())),
            json!({ "recipientId": alert.recipient, "type": alert.kind.as_str() }),
            now,
        );
        // One write: an alert is never stored without its audit row.
        self.ports
            .notifications
            .create(notification.clone(), audit)
            .await?;
        let event = RealtimeEvent::NotifyNew(NotifyEvent {
            kind: notification.kind,
            payload: notification.clone(),
        });
        self.publish(Audience::User(actor.tenant.clone(), alert.recipient), event)
            .await;
        Ok(notification)
    }

    /// Creates or replaces a directory entry of the caller's tenant (PDG or
    /// service). An entry already stored as given is left alone: no write, no
    /// audit row.
    pub async fn upsert_user(
        &self,
        actor: &Actor,
        user_id: UserId,
        display_name: DisplayName,
        role: Role,
        active: bool,
    ) -> Result<DirectoryUser, MessagingError> {
        self.ensure_admin(actor, "directory.upsert").await?;
        let entry = DirectoryUser {
            tenant_id: actor.tenant.clone(),
            user_id,
            display_name,
            role,
            active,
        };
        // Read past the entry cache: a stale entry must not hide a change
        // another node made meanwhile.
        let current = self
            .ports
            .directory
            .users(&actor.tenant, std::slice::from_ref(&entry.user_id))
            .await?;
        if current.first() == Some(&entry) {
            // Nothing would change: no write and no audit row, so that a
            // directory sync sending every user again does not bury the real
            // changes on the trail.
            return Ok(entry);
        }
        let stored = self.ports.directory.upsert(entry).await?;
        let now = self.ports.clock.now();
        let audit = self.audit_entry(
            actor,
            AuditAction::DirectoryUpsert,
            Some(("user", stored.user_id.to_string())),
            json!({ "role": stored.role, "active": stored.active }),
            now,
        );
        self.append_audit(audit).await?;
        Ok(stored)
    }

    /// Makes a staff caller unknown to the directory known by their verified
    /// token's facts (as [`Self::remember_identity`] would), and leaves a
    /// known one as it is: every REST call does this, so that a user who has
    /// only read can be written to, while changes of name or role are taken
    /// from connects and sends only (two live tokens with different facts
    /// would otherwise rewrite the entry on every call).
    pub async fn introduce_identity(
        &self,
        actor: &Actor,
        display_name: Option<DisplayName>,
    ) -> Result<(), MessagingError> {
        if actor.kind == ActorKind::Service {
            return Ok(());
        }
        let known = self
            .ports
            .directory
            .user(&actor.tenant, &actor.user)
            .await?;
        if known.is_some() {
            return Ok(());
        }
        self.remember_identity(actor, display_name).await
    }

    /// Refreshes the directory from a verified token's facts: creates the caller's
    /// entry if missing and updates a changed role or name, but never reactivates a
    /// user an administrator deactivated (the store keeps `active` in the write
    /// itself, so a stale cached entry cannot undo a deactivation). Services are
    /// not staff and are skipped.
    pub async fn remember_identity(
        &self,
        actor: &Actor,
        display_name: Option<DisplayName>,
    ) -> Result<(), MessagingError> {
        let ActorKind::Staff(role) = actor.kind else {
            return Ok(());
        };
        let directory = &self.ports.directory;
        let current = directory.user(&actor.tenant, &actor.user).await?;
        let wanted = DirectoryUser {
            tenant_id: actor.tenant.clone(),
            user_id: actor.user.clone(),
            display_name: match (&display_name, &current) {
                (Some(name), _) => name.clone(),
                (None, Some(existing)) => existing.display_name.clone(),
                (None, None) => DisplayName::parse(actor.user.as_str())?,
            },
            role,
            active: current.as_ref().is_none_or(|c| c.active),
        };
        if current.as_ref() == Some(&wanted) {
            return Ok(());
        }
        let stored = directory.record_identity(wanted).await?;
        // The role is what the permission matrix reads: a change made by a
        // token is on the trail as an administrator's is.
        let audit = self.audit_entry(
            actor,
            AuditAction::DirectoryUpsert,
            Some(("user", stored.user_id.to_string())),
            json!({
                "source": "token",
                "role": stored.role,
                "previousRole": current.as_ref().map(|c| c.role),
                "active": stored.active,
            }),
            self.ports.clock.now(),
        );
        self.append_audit(audit).await
    }

    /// Whether messaging is on for the caller's tenant: any caller of the
    /// tenant may ask (a front end shows or hides its chat by it).
    pub async fn messaging_enabled(&self, actor: &Actor) -> Result<bool, MessagingError> {
        Ok(self.ports.features.messaging_enabled(&actor.tenant).await?)
    }

    /// Switches messaging on or off for the caller's tenant (services only: rollout
    /// is an operator decision).
    pub async fn set_messaging_enabled(
        &self,
        actor: &Actor,
        enabled: bool,
    ) -> Result<(), MessagingError> {
        if actor.kind != ActorKind::Service {
            return Err(self
                .refuse(
                    actor,
                    "only a service may switch messaging on or off",
                    None,
                    json!({ "operation": "tenant.feature" }),
                )
                .await);
        }
        self.ports
            .features
            .set_messaging_enabled(&actor.tenant, enabled)
            .await?;
        let now = self.ports.clock.now();
        let audit = self.audit_entry(
            actor,
            AuditAction::FeatureFlagChange,
            Some(("tenant", actor.tenant.to_string())),
            json!({ "messagingEnabled": enabled }),
            now,
        );
        self.append_audit(audit).await
    }

    /// Audit rows of the caller's tenant, newest first (PDG or service).
    pub async fn audit_log(
        &self,
        actor: &Actor,
        filter: AuditFilter,
        limit: PageSize,
    ) -> Result<Vec<AuditEntry>, MessagingError> {
        self.ensure_admin(actor, "audit.query").await?;
        Ok(self.ports.audit.query(&actor.tenant, filter, limit).await?)
    }

    /// Removes audit rows past the retention period, of every tenant: those
    /// older than `older_than` when given, else than 12 months. An operator
    /// task, run by the binary. Rows younger than 12 months are kept, whatever
    /// `older_than` says (the cutoff is then 12 months ago, and the answer
    /// says so). Each tenant that lost rows gets an `audit.purge` row saying
    /// how many and up to when, written with the removal, so its PDG can see
    /// that its trail was shortened and by how much.
    pub async fn purge_audit(
        &self,
        older_than: Option<TimeDelta>,
    ) -> Result<AuditPurge, MessagingError> {
        let now = self.ports.clock.now();
        let kept_since = audit_kept_since(now);
        let asked = older_than.map(|age| {
            now.checked_sub_signed(age)
                .unwrap_or(DateTime::<Utc>::MIN_UTC)
        });
        let kept_longer = asked.is_some_and(|cutoff| cutoff > kept_since);
        let cutoff = start_of_utc_day(asked.map_or(kept_since, |cutoff| cutoff.min(kept_since)));
        let receipt = PurgeReceipt {
            id: AuditId::from_uuid(self.ports.ids.new_id()),
            cutoff,
            at: now,
        };
        let purged = self.ports.audit.purge_before(&receipt).await?;
        let removed = purged.iter().map(|(_, n)| n).sum();
        Ok(AuditPurge {
            cutoff,
            removed,
            tenants: purged.len(),
            kept_longer,
        })
    }
}
