//! The decoder: turns a Z3 model into a concrete request (the witness of a "yes").

use std::collections::BTreeMap;

use z3::Model;

use crate::actions::{self, ResourceType};
use crate::analysis::OAI_ARN_PREFIX;
use crate::ast::ValueSort;
use crate::compiler::KeyShape;
use crate::eval::{Principal, Request};
use crate::smt::Encoder;
use crate::term::{Kind, StrVar};
use crate::values::format_ip;

/// Reads the request the model describes.
pub(crate) fn decode(model: &Model, enc: &Encoder<'_>, bucket: &str, keys: &BTreeMap<String, KeyShape>) -> Request {
    let int = |x: &z3::ast::Int| model.eval(x, true).and_then(|v| v.as_i64());
    let string = |v: &StrVar| -> Option<String> {
        let value =
            enc.strs.get(v).and_then(|s| model.eval(s, true)).and_then(|s| s.as_string()).map(|s| unescape(&s))?;
        Some(repair(enc, keys, v, value))
    };
    let kind = enc.kind.as_ref().and_then(int).unwrap_or(Kind::Anonymous as i64);
    let principal = match kind {
        k if k == Kind::Account as i64 => {
            let account = string(&StrVar::Account).unwrap_or_else(|| "000000000000".to_owned());
            let arn = string(&StrVar::Arn).unwrap_or_else(|| {
                let tail = string(&StrVar::ArnTail).unwrap_or_else(|| "root".to_owned());
                format!("arn:aws:iam::{account}:{tail}")
            });
            Principal::Account { account, arn }
        }
        k if k == Kind::Service as i64 => {
            Principal::Service { name: string(&StrVar::Service).unwrap_or_else(|| "example.amazonaws.com".to_owned()) }
        }
        k if k == Kind::Oai as i64 => {
            // An OAI has an ARN and a canonical user ID, and a policy may allow it by either:
            // the witness names both (the canonical ID only when the policy refers to one).
            Principal::CloudFrontOai {
                arn: format!(
                    "{OAI_ARN_PREFIX}{}",
                    string(&StrVar::OaiId).unwrap_or_else(|| fresh(&StrVar::OaiId, &Default::default()))
                ),
                canonical_user: if enc.strs.contains_key(&StrVar::Canonical) {
                    string(&StrVar::Canonical).unwrap_or_default()
                } else {
                    String::new()
                },
            }
        }
        k if k == Kind::Federated as i64 => Principal::Federated {
            provider: string(&StrVar::Federated).unwrap_or_else(|| "cognito-identity.amazonaws.com".to_owned()),
        },
        _ => Principal::Anonymous,
    };
    let action_index = enc
        .action
        .as_ref()
        .and_then(int)
        .and_then(|i| usize::try_from(i).ok())
        .filter(|&i| i < actions::count())
        .unwrap_or_else(|| actions::index_of("s3:GetObject").unwrap_or(0));
    let bucket_arn = format!("arn:aws:s3:::{bucket}");
    let resource = match actions::resource_type(action_index) {
        ResourceType::Bucket => bucket_arn.clone(),
        ResourceType::Object => {
            let key = string(&StrVar::Key).unwrap_or_else(|| fresh(&StrVar::Key, &Default::default()));
            format!("{bucket_arn}/{key}")
        }
    };
    let mut context = BTreeMap::new();
    for (key, shape) in keys {
        let present = enc.present.get(key).and_then(|p| model.eval(p, true)).and_then(|b| b.as_bool()).unwrap_or(false);
        if !present {
            continue;
        }
        let count = if shape.multi {
            enc.count.get(key).and_then(int).map_or(1, |c| usize::try_from(c).unwrap_or(0).min(shape.slots))
        } else {
            1
        };
        let own = match (key.as_str(), &principal) {
            ("aws:principalaccount", Principal::Account { account, .. }) => Some(account.clone()),
            ("aws:principalarn", Principal::Account { arn, .. }) => Some(arn.clone()),
            _ => None,
        };
        if let Some(v) = own {
            context.insert(key.clone(), vec![v]);
            continue;
        }
        let values = (0..count)
            .map(|i| {
                let id = (key.clone(), i);
                if let Some((v6, bits)) = enc.ips.get(&id).filter(|_| shape.sorts.contains(&ValueSort::Ip)) {
                    let v6 = model.eval(v6, true).and_then(|b| b.as_bool()).unwrap_or(false);
                    let hi = model.eval(&bits.extract(127, 64), true).and_then(|b| b.as_u64()).unwrap_or(0);
                    let lo = model.eval(&bits.extract(63, 0), true).and_then(|b| b.as_u64()).unwrap_or(0);
                    return format_ip((v6, (u128::from(hi) << 64) | u128::from(lo)));
                }
                if let Some(x) = enc.ints.get(&id).filter(|_| shape.sorts.contains(&ValueSort::Int)) {
                    return int(x).unwrap_or(0).to_string();
                }
                string(&StrVar::Slot(key.clone(), i)).unwrap_or_else(|| default_value(shape))
            })
            .collect();
        context.insert(key.clone(), values);
    }
    Request { principal, action: actions::name(action_index).to_owned(), resource, context }
}

