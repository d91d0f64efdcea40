//! Notification use cases: list (unread first), mark read (one or all), archive.
//! A change of status is pushed to the user's other devices (`notify:updated`).

use afritalk_ports::{
    Audience, MessagingError, Missing, Notification, NotificationCursor, NotificationId,
    NotificationStatus, NotifyUpdatedEvent, PageSize, RealtimeEvent, TenantId, UserId,
};

use super::MessagingService;
use crate::actor::Actor;

/// A notification only moves forward (`unread` → `read` → `archived`): asking for
/// an earlier status keeps the current one, so repeated calls are harmless.
fn forward(current: NotificationStatus, requested: NotificationStatus) -> NotificationStatus {
    current.max(requested)
}

impl MessagingService {
    /// The caller's notifications: unread first, then read, each newest first;
    /// archived ones only when asked.
    pub async fn notifications(
        &self,
        actor: &Actor,
        after: Option<NotificationCursor>,
        include_archived: bool,
        limit: PageSize,
    ) -> Result<Vec<Notification>, MessagingError> {
        self.ensure_may_use(actor, "notification.list").await?;
        Ok(self
            .ports
            .notifications
            .list(&actor.tenant, &actor.user, after, include_archived, limit)
            .await?)
    }

    /// Marks one of the caller's notifications read (idempotent).
    pub async fn mark_notification_read(
        &self,
        actor: &Actor,
        id: NotificationId,
    ) -> Result<Notification, MessagingError> {
        self.move_notification(actor, id, NotificationStatus::Read)
            .await
    }

    /// Marks every unread notification of the caller read (the bell's "mark all
    /// as read"); returns how many changed. Archived ones stay archived.
    pub async fn mark_all_notifications_read(&self, actor: &Actor) -> Result<u64, MessagingError> {
        self.ensure_may_use(actor, "notification.read_all").await?;
        let changed = self
            .ports
            .notifications
            .mark_all_read(&actor.tenant, &actor.user)
            .await?;
        if changed > 0 {
            self.tell_devices(actor, None, NotificationStatus::Read)
                .await;
        }
        Ok(changed)
    }

    /// Tells every device of the caller that notifications changed status, with
    /// the unread count their badge now shows (`notify:updated`). Best effort,
    /// like every push: the change is stored, and a device that missed the
    /// event reads the list again.
    pub(super) async fn tell_devices(
        &self,
        actor: &Actor,
        notification_id: Option<NotificationId>,
        status: NotificationStatus,
    ) {
        self.tell_devices_of(&actor.tenant, &actor.user, notification_id, status)
            .await;
    }

    /// [`Self::tell_devices`] for any user of the tenant (the recipient of a
    /// message its sender deleted).
    pub(super) async fn tell_devices_of(
        &self,
        tenant: &TenantId,
        user: &UserId,
        notification_id: Option<NotificationId>,
        status: NotificationStatus,
    ) {
        let unread_count = match self.ports.notifications.unread_count(tenant, user).await {
            Ok(count) => count,
            Err(err) => {
                tracing::warn!(%err, "notify:updated not sent: no unread count");
                return;
            }
        };
        let event = RealtimeEvent::NotifyUpdated(NotifyUpdatedEvent {
            notification_id,
            status,
            unread_count,
        });
        self.publish(Audience::User(tenant.clone(), user.clone()), event)
            .await;
    }

    /// Archives one of the caller's notifications (idempotent).
    pub async fn archive_notification(
        &self,
        actor: &Actor,
        id: NotificationId,
    ) -> Result<Notification, MessagingError> {
        self.move_notification(actor, id, NotificationStatus::Archived)
            .await
    }

    async fn move_notification(
        &self,
        actor: &Actor,
        id: NotificationId,
        requested: NotificationStatus,
    ) -> Result<Notification, MessagingError> {
        self.ensure_may_use(actor, "notification.status").await?;
        let current = self
            .ports
            .notifications
            .notification(&actor.tenant, id)
            .await?
            // Someone else's notification does not exist for the caller.
            .filter(|n| n.user_id == actor.user)
            .ok_or(MessagingError::NotFound(Missing::Notification))?;
        let target = forward(current.status, requested);
        if target == current.status {
            return Ok(current);
        }
        let moved = self
            .ports
            .notifications
            .set_status(&actor.tenant, &actor.user, id, target)
            .await
            .map_err(|e| MessagingError::from_store(e, Missing::Notification))?;
        self.tell_devices(actor, Some(id), moved.status).await;
        Ok(moved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use NotificationStatus::*;

    #[test]
    fn status_only_moves_forward() {
        assert_eq!(forward(Unread, Read), Read);
        assert_eq!(forward(Read, Archived), Archived);
        assert_eq!(forward(Unread, Archived), Archived);
        assert_eq!(forward(Archived, Read), Archived);
        assert_eq!(forward(Read, Unread), Read);
    }
}
