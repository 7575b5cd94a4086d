//! The pre-solver layer: decides a question without Z3 when the policy's shape allows it, as
//! the Block Public Access paper's residual policies do. Two kinds of shortcut, each sound on
//! its own:
//!
//! - **No**, by syntax: no Allow statement can reach the question's principals and actions
//!   (every grant to fixed principals, the wrong actions, a bare `*` where only named
//!   principals count), or, for unencrypted uploads, a Deny without other conditions covers
//!   every PutObject on the bucket that carries no encryption header.
//! - **Yes**, by example: a request built from the policy's own literals (principal, action,
//!   resource, a value per condition) that the concrete evaluator allows and that belongs to
//!   the question (`World::check_witness`). It becomes the witness, exactly as a solver model
//!   would after the same check.
//!
//! What neither decides goes to the solver. The corpus and property tests run every question
//! with the layer on and off and require the same verdicts.

use std::collections::BTreeMap;

use crate::actions;
use crate::analysis::{Question, Tri, Witness, OAI_ARN_PREFIX};
use crate::ast::{BaseOp, Condition, Effect, SetQualifier, Statement, ValueSort};
use crate::compiler::{fixed_value, SOURCE_ACCOUNT_KEYS};
use crate::eval::{condition_holds, entry_form, EntryForm, Principal, Request};
use crate::question::{accepted_values, Verdict, World, CLOUDFRONT_SERVICE, SSE_KEY};
use crate::values::{parse_cidr, parse_date, parse_number, wildcard_match, Seg, Template};

const PRINCIPAL_KEYS: &[&str] =
    &["aws:principalaccount", "aws:principalarn", "aws:principalorgid", "aws:principalorgpaths"];

/// Decides `q` without the solver, or says nothing.
pub(crate) fn decide(world: &World<'_>, q: &Question) -> Option<Verdict> {
    let no = Verdict { answer: Tri::False, witness: None, reason: None };
    match q {
        Question::UnencryptedUpload => {
            if world.policy.statements.iter().any(|st| denies_every_unencrypted_put(world, st)) {
                return Some(no);
            }
        }
        _ => {
            let outsiders = is_about_outsiders(world, q);
            let reach = |st: &Statement| {
                st.effect == Effect::Allow
                    && may_reach(world, st, q)
                    && (!is_public(q) || reaches_untrusted(st))
                    && (!outsiders || reaches_outsiders(world, st))
            };
            if !world.policy.statements.iter().any(reach) {
                return Some(no);
            }
            if is_public(q) && world.policy.statements.iter().any(|st| denies_every_untrusted(world, st, q)) {
                return Some(no);
            }
            if is_about_outsiders(world, q) && world.policy.statements.iter().any(|st| fences_outsiders(world, st, q)) {
                return Some(no);
            }
        }
    }
    guess(world, q).map(|w| Verdict { answer: Tri::True, witness: Some(w), reason: None })
}

/// The actions a question is about.
fn question_action(q: &Question, action: usize) -> bool {
    let name = actions::name(action);
    match q {
        Question::PublicRead => actions::is_read(name),
        Question::PublicWrite => actions::is_write(name),
        Question::UnencryptedUpload => name == "s3:PutObject",
        _ => true,
    }
}

/// The universe's actions a statement's Action / NotAction clause matches (computed once per
/// analysis, by the compiler).
fn statement_actions<'w>(world: &'w World<'_>, st: &Statement) -> &'w [usize] {
    world
        .policy
        .statements
        .iter()
        .position(|s| std::ptr::eq(s, st))
        .map_or(&[][..], |i| world.compiled.statement_actions[i].as_slice())
}

fn has_wildcard(pattern: &str) -> bool {
    pattern.contains(['*', '?']) || pattern.contains("${")
}

