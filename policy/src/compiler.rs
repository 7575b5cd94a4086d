//! The compiler from a parsed policy to terms: one term for "some Allow matches", one for
//! "some Deny matches", plus the facts about the policy the questions need (keys used, fixed
//! values of restricting keys, account literals).

use std::collections::{BTreeMap, BTreeSet};

use crate::actions;
use crate::ast::{BaseOp, Condition, Effect, Policy, SetQualifier, Statement, ValueSort};
use crate::eval::{entry_form, EntryForm};
use crate::term::{self, and, not, or, Kind, Part, StrVar, Term, FALSE, TRUE};
use crate::values::{parse_cidr, parse_date, parse_number, Cidr, Seg, Template};

/// How many value slots a multi-valued key gets.
pub const MULTI_SLOTS: usize = 2;

/// The condition keys whose fixed values make a grant non-public (SEMANTICS.md).
pub const RESTRICTING_KEYS: &[&str] = &[
    "aws:principalorgid",
    "aws:principalaccount",
    "aws:principalarn",
    "aws:principalorgpaths",
    "aws:sourceip",
    "aws:sourcearn",
    "aws:sourcevpc",
    "aws:sourcevpce",
    "aws:sourceowner",
    "aws:sourceaccount",
    "s3:x-amz-server-side-encryption-aws-kms-key-id",
    "aws:userid",
    "s3:dataaccesspointarn",
    "s3:dataaccesspointaccount",
];

/// Keys that name principals: an account in their values is "named in the policy".
/// How many residuals of a pattern by a fixed prefix are encoded one by one; past this the
/// pattern is encoded whole (real policies have one or two).
const MAX_RESIDUALS: usize = 8;

const PRINCIPAL_KEYS: &[&str] = &["aws:principalaccount", "aws:principalarn"];

/// How a condition key is represented.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyShape {
    /// Number of value slots.
    pub slots: usize,
    /// Multi-valued (has a count variable); otherwise one value when present.
    pub multi: bool,
    /// The value sorts the policy compares the key as.
    pub sorts: BTreeSet<ValueSort>,
    /// Only `Bool` (and `Null`) operators read the key: values compare as exact `true`/`false`.
    pub bool_only: bool,
}

/// A fixed value a restricting key is compared with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fixed {
    /// A literal string.
    Lit {
        /// The value.
        value: String,
        /// Compared case-insensitively.
        ignore_case: bool,
    },
    /// A pattern that counts as fixed (`PREFIX:*` for aws:userid, access point ARNs).
    Pattern(Template),
    /// A fixed CIDR block.
    Cidr(Cidr),
}

/// The compiled policy.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// Some Allow statement matches.
    pub allow: Term,
    /// Some Allow statement matches without relying on a bare `*` principal.
    pub allow_named: Term,
    /// Some Deny statement matches.
    pub deny: Term,
    /// The condition keys the policy refers to.
    pub keys: BTreeMap<String, KeyShape>,
    /// Fixed values of restricting keys.
    pub fixed: BTreeMap<String, Vec<Fixed>>,
    /// Every 12-digit account literal anywhere in the policy.
    pub accounts: BTreeSet<String>,
    /// Accounts named in a Principal / NotPrincipal or a principal condition key.
    pub named_accounts: BTreeSet<String>,
    /// Accounts a service principal's request may act for, as the policy names them: the
    /// values of `aws:SourceAccount` and `aws:SourceOwner`, and the account field of
    /// `aws:SourceArn` values (without wildcards in them).
    pub source_accounts: BTreeSet<String>,
    /// Per statement, the universe's actions its Action / NotAction clause matches.
    pub statement_actions: Vec<Vec<usize>>,
    /// No part of the policy is opaque: the encoding is exact, so the solver finds a request
    /// whenever one exists.
    pub exact: bool,
}

