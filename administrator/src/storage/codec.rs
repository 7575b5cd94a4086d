//! How records sit on disk, and how a database is opened, migrated, verified and repaired.
//!
//! Every value is one version byte followed by the postcard encoding of that version's type
//! (`RECORD_VERSION`). When a stored type changes, the record version goes up and the type's
//! [`Record::decode_older`] reads the older layouts, so a database written by an older
//! administrator still loads. Version history:
//! - 1: the first versioned layout.
//! - 2: a bucket's configuration names the calls that could not be read (`unread`); other
//!   records are unchanged. The `policy_outcomes` tree (cached analyses) came later within
//!   version 2: a new tree, so an older database simply has none and needs no migration.
//!
//! The `meta` tree holds `schema_version`. A database without it was written before records
//! were versioned (schema 0: bare postcard values); opening it migrates every tree, one sled
//! transaction per tree with its progress recorded in `meta`, so an interrupted migration
//! resumes where it stopped. A database from a newer administrator is refused.

use std::path::Path;

use anyhow::{bail, Context};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sled::Transactional;

use estate_common::text::for_log;

/// The version byte of every record this administrator writes.
pub const RECORD_VERSION: u8 = 2;
/// The layout of schema-0 values (bare postcard), which migration prefixes with this version.
const UNVERSIONED_LAYOUT: u8 = 1;

/// A stored type. `decode_older` reads the body of a record of an older `version` (a type
/// whose layout never changed decodes it as today's).
pub trait Record: DeserializeOwned {
    fn decode_older(version: u8, body: &[u8]) -> anyhow::Result<Self> {
        let _ = version;
        Ok(postcard::from_bytes(body)?)
    }
}
/// The layout of the database as a whole.
pub const SCHEMA_VERSION: u32 = 1;

const META: &str = "meta";
/// How many times (100 ms apart) opening retries a database whose lock is held.
const LOCK_ATTEMPTS: u32 = 30;
const SCHEMA_KEY: &[u8] = b"schema_version";
/// Unreadable records that `verify --repair` set aside: `tree NUL key` → the raw value.
pub const QUARANTINE: &str = "quarantine";

/// The trees of records (every tree but `meta` and `quarantine`).
pub const RECORD_TREES: [&str; 10] = [
    "buckets",
    "accounts",
    "scopes",
    "members",
    "findings",
    "postures",
    "policy_failures",
    "seen_events",
    "bucket_lists",
    "policy_outcomes",
];

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

fn schema_version(meta: &sled::Tree) -> anyhow::Result<Option<u32>> {
    match meta.get(SCHEMA_KEY)? {
        None => Ok(None),
        Some(bytes) => {
            let bytes: [u8; 4] = bytes.as_ref().try_into().map_err(|_| anyhow::anyhow!("corrupt `schema_version`"))?;
            Ok(Some(u32::from_be_bytes(bytes)))
        }
    }
}

