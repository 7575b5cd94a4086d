//! S3 Inventory reports as data: the manifest, the gzip CSV files and the keys in them, parsed
//! without any I/O and within fixed bounds. A report is written by whoever controls the
//! destination bucket, so every step has a limit and fails as a named [`ReportError`], never a
//! panic, an unbounded allocation or a silently truncated count.
//!
//! This file uses only external crates (no `crate::` paths): the fuzz target
//! `fuzz/fuzz_targets/inventory_report.rs` compiles it as its own module, so fuzzing it needs
//! neither the AWS SDK nor the rest of the agent.

use std::io::Write;

use estate_common::model::UnixMillis;
use estate_common::objects::{ObjectEncryption, ObjectStats, ObjectStatsSource};

/// The largest manifest read. S3 writes one `files` entry (key, size, MD5) of about 200 bytes
/// per CSV file, and files of up to a few GB each, so a real manifest stays far below 1 MiB
/// even for a bucket of billions of objects; anything larger is not S3's.
pub const MAX_MANIFEST_BYTES: usize = 1 << 20;

/// S3's largest object (5 TiB): a report's size column is clamped to it.
const MAX_OBJECT_BYTES: i64 = 5 << 40;

/// Distinct storage classes one report may name (S3 has about a dozen); the administrator
/// accepts at most 64. Past this, further names count as [`OTHER_STORAGE_CLASS`].
const MAX_STORAGE_CLASSES: usize = 32;

/// Where the storage classes past [`MAX_STORAGE_CLASSES`] are counted.
const OTHER_STORAGE_CLASS: &str = "OTHER";

/// The longest CSV line (one object). A key is at most 1,024 bytes, at most 3 times that once
/// URL-encoded, and the other columns S3 can write add well under 1 KiB: 16 KiB leaves room and
/// bounds the memory one line may take.
pub const MAX_LINE_BYTES: usize = 16 << 10;

/// The most bytes one report may produce when decompressed, and separately the most compressed
/// bytes read, over all its files: about 200 million rows of ~300 bytes. It bounds the time a
/// gzip bomb (or an endless stream of empty deflate blocks) can take; a larger report is
/// refused and the bucket's objects are listed instead.
pub const MAX_REPORT_BYTES: u64 = 64 << 30;

/// The bounds a report is read within; [`ReportLimits::DEFAULT`] is what the agent uses, and
/// tests and the fuzz target shrink them to reach them quickly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportLimits {
    pub manifest_bytes: usize,
    pub line_bytes: usize,
    pub report_bytes: u64,
}

impl ReportLimits {
    pub const DEFAULT: Self =
        Self { manifest_bytes: MAX_MANIFEST_BYTES, line_bytes: MAX_LINE_BYTES, report_bytes: MAX_REPORT_BYTES };
}

/// Why a report was refused. Every variant names what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    #[error("manifest `{key}` is larger than {limit} bytes")]
    ManifestTooLarge { key: String, limit: usize },
    #[error("manifest `{key}` is malformed: {detail}")]
    ManifestMalformed { key: String, detail: String },
    #[error("manifest `{key}` is for bucket `{found}`, not `{expected}`")]
    WrongSourceBucket { key: String, expected: String, found: String },
    #[error("manifest `{key}` is in format `{format}`, not CSV")]
    NotCsv { key: String, format: String },
    #[error("the inventory has no `Key` column")]
    NoKeyColumn,
    #[error("`{file}` has a line longer than {limit} bytes")]
    LineTooLong { file: String, limit: usize },
    #[error("the report is larger than {limit} bytes (compressed or decompressed)")]
    ReportTooLarge { limit: u64 },
    #[error("`{file}` is not gzip CSV: {detail}")]
    NotGzip { file: String, detail: String },
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct ManifestJson {
    source_bucket: String,
    file_format: String,
    file_schema: String,
    files: Vec<ManifestFile>,
}

#[derive(Debug, serde::Deserialize)]
struct ManifestFile {
    key: String,
}