/// Could this Allow statement's principal and action clauses let in a request of `q`?
/// Conservative: true whenever unsure.
fn may_reach(world: &World<'_>, st: &Statement, q: &Question) -> bool {
    if !statement_actions(world, st).iter().any(|&a| question_action(q, a)) {
        return false;
    }
    let entries = st.principal.entries.iter().map(entry_form);
    // A statement whose conditions no account principal meets lets in none through its
    // Account and ARN entries.
    let accounts = !excludes_account_principals(st);
    match q {
        Question::SharedWithCloudFront => {
            // Only named principals count here: a bare `*` or a NotPrincipal names nobody.
            !st.principal.negated
                && entries.into_iter().any(|e| match e {
                    EntryForm::Service(p) => wildcard_match(&p, CLOUDFRONT_SERVICE, false),
                    // An OAI's ARN has `cloudfront` in the account field: a pattern whose
                    // field is fixed to anything else cannot match one.
                    EntryForm::Arn(p) => match arn_account(&p) {
                        Some(field) if !has_wildcard(field) => field == "cloudfront",
                        _ => has_wildcard(&p) || p.starts_with(OAI_ARN_PREFIX),
                    },
                    EntryForm::Canonical(_) => true,
                    _ => false,
                })
        }
        _ if st.principal.negated => true,
        Question::ServiceActingFor(_) => entries.into_iter().any(|e| match e {
            EntryForm::Everyone => true,
            EntryForm::Service(p) => has_wildcard(&p) || p != CLOUDFRONT_SERVICE,
            _ => false,
        }),
        Question::SharedWithAccount(a) if a != "*" => {
            accounts
                && entries.into_iter().any(|e| match e {
                    EntryForm::Everyone => true,
                    EntryForm::Account(p) => wildcard_match(&p, a, false),
                    EntryForm::Arn(p) => open_account_field(&p) || arn_account(&p) == Some(a.as_str()),
                    _ => false,
                })
        }
        // Anonymous callers, fresh accounts and federated identities: a fixed account, or an
        // IAM ARN whose account field is fixed, names an account literal of the policy, never
        // a fresh one.
        _ => entries.into_iter().any(|e| match e {
            EntryForm::Everyone | EntryForm::Federated(_) => true,
            EntryForm::Account(p) => accounts && has_wildcard(&p),
            EntryForm::Arn(p) => accounts && open_account_field(&p),
            _ => false,
        }),
    }
}

fn is_public(q: &Question) -> bool {
    matches!(q, Question::PublicRead | Question::PublicWrite)
}

/// Every value of `c` is a fixed value of a restricting key: an untrusted caller carries the
/// key absent, or with values that differ from (do not match) every one of them.
fn all_values_fixed(c: &Condition) -> bool {
    !c.values.is_empty() && c.values.iter().all(|v| fixed_value(c, v).is_some())
}

/// False when some condition of the statement can never hold for an untrusted caller: a
/// positive comparison (not `...IfExists`) of a restricting key with fixed values only. Such
/// a grant is restricted to fixed values: not public.
fn reaches_untrusted(st: &Statement) -> bool {
    !st.conditions.iter().any(|c| {
        !c.op.negated
            && !c.op.if_exists
            && matches!(c.op.qualifier, SetQualifier::None | SetQualifier::ForAnyValue)
            && all_values_fixed(c)
    })
}

/// A Deny of every principal, every action of the public question and every resource of the
/// bucket, whose conditions all hold for every untrusted caller (negated comparisons of
/// restricting keys with fixed values only: absent or different, the comparison fails and
/// its negation holds).
fn denies_every_untrusted(world: &World<'_>, st: &Statement, q: &Question) -> bool {
    st.effect == Effect::Deny
        && covers_everything(world, st, q)
        && st.conditions.iter().all(|c| {
            c.op.negated
                && matches!(c.op.qualifier, SetQualifier::None | SetQualifier::ForAllValues)
                && all_values_fixed(c)
        })
}

/// Questions whose callers are all outside the organization: public ones, any outside
/// account, and a named account that is not a member.
fn is_about_outsiders(world: &World<'_>, q: &Question) -> bool {
    match q {
        Question::PublicRead | Question::PublicWrite => true,
        Question::SharedWithAccount(a) => a == "*" || !world.members.contains(a),
        _ => false,
    }
}

/// Every principal, every action the question is about, every resource of the bucket.
fn covers_everything(world: &World<'_>, st: &Statement, q: &Question) -> bool {
    if st.principal.negated || st.resource.negated {
        return false;
    }
    if !st.principal.entries.iter().any(|e| entry_form(e) == EntryForm::Everyone) {
        return false;
    }
    let mut covered = vec![false; actions::count()];
    for &a in statement_actions(world, st) {
        covered[a] = true;
    }
    if !(0..actions::count()).filter(|&a| question_action(q, a)).all(|a| covered[a]) {
        return false;
    }
    let bucket_arn = format!("arn:aws:s3:::{}", world.bucket);
    let prefix = format!("{bucket_arn}/");
    let templates: Vec<Template> = st.resource.values.iter().map(|p| Template::parse(p, true, false)).collect();
    !templates.iter().any(Template::has_variable)
        && templates.iter().any(|t| t.matches(&bucket_arn, false))
        && templates.iter().any(|t| t.residuals(&prefix).iter().any(|r| r.0 == [Seg::Star]))
}

/// False when some condition of the statement can never hold for a caller outside the
/// organization: `aws:PrincipalOrgID` equal to our ID, or `aws:PrincipalOrgPaths` like paths
/// under our organization (positive, not `...IfExists`).
fn reaches_outsiders(world: &World<'_>, st: &Statement) -> bool {
    let Some(org) = world.ctx.organization_id.as_deref() else { return true };
    !st.conditions.iter().any(|c| {
        !c.op.negated
            && !c.op.if_exists
            && matches!(c.op.qualifier, SetQualifier::None | SetQualifier::ForAnyValue)
            && names_only_our_organization(c, org)
    })
}

