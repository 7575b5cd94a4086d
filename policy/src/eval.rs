//! The concrete evaluator: decides one request against a policy. It is the oracle every
//! solver answer is checked against.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::ast::{BaseOp, Condition, Effect, Policy, PrincipalEntry, SetQualifier, Statement};
use crate::parser::is_account_id;
use crate::values::{parse_cidr, parse_date, parse_ip, parse_number, wildcard_match, Template};

/// Who makes a request.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum Principal {
    /// An unauthenticated caller.
    Anonymous,
    /// An IAM principal (root, role or user) of an account.
    Account {
        /// The 12-digit account ID.
        account: String,
        /// The principal's ARN.
        arn: String,
    },
    /// An AWS service principal, e.g. `cloudfront.amazonaws.com`.
    Service {
        /// The service name.
        name: String,
    },
    /// A CloudFront origin access identity.
    CloudFrontOai {
        /// `arn:aws:iam::cloudfront:user/CloudFront Origin Access Identity ID`.
        arn: String,
        /// Its canonical user ID.
        canonical_user: String,
    },
    /// A federated identity provider.
    Federated {
        /// The provider.
        provider: String,
    },
}

/// One request to decide.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Request {
    /// The caller.
    pub principal: Principal,
    /// The action name, e.g. `s3:GetObject`.
    pub action: String,
    /// The resource ARN.
    pub resource: String,
    /// Condition key values; keys lowercased. An absent key is absent from the map.
    pub context: BTreeMap<String, Vec<String>>,
}

/// The outcome of evaluating a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Decision {
    /// Some Allow matches and no Deny does.
    Allowed,
    /// Some Deny matches.
    ExplicitlyDenied,
    /// Nothing matches (implicit deny).
    NotAllowed,
}

/// Decides `request` against `policy`.
pub fn evaluate(policy: &Policy, request: &Request) -> Decision {
    let vars = policy.variables_enabled();
    let mut allowed = false;
    for st in &policy.statements {
        if statement_matches(st, request, vars, false) {
            match st.effect {
                Effect::Deny => return Decision::ExplicitlyDenied,
                Effect::Allow => allowed = true,
            }
        }
    }
    if allowed {
        Decision::Allowed
    } else {
        Decision::NotAllowed
    }
}

/// True when the statement matches the request; `named_only` disregards bare `*` principals.
pub(crate) fn statement_matches(st: &Statement, r: &Request, vars: bool, named_only: bool) -> bool {
    let principal = {
        let any = st.principal.entries.iter().any(|e| principal_entry_matches(e, &r.principal, named_only));
        if st.principal.negated {
            // A NotPrincipal grant names nobody in particular.
            !named_only && !any
        } else {
            any
        }
    };
    let action = st.action.values.iter().any(|p| wildcard_match(p, &r.action, true)) != st.action.negated;
    let resource = st
        .resource
        .values
        .iter()
        .any(|p| Template::parse(p, true, vars).resolve(&r.context).is_some_and(|t| t.matches(&r.resource, false)))
        != st.resource.negated;
    principal && action && resource && st.conditions.iter().all(|c| condition_holds(c, &r.context, vars))
}

/// How a principal entry is interpreted (shared by the evaluator and the compiler).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EntryForm {
    /// `*` or `{"AWS": "*"}`: everyone.
    Everyone,
    /// An account (ID or `arn:aws:iam::ACCOUNT:root`), as a pattern over the account ID.
    Account(String),
    /// An ARN pattern over IAM principal and OAI ARNs.
    Arn(String),
    /// A service-name pattern.
    Service(String),
    /// A federated-provider pattern.
    Federated(String),
    /// A canonical-user-ID pattern (CloudFront OAI).
    Canonical(String),
}

pub(crate) fn entry_form(e: &PrincipalEntry) -> EntryForm {
    match e {
        PrincipalEntry::Wildcard => EntryForm::Everyone,
        PrincipalEntry::Aws(s) if s == "*" => EntryForm::Everyone,
        PrincipalEntry::Aws(s) if is_account_id(s) => EntryForm::Account(s.clone()),
        PrincipalEntry::Aws(s) => match s.strip_prefix("arn:aws:iam::").and_then(|r| r.strip_suffix(":root")) {
            Some(acct) if !acct.contains(':') => EntryForm::Account(acct.to_owned()),
            _ => EntryForm::Arn(s.clone()),
        },
        PrincipalEntry::Service(s) => EntryForm::Service(s.clone()),
        PrincipalEntry::Federated(s) => EntryForm::Federated(s.clone()),
        PrincipalEntry::CanonicalUser(s) => EntryForm::Canonical(s.clone()),
    }
}

