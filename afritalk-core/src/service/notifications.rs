//! Notification use cases: list (unread first), mark read (one or all), archive.

use afritalk_ports::{
    MessagingError, Missing, Notification, NotificationCursor, NotificationId, NotificationStatus,
    PageSize,
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
        self.ensure_enabled(&actor.tenant).await?;
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
        self.ensure_enabled(&actor.tenant).await?;
        Ok(self
            .ports
            .notifications
            .mark_all_read(&actor.tenant, &actor.user)
            .await?)
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
        self.ensure_enabled(&actor.tenant).await?;
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
        self.ports
            .notifications
            .set_status(&actor.tenant, &actor.user, id, target)
            .await
            .map_err(|e| MessagingError::from_store(e, Missing::Notification))
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
