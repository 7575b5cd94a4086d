//! Parser from policy JSON text to the typed AST; every error says where and what.

use serde_json::{Map, Value};

use crate::ast::{
    BaseOp, Clause, Condition, Effect, Operator, Policy, PrincipalClause, PrincipalEntry, SetQualifier, Statement,
};
use crate::error::PolicyError;

/// How deep JSON may nest: serde_json's own recursion limit, which keeps parsing within a
/// bounded stack (no real policy nests more than five levels).
pub const JSON_DEPTH_LIMIT: usize = 128;

/// Parses a bucket policy document.
pub fn parse_policy(text: &str) -> Result<Policy, PolicyError> {
    let value: Value = serde_json::from_str(text).map_err(|e| PolicyError::Json {
        line: e.line(),
        column: e.column(),
        message: if e.to_string().starts_with("recursion limit exceeded") {
            format!("nested more than {JSON_DEPTH_LIMIT} levels deep (the parser's limit)")
        } else {
            e.to_string()
        },
    })?;
    let Value::Object(doc) = value else {
        return Err(PolicyError::invalid("policy", "the document must be a JSON object"));
    };
    let mut version = None;
    let mut id = None;
    let mut statements = None;
    for (field, v) in &doc {
        match field.as_str() {
            "Version" => {
                let s =
                    v.as_str().ok_or_else(|| PolicyError::invalid("policy, field `Version`", "must be a string"))?;
                if s != "2012-10-17" && s != "2008-10-17" {
                    return Err(PolicyError::invalid(
                        "policy, field `Version`",
                        format!("unsupported version `{s}`, expected `2012-10-17` or `2008-10-17`"),
                    ));
                }
                version = Some(s.to_owned());
            }
            "Id" => {
                let s = v.as_str().ok_or_else(|| PolicyError::invalid("policy, field `Id`", "must be a string"))?;
                id = Some(s.to_owned());
            }
            "Statement" => statements = Some(v),
            other => {
                return Err(PolicyError::invalid("policy", format!("unknown field `{other}`")));
            }
        }
    }
    let statements = statements.ok_or_else(|| PolicyError::invalid("policy", "missing field `Statement`"))?;
    let list: Vec<&Value> = match statements {
        Value::Array(items) => items.iter().collect(),
        Value::Object(_) => vec![statements],
        _ => return Err(PolicyError::invalid("policy, field `Statement`", "must be an object or an array of objects")),
    };
    let statements = list.into_iter().enumerate().map(|(i, v)| parse_statement(i, v)).collect::<Result<Vec<_>, _>>()?;
    Ok(Policy { version, id, statements })
}

fn where_(index: usize, sid: Option<&str>) -> String {
    match sid {
        Some(sid) => format!("statement {index} (`{sid}`)"),
        None => format!("statement {index}"),
    }
}

