//! The error returned by [`validate_keyword`](crate::validate_keyword).

use std::fmt;

use crate::KeywordType;

/// Why a keyword value breaks WeChat's rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeywordErrorKind {
    /// The value is empty or only whitespace (WeChat: `data.X.value is empty`).
    Empty,
    /// The value is longer than its type allows. Both counts are in the unit of the type's rule:
    /// Unicode scalar values for most types, digits for `amount`.
    TooLong {
        /// The most the type allows.
        max: usize,
        /// What the value has.
        actual: usize,
    },
    /// The value contains a character its type does not allow (or a line break or control
    /// character, which no type allows); see [`KeywordError::offending_char`].
    InvalidCharacters,
    /// The characters are allowed but do not form a valid value (a malformed time or date, an
    /// amount without currency symbol, a Chinese character inside a plate number, ...).
    InvalidFormat,
    /// The key does not have the form `{type}{digits}` with a known type.
    UnknownKeyType,
}

/// A keyword value WeChat would reject with errcode 47003.
///
/// Its [`Display`](fmt::Display) is one line naming the key and the broken rule, in the style
/// of WeChat's own detail, e.g. `data.phrase2.value invalid: phrase allows at most 5 Chinese
/// characters, got 6` or `data.thing1.value is empty`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeywordError {
    key: String,
    kind: KeywordErrorKind,
    keyword_type: Option<KeywordType>,
    /// Meaning depends on `kind`: the unit for `TooLong` ("Chinese characters"), the whole
    /// rule for `InvalidCharacters` and `InvalidFormat`. Static so that validation only
    /// allocates the key, and only on failure.
    rule: &'static str,
    offending: Option<char>,
}

impl KeywordError {
    pub(crate) fn new(
        key: &str,
        keyword_type: Option<KeywordType>,
        kind: KeywordErrorKind,
        rule: &'static str,
        offending: Option<char>,
    ) -> Self {
        Self {
            key: key.to_owned(),
            kind,
            keyword_type,
            rule,
            offending,
        }
    }

    /// The template keyword key, e.g. `thing1`.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// What is wrong with the value.
    pub fn kind(&self) -> KeywordErrorKind {
        self.kind
    }

    /// Whether the value was empty (or only whitespace).
    pub fn is_empty(&self) -> bool {
        self.kind == KeywordErrorKind::Empty
    }

    /// The keyword type parsed from the key; `None` for [`KeywordErrorKind::UnknownKeyType`].
    pub fn keyword_type(&self) -> Option<KeywordType> {
        self.keyword_type
    }

    /// For [`KeywordErrorKind::InvalidCharacters`], the first character that is not allowed.
    pub fn offending_char(&self) -> Option<char> {
        self.offending
    }
}

impl fmt::Display for KeywordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = &self.key;
        match (self.kind, self.keyword_type) {
            (KeywordErrorKind::Empty, _) => write!(f, "data.{key}.value is empty"),
            (KeywordErrorKind::UnknownKeyType, _) | (_, None) => {
                write!(
                    f,
                    "data.{key}.value invalid: unknown keyword type in key {key:?}"
                )
            }
            (KeywordErrorKind::TooLong { max, actual }, Some(ty)) => write!(
                f,
                "data.{key}.value invalid: {ty} allows at most {max} {}, got {actual}",
                self.rule
            ),
            (KeywordErrorKind::InvalidCharacters, Some(_)) => {
                write!(f, "data.{key}.value invalid: {}", self.rule)?;
                match self.offending {
                    Some(c) => write!(f, ", found {c:?}"),
                    None => Ok(()),
                }
            }
            (KeywordErrorKind::InvalidFormat, Some(_)) => {
                write!(f, "data.{key}.value invalid: {}", self.rule)
            }
        }
    }
}

impl std::error::Error for KeywordError {}
