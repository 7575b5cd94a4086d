//! Property tests: on generated small policies, the solver and the concrete evaluator agree
//! on finite request sets, every witness is confirmed by the evaluator, and every verdict is
//! checked in its dangerous direction: a "no" has no counterexample among the requests the
//! evaluator allows (or, for uploads, does not deny), and a "yes" carries a witness the
//! evaluator confirms.

use std::collections::BTreeMap;

use estate_policy::{
    analyze, evaluate, parse_policy, solver_allows_some, Analysis, AnalysisOptions, Decision, OrgContext, Principal,
    Question, Request, SharedAccess, Tri,
};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::{json, Value};

const BUCKET: &str = "b";
const OAI: &str = "arn:aws:iam::cloudfront:user/CloudFront Origin Access Identity E1";

fn ctx() -> OrgContext {
    OrgContext {
        owner_account: "111111111111".parse().unwrap(),
        organization_id: Some("o-exampleorg1".into()),
        member_accounts: std::sync::Arc::new(
            ["111111111111", "222222222222"].iter().map(|s| s.parse().unwrap()).collect(),
        ),
        organization_paths: vec![],
    }
}

fn principal_entry() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!("*")),
        Just(json!({"AWS": "*"})),
        Just(json!({"AWS": "444444444444"})),
        Just(json!({"AWS": "arn:aws:iam::222222222222:root"})),
        Just(json!({"AWS": "arn:aws:iam::444444444444:role/R"})),
        Just(json!({"AWS": "arn:aws:iam::*:role/R"})),
        Just(json!({"Service": "cloudfront.amazonaws.com"})),
        Just(json!({"Service": "logging.s3.amazonaws.com"})),
        Just(json!({"AWS": OAI})),
    ]
}

fn condition() -> impl Strategy<Value = (String, String, Value)> {
    let ip = prop_oneof![Just("10.0.0.0/8"), Just("192.0.2.0/24"), Just("0.0.0.0/0")];
    let ip_op = prop_oneof![Just("IpAddress"), Just("NotIpAddress")];
    let org_op = prop_oneof![Just("StringEquals"), Just("StringNotEquals"), Just("StringLike")];
    let org = prop_oneof![Just("o-exampleorg1"), Just("o-other"), Just("o-*")];
    let sse_op = prop_oneof![Just("StringEquals"), Just("StringNotEquals"), Just("StringNotEqualsIfExists")];
    let sse = prop_oneof![Just("AES256"), Just("aws:kms")];
    let bool_op = prop_oneof![Just("Bool"), Just("BoolIfExists")];
    // The account a service acts for: the owner, a member, an outsider.
    let source_op = prop_oneof![Just("StringEquals"), Just("StringNotEquals"), Just("StringLike")];
    let source = prop_oneof![Just("111111111111"), Just("222222222222"), Just("444444444444"), Just("44444444444?")];
    let source_arn =
        prop_oneof![Just("arn:aws:logs:us-east-1:444444444444:*"), Just("arn:aws:s3:::source"), Just("arn:aws:*")];
    prop_oneof![
        (ip_op, ip).prop_map(|(o, v)| (o.to_owned(), "aws:SourceIp".to_owned(), json!(v))),
        (org_op, org).prop_map(|(o, v)| (o.to_owned(), "aws:PrincipalOrgID".to_owned(), json!(v))),
        (sse_op, sse).prop_map(|(o, v)| (o.to_owned(), "s3:x-amz-server-side-encryption".to_owned(), json!(v))),
        any::<bool>().prop_map(|b| ("Null".to_owned(), "s3:x-amz-server-side-encryption".to_owned(), json!(b))),
        (bool_op, any::<bool>()).prop_map(|(o, b)| (
            o.to_owned(),
            "aws:SecureTransport".to_owned(),
            json!(b.to_string())
        )),
        (source_op, source).prop_map(|(o, v)| (o.to_owned(), "aws:SourceAccount".to_owned(), json!(v))),
        source_arn.prop_map(|v| ("ArnLike".to_owned(), "aws:SourceArn".to_owned(), json!(v))),
    ]
}