/// What a manifest says about its report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub files: Vec<String>,
    pub columns: Vec<String>,
}

/// Parses a manifest (`key` names it in errors) of a report that must be about
/// `source_bucket`: a report about another bucket would make that bucket's objects this
/// one's, so it is refused.
pub fn parse_manifest(
    key: &str,
    body: &[u8],
    source_bucket: &str,
    limits: &ReportLimits,
) -> Result<Manifest, ReportError> {
    if body.len() > limits.manifest_bytes {
        return Err(ReportError::ManifestTooLarge { key: key.to_owned(), limit: limits.manifest_bytes });
    }
    let manifest: ManifestJson = serde_json::from_slice(body)
        .map_err(|e| ReportError::ManifestMalformed { key: key.to_owned(), detail: e.to_string() })?;
    if manifest.source_bucket != source_bucket {
        return Err(ReportError::WrongSourceBucket {
            key: key.to_owned(),
            expected: source_bucket.to_owned(),
            found: manifest.source_bucket,
        });
    }
    if manifest.file_format != "CSV" {
        return Err(ReportError::NotCsv { key: key.to_owned(), format: manifest.file_format });
    }
    Ok(Manifest {
        files: manifest.files.into_iter().map(|f| f.key).collect(),
        columns: manifest.file_schema.split(',').map(|c| c.trim().to_owned()).collect(),
    })
}

/// `2026-11-28T01-00Z` → Unix milliseconds.
pub fn parse_folder_time(folder: &str) -> Option<UnixMillis> {
    let folder = folder.trim_end_matches('/');
    let format = time::macros::format_description!("[year]-[month]-[day]T[hour]-[minute]Z");
    let at = time::PrimitiveDateTime::parse(folder, format).ok()?;
    Some((at.assume_utc().unix_timestamp_nanos() / 1_000_000) as i64)
}

/// Splits one CSV line whose fields are all quoted, as S3 Inventory writes them.
pub fn split_csv(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(std::mem::take(&mut field)),
            (c, _) => field.push(c),
        }
    }
    fields.push(field);
    fields
}

