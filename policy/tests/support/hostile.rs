//! Bucket policies built to be slow or to explode, shared by the hostile-policy tests, the
//! policy benchmark and the end-to-end test (through `#[path]`). Each is what anyone with
//! `s3:PutBucketPolicy` in a member account, or an agent token, could hand the analyser.

/// One hostile document: its name, its text, and whether S3 itself would store it (a
/// document S3 refuses can still reach us through an agent token).
#[derive(Debug, Clone)]
pub struct Hostile {
    pub name: &'static str,
    pub text: String,
    /// `None`: a policy (analysed, maybe UNKNOWN); `Some(limit)`: not readable as a policy,
    /// and the error names `limit`.
    pub error_names: Option<&'static str>,
    /// Whether anyone may read objects, where the document makes it plain (and why): an exact
    /// answer must be this one; UNKNOWN, with its reason, is allowed.
    pub public_read: Option<(bool, &'static str)>,
}

/// The answer the analyser must give when it gives an exact one: `Ok` when `got` (TRUE, FALSE
/// or UNKNOWN, as Macie spells them or as `PUBLIC`/`NOT_PUBLIC`) agrees with `h.public_read`.
pub fn check_public_read(h: &Hostile, got: &str) -> Result<(), String> {
    let Some((want, why)) = h.public_read else { return Ok(()) };
    let exact = match got {
        "TRUE" | "PUBLIC" => true,
        "FALSE" | "NOT_PUBLIC" => false,
        _ => return Ok(()),
    };
    if exact == want {
        Ok(())
    } else {
        Err(format!("{}: public read {got}, but {why}", h.name))
    }
}

fn doc(statements: &[String]) -> String {
    format!(r#"{{"Version":"2012-10-17","Statement":[{}]}}"#, statements.join(","))
}

fn allow(bucket: &str, resource: &str, condition: &str) -> String {
    let condition = if condition.is_empty() { String::new() } else { format!(r#","Condition":{condition}"#) };
    format!(
        r#"{{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"{}"{condition}}}"#,
        resource.replace("{bucket}", bucket)
    )
}

/// A deterministic pseudo-random sequence (xorshift), so every run builds the same documents.
fn xorshift(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

/// The hostile set for policies attached to `bucket`.
pub fn hostile_policies(bucket: &str) -> Vec<Hostile> {
    let policy = |name, text| Hostile { name, text, error_names: None, public_read: None };
    let public = |name, text, why| Hostile { name, text, error_names: None, public_read: Some((true, why)) };
    let long_name = "a".repeat(43);
    let mut out = vec![
        public(
            "sixteen-stars-then-a-long-name",
            doc(&[allow(bucket, &format!("arn:aws:s3:::{}{long_name}/*", "*".repeat(16)), "")]),
            "an object key can hold the 43-letter name after the stars",
        ),
        public(
            "star-question-times-ten",
            doc(&[allow(bucket, &format!("arn:aws:s3:::{}/{}", "{bucket}", "*?".repeat(10)), "")]),
            "any key of ten characters or more matches",
        ),
        public(
            "star-question-2048",
            doc(&[allow(bucket, &format!("arn:aws:s3:::{}/{}", "{bucket}", "*?".repeat(1024)), "")]),
            "a key of exactly 1,024 characters (S3's longest) matches 1,024 `*?` pairs",
        ),
        public(
            "star-letter-alternation-2048",
            doc(&[allow(bucket, &format!("arn:aws:s3:::*{}", "a*".repeat(1024)), "")]),
            "a key of 1,024 `a`s matches",
        ),
    ];
    // 2,048 characters of `*`, `?` and letters in a seeded random mix, against the ARN and in
    // a negated condition (where the solver cannot use fresh pieces).
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mixed: String = (0..2048)
        .map(|_| match xorshift(&mut seed) % 4 {
            0 => '*',
            1 => '?',
            2 => 'a',
            _ => '/',
        })
        .collect();
    out.push(policy("random-wildcard-mix-2048", doc(&[allow(bucket, &format!("arn:aws:s3:::{mixed}"), "")])));
    out.push(policy(
        "random-wildcard-mix-in-negated-condition",
        doc(&[
            allow(bucket, "arn:aws:s3:::{bucket}/*", ""),
            format!(
                r#"{{"Effect":"Deny","Principal":"*","Action":"s3:*","Resource":"arn:aws:s3:::{bucket}/*","Condition":{{"StringNotLike":{{"aws:userid":"{}"}}}}}}"#,
                &mixed[..1024]
            ),
        ]),
    ));
    // Just under S3's 20 KB: as many statements as fit, each with its own wildcard resource.
    let mut statements = Vec::new();
    let mut i = 0;
    loop {
        let next = allow(bucket, &format!("arn:aws:s3:::{{bucket}}/p{i}/*?*x*"), "");
        if doc(&statements).len() + next.len() + 1 > 20 * 1024 {
            break;
        }
        statements.push(next);
        i += 1;
    }
    out.push(public("many-statements-20kb", doc(&statements), "every statement allows anyone some keys"));
    // Thousands of condition values: CIDRs (bit-vectors) and account patterns (strings).
    let cidrs: Vec<String> = (0..1200).map(|i| format!(r#""10.{}.{}.0/24""#, i / 250, i % 250)).collect();
    out.push(public(
        "thousand-cidrs",
        doc(&[allow(
            bucket,
            "arn:aws:s3:::{bucket}/*",
            &format!(r#"{{"NotIpAddress":{{"aws:SourceIp":[{}]}}}}"#, cidrs.join(",")),
        )]),
        "anyone from an address outside the listed networks may read",
    ));
    let accounts: Vec<String> = (0..1100).map(|i| format!(r#""{:012}""#, 100_000_000_000_u64 + i)).collect();
    out.push(public(
        "thousand-account-values",
        doc(&[allow(
            bucket,
            "arn:aws:s3:::{bucket}/*",
            &format!(r#"{{"StringNotEquals":{{"aws:PrincipalAccount":[{}]}}}}"#, accounts.join(",")),
        )]),
        "an anonymous caller has no account, and any unlisted account may read",
    ));
    // Not readable as policies.
    out.push(Hostile {
        name: "nested-past-the-parser-limit",
        text: format!("{}{}", "[".repeat(5000), "]".repeat(5000)),
        error_names: Some("128"),
        public_read: None,
    });
    out.push(policy(
        "over-20kb",
        doc(&(0..400).map(|i| allow(bucket, &format!("arn:aws:s3:::{{bucket}}/prefix-{i}/*"), "")).collect::<Vec<_>>()),
    ));
    out
}