/// Every value of an `aws:PrincipalOrgID` / `aws:PrincipalOrgPaths` comparison (exact case)
/// can only be matched by a principal of organization `org`.
fn names_only_our_organization(c: &Condition, org: &str) -> bool {
    if !matches!(c.op.base, BaseOp::StringEquals | BaseOp::StringLike) || c.values.is_empty() {
        return false;
    }
    let ours = format!("{org}/");
    match c.key.as_str() {
        "aws:principalorgid" => c.values.iter().all(|v| v == org),
        "aws:principalorgpaths" => c.values.iter().all(|v| {
            let t = Template::parse(v, c.op.base == BaseOp::StringLike, false);
            !v.contains("${") && matches!(t.0.first(), Some(Seg::Lit(l)) if l.starts_with(&ours))
        }),
        _ => false,
    }
}

/// The organization fence: a Deny of everything whose every condition holds for a caller
/// outside the organization — `aws:PrincipalOrgID` not equal to our ID, or
/// `aws:PrincipalOrgPaths` not like paths under our organization (an outsider carries no
/// such ID or path, or none at all; negated comparisons hold either way).
fn fences_outsiders(world: &World<'_>, st: &Statement, q: &Question) -> bool {
    let Some(org) = world.ctx.organization_id.as_deref() else { return false };
    if st.effect != Effect::Deny || !covers_everything(world, st, q) {
        return false;
    }
    st.conditions.iter().all(|c| {
        c.op.negated
            && matches!(c.op.qualifier, SetQualifier::None | SetQualifier::ForAllValues)
            && names_only_our_organization(c, org)
    })
}

/// Some positive condition on `aws:PrincipalArn` has only values no account principal's ARN
/// can equal (literals that do not start with `arn:`): an account principal always carries
/// exactly one value, its ARN, so the condition fails for every one of them, whatever its
/// qualifier (`...IfExists` only matters for an absent key).
fn excludes_account_principals(st: &Statement) -> bool {
    st.conditions.iter().any(|c| {
        c.key == "aws:principalarn"
            && !c.op.negated
            && matches!(
                c.op.base,
                BaseOp::StringEquals | BaseOp::StringEqualsIgnoreCase | BaseOp::StringLike | BaseOp::ArnLike
            )
            && !c.values.is_empty()
            && c.values
                .iter()
                .all(|v| !has_wildcard(v) && !v.get(..4).is_some_and(|head| head.eq_ignore_ascii_case("arn:")))
    })
}

/// Whether an ARN pattern of a Principal may match principals of more than one account: its
/// account field holds a wildcard (or variable), or the pattern is not an IAM ARN with one.
/// A fixed field (`arn:aws:iam::444444444444:role/app-*`) matches that account's principals
/// only: the field ends at the first `:`, which a 12-digit account cannot contain.
fn open_account_field(pattern: &str) -> bool {
    arn_account(pattern).map_or(has_wildcard(pattern), has_wildcard)
}

/// The account field of an IAM ARN or ARN pattern (`arn:aws:iam::ACCOUNT:...`).
fn arn_account(arn: &str) -> Option<&str> {
    arn.strip_prefix("arn:aws:iam::")?.split(':').next()
}

/// A Deny of PutObject on every object of the bucket, for every principal, whose conditions
/// all hold when no encryption header is present (`Null` = true, negated operators, ...).
fn denies_every_unencrypted_put(world: &World<'_>, st: &Statement) -> bool {
    if st.effect != Effect::Deny || st.principal.negated || st.resource.negated {
        return false;
    }
    let everyone = st.principal.entries.iter().any(|e| entry_form(e) == EntryForm::Everyone);
    let put = actions::index_of("s3:PutObject").is_some_and(|i| statement_actions(world, st).contains(&i));
    let prefix = format!("arn:aws:s3:::{}/", world.bucket);
    let every_object = st.resource.values.iter().any(|p| {
        let t = Template::parse(p, true, false);
        !t.has_variable() && t.residuals(&prefix).iter().any(|r| r.0 == [Seg::Star])
    });
    let conditions = st
        .conditions
        .iter()
        .all(|c| c.key.starts_with(SSE_KEY) && condition_holds(c, &BTreeMap::new(), world.policy.variables_enabled()));
    everyone && put && every_object && conditions
}

/// An account ID that is neither a member nor a literal of the policy.
fn fresh_account(world: &World<'_>) -> String {
    (0..1000u64)
        .map(|i| format!("{:012}", 999_999_999_999 - i))
        .find(|a| !world.members.contains(a) && !world.compiled.accounts.contains(a))
        .unwrap_or_else(|| "999999999000".to_owned())
}

fn account_principal(account: &str) -> Principal {
    Principal::Account { account: account.to_owned(), arn: format!("arn:aws:iam::{account}:root") }
}