/// Compiles `policy` for bucket `bucket`; `org_paths` sizes aws:PrincipalOrgPaths.
pub fn compile(policy: &Policy, bucket: &str, org_paths: usize) -> Compiled {
    let vars = policy.variables_enabled();
    let mut c = Compiler { vars, bucket_arn: format!("arn:aws:s3:::{bucket}"), keys: BTreeMap::new() };
    c.register_keys(policy, org_paths);
    let mut allow = Vec::new();
    let mut allow_named = Vec::new();
    let mut deny = Vec::new();
    let statement_actions: Vec<Vec<usize>> = policy.statements.iter().map(statement_actions).collect();
    for (st, acts) in policy.statements.iter().zip(&statement_actions) {
        match st.effect {
            Effect::Allow => {
                allow.push(c.statement(st, acts, false));
                allow_named.push(c.statement(st, acts, true));
            }
            Effect::Deny => deny.push(c.statement(st, acts, false)),
        }
    }
    let (accounts, named_accounts) = account_literals(policy);
    let source_accounts = source_account_literals(policy);
    let (allow, allow_named, deny) = (or(allow), or(allow_named), or(deny));
    let exact = ![&allow, &allow_named, &deny].into_iter().any(Term::has_opaque);
    Compiled {
        exact,
        allow,
        allow_named,
        deny,
        fixed: fixed_values(policy),
        keys: c.keys,
        accounts,
        named_accounts,
        source_accounts,
        statement_actions,
    }
}

/// The universe's actions a statement's Action / NotAction clause matches.
fn statement_actions(st: &Statement) -> Vec<usize> {
    (0..actions::count())
        .filter(|&i| {
            st.action.values.iter().any(|p| crate::values::wildcard_match(p, actions::name(i), true))
                != st.action.negated
        })
        .collect()
}

struct Compiler {
    vars: bool,
    bucket_arn: String,
    keys: BTreeMap<String, KeyShape>,
}

impl Compiler {
    fn register_keys(&mut self, policy: &Policy, org_paths: usize) {
        let mut var_keys = Vec::new();
        for st in &policy.statements {
            for r in &st.resource.values {
                collect_vars(&Template::parse(r, true, self.vars), &mut var_keys);
            }
            for cond in &st.conditions {
                let fresh = !self.keys.contains_key(&cond.key);
                let shape = self.keys.entry(cond.key.clone()).or_default();
                if fresh {
                    shape.bool_only = true;
                }
                shape.bool_only &= matches!(cond.op.base, BaseOp::Bool | BaseOp::Null);
                if cond.op.base != BaseOp::Null {
                    shape.sorts.insert(cond.op.base.sort());
                }
                shape.multi |= cond.op.qualifier != SetQualifier::None;
                if cond.op.base.sort() == ValueSort::Str {
                    for v in &cond.values {
                        collect_vars(&Template::parse(v, true, self.vars), &mut var_keys);
                    }
                }
            }
        }
        for k in var_keys {
            let shape = self.keys.entry(k).or_default();
            shape.sorts.insert(ValueSort::Str);
            shape.bool_only = false;
        }
        for (key, shape) in self.keys.iter_mut() {
            if key == "aws:principalorgpaths" {
                shape.multi = true;
            }
            shape.slots = if shape.multi {
                if key == "aws:principalorgpaths" {
                    MULTI_SLOTS.max(org_paths)
                } else {
                    MULTI_SLOTS
                }
            } else {
                1
            };
        }
    }

    fn statement(&self, st: &Statement, acts: &[usize], named_only: bool) -> Term {
        let principal = match (st.principal.negated, named_only) {
            // A NotPrincipal grant names nobody in particular.
            (true, true) => FALSE,
            (true, false) => not(or(st.principal.entries.iter().map(|e| principal_entry(&entry_form(e), false)))),
            (false, _) => or(st.principal.entries.iter().map(|e| principal_entry(&entry_form(e), named_only))),
        };
        let action = term::action_in(acts.iter().copied());
        let resource = {
            let any = or(st.resource.values.iter().map(|p| self.resource_pattern(p)));
            if st.resource.negated {
                not(any)
            } else {
                any
            }
        };
        let mut parts = vec![principal, action, resource];
        parts.extend(st.conditions.iter().map(|c| self.condition(c)));
        and(parts)
    }