/// Opens the database under `dir` and brings it to `SCHEMA_VERSION`.
pub fn open_database(dir: &Path) -> anyhow::Result<sled::Db> {
    let config = sled::Config::new()
        .path(dir)
        // sled is read at start-up only (the index serves queries): a small page cache.
        .cache_capacity(64 * 1024 * 1024);
    // sled's lock on the directory outlives a dropped `Db` for a moment (its flusher thread
    // holds the last reference), and a previous process may still be exiting: wait a little
    // before saying the directory is in use.
    let mut attempts = 0;
    let db = loop {
        match config.open() {
            Err(sled::Error::Io(e)) if is_lock_conflict(&e) && attempts < LOCK_ATTEMPTS => {
                attempts += 1;
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            other => {
                break other.with_context(|| {
                    format!("opening the sled database in `{}` (is another estate-admin using it?)", dir.display())
                })?
            }
        }
    };
    let meta = db.open_tree(META)?;
    match schema_version(&meta)? {
        Some(SCHEMA_VERSION) => {}
        Some(newer) if newer > SCHEMA_VERSION => bail!(
            "the database in `{}` has schema version {newer}, written by a newer Estate; this one reads up to \
             {SCHEMA_VERSION}",
            dir.display()
        ),
        Some(older) => bail!("the database in `{}` has schema version {older}, which no Estate wrote", dir.display()),
        None => {
            let empty = RECORD_TREES.iter().map(|name| db.open_tree(name)).all(|tree| tree.is_ok_and(|t| t.is_empty()));
            if !empty {
                migrate_from_unversioned(&db, &meta)?;
            }
            meta.insert(SCHEMA_KEY, &SCHEMA_VERSION.to_be_bytes())?;
            db.flush()?;
        }
    }
    Ok(db)
}

/// Whether sled's open failed because another handle holds the directory's lock. sled wraps
/// the `flock` failure in an `ErrorKind::Other` error whose message is its only mark.
fn is_lock_conflict(error: &std::io::Error) -> bool {
    error.kind() == std::io::ErrorKind::WouldBlock || error.to_string().starts_with("could not acquire lock")
}

/// Schema 0 → 1: every value gains the version byte. One transaction per tree, which also
/// records that the tree is done, so a crash part-way leaves each tree either migrated or not.
fn migrate_from_unversioned(db: &sled::Db, meta: &sled::Tree) -> anyhow::Result<()> {
    tracing::info!("migrating the database from unversioned records to schema {SCHEMA_VERSION}");
    for name in RECORD_TREES {
        let done_key = format!("migrated:{name}");
        if meta.contains_key(&done_key)? {
            continue;
        }
        let tree = db.open_tree(name)?;
        let mut batch = sled::Batch::default();
        let mut count = 0usize;
        for item in tree.iter() {
            let (key, value) = item?;
            let mut versioned = Vec::with_capacity(value.len() + 1);
            versioned.push(UNVERSIONED_LAYOUT);
            versioned.extend_from_slice(&value);
            batch.insert(key, versioned);
            count += 1;
        }
        (&tree, meta)
            .transaction(|(tree, meta)| {
                tree.apply_batch(&batch)?;
                meta.insert(done_key.as_bytes(), &[1u8][..])?;
                Ok::<_, sled::transaction::ConflictableTransactionError<()>>(())
            })
            .map_err(|e| anyhow::anyhow!("migrating tree `{name}`: {e:?}"))?;
        db.flush()?;
        tracing::info!(tree = name, records = count, "migrated");
    }
    for name in RECORD_TREES {
        meta.remove(format!("migrated:{name}"))?;
    }
    Ok(())
}

/// What `verify` found in one tree.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TreeReport {
    pub name: &'static str,
    pub records: u64,
    pub unreadable: u64,
}

/// Reads every record of every tree with `check_record` (which decodes it with the type its
/// tree holds, `store::check_record`); with `repair`, moves each unreadable one into the
/// `quarantine` tree (logging it) so that the store opens again.
pub fn verify_records(
    db: &sled::Db,
    repair: bool,
    check_record: impl Fn(&str, &[u8], &[u8]) -> anyhow::Result<()>,
) -> anyhow::Result<Vec<TreeReport>> {
    let quarantine = db.open_tree(QUARANTINE)?;
    let mut reports = Vec::new();
    for name in RECORD_TREES {
        let tree = db.open_tree(name)?;
        let mut report = TreeReport { name, ..Default::default() };
        for item in tree.iter() {
            let (key, value) = item?;
            report.records += 1;
            if let Err(error) = check_record(name, &key, &value) {
                report.unreadable += 1;
                tracing::warn!(tree = name, key = %for_log(&String::from_utf8_lossy(&key)), error = %for_log(&format!("{error:#}")), "unreadable record");
                if repair {
                    let mut quarantined = name.as_bytes().to_vec();
                    quarantined.push(0);
                    quarantined.extend_from_slice(&key);
                    (&tree, &quarantine)
                        .transaction(|(tree, quarantine)| {
                            quarantine.insert(quarantined.as_slice(), value.as_ref())?;
                            tree.remove(key.as_ref())?;
                            Ok::<_, sled::transaction::ConflictableTransactionError<()>>(())
                        })
                        .map_err(|e| anyhow::anyhow!("quarantining a record of `{name}`: {e:?}"))?;
                    tracing::warn!(tree = name, key = %for_log(&String::from_utf8_lossy(&key)), "record moved to `quarantine`");
                }
            }
        }
        reports.push(report);
    }
    db.flush()?;
    Ok(reports)
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

    #[test]
    fn opening_waits_for_a_holder_that_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let held = open_database(dir.path()).unwrap();
        let holder = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(400));
            drop(held);
        });
        open_database(dir.path()).expect("the second open waits for the first handle to close");
        holder.join().unwrap();
    }

    #[test]
    fn a_newer_schema_is_refused_and_a_fresh_one_is_stamped() {
        let dir = tempfile::tempdir().unwrap();
        let db = open_database(dir.path()).unwrap();
        assert_eq!(schema_version(&db.open_tree(META).unwrap()).unwrap(), Some(SCHEMA_VERSION));
        db.open_tree(META).unwrap().insert(SCHEMA_KEY, &(SCHEMA_VERSION + 1).to_be_bytes()).unwrap();
        db.flush().unwrap();
        drop(db);
        let error = format!("{:#}", open_database(dir.path()).unwrap_err());
        assert!(error.contains("newer Estate"), "{error}");
    }
}