/// The account's principals a statement's `aws:PrincipalArn` conditions ask for (a role
/// named in the condition, `${aws:PrincipalAccount}` standing for the account), root first.
fn account_principals(account: &str, st: &Statement) -> Vec<Principal> {
    let mut out = vec![account_principal(account)];
    let own = format!("arn:aws:iam::{account}:");
    for c in st.conditions.iter().filter(|c| c.key == "aws:principalarn" && !c.op.negated) {
        for v in &c.values {
            let v = v.replace("${aws:PrincipalAccount}", account).replace("${aws:principalaccount}", account);
            // A bare `*` in the account field stands for this account too.
            let v = match v.strip_prefix("arn:aws:iam::*:") {
                Some(rest) => format!("{own}{rest}"),
                None => v,
            };
            if let Some(arn) =
                instance(&v).filter(|arn| arn.starts_with(&own) && (!has_wildcard(&v) || shaped_arn(arn)))
            {
                out.push(Principal::Account { account: account.to_owned(), arn });
            }
        }
    }
    out
}

/// The principals a question's witness may have, most likely first.
fn candidate_principals(world: &World<'_>, q: &Question, st: &Statement) -> Vec<Principal> {
    let literal = |p: &str| (!has_wildcard(p)).then(|| p.to_owned());
    let mut out = Vec::new();
    match q {
        Question::SharedWithCloudFront => {
            for e in st.principal.entries.iter().map(entry_form) {
                match e {
                    EntryForm::Service(_) => {
                        out.push(Principal::Service { name: CLOUDFRONT_SERVICE.into() });
                    }
                    EntryForm::Arn(p) => {
                        if let Some(arn) = literal(&p).filter(|a| a.starts_with(OAI_ARN_PREFIX)) {
                            out.push(Principal::CloudFrontOai { arn, canonical_user: String::new() });
                        }
                    }
                    EntryForm::Canonical(p) => {
                        if let Some(canonical_user) = literal(&p) {
                            out.push(Principal::CloudFrontOai { arn: String::new(), canonical_user });
                        }
                    }
                    _ => {}
                }
            }
        }
        Question::ServiceActingFor(_) => {
            for e in st.principal.entries.iter().map(entry_form) {
                match e {
                    EntryForm::Service(p) => {
                        // A name guessed from a pattern must have the shape the solver gives
                        // service names, so the two agree.
                        let shaped = |n: &String| {
                            !has_wildcard(&p) || crate::decoder::well_shaped(&crate::term::StrVar::Service, n)
                        };
                        if let Some(name) = instance(&p).filter(|n| n != CLOUDFRONT_SERVICE && shaped(n)) {
                            out.push(Principal::Service { name });
                        }
                    }
                    EntryForm::Everyone => out.push(Principal::Service { name: "logging.s3.amazonaws.com".into() }),
                    _ => {}
                }
            }
        }
        Question::SharedWithAccount(a) if a != "*" => {
            out.extend(account_principals(a, st));
            for e in st.principal.entries.iter().map(entry_form) {
                if let EntryForm::Arn(p) = e {
                    // The account's own ARN patterns, wildcards read as `x`.
                    let fits =
                        |arn: &String| arn_account(arn) == Some(a.as_str()) && (!has_wildcard(&p) || shaped_arn(arn));
                    if let Some(arn) = instance(&p).filter(fits) {
                        out.push(Principal::Account { account: a.clone(), arn });
                    }
                }
            }
        }
        _ => {
            out.push(Principal::Anonymous);
            out.extend(account_principals(&fresh_account(world), st));
            // An account the statement's `aws:PrincipalAccount` patterns ask for, when it is
            // neither a member nor named in the policy.
            for c in st.conditions.iter().filter(|c| c.key == "aws:principalaccount" && !c.op.negated) {
                if let Some(account) = c.values.iter().find_map(|v| outside_account_like(world, v)) {
                    out.extend(account_principals(&account, st));
                }
            }
            for e in st.principal.entries.iter().map(entry_form) {
                if let EntryForm::Federated(p) = e {
                    if let Some(provider) = literal(&p) {
                        out.push(Principal::Federated { provider });
                    }
                }
            }
        }
    }
    out
}

/// An account ID that matches wildcard pattern `pattern` and is fresh: not a member, not a
/// literal of the policy.
fn outside_account_like(world: &World<'_>, pattern: &str) -> Option<String> {
    let t = Template::parse(pattern, true, false);
    let fixed: usize =
        t.0.iter()
            .map(|s| match s {
                Seg::Lit(l) => l.chars().count(),
                Seg::Any => 1,
                _ => 0,
            })
            .sum();
    let spare = 12usize.checked_sub(fixed)?;
    ['9', '0', '7'].into_iter().find_map(|digit| {
        let mut star_filled = false;
        let account: String =
            t.0.iter()
                .map(|s| match s {
                    Seg::Lit(l) => l.clone(),
                    Seg::Any => digit.to_string(),
                    Seg::Star if !star_filled => {
                        star_filled = true;
                        digit.to_string().repeat(spare)
                    }
                    _ => String::new(),
                })
                .collect();
        (crate::parser::is_account_id(&account) && t.matches(&account, false) && world.fresh_account_concrete(&account))
            .then_some(account)
    })
}

