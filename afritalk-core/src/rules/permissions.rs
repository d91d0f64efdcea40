//! The permission matrix (seed 000 §6) and the reply rule (MISSION §3), and who
//! may administer a tenant. This is the one place these rules live.

use afritalk_ports::Role;

use crate::actor::ActorKind;

/// Who may open a conversation with whom, as data: `MATRIX[sender][recipient]`,
/// rows and columns in the order PDG, DG, Employé.
///
/// | sender \ recipient | PDG | DG | Employé |
/// |--------------------|-----|----|---------|
/// | PDG                | yes | yes| yes     |
/// | DG                 | yes | yes| yes     |
/// | Employé            | no  | yes| yes     |
const MATRIX: [[bool; 3]; 3] = [
    // to:  PDG    DG    EMPLOYE
    [true, true, true],  // from PDG
    [true, true, true],  // from DG
    [false, true, true], // from EMPLOYE
];

fn index(role: Role) -> usize {
    match role {
        Role::Pdg => 0,
        Role::Dg => 1,
        Role::Employe => 2,
    }
}

/// Why a write was allowed, or that it was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteDecision {
    /// The matrix allows the sender's role to write to the recipient's role.
    AllowedByMatrix,
    /// The matrix does not, but the recipient wrote first in this conversation.
    AllowedAsReply,
    /// Neither: the write is refused (HTTP 403 / ack `forbidden`, audited).
    Refused,
}

impl WriteDecision {
    /// Whether the write may go ahead.
    pub fn is_allowed(self) -> bool {
        !matches!(self, WriteDecision::Refused)
    }
}

/// The permission matrix and reply rule.
#[derive(Debug, Clone, Copy, Default)]
pub struct PermissionMatrix;

impl PermissionMatrix {
    /// Whether the matrix alone lets `sender` write to `recipient`.
    pub fn allows(sender: Role, recipient: Role) -> bool {
        MATRIX[index(sender)][index(recipient)]
    }

    /// Decides a write: the matrix, else the reply rule (the recipient has already
    /// written to the sender in their conversation).
    pub fn decide(sender: Role, recipient: Role, recipient_has_written: bool) -> WriteDecision {
        if Self::allows(sender, recipient) {
            WriteDecision::AllowedByMatrix
        } else if recipient_has_written {
            WriteDecision::AllowedAsReply
        } else {
            WriteDecision::Refused
        }
    }

    /// Whether the caller may administer the tenant (directory, audit): the PDG or a service.
    pub fn may_administer(kind: ActorKind) -> bool {
        matches!(kind, ActorKind::Service | ActorKind::Staff(Role::Pdg))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Role::*;

    /// Every cell, spelled out independently of `MATRIX`, so a changed cell fails.
    const EXPECTED: [(Role, Role, bool); 9] = [
        (Pdg, Pdg, true),
        (Pdg, Dg, true),
        (Pdg, Employe, true),
        (Dg, Pdg, true),
        (Dg, Dg, true),
        (Dg, Employe, true),
        (Employe, Pdg, false),
        (Employe, Dg, true),
        (Employe, Employe, true),
    ];

    #[test]
    fn every_cell_of_the_matrix() {
        for (sender, recipient, allowed) in EXPECTED {
            assert_eq!(
                PermissionMatrix::allows(sender, recipient),
                allowed,
                "{sender} -> {recipient}"
            );
        }
    }

    #[test]
    fn an_employe_may_reply_to_the_pdg_only_after_the_pdg_wrote() {
        assert_eq!(
            PermissionMatrix::decide(Employe, Pdg, false),
            WriteDecision::Refused
        );
        assert_eq!(
            PermissionMatrix::decide(Employe, Pdg, true),
            WriteDecision::AllowedAsReply
        );
    }

    #[test]
    fn the_matrix_wins_before_the_reply_rule() {
        for (sender, recipient, allowed) in EXPECTED {
            let decision = PermissionMatrix::decide(sender, recipient, true);
            assert!(decision.is_allowed());
            assert_eq!(decision == WriteDecision::AllowedByMatrix, allowed);
        }
    }

    #[test]
    fn only_the_pdg_and_services_administer() {
        assert!(PermissionMatrix::may_administer(ActorKind::Service));
        assert!(PermissionMatrix::may_administer(ActorKind::Staff(Pdg)));
        assert!(!PermissionMatrix::may_administer(ActorKind::Staff(Dg)));
        assert!(!PermissionMatrix::may_administer(ActorKind::Staff(Employe)));
    }
}
