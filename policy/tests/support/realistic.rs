//! A realistic mix of bucket policies, generated from the shapes of AWS's documented examples
//! (public website, CloudFront OAC and OAI, cross-account access, organization-only, require
//! TLS, require SSE, VPC-endpoint-only, log delivery, replication) with varied names,
//! accounts, CIDRs and conditions. Shared by the realistic benchmark and the test that
//! compares every verdict with and without the pre-solver layer (through `#[path]`).

use serde_json::{json, Value};

pub const ORG: &str = "o-a1b2c3d4e5";

/// A deterministic generator (xorshift): every run builds the same mix.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// The organization's 50 accounts.
pub fn members() -> Vec<String> {
    (0..50).map(|i| format!("{:012}", 100_000_000_000_u64 + i * 7919)).collect()
}

fn outsider(rng: &mut Rng) -> String {
    format!("{:012}", 900_000_000_000 + rng.below(1_000_000))
}

/// `n` distinct (policy text, bucket, owner) triples.
pub fn mix(n: usize) -> Vec<(String, String, String)> {
    let members = members();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    (0..n)
        .map(|i| {
            let owner = members[i % members.len()].clone();
            let bucket = format!("estate-bench-{i:05}-{}", rng.below(1_000_000));
            let text = policy(&mut rng, &bucket, &owner, &members).to_string();
            (text, bucket, owner)
        })
        .collect()
}

/// One policy of the mix for `bucket`, owned by `owner`.
fn policy(rng: &mut Rng, bucket: &str, owner: &str, members: &[String]) -> Value {
    let objects = format!("arn:aws:s3:::{bucket}/*");
    let whole = json!([format!("arn:aws:s3:::{bucket}"), objects.clone()]);
    let prefix = rng.pick(&["", "public/", "static/", "logs/", "data/2024/"]).to_string();
    let member = rng.pick(members).clone();
    let deny_tls = json!({"Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
        "Resource": whole, "Condition": {"Bool": {"aws:SecureTransport": "false"}}});
    let shape = rng.below(10);
    let mut statements = match shape {
        0 => vec![json!({"Sid": "PublicReadGetObject", "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
            "Resource": format!("arn:aws:s3:::{bucket}/{prefix}*")})],
        1 => vec![json!({"Sid": "AllowCloudFrontServicePrincipal", "Effect": "Allow",
            "Principal": {"Service": "cloudfront.amazonaws.com"}, "Action": "s3:GetObject", "Resource": objects,
            "Condition": {"StringEquals": {"AWS:SourceArn":
                format!("arn:aws:cloudfront::{owner}:distribution/E{:012X}", rng.below(1 << 40))}}})],
        2 => vec![json!({"Effect": "Allow", "Principal": {"AWS":
            format!("arn:aws:iam::cloudfront:user/CloudFront Origin Access Identity E{:012X}", rng.below(1 << 40))},
            "Action": "s3:GetObject", "Resource": objects})],
        3 => {
            let who = if rng.below(2) == 0 { member.clone() } else { outsider(rng) };
            vec![json!({"Sid": "CrossAccount", "Effect": "Allow",
                "Principal": {"AWS": format!("arn:aws:iam::{who}:{}", rng.pick(&["root", "role/Reader", "user/etl"]))},
                "Action": *rng.pick(&[json!(["s3:GetObject", "s3:ListBucket"]), json!("s3:PutObject"), json!("s3:*")]),
                "Resource": whole})]
        }
        4 => vec![json!({"Sid": "OrganizationOnly", "Effect": "Allow", "Principal": "*",
            "Action": ["s3:GetObject", "s3:PutObject"], "Resource": objects,
            "Condition": {"StringEquals": {"aws:PrincipalOrgID": ORG}}})],
        5 => vec![
            json!({"Sid": "DenyIncorrectEncryptionHeader", "Effect": "Deny", "Principal": "*",
            "Action": "s3:PutObject", "Resource": objects,
            "Condition": {"StringNotEquals": {"s3:x-amz-server-side-encryption": rng.pick(&["AES256", "aws:kms"])}}}),
            json!({"Sid": "DenyUnencryptedObjectUploads", "Effect": "Deny", "Principal": "*", "Action": "s3:PutObject",
                "Resource": objects, "Condition": {"Null": {"s3:x-amz-server-side-encryption": "true"}}}),
        ],
        6 => vec![
            json!({"Sid": "AccessViaVpceOnly", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
            "Resource": whole, "Condition": {"StringNotEquals": {"aws:SourceVpce": format!("vpce-{:08x}", rng.below(1 << 32))}}}),
            json!({"Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{owner}:root")}, "Action": "s3:*", "Resource": whole}),
        ],
        7 => vec![json!({"Sid": "S3ServerAccessLogsPolicy", "Effect": "Allow",
            "Principal": {"Service": "logging.s3.amazonaws.com"}, "Action": "s3:PutObject",
            "Resource": format!("arn:aws:s3:::{bucket}/{prefix}*"),
            "Condition": {"ArnLike": {"aws:SourceArn": format!("arn:aws:s3:::source-{}", rng.below(100_000))},
                "StringEquals": {"aws:SourceAccount": owner}}})],
        8 => {
            let source = if rng.below(3) == 0 { outsider(rng) } else { member.clone() };
            vec![
                json!({"Sid": "ReplicationPermissions", "Effect": "Allow",
                "Principal": {"AWS": format!("arn:aws:iam::{source}:role/replication-{}", rng.below(1000))},
                "Action": ["s3:ReplicateObject", "s3:ReplicateDelete", "s3:ReplicateTags", "s3:ObjectOwnerOverrideToBucketOwner"],
                "Resource": objects}),
                json!({"Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{source}:role/replication-{}", rng.below(1000))},
                    "Action": ["s3:List*", "s3:GetBucketVersioning", "s3:PutBucketVersioning"], "Resource": format!("arn:aws:s3:::{bucket}")}),
            ]
        }
        _ => {
            let cidr = format!("{}.{}.0.0/{}", rng.below(223) + 1, rng.below(256), rng.pick(&[16, 20, 24]));
            vec![json!({"Sid": "IPAllow", "Effect": "Allow", "Principal": "*", "Action": "s3:*", "Resource": whole,
                "Condition": {"IpAddress": {"aws:SourceIp": cidr}}})]
        }
    };
    // Many real policies add the TLS requirement to whatever else they say.
    if rng.below(3) == 0 || shape == 9 {
        statements.push(deny_tls);
    }
    json!({"Version": "2012-10-17", "Id": format!("policy-{}", rng.next()), "Statement": statements})
}
