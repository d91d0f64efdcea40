//! Validated values. Each type checks its rules in its constructor, so a value
//! that exists is a value the rest of the system may trust.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::ValidationError;

/// Longest message, in characters (Unicode scalar values) after trimming.
pub const MAX_MESSAGE_CHARS: usize = 4_000;

/// Longest text of a message's notification, in characters (then an ellipsis).
pub const NOTIFICATION_PREVIEW_CHARS: usize = 140;

/// The text of a message: trimmed, 1 to 4,000 characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MessageContent(String);

impl MessageContent {
    /// Trims `raw` and checks its length.
    pub fn parse(raw: impl AsRef<str>) -> Result<Self, ValidationError> {
        let trimmed = raw.as_ref().trim();
        if trimmed.is_empty() {
            return Err(ValidationError::new("content", "must not be empty"));
        }
        // Line breaks and tabs are text; other control characters (NUL above all,
        // which Postgres refuses) are not.
        if trimmed
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
        {
            return Err(ValidationError::new(
                "content",
                "must not contain control characters other than line breaks and tabs",
            ));
        }
        // Counted in characters, not bytes: a 4,000-letter Wolof or Arabic
        // message must pass just like an English one.
        if trimmed.chars().count() > MAX_MESSAGE_CHARS {
            return Err(ValidationError::new(
                "content",
                format!("must be at most {MAX_MESSAGE_CHARS} characters"),
            ));
        }
        Ok(Self(trimmed.to_owned()))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The text a message's notification shows: its first
    /// [`NOTIFICATION_PREVIEW_CHARS`] characters. Stores write it on an edit too.
    pub fn notification_preview(&self) -> String {
        self.preview(NOTIFICATION_PREVIEW_CHARS)
    }

    /// The first `max_chars` characters, with an ellipsis when cut (for notification previews).
    pub fn preview(&self, max_chars: usize) -> String {
        let mut chars = self.0.chars();
        let head: String = chars.by_ref().take(max_chars).collect();
        if chars.next().is_some() {
            format!("{head}…")
        } else {
            head
        }
    }
}

impl TryFrom<String> for MessageContent {
    type Error = ValidationError;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(raw)
    }
}

impl From<MessageContent> for String {
    fn from(content: MessageContent) -> String {
        content.0
    }
}

/// Longest entity type or entity id, in bytes.
pub const MAX_ENTITY_FIELD_LEN: usize = 128;

/// A business object a message or notification points at (an order, a product, an alert…).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RelatedEntity {
    #[serde(rename = "relatedEntityType")]
    entity_type: String,
    #[serde(rename = "relatedEntityId")]
    entity_id: String,
}

impl RelatedEntity {
    /// Checks both parts: the type is a lowercase word (`order`, `sale`, `stock_alert`),
    /// the id is 1–128 visible characters.
    pub fn new(
        entity_type: impl Into<String>,
        entity_id: impl Into<String>,
    ) -> Result<Self, ValidationError> {
        let entity_type = entity_type.into();
        let entity_id = entity_id.into();
        let type_ok = !entity_type.is_empty()
            && entity_type.len() <= MAX_ENTITY_FIELD_LEN
            && entity_type
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.');
        if !type_ok {
            return Err(ValidationError::new(
                "relatedEntityType",
                "must be 1 to 128 lowercase letters, digits, _ or .",
            ));
        }
        let id_ok = !entity_id.trim().is_empty()
            && entity_id.len() <= MAX_ENTITY_FIELD_LEN
            && !entity_id.chars().any(char::is_control);
        if !id_ok {
            return Err(ValidationError::new(
                "relatedEntityId",
                "must be 1 to 128 bytes without control characters",
            ));
        }
        Ok(Self {
            entity_type,
            entity_id,
        })
    }

    /// Builds the optional reference from two optional inputs: both or neither.
    pub fn from_parts(
        entity_type: Option<String>,
        entity_id: Option<String>,
    ) -> Result<Option<Self>, ValidationError> {
        match (entity_type, entity_id) {
            (None, None) => Ok(None),
            (Some(t), Some(i)) => Self::new(t, i).map(Some),
            (Some(_), None) => Err(ValidationError::new(
                "relatedEntityId",
                "is required when relatedEntityType is given",
            )),
            (None, Some(_)) => Err(ValidationError::new(
                "relatedEntityType",
                "is required when relatedEntityId is given",
            )),
        }
    }

    /// The kind of object (`order`, `product`…).
    pub fn entity_type(&self) -> &str {
        &self.entity_type
    }

    /// The object's id in its own service.
    pub fn entity_id(&self) -> &str {
        &self.entity_id
    }
}

/// A staff member's place in the company hierarchy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Role {
    /// Président-directeur général: the head of the company.
    Pdg,
    /// Directeur général.
    Dg,
    /// Employé.
    Employe,
}

impl Role {
    /// Every role, in hierarchy order.
    pub const ALL: [Role; 3] = [Role::Pdg, Role::Dg, Role::Employe];

    /// The canonical wire name: `PDG`, `DG` or `EMPLOYE`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Pdg => "PDG",
            Role::Dg => "DG",
            Role::Employe => "EMPLOYE",
        }
    }

    /// Parses a role name, case-insensitively, accepting `Employé` for `EMPLOYE`
    /// however its `é` is encoded (one code point, or `e` and a combining
    /// accent as macOS and some keyboards write it).
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        use unicode_normalization::UnicodeNormalization;
        let name: String = raw.trim().nfc().collect();
        match name.to_uppercase().as_str() {
            "PDG" => Ok(Role::Pdg),
            "DG" => Ok(Role::Dg),
            "EMPLOYE" | "EMPLOYÉ" => Ok(Role::Employe),
            _ => Err(ValidationError::new(
                "role",
                "must be one of PDG, DG, EMPLOYE (or Employé)",
            )),
        }
    }
}

