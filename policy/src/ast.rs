//! The typed abstract syntax of an IAM bucket policy, as produced by the parser.

use serde::Serialize;

/// A parsed policy document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Policy {
    /// `Version`, when given.
    pub version: Option<String>,
    /// `Id`, when given.
    pub id: Option<String>,
    /// The statements, in document order.
    pub statements: Vec<Statement>,
}

impl Policy {
    /// Policy variables (`${...}`) are only interpreted in the 2012-10-17 language version.
    pub fn variables_enabled(&self) -> bool {
        self.version.as_deref() == Some("2012-10-17")
    }
}

/// `Allow` or `Deny`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Effect {
    /// Grants the matching requests.
    Allow,
    /// Refuses the matching requests, whatever any Allow says.
    Deny,
}

/// One statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Statement {
    /// `Sid`, when given.
    pub sid: Option<String>,
    /// `Effect`.
    pub effect: Effect,
    /// `Principal` (negated = false) or `NotPrincipal` (negated = true).
    pub principal: PrincipalClause,
    /// `Action` or `NotAction`; patterns as written.
    pub action: Clause,
    /// `Resource` or `NotResource`; patterns as written.
    pub resource: Clause,
    /// The conditions, one per (operator, key) pair; all must hold.
    pub conditions: Vec<Condition>,
}

/// A list of patterns, possibly negated (`NotAction`, `NotResource`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Clause {
    /// True for the `Not...` form.
    pub negated: bool,
    /// The patterns (an OR).
    pub values: Vec<String>,
}

/// `Principal` or `NotPrincipal`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PrincipalClause {
    /// True for `NotPrincipal`.
    pub negated: bool,
    /// The principals named (an OR).
    pub entries: Vec<PrincipalEntry>,
}

/// One principal named by a statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "kind", content = "value")]
pub enum PrincipalEntry {
    /// `"Principal": "*"`.
    Wildcard,
    /// `{"AWS": ...}`: `*`, an account ID or an ARN (pattern).
    Aws(String),
    /// `{"Service": ...}`.
    Service(String),
    /// `{"Federated": ...}`.
    Federated(String),
    /// `{"CanonicalUser": ...}` (a CloudFront OAI's canonical ID in practice).
    CanonicalUser(String),
}

/// The base comparison of a condition operator, without negation or qualifiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum BaseOp {
    /// StringEquals / StringNotEquals.
    StringEquals,
    /// StringEqualsIgnoreCase / StringNotEqualsIgnoreCase.
    StringEqualsIgnoreCase,
    /// StringLike / StringNotLike.
    StringLike,
    /// ArnEquals / ArnLike / ArnNotEquals / ArnNotLike (all take wildcards).
    ArnLike,
    /// NumericEquals / NumericNotEquals.
    NumericEquals,
    /// NumericLessThan.
    NumericLessThan,
    /// NumericLessThanEquals.
    NumericLessThanEquals,
    /// NumericGreaterThan.
    NumericGreaterThan,
    /// NumericGreaterThanEquals.
    NumericGreaterThanEquals,
    /// DateEquals / DateNotEquals.
    DateEquals,
    /// DateLessThan.
    DateLessThan,
    /// DateLessThanEquals.
    DateLessThanEquals,
    /// DateGreaterThan.
    DateGreaterThan,
    /// DateGreaterThanEquals.
    DateGreaterThanEquals,
    /// Bool.
    Bool,
    /// BinaryEquals.
    BinaryEquals,
    /// IpAddress / NotIpAddress.
    IpAddress,
    /// Null.
    Null,
}

impl BaseOp {
    /// The value sort the operator compares.
    pub fn sort(self) -> ValueSort {
        use BaseOp::*;
        match self {
            NumericEquals
            | NumericLessThan
            | NumericLessThanEquals
            | NumericGreaterThan
            | NumericGreaterThanEquals
            | DateEquals
            | DateLessThan
            | DateLessThanEquals
            | DateGreaterThan
            | DateGreaterThanEquals => ValueSort::Int,
            IpAddress => ValueSort::Ip,
            _ => ValueSort::Str,
        }
    }
}

/// How request values of a condition key are represented for an operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum ValueSort {
    /// Strings (String*, Arn*, Bool, BinaryEquals).
    Str,
    /// Integers (Numeric*, Date* as epoch seconds).
    Int,
    /// IP addresses (IpAddress, NotIpAddress).
    Ip,
}

/// `ForAnyValue:` / `ForAllValues:` or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum SetQualifier {
    /// A plain operator.
    None,
    /// `ForAnyValue:`.
    ForAnyValue,
    /// `ForAllValues:`.
    ForAllValues,
}

/// A full condition operator as written, e.g. `ForAnyValue:StringNotLikeIfExists`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Operator {
    /// The base comparison.
    pub base: BaseOp,
    /// Negated form (`StringNotEquals`, `NotIpAddress`, ...).
    pub negated: bool,
    /// The `IfExists` suffix.
    pub if_exists: bool,
    /// The set qualifier.
    pub qualifier: SetQualifier,
}

/// One (operator, key, values) triple of a `Condition` block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// The operator.
    pub op: Operator,
    /// The condition key, lowercased.
    pub key: String,
    /// The values (an OR), as written (numbers and booleans turned into strings).
    pub values: Vec<String>,
}