fn statement() -> impl Strategy<Value = Value> {
    let actions = prop_oneof![
        Just(json!("s3:GetObject")),
        Just(json!("s3:PutObject")),
        Just(json!("s3:Get*")),
        Just(json!("s3:*")),
        Just(json!(["s3:ListBucket", "s3:DeleteObject"])),
        Just(json!("*")),
    ];
    let resources = prop_oneof![
        Just(json!("arn:aws:s3:::b/*")),
        Just(json!("arn:aws:s3:::b")),
        Just(json!("arn:aws:s3:::b/private/*")),
        Just(json!("*")),
        Just(json!(["arn:aws:s3:::b", "arn:aws:s3:::b/*"])),
    ];
    (
        any::<bool>(),
        prop::collection::vec(principal_entry(), 1..3),
        prop::bool::weighted(0.15),
        actions,
        prop::bool::weighted(0.15),
        resources,
        prop::bool::weighted(0.15),
        prop::collection::vec(condition(), 0..3),
    )
        .prop_map(|(allow, principals, not_principal, action, not_action, resource, not_resource, conds)| {
            let principal = if principals.iter().any(|p| p == "*") {
                json!("*")
            } else {
                let mut merged = serde_json::Map::new();
                for p in principals {
                    if let Value::Object(m) = p {
                        for (k, v) in m {
                            let entry = merged.entry(k).or_insert_with(|| json!([]));
                            if let Value::Array(a) = entry {
                                a.push(v);
                            }
                        }
                    }
                }
                Value::Object(merged)
            };
            assemble(allow, (not_principal, principal), (not_action, action), (not_resource, resource), conds)
        })
}

/// One statement from its parts; each `bool` picks the `Not` form of its element.
fn assemble(
    allow: bool,
    (not_principal, principal): (bool, Value),
    (not_action, action): (bool, Value),
    (not_resource, resource): (bool, Value),
    conds: Vec<(String, String, Value)>,
) -> Value {
    let mut st = serde_json::Map::new();
    st.insert("Effect".into(), json!(if allow { "Allow" } else { "Deny" }));
    st.insert((if not_principal { "NotPrincipal" } else { "Principal" }).into(), principal);
    st.insert((if not_action { "NotAction" } else { "Action" }).into(), action);
    st.insert((if not_resource { "NotResource" } else { "Resource" }).into(), resource);
    if !conds.is_empty() {
        let mut block: BTreeMap<String, serde_json::Map<String, Value>> = BTreeMap::new();
        for (op, key, value) in conds {
            block.entry(op).or_default().insert(key, value);
        }
        st.insert("Condition".into(), json!(block));
    }
    Value::Object(st)
}

fn policy() -> impl Strategy<Value = String> {
    prop::collection::vec(statement(), 1..4)
        .prop_map(|sts| json!({"Version": "2012-10-17", "Statement": sts}).to_string())
}

/// The finite request universe, consistent with the organization context.
fn universe() -> Vec<Request> {
    let account = |a: &str, arn: &str| Principal::Account { account: a.into(), arn: arn.into() };
    let principals = vec![
        Principal::Anonymous,
        account("111111111111", "arn:aws:iam::111111111111:root"),
        account("222222222222", "arn:aws:iam::222222222222:role/R"),
        account("444444444444", "arn:aws:iam::444444444444:role/R"),
        account("555555555555", "arn:aws:iam::555555555555:root"),
        Principal::CloudFrontOai { arn: OAI.into(), canonical_user: "abc123".into() },
        Principal::Service { name: "cloudfront.amazonaws.com".into() },
    ];
    let targets = [
        ("s3:GetObject", "arn:aws:s3:::b/k"),
        ("s3:GetObject", "arn:aws:s3:::b/private/k"),
        ("s3:PutObject", "arn:aws:s3:::b/k"),
        ("s3:DeleteObject", "arn:aws:s3:::b/k"),
        ("s3:ListBucket", "arn:aws:s3:::b"),
    ];
    let ips = [None, Some("10.1.2.3"), Some("192.0.2.5"), Some("203.0.113.9")];
    // Only values S3 accepts: a request with another value is rejected before any policy
    // decision, and the analyser rightly never considers it.
    let sses = [None, Some("AES256"), Some("aws:kms")];
    let transports = [None, Some("true"), Some("false")];
    let mut out = Vec::new();
    for p in &principals {
        let org = match p {
            Principal::Account { account, .. } if account.starts_with('1') || account.starts_with('2') => {
                Some("o-exampleorg1")
            }
            _ => None,
        };
        for (action, resource) in targets {
            for ip in ips {
                for sse in sses {
                    for st in transports {
                        let mut context = BTreeMap::new();
                        let mut put = |k: &str, v: Option<&str>| {
                            if let Some(v) = v {
                                context.insert(k.to_owned(), vec![v.to_owned()]);
                            }
                        };
                        put("aws:sourceip", ip);
                        put("s3:x-amz-server-side-encryption", sse);
                        put("aws:securetransport", st);
                        put("aws:principalorgid", org);
                        out.push(Request {
                            principal: p.clone(),
                            action: action.into(),
                            resource: resource.into(),
                            context,
                        });
                    }
                }
            }
        }
    }
    out
}