fn parse_statement(index: usize, value: &Value) -> Result<Statement, PolicyError> {
    let Value::Object(obj) = value else {
        return Err(PolicyError::invalid(where_(index, None), "a statement must be a JSON object"));
    };
    let sid = match obj.get("Sid") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            return Err(PolicyError::invalid(format!("{}, field `Sid`", where_(index, None)), "must be a string"))
        }
    };
    let at = where_(index, sid.as_deref());
    let field_at = |f: &str| format!("{at}, field `{f}`");
    for key in obj.keys() {
        if !matches!(
            key.as_str(),
            "Sid"
                | "Effect"
                | "Principal"
                | "NotPrincipal"
                | "Action"
                | "NotAction"
                | "Resource"
                | "NotResource"
                | "Condition"
        ) {
            return Err(PolicyError::invalid(at.clone(), format!("unknown field `{key}`")));
        }
    }
    let effect = match obj.get("Effect") {
        None => return Err(PolicyError::invalid(at.clone(), "missing field `Effect`")),
        Some(Value::String(s)) if s == "Allow" => Effect::Allow,
        Some(Value::String(s)) if s == "Deny" => Effect::Deny,
        Some(other) => {
            return Err(PolicyError::invalid(field_at("Effect"), format!("must be `Allow` or `Deny`, found {other}")))
        }
    };
    let principal = match (obj.get("Principal"), obj.get("NotPrincipal")) {
        (Some(_), Some(_)) => {
            return Err(PolicyError::invalid(at.clone(), "both `Principal` and `NotPrincipal` given"))
        }
        (None, None) => return Err(PolicyError::invalid(at.clone(), "missing field `Principal` or `NotPrincipal`")),
        (Some(v), None) => PrincipalClause { negated: false, entries: parse_principal(v, &field_at("Principal"))? },
        (None, Some(v)) => PrincipalClause { negated: true, entries: parse_principal(v, &field_at("NotPrincipal"))? },
    };
    let action = parse_clause(obj, "Action", "NotAction", &at, check_action)?;
    let resource = parse_clause(obj, "Resource", "NotResource", &at, check_resource)?;
    let conditions = match obj.get("Condition") {
        None => Vec::new(),
        Some(v) => parse_conditions(v, &field_at("Condition"))?,
    };
    Ok(Statement { sid, effect, principal, action, resource, conditions })
}

fn string_list(value: &Value, at: &str) -> Result<Vec<String>, PolicyError> {
    match value {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .map(|item| match item {
                Value::String(s) => Ok(s.clone()),
                other => Err(PolicyError::invalid(at, format!("expected a string, found {other}"))),
            })
            .collect(),
        Value::Array(_) => Err(PolicyError::invalid(at, "must not be an empty array")),
        other => Err(PolicyError::invalid(at, format!("expected a string or an array of strings, found {other}"))),
    }
}

fn parse_principal(value: &Value, at: &str) -> Result<Vec<PrincipalEntry>, PolicyError> {
    match value {
        Value::String(s) if s == "*" => Ok(vec![PrincipalEntry::Wildcard]),
        Value::String(s) => {
            Err(PolicyError::invalid(at, format!("a string principal must be `*`, found `{s}` (use {{\"AWS\": ...}})")))
        }
        Value::Object(map) if !map.is_empty() => {
            let mut entries = Vec::new();
            for (kind, v) in map {
                let make: fn(String) -> PrincipalEntry = match kind.as_str() {
                    "AWS" => PrincipalEntry::Aws,
                    "Service" => PrincipalEntry::Service,
                    "Federated" => PrincipalEntry::Federated,
                    "CanonicalUser" => PrincipalEntry::CanonicalUser,
                    other => {
                        return Err(PolicyError::invalid(
                            at,
                            format!("unknown principal type `{other}` (expected `AWS`, `Service`, `Federated` or `CanonicalUser`)"),
                        ))
                    }
                };
                let sub_at = format!("{at}.{kind}");
                for s in string_list(v, &sub_at)? {
                    if s.is_empty() {
                        return Err(PolicyError::invalid(sub_at, "empty principal"));
                    }
                    if kind == "AWS" && s != "*" && !is_account_id(&s) && !s.starts_with("arn:") {
                        return Err(PolicyError::invalid(
                            sub_at,
                            format!("invalid AWS principal `{s}`: expected `*`, a 12-digit account ID or an ARN"),
                        ));
                    }
                    entries.push(make(s));
                }
            }
            Ok(entries)
        }
        other => {
            Err(PolicyError::invalid(at, format!("expected `*` or an object such as {{\"AWS\": ...}}, found {other}")))
        }
    }
}

/// True for a 12-digit AWS account ID.
pub(crate) use estate_types::is_account_id;

fn check_action(s: &str) -> Result<(), String> {
    if s == "*" {
        return Ok(());
    }
    match s.split_once(':') {
        Some((service, name)) if !service.is_empty() && !name.is_empty() => Ok(()),
        _ => Err(format!("invalid action `{s}`: expected `service:Action` or `*`")),
    }
}

