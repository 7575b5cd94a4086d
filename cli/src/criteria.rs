//! Criteria as people type them (`--where FIELD=V`) and as Macie writes them (JSON), turned
//! into the protocol's criteria.

use std::collections::{BTreeMap, HashMap};

use anyhow::{bail, Context};

use estate_common::pb;

/// `--where` items: FIELD=V (eq; repeated for OR), FIELD!=V, FIELD>N, FIELD>=N, FIELD<N,
/// FIELD<=N, FIELD^=PREFIX.
pub fn parse_where(items: &[String]) -> anyhow::Result<BTreeMap<String, pb::BucketCriterion>> {
    let mut out: BTreeMap<String, pb::BucketCriterion> = BTreeMap::new();
    for item in items {
        // Longest operators first, so that `>=` is not read as `>`.
        let ops = ["!=", ">=", "<=", "^=", "=", ">", "<"];
        let Some((at, op)) = ops
            .iter()
            .filter_map(|op| item.find(op).map(|at| (at, *op)))
            .min_by_key(|(at, op)| (*at, -(op.len() as i64)))
        else {
            bail!("criterion `{item}` has no operator (=, !=, >, >=, <, <=, ^=)");
        };
        let (field, value) = (item[..at].trim(), item[at + op.len()..].trim());
        if field.is_empty() {
            bail!("criterion `{item}` names no field");
        }
        let c = out.entry(field.to_owned()).or_default();
        let number = || value.parse::<i64>().with_context(|| format!("`{value}` in `{item}` is not an integer"));
        match op {
            "=" => c.eq.push(value.to_owned()),
            "!=" => c.neq.push(value.to_owned()),
            "^=" => c.prefix = Some(value.to_owned()),
            ">" => c.gt = Some(number()?),
            ">=" => c.gte = Some(number()?),
            "<" => c.lt = Some(number()?),
            "<=" => c.lte = Some(number()?),
            _ => unreachable!("operators are listed above"),
        }
    }
    Ok(out)
}

/// Finding criteria as people type them: the bucket operators but `^=`, and FIELD==V for
/// Macie's `eqExactMatch` (every value listed must be among the finding's, e.g. tags).
pub fn parse_finding_where(items: &[String]) -> anyhow::Result<HashMap<String, pb::FindingCriterion>> {
    let mut exact: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut rest = Vec::new();
    for item in items {
        match item.split_once("==") {
            Some((field, value)) if !field.is_empty() && !field.ends_with('!') => {
                exact.entry(field.trim().to_owned()).or_default().push(value.trim().to_owned());
            }
            _ => rest.push(item.clone()),
        }
    }
    let mut out: HashMap<String, pb::FindingCriterion> = HashMap::new();
    for (field, c) in parse_where(&rest)? {
        if c.prefix.is_some() {
            bail!("`{field}^=`: prefixes apply to bucket properties only; findings take =, ==, !=, >, >=, <, <=");
        }
        let criterion = pb::FindingCriterion {
            eq: c.eq,
            neq: c.neq,
            gt: c.gt,
            gte: c.gte,
            lt: c.lt,
            lte: c.lte,
            eq_exact_match: vec![],
        };
        out.insert(field, criterion);
    }
    for (field, values) in exact {
        out.entry(field).or_default().eq_exact_match = values;
    }
    Ok(out)
}

/// One criterion as Macie writes it in JSON, with every operator either kind of criteria
/// takes; each parser refuses the ones its kind does not.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct JsonCriterion {
    #[serde(default)]
    eq: Vec<String>,
    #[serde(default)]
    eq_exact_match: Vec<String>,
    #[serde(default)]
    neq: Vec<String>,
    gt: Option<i64>,
    gte: Option<i64>,
    lt: Option<i64>,
    lte: Option<i64>,
    prefix: Option<String>,
}