const SSE: &str = "s3:x-amz-server-side-encryption";
const SSE_C: &str = "s3:x-amz-server-side-encryption-customer-algorithm";

/// Whether the request is a PutObject that carries neither server-side-encryption header.
fn unencrypted_upload(r: &Request) -> bool {
    r.action == "s3:PutObject" && !r.context.contains_key(SSE) && !r.context.contains_key(SSE_C)
}

/// For each Allow statement of `text` whose `Principal` names CloudFront (its service or an
/// OAI), a policy of that statement and every Deny of `text`.
fn naming_cloudfront(text: &str) -> Vec<String> {
    let doc: Value = serde_json::from_str(text).unwrap();
    let statements = match &doc["Statement"] {
        Value::Array(all) => all.clone(),
        one => vec![one.clone()],
    };
    let names = |v: &Value, wanted: &dyn Fn(&str) -> bool| match v {
        Value::String(s) => wanted(s),
        Value::Array(a) => a.iter().filter_map(Value::as_str).any(wanted),
        _ => false,
    };
    let denies: Vec<&Value> = statements.iter().filter(|s| s["Effect"] == "Deny").collect();
    statements
        .iter()
        .filter(|s| {
            s["Effect"] == "Allow"
                && (names(&s["Principal"]["Service"], &|p| p == "cloudfront.amazonaws.com")
                    || names(&s["Principal"]["AWS"], &|p| p == OAI))
        })
        .map(|named| {
            // Only its CloudFront entries: a `*` beside them lets CloudFront in as anyone, which
            // is public access, not sharing with CloudFront.
            let mut named = named.clone();
            let only = |v: &Value, wanted: &str| match v {
                Value::String(s) if s == wanted => vec![json!(s)],
                Value::Array(a) => a.iter().filter(|p| p.as_str() == Some(wanted)).cloned().collect(),
                _ => vec![],
            };
            let mut principal = serde_json::Map::new();
            for (kind, wanted) in [("Service", "cloudfront.amazonaws.com"), ("AWS", OAI)] {
                let entries = only(&named["Principal"][kind], wanted);
                if !entries.is_empty() {
                    principal.insert(kind.to_owned(), Value::Array(entries));
                }
            }
            named["Principal"] = Value::Object(principal);
            let mut kept = vec![named];
            kept.extend(denies.iter().map(|d| (*d).clone()));
            json!({"Version": "2012-10-17", "Statement": kept}).to_string()
        })
        .collect()
}

fn from_cloudfront(r: &Request) -> bool {
    match &r.principal {
        Principal::CloudFrontOai { .. } => true,
        Principal::Service { name } => name == "cloudfront.amazonaws.com",
        _ => false,
    }
}