fn principal_entry_matches(e: &PrincipalEntry, p: &Principal, named_only: bool) -> bool {
    match (entry_form(e), p) {
        (EntryForm::Everyone, _) => !named_only,
        (EntryForm::Account(pat), Principal::Account { account, .. }) => wildcard_match(&pat, account, false),
        (EntryForm::Arn(pat), Principal::Account { arn, .. } | Principal::CloudFrontOai { arn, .. }) => {
            wildcard_match(&pat, arn, false)
        }
        (EntryForm::Service(pat), Principal::Service { name }) => wildcard_match(&pat, name, false),
        (EntryForm::Federated(pat), Principal::Federated { provider }) => wildcard_match(&pat, provider, false),
        (EntryForm::Canonical(pat), Principal::CloudFrontOai { canonical_user, .. }) => {
            wildcard_match(&pat, canonical_user, false)
        }
        _ => false,
    }
}

/// Evaluates one condition against the request context.
pub(crate) fn condition_holds(c: &Condition, ctx: &BTreeMap<String, Vec<String>>, vars: bool) -> bool {
    let values = ctx.get(&c.key);
    if c.op.base == BaseOp::Null {
        return c.values.iter().any(|v| v.eq_ignore_ascii_case("true") == values.is_none());
    }
    let present = values.is_some();
    let values: &[String] = values.map(Vec::as_slice).unwrap_or(&[]);
    let m = |x: &String| c.values.iter().any(|pv| base_matches(c.op.base, pv, x, ctx, vars));
    match c.op.qualifier {
        SetQualifier::None => {
            let any = present && values.iter().any(m);
            if c.op.negated {
                !any
            } else {
                any || (!present && c.op.if_exists)
            }
        }
        SetQualifier::ForAnyValue => (!present && c.op.if_exists) || values.iter().any(|x| m(x) != c.op.negated),
        SetQualifier::ForAllValues => values.iter().all(|x| m(x) != c.op.negated),
    }
}

