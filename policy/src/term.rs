//! The term language the compiler targets: boolean structure over the request variables
//! (principal, action, resource, condition-key slots), with checked constructors that fold
//! constants so that trivial questions never reach the solver.

use std::collections::BTreeSet;

use crate::values::{Cidr, Template};

/// The principal kinds of the finite principal model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// Unauthenticated caller.
    Anonymous = 0,
    /// An IAM principal of an account.
    Account = 1,
    /// An AWS service principal.
    Service = 2,
    /// A CloudFront origin access identity.
    Oai = 3,
    /// A federated provider.
    Federated = 4,
}

/// A string-sorted request variable.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StrVar {
    /// The principal's account ID (kind Account).
    Account,
    /// An account principal's ARN (only built for patterns that cannot be split).
    Arn,
    /// A CloudFront OAI's ID, the end of its ARN (kind Oai).
    OaiId,
    /// The part of an account principal's ARN after `arn:aws:iam::ACCOUNT:`.
    ArnTail,
    /// The service name (kind Service).
    Service,
    /// The canonical user ID (kind Oai).
    Canonical,
    /// The federated provider (kind Federated).
    Federated,
    /// The resource ARN (only built for patterns with policy variables).
    Resource,
    /// The object key of an object-level request (the resource is `arn:aws:s3:::BUCKET/KEY`).
    Key,
    /// Value slot `n` of a condition key.
    Slot(String, usize),
}

/// A built-in regular language a string variable can be constrained to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Shape {
    /// 12 digits.
    AccountId,
    /// `root`, `role/...` or `user/...`.
    ArnTail,
    /// An OAI ID: `[A-Z0-9]+`.
    OaiId,
    /// `[a-z0-9-.]+.amazonaws.com`.
    ServiceName,
    /// Lowercase hex digits.
    CanonicalId,
    /// A web identity provider or a SAML/OIDC provider ARN.
    Federated,
    /// A non-empty object key.
    ObjectKey,
}

/// A piece of a string built from literals and variables.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Part {
    /// Literal text.
    Lit(String),
    /// A string variable.
    Var(StrVar),
}

/// Integer comparison against a constant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cmp {
    /// `=`.
    Eq,
    /// `<`.
    Lt,
    /// `<=`.
    Le,
    /// `>`.
    Gt,
    /// `>=`.
    Ge,
}

/// A boolean term over the request variables.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Term {
    /// A constant.
    Const(bool),
    /// Negation.
    Not(Box<Term>),
    /// Conjunction (at least two operands after simplification).
    And(Vec<Term>),
    /// Disjunction (at least two operands after simplification).
    Or(Vec<Term>),
    /// The principal is of this kind.
    KindIs(Kind),
    /// The action index lies in one of these inclusive ranges.
    ActionIn(Vec<(usize, usize)>),
    /// A string variable matches a variable-free wildcard template.
    Match {
        /// The variable.
        var: StrVar,
        /// The pattern (literals, `*`, `?`).
        pat: Template,
        /// Case-insensitive.
        ignore_case: bool,
    },
    /// A string variable equals (or, with `prefix`, starts with) a concatenation.
    Concat {
        /// The variable.
        var: StrVar,
        /// The pieces.
        parts: Vec<Part>,
        /// Only a prefix is required (a trailing `*`).
        prefix: bool,
    },
    /// A string variable matches a built-in shape.
    Shaped(StrVar, Shape),
    /// A condition key is present in the request.
    Present(String),
    /// A multi-valued key has more than `n` values.
    CountGt(String, usize),
    /// A multi-valued key has exactly `n` values.
    CountEq(String, usize),
    /// IP slot `slot` of `key` lies in the block.
    IpIn {
        /// The key.
        key: String,
        /// The slot.
        slot: usize,
        /// The block.
        cidr: Cidr,
    },
    /// Integer slot `slot` of `key` compares with a constant.
    IntCmp {
        /// The key.
        key: String,
        /// The slot.
        slot: usize,
        /// The comparison.
        cmp: Cmp,
        /// The constant.
        value: i64,
    },
    /// A construct the encoding does not model: an unconstrained boolean (sound for "no"
    /// answers; a "yes" is re-checked by the evaluator).
    Opaque(String),
}

/// The true term.
pub const TRUE: Term = Term::Const(true);
/// The false term.
pub const FALSE: Term = Term::Const(false);

fn action_set(ranges: &[(usize, usize)]) -> BTreeSet<usize> {
    ranges.iter().flat_map(|&(lo, hi)| lo..=hi).collect()
}

