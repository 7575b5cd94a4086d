//! S3's own limits on what a bucket can hold, and the bounds Estate puts on the strings agents
//! send. What an agent reports is a claim: the administrator checks it against these at the edge
//! and rejects, naming the field, what no real bucket could have; nothing is truncated silently.
//! The numbers are S3's documented quotas where S3 has one.

/// S3's limit on a bucket policy (20 KB). A larger document cannot be a bucket's policy.
pub const MAX_BUCKET_POLICY_BYTES: usize = 20 * 1024;
/// Tags on one bucket (S3: 50 user tags per resource).
pub const MAX_TAGS: usize = 50;
/// A tag key, in Unicode characters (S3: 128).
pub const MAX_TAG_KEY_CHARS: usize = 128;
/// A tag value, in Unicode characters (S3: 256).
pub const MAX_TAG_VALUE_CHARS: usize = 256;
/// Grants in one ACL (S3: 100).
pub const MAX_ACL_GRANTS: usize = 100;
/// Rules in one replication configuration (S3: 1,000).
pub const MAX_REPLICATION_RULES: usize = 1_000;
/// Strings from a CloudTrail event (event name, actor, actor type, event ID), in bytes: the
/// longest real one, an assumed-role ARN with its session name, is well under this.
pub const MAX_EVENT_STRING_BYTES: usize = 256;
/// An agent's version string, in bytes.
pub const MAX_AGENT_VERSION_BYTES: usize = 64;
/// A canonical user ID is 64 hexadecimal digits; this leaves room for other partitions' forms.
pub const MAX_CANONICAL_ID_BYTES: usize = 128;
/// Other identifiers S3 returns (grantee URIs and e-mail addresses, ARNs, KMS key IDs, rule
/// IDs, algorithm names), in bytes: IAM's longest ARN is 2,048.
pub const MAX_IDENTIFIER_BYTES: usize = 2_048;
/// An error message kept for a bucket the agent could not read, in bytes.
pub const MAX_ERROR_MESSAGE_BYTES: usize = 1_024;
/// Why a reporter cannot read its account (a hello's `problem`), in bytes.
pub const MAX_PROBLEM_BYTES: usize = 1_024;

/// Why a bucket name is not one S3 could have given out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidBucketName(pub String);

impl std::fmt::Display for InvalidBucketName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InvalidBucketName {}

/// Checks a bucket name against S3's naming rules: 3 to 63 characters of lower-case letters,
/// digits, dots and hyphens. Buckets created in us-east-1 before March 2018 may still have a
/// legacy name (up to 255 characters, upper-case letters and underscores allowed); such a name
/// is accepted only where it can exist, in `us-east-1` (`legacy_allowed`).
pub fn check_bucket_name(name: &str, legacy_allowed: bool) -> Result<(), InvalidBucketName> {
    let (max, allowed): (usize, fn(u8) -> bool) = if legacy_allowed {
        (255, |b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
    } else {
        (63, |b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-'))
    };
    if name.len() < 3 || name.len() > max {
        return Err(InvalidBucketName(format!("a bucket name has 3 to {max} characters, this one {}", name.len())));
    }
    if let Some(bad) = name.bytes().find(|b| !allowed(*b)) {
        let shown = if bad.is_ascii_graphic() { format!("`{}`", bad as char) } else { format!("byte 0x{bad:02x}") };
        return Err(InvalidBucketName(format!(
            "{shown} cannot be part of a bucket name (lower-case letters, digits, `.` and `-`{})",
            if legacy_allowed { ", and in us-east-1 upper-case letters and `_`" } else { "" }
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names_follow_s3s_rules() {
        for good in ["abc", "logs.example-1", &"a".repeat(63)] {
            assert!(check_bucket_name(good, false).is_ok(), "{good}");
        }
        for bad in ["ab", &"a".repeat(64), "Upper", "under_score", "spa ce", "nul\0x", "é-bucket", ""] {
            assert!(check_bucket_name(bad, false).is_err(), "{bad:?}");
        }
        assert!(check_bucket_name(&"a".repeat(200_000), false).unwrap_err().0.contains("200000"));
        // Legacy us-east-1 names.
        assert!(check_bucket_name("Legacy_Bucket", true).is_ok());
        assert!(check_bucket_name(&"a".repeat(255), true).is_ok());
        assert!(check_bucket_name(&"a".repeat(256), true).is_err());
        assert!(check_bucket_name("semi;colon", true).is_err());
    }
}
