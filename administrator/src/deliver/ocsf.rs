//! The OCSF sink: each finding as one line of JSON, an OCSF [`OCSF_VERSION`] Detection Finding
//! (class 2004) with the `cloud` profile, for Amazon Security Lake's custom sources and SIEMs.
//! Written to a file that rotates by size (`PATH`, then `PATH.1` ... `PATH.KEEP`), or to
//! standard output (`path = "-"`). A batch counts as delivered once it is on stable storage
//! (or flushed to standard output).
//!
//! Mapping: the finding's ID is `finding_info.uid` (a later occurrence is activity `Update`
//! of the same uid), its type is `finding_info.types`, the bucket is a resource of type
//! `AwsS3Bucket` whose `data` is Macie's `resourcesAffected.s3Bucket`, the CloudTrail call is
//! `api`, and what OCSF 1.1 has no place for outside the `host` profile (the caller's
//! identity, its source address, the event ID) is under `unmapped`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context};
use serde::Deserialize;
use serde_json::json;

use estate_common::findings::{Finding, FindingType};

use super::Start;

/// The OCSF schema version of every event.
pub const OCSF_VERSION: &str = "1.1.0";
/// Findings per write.
pub const BATCH: usize = 500;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OcsfConfig {
    pub name: String,
    #[serde(default)]
    pub start: Start,
    /// The file, or `-` for standard output.
    pub path: PathBuf,
    /// The file is rotated once it holds this many bytes (default 100 MiB).
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// Rotated files kept (default 5).
    #[serde(default = "default_keep")]
    pub keep: u32,
}

fn default_max_bytes() -> u64 {
    100 * 1024 * 1024
}

fn default_keep() -> u32 {
    5
}

impl OcsfConfig {
    pub fn check(&self) -> anyhow::Result<()> {
        if self.path.as_os_str().is_empty() {
            bail!("`path` is empty (give a file, or `-` for standard output)");
        }
        if self.max_bytes < 4096 {
            bail!("`max_bytes` must be at least 4096");
        }
        if self.keep == 0 || self.keep > 1000 {
            bail!("`keep` must be 1 to 1000");
        }
        Ok(())
    }
}

enum Output {
    Stdout,
    File { path: PathBuf, file: File, size: u64, max_bytes: u64, keep: u32 },
}

pub struct OcsfSink {
    /// Taken by the blocking write in progress and put back after it.
    output: Option<Output>,
}

impl OcsfSink {
    pub fn open(config: &OcsfConfig) -> anyhow::Result<Self> {
        config.check()?;
        let output = if config.path.as_os_str() == "-" {
            Output::Stdout
        } else {
            let file = open_append(&config.path)?;
            let size = file.metadata().map(|m| m.len()).unwrap_or(0);
            Output::File { path: config.path.clone(), file, size, max_bytes: config.max_bytes, keep: config.keep }
        };
        Ok(Self { output: Some(output) })
    }

    pub async fn deliver(&mut self, batch: &[Finding]) -> Result<(), String> {
        let mut lines = Vec::new();
        for finding in batch {
            serde_json::to_writer(&mut lines, &detection_finding(finding)).map_err(|e| e.to_string())?;
            lines.push(b'\n');
        }
        // Writes and syncs block: off the runtime, so that a slow disk or a full pipe on
        // standard output holds up this sink alone.
        let mut output = self.output.take().ok_or("a previous write did not finish")?;
        let (output, result) = tokio::task::spawn_blocking(move || {
            let result = output.write(&lines);
            (output, result)
        })
        .await
        .map_err(|e| format!("the write stopped: {e}"))?;
        self.output = Some(output);
        result
    }
}

impl Output {
    /// Appends `lines` and syncs them. A write that fails part-way is cut back to the last
    /// whole batch, so that the retry does not leave a broken line in the file.
    fn write(&mut self, lines: &[u8]) -> Result<(), String> {
        match self {
            Output::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(lines).and_then(|()| out.flush()).map_err(|e| format!("standard output: {e}"))
            }
            Output::File { path, file, size, max_bytes, keep } => {
                let at = path.display().to_string();
                if *size > 0 && *size + lines.len() as u64 > *max_bytes {
                    rotate(path, *keep).map_err(|e| format!("rotating `{at}`: {e:#}"))?;
                    *file = open_append(path).map_err(|e| format!("{e:#}"))?;
                    *size = 0;
                }
                if let Err(e) = file.write_all(lines).and_then(|()| file.sync_data()) {
                    let _ = file.set_len(*size);
                    return Err(format!("writing `{at}`: {e}"));
                }
                *size += lines.len() as u64;
                Ok(())
            }
        }
    }
}

fn open_append(path: &std::path::Path) -> anyhow::Result<File> {
    OpenOptions::new().create(true).append(true).open(path).with_context(|| format!("opening `{}`", path.display()))
}