/// The positive comparison of one request value with one policy value.
pub(crate) fn base_matches(
    base: BaseOp,
    policy_value: &str,
    x: &str,
    ctx: &BTreeMap<String, Vec<String>>,
    vars: bool,
) -> bool {
    let template = |wild: bool| Template::parse(policy_value, wild, vars).resolve(ctx);
    let num = |f: fn(&str) -> Option<i64>, cmp: fn(i64, i64) -> bool| match (f(x), f(policy_value)) {
        (Some(a), Some(b)) => cmp(a, b),
        _ => false,
    };
    match base {
        BaseOp::StringEquals => template(false).is_some_and(|t| t.matches(x, false)),
        BaseOp::StringEqualsIgnoreCase => template(false).is_some_and(|t| t.matches(x, true)),
        BaseOp::StringLike | BaseOp::ArnLike => template(true).is_some_and(|t| t.matches(x, false)),
        BaseOp::NumericEquals => num(parse_number, |a, b| a == b),
        BaseOp::NumericLessThan => num(parse_number, |a, b| a < b),
        BaseOp::NumericLessThanEquals => num(parse_number, |a, b| a <= b),
        BaseOp::NumericGreaterThan => num(parse_number, |a, b| a > b),
        BaseOp::NumericGreaterThanEquals => num(parse_number, |a, b| a >= b),
        BaseOp::DateEquals => num(parse_date, |a, b| a == b),
        BaseOp::DateLessThan => num(parse_date, |a, b| a < b),
        BaseOp::DateLessThanEquals => num(parse_date, |a, b| a <= b),
        BaseOp::DateGreaterThan => num(parse_date, |a, b| a > b),
        BaseOp::DateGreaterThanEquals => num(parse_date, |a, b| a >= b),
        BaseOp::Bool => x.eq_ignore_ascii_case(policy_value),
        BaseOp::BinaryEquals => x == policy_value,
        BaseOp::IpAddress => match (parse_cidr(policy_value), parse_ip(x)) {
            (Some(c), Some(ip)) => c.contains(ip),
            _ => false,
        },
        BaseOp::Null => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parser::parse_policy;

    fn req(principal: Principal, action: &str, resource: &str, ctx: &[(&str, &[&str])]) -> Request {
        Request {
            principal,
            action: action.into(),
            resource: resource.into(),
            context: ctx.iter().map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect())).collect(),
        }
    }

    fn acct(a: &str) -> Principal {
        Principal::Account { account: a.into(), arn: format!("arn:aws:iam::{a}:root") }
    }

    #[test]
    fn allow_and_deny() {
        let p = parse_policy(
            r#"{"Version":"2012-10-17","Statement":[
              {"Effect":"Allow","Principal":"*","Action":"s3:Get*","Resource":"arn:aws:s3:::b/*"},
              {"Effect":"Deny","Principal":"*","Action":"*","Resource":"arn:aws:s3:::b/*","Condition":{"Bool":{"aws:SecureTransport":"false"}}}]}"#,
        )
        .unwrap();
        let ok = req(Principal::Anonymous, "S3:GETOBJECT", "arn:aws:s3:::b/k", &[("aws:securetransport", &["true"])]);
        assert_eq!(evaluate(&p, &ok), Decision::Allowed);
        let bad = req(Principal::Anonymous, "s3:GetObject", "arn:aws:s3:::b/k", &[("aws:securetransport", &["FALSE"])]);
        assert_eq!(evaluate(&p, &bad), Decision::ExplicitlyDenied);
        let other = req(Principal::Anonymous, "s3:PutObject", "arn:aws:s3:::b/k", &[]);
        assert_eq!(evaluate(&p, &other), Decision::NotAllowed);
    }

    #[test]
    fn principals_and_conditions() {
        let p = parse_policy(
            r#"{"Version":"2012-10-17","Statement":[
              {"Effect":"Allow","Principal":{"AWS":"444444444444"},"Action":"s3:*","Resource":"*",
               "Condition":{"IpAddress":{"aws:SourceIp":["10.0.0.0/8","2001:db8::/32"]},
                            "NumericLessThan":{"s3:max-keys":"10"},
                            "DateGreaterThan":{"aws:CurrentTime":"2020-01-01T00:00:00Z"},
                            "StringNotEqualsIfExists":{"aws:SourceVpce":"vpce-1"},
                            "ForAllValues:StringLike":{"aws:TagKeys":["a*"]},
                            "StringEquals":{"aws:Username":"${aws:username}"}}}]}"#,
        )
        .unwrap();
        let base: &[(&str, &[&str])] = &[
            ("aws:sourceip", &["2001:db8::5"]),
            ("s3:max-keys", &["3"]),
            ("aws:currenttime", &["1600000000"]),
            ("aws:tagkeys", &["ab", "ac"]),
            ("aws:username", &["bob"]),
        ];
        assert_eq!(
            evaluate(&p, &req(acct("444444444444"), "s3:ListBucket", "arn:aws:s3:::b", base)),
            Decision::Allowed
        );
        assert_eq!(
            evaluate(&p, &req(acct("555555555555"), "s3:ListBucket", "arn:aws:s3:::b", base)),
            Decision::NotAllowed
        );
        let mut ctx = base.to_vec();
        ctx[3] = ("aws:tagkeys", &["ab", "x"]);
        assert_eq!(
            evaluate(&p, &req(acct("444444444444"), "s3:ListBucket", "arn:aws:s3:::b", &ctx)),
            Decision::NotAllowed
        );
        let mut ctx = base.to_vec();
        ctx.push(("aws:sourcevpce", &["vpce-1"]));
        assert_eq!(
            evaluate(&p, &req(acct("444444444444"), "s3:ListBucket", "arn:aws:s3:::b", &ctx)),
            Decision::NotAllowed
        );
        let mut ctx = base.to_vec();
        ctx.remove(4);
        assert_eq!(
            evaluate(&p, &req(acct("444444444444"), "s3:ListBucket", "arn:aws:s3:::b", &ctx)),
            Decision::NotAllowed
        );
    }

    #[test]
    fn null_and_oai() {
        let p = parse_policy(
            r#"{"Statement":[
              {"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::cloudfront:user/CloudFront Origin Access Identity E1"},"Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"},
              {"Effect":"Deny","Principal":"*","Action":"s3:PutObject","Resource":"arn:aws:s3:::b/*","Condition":{"Null":{"s3:x-amz-server-side-encryption":"true"}}}]}"#,
        )
        .unwrap();
        let oai = Principal::CloudFrontOai {
            arn: "arn:aws:iam::cloudfront:user/CloudFront Origin Access Identity E1".into(),
            canonical_user: "c".into(),
        };
        assert_eq!(evaluate(&p, &req(oai, "s3:GetObject", "arn:aws:s3:::b/x", &[])), Decision::Allowed);
        assert_eq!(
            evaluate(&p, &req(Principal::Anonymous, "s3:PutObject", "arn:aws:s3:::b/x", &[])),
            Decision::ExplicitlyDenied
        );
        assert_eq!(
            evaluate(
                &p,
                &req(
                    Principal::Anonymous,
                    "s3:PutObject",
                    "arn:aws:s3:::b/x",
                    &[("s3:x-amz-server-side-encryption", &["AES256"])]
                )
            ),
            Decision::NotAllowed
        );
    }
}