fn check_resource(s: &str) -> Result<(), String> {
    if s == "*" || s.starts_with("arn:") {
        Ok(())
    } else {
        Err(format!("invalid resource `{s}`: expected an ARN or `*`"))
    }
}

fn parse_clause(
    obj: &Map<String, Value>,
    positive: &str,
    negative: &str,
    at: &str,
    check: fn(&str) -> Result<(), String>,
) -> Result<Clause, PolicyError> {
    let (negated, name, value) = match (obj.get(positive), obj.get(negative)) {
        (Some(_), Some(_)) => {
            return Err(PolicyError::invalid(at, format!("both `{positive}` and `{negative}` given")))
        }
        (None, None) => return Err(PolicyError::invalid(at, format!("missing field `{positive}` or `{negative}`"))),
        (Some(v), None) => (false, positive, v),
        (None, Some(v)) => (true, negative, v),
    };
    let field_at = format!("{at}, field `{name}`");
    let values = string_list(value, &field_at)?;
    for v in &values {
        check(v).map_err(|m| PolicyError::invalid(field_at.clone(), m))?;
    }
    Ok(Clause { negated, values })
}

fn parse_conditions(value: &Value, at: &str) -> Result<Vec<Condition>, PolicyError> {
    let Value::Object(ops) = value else {
        return Err(PolicyError::invalid(at, "must be an object of condition operators"));
    };
    let mut out = Vec::new();
    for (op_name, block) in ops {
        let op = parse_operator(op_name)
            .ok_or_else(|| PolicyError::invalid(at, format!("unknown condition operator `{op_name}`")))?;
        let op_at = format!("{at}.{op_name}");
        let Value::Object(keys) = block else {
            return Err(PolicyError::invalid(op_at, "must be an object of condition keys"));
        };
        if keys.is_empty() {
            return Err(PolicyError::invalid(op_at, "must name at least one condition key"));
        }
        for (key, vals) in keys {
            let key_at = format!("{op_at}.{key}");
            if key.is_empty() {
                return Err(PolicyError::invalid(op_at, "empty condition key"));
            }
            let values = condition_values(vals, &key_at)?;
            if op.base == BaseOp::Null || op.base == BaseOp::Bool {
                for v in &values {
                    if !v.eq_ignore_ascii_case("true") && !v.eq_ignore_ascii_case("false") {
                        return Err(PolicyError::invalid(key_at, format!("expected `true` or `false`, found `{v}`")));
                    }
                }
            }
            if op.base == BaseOp::IpAddress {
                for v in &values {
                    if crate::values::parse_cidr(v).is_none() {
                        return Err(PolicyError::invalid(key_at, format!("invalid IP address or CIDR `{v}`")));
                    }
                }
            }
            out.push(Condition { op, key: key.to_ascii_lowercase(), values });
        }
    }
    Ok(out)
}

fn condition_values(value: &Value, at: &str) -> Result<Vec<String>, PolicyError> {
    fn scalar(v: &Value, at: &str) -> Result<String, PolicyError> {
        match v {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            other => Err(PolicyError::invalid(
                at,
                format!("condition values must be strings, numbers or booleans, found {other}"),
            )),
        }
    }
    match value {
        Value::Array(items) => items.iter().map(|v| scalar(v, at)).collect(),
        v => Ok(vec![scalar(v, at)?]),
    }
}