/// Percent-decoding of inventory keys (S3 URL-encodes them, `+` for a space). It works on
/// bytes, so no escape can split a character: a `%` not followed by two hex digits (`%`,
/// `%G1`, `%1é`) stays as written, and bytes that do not decode to UTF-8 (`%C3` alone) become
/// U+FFFD. The key only decides the object's file type, so a lenient decoding counts the
/// object, with at worst an unknown extension, rather than refusing the whole report.
pub fn decode_key(key: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    let bytes = key.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let pair = bytes.get(i + 1).copied().and_then(hex).zip(bytes.get(i + 2).copied().and_then(hex));
                match pair {
                    Some((high, low)) => {
                        out.push((high << 4) | low);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// S3 Inventory's `EncryptionStatus` column.
pub fn encryption_status(status: &str) -> ObjectEncryption {
    match status {
        "SSE-S3" => ObjectEncryption::S3Managed,
        "SSE-KMS" | "DSSE-KMS" => ObjectEncryption::KmsManaged,
        "SSE-C" => ObjectEncryption::CustomerManaged,
        "NOT-SSE" => ObjectEncryption::Unencrypted,
        _ => ObjectEncryption::Unknown,
    }
}

/// Where each column the count uses sits in a line.
#[derive(Debug, Clone, Copy)]
struct Columns {
    key: usize,
    size: Option<usize>,
    class: Option<usize>,
    encryption: Option<usize>,
    latest: Option<usize>,
    delete_marker: Option<usize>,
}

/// Counts the rows of one report's files into object statistics, fed the compressed bytes
/// as they arrive, in memory bounded by [`ReportLimits::line_bytes`].
#[derive(Debug)]
pub struct ReportCounter {
    columns: Columns,
    all_versions: bool,
    limits: ReportLimits,
    stats: ObjectStats,
    compressed: u64,
    decompressed: u64,
}

impl ReportCounter {
    /// A counter for a report with these `columns` (from the manifest); `all_versions` when the
    /// report lists every version, so that only the latest of each key counts. The statistics
    /// are as of the report's `created_at`.
    pub fn new(
        columns: &[String],
        all_versions: bool,
        created_at: UnixMillis,
        limits: ReportLimits,
    ) -> Result<Self, ReportError> {
        let column = |name: &str| columns.iter().position(|c| c == name);
        let columns = Columns {
            key: column("Key").ok_or(ReportError::NoKeyColumn)?,
            size: column("Size"),
            class: column("StorageClass"),
            encryption: column("EncryptionStatus"),
            latest: column("IsLatest"),
            delete_marker: column("IsDeleteMarker"),
        };
        Ok(Self {
            columns,
            all_versions,
            limits,
            stats: ObjectStats::empty(ObjectStatsSource::InventoryReport, created_at),
            compressed: 0,
            decompressed: 0,
        })
    }

    /// Starts reading the file `name` of the report.
    pub fn file<'a>(&'a mut self, name: &str) -> FileReader<'a> {
        let name = name.to_owned();
        let sink = LineSink { counter: self, line: Vec::new(), file: name.clone(), failure: None };
        FileReader { decoder: flate2::write::GzDecoder::new(sink), file: name }
    }

    /// The statistics of every row read so far.
    pub fn into_stats(self) -> ObjectStats {
        self.stats
    }

    fn count_line(&mut self, line: &[u8]) {
        let line = String::from_utf8_lossy(line);
        let line = line.trim_end_matches(['\n', '\r']);
        if line.is_empty() {
            return;
        }
        let fields = split_csv(line);
        let get = |at: Option<usize>| at.and_then(|i| fields.get(i)).map(String::as_str);
        let c = self.columns;
        if (self.all_versions && get(c.latest) == Some("false")) || get(c.delete_marker) == Some("true") {
            return;
        }
        let key = decode_key(get(Some(c.key)).unwrap_or_default());
        // A size is S3's: never negative, never past its largest object.
        let size = get(c.size).and_then(|s| s.parse::<i64>().ok()).unwrap_or(0).clamp(0, MAX_OBJECT_BYTES);
        let encryption = get(c.encryption).map_or(ObjectEncryption::Unknown, encryption_status);
        // The report names the storage class; a report naming more than S3 has is not one
        // S3 wrote, and its extra names are counted together (the map stays small).
        let class = get(c.class).map(|class| {
            let known = self.stats.by_storage_class.contains_key(class);
            if known || self.stats.by_storage_class.len() < MAX_STORAGE_CLASSES {
                class
            } else {
                OTHER_STORAGE_CLASS
            }
        });
        self.stats.add_object(&key, size, class, encryption);
    }
}

/// One file of a report being read: feed it the gzip bytes, then [`FileReader::finish`].
#[derive(Debug)]
pub struct FileReader<'a> {
    decoder: flate2::write::GzDecoder<LineSink<'a>>,
    file: String,
}

impl FileReader<'_> {
    /// Decompresses `chunk` and counts every line it completes.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), ReportError> {
        let counter = &mut self.decoder.get_mut().counter;
        counter.compressed += chunk.len() as u64;
        if counter.compressed > counter.limits.report_bytes {
            return Err(ReportError::ReportTooLarge { limit: counter.limits.report_bytes });
        }
        let written = self.decoder.write_all(chunk);
        self.outcome(written)
    }

    /// Ends the file: the gzip stream must be complete, and a last line without a newline
    /// is counted.
    pub fn finish(mut self) -> Result<(), ReportError> {
        let finished = self.decoder.try_finish();
        self.outcome(finished)?;
        let sink = self.decoder.get_mut();
        let last = std::mem::take(&mut sink.line);
        sink.counter.count_line(&last);
        Ok(())
    }

    /// The sink's own failure (a limit) when it stopped the decoder, else the decoder's.
    fn outcome(&mut self, result: std::io::Result<()>) -> Result<(), ReportError> {
        if let Some(failure) = self.decoder.get_mut().failure.take() {
            return Err(failure);
        }
        result.map_err(|e| ReportError::NotGzip { file: self.file.clone(), detail: e.to_string() })
    }
}

