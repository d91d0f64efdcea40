//! The real id source.

use afritalk_ports::IdGenerator;
use uuid::Uuid;

/// Mints UUID v7 ids: unique and roughly ordered by creation time, which keeps
/// database indexes compact and makes id tie-breaks follow insertion order.
#[derive(Debug, Clone, Copy, Default)]
pub struct UuidV7Ids;

impl UuidV7Ids {
    /// The UUID v7 generator.
    pub fn new() -> Self {
        Self
    }
}

impl IdGenerator for UuidV7Ids {
    fn new_id(&self) -> Uuid {
        Uuid::now_v7()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn ids_are_version_7_and_never_repeat() {
        let ids = UuidV7Ids::new();
        let minted: Vec<Uuid> = (0..1_000).map(|_| ids.new_id()).collect();
        assert!(minted.iter().all(|id| id.get_version_num() == 7));
        assert_eq!(minted.iter().collect::<HashSet<_>>().len(), minted.len());
    }

    #[test]
    fn ids_increase_in_creation_order() {
        let ids = UuidV7Ids;
        let minted: Vec<Uuid> = (0..1_000).map(|_| ids.new_id()).collect();
        assert!(minted.windows(2).all(|w| w[0] < w[1]));
    }
}