    fn resource_pattern(&self, p: &str) -> Term {
        let t = Template::parse(p, true, self.vars);
        if t.has_variable() {
            return self.template_term(StrVar::Resource, &t, false);
        }
        let b = actions::bucket_count();
        let on_bucket = term::action_in(0..b);
        let on_object = term::action_in(b..actions::count());
        let object_prefix = format!("{}/", self.bucket_arn);
        // Object ARNs are the prefix plus a non-empty key: match the key against what the
        // pattern leaves after the prefix. A pattern with many ways through the prefix (a
        // hostile `*a*a*a…`) is matched against the whole ARN instead, which is as exact and
        // keeps the term linear in the pattern.
        let residuals = t.residuals(&object_prefix);
        let objects = if residuals.len() > MAX_RESIDUALS {
            Term::Match { var: StrVar::Resource, pat: t.clone(), ignore_case: false }
        } else {
            or(residuals.into_iter().map(|r| match r.0.as_slice() {
                [] => FALSE,
                [Seg::Star] => TRUE,
                _ => Term::Match { var: StrVar::Key, pat: r, ignore_case: false },
            }))
        };
        or([and([on_bucket, Term::Const(t.matches(&self.bucket_arn, false))]), and([on_object, objects])])
    }

    /// A string variable against a template with policy variables.
    fn template_term(&self, var: StrVar, t: &Template, ignore_case: bool) -> Term {
        let (body, prefix) = match t.0.split_last() {
            Some((Seg::Star, body)) => (body, true),
            _ => (t.0.as_slice(), false),
        };
        if ignore_case || body.iter().any(|s| matches!(s, Seg::Star | Seg::Any)) {
            return Term::Opaque("a policy variable combined with wildcards or IgnoreCase".into());
        }
        // A variable reads its key's string value; a key also compared as a number or an IP
        // is modelled by that sort instead, so the string would float free of it.
        let non_string = |k: &String| self.keys.get(k).is_some_and(|s| s.sorts.iter().any(|x| *x != ValueSort::Str));
        if body.iter().any(|s| matches!(s, Seg::Var(k) if non_string(k))) {
            return Term::Opaque("a policy variable naming a key compared as a number or an IP address".into());
        }
        let mut requires = Vec::new();
        let mut parts = Vec::new();
        for seg in body {
            match seg {
                Seg::Lit(l) => parts.push(Part::Lit(l.clone())),
                Seg::Var(k) => {
                    requires.push(self.active(k, 0));
                    parts.push(Part::Var(StrVar::Slot(k.clone(), 0)));
                }
                Seg::Star | Seg::Any => {}
            }
        }
        requires.push(Term::Concat { var, parts, prefix });
        and(requires)
    }

    /// Slot `i` of `key` holds a value.
    fn active(&self, key: &str, i: usize) -> Term {
        active(&self.keys, key, i)
    }

    fn condition(&self, c: &Condition) -> Term {
        let present = Term::Present(c.key.clone());
        if c.op.base == BaseOp::Null {
            return or(c.values.iter().map(|v| {
                if v.eq_ignore_ascii_case("true") {
                    not(present.clone())
                } else {
                    present.clone()
                }
            }));
        }
        let slots = self.keys.get(&c.key).map_or(1, |s| s.slots);
        let m = |i: usize| or(c.values.iter().map(|v| self.base(c.op.base, v, &c.key, i)));
        let flip = |t: Term| if c.op.negated { not(t) } else { t };
        match c.op.qualifier {
            SetQualifier::None => {
                let any = or((0..slots).map(|i| and([self.active(&c.key, i), m(i)])));
                if c.op.negated {
                    not(any)
                } else if c.op.if_exists {
                    or([not(present), any])
                } else {
                    any
                }
            }
            SetQualifier::ForAnyValue => {
                let absent_ok = if c.op.if_exists { not(present) } else { FALSE };
                or(std::iter::once(absent_ok).chain((0..slots).map(|i| and([self.active(&c.key, i), flip(m(i))]))))
            }
            SetQualifier::ForAllValues => and((0..slots).map(|i| term::implies(self.active(&c.key, i), flip(m(i))))),
        }
    }

