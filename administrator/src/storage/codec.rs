//! How a record sits on disk: one version byte followed by the postcard encoding of that
//! version's type (`RECORD_VERSION`). When a stored type changes, the record version goes up
//! and the type's [`Record::decode_older`] reads the older layouts, so a database written by
//! an older administrator still loads. Version history:
//! - 1: the first versioned layout.
//! - 2: a bucket's configuration names the calls that could not be read (`unread`); other
//!   records are unchanged. The `policy_outcomes` tree (cached analyses) came later within
//!   version 2: a new tree, so an older database simply has none and needs no migration.
//! - 3: a finding keeps the bucket's state at its latest occurrence and the caller's whole
//!   CloudTrail identity and source address; a refresh's cause has no API name. Other records
//!   are unchanged.
//!
//! Engine-neutral: the engines (`sled_engine.rs`) store these bytes as they are.

use anyhow::{bail, Context};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// The version byte of every record this administrator writes.
pub const RECORD_VERSION: u8 = 3;
/// The layout of values written before records were versioned (bare postcard): migration
/// prefixes them with this version.
pub const UNVERSIONED_LAYOUT: u8 = 1;

/// A stored type. `decode_older` reads the body of a record of an older `version` (a type
/// whose layout never changed decodes it as today's).
pub trait Record: DeserializeOwned {
    fn decode_older(version: u8, body: &[u8]) -> anyhow::Result<Self> {
        let _ = version;
        Ok(postcard::from_bytes(body)?)
    }
}

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let out = vec![RECORD_VERSION];
    postcard::to_extend(value, out).expect("serializing to memory cannot fail")
}

/// Decodes a record of `tree`; the error names the tree and key, and how to repair.
pub fn decode<T: Record>(tree: &str, key: &[u8], value: &[u8]) -> anyhow::Result<T> {
    decode_value(value).with_context(|| {
        format!(
            "unreadable record in tree `{tree}` at key `{}` (`estate-admin verify --repair` sets such records aside)",
            String::from_utf8_lossy(key)
        )
    })
}

fn decode_value<T: Record>(value: &[u8]) -> anyhow::Result<T> {
    match value.split_first() {
        Some((&RECORD_VERSION, body)) => Ok(postcard::from_bytes(body)?),
        Some((&version, body)) if (1..RECORD_VERSION).contains(&version) => T::decode_older(version, body),
        Some((version, _)) => bail!("record version {version} is not one this administrator reads ({RECORD_VERSION})"),
        None => bail!("empty record"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Record for (u64, String) {}
    impl Record for u64 {}

    #[test]
    fn records_carry_their_version_and_others_are_refused() {
        let bytes = encode(&(7u64, "x".to_owned()));
        assert_eq!(bytes[0], RECORD_VERSION);
        let back: (u64, String) = decode("t", b"k", &bytes).unwrap();
        assert_eq!(back, (7, "x".to_owned()));
        let mut future = bytes.clone();
        future[0] = 9;
        let error = format!("{:#}", decode::<(u64, String)>("t", b"k", &future).unwrap_err());
        assert!(error.contains("record version 9") && error.contains("verify --repair"), "{error}");
        assert!(decode::<u64>("t", b"k", &[]).is_err());
    }
}