/// Every verdict of `a` in its dangerous direction, against the evaluator over the universe.
/// - FALSE for unencrypted uploads: every PutObject without an encryption header is denied.
/// - FALSE for CloudFront sharing: no request of an OAI or of CloudFront's service is allowed.
/// - Every TRUE carries a witness of its question that the evaluator confirms (for uploads: a
///   PutObject without an encryption header that the policy does not deny).
/// - Every outside account listed has a confirmed witness; every allowed request of an outside
///   principal is listed, by its account or by `*`.
fn dangerous_directions(text: &str, a: &Analysis) -> Result<(), TestCaseError> {
    let policy = parse_policy(text).unwrap();
    let confirmed = |question: &Question| {
        a.witnesses.iter().any(|w| {
            let r = w.to_request();
            &w.question == question
                && match question {
                    Question::UnencryptedUpload => {
                        unencrypted_upload(&r) && evaluate(&policy, &r) != Decision::ExplicitlyDenied
                    }
                    _ => evaluate(&policy, &r) == Decision::Allowed,
                }
        })
    };
    let verdicts = [
        (Question::PublicRead, a.allows_public_read_access),
        (Question::PublicWrite, a.allows_public_write_access),
        (Question::SharedWithCloudFront, a.shared_with_cloudfront),
        (Question::UnencryptedUpload, a.allows_unencrypted_object_uploads),
    ];
    for (question, verdict) in &verdicts {
        if *verdict == Tri::True {
            prop_assert!(
                confirmed(question),
                "{} is TRUE without a confirmed witness: {:?} in {}",
                question,
                a.witnesses,
                text
            );
        }
    }
    for account in &a.external_accounts {
        let question = Question::SharedWithAccount(account.clone());
        prop_assert!(
            confirmed(&question) || confirmed(&Question::ServiceActingFor(account.clone())),
            "outside account {} without a confirmed witness: {:?} in {}",
            account,
            a.witnesses,
            text
        );
    }
    let members = ctx().member_accounts;
    for r in universe() {
        let decision = evaluate(&policy, &r);
        if a.allows_unencrypted_object_uploads == Tri::False && unencrypted_upload(&r) {
            prop_assert_eq!(
                decision,
                Decision::ExplicitlyDenied,
                "FALSE for unencrypted uploads, yet {:?} in {}",
                r,
                text
            );
        }
        if decision != Decision::Allowed {
            continue;
        }
        if a.shared_with_cloudfront == Tri::False && from_cloudfront(&r) {
            // Sharing with CloudFront means a grant that names it (a grant to everyone is
            // public, not shared with CloudFront): a naming statement with every Deny, alone.
            for named in naming_cloudfront(text) {
                let d = evaluate(&parse_policy(&named).unwrap(), &r);
                prop_assert_ne!(d, Decision::Allowed, "FALSE for CloudFront, yet {:?} is allowed by {}", r, named);
            }
        }
        let outside = match &r.principal {
            Principal::Anonymous => Some("*".to_owned()),
            Principal::Account { account, .. } if !members.contains(account.as_str()) => Some(account.clone()),
            _ => None,
        };
        if let Some(account) = outside {
            let listed = a.external_accounts.contains(&account) || a.external_accounts.contains(&"*".to_owned());
            prop_assert!(listed, "{:?} allowed, outside accounts {:?} in {}", r, a.external_accounts, text);
        }
    }
    // A service acting for an account the policy names: allowed means listed, as a member or
    // an outsider (SEMANTICS.md, shared.service-principals), unless sharing is UNKNOWN.
    if a.shared_access != SharedAccess::Unknown {
        // Named: a literal of aws:SourceAccount, or the account field of a literal aws:SourceArn.
        let named = |account: &str| {
            text.contains(&format!("\"aws:SourceAccount\":\"{account}\""))
                || text.contains(&format!("\"aws:SourceArn\":\"arn:aws:logs:us-east-1:{account}:*\""))
        };
        for account in ["222222222222", "444444444444"].into_iter().filter(|acct| named(acct)) {
            let r = Request {
                principal: Principal::Service { name: "logging.s3.amazonaws.com".into() },
                action: "s3:PutObject".into(),
                resource: "arn:aws:s3:::b/k".into(),
                context: [("aws:sourceaccount".to_owned(), vec![account.to_owned()])].into(),
            };
            if evaluate(&policy, &r) == Decision::Allowed {
                let listed = a.internal_accounts.iter().chain(&a.external_accounts).any(|l| l == account);
                prop_assert!(listed, "a service acting for {} is allowed, yet unlisted: {:?} in {}", account, a, text);
            }
        }
    }
    Ok(())
}