    fn base(&self, base: BaseOp, v: &str, key: &str, slot: usize) -> Term {
        // A key compared as more than one sort (say, as an IP and as a string) is modelled by
        // its primary sort (IP, then integer, then string); the other comparisons are opaque.
        if let Some(primary) = self.keys.get(key).and_then(|s| s.sorts.iter().next_back()) {
            if base != BaseOp::Null && base.sort() != *primary {
                return Term::Opaque(format!("`{key}` compared both as {:?} and as {primary:?}", base.sort()));
            }
        }
        // The principal defines these keys' values: ARNs, organization IDs and paths, never
        // numbers, dates or IP addresses, so such a comparison never holds. An account ID is
        // a number, but the model keeps it as a string only.
        if base.sort() != ValueSort::Str && base != BaseOp::Null {
            match key {
                "aws:principalarn" | "aws:principalorgid" | "aws:principalorgpaths" => return FALSE,
                "aws:principalaccount" if base.sort() == ValueSort::Ip => return FALSE,
                "aws:principalaccount" => {
                    return Term::Opaque("a numeric comparison of aws:PrincipalAccount".into());
                }
                _ => {}
            }
        }
        let var = StrVar::Slot(key.to_owned(), slot);
        let int = |n: Option<i64>, cmp: term::Cmp| match n {
            Some(value) => Term::IntCmp { key: key.to_owned(), slot, cmp, value },
            None => FALSE,
        };
        use term::Cmp::*;
        match base {
            BaseOp::StringEquals | BaseOp::StringEqualsIgnoreCase | BaseOp::StringLike | BaseOp::ArnLike => {
                let wild = matches!(base, BaseOp::StringLike | BaseOp::ArnLike);
                let ignore_case = base == BaseOp::StringEqualsIgnoreCase;
                let t = Template::parse(v, wild, self.vars);
                if t.has_variable() {
                    self.template_term(var, &t, ignore_case)
                } else {
                    key_match(key, slot, t, ignore_case)
                }
            }
            // A key read only by Bool is modelled with exact `true`/`false` values (the decoder
            // turns any other value into one that matches neither, in any case).
            BaseOp::Bool if self.keys.get(key).is_some_and(|s| s.bool_only) => {
                term::str_eq(var, &v.to_ascii_lowercase())
            }
            BaseOp::Bool => {
                Term::Match { var, pat: Template(vec![Seg::Lit(v.to_ascii_lowercase())]), ignore_case: true }
            }
            BaseOp::BinaryEquals => term::str_eq(var, v),
            BaseOp::NumericEquals => int(parse_number(v), Eq),
            BaseOp::NumericLessThan => int(parse_number(v), Lt),
            BaseOp::NumericLessThanEquals => int(parse_number(v), Le),
            BaseOp::NumericGreaterThan => int(parse_number(v), Gt),
            BaseOp::NumericGreaterThanEquals => int(parse_number(v), Ge),
            BaseOp::DateEquals => int(parse_date(v), Eq),
            BaseOp::DateLessThan => int(parse_date(v), Lt),
            BaseOp::DateLessThanEquals => int(parse_date(v), Le),
            BaseOp::DateGreaterThan => int(parse_date(v), Gt),
            BaseOp::DateGreaterThanEquals => int(parse_date(v), Ge),
            BaseOp::IpAddress => match parse_cidr(v) {
                Some(cidr) => Term::IpIn { key: key.to_owned(), slot, cidr },
                None => FALSE,
            },
            BaseOp::Null => FALSE,
        }
    }
}

/// Slot `slot` of `key` matches a variable-free pattern. The principal keys
/// aws:PrincipalAccount and aws:PrincipalArn always carry the principal's own account and ARN,
/// so they are matched on the principal variables directly (no string concatenation).
pub fn key_match(key: &str, slot: usize, pat: Template, ignore_case: bool) -> Term {
    match (key, slot, ignore_case) {
        ("aws:principalaccount", 0, _) => {
            and([Term::KindIs(Kind::Account), Term::Match { var: StrVar::Account, pat, ignore_case }])
        }
        ("aws:principalarn", 0, false) => and([Term::KindIs(Kind::Account), account_arn_match(&pat)]),
        _ => Term::Match { var: StrVar::Slot(key.to_owned(), slot), pat, ignore_case },
    }
}