/// Whether an account principal's ARN has the shape the solver gives one that meets a
/// wildcard pattern (`arn:aws:iam::ACCOUNT:` then `root`, `role/NAME` or `user/NAME`): a
/// witness guessed from a pattern must be one the solver could find too.
fn shaped_arn(arn: &str) -> bool {
    use crate::term::StrVar;
    arn.strip_prefix("arn:aws:iam::").and_then(|rest| rest.split_once(':')).is_some_and(|(account, tail)| {
        crate::decoder::well_shaped(&StrVar::Account, account) && crate::decoder::well_shaped(&StrVar::ArnTail, tail)
    })
}

/// A string that matches `pattern` (`*` and `?` as `x`); `None` with a variable.
fn instance(pattern: &str) -> Option<String> {
    let t = Template::parse(pattern, true, false);
    if t.has_variable() || pattern.contains("${") {
        return None;
    }
    Some(
        t.0.iter()
            .map(|s| match s {
                Seg::Lit(l) => l.clone(),
                _ => "x".to_owned(),
            })
            .collect(),
    )
}

/// A value that makes one (positive, unqualified or ForAnyValue) condition hold; `None` when
/// the key is better left absent.
fn satisfying_value(base: BaseOp, negated: bool, value: &str) -> Option<String> {
    if negated {
        return None;
    }
    let shifted = |f: fn(&str) -> Option<i64>, by: i64| f(value).and_then(|n| n.checked_add(by)).map(|n| n.to_string());
    match base {
        BaseOp::StringEquals | BaseOp::StringEqualsIgnoreCase | BaseOp::Bool | BaseOp::BinaryEquals => {
            (!value.contains("${")).then(|| value.to_owned())
        }
        BaseOp::StringLike | BaseOp::ArnLike => instance(value),
        BaseOp::IpAddress => parse_cidr(value).map(|c| crate::values::format_ip((c.v6, c.net))),
        BaseOp::NumericEquals | BaseOp::NumericLessThanEquals | BaseOp::NumericGreaterThanEquals => {
            shifted(parse_number, 0)
        }
        BaseOp::NumericLessThan => shifted(parse_number, -1),
        BaseOp::NumericGreaterThan => shifted(parse_number, 1),
        BaseOp::DateEquals | BaseOp::DateLessThanEquals | BaseOp::DateGreaterThanEquals => shifted(parse_date, 0),
        BaseOp::DateLessThan => shifted(parse_date, -1),
        BaseOp::DateGreaterThan => shifted(parse_date, 1),
        _ => None,
    }
}

/// The request context a guess carries: the principal keys as the principal implies them,
/// then one value per condition (restricting keys left absent when the question is about
/// untrusted callers, who may not carry their fixed values).
fn context_for(
    world: &World<'_>,
    q: &Question,
    st: &Statement,
    principal: &Principal,
) -> BTreeMap<String, Vec<String>> {
    let mut ctx = principal_context(world, principal);
    // A service acting for an account carries it in every source-account key the policy reads.
    if let Question::ServiceActingFor(account) = q {
        for key in SOURCE_ACCOUNT_KEYS.into_iter().filter(|k| world.compiled.keys.contains_key(*k)) {
            ctx.insert(key.to_owned(), vec![account.clone()]);
        }
    }
    // Public questions are about untrusted callers, who carry no fixed value of a restricting
    // key (absent is always allowed); sharing leaves every non-principal key free. Of the
    // principal keys only an outsider's organization ID and paths are free (never ours).
    let untrusted = matches!(q, Question::PublicRead | Question::PublicWrite);
    for c in &st.conditions {
        if ctx.contains_key(&c.key) {
            continue;
        }
        if PRINCIPAL_KEYS.contains(&c.key.as_str()) {
            if c.op.qualifier != SetQualifier::ForAllValues {
                let value = c.values.iter().find_map(|v| {
                    satisfying_value(c.op.base, c.op.negated, v)
                        .filter(|v| may_set(world, q, principal, &c.key, Some(v)))
                });
                if let Some(v) = value {
                    ctx.insert(c.key.clone(), vec![v]);
                }
            }
            continue;
        }
        if untrusted && world.compiled.fixed.contains_key(&c.key) {
            continue;
        }
        if c.op.base == BaseOp::Null {
            if c.values.iter().any(|v| v.eq_ignore_ascii_case("false")) {
                ctx.insert(c.key.clone(), vec![typed_default(world, &c.key)]);
            }
            continue;
        }
        if c.op.qualifier == SetQualifier::ForAllValues {
            continue;
        }
        if let Some(v) = c
            .values
            .iter()
            .filter_map(|v| satisfying_value(c.op.base, c.op.negated, v))
            .find(|v| well_typed(world, &c.key, v))
        {
            ctx.insert(c.key.clone(), vec![v]);
        }
    }
    // Policy variables take their values from the request itself: a request that gives each
    // variable's key a value and the compared key the text they resolve to matches. Only for
    // an exact encoding, where the solver would find such a request too.
    if world.compiled.exact && world.policy.variables_enabled() {
        fill_variables(world, q, st, principal, &mut ctx);
    }
    ctx
}

