//! Conversation rules: one conversation per unordered pair of users per tenant,
//! no messaging oneself, and who may see or act on a conversation's messages.

use afritalk_ports::{
    ConflictKind, Conversation, Message, MessagingError, Missing, ParticipantPair, UserId,
};

/// The canonical pair for a 1-to-1 exchange; writing to oneself is a conflict.
pub fn pair_for(sender: &UserId, recipient: &UserId) -> Result<ParticipantPair, MessagingError> {
    ParticipantPair::new(sender.clone(), recipient.clone()).ok_or_else(|| {
        MessagingError::conflict(ConflictKind::SelfMessage, "you cannot message yourself")
    })
}

/// Access to a conversation: participants only; anyone else is told it does not
/// exist, so ids of other people's conversations reveal nothing.
pub fn ensure_participant(
    conversation: &Conversation,
    user: &UserId,
) -> Result<(), MessagingError> {
    if conversation.has_participant(user) {
        Ok(())
    } else {
        Err(MessagingError::NotFound(Missing::Conversation))
    }
}

/// Which side of a message the caller is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The caller wrote it.
    Sender,
    /// The caller received it.
    Recipient,
}

/// The caller's side of a message; strangers get `NotFound` (not `Forbidden`),
/// so message ids reveal nothing.
pub fn side_of(message: &Message, user: &UserId) -> Result<Side, MessagingError> {
    if &message.sender_id == user {
        Ok(Side::Sender)
    } else if &message.recipient_id == user {
        Ok(Side::Recipient)
    } else {
        Err(MessagingError::NotFound(Missing::Message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(id: &str) -> UserId {
        UserId::parse(id).unwrap()
    }

    #[test]
    fn the_pair_is_the_same_in_both_directions() {
        assert_eq!(
            pair_for(&u("a"), &u("b")).unwrap(),
            pair_for(&u("b"), &u("a")).unwrap()
        );
    }

    #[test]
    fn messaging_oneself_is_a_conflict() {
        let err = pair_for(&u("a"), &u("a")).unwrap_err();
        assert_eq!(err.code(), "self_message");
    }
}