/// Keeps a model value when its variable meets wildcard patterns (its shape was asserted) or
/// when it equals a literal; otherwise the value only differs from every literal, and any
/// well-shaped value that also differs from them makes every atom keep its truth value.
fn repair(enc: &Encoder<'_>, keys: &BTreeMap<String, KeyShape>, v: &StrVar, value: String) -> String {
    let empty = Default::default();
    let literals = enc.literals.get(v).unwrap_or(&empty);
    let bool_only = matches!(v, StrVar::Slot(k, _) if keys.get(k).is_some_and(|s| s.bool_only));
    if enc.pattern_vars.contains(v) || literals.contains(&value) || (!bool_only && well_shaped(v, &value)) {
        value
    } else {
        fresh(v, literals)
    }
}

pub(crate) fn well_shaped(v: &StrVar, value: &str) -> bool {
    let name_ok = |s: &str| {
        !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || crate::smt::IAM_NAME_PUNCTUATION.contains(c))
    };
    match v {
        StrVar::Account => crate::parser::is_account_id(value),
        StrVar::ArnTail => {
            value == "root"
                || value.strip_prefix("role/").is_some_and(name_ok)
                || value.strip_prefix("user/").is_some_and(name_ok)
        }
        StrVar::OaiId => !value.is_empty() && value.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()),
        StrVar::Service => value.strip_suffix(".amazonaws.com").is_some_and(|n| {
            !n.is_empty() && n.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        }),
        StrVar::Canonical => {
            !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        }
        StrVar::Federated => false,
        StrVar::Key => !value.is_empty() && value.bytes().all(|b| (b' '..=b'~').contains(&b)),
        _ => true,
    }
}

/// A well-shaped value different from every literal.
fn fresh(v: &StrVar, literals: &std::collections::BTreeSet<String>) -> String {
    (0..)
        .map(|i: u32| match v {
            StrVar::Account => format!("{:012}", 999_999_999_999u64 - u64::from(i)),
            StrVar::ArnTail => {
                if i == 0 {
                    "root".to_owned()
                } else {
                    format!("role/estate-witness-{i}")
                }
            }
            StrVar::OaiId => format!("EESTATE{i}"),
            StrVar::Service => format!("estate-witness-{i}.amazonaws.com"),
            StrVar::Canonical => format!("{i:064x}"),
            StrVar::Federated => format!("arn:aws:iam::999999999999:saml-provider/estate-witness-{i}"),
            StrVar::Key => format!("estate-witness-key-{i}"),
            _ => format!("estate-witness-{i}"),
        })
        .find(|c| !literals.contains(c))
        .unwrap_or_default()
}

fn default_value(shape: &crate::compiler::KeyShape) -> String {
    if shape.sorts.contains(&ValueSort::Ip) {
        "192.0.2.1".to_owned()
    } else if shape.sorts.contains(&ValueSort::Int) {
        "0".to_owned()
    } else {
        "x".to_owned()
    }
}

/// Undoes Z3's escaping of string constants (`\u{..}`, `\x..`, `\\`).
pub(crate) fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.peek() {
            Some('u') => {
                chars.next();
                let mut hex = String::new();
                if chars.peek() == Some(&'{') {
                    chars.next();
                    for h in chars.by_ref() {
                        if h == '}' {
                            break;
                        }
                        hex.push(h);
                    }
                } else {
                    for _ in 0..4 {
                        if let Some(h) = chars.next() {
                            hex.push(h);
                        }
                    }
                }
                match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                    Some(ch) => out.push(ch),
                    None => {
                        out.push_str("\\u");
                        out.push_str(&hex);
                    }
                }
            }
            Some('x') => {
                chars.next();
                let hex: String = chars.by_ref().take(2).collect();
                match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                    Some(ch) => out.push(ch),
                    None => {
                        out.push_str("\\x");
                        out.push_str(&hex);
                    }
                }
            }
            Some('\\') => {
                chars.next();
                out.push('\\');
            }
            _ => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::unescape;

    #[test]
    fn unescapes() {
        assert_eq!(unescape(r"a\u{41}b"), "aAb");
        assert_eq!(unescape(r"\x41"), "A");
        assert_eq!(unescape("plain"), "plain");
    }
}
