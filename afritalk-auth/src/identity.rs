//! Who a token speaks for, and what a request wants to do with it.

use afritalk_core::{Actor, ActorKind};
use afritalk_ports::{DisplayName, TenantId, UserId};

/// The identity a token's authority block states: tenant, user, staff role or
/// service, and an optional display name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The tenant every action is confined to.
    pub tenant: TenantId,
    /// The user id (or the service's name).
    pub user: UserId,
    /// Staff with a role, or a service.
    pub kind: ActorKind,
    /// The display name, if the token carries one.
    pub name: Option<DisplayName>,
}

impl Identity {
    /// The core's caller for this identity (without a client IP).
    pub fn to_actor(&self) -> Actor {
        match self.kind {
            ActorKind::Staff(role) => Actor::staff(self.tenant.clone(), self.user.clone(), role),
            ActorKind::Service => Actor::service(self.tenant.clone(), self.user.clone()),
        }
    }
}

impl From<Identity> for Actor {
    fn from(identity: Identity) -> Self {
        identity.to_actor()
    }
}

/// What a request does, stated to the authorizer as `operation("read" | "write")`
/// so that attenuation blocks can restrict it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// Reading (HTTP GET, socket connect).
    Read,
    /// Changing anything.
    Write,
}

impl Operation {
    /// The datalog term.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Read => "read",
            Operation::Write => "write",
        }
    }
}