/// `PATH.(keep-1)` → `PATH.keep` ... `PATH` → `PATH.1`; the oldest beyond `keep` is replaced.
fn rotate(path: &std::path::Path, keep: u32) -> anyhow::Result<()> {
    let numbered = |n: u32| {
        let mut name = path.as_os_str().to_owned();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    };
    for n in (1..keep).rev() {
        let from = numbered(n);
        if from.exists() {
            std::fs::rename(&from, numbered(n + 1))?;
        }
    }
    std::fs::rename(path, numbered(1))?;
    Ok(())
}

/// OCSF's `severity_id`: Low 2, Medium 3, High 4.
fn severity_id(kind: FindingType) -> u8 {
    match kind.severity().0 {
        "High" => 4,
        "Medium" => 3,
        _ => 2,
    }
}

fn remediation(kind: FindingType) -> &'static str {
    match kind {
        FindingType::S3BucketPublic => {
            "Remove the policy statements or ACL grants that allow anyone, or turn on block public access for \
             the bucket or the account."
        }
        FindingType::S3BucketSharedExternally => {
            "Remove the grants to accounts outside the organization from the bucket policy and ACL, or make the \
             account a member of the organization."
        }
        FindingType::S3BucketReplicatedExternally => {
            "Remove or change the replication rules whose destination belongs to an account outside the \
             organization."
        }
        FindingType::S3BlockPublicAccessDisabled => "Turn the bucket's block public access settings back on.",
        FindingType::S3BucketSharedWithCloudFront => {
            "Check that the CloudFront distribution is meant to serve this bucket; otherwise remove its grant."
        }
        FindingType::S3BucketEncryptionDisabled => "Set the bucket's default encryption to SSE-KMS or DSSE-KMS again.",
    }
}

/// The finding as an OCSF Detection Finding.
pub fn detection_finding(f: &Finding) -> serde_json::Value {
    let (severity, _) = f.kind.severity();
    let macie = f.to_macie_json();
    let (activity_id, activity) = if f.count > 1 { (2, "Update") } else { (1, "Create") };
    let account = json!({"uid": f.account_id, "type": "AWS Account", "type_id": 10});
    let mut bucket = json!({
        "type": "AwsS3Bucket",
        "uid": format!("arn:aws:s3:::{}", f.bucket_name),
        "name": f.bucket_name,
        "region": f.region,
        "cloud_partition": "aws",
        "owner": {"account": account},
        "data": macie["resourcesAffected"]["s3Bucket"],
    });
    if let Some(state) = &f.bucket_state {
        if let Some(owner) = &state.owner_id {
            bucket["owner"]["uid"] = json!(owner);
        }
        if !state.tags.is_empty() {
            bucket["labels"] = state.tags.iter().map(|t| format!("{}={}", t.key, t.value)).collect();
        }
    }
    let mut event = json!({
        "activity_id": activity_id,
        "activity_name": activity,
        "category_uid": 2,
        "category_name": "Findings",
        "class_uid": 2004,
        "class_name": "Detection Finding",
        "type_uid": 200400 + activity_id,
        "type_name": format!("Detection Finding: {activity}"),
        "severity_id": severity_id(f.kind),
        "severity": severity,
        "status_id": 1,
        "status": "New",
        "time": f.updated_at,
        "count": f.count,
        "message": f.kind.title(),
        "metadata": {
            "version": OCSF_VERSION,
            "product": {"name": "Estate", "vendor_name": "Estate", "version": env!("CARGO_PKG_VERSION")},
            "profiles": ["cloud"],
            "uid": format!("{}-{}", f.id, f.sequence),
            "sequence": f.sequence,
            "log_name": "findings",
        },
        "finding_info": {
            "uid": f.id,
            "title": f.kind.title(),
            "desc": f.kind.description(&f.bucket_name),
            "types": [f.kind.as_str()],
            "created_time": f.created_at,
            "modified_time": f.updated_at,
            "first_seen_time": f.first_action.event_time,
            "last_seen_time": f.last_action.event_time,
        },
        "cloud": {"provider": "AWS", "region": f.region, "account": account},
        "resources": [bucket],
        "remediation": {"desc": remediation(f.kind)},
    });
    if let Some(api) = &f.last_action.api {
        event["api"] = json!({"operation": api, "service": {"name": "s3.amazonaws.com"}});
    }
    let actor = &macie["policyDetails"]["actor"];
    let mut unmapped = serde_json::Map::new();
    for key in ["userIdentity", "ipAddressDetails"] {
        if let Some(value) = actor.get(key) {
            unmapped.insert(key.to_owned(), value.clone());
        }
    }
    if let Some(source) = &f.last_action.source_ip {
        unmapped.insert("sourceIPAddress".to_owned(), json!(source));
    }
    if let Some(event_id) = &f.last_action.event_id {
        unmapped.insert("eventID".to_owned(), json!(event_id));
    }
    if !unmapped.is_empty() {
        event["unmapped"] = serde_json::Value::Object(unmapped);
    }
    event
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_rotate_and_keep_only_so_many() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("findings.jsonl");
        std::fs::write(&path, "a").unwrap();
        for _ in 0..4 {
            rotate(&path, 2).unwrap();
            std::fs::write(&path, "b").unwrap();
        }
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["findings.jsonl", "findings.jsonl.1", "findings.jsonl.2"]);
    }
}