/// Receives decompressed bytes, counts them against the report's limit and hands complete
/// lines to the counter, holding at most one line.
#[derive(Debug)]
struct LineSink<'a> {
    counter: &'a mut ReportCounter,
    line: Vec<u8>,
    file: String,
    /// The limit that stopped the decoder, to report it by name.
    failure: Option<ReportError>,
}

impl LineSink<'_> {
    fn fail(&mut self, failure: ReportError) -> std::io::Error {
        let error = std::io::Error::other(failure.to_string());
        self.failure = Some(failure);
        error
    }
}

impl Write for LineSink<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let limits = self.counter.limits;
        self.counter.decompressed += buf.len() as u64;
        if self.counter.decompressed > limits.report_bytes {
            return Err(self.fail(ReportError::ReportTooLarge { limit: limits.report_bytes }));
        }
        let mut rest = buf;
        while !rest.is_empty() {
            let (part, end) = match rest.iter().position(|&b| b == b'\n') {
                Some(at) => (&rest[..=at], true),
                None => (rest, false),
            };
            // The newline itself does not count towards the line's length.
            if self.line.len() + part.len() - usize::from(end) > limits.line_bytes {
                let file = self.file.clone();
                return Err(self.fail(ReportError::LineTooLong { file, limit: limits.line_bytes }));
            }
            rest = &rest[part.len()..];
            if end {
                if self.line.is_empty() {
                    self.counter.count_line(part);
                } else {
                    self.line.extend_from_slice(part);
                    let line = std::mem::take(&mut self.line);
                    self.counter.count_line(&line);
                    // Keep the allocation for the next line.
                    self.line = line;
                    self.line.clear();
                }
            } else {
                self.line.extend_from_slice(part);
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Reads one whole report from memory: the manifest, then each file the manifest names
/// through `file`, fed in chunks of `chunk` bytes, counting the latest version of each key. The agent streams the same steps from S3
/// (`objects::inventory`); this is the fuzz target's body, and what the regression tests
/// replay its inputs through.
pub fn count_report<'f>(
    manifest_key: &str,
    manifest: &[u8],
    source_bucket: &str,
    file: impl Fn(&str) -> Option<&'f [u8]>,
    chunk: usize,
    limits: ReportLimits,
) -> Result<ObjectStats, ReportError> {
    let manifest = parse_manifest(manifest_key, manifest, source_bucket, &limits)?;
    let mut counter = ReportCounter::new(&manifest.columns, true, 0, limits)?;
    for name in &manifest.files {
        let Some(body) = file(name) else { continue };
        let mut reader = counter.file(name);
        for part in body.chunks(chunk.max(1)) {
            reader.feed(part)?;
        }
        reader.finish()?;
    }
    Ok(counter.into_stats())
}

/// The fuzz target's input format (also the format of `fuzz/seeds/inventory_report/`): a
/// manifest, then a line `--csv--`, then CSV text. The manifest's files named `plain.csv.gz`
/// are the CSV text gzip-compressed here; any other file is the CSV text's raw bytes taken as
/// gzip. Every key of the CSV is also decoded alone. The source bucket is
/// [`FUZZ_SOURCE_BUCKET`] and the limits small, so inputs reach them.
pub fn fuzz_one(data: &[u8]) -> Result<ObjectStats, ReportError> {
    const SEPARATOR: &[u8] = b"\n--csv--\n";
    let (manifest, csv) = match data.windows(SEPARATOR.len()).position(|w| w == SEPARATOR) {
        Some(at) => (&data[..at], &data[at + SEPARATOR.len()..]),
        None => (data, &[][..]),
    };
    for line in String::from_utf8_lossy(csv).lines() {
        for field in split_csv(line) {
            let _ = decode_key(&field);
        }
    }
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    // Writing to a vector cannot fail.
    let compressed = encoder.write_all(csv).and_then(|()| encoder.finish()).unwrap_or_default();
    // Small limits, so that inputs reach them: a 16 KiB report is a few hundred lines, which
    // takes each path; a larger one would only repeat them (and cost the fuzzer its speed).
    let limits = ReportLimits { manifest_bytes: 64 << 10, line_bytes: 1 << 10, report_bytes: 16 << 10 };
    let chunk = 1 + usize::from(data.first().copied().unwrap_or(0) % 64);
    // Every file of a manifest is the same CSV text: the first few reach every path, and more
    // would only repeat them (a manifest of thousands of files made each input thousands of
    // decompressions).
    let files_read = std::cell::Cell::new(0_usize);
    count_report(
        "manifest.json",
        manifest,
        FUZZ_SOURCE_BUCKET,
        |name| {
            files_read.set(files_read.get() + 1);
            (files_read.get() <= FUZZ_FILES).then_some(if name == "plain.csv.gz" { &compressed[..] } else { csv })
        },
        chunk,
        limits,
    )
}

/// The bucket whose report [`fuzz_one`] reads.
pub const FUZZ_SOURCE_BUCKET: &str = "estate-fuzz-source";

/// The files of one manifest [`fuzz_one`] reads; the rest are skipped.
const FUZZ_FILES: usize = 4;

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEMA: &str = "Bucket, Key, VersionId, IsLatest, IsDeleteMarker, Size, StorageClass, EncryptionStatus";

    fn manifest(source: &str, files: &[&str]) -> Vec<u8> {
        let files: Vec<_> =
            files.iter().map(|f| serde_json::json!({"key": f, "size": 1, "MD5checksum": "0"})).collect();
        serde_json::json!({
            "sourceBucket": source, "destinationBucket": "arn:aws:s3:::dest", "version": "2016-11-30",
            "fileFormat": "CSV", "fileSchema": SCHEMA, "files": files,
        })
        .to_string()
        .into_bytes()
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    fn count(csv_gz: &[u8], limits: ReportLimits) -> Result<ObjectStats, ReportError> {
        count_report("m.json", &manifest("src", &["f.csv.gz"]), "src", |_| Some(csv_gz), 8192, limits)
    }

    #[test]
    fn a_report_cannot_name_endless_storage_classes_or_negative_sizes() {
        let csv: String = (0..100)
            .map(|i| format!("\"src\",\"k{i}.csv\",\"\",\"true\",\"false\",\"-5\",\"CLASS{i}\",\"SSE-S3\"\n"))
            .collect();
        let stats = count(&gzip(csv.as_bytes()), ReportLimits::DEFAULT).unwrap();
        assert_eq!(stats.totals.object_count, 100);
        assert_eq!(stats.totals.size_in_bytes, 0, "a negative size counts as 0");
        assert_eq!(stats.by_storage_class.len(), MAX_STORAGE_CLASSES + 1);
        assert_eq!(stats.by_storage_class[OTHER_STORAGE_CLASS].count, 100 - MAX_STORAGE_CLASSES as i64);
    }

    #[test]
    fn csv_and_folders() {
        assert_eq!(split_csv(r#""b","a,b.csv","10","""q""""#), vec!["b", "a,b.csv", "10", "\"q\""]);
        assert_eq!(parse_folder_time("2026-11-28T01-00Z/"), Some(1_795_827_600_000));
        assert_eq!(parse_folder_time("data"), None);
        assert_eq!(encryption_status("DSSE-KMS"), ObjectEncryption::KmsManaged);
    }

    #[test]
    fn decode_key_is_boundary_safe() {
        assert_eq!(decode_key("dir/my+file%2Bx.csv"), "dir/my file+x.csv");
        assert_eq!(decode_key("caf%C3%A9.txt"), "café.txt");
        assert_eq!(decode_key("end%41"), "endA");
        // Escapes that are not two hex digits stay as written; none of these may panic
        // (`%1é` used to slice inside `é`).
        for (key, decoded) in [
            ("%1é", "%1é"),
            ("%", "%"),
            ("a%", "a%"),
            ("%4", "%4"),
            ("%G1", "%G1"),
            ("%é", "%é"),
            ("é%", "é%"),
            ("%%41", "%A"),
            ("%+1", "% 1"),
        ] {
            assert_eq!(decode_key(key), decoded, "{key}");
        }
        // A truncated multibyte sequence becomes U+FFFD, not a panic or an error.
        assert_eq!(decode_key("x%C3"), "x\u{FFFD}");
        assert_eq!(decode_key("%E2%82"), "\u{FFFD}");
        // Every two-byte and three-byte input from an alphabet of escapes' parts.
        let alphabet = ["%", "1", "G", "é", "+", "€", "a", "F"];
        for a in alphabet {
            for b in alphabet {
                for c in alphabet {
                    let _ = decode_key(&format!("{a}{b}{c}"));
                }
            }
        }
    }

    #[test]
    fn counts_a_report_in_any_chunking() {
        let csv = concat!(
            "\"src\",\"a.csv\",\"v2\",\"true\",\"false\",\"100\",\"STANDARD\",\"SSE-KMS\"\n",
            "\"src\",\"a.csv\",\"v1\",\"false\",\"false\",\"90\",\"STANDARD\",\"SSE-KMS\"\n",
            "\"src\",\"b%2Bc.txt\",\"v1\",\"true\",\"false\",\"200\",\"GLACIER\",\"NOT-SSE\"\r\n",
            "\"src\",\"gone.txt\",\"v3\",\"true\",\"true\",\"0\",\"STANDARD\",\"NOT-SSE\"\n",
            "\n",
            "\"src\",\"last.json\",\"v1\",\"true\",\"false\",\"5\",\"STANDARD\",\"SSE-S3\"",
        );
        let compressed = gzip(csv.as_bytes());
        for chunk in [1, 2, 7, 64, 8192] {
            let m = manifest("src", &["f.csv.gz"]);
            let stats =
                count_report("m.json", &m, "src", |_| Some(&compressed[..]), chunk, ReportLimits::DEFAULT).unwrap();
            assert_eq!(stats.totals.object_count, 3, "chunk {chunk}");
            assert_eq!(stats.totals.size_in_bytes, 305, "chunk {chunk}");
            let e = &stats.object_count_by_encryption_type;
            assert_eq!((e.kms_managed, e.unencrypted, e.s3_managed), (1, 1, 1), "chunk {chunk}");
        }
    }

    #[test]
    fn manifest_is_bounded() {
        let limits = ReportLimits::DEFAULT;
        let mut big = manifest("src", &["f"]);
        // Valid JSON, one byte over the limit.
        big.splice(1..1, std::iter::repeat_n(b' ', MAX_MANIFEST_BYTES + 1 - big.len()));
        assert_eq!(big.len(), MAX_MANIFEST_BYTES + 1);
        assert_eq!(
            parse_manifest("m.json", &big, "src", &limits),
            Err(ReportError::ManifestTooLarge { key: "m.json".into(), limit: MAX_MANIFEST_BYTES })
        );
        big.remove(1);
        assert!(parse_manifest("m.json", &big, "src", &limits).is_ok());
        assert!(matches!(parse_manifest("m.json", b"{", "src", &limits), Err(ReportError::ManifestMalformed { .. })));
    }

    #[test]
    fn a_report_about_another_bucket_is_refused() {
        let limits = ReportLimits::DEFAULT;
        assert_eq!(
            parse_manifest("m.json", &manifest("other", &["f"]), "src", &limits),
            Err(ReportError::WrongSourceBucket { key: "m.json".into(), expected: "src".into(), found: "other".into() })
        );
        // A manifest without `sourceBucket` cannot show that it is about this bucket.
        let missing = br#"{"fileFormat":"CSV","fileSchema":"Key","files":[]}"#;
        assert!(matches!(
            parse_manifest("m.json", missing, "src", &limits),
            Err(ReportError::ManifestMalformed { .. })
        ));
        let csv = gzip(b"\"src\",\"a\",\"v\",\"true\",\"false\",\"1\",\"STANDARD\",\"NOT-SSE\"\n");
        let m = manifest("other", &["f"]);
        assert!(matches!(
            count_report("m.json", &m, "src", |_| Some(&csv[..]), 100, limits),
            Err(ReportError::WrongSourceBucket { .. })
        ));
    }

    #[test]
    fn a_long_line_is_refused() {
        let limits = ReportLimits::DEFAULT;
        // A line of exactly the limit is counted; one byte more is refused by name.
        let field = "k".repeat(MAX_LINE_BYTES - 2);
        let exact = format!("\"{field}\"\n");
        assert_eq!(count(&gzip(exact.as_bytes()), limits).unwrap().totals.object_count, 1);
        let over = format!("\"{field}k\"\n");
        assert_eq!(
            count(&gzip(over.as_bytes()), limits),
            Err(ReportError::LineTooLong { file: "f.csv.gz".into(), limit: MAX_LINE_BYTES })
        );
        // Without a newline at all: 64 MiB of zeros in 64 KiB of gzip.
        let zeros = gzip(&vec![0u8; 64 << 20]);
        assert!(zeros.len() < 100 << 10);
        assert_eq!(
            count(&zeros, limits),
            Err(ReportError::LineTooLong { file: "f.csv.gz".into(), limit: MAX_LINE_BYTES })
        );
    }

    #[test]
    fn a_gzip_bomb_is_refused_by_the_total() {
        // Short lines, so only the total can stop it: 32 MiB decompressed, limit 4 MiB.
        let limits = ReportLimits { report_bytes: 4 << 20, ..ReportLimits::DEFAULT };
        let line = b"\"src\",\"k.txt\",\"v\",\"true\",\"false\",\"1\",\"STANDARD\",\"NOT-SSE\"\n";
        let bomb = gzip(&line.repeat((32 << 20) / line.len()));
        assert!((bomb.len() as u64) < limits.report_bytes);
        assert_eq!(count(&bomb, limits), Err(ReportError::ReportTooLarge { limit: 4 << 20 }));
        // The same lines under the limit are all counted.
        let fits = gzip(&line.repeat(1000));
        assert_eq!(count(&fits, limits).unwrap().totals.object_count, 1000);
    }

    #[test]
    fn compressed_bytes_count_too() {
        // Empty stored deflate blocks produce nothing, however many there are.
        let limits = ReportLimits { report_bytes: 1 << 10, ..ReportLimits::DEFAULT };
        let mut stream = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
        for _ in 0..1000 {
            stream.extend_from_slice(&[0x00, 0x00, 0x00, 0xff, 0xff]);
        }
        assert_eq!(count(&stream, limits), Err(ReportError::ReportTooLarge { limit: 1 << 10 }));
    }

    #[test]
    fn broken_gzip_and_schema_are_named() {
        let limits = ReportLimits::DEFAULT;
        assert!(matches!(count(b"not gzip at all", limits), Err(ReportError::NotGzip { .. })));
        let whole = gzip(b"\"src\",\"a\"\n");
        assert!(matches!(count(&whole[..whole.len() - 4], limits), Err(ReportError::NotGzip { .. })));
        assert!(matches!(ReportCounter::new(&["Bucket".into()], false, 0, limits), Err(ReportError::NoKeyColumn)));
    }

    #[test]
    fn the_fuzz_format_reads_its_seeds() {
        let mut input = manifest(FUZZ_SOURCE_BUCKET, &["plain.csv.gz"]);
        input.extend_from_slice(
            b"\n--csv--\n\"b\",\"a%2Bb.txt\",\"v\",\"true\",\"false\",\"3\",\"STANDARD\",\"SSE-S3\"\n",
        );
        assert_eq!(fuzz_one(&input).unwrap().totals.object_count, 1);
    }
}