impl FromStr for Role {
    type Err = ValidationError;
    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        Self::parse(raw)
    }
}

impl TryFrom<String> for Role {
    type Error = ValidationError;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw)
    }
}

impl From<Role> for String {
    fn from(role: Role) -> String {
        role.as_str().to_owned()
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Longest display name, in characters.
pub const MAX_DISPLAY_NAME_CHARS: usize = 200;

/// A person's name as shown to colleagues: trimmed, 1–200 characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DisplayName(String);

impl DisplayName {
    /// Trims and checks a display name.
    pub fn parse(raw: impl AsRef<str>) -> Result<Self, ValidationError> {
        let trimmed = raw.as_ref().trim();
        let len = trimmed.chars().count();
        if len == 0 || len > MAX_DISPLAY_NAME_CHARS {
            return Err(ValidationError::new(
                "displayName",
                format!("must be 1 to {MAX_DISPLAY_NAME_CHARS} characters"),
            ));
        }
        if trimmed.chars().any(char::is_control) {
            return Err(ValidationError::new(
                "displayName",
                "must not contain control characters",
            ));
        }
        Ok(Self(trimmed.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for DisplayName {
    type Error = ValidationError;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(raw)
    }
}

impl From<DisplayName> for String {
    fn from(name: DisplayName) -> String {
        name.0
    }
}

/// Largest page any list call returns.
pub const MAX_PAGE_SIZE: u32 = 100;

/// How many rows a list call may return: 1 to 100.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageSize(u32);

impl PageSize {
    /// The page size used when the client gives none.
    pub const DEFAULT: PageSize = PageSize(50);

    /// Checks a requested page size.
    pub fn new(size: u32) -> Result<Self, ValidationError> {
        if size == 0 || size > MAX_PAGE_SIZE {
            return Err(ValidationError::new(
                "limit",
                format!("must be between 1 and {MAX_PAGE_SIZE}"),
            ));
        }
        Ok(Self(size))
    }

    /// The size as a number.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl Default for PageSize {
    fn default() -> Self {
        Self::DEFAULT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_is_trimmed_and_bounded_in_characters() {
        assert_eq!(
            MessageContent::parse("  salut \n").unwrap().as_str(),
            "salut"
        );
        assert!(MessageContent::parse("   \n\t").is_err());
        assert!(MessageContent::parse("").is_err());
        // 4,000 multi-byte characters are fine; 4,001 are not.
        assert!(MessageContent::parse("é".repeat(4_000)).is_ok());
        assert!(MessageContent::parse("🙂".repeat(4_001)).is_err());
    }

    #[test]
    fn content_keeps_line_breaks_but_refuses_other_control_characters() {
        assert!(MessageContent::parse("ligne 1\nligne 2\tfin").is_ok());
        assert!(MessageContent::parse("a\u{0}b").is_err());
        assert!(MessageContent::parse("a\u{1b}[31mb").is_err());
    }

    #[test]
    fn content_deserializes_through_validation() {
        assert!(serde_json::from_str::<MessageContent>("\"  \"").is_err());
        assert_eq!(
            serde_json::from_str::<MessageContent>("\" hi \"")
                .unwrap()
                .as_str(),
            "hi"
        );
    }

    #[test]
    fn preview_cuts_on_characters() {
        let c = MessageContent::parse("héllo wörld").unwrap();
        assert_eq!(c.preview(5), "héllo…");
        assert_eq!(c.preview(50), "héllo wörld");
    }

    #[test]
    fn related_entity_needs_both_parts() {
        assert!(RelatedEntity::from_parts(None, None).unwrap().is_none());
        let r = RelatedEntity::from_parts(Some("order".into()), Some("O-17".into()))
            .unwrap()
            .unwrap();
        assert_eq!((r.entity_type(), r.entity_id()), ("order", "O-17"));
        assert_eq!(
            RelatedEntity::from_parts(Some("order".into()), None)
                .unwrap_err()
                .field,
            "relatedEntityId"
        );
        assert_eq!(
            RelatedEntity::from_parts(None, Some("1".into()))
                .unwrap_err()
                .field,
            "relatedEntityType"
        );
        assert!(RelatedEntity::new("Order", "1").is_err());
        assert!(RelatedEntity::new("order", " ").is_err());
    }

    #[test]
    fn roles_parse_with_the_french_spelling() {
        assert_eq!(Role::parse("PDG").unwrap(), Role::Pdg);
        assert_eq!(Role::parse("dg").unwrap(), Role::Dg);
        assert_eq!(Role::parse("EMPLOYE").unwrap(), Role::Employe);
        assert_eq!(Role::parse("Employé").unwrap(), Role::Employe);
        assert_eq!(Role::parse("Employe\u{301}").unwrap(), Role::Employe);
        assert!(Role::parse("CEO").is_err());
        assert_eq!(
            serde_json::to_string(&Role::Employe).unwrap(),
            "\"EMPLOYE\""
        );
    }

    #[test]
    fn page_size_is_one_to_a_hundred() {
        assert!(PageSize::new(0).is_err());
        assert!(PageSize::new(101).is_err());
        assert_eq!(PageSize::new(100).unwrap().get(), 100);
    }

    #[test]
    fn display_names_are_trimmed_and_bounded() {
        assert_eq!(DisplayName::parse(" Awa ").unwrap().as_str(), "Awa");
        assert!(DisplayName::parse("").is_err());
        assert!(DisplayName::parse("a\u{7}b").is_err());
    }
}