/// Policies from AWS's documentation and the reference's own examples, each with the verdict
/// the reference gives it (public-access-semantics.md, "Requires encryption" and "Shared"):
/// the dangerous-direction checks run on them whatever the generator happens to draw.
#[test]
fn documented_policies_in_their_dangerous_direction() {
    let deny_put = |condition: Value| {
        json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::222222222222:root"}, "Action": "s3:PutObject", "Resource": "arn:aws:s3:::b/*"},
            {"Effect": "Deny", "Principal": "*", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::b/*", "Condition": condition}
        ]})
        .to_string()
    };
    let cases = [
        // AWS's documented example: deny uploads without the header.
        (deny_put(json!({"Null": {SSE: "true"}})), Tri::False),
        // Deny uploads whose header is not KMS: an absent header is "not equal".
        (deny_put(json!({"StringNotEquals": {SSE: "aws:kms"}})), Tri::False),
        // A Deny that rejects only AES256 uploads leaves uploads without a header: TRUE.
        (deny_put(json!({"StringEquals": {SSE: "AES256"}})), Tri::True),
        // A Deny that needs both headers absent rejects exactly the unencrypted uploads.
        (deny_put(json!({"Null": {SSE: "true", SSE_C: "true"}})), Tri::False),
        // A Deny of only the SSE-C header's absence: SSE-S3 uploads pass, unencrypted ones do not.
        (deny_put(json!({"Null": {SSE_C: "true"}})), Tri::False),
        // A Deny of plain HTTP says nothing about encryption at rest.
        (deny_put(json!({"Bool": {"aws:SecureTransport": "false"}})), Tri::True),
    ];
    for (text, want) in cases {
        let a = analyze(&text, BUCKET, &ctx(), &opts()).unwrap();
        assert_eq!(a.allows_unencrypted_object_uploads, want, "{text}");
        dangerous_directions(&text, &a).unwrap();
    }
    // AWS's documented CloudFront examples: an OAI, and OAC's service principal with the
    // distribution as SourceArn. Both share with CloudFront and nothing else.
    let oai = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": OAI}, "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*"}]})
    .to_string();
    let oac = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "cloudfront.amazonaws.com"}, "Action": "s3:GetObject",
         "Resource": "arn:aws:s3:::b/*",
         "Condition": {"StringEquals": {"AWS:SourceArn": "arn:aws:cloudfront::111111111111:distribution/EDFDVBD6EXAMPLE"}}}]})
    .to_string();
    for text in [oai, oac] {
        let a = analyze(&text, BUCKET, &ctx(), &opts()).unwrap();
        assert_eq!(a.shared_with_cloudfront, Tri::True, "{text}");
        assert_eq!(a.allows_public_read_access, Tri::False, "{text}");
        assert!(a.external_accounts.is_empty(), "{text}: {:?}", a.external_accounts);
        dangerous_directions(&text, &a).unwrap();
    }
}

fn cases() -> u32 {
    std::env::var("ESTATE_PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(64)
}

/// Counted in Z3's resource units, not time: the verdicts are the same on a busy machine.
fn opts() -> AnalysisOptions {
    AnalysisOptions::counted()
}

proptest! {
    // 64 cases keep the run to seconds; `ESTATE_PROPTEST_CASES` asks for more.
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    /// For a random slice of the universe (and for single requests) the solver's "is some
    /// request of this set allowed" equals the evaluator's.
    #[test]
    fn solver_agrees_with_evaluator_on_finite_sets(text in policy(), start in 0usize..1000, len in 1usize..40) {
        let policy = parse_policy(&text).unwrap();
        let all = universe();
        let start = start % all.len();
        let slice: Vec<Request> = all.iter().cycle().skip(start).take(len).cloned().collect();
        let expected = slice.iter().any(|r| evaluate(&policy, r) == Decision::Allowed);
        let got = solver_allows_some(&policy, BUCKET, &ctx(), &slice, &opts());
        prop_assert_eq!(got, if expected { Tri::True } else { Tri::False }, "policy {} requests {:?}", text, slice);
        for r in slice.iter().take(3) {
            let expected = evaluate(&policy, r) == Decision::Allowed;
            let got = solver_allows_some(&policy, BUCKET, &ctx(), std::slice::from_ref(r), &opts());
            prop_assert_eq!(got, if expected { Tri::True } else { Tri::False }, "policy {} request {:?}", text, r);
        }
    }

    /// The pre-solver layer decides exactly what the solver decides: every verdict is the
    /// same with the layer on and off. One difference is allowed, and only where the solver
    /// alone gave up (Z3's sequence solver is incomplete, and now and then answers unknown on a
    /// query it usually decides): a "yes" the pre-solver found by example, whose witness the
    /// evaluator confirms (`witnesses_hold_and_no_answers_are_sound`). A "no" is never excused.
    #[test]
    fn presolve_agrees_with_the_solver(text in policy()) {
        let on = analyze(&text, BUCKET, &ctx(), &opts()).unwrap();
        let off = analyze(&text, BUCKET, &ctx(), &AnalysisOptions { presolve: false, ..opts() }).unwrap();
        let gave_up = !off.unknown_reasons.is_empty();
        let agree = |on: Tri, off: Tri| on == off || (gave_up && on == Tri::True && off == Tri::Unknown);
        // The excuse, confirmed here: every "yes" of the layer has a witness the evaluator holds.
        dangerous_directions(&text, &on)?;
        let why = format!("{text}\nsolver alone: {:?}", off.unknown_reasons);
        prop_assert!(agree(on.allows_public_read_access, off.allows_public_read_access), "read {}", why);
        prop_assert!(agree(on.allows_public_write_access, off.allows_public_write_access), "write {}", why);
        prop_assert!(agree(on.shared_with_cloudfront, off.shared_with_cloudfront), "cloudfront {}", why);
        prop_assert!(
            agree(on.allows_unencrypted_object_uploads, off.allows_unencrypted_object_uploads),
            "uploads {}",
            why
        );
        if off.shared_access != SharedAccess::Unknown || !gave_up {
            prop_assert_eq!(on.shared_access, off.shared_access, "{}", why);
            prop_assert_eq!(&on.internal_accounts, &off.internal_accounts, "{}", why);
            prop_assert_eq!(&on.external_accounts, &off.external_accounts, "{}", why);
        } else {
            // The solver alone left sharing undecided: the layer may only have found more ways in.
            prop_assert_ne!(on.shared_access, SharedAccess::NotShared, "{}", why);
            prop_assert!(off.internal_accounts.iter().all(|a| on.internal_accounts.contains(a)), "{}", why);
            prop_assert!(off.external_accounts.iter().all(|a| on.external_accounts.contains(a)), "{}", why);
        }
    }

    /// Every witness is confirmed by the evaluator, and every allowed request of the universe
    /// is accounted for by the verdicts.
    #[test]
    fn witnesses_hold_and_no_answers_are_sound(text in policy()) {
        let policy = parse_policy(&text).unwrap();
        let a = analyze(&text, BUCKET, &ctx(), &opts()).unwrap();
        prop_assert!(a.unknown_reasons.is_empty(), "{:?} for {}", a.unknown_reasons, text);
        for w in &a.witnesses {
            let d = evaluate(&policy, &w.to_request());
            match w.question {
                Question::UnencryptedUpload => prop_assert_ne!(d, Decision::ExplicitlyDenied, "{:?} {}", w, text),
                _ => prop_assert_eq!(d, Decision::Allowed, "{:?} {}", w, text),
            }
        }
        dangerous_directions(&text, &a)?;
        let named_444 = text.contains("444444444444");
        for r in universe() {
            if evaluate(&policy, &r) != Decision::Allowed {
                continue;
            }
            let ip = r.context.get("aws:sourceip").and_then(|v| v.first()).map(String::as_str);
            // The untrusted caller: anonymous or a fresh account, outside every fixed CIDR.
            let fresh = match &r.principal {
                Principal::Anonymous => true,
                Principal::Account { account, .. } => account == "555555555555" || (account == "444444444444" && !named_444),
                _ => false,
            };
            if fresh && matches!(ip, None | Some("203.0.113.9")) {
                if r.action.starts_with("s3:Get") || r.action.starts_with("s3:List") {
                    prop_assert_eq!(a.allows_public_read_access, Tri::True, "{:?} allowed in {}", r, text);
                } else {
                    prop_assert_eq!(a.allows_public_write_access, Tri::True, "{:?} allowed in {}", r, text);
                }
            }
            match &r.principal {
                Principal::Account { account, .. } if account == "222222222222" => {
                    prop_assert!(a.internal_accounts.contains(account), "{:?} allowed in {}", r, text)
                }
                Principal::Account { account, .. } if account != "111111111111" => {
                    prop_assert!(!a.external_accounts.is_empty(), "{:?} allowed in {}", r, text)
                }
                Principal::Anonymous => prop_assert!(a.external_accounts.contains(&"*".to_owned()), "{:?} allowed in {}", r, text),
                _ => {}
            }
        }
    }
}

/// A wider vocabulary: wildcard resources and NotResource, policy variables, multi-valued keys
/// with ForAnyValue/ForAllValues, numbers, dates, principal ARN patterns.
fn rich_condition() -> impl Strategy<Value = (String, String, Value)> {
    let set_op = prop_oneof![
        Just("ForAnyValue:StringEquals"),
        Just("ForAllValues:StringEquals"),
        Just("ForAnyValue:StringNotLike"),
        Just("ForAllValues:StringLike"),
    ];
    let tags = prop_oneof![Just(json!(["a"])), Just(json!(["a", "b*"])), Just(json!("c"))];
    let prefix_op =
        prop_oneof![Just("StringLike"), Just("StringNotLike"), Just("StringEquals"), Just("StringLikeIfExists")];
    let prefix = prop_oneof![Just("home/*"), Just("home/${aws:username}/*"), Just("*/x?"), Just("x")];
    let num_op = prop_oneof![Just("NumericLessThan"), Just("NumericGreaterThanEquals"), Just("NumericNotEquals")];
    let date_op = prop_oneof![Just("DateGreaterThan"), Just("DateLessThanEquals")];
    let arn_op = prop_oneof![Just("ArnLike"), Just("ArnNotLike"), Just("ArnEquals")];
    let arn = prop_oneof![
        Just("arn:aws:iam::*:role/R"),
        Just("arn:aws:iam::444444444444:*"),
        Just("arn:aws:iam::222222222222:role/R")
    ];
    prop_oneof![
        (set_op, tags).prop_map(|(o, v)| (o.to_owned(), "aws:TagKeys".to_owned(), v)),
        (prefix_op, prefix).prop_map(|(o, v)| (o.to_owned(), "s3:prefix".to_owned(), json!(v))),
        (num_op, prop_oneof![Just("10"), Just("100")]).prop_map(|(o, v)| (
            o.to_owned(),
            "s3:max-keys".to_owned(),
            json!(v)
        )),
        (date_op, prop_oneof![Just("2020-01-01T00:00:00Z"), Just("1700000000")]).prop_map(|(o, v)| (
            o.to_owned(),
            "aws:CurrentTime".to_owned(),
            json!(v)
        )),
        (arn_op, arn).prop_map(|(o, v)| (o.to_owned(), "aws:PrincipalArn".to_owned(), json!(v))),
        any::<bool>().prop_map(|b| ("Null".to_owned(), "aws:username".to_owned(), json!(b))),
        (
            prop_oneof![Just("StringEqualsIgnoreCase"), Just("StringNotEqualsIgnoreCase")],
            prop_oneof![Just("ALICE"), Just("Bob")]
        )
            .prop_map(|(o, v)| (o.to_owned(), "aws:username".to_owned(), json!(v))),
        (
            prop_oneof![Just("IpAddress"), Just("NotIpAddressIfExists")],
            prop_oneof![Just("2001:db8::/32"), Just("203.0.113.0/24")]
        )
            .prop_map(|(o, v)| (o.to_owned(), "aws:SourceIp".to_owned(), json!(v))),
        condition(),
    ]
}

fn rich_statement() -> impl Strategy<Value = Value> {
    let resources = prop_oneof![
        Just(json!("arn:aws:s3:::b/*")),
        Just(json!("arn:aws:s3:::b/${aws:username}/*")),
        Just(json!("arn:aws:s3:::b/home/?*")),
        Just(json!("arn:aws:s3:::*/private/*")),
        Just(json!(["arn:aws:s3:::b", "arn:aws:s3:::b/*k"])),
    ];
    (
        any::<bool>(),
        principal_entry(),
        prop::bool::weighted(0.15),
        prop::bool::weighted(0.2),
        prop_oneof![Just(json!("s3:*")), Just(json!("s3:Get*")), Just(json!(["s3:PutObject", "s3:List*"]))],
        resources,
        prop::collection::vec(rich_condition(), 0..3),
    )
        .prop_map(|(allow, principal, not_principal, not_resource, action, resource, conds)| {
            assemble(allow, (not_principal, principal), (false, action), (not_resource, resource), conds)
        })
}

fn rich_request() -> impl Strategy<Value = Request> {
    let principal = prop_oneof![
        Just(Principal::Anonymous),
        Just(Principal::Account { account: "222222222222".into(), arn: "arn:aws:iam::222222222222:role/R".into() }),
        Just(Principal::Account { account: "444444444444".into(), arn: "arn:aws:iam::444444444444:user/U".into() }),
        Just(Principal::Account { account: "555555555555".into(), arn: "arn:aws:iam::555555555555:role/R".into() }),
        Just(Principal::CloudFrontOai { arn: OAI.into(), canonical_user: "abc123".into() }),
    ];
    let target = prop_oneof![
        Just(("s3:GetObject", "arn:aws:s3:::b/k")),
        Just(("s3:GetObject", "arn:aws:s3:::b/alice/x")),
        Just(("s3:PutObject", "arn:aws:s3:::b/home/x")),
        Just(("s3:GetObject", "arn:aws:s3:::b/private/k")),
        Just(("s3:ListBucket", "arn:aws:s3:::b")),
    ];
    let opt = |vals: &'static [&'static str]| prop_oneof![Just(None), prop::sample::select(vals).prop_map(Some)];
    let tags = prop_oneof![Just(None), Just(Some(vec!["a"])), Just(Some(vec!["a", "bz"])), Just(Some(vec!["c", "a"]))];
    (
        principal,
        target,
        opt(&["alice", "bob", "Alice"]),
        opt(&["home/", "home/alice/", "q/xy", "x"]),
        tags,
        opt(&["5", "500"]),
        opt(&["1600000000", "2030-01-01T00:00:00Z"]),
        opt(&["10.1.2.3", "203.0.113.9", "2001:db8::7", "::1"]),
    )
        .prop_map(|(principal, (action, resource), user, prefix, tags, max_keys, time, ip)| {
            let mut context: BTreeMap<String, Vec<String>> = BTreeMap::new();
            let mut put = |k: &str, v: Option<&str>| {
                if let Some(v) = v {
                    context.insert(k.to_owned(), vec![v.to_owned()]);
                }
            };
            put("aws:username", user);
            put("s3:prefix", prefix);
            put("s3:max-keys", max_keys);
            put("aws:currenttime", time);
            put("aws:sourceip", ip);
            if let Principal::Account { account, arn } = &principal {
                put("aws:principalarn", Some(arn));
                if account.starts_with('2') {
                    put("aws:principalorgid", Some("o-exampleorg1"));
                }
            }
            if let Some(t) = tags {
                context.insert("aws:tagkeys".into(), t.into_iter().map(str::to_owned).collect());
            }
            Request { principal, action: action.into(), resource: resource.into(), context }
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    /// The solver and the evaluator agree on a wider vocabulary too, and witnesses hold.
    #[test]
    fn rich_policies_agree(
        statements in prop::collection::vec(rich_statement(), 1..4),
        requests in prop::collection::vec(rich_request(), 1..12),
    ) {
        let text = json!({"Version": "2012-10-17", "Statement": statements}).to_string();
        let policy = parse_policy(&text).unwrap();
        let expected = requests.iter().any(|r| evaluate(&policy, r) == Decision::Allowed);
        let got = solver_allows_some(&policy, BUCKET, &ctx(), &requests, &opts());
        prop_assert_eq!(got, if expected { Tri::True } else { Tri::False }, "policy {} requests {:?}", text, requests);
        for r in requests.iter().take(4) {
            let expected = evaluate(&policy, r) == Decision::Allowed;
            let got = solver_allows_some(&policy, BUCKET, &ctx(), std::slice::from_ref(r), &opts());
            prop_assert_eq!(got, if expected { Tri::True } else { Tri::False }, "policy {} request {:?}", text, r);
        }
        let a = analyze(&text, BUCKET, &ctx(), &opts()).unwrap();
        for w in &a.witnesses {
            let d = evaluate(&policy, &w.to_request());
            match w.question {
                Question::UnencryptedUpload => prop_assert_ne!(d, Decision::ExplicitlyDenied, "{:?} {}", w, text),
                _ => prop_assert_eq!(d, Decision::Allowed, "{:?} {}", w, text),
            }
        }
    }
}
