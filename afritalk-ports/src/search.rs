//! Directory search: how a name is folded so that "Élodie", "ELODIE" and
//! "elodie" find each other, the text a search matches, and the query a
//! [`Directory`](crate::Directory) answers.
//!
//! Folding happens in Rust, once, when a name is stored (adapters keep the
//! folded key beside the name), so every backend matches and orders names the
//! same way whatever its own collation and `lower()` know of Unicode.

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

use crate::error::ValidationError;
use crate::ids::UserId;
use crate::values::{DisplayName, PageSize};

/// Longest search text, in characters (after trimming).
pub const MAX_SEARCH_CHARS: usize = 100;

/// Folds text for matching: compatibility decomposition; accents dropped from
/// Latin, Greek, Cyrillic and Arabic letters (not from scripts whose marks
/// are part of the letter, such as Devanagari's vowel signs); full lower case
/// with a final sigma as any sigma; letters with no decomposition spelled as
/// people type them without a special keyboard (ß → ss, ø → o, ł → l, Hausa
/// ɗ → d…); runs of white space made one space.
pub fn fold_for_search(text: &str) -> String {
    let mut folded = String::with_capacity(text.len());
    let mut pending_space = false;
    // Whether the marks that follow sit on a letter whose accents we drop (a
    // mark with no letter before it is noise: dropped too).
    let mut on_strippable_base = true;
    for c in text.nfkd() {
        if is_combining_mark(c) {
            if !on_strippable_base {
                folded.push(c);
            }
            continue;
        }
        on_strippable_base = has_droppable_accents(c);
        if c.is_whitespace() {
            pending_space = !folded.is_empty();
            continue;
        }
        if pending_space {
            folded.push(' ');
            pending_space = false;
        }
        for lower in c.to_lowercase() {
            match plain_spelling(lower) {
                Some(plain) => folded.push_str(plain),
                None => folded.push(lower),
            }
        }
    }
    folded
}

/// Whether `base` is a letter of a script where accents are optional in
/// everyday typing: Latin, Greek, Cyrillic, Arabic (its short-vowel marks).
fn has_droppable_accents(base: char) -> bool {
    matches!(
        base as u32,
        0x0000..=0x024F // Latin, Latin-1, Extended-A and -B
            | 0x1E00..=0x1EFF // Latin Extended Additional (Yoruba, Vietnamese)
            | 0x0370..=0x03FF // Greek
            | 0x1F00..=0x1FFF // Greek Extended
            | 0x0400..=0x052F // Cyrillic
            | 0x0600..=0x06FF // Arabic
    )
}

/// The everyday spelling of a lower-case letter that has no decomposition.
fn plain_spelling(c: char) -> Option<&'static str> {
    Some(match c {
        'ß' => "ss",
        'æ' => "ae",
        'œ' => "oe",
        'ø' => "o",
        'ł' => "l",
        'đ' | 'ð' | 'ɗ' => "d",
        'ı' => "i",
        'ɓ' => "b",
        'ƙ' => "k",
        'ƴ' => "y",
        'ŋ' => "n",
        'ɛ' => "e",
        'ɔ' => "o",
        'þ' => "th",
        'ς' => "σ",
        _ => return None,
    })
}

/// A display name's folded form: what directory pages are ordered by and
/// searches match against.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NameKey(String);

impl NameKey {
    /// The key of `name`.
    pub fn of(name: &DisplayName) -> Self {
        Self(fold_for_search(name.as_str()))
    }

    /// A key given back by a client in a page cursor. Keys only position a
    /// page, so any text is a harmless one.
    pub fn from_cursor(key: String) -> Self {
        Self(key)
    }

    /// The key.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a directory search looks for: 1 to 100 characters as typed, folded
/// like names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchText(String);

impl SearchText {
    /// Trims, checks and folds a search text.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let trimmed = raw.trim();
        let len = trimmed.chars().count();
        if len > MAX_SEARCH_CHARS {
            return Err(ValidationError::new(
                "q",
                format!("must be at most {MAX_SEARCH_CHARS} characters"),
            ));
        }
        if trimmed.chars().any(char::is_control) {
            return Err(ValidationError::new(
                "q",
                "must not contain control characters",
            ));
        }
        let folded = fold_for_search(trimmed);
        if folded.is_empty() {
            return Err(ValidationError::new("q", "must not be empty"));
        }
        Ok(Self(folded))
    }

    /// The folded text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether a folded name contains this text.
    pub fn matches(&self, key: &NameKey) -> bool {
        key.as_str().contains(self.as_str())
    }
}

/// Where a directory page starts: strictly after this (key, user id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryCursor {
    /// The folded name of the last user of the previous page.
    pub key: NameKey,
    /// That user's id.
    pub user_id: UserId,
}

/// One page of a tenant's directory, ordered by folded name then user id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryQuery {
    /// Only users whose folded name contains this text.
    pub text: Option<SearchText>,
    /// Only users strictly after this position.
    pub after: Option<DirectoryCursor>,
    /// Also list inactive users.
    pub include_inactive: bool,
    /// At most this many users.
    pub limit: PageSize,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> String {
        NameKey::of(&DisplayName::parse(name).unwrap()).0
    }

    #[test]
    fn folding_drops_accents_case_and_extra_spaces() {
        assert_eq!(key("Élodie  N'Guessan"), "elodie n'guessan");
        assert_eq!(fold_for_search(" ÇA\t\nVA "), "ca va");
        assert_eq!(key("Ａｗａ ﬁlle"), "awa fille");
        assert_eq!(key("Ẹ̀kọ́ Ọbáfẹ́mi"), "eko obafemi");
        assert_eq!(key("Οδυσσέας"), key("ΟΔΥΣΣΕΑΣ"));
        assert_eq!(key("Фёдор"), "федор");
        assert_eq!(key("فَاطِمَة"), "فاطمة");
    }

    #[test]
    fn letters_without_a_decomposition_are_spelled_plainly() {
        assert_eq!(key("Straße"), "strasse");
        assert_eq!(key("Işık Øster Łukasz"), "isik oster lukasz");
        assert_eq!(key("Ɗan Ɓala Ƙasimu"), "dan bala kasimu");
        assert_eq!(key("Kɔfi Ɛsi"), "kofi esi");
    }

    #[test]
    fn marks_that_are_part_of_a_letter_stay() {
        // Devanagari and Tamil vowel signs and viramas change the word.
        assert_ne!(key("किरण"), key("करण"));
        assert_eq!(key("नन्दिनी"), "नन्दिनी");
        assert_eq!(key("நன்றி"), "நன்றி");
    }

    #[test]
    fn a_search_text_is_folded_and_bounded() {
        let text = SearchText::parse("  ÉLO ").unwrap();
        assert_eq!(text.as_str(), "elo");
        assert!(text.matches(&NameKey::of(&DisplayName::parse("Élodie").unwrap())));
        assert!(!text.matches(&NameKey::of(&DisplayName::parse("Awa").unwrap())));
        for bad in [
            "",
            "   ",
            "\u{301}",
            "a\u{7}",
            &"x".repeat(MAX_SEARCH_CHARS + 1),
        ] {
            let err = SearchText::parse(bad).unwrap_err();
            assert_eq!(err.field, "q", "{bad:?}");
        }
        assert!(SearchText::parse(&"é".repeat(MAX_SEARCH_CHARS)).is_ok());
    }
}