/// Slot `i` of `key` holds a value, given the key table.
pub fn active(keys: &BTreeMap<String, KeyShape>, key: &str, i: usize) -> Term {
    match keys.get(key) {
        Some(s) if s.multi => and([Term::Present(key.to_owned()), Term::CountGt(key.to_owned(), i)]),
        _ if i == 0 => Term::Present(key.to_owned()),
        _ => FALSE,
    }
}

fn principal_entry(form: &EntryForm, named_only: bool) -> Term {
    let pat = |p: &str| Template::parse(p, true, false);
    let m = |var: StrVar, p: &str| Term::Match { var, pat: pat(p), ignore_case: false };
    match form {
        EntryForm::Everyone => Term::Const(!named_only),
        EntryForm::Account(p) => and([Term::KindIs(Kind::Account), m(StrVar::Account, p)]),
        EntryForm::Arn(p) => or([
            and([Term::KindIs(Kind::Account), account_arn_match(&pat(p))]),
            and([Term::KindIs(Kind::Oai), oai_arn_match(&pat(p))]),
        ]),
        EntryForm::Service(p) => and([Term::KindIs(Kind::Service), m(StrVar::Service, p)]),
        EntryForm::Federated(p) => and([Term::KindIs(Kind::Federated), m(StrVar::Federated, p)]),
        EntryForm::Canonical(p) => and([Term::KindIs(Kind::Oai), m(StrVar::Canonical, p)]),
    }
}

/// An ARN pattern against a CloudFront OAI's ARN (`OAI_ARN_PREFIX` + ID): a pattern over the
/// ID, false when no ID (`[A-Z0-9]+`) can complete the prefix to a match.
fn oai_arn_match(p: &Template) -> Term {
    let id_char = |c: char| c.is_ascii_uppercase() || c.is_ascii_digit();
    let residuals = p.residuals(crate::analysis::OAI_ARN_PREFIX);
    if residuals.len() > MAX_RESIDUALS {
        return Term::Opaque("a principal pattern with too many ways to match a CloudFront identity".into());
    }
    or(residuals.into_iter().map(|r| match r.0.as_slice() {
        [] => FALSE,
        [Seg::Star] => TRUE,
        _ if !literal_chars_all(&r, id_char) => FALSE,
        _ => Term::Match { var: StrVar::OaiId, pat: r, ignore_case: false },
    }))
}

/// True when every literal character of the pattern satisfies `ok`.
fn literal_chars_all(p: &Template, ok: impl Fn(char) -> bool) -> bool {
    p.0.iter().all(|s| match s {
        Seg::Lit(l) => l.chars().all(&ok),
        _ => true,
    })
}

/// An ARN pattern against an account principal's ARN `arn:aws:iam::ACCOUNT:TAIL`, split into
/// a pattern over the account and one over the tail when the pattern allows it (neither the
/// account nor the tail can hold a `:`), so that the ARN itself need not be built.
pub(crate) fn account_arn_match(p: &Template) -> Term {
    const HEAD: &str = "arn:aws:iam::";
    let general = || Term::Match { var: StrVar::Arn, pat: p.clone(), ignore_case: false };
    let mut rest: Vec<Seg> = p.0.clone();
    match rest.first_mut() {
        Some(Seg::Lit(l)) if l.starts_with(HEAD) => {
            *l = l[HEAD.len()..].to_owned();
        }
        Some(Seg::Lit(l)) if !HEAD.starts_with(l.as_str()) => return FALSE,
        _ => return general(),
    }
    let mut account = Vec::new();
    let mut tail = None;
    for (i, seg) in rest.iter().enumerate() {
        match seg {
            Seg::Lit(l) if l.contains(':') => {
                let (a, t) = l.split_once(':').unwrap_or((l, ""));
                if !a.is_empty() {
                    account.push(Seg::Lit(a.to_owned()));
                }
                let mut tail_segs = Vec::new();
                if !t.is_empty() {
                    tail_segs.push(Seg::Lit(t.to_owned()));
                }
                tail_segs.extend(rest[i + 1..].iter().cloned());
                tail = Some(tail_segs);
                break;
            }
            other => account.push(other.clone()),
        }
    }
    if let [Seg::Lit(a)] = account.as_slice() {
        if !super::parser::is_account_id(a) {
            return FALSE;
        }
    }
    if !literal_chars_all(&Template(account.clone()), |c| c.is_ascii_digit()) {
        return FALSE;
    }
    match tail {
        Some(t) => and([
            Term::Match { var: StrVar::Account, pat: Template(account), ignore_case: false },
            Term::Match { var: StrVar::ArnTail, pat: Template(t), ignore_case: false },
        ]),
        None => general(),
    }
}