/// The principal keys as the principal implies them: its account and ARN, and for a member
/// the organization's ID and paths.
fn principal_context(world: &World<'_>, principal: &Principal) -> BTreeMap<String, Vec<String>> {
    let mut ctx: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let used = |k: &str| world.compiled.keys.contains_key(k);
    if let Principal::Account { account, arn } = principal {
        if used("aws:principalaccount") {
            ctx.insert("aws:principalaccount".into(), vec![account.clone()]);
        }
        if used("aws:principalarn") {
            ctx.insert("aws:principalarn".into(), vec![arn.clone()]);
        }
        if world.members.contains(account) {
            if let Some(org) = &world.ctx.organization_id {
                if used("aws:principalorgid") {
                    ctx.insert("aws:principalorgid".into(), vec![org.clone()]);
                }
                if used("aws:principalorgpaths") && !world.ctx.organization_paths.is_empty() {
                    ctx.insert("aws:principalorgpaths".into(), world.ctx.organization_paths.clone());
                }
            }
        }
    }
    ctx
}

/// Gives the keys of the statement's policy variables values (resource variables first, then
/// positive string and ARN comparisons whose values hold variables), each one a value a
/// witness may carry (`may_set`).
fn fill_variables(
    world: &World<'_>,
    q: &Question,
    st: &Statement,
    principal: &Principal,
    ctx: &mut BTreeMap<String, Vec<String>>,
) {
    let settable = |ctx: &BTreeMap<String, Vec<String>>, key: &str, value: &str| {
        !ctx.contains_key(key) && may_set(world, q, principal, key, Some(value))
    };
    if !st.resource.negated {
        for pattern in st.resource.values.iter().filter(|p| p.contains("${")) {
            for seg in Template::parse(pattern, true, true).0 {
                if let Seg::Var(key) = seg {
                    let value = typed_default(world, &key);
                    if settable(ctx, &key, &value) {
                        ctx.insert(key, vec![value]);
                    }
                }
            }
        }
    }
    for c in &st.conditions {
        let wildcards = match c.op.base {
            BaseOp::StringEquals => false,
            BaseOp::StringLike | BaseOp::ArnLike => true,
            _ => continue,
        };
        if c.op.negated || c.op.qualifier == SetQualifier::ForAllValues {
            continue;
        }
        for pattern in c.values.iter().filter(|v| v.contains("${")) {
            let template = Template::parse(pattern, wildcards, true);
            let done = match ctx.get(&c.key).and_then(|v| v.first()).cloned() {
                // The compared key already has its value (a principal key, say): the one
                // variable left between literals takes the text between them.
                Some(current) => match unknown_between_literals(&template, ctx, &current) {
                    Some((key, value)) if !value.is_empty() && settable(ctx, &key, &value) => {
                        ctx.insert(key, vec![value]);
                        true
                    }
                    _ => false,
                },
                None => {
                    let mut added = Vec::new();
                    for seg in &template.0 {
                        if let Seg::Var(key) = seg {
                            let value = typed_default(world, key);
                            if settable(ctx, key, &value) {
                                ctx.insert(key.clone(), vec![value]);
                                added.push(key.clone());
                            }
                        }
                    }
                    let resolved = template.resolve(ctx).map(|t| {
                        t.0.iter()
                            .map(|s| match s {
                                Seg::Lit(l) => l.as_str(),
                                _ => "x",
                            })
                            .collect::<String>()
                    });
                    match resolved {
                        Some(value) if settable(ctx, &c.key, &value) => {
                            ctx.insert(c.key.clone(), vec![value]);
                            true
                        }
                        _ => {
                            for key in added {
                                ctx.remove(&key);
                            }
                            false
                        }
                    }
                }
            };
            if done {
                break;
            }
        }
    }
}

/// For a template of literals and variables whose variables are all known but one: that
/// variable's key and the value that makes the template read `text`.
fn unknown_between_literals(
    template: &Template,
    ctx: &BTreeMap<String, Vec<String>>,
    text: &str,
) -> Option<(String, String)> {
    let mut before = String::new();
    let mut after = String::new();
    let mut unknown: Option<&str> = None;
    for seg in &template.0 {
        let piece = match seg {
            Seg::Lit(l) => l.as_str(),
            Seg::Var(key) => match ctx.get(key).and_then(|v| v.first()) {
                Some(v) => v.as_str(),
                None if unknown.is_none() => {
                    unknown = Some(key);
                    continue;
                }
                None => return None,
            },
            Seg::Star | Seg::Any => return None,
        };
        if unknown.is_none() {
            before.push_str(piece);
        } else {
            after.push_str(piece);
        }
    }
    let middle = text.strip_prefix(&before)?.strip_suffix(&after)?;
    Some((unknown?.to_owned(), middle.to_owned()))
}