/// Conjunction with constant folding, flattening and action-set intersection.
pub fn and(items: impl IntoIterator<Item = Term>) -> Term {
    junction(items, true)
}

/// Disjunction with constant folding, flattening and action-set union.
pub fn or(items: impl IntoIterator<Item = Term>) -> Term {
    junction(items, false)
}

/// A conjunction (`conjunction`) or a disjunction: the unit constant drops out, the absorbing
/// one decides, nested junctions of the same kind flatten, and the action sets combine into
/// one (intersected or united) placed first.
fn junction(items: impl IntoIterator<Item = Term>, conjunction: bool) -> Term {
    let (unit, absorbing) = (Term::Const(conjunction), Term::Const(!conjunction));
    let mut out = Vec::new();
    let mut actions: Option<BTreeSet<usize>> = None;
    let mut pending: Vec<Term> = items.into_iter().collect();
    pending.reverse();
    while let Some(t) = pending.pop() {
        match t {
            Term::Const(b) if b == conjunction => {}
            Term::Const(_) => return absorbing,
            Term::And(inner) if conjunction => pending.extend(inner.into_iter().rev()),
            Term::Or(inner) if !conjunction => pending.extend(inner.into_iter().rev()),
            Term::ActionIn(r) => {
                let set = action_set(&r);
                actions = Some(match actions {
                    None => set,
                    Some(prev) if conjunction => prev.intersection(&set).copied().collect(),
                    Some(mut prev) => {
                        prev.extend(set);
                        prev
                    }
                });
            }
            t => out.push(t),
        }
    }
    if let Some(set) = actions {
        match action_in(set) {
            Term::Const(b) if b == conjunction => {}
            Term::Const(_) => return absorbing,
            t => out.insert(0, t),
        }
    }
    match out.len() {
        0 => unit,
        1 => out.pop().unwrap_or(unit),
        _ if conjunction => Term::And(out),
        _ => Term::Or(out),
    }
}

/// Negation with constant folding.
pub fn not(t: Term) -> Term {
    match t {
        Term::Const(b) => Term::Const(!b),
        Term::Not(inner) => *inner,
        t => Term::Not(Box::new(t)),
    }
}

/// `a → b`.
pub fn implies(a: Term, b: Term) -> Term {
    or([not(a), b])
}

/// The string variable equals a literal.
pub fn str_eq(var: StrVar, lit: &str) -> Term {
    Term::Match { var, pat: Template(vec![crate::values::Seg::Lit(lit.to_owned())]), ignore_case: false }
}

/// The action index is one of `indices`.
pub fn action_in(indices: impl IntoIterator<Item = usize>) -> Term {
    let mut sorted: Vec<usize> = indices.into_iter().collect();
    sorted.sort_unstable();
    sorted.dedup();
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    for i in sorted {
        match ranges.last_mut() {
            Some((_, hi)) if *hi + 1 == i => *hi = i,
            _ => ranges.push((i, i)),
        }
    }
    match ranges.as_slice() {
        [] => FALSE,
        [(0, hi)] if *hi + 1 == crate::actions::count() => TRUE,
        _ => Term::ActionIn(ranges),
    }
}

impl Term {
    /// True when the term holds an opaque construct.
    pub fn has_opaque(&self) -> bool {
        match self {
            Term::Opaque(_) => true,
            Term::Not(t) => t.has_opaque(),
            Term::And(ts) | Term::Or(ts) => ts.iter().any(Term::has_opaque),
            _ => false,
        }
    }

    /// Collects the reasons of the opaque constructs.
    pub fn opaque_reasons(&self, out: &mut BTreeSet<String>) {
        match self {
            Term::Opaque(r) => {
                out.insert(r.clone());
            }
            Term::Not(t) => t.opaque_reasons(out),
            Term::And(ts) | Term::Or(ts) => ts.iter().for_each(|t| t.opaque_reasons(out)),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructors_fold() {
        assert_eq!(and([TRUE, Term::KindIs(Kind::Oai)]), Term::KindIs(Kind::Oai));
        assert_eq!(and([FALSE, Term::KindIs(Kind::Oai)]), FALSE);
        assert_eq!(or([TRUE, Term::KindIs(Kind::Oai)]), TRUE);
        assert_eq!(not(not(Term::KindIs(Kind::Oai))), Term::KindIs(Kind::Oai));
        assert_eq!(action_in([3, 1, 2, 7]), Term::ActionIn(vec![(1, 3), (7, 7)]));
        assert_eq!(action_in(0..crate::actions::count()), TRUE);
        assert_eq!(action_in([]), FALSE);
    }
}
