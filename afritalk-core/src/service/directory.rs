//! Finding a colleague: the tenant's directory in name order, searchable
//! without accents or case, each entry telling the caller whether the
//! permission matrix lets them open a conversation with that person, so a
//! front end's people picker can grey out whom it may not write to first.

use std::collections::HashMap;

use afritalk_ports::{
    DirectoryCursor, DirectoryQuery, DirectoryUser, MessagingError, Missing, NameKey, PageSize,
    PresenceStatus, Role, SearchText, TenantId, UserId,
};
use chrono::{DateTime, Utc};
use serde_json::json;

use super::MessagingService;
use crate::actor::{Actor, ActorKind};
use crate::rules::permissions::PermissionMatrix;
use crate::rules::presence::status_at;
use crate::views::{DirectoryEntry, DirectoryPage};

/// Most users of one directory read by [`MessagingService::deactivated_among`].
const DEACTIVATION_CHECK_BATCH: usize = 500;

/// What a directory search asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectorySearch {
    /// Only people whose name contains this text (accents and case ignored).
    pub text: Option<SearchText>,
    /// Start after this position (the previous page's `next_cursor`).
    pub after: Option<DirectoryCursor>,
    /// Also list deactivated people.
    pub include_inactive: bool,
    /// Page size.
    pub limit: PageSize,
}

impl MessagingService {
    /// One page of the caller's tenant directory, by name, without the caller.
    /// Works while the tenant's messaging is switched off, like the rest of the
    /// directory, so an administrator can check it before the rollout (the
    /// entries then say what the matrix would allow). A deactivated caller is
    /// refused, as everywhere.
    pub async fn search_directory(
        &self,
        actor: &Actor,
        search: DirectorySearch,
    ) -> Result<DirectoryPage, MessagingError> {
        self.ensure_active(actor, json!({ "operation": "directory.search" }))
            .await?;
        let directory = &self.ports.directory;
        let query = DirectoryQuery {
            text: search.text,
            after: search.after,
            include_inactive: search.include_inactive,
            limit: search.limit,
        };
        let found = directory.search(&actor.tenant, &query).await?;
        // The cursor is the position of the row itself, not of whoever has
        // that id by the next call: a rename between pages skips nobody.
        let full = found.len() == search.limit.get() as usize;
        let next_cursor = found.last().filter(|_| full).map(|u| DirectoryCursor {
            key: NameKey::of(&u.display_name),
            user_id: u.user_id.clone(),
        });
        let found: Vec<DirectoryUser> = found
            .into_iter()
            .filter(|u| u.user_id != actor.user)
            .collect();
        let starter = starter_role(actor);
        let presence = self.presence_of(actor, &found).await;
        let users = found
            .into_iter()
            .map(|u| entry(starter, u, presence.as_ref()))
            .collect();
        Ok(DirectoryPage { users, next_cursor })
    }

    /// One colleague of the caller's tenant, as a search would show them (for
    /// a link that opens a conversation with someone by id). Unknown ids, and
    /// ids of another tenant, are `NotFound`.
    pub async fn directory_entry(
        &self,
        actor: &Actor,
        user: &UserId,
    ) -> Result<DirectoryEntry, MessagingError> {
        self.ensure_active(actor, json!({ "operation": "directory.entry" }))
            .await?;
        let found = self
            .ports
            .directory
            .user(&actor.tenant, user)
            .await?
            .ok_or(MessagingError::NotFound(Missing::User))?;
        let starter = starter_role(actor);
        let presence = self.presence_of(actor, std::slice::from_ref(&found)).await;
        let mut shown = entry(starter, found, presence.as_ref());
        // Nobody opens a conversation with themselves.
        shown.can_start_conversation &= shown.user_id != actor.user;
        Ok(shown)
    }

    /// Which of `users` of `tenant` an administrator deactivated, in list
    /// reads of up to 500 users (never the single-user cache, so that a
    /// deactivation made on another node is seen at once). A node asks this
    /// about the users of its open sockets, whose tokens outlive a
    /// deactivation, to close theirs.
    pub async fn deactivated_among(
        &self,
        tenant: &TenantId,
        users: &[UserId],
    ) -> Result<Vec<UserId>, MessagingError> {
        let mut deactivated = Vec::new();
        for batch in users.chunks(DEACTIVATION_CHECK_BATCH) {
            let found = self.ports.directory.users(tenant, batch).await?;
            deactivated.extend(found.into_iter().filter(|u| !u.active).map(|u| u.user_id));
        }
        Ok(deactivated)
    }

    /// The status now and last activity of each of `users` ever seen, in one
    /// read of the presence adapter; `None` (unknown) while the tenant's
    /// messaging is switched off, as the presence list is then, or when
    /// presence cannot be read: the directory itself needs only the store, so
    /// it still answers while Redis is down.
    async fn presence_of(&self, actor: &Actor, users: &[DirectoryUser]) -> Option<SeenUsers> {
        match self.ports.features.messaging_enabled(&actor.tenant).await {
            Ok(true) => {}
            Ok(false) => return None,
            Err(err) => {
                tracing::warn!(%err, "directory shown without presence: no feature flag");
                return None;
            }
        }
        let ids: Vec<UserId> = users.iter().map(|u| u.user_id.clone()).collect();
        let records = match self.ports.presence.records(&actor.tenant, &ids).await {
            Ok(records) => records,
            Err(err) => {
                tracing::warn!(%err, "directory shown without presence");
                return None;
            }
        };
        let now = self.ports.clock.now();
        Some(
            records
                .iter()
                .map(|r| (r.user_id.clone(), (status_at(r, now), r.last_seen)))
                .collect(),
        )
    }
}

/// The role the matrix checks for the caller opening a conversation (an
/// active one: a deactivated caller is refused before): `None` for services.
fn starter_role(actor: &Actor) -> Option<Role> {
    match actor.kind {
        ActorKind::Staff(role) => Some(role),
        ActorKind::Service => None,
    }
}

/// Status now and last activity of the users presence has seen.
type SeenUsers = HashMap<UserId, (PresenceStatus, DateTime<Utc>)>;

/// How `user` shows to a caller who starts conversations as `starter`, with
/// their presence (`presence` `None`: unknown; a user it lacks: never seen,
/// so offline).
fn entry(
    starter: Option<Role>,
    user: DirectoryUser,
    presence: Option<&SeenUsers>,
) -> DirectoryEntry {
    let seen = presence.map(|seen| seen.get(&user.user_id).copied());
    DirectoryEntry {
        status: seen.map(|facts| facts.map_or(PresenceStatus::Offline, |(status, _)| status)),
        last_seen: seen.flatten().map(|(_, at)| at),
        can_start_conversation: starter
            .is_some_and(|role| user.active && PermissionMatrix::allows(role, user.role)),
        user_id: user.user_id,
        display_name: user.display_name.as_str().to_owned(),
        role: user.role,
        active: user.active,
    }
}
