//! Who is calling: the authenticated principal a use case acts for.

use afritalk_ports::{MessagingError, Role, TenantId, UserId};

/// What kind of principal is calling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActorKind {
    /// A staff member with their place in the hierarchy.
    Staff(Role),
    /// Another AfriGest service (alerts, directory sync, audit export).
    Service,
}

/// The authenticated caller of a use case: tenant, identity, kind, and the client IP
/// recorded in audit rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// The tenant every action is confined to.
    pub tenant: TenantId,
    /// The user (or service) id.
    pub user: UserId,
    /// Staff with a role, or a service.
    pub kind: ActorKind,
    /// The client's IP address, when the call came over the network.
    pub ip: Option<String>,
}

impl Actor {
    /// A staff member of `tenant` with `role`.
    pub fn staff(tenant: TenantId, user: UserId, role: Role) -> Self {
        Self {
            tenant,
            user,
            kind: ActorKind::Staff(role),
            ip: None,
        }
    }

    /// A calling service acting inside `tenant`.
    pub fn service(tenant: TenantId, name: UserId) -> Self {
        Self {
            tenant,
            user: name,
            kind: ActorKind::Service,
            ip: None,
        }
    }

    /// The same actor, with the client IP to record in audit rows.
    pub fn with_ip(mut self, ip: impl Into<String>) -> Self {
        self.ip = Some(ip.into());
        self
    }

    /// The staff role, or `Forbidden` for a service (messaging is between people).
    pub fn staff_role(&self) -> Result<Role, MessagingError> {
        match self.kind {
            ActorKind::Staff(role) => Ok(role),
            ActorKind::Service => Err(MessagingError::Forbidden(
                "only staff members can use messaging".into(),
            )),
        }
    }
}