/// Whether `v` is a value of the sorts the policy compares `key` as: the solver's model never
/// holds an ill-typed value (an IP key is an address, a date key a number), so a witness may
/// not either.
fn well_typed(world: &World<'_>, key: &str, v: &str) -> bool {
    let Some(shape) = world.compiled.keys.get(key) else { return true };
    let ip = !shape.sorts.contains(&ValueSort::Ip) || crate::values::parse_ip(v).is_some();
    let int = !shape.sorts.contains(&ValueSort::Int) || parse_number(v).or_else(|| parse_date(v)).is_some();
    // A key only `Null` reads (no sort) may hold anything; one `Bool` reads, only a boolean.
    let boolean = !shape.bool_only || shape.sorts.is_empty() || v == "true" || v == "false";
    ip && int && boolean && accepted(key, v)
}

/// Some well-typed value for `key` (for an encryption header, one S3 accepts).
fn typed_default(world: &World<'_>, key: &str) -> String {
    if let Some(values) = accepted_values(key) {
        return values[0].to_owned();
    }
    match world.compiled.keys.get(key) {
        Some(shape) if shape.sorts.contains(&ValueSort::Ip) => "203.0.113.7".to_owned(),
        Some(shape) if shape.sorts.contains(&ValueSort::Int) => "1".to_owned(),
        Some(shape) if shape.bool_only => "false".to_owned(),
        _ => "x".to_owned(),
    }
}

/// Whether S3 accepts `value` in encryption header `key` (other keys: any value).
fn accepted(key: &str, value: &str) -> bool {
    accepted_values(key).is_none_or(|values| values.contains(&value))
}

/// Candidate resources for `action` under a statement's Resource clause.
fn candidate_resources(
    world: &World<'_>,
    st: &Statement,
    action: usize,
    context: &BTreeMap<String, Vec<String>>,
) -> Vec<String> {
    let bucket_arn = format!("arn:aws:s3:::{}", world.bucket);
    if action < actions::bucket_count() {
        return vec![bucket_arn];
    }
    let mut out = Vec::new();
    if !st.resource.negated {
        let prefix = format!("{bucket_arn}/");
        for p in &st.resource.values {
            // Variables read the request's own values, as the evaluator resolves them.
            let parsed = Template::parse(p, true, world.policy.variables_enabled());
            let Some(t) = parsed.resolve(context) else { continue };
            for r in t.residuals(&prefix).iter().take(2) {
                let key: String =
                    r.0.iter()
                        .map(|s| match s {
                            Seg::Lit(l) => l.clone(),
                            _ => "x".to_owned(),
                        })
                        .collect();
                out.push(format!("{prefix}{}", if key.is_empty() { "x" } else { &key }));
            }
        }
    }
    out.push(format!("{bucket_arn}/x"));
    out
}

/// Looks for a witness of `q` among requests built from the Allow statements' literals (for
/// unencrypted uploads: a plain PutObject with no encryption header).
fn guess(world: &World<'_>, q: &Question) -> Option<Witness> {
    const MAX_TRIES: usize = 64;
    let check = |request: Request| -> Option<Witness> {
        let w = Witness::from_request(q.clone(), &request);
        world.check_witness(q, &w).is_none().then_some(w)
    };
    if *q == Question::UnencryptedUpload {
        let put = actions::index_of("s3:PutObject")?;
        let fresh = fresh_account(world);
        for principal in [Principal::Anonymous, account_principal(&fresh), account_principal(&world.ctx.owner_account)]
        {
            let resource = format!("arn:aws:s3:::{}/x", world.bucket);
            let context = principal_context(world, &principal);
            let request = Request { principal, action: actions::name(put).into(), resource, context };
            if let Some(w) = check(request.clone()) {
                return Some(w);
            }
            if let Some(w) = escape_denies(world, q, &request, &check, 2) {
                return Some(w);
            }
        }
        return None;
    }
    let mut tries = 0;
    let check = &check;
    for st in world.policy.statements.iter().filter(|s| s.effect == Effect::Allow) {
        // Actions whose resource the statement names first (a bucket action needs the bucket's
        // ARN), and of those the ones no Deny statement names: a request a Deny without
        // conditions catches cannot be escaped.
        let mut acts: Vec<usize> =
            statement_actions(world, st).iter().copied().filter(|&a| question_action(q, a)).collect();
        let bucket_arn = format!("arn:aws:s3:::{}", world.bucket);
        let names_bucket = st.resource.negated
            || st.resource.values.iter().any(|p| Template::parse(p, true, false).matches(&bucket_arn, false));
        let denied = |a: usize| {
            world.policy.statements.iter().any(|d| d.effect == Effect::Deny && statement_actions(world, d).contains(&a))
        };
        acts.sort_by_key(|&a| (a < actions::bucket_count() && !names_bucket, denied(a)));
        acts.truncate(2);
        for principal in candidate_principals(world, q, st) {
            let context = context_for(world, q, st, &principal);
            for &action in &acts {
                for resource in candidate_resources(world, st, action, &context) {
                    tries += 1;
                    if tries > MAX_TRIES {
                        return None;
                    }
                    let request = Request {
                        principal: principal.clone(),
                        action: actions::name(action).into(),
                        resource,
                        context: context.clone(),
                    };
                    if let Some(w) = check(request.clone()) {
                        return Some(w);
                    }
                    if let Some(w) = escape_denies(world, q, &request, &check, 2) {
                        return Some(w);
                    }
                }
            }
        }
    }
    None
}

