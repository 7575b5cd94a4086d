//! The words every Estate crate shares and that need nothing else: the policy analyser (which
//! must not depend on the protocol) and the protocol crate both speak them.

use serde::{Deserialize, Serialize};

mod ids;
pub mod limits;

pub use ids::{is_account_id, AccountId, InvalidId, Region, MAX_REGION_LEN};

/// Three-valued answers, spelled as Macie spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Tri {
    True,
    False,
    Unknown,
}

impl Tri {
    pub fn from_bool(value: bool) -> Self {
        if value {
            Self::True
        } else {
            Self::False
        }
    }

    pub fn as_bool(self) -> Option<bool> {
        match self {
            Self::True => Some(true),
            Self::False => Some(false),
            Self::Unknown => None,
        }
    }

    /// Kleene conjunction.
    pub fn and(self, other: Self) -> Self {
        match (self, other) {
            (Self::False, _) | (_, Self::False) => Self::False,
            (Self::True, Self::True) => Self::True,
            _ => Self::Unknown,
        }
    }

    /// Kleene disjunction.
    pub fn or(self, other: Self) -> Self {
        match (self, other) {
            (Self::True, _) | (_, Self::True) => Self::True,
            (Self::False, Self::False) => Self::False,
            _ => Self::Unknown,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::True => "TRUE",
            Self::False => "FALSE",
            Self::Unknown => "UNKNOWN",
        }
    }
}

impl std::ops::Not for Tri {
    type Output = Self;

    fn not(self) -> Self {
        match self {
            Self::True => Self::False,
            Self::False => Self::True,
            Self::Unknown => Self::Unknown,
        }
    }
}

/// Macie's `sharedAccess`: who besides the owner can reach a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SharedAccess {
    /// Reachable from outside the organization (or by CloudFront).
    External,
    /// Reachable only from other accounts of the organization.
    Internal,
    /// Reachable by no other account.
    NotShared,
    /// Could not be decided.
    Unknown,
}

impl SharedAccess {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::External => "EXTERNAL",
            Self::Internal => "INTERNAL",
            Self::NotShared => "NOT_SHARED",
            Self::Unknown => "UNKNOWN",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kleene_logic_and_macie_spelling() {
        use Tri::{False, True, Unknown};
        assert_eq!(
            (True.and(Unknown), False.and(Unknown), True.or(Unknown), False.or(Unknown)),
            (Unknown, False, True, Unknown)
        );
        assert_eq!((!True, !Unknown), (False, Unknown));
        assert_eq!(Tri::from_bool(true).as_bool(), Some(true));
        assert_eq!(serde_json::to_string(&Unknown).unwrap(), "\"UNKNOWN\"");
        assert_eq!(serde_json::from_str::<Tri>("\"TRUE\"").unwrap(), True);
    }
}
