//! Object statistics: which objects Macie can classify (the one table of supported storage
//! classes and file name extensions), and the tally that counts a bucket's objects into
//! Macie's object fields as they stream by, in constant memory.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::time::UnixMillis;

/// Macie's `ObjectLevelStatistics`: object counts (or bytes) by file type and by storage class
/// that Macie cannot classify, and their total.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectLevelStatistics {
    pub file_type: i64,
    pub storage_class: i64,
    pub total: i64,
}

/// Macie's `ObjectCountByEncryptionType`: objects by the server-side encryption they use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectCountByEncryptionType {
    pub customer_managed: i64,
    pub kms_managed: i64,
    pub s3_managed: i64,
    pub unencrypted: i64,
    pub unknown: i64,
}

/// Storage classes whose objects can be classified.
pub const CLASSIFIABLE_STORAGE_CLASSES: &[&str] =
    &["STANDARD", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING", "GLACIER_IR", "REDUCED_REDUNDANCY"];

/// File name extensions (lowercase, without the dot) of formats that can be classified: big
/// data (Avro, Parquet), compressed and archive files, documents, e-mail, and text.
pub const CLASSIFIABLE_EXTENSIONS: &[&str] = &[
    // Big data formats.
    "avro",
    "parquet",
    // Compressed and archive files.
    "gz",
    "gzip",
    "tar",
    "zip",
    // Documents.
    "doc",
    "docx",
    "pdf",
    "xls",
    "xlsx",
    // E-mail.
    "eml",
    // Structured and unstructured text.
    "csv",
    "htm",
    "html",
    "json",
    "jsonl",
    "tsv",
    "txt",
    "xml",
    "cfg",
    "conf",
    "ini",
    "log",
    "md",
    "properties",
    "sql",
    "yaml",
    "yml",
];

/// Extensions whose bytes count in `sizeInBytesCompressed`.
pub const COMPRESSED_EXTENSIONS: &[&str] = &["gz", "gzip", "zip"];

/// The extension of an object key, lowercased: the part after the last `.` of the last path
/// segment; none for keys like `dir/file` or `.profile`.
pub fn extension(key: &str) -> Option<String> {
    let name = key.rsplit('/').next().unwrap_or(key);
    match name.rfind('.') {
        Some(0) | None => None,
        Some(at) => Some(name[at + 1..].to_ascii_lowercase()),
    }
}

/// S3 reports no storage class for STANDARD objects in some listings.
pub fn normalize_storage_class(class: Option<&str>) -> &str {
    match class {
        None | Some("") => "STANDARD",
        Some(class) => class,
    }
}

/// How an object is encrypted at rest, as far as we know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ObjectEncryption {
    /// SSE-C.
    CustomerManaged,
    /// SSE-KMS or DSSE-KMS.
    KmsManaged,
    /// SSE-S3.
    S3Managed,
    Unencrypted,
    Unknown,
}

/// How a bucket's object statistics were obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ObjectStatsSource {
    /// Counts and encryption from the bucket's newest S3 Inventory report.
    InventoryReport,
    /// Listed completely; every object's encryption read with HeadObject.
    Full,
    /// Listed completely; encryption read for a budget of objects, the rest `unknown`.
    Sampled,
    /// A manual object refresh: listed now, multipart parts excluded, encryption `unknown`.
    ManualRefresh,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Usage {
    #[serde(rename = "objectCount")]
    pub count: i64,
    #[serde(rename = "sizeInBytes")]
    pub size: i64,
}

/// A bucket's object numbers in Macie's fields: what statistics sum and queries filter on,
/// small enough to keep inline in the administrator's index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ObjectTotals {
    pub object_count: i64,
    pub size_in_bytes: i64,
    pub size_in_bytes_compressed: i64,
    pub classifiable_object_count: i64,
    pub classifiable_size_in_bytes: i64,
    pub unclassifiable_object_count: ObjectLevelStatistics,
    pub unclassifiable_object_size_in_bytes: ObjectLevelStatistics,
}

/// One bucket's object statistics, Macie's fields and our additions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectStats {
    /// Postcard writes a nested struct's fields in place, so stored records are the bytes
    /// they were when these fields stood here one by one.
    pub totals: ObjectTotals,
    pub object_count_by_encryption_type: ObjectCountByEncryptionType,
    /// Count and bytes per storage class.
    pub by_storage_class: BTreeMap<String, Usage>,
    /// Parts of incomplete multipart uploads included in the counts.
    pub multipart_parts: i64,
    pub source: ObjectStatsSource,
    pub read_at: UnixMillis,
}

impl ObjectStats {
    pub fn empty(source: ObjectStatsSource, read_at: UnixMillis) -> Self {
        Self {
            totals: ObjectTotals::default(),
            object_count_by_encryption_type: ObjectCountByEncryptionType::default(),
            by_storage_class: BTreeMap::new(),
            multipart_parts: 0,
            source,
            read_at,
        }
    }

    fn count_storage(&mut self, storage_class: &str, size: i64) {
        let usage = self.by_storage_class.entry(storage_class.to_owned()).or_default();
        usage.count += 1;
        usage.size += size;
        self.totals.object_count += 1;
        self.totals.size_in_bytes += size;
    }

