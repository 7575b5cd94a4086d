//! The structure-aware input of the `policy_analyzer` fuzz target, shared (through `#[path]`)
//! by the target and by the policy crate's test that replays its seeds: `arbitrary` builds
//! statements from a vocabulary of the principals, actions, resources, operators and
//! condition keys real policies use, with wildcards and variables anywhere.

use arbitrary::Arbitrary;
use serde_json::{json, Map, Value};

const WORDS: &[&str] = &[
    "example-bucket",
    "arn:aws:s3:::",
    "/",
    "private",
    "arn:aws:iam::",
    "111111111111",
    "222222222222",
    "444444444444",
    ":root",
    ":role/R",
    "o-exampleorg1",
    "AES256",
    "aws:kms",
    "10.0.0.0/8",
    "0.0.0.0/0",
    "vpce-1a2b3c4d",
    "2020-01-01T00:00:00Z",
    "5",
    "true",
    "a",
    "",
];
const ACTIONS: &[&str] =
    &["s3:GetObject", "s3:PutObject", "s3:*", "s3:Get*", "s3:List*", "*", "s3:DeleteObject", "s3:PutBucketPolicy"];
const KEYS: &[&str] = &[
    "aws:SourceIp",
    "aws:PrincipalOrgID",
    "aws:PrincipalAccount",
    "aws:PrincipalArn",
    "aws:SourceVpce",
    "s3:x-amz-server-side-encryption",
    "s3:x-amz-server-side-encryption-customer-algorithm",
    "aws:SecureTransport",
    "aws:userid",
    "aws:PrincipalOrgPaths",
    "s3:max-keys",
    "aws:CurrentTime",
    "aws:SourceArn",
    "s3:x-amz-server-side-encryption-aws-kms-key-id",
];
const OPS: &[&str] = &[
    "StringEquals",
    "StringNotEquals",
    "StringLike",
    "StringNotLike",
    "StringEqualsIgnoreCase",
    "ArnLike",
    "ArnNotLike",
    "IpAddress",
    "NotIpAddress",
    "Null",
    "Bool",
    "NumericLessThan",
    "DateGreaterThan",
    "StringNotEqualsIfExists",
    "ForAnyValue:StringLike",
    "ForAllValues:StringEquals",
];

#[derive(Arbitrary, Debug)]
enum Piece {
    Word(u8),
    Star,
    Any,
    Var(u8),
}

#[derive(Arbitrary, Debug)]
struct Pattern(Vec<Piece>);

impl Pattern {
    fn text(&self) -> String {
        self.0
            .iter()
            .take(24)
            .map(|p| match p {
                Piece::Word(i) => WORDS[*i as usize % WORDS.len()].to_owned(),
                Piece::Star => "*".into(),
                Piece::Any => "?".into(),
                Piece::Var(i) => format!("${{{}}}", KEYS[*i as usize % KEYS.len()]),
            })
            .collect()
    }
}

#[derive(Arbitrary, Debug)]
enum Who {
    Anyone,
    Aws(Pattern),
    Account(u8),
    Service(bool),
    Federated(bool),
    Canonical,
}

#[derive(Arbitrary, Debug)]
struct Condition {
    op: u8,
    key: u8,
    values: Vec<Pattern>,
}

#[derive(Arbitrary, Debug)]
struct Statement {
    deny: bool,
    not_principal: bool,
    who: Vec<Who>,
    not_action: bool,
    actions: Vec<u8>,
    not_resource: bool,
    resources: Vec<Pattern>,
    conditions: Vec<Condition>,
}

#[derive(Arbitrary, Debug)]
pub struct Input {
    statements: Vec<Statement>,
}

fn principal(who: &[Who]) -> Value {
    let mut aws = Vec::new();
    let mut other = Map::new();
    for w in who.iter().take(4) {
        match w {
            Who::Anyone => return json!("*"),
            Who::Aws(p) => aws.push(json!(p.text())),
            Who::Account(i) => aws.push(json!(["111111111111", "222222222222", "444444444444"][*i as usize % 3])),
            Who::Service(cf) => {
                other.insert(
                    "Service".into(),
                    json!(if *cf { "cloudfront.amazonaws.com" } else { "logging.s3.amazonaws.com" }),
                );
            }
            Who::Federated(web) => {
                other.insert(
                    "Federated".into(),
                    json!(if *web {
                        "cognito-identity.amazonaws.com"
                    } else {
                        "arn:aws:iam::111111111111:saml-provider/P"
                    }),
                );
            }
            Who::Canonical => {
                other.insert(
                    "CanonicalUser".into(),
                    json!("79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be"),
                );
            }
        }
    }
    if !aws.is_empty() || other.is_empty() {
        other.insert("AWS".into(), if aws.is_empty() { json!("111111111111") } else { json!(aws) });
    }
    Value::Object(other)
}

fn statement(s: &Statement) -> Value {
    let mut m = Map::new();
    m.insert("Effect".into(), json!(if s.deny { "Deny" } else { "Allow" }));
    m.insert(if s.not_principal { "NotPrincipal" } else { "Principal" }.into(), principal(&s.who));
    let actions: Vec<&str> = s.actions.iter().take(4).map(|i| ACTIONS[*i as usize % ACTIONS.len()]).collect();
    m.insert(
        if s.not_action { "NotAction" } else { "Action" }.into(),
        json!(if actions.is_empty() { vec!["s3:*"] } else { actions }),
    );
    let resources: Vec<String> = s.resources.iter().take(4).map(Pattern::text).collect();
    let resources = if resources.is_empty() { vec!["arn:aws:s3:::example-bucket/*".to_owned()] } else { resources };
    m.insert(if s.not_resource { "NotResource" } else { "Resource" }.into(), json!(resources));
    let mut conditions = Map::new();
    for c in s.conditions.iter().take(4) {
        let op = OPS[c.op as usize % OPS.len()];
        let key = KEYS[c.key as usize % KEYS.len()];
        let values: Vec<String> = c.values.iter().take(4).map(Pattern::text).collect();
        let block = conditions.entry(op.to_owned()).or_insert_with(|| json!({}));
        if let Value::Object(block) = block {
            block.insert(key.to_owned(), json!(if values.is_empty() { vec!["true".to_owned()] } else { values }));
        }
    }
    if !conditions.is_empty() {
        m.insert("Condition".into(), Value::Object(conditions));
    }
    Value::Object(m)
}

/// The policy document an input stands for: at most six statements.
pub fn policy_text(input: &Input) -> String {
    let statements: Vec<Value> = input.statements.iter().take(6).map(statement).collect();
    json!({"Version": "2012-10-17", "Statement": statements}).to_string()
}

/// The organization every input is analysed under.
pub fn context() -> estate_policy::OrgContext {
    estate_policy::OrgContext {
        owner_account: "111111111111".parse().expect("an account ID"),
        organization_id: Some("o-exampleorg1".into()),
        member_accounts: std::sync::Arc::new(std::collections::BTreeSet::from([
            "111111111111".parse().expect("an account ID"),
            "222222222222".parse().expect("an account ID"),
        ])),
        organization_paths: vec!["o-exampleorg1/r-ab12/ou-ab12-11111111/".into()],
    }
}
