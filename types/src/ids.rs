//! Identifiers checked once, where they enter: an [`AccountId`] or a [`Region`] in hand is
//! known to be well formed, so the code behind the edge never checks again, and the store's key
//! layout (which separates its parts with NUL bytes) can rely on what they may contain.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A text that is not the identifier it was read as; says which kind and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidId {
    pub kind: &'static str,
    pub text: String,
    pub reason: &'static str,
}

impl fmt::Display for InvalidId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Names from outside are quoted with their control characters escaped.
        write!(f, "`{}` is not {}: {}", self.text.escape_debug(), self.kind, self.reason)
    }
}

impl std::error::Error for InvalidId {}

/// Is `text` an AWS account ID (twelve ASCII digits)?
pub fn is_account_id(text: &str) -> bool {
    text.len() == 12 && text.bytes().all(|b| b.is_ascii_digit())
}

/// The longest Region code accepted. AWS's longest today is 14 characters (`us-isob-east-1`).
pub const MAX_REGION_LEN: usize = 32;

/// Why `text` is not a Region code, if it is not: lower-case ASCII letters, digits and
/// hyphens, starting with a letter and ending with a letter or digit, at most
/// [`MAX_REGION_LEN`] long. Looser than AWS's own pattern on purpose, so that a Region AWS
/// opens tomorrow is accepted.
fn region_fault(text: &str) -> Option<&'static str> {
    if text.is_empty() {
        Some("it is empty")
    } else if text.len() > MAX_REGION_LEN {
        Some("it is longer than 32 characters")
    } else if !text.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
        Some("only lower-case letters, digits and hyphens may appear")
    } else if !text.starts_with(|c: char| c.is_ascii_lowercase()) || text.ends_with('-') {
        Some("it must start with a letter and not end with a hyphen")
    } else {
        None
    }
}

macro_rules! checked_string {
    ($(#[$meta:meta])* $name:ident, $kind:literal, $fault:expr) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// Checks `text` and takes it as this identifier.
            pub fn parse(text: impl Into<String>) -> Result<Self, InvalidId> {
                let text = text.into();
                let fault: fn(&str) -> Option<&'static str> = $fault;
                match fault(&text) {
                    None => Ok(Self(text)),
                    Some(reason) => Err(InvalidId { kind: $kind, text, reason }),
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl Deref for $name {
            type Target = str;

            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = InvalidId;

            fn from_str(text: &str) -> Result<Self, InvalidId> {
                Self::parse(text)
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidId;

            fn try_from(text: String) -> Result<Self, InvalidId> {
                Self::parse(text)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = InvalidId;

            fn try_from(text: &str) -> Result<Self, InvalidId> {
                Self::parse(text)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }

        impl PartialEq<$name> for str {
            fn eq(&self, other: &$name) -> bool {
                self == other.0
            }
        }

        impl PartialEq<$name> for &str {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }

        impl PartialEq<$name> for String {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }

        /// Encoded as the plain string, so records written before the type existed read back.
        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        /// Checked on the way in like any other edge: a stored or configured value that is
        /// not well formed is an error, not a value.
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                Self::parse(text).map_err(serde::de::Error::custom)
            }
        }
    };
}

checked_string!(
    /// An AWS account ID: twelve ASCII digits.
    AccountId,
    "an account ID",
    |text| (!is_account_id(text)).then_some("an account ID is twelve digits")
);

checked_string!(
    /// An AWS Region code such as `eu-west-3`.
    Region,
    "a Region",
    region_fault
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_ids_are_twelve_digits() {
        assert!(is_account_id("012345678901") && !is_account_id("12345678901") && !is_account_id("01234567890a"));
        let id = AccountId::parse("012345678901").unwrap();
        assert_eq!((id.as_str(), id == "012345678901"), ("012345678901", true));
        let bad = AccountId::parse("0123\u{0}5678901").unwrap_err();
        assert_eq!(bad.to_string(), "`0123\\05678901` is not an account ID: an account ID is twelve digits");
    }

    #[test]
    fn regions_are_codes_that_cannot_break_a_key() {
        for good in ["us-east-1", "us-gov-west-1", "us-isob-east-1", "eusc-de-east-1", "cn-north-1"] {
            assert_eq!(Region::parse(good).map(String::from), Ok(good.to_owned()));
        }
        for bad in ["", "US-EAST-1", "us-east-1\0", "-us-east-1", "us-east-", "1us", "us east 1", &"a".repeat(33)] {
            assert!(Region::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn identifiers_encode_as_their_string_and_are_checked_when_decoded() {
        let id = AccountId::parse("111122223333").unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"111122223333\"");
        assert_eq!(serde_json::from_str::<AccountId>("\"111122223333\"").unwrap(), id);
        let refused = serde_json::from_str::<Region>("\"Not a Region\"").unwrap_err().to_string();
        assert!(refused.contains("is not a Region"), "{refused}");
    }
}