fn parse_json_map(text: &str, what: &str) -> anyhow::Result<BTreeMap<String, JsonCriterion>> {
    let value: serde_json::Value = serde_json::from_str(text).context("`--criteria-json` is not JSON")?;
    // Macie's `findingCriteria` wraps the map in `criterion`; the bare map is taken too.
    let map = match value.get("criterion") {
        Some(inner) => inner.clone(),
        None => value,
    };
    serde_json::from_value(map).with_context(|| format!("`--criteria-json` is not {what}"))
}

/// Macie's `findingCriteria` JSON (`{"criterion": {"type": {"eq": [...]}}}`), or the bare
/// criterion map.
pub fn parse_finding_criteria_json(text: &str) -> anyhow::Result<HashMap<String, pb::FindingCriterion>> {
    parse_json_map(text, "Macie's finding criteria")?
        .into_iter()
        .map(|(k, c)| {
            if c.prefix.is_some() {
                bail!("`{k}`: `prefix` applies to bucket properties only");
            }
            let criterion = pb::FindingCriterion {
                eq: c.eq,
                eq_exact_match: c.eq_exact_match,
                neq: c.neq,
                gt: c.gt,
                gte: c.gte,
                lt: c.lt,
                lte: c.lte,
            };
            Ok((k, criterion))
        })
        .collect()
}

/// Finding criteria in Macie's JSON shape (`findingCriteria`).
pub fn finding_criteria_json(criteria: &HashMap<String, pb::FindingCriterion>) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for (field, c) in criteria.iter().collect::<BTreeMap<_, _>>() {
        let mut m = serde_json::Map::new();
        for (op, values) in [("eq", &c.eq), ("eqExactMatch", &c.eq_exact_match), ("neq", &c.neq)] {
            if !values.is_empty() {
                m.insert(op.to_owned(), serde_json::json!(values));
            }
        }
        for (op, value) in [("gt", c.gt), ("gte", c.gte), ("lt", c.lt), ("lte", c.lte)] {
            if let Some(v) = value {
                m.insert(op.to_owned(), serde_json::json!(v));
            }
        }
        out.insert(field.clone(), serde_json::Value::Object(m));
    }
    serde_json::json!({"criterion": out})
}

/// Macie's JSON criteria map, e.g. `{"sharedAccess":{"eq":["EXTERNAL"]}}`.
pub fn parse_criteria_json(text: &str) -> anyhow::Result<BTreeMap<String, pb::BucketCriterion>> {
    parse_json_map(text, "a map of Macie criteria")?
        .into_iter()
        .map(|(k, c)| {
            if !c.eq_exact_match.is_empty() {
                bail!("`{k}`: `eqExactMatch` applies to finding tags only");
            }
            let criterion = pb::BucketCriterion {
                eq: c.eq,
                neq: c.neq,
                gt: c.gt,
                gte: c.gte,
                lt: c.lt,
                lte: c.lte,
                prefix: c.prefix,
            };
            Ok((k, criterion))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn where_clauses() {
        let c = parse_where(&[
            "sizeInBytes>=10".into(),
            "bucketName^=logs-".into(),
            "sharedAccess=EXTERNAL".into(),
            "sharedAccess=INTERNAL".into(),
            "accountId!=1".into(),
        ])
        .unwrap();
        assert_eq!(c["sizeInBytes"].gte, Some(10));
        assert_eq!(c["bucketName"].prefix.as_deref(), Some("logs-"));
        assert_eq!(c["sharedAccess"].eq, vec!["EXTERNAL", "INTERNAL"]);
        assert_eq!(c["accountId"].neq, vec!["1"]);
        assert!(parse_where(&["nonsense".into()]).is_err());
        assert!(parse_where(&["sizeInBytes>ten".into()]).is_err());
    }

    #[test]
    fn macie_json_criteria() {
        let c = parse_criteria_json(r#"{"sharedAccess":{"eq":["EXTERNAL"]},"objectCount":{"gt":5}}"#).unwrap();
        assert_eq!(c["sharedAccess"].eq, vec!["EXTERNAL"]);
        assert_eq!(c["objectCount"].gt, Some(5));
        assert!(parse_criteria_json(r#"{"x":{"like":"y"}}"#).is_err(), "unknown operators are refused");
    }
}