fn collect_vars(t: &Template, out: &mut Vec<String>) {
    for s in &t.0 {
        if let Seg::Var(k) = s {
            out.push(k.clone());
        }
    }
}

fn fixed_values(policy: &Policy) -> BTreeMap<String, Vec<Fixed>> {
    let mut out: BTreeMap<String, Vec<Fixed>> = BTreeMap::new();
    for st in &policy.statements {
        for c in &st.conditions {
            if !RESTRICTING_KEYS.contains(&c.key.as_str()) {
                continue;
            }
            for v in &c.values {
                if let Some(f) = fixed_value(c, v) {
                    let list = out.entry(c.key.clone()).or_default();
                    if !list.contains(&f) {
                        list.push(f);
                    }
                }
            }
        }
    }
    out
}

/// The fixed value `v` of condition `c` stands for, when it is one (SEMANTICS.md): the one
/// classification behind `Compiled::fixed` and the pre-solver's rules.
pub(crate) fn fixed_value(c: &Condition, v: &str) -> Option<Fixed> {
    if !RESTRICTING_KEYS.contains(&c.key.as_str()) {
        return None;
    }
    match c.op.base {
        BaseOp::IpAddress => parse_cidr(v).filter(Cidr::is_fixed).map(Fixed::Cidr),
        BaseOp::StringEquals | BaseOp::StringEqualsIgnoreCase | BaseOp::StringLike | BaseOp::ArnLike => {
            fixed_string(&c.key, v, c.op.base == BaseOp::StringEqualsIgnoreCase)
        }
        _ => None,
    }
}

fn fixed_string(key: &str, v: &str, ignore_case: bool) -> Option<Fixed> {
    if v.contains("${") {
        return None;
    }
    let wild = |s: &str| s.contains(['*', '?']);
    if !wild(v) {
        return Some(Fixed::Lit { value: v.to_owned(), ignore_case });
    }
    if key == "aws:userid" {
        let prefix = v.strip_suffix(":*")?;
        return (!wild(prefix) && !prefix.is_empty()).then(|| Fixed::Pattern(Template::parse(v, true, false)));
    }
    if key == "s3:dataaccesspointarn" {
        let parts: Vec<&str> = v.splitn(6, ':').collect();
        let fixed_head = parts.len() == 6
            && parts[..5].iter().all(|p| !wild(p))
            && super::parser::is_account_id(parts[4])
            && parts[5].starts_with("accesspoint/");
        return fixed_head.then(|| Fixed::Pattern(Template::parse(v, true, false)));
    }
    None
}

fn account_literals(policy: &Policy) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut all = BTreeSet::new();
    let mut named = BTreeSet::new();
    let scan = |s: &str, out: &mut BTreeSet<String>| {
        for run in s.split(|c: char| !c.is_ascii_digit()) {
            if run.len() == 12 {
                out.insert(run.to_owned());
            }
        }
    };
    for st in &policy.statements {
        for e in &st.principal.entries {
            let s = match e {
                crate::ast::PrincipalEntry::Aws(s) => s.as_str(),
                _ => continue,
            };
            scan(s, &mut all);
            scan(s, &mut named);
        }
        for r in st.resource.values.iter().chain(&st.action.values) {
            scan(r, &mut all);
        }
        for c in &st.conditions {
            for v in &c.values {
                scan(v, &mut all);
                if PRINCIPAL_KEYS.contains(&c.key.as_str()) {
                    scan(v, &mut named);
                }
            }
        }
    }
    (all, named)
}