    fn count_encryption(&mut self, encryption: ObjectEncryption, n: i64) {
        let e = &mut self.object_count_by_encryption_type;
        match encryption {
            ObjectEncryption::CustomerManaged => e.customer_managed += n,
            ObjectEncryption::KmsManaged => e.kms_managed += n,
            ObjectEncryption::S3Managed => e.s3_managed += n,
            ObjectEncryption::Unencrypted => e.unencrypted += n,
            ObjectEncryption::Unknown => e.unknown += n,
        }
    }

    /// Counts one object (the latest version of a key).
    pub fn add_object(&mut self, key: &str, size: i64, storage_class: Option<&str>, encryption: ObjectEncryption) {
        let storage_class = normalize_storage_class(storage_class);
        self.count_storage(storage_class, size);
        let ext = extension(key);
        if ext.as_deref().is_some_and(|e| COMPRESSED_EXTENSIONS.contains(&e)) {
            self.totals.size_in_bytes_compressed += size;
        }
        let file_ok = ext.as_deref().is_some_and(|e| CLASSIFIABLE_EXTENSIONS.contains(&e));
        let class_ok = CLASSIFIABLE_STORAGE_CLASSES.contains(&storage_class);
        if file_ok && class_ok {
            self.totals.classifiable_object_count += 1;
            self.totals.classifiable_size_in_bytes += size;
        } else {
            self.unclassifiable(size, !file_ok, !class_ok);
        }
        self.count_encryption(encryption, 1);
    }

    /// Counts one part of an incomplete multipart upload: never classifiable (it is not a
    /// file yet), its encryption not known.
    pub fn add_part(&mut self, size: i64, storage_class: Option<&str>) {
        let storage_class = normalize_storage_class(storage_class);
        self.count_storage(storage_class, size);
        let class_ok = CLASSIFIABLE_STORAGE_CLASSES.contains(&storage_class);
        self.unclassifiable(size, true, !class_ok);
        self.count_encryption(ObjectEncryption::Unknown, 1);
        self.multipart_parts += 1;
    }

    fn unclassifiable(&mut self, size: i64, file_type: bool, storage_class: bool) {
        let (count, bytes) =
            (&mut self.totals.unclassifiable_object_count, &mut self.totals.unclassifiable_object_size_in_bytes);
        count.total += 1;
        bytes.total += size;
        if file_type {
            count.file_type += 1;
            bytes.file_type += size;
        }
        if storage_class {
            count.storage_class += 1;
            bytes.storage_class += size;
        }
    }

    /// Moves one object counted as `unknown` to what HeadObject said.
    pub fn resolve_encryption(&mut self, encryption: ObjectEncryption) {
        if encryption != ObjectEncryption::Unknown && self.object_count_by_encryption_type.unknown > 0 {
            self.object_count_by_encryption_type.unknown -= 1;
            self.count_encryption(encryption, 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions() {
        assert_eq!(extension("a/b/report.CSV").as_deref(), Some("csv"));
        assert_eq!(extension("archive.tar.gz").as_deref(), Some("gz"));
        assert_eq!(extension("dir.d/file"), None);
        assert_eq!(extension(".profile"), None);
        assert_eq!(extension("trailing."), Some(String::new()));
    }

    #[test]
    fn tally_splits_classifiable_and_unclassifiable_by_reason() {
        let mut s = ObjectStats::empty(ObjectStatsSource::Full, 1);
        s.add_object("data.json", 10, None, ObjectEncryption::S3Managed);
        s.add_object("logs.gz", 20, Some("STANDARD_IA"), ObjectEncryption::KmsManaged);
        s.add_object("image.png", 30, Some("STANDARD"), ObjectEncryption::Unencrypted);
        s.add_object("old.csv", 40, Some("GLACIER"), ObjectEncryption::CustomerManaged);
        s.add_object("old.bin", 50, Some("DEEP_ARCHIVE"), ObjectEncryption::Unknown);
        s.add_part(60, None);
        let t = s.totals;
        assert_eq!((t.object_count, t.size_in_bytes), (6, 210));
        assert_eq!(t.size_in_bytes_compressed, 20);
        assert_eq!((t.classifiable_object_count, t.classifiable_size_in_bytes), (2, 30));
        assert_eq!(t.unclassifiable_object_count, ObjectLevelStatistics { file_type: 3, storage_class: 2, total: 4 });
        assert_eq!(
            t.unclassifiable_object_size_in_bytes,
            ObjectLevelStatistics { file_type: 140, storage_class: 90, total: 180 }
        );
        let e = s.object_count_by_encryption_type;
        assert_eq!((e.s3_managed, e.kms_managed, e.unencrypted, e.customer_managed, e.unknown), (1, 1, 1, 1, 2));
        assert_eq!(s.by_storage_class["STANDARD"], Usage { count: 3, size: 100 });
        assert_eq!(s.multipart_parts, 1);
        s.resolve_encryption(ObjectEncryption::S3Managed);
        assert_eq!((s.object_count_by_encryption_type.unknown, s.object_count_by_encryption_type.s3_managed), (1, 2));
    }
}
