//! The sled engine, the default: every tree of [`Tree`] is a sled tree, a commit is one sled
//! transaction over all of them, then sled's flush and an `fdatasync` of its log; the `meta`
//! tree holds `schema_version`, and `quarantine` the records `verify --repair` set aside
//! (`tree NUL key` → the raw value).
//!
//! A database without `schema_version` was written before records were versioned (schema 0:
//! bare postcard values); opening it migrates every tree, one sled transaction per tree with
//! its progress recorded in `meta`, so an interrupted migration resumes where it stopped. A
//! database from a newer administrator is refused.

use std::path::Path;

use anyhow::{bail, Context};
use sled::Transactional;

use super::codec::UNVERSIONED_LAYOUT;
use super::{Storage, Tree, Visit, Writes};

/// The layout of the database as a whole.
pub const SCHEMA_VERSION: u32 = 1;

const META: &str = "meta";
/// How many times (100 ms apart) opening retries a database whose lock is held.
const LOCK_ATTEMPTS: u32 = 30;
const SCHEMA_KEY: &[u8] = b"schema_version";
/// Unreadable records that `verify --repair` set aside: `tree NUL key` → the raw value.
pub const QUARANTINE: &str = "quarantine";

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
fn open_database(dir: &Path) -> anyhow::Result<sled::Db> {
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
            let empty =
                Tree::ALL.iter().map(|tree| db.open_tree(tree.name())).all(|tree| tree.is_ok_and(|t| t.is_empty()));
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
    for name in Tree::ALL.map(Tree::name) {
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
    for name in Tree::ALL.map(Tree::name) {
        meta.remove(format!("migrated:{name}"))?;
    }
    Ok(())
}

/// A sled database holding the store.
pub struct SledStorage {
    db: sled::Db,
    /// The trees of [`Tree::ALL`], in its order.
    trees: Vec<sled::Tree>,
    meta: sled::Tree,
    /// sled's log file, synced to stable storage after each commit's flush (see
    /// [`SledStorage::commit`]); `None` for a store opened to inspect it, or without the sync.
    log: Option<std::fs::File>,
}

impl std::fmt::Debug for SledStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStorage").finish_non_exhaustive()
    }
}

/// sled's log (`db` in its directory), opened to sync it: `fdatasync` on any descriptor of the
/// file makes all of its written data durable.
fn open_log(dir: &Path) -> anyhow::Result<std::fs::File> {
    let path = dir.join("db");
    std::fs::File::open(&path).with_context(|| format!("opening sled's log `{}` to sync it", path.display()))
}

impl SledStorage {
    /// Opens (or creates) the database under `dir` and brings it to `SCHEMA_VERSION`; with
    /// `write`, commits are synced to stable storage.
    pub fn open(dir: &Path, write: bool) -> anyhow::Result<Self> {
        let db = open_database(dir)?;
        let trees = Tree::ALL.iter().map(|tree| db.open_tree(tree.name())).collect::<Result<Vec<_>, _>>()?;
        let meta = db.open_tree(META)?;
        let log = if write { Some(open_log(dir)?) } else { None };
        Ok(Self { db, trees, meta, log })
    }

    /// Commits that end at sled's flush, without the sync to stable storage: for the
    /// benchmark that measures what the sync costs.
    pub fn without_device_sync(mut self) -> Self {
        self.log = None;
        self
    }

    fn tree(&self, tree: Tree) -> &sled::Tree {
        &self.trees[tree as usize]
    }
}

impl Storage for SledStorage {
    /// Durable means on stable storage: sled's flush writes its log buffers to the device and
    /// waits (`sync_file_range`), which neither empties the device's volatile cache nor records
    /// the file's new length; the `fdatasync` after it does both. So a commit survives a crash
    /// of the process, of the operating system, and a power loss.
    fn commit(&self, writes: Writes) -> anyhow::Result<()> {
        let batches: Vec<sled::Batch> = writes
            .into_trees()
            .map(|(_, writes)| {
                let mut batch = sled::Batch::default();
                for (key, value) in writes {
                    match value {
                        Some(value) => batch.insert(key, value),
                        None => batch.remove(key),
                    }
                }
                batch
            })
            .collect();
        self.trees[..]
            .transaction(|trees| {
                for (tree, batch) in trees.iter().zip(&batches) {
                    tree.apply_batch(batch)?;
                }
                Ok::<_, sled::transaction::ConflictableTransactionError<()>>(())
            })
            .map_err(|e| anyhow::anyhow!("writing the store: {e:?}"))?;
        self.flush()
    }

    fn scan(&self, tree: Tree, visit: &mut Visit<'_>) -> anyhow::Result<()> {
        for item in self.tree(tree).iter() {
            let (key, value) = item?;
            visit(&key, &value)?;
        }
        Ok(())
    }

    fn quarantine(&self, tree: Tree, key: &[u8]) -> anyhow::Result<()> {
        let quarantine = self.db.open_tree(QUARANTINE)?;
        let mut quarantined = tree.name().as_bytes().to_vec();
        quarantined.push(0);
        quarantined.extend_from_slice(key);
        let name = tree.name();
        (self.tree(tree), &quarantine)
            .transaction(|(tree, quarantine)| {
                if let Some(value) = tree.remove(key)? {
                    quarantine.insert(quarantined.as_slice(), value)?;
                }
                Ok::<_, sled::transaction::ConflictableTransactionError<()>>(())
            })
            .map_err(|e| anyhow::anyhow!("quarantining a record of `{name}`: {e:?}"))?;
        Ok(())
    }

    fn schema_version(&self) -> anyhow::Result<u32> {
        schema_version(&self.meta)?.context("the database records no schema version")
    }

    fn flush(&self) -> anyhow::Result<()> {
        self.db.flush().context("flushing sled")?;
        if let Some(log) = &self.log {
            log.sync_data().context("syncing the store's log to stable storage")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn a_record_moved_aside_leaves_its_tree_for_the_quarantine() {
        let dir = tempfile::tempdir().unwrap();
        let storage = SledStorage::open(dir.path(), true).unwrap();
        let mut writes = Writes::default();
        writes.insert(Tree::Scopes, b"k".to_vec(), vec![1, 2]);
        storage.commit(writes).unwrap();
        storage.quarantine(Tree::Scopes, b"k").unwrap();
        let mut left = 0;
        storage
            .scan(Tree::Scopes, &mut |_, _| {
                left += 1;
                Ok(())
            })
            .unwrap();
        assert_eq!(left, 0);
        let held = storage.db.open_tree(QUARANTINE).unwrap().get(b"scopes\0k").unwrap();
        assert_eq!(held.as_deref(), Some(&[1u8, 2][..]));
        assert_eq!(storage.schema_version().unwrap(), SCHEMA_VERSION);
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