/// The condition keys that name the account an AWS service principal acts for.
pub(crate) const SOURCE_ACCOUNT_KEYS: [&str; 2] = ["aws:sourceaccount", "aws:sourceowner"];
/// The condition key that names the resource an AWS service principal acts for.
pub(crate) const SOURCE_ARN_KEY: &str = "aws:sourcearn";

/// The account field of an ARN (`arn:PARTITION:SERVICE:REGION:ACCOUNT:...`); empty for
/// resources without one (S3 buckets).
pub(crate) fn arn_account_field(arn: &str) -> Option<&str> {
    let fields: Vec<&str> = arn.splitn(6, ':').collect();
    (fields.len() == 6 && fields[0] == "arn").then(|| fields[4])
}

/// The 12-digit accounts the policy's source keys name (see `Compiled::source_accounts`).
fn source_account_literals(policy: &Policy) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for c in policy.statements.iter().flat_map(|st| &st.conditions) {
        for v in &c.values {
            let account = if SOURCE_ACCOUNT_KEYS.contains(&c.key.as_str()) {
                Some(v.as_str())
            } else if c.key == SOURCE_ARN_KEY {
                arn_account_field(v)
            } else {
                None
            };
            if let Some(a) = account.filter(|a| crate::parser::is_account_id(a)) {
                out.insert(a.to_owned());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parser::parse_policy;

    #[test]
    fn source_accounts_come_from_the_source_keys_only() {
        let p = parse_policy(
            r#"{"Statement":[{"Effect":"Allow","Principal":{"Service":"logging.s3.amazonaws.com"},"Action":"s3:PutObject","Resource":"arn:aws:s3:::b/*","Condition":{"StringEquals":{"AWS:SourceAccount":["444444444444","4444*"],"aws:SourceOwner":"555555555555","aws:PrincipalAccount":"666666666666"},"ArnLike":{"aws:SourceArn":["arn:aws:cloudtrail:us-east-1:777777777777:trail/t","arn:aws:s3:::bucket-888888888888","arn:aws:logs:*:99999999999*:*"]}}}]}"#,
        )
        .unwrap();
        let c = compile(&p, "b", 1);
        let got: Vec<&str> = c.source_accounts.iter().map(String::as_str).collect();
        assert_eq!(got, ["444444444444", "555555555555", "777777777777"]);
        assert_eq!(arn_account_field("arn:aws:s3:::bucket"), Some(""));
        assert_eq!(arn_account_field("arn:aws:logs:us-east-1:123456789012:log-group:x"), Some("123456789012"));
        assert_eq!(arn_account_field("not-an-arn:a:b:c:d:e"), None);
        assert_eq!(arn_account_field("arn:aws:s3"), None);
    }

    #[test]
    fn no_allow_compiles_to_false() {
        let p = parse_policy(r#"{"Statement":[{"Effect":"Deny","Principal":"*","Action":"s3:*","Resource":"*"}]}"#)
            .unwrap();
        let c = compile(&p, "b", 1);
        assert_eq!(c.allow, FALSE);
        assert_ne!(c.deny, FALSE);
    }

    #[test]
    fn public_object_read_is_small() {
        let p = parse_policy(r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"}]}"#).unwrap();
        let c = compile(&p, "b", 1);
        assert!(matches!(c.allow, Term::ActionIn(_)), "{:?}", c.allow);
        assert_eq!(c.allow_named, FALSE);
    }

    #[test]
    fn fixed_values_and_accounts() {
        let p = parse_policy(
            r#"{"Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::444444444444:root"},"Action":"s3:*","Resource":"*",
              "Condition":{"StringLike":{"aws:userid":["AROAX:*","*"]},"IpAddress":{"aws:SourceIp":["0.0.0.0/0","10.1.0.0/16"]},
              "StringEquals":{"aws:SourceVpce":"vpce-1","aws:PrincipalAccount":"555555555555"}}}]}"#,
        )
        .unwrap();
        let c = compile(&p, "b", 1);
        assert_eq!(c.fixed["aws:userid"].len(), 1);
        assert_eq!(c.fixed["aws:sourceip"].len(), 1);
        assert!(c.named_accounts.contains("444444444444") && c.named_accounts.contains("555555555555"));
    }
}