/// A request that some Deny catches, changed so that one condition of that Deny fails: a
/// negated comparison gets a value it compares equal to, a positive one loses its key, a
/// `Null` test flips. Each change must keep the request in the question (`may_set`); then
/// the evaluator judges again, up to `depth` Denies deep.
fn escape_denies(
    world: &World<'_>,
    q: &Question,
    request: &Request,
    check: &dyn Fn(Request) -> Option<Witness>,
    depth: usize,
) -> Option<Witness> {
    if depth == 0 {
        return None;
    }
    let vars = world.policy.variables_enabled();
    let denying = world
        .policy
        .statements
        .iter()
        .filter(|st| st.effect == Effect::Deny && crate::eval::statement_matches(st, request, vars, false));
    for deny in denying.take(2) {
        for c in deny.conditions.iter().filter(|c| condition_holds(c, &request.context, vars)) {
            let mut variants: Vec<Option<String>> = Vec::new();
            match (c.op.base, c.op.negated) {
                (BaseOp::Null, _) => {
                    let present = request.context.contains_key(&c.key);
                    variants.push(if present { None } else { Some(typed_default(world, &c.key)) });
                }
                (_, true) => {
                    variants.extend(
                        c.values.iter().take(3).filter_map(|v| satisfying_value(c.op.base, false, v)).map(Some),
                    );
                }
                (_, false) => {
                    variants.push(None);
                    // `...IfExists` holds for an absent key too: a value it does not match.
                    if c.op.if_exists {
                        let unmatched = [typed_default(world, &c.key), "true".into(), "false".into(), "x".into()]
                            .into_iter()
                            .find(|value| {
                                well_typed(world, &c.key, value)
                                    && !c
                                        .values
                                        .iter()
                                        .any(|v| crate::eval::base_matches(c.op.base, v, value, &request.context, vars))
                            });
                        variants.extend(unmatched.map(Some));
                    }
                }
            }
            for value in variants {
                if !may_set(world, q, &request.principal, &c.key, value.as_deref()) {
                    continue;
                }
                let mut changed = request.clone();
                match value {
                    Some(v) => changed.context.insert(c.key.clone(), vec![v]),
                    None => changed.context.remove(&c.key),
                };
                if let Some(w) = check(changed.clone()) {
                    return Some(w);
                }
                if let Some(w) = escape_denies(world, q, &changed, check, depth - 1) {
                    return Some(w);
                }
            }
        }
    }
    None
}

/// May a witness of `q` carry `value` (or nothing) for `key`? Principal keys follow from the
/// principal (only an outsider's organization keys are free, and never ours); the encryption
/// headers take accepted values; in public questions a restricting key (an organization key
/// too: an untrusted caller is in no organization the policy names) never carries one of its
/// fixed values.
fn may_set(world: &World<'_>, q: &Question, principal: &Principal, key: &str, value: Option<&str>) -> bool {
    if PRINCIPAL_KEYS.contains(&key) {
        let outsider = matches!(principal, Principal::Account { account, .. } if !world.members.contains(account));
        let org = world.ctx.organization_id.as_deref();
        let free = outsider
            && match (key, value) {
                (_, None) => true,
                ("aws:principalorgid", Some(v)) => Some(v) != org,
                ("aws:principalorgpaths", Some(v)) => org.is_none_or(|o| !v.starts_with(&format!("{o}/"))),
                _ => false,
            };
        if !free {
            return false;
        }
    }
    let Some(v) = value else { return true };
    if !well_typed(world, key, v) {
        return false;
    }
    if is_public(q) {
        if let Some(fixed) = world.compiled.fixed.get(key) {
            let ip = crate::values::parse_ip(v);
            return !fixed.iter().any(|f| match f {
                crate::compiler::Fixed::Lit { value, ignore_case } => {
                    if *ignore_case {
                        value.eq_ignore_ascii_case(v)
                    } else {
                        value == v
                    }
                }
                crate::compiler::Fixed::Pattern(p) => p.matches(v, false),
                crate::compiler::Fixed::Cidr(c) => ip.is_none_or(|ip| c.contains(ip)),
            });
        }
    }
    true
}
