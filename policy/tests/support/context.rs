//! The corpus's organization context: each case's `context`, with the defaults of
//! `tests/corpus/README.md`. Shared by the corpus test and the benchmark.

use estate_policy::OrgContext;
use serde_json::Value;

pub fn context(case: &Value) -> OrgContext {
    let ctx = case.get("context").cloned().unwrap_or(Value::Null);
    let s = |k: &str, d: &str| ctx.get(k).and_then(Value::as_str).unwrap_or(d).to_owned();
    let list = |k: &str, d: &[&str]| -> Vec<String> {
        match ctx.get(k).and_then(Value::as_array) {
            Some(a) => a.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
            None => d.iter().map(|x| x.to_string()).collect(),
        }
    };
    OrgContext {
        owner_account: s("owner", "111111111111").parse().expect("a corpus owner is an account ID"),
        organization_id: match ctx.get("organizationId") {
            Some(Value::Null) => None,
            Some(v) => v.as_str().map(str::to_owned),
            None => Some("o-exampleorg1".to_owned()),
        },
        member_accounts: std::sync::Arc::new(
            list("organizationAccounts", &["111111111111", "222222222222", "333333333333"])
                .into_iter()
                .map(|a| a.parse().expect("a corpus organization account is an account ID"))
                .collect(),
        ),
        organization_paths: list("organizationPaths", &["o-exampleorg1/r-ab12/ou-ab12-11111111/"]),
    }
}
