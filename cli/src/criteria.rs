//! Criteria as people type them (`--where FIELD=V`) and as Macie writes them (JSON), turned
//! into the protocol's criteria.

use std::collections::BTreeMap;

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

/// Macie's JSON criteria map, e.g. `{"sharedAccess":{"eq":["EXTERNAL"]}}`.
pub fn parse_criteria_json(text: &str) -> anyhow::Result<BTreeMap<String, pb::BucketCriterion>> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Criterion {
        #[serde(default)]
        eq: Vec<String>,
        #[serde(default)]
        neq: Vec<String>,
        gt: Option<i64>,
        gte: Option<i64>,
        lt: Option<i64>,
        lte: Option<i64>,
        prefix: Option<String>,
    }
    let map: BTreeMap<String, Criterion> =
        serde_json::from_str(text).context("`--criteria-json` is not a map of Macie criteria")?;
    Ok(map
        .into_iter()
        .map(|(k, c)| {
            let criterion = pb::BucketCriterion {
                eq: c.eq,
                neq: c.neq,
                gt: c.gt,
                gte: c.gte,
                lt: c.lt,
                lte: c.lte,
                prefix: c.prefix,
            };
            (k, criterion)
        })
        .collect())
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