/// Parses an operator name such as `ForAllValues:StringNotLikeIfExists` (case-insensitive).
pub(crate) fn parse_operator(name: &str) -> Option<Operator> {
    let lower = name.to_ascii_lowercase();
    let (qualifier, rest) = if let Some(r) = lower.strip_prefix("foranyvalue:") {
        (SetQualifier::ForAnyValue, r)
    } else if let Some(r) = lower.strip_prefix("forallvalues:") {
        (SetQualifier::ForAllValues, r)
    } else {
        (SetQualifier::None, lower.as_str())
    };
    let (rest, if_exists) = match rest.strip_suffix("ifexists") {
        Some(r) => (r, true),
        None => (rest, false),
    };
    use BaseOp::*;
    let (base, negated) = match rest {
        "stringequals" => (StringEquals, false),
        "stringnotequals" => (StringEquals, true),
        "stringequalsignorecase" => (StringEqualsIgnoreCase, false),
        "stringnotequalsignorecase" => (StringEqualsIgnoreCase, true),
        "stringlike" => (StringLike, false),
        "stringnotlike" => (StringLike, true),
        "arnequals" | "arnlike" => (ArnLike, false),
        "arnnotequals" | "arnnotlike" => (ArnLike, true),
        "numericequals" => (NumericEquals, false),
        "numericnotequals" => (NumericEquals, true),
        "numericlessthan" => (NumericLessThan, false),
        "numericlessthanequals" => (NumericLessThanEquals, false),
        "numericgreaterthan" => (NumericGreaterThan, false),
        "numericgreaterthanequals" => (NumericGreaterThanEquals, false),
        "dateequals" => (DateEquals, false),
        "datenotequals" => (DateEquals, true),
        "datelessthan" => (DateLessThan, false),
        "datelessthanequals" => (DateLessThanEquals, false),
        "dategreaterthan" => (DateGreaterThan, false),
        "dategreaterthanequals" => (DateGreaterThanEquals, false),
        "bool" => (Bool, false),
        "binaryequals" => (BinaryEquals, false),
        "ipaddress" => (IpAddress, false),
        "notipaddress" => (IpAddress, true),
        "null" if !if_exists && qualifier == SetQualifier::None => (Null, false),
        _ => return None,
    };
    Some(Operator { base, negated, if_exists, qualifier })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_all_principal_forms_and_single_values() {
        let p = parse_policy(
            r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":{"AWS":["*","111111111111","arn:aws:iam::cloudfront:user/CloudFront Origin Access Identity E1"],"Service":"cloudfront.amazonaws.com","CanonicalUser":"abc","Federated":"cognito-identity.amazonaws.com"},"Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*","Condition":{"ForAnyValue:StringLikeIfExists":{"AWS:SourceVpce":["vpce-1",2,true]}}}}"#,
        )
        .unwrap();
        let s = &p.statements[0];
        assert_eq!(s.principal.entries.len(), 6);
        assert_eq!(s.conditions[0].key, "aws:sourcevpce");
        assert_eq!(s.conditions[0].values, vec!["vpce-1", "2", "true"]);
        assert!(s.conditions[0].op.if_exists);
        assert_eq!(s.conditions[0].op.qualifier, SetQualifier::ForAnyValue);
    }

    #[test]
    fn errors_say_where_and_what() {
        let e = parse_policy(
            r#"{"Statement":[{"Sid":"A","Effect":"Permit","Principal":"*","Action":"s3:*","Resource":"*"}]}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("statement 0 (`A`)") && e.contains("`Effect`"), "{e}");
        let e = parse_policy(r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:*","Resource":"*","Condition":{"StringEqualz":{"a":"b"}}}]}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown condition operator `StringEqualz`"), "{e}");
        let e = parse_policy("{").unwrap_err().to_string();
        assert!(e.contains("invalid JSON"), "{e}");
        let e = parse_policy(r#"{"Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing field `Principal`"), "{e}");
    }

    #[test]
    fn operator_names() {
        let op = parse_operator("ForAllValues:StringNotEqualsIgnoreCaseIfExists").unwrap();
        assert_eq!(op.base, BaseOp::StringEqualsIgnoreCase);
        assert!(op.negated && op.if_exists);
        assert!(parse_operator("NullIfExists").is_none());
        assert_eq!(parse_operator("NotIpAddress").unwrap().base, BaseOp::IpAddress);
    }
}
