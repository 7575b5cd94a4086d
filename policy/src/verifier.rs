//! The verifier: drives each question (`question`) through the pre-solver and then Z3 (one
//! solver per thread, push/pop per question, a budget per check, `solver`), and turns a model
//! into a witness that the concrete evaluator must confirm.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use z3::{SatResult, Solver};

use crate::actions;
use crate::analysis::{Analysis, AnalysisOptions, AnalysisStats, OrgContext, Question, SharedAccess, Tri, Witness};
use crate::ast::Policy;
use crate::decoder::decode;
use crate::eval::{Principal, Request};
use crate::question::{Verdict, World};
use crate::smt::Encoder;
use crate::solver::{new_solver, return_solver, set_budget, take_solver, Budget, KEEP_SOLVER_BELOW, MIN_CHECK};
use crate::term::{self, and, not, or, Kind, StrVar, Term, FALSE};
use crate::values::{Seg, Template};

/// Answers every question for a parsed policy, within the budget that ends at `deadline`.
pub(crate) fn analyze_policy(
    policy: &Policy,
    bucket: &str,
    ctx: &OrgContext,
    opts: &AnalysisOptions,
    deadline: Instant,
) -> Analysis {
    let world = World::new(policy, bucket, ctx);
    let questions = world.questions();
    let mut stats = AnalysisStats { questions: questions.len() as u32, ..Default::default() };
    let decided: Vec<Option<Verdict>> = questions
        .iter()
        .map(|q| if opts.presolve && Instant::now() < deadline { crate::presolve::decide(&world, q) } else { None })
        .collect();
    // Terms only for what is left to the solver (a decided question's term is never read).
    let terms: Vec<Term> =
        questions.iter().zip(&decided).map(|(q, d)| if d.is_some() { FALSE } else { world.question_term(q) }).collect();
    let verdicts = solve(&world, &questions, &terms, decided, opts, deadline, &mut stats);
    let mut analysis = assemble(&world, &questions, verdicts, opts.budget);
    analysis.stats = stats;
    analysis
}

/// Turns a decoded witness into a verdict once the concrete evaluator has confirmed it. When it
/// does not, the verdict is UNKNOWN: expected with an opaque (unsupported) construct, a bug
/// otherwise (and a debug assertion).
fn confirm(world: &World<'_>, q: &Question, witness: Witness, term: &Term, has_opaque: bool) -> Verdict {
    let verdict = weigh(world, q, witness, term, has_opaque);
    debug_assert!(
        !verdict.reason.as_deref().is_some_and(|r| r.starts_with(DISAGREE)),
        "{}",
        verdict.reason.as_deref().unwrap_or_default()
    );
    verdict
}

const DISAGREE: &str = "solver and evaluator disagree";

/// [`confirm`]'s verdict, without its debug assertion (so that tests see the verdict in
/// every build).
fn weigh(world: &World<'_>, q: &Question, witness: Witness, term: &Term, has_opaque: bool) -> Verdict {
    let Some(why) = world.check_witness(q, &witness) else {
        return Verdict { answer: Tri::True, witness: Some(witness), reason: None };
    };
    let reason = if has_opaque {
        let mut reasons = BTreeSet::new();
        term.opaque_reasons(&mut reasons);
        let list: Vec<String> = reasons.into_iter().collect();
        format!("unsupported construct ({}): {why}", list.join(", "))
    } else {
        format!("{DISAGREE}: {why}: {witness:?}")
    };
    Verdict { answer: Tri::Unknown, witness: None, reason: Some(reason) }
}

/// The reason of a question the budget did not reach (grouped into one line by `assemble`).
const NOT_REACHED: &str = "not reached";

/// Pushes a scope holding `term` and the definitions of the variables it uses, and checks it.
/// One encoder per check: only what the term touches is asserted, inside its scope (Z3's
/// sequence solver is much faster so). `members_only`: `term` asserts that the principal is a
/// member account. The caller reads the model with the returned encoder, then pops the scope.
fn check_in_scope<'w>(
    solver: &Solver,
    world: &'w World<'_>,
    term: &Term,
    members_only: bool,
    label: String,
    stats: &mut AnalysisStats,
    slowest: &mut Duration,
) -> (SatResult, Encoder<'w>) {
    let mut enc = Encoder::new(&world.compiled.keys);
    let formula = enc.lower(term);
    let axioms = definitions(world, &mut enc, members_only);
    solver.push();
    for a in enc.side.iter().chain(&axioms) {
        solver.assert(a);
    }
    solver.assert(&formula);
    stats.solver_calls += 1;
    stats.solved.push(label);
    let checked = Instant::now();
    let res = solver.check();
    *slowest = (*slowest).max(checked.elapsed());
    (res, enc)
}

/// Decides a batch of questions with one solver, each check limited to what is left of the
/// policy's budget.
pub(crate) fn solve(
    world: &World<'_>,
    questions: &[Question],
    terms: &[Term],
    decided: Vec<Option<Verdict>>,
    opts: &AnalysisOptions,
    deadline: Instant,
    stats: &mut AnalysisStats,
) -> Vec<Verdict> {
    let mut verdicts: Vec<Option<Verdict>> = terms
        .iter()
        .zip(decided)
        .map(|(t, d)| {
            d.or_else(|| (*t == FALSE).then_some(Verdict { answer: Tri::False, witness: None, reason: None }))
        })
        .collect();
    stats.decided_before_solver = verdicts.iter().filter(|v| v.is_some()).count() as u32;
    if verdicts.iter().all(Option::is_some) {
        return verdicts.into_iter().flatten().collect();
    }
    let (mut solver, mut uses) = take_solver(Budget::of(opts));
    let mut slowest = Duration::ZERO;
    let has_opaque = terms.iter().any(Term::has_opaque);
    // The member accounts whose sharing is left to the solver form one class: one query asks
    // whether any of them gets in. Its usual answer, no, decides every one of them (each
    // question's assertion implies the class's); a yes or an unknown (it has a quarter of the
    // budget) leaves them to their own questions, which find the witnesses.
    let class: Vec<usize> = questions
        .iter()
        .enumerate()
        .filter(|(i, q)| {
            verdicts[*i].is_none() && matches!(q, Question::SharedWithAccount(a) if world.members.contains(a))
        })
        .map(|(i, _)| i)
        .collect();
    let left = deadline.saturating_duration_since(Instant::now());
    if class.len() >= 2 && left >= MIN_CHECK {
        let accounts = class.iter().filter_map(|&i| match &questions[i] {
            Question::SharedWithAccount(a) => Some(term::str_eq(StrVar::Account, a)),
            _ => None,
        });
        let term = and([world.allowed(), Term::KindIs(Kind::Account), or(accounts)]);
        // A quarter of what is left: on a hard policy the class query may not answer, and the
        // members' own questions must still have the time they had without it.
        set_budget(&solver, Budget::of(opts).with_time(left / 4));
        let label = format!("sharedWithAccount:members({})", class.len());
        let (res, _) = check_in_scope(&solver, world, &term, true, label, stats, &mut slowest);
        solver.pop(1);
        if res == SatResult::Unsat {
            for &i in &class {
                verdicts[i] = Some(Verdict { answer: Tri::False, witness: None, reason: None });
            }
        }
        // A solver is not used again after a canceled check (see below). Nor after a model when
        // the policy has opaque parts: what Z3 learned could change which model the members'
        // own questions get, and an opaque witness the evaluator cannot confirm is UNKNOWN, so
        // they run as they would have without the class query.
        if res == SatResult::Unknown || (res == SatResult::Sat && has_opaque) {
            solver = new_solver(Budget::of(opts));
            uses = 1;
        }
    }
    for (i, q) in questions.iter().enumerate() {
        if verdicts[i].is_some() {
            continue;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left < MIN_CHECK {
            verdicts[i] = Some(Verdict { answer: Tri::Unknown, witness: None, reason: Some(NOT_REACHED.into()) });
            continue;
        }
        set_budget(&solver, Budget::of(opts).with_time(left));
        let member = matches!(q, Question::SharedWithAccount(a) if world.members.contains(a));
        let (res, enc) = check_in_scope(&solver, world, &terms[i], member, q.to_string(), stats, &mut slowest);
        let verdict = match res {
            SatResult::Unsat => Verdict { answer: Tri::False, witness: None, reason: None },
            SatResult::Unknown => Verdict {
                answer: Tri::Unknown,
                witness: None,
                reason: Some(match solver.get_reason_unknown() {
                    // Z3 says "canceled" for its resource bound as for its timer: time tells them apart.
                    Some(r) if r == "timeout" || r == "canceled" || r.contains("resource limit") => {
                        match opts.resource_limit {
                            Some(units) if Instant::now() < deadline => {
                                format!("the solver ran out of its budget of {units} resource units ({r})")
                            }
                            _ => format!(
                                "the solver ran out of the policy's {} ms budget ({r})",
                                opts.budget.as_millis()
                            ),
                        }
                    }
                    Some(r) => format!("the solver gave up ({r})"),
                    None => "the solver gave up".into(),
                }),
            },
            SatResult::Sat => match solver.get_model() {
                None => {
                    Verdict { answer: Tri::Unknown, witness: None, reason: Some("the solver gave no model".into()) }
                }
                Some(model) => {
                    let request = decode(&model, &enc, world.bucket, &world.compiled.keys);
                    let witness = Witness::from_request(q.clone(), &request);
                    confirm(world, q, witness, &terms[i], has_opaque)
                }
            },
        };
        solver.pop(1);
        if res == SatResult::Unknown {
            // Z3 4.8.12 may crash when an incremental solver is used again after a canceled
            // check: the next questions get a new one.
            solver = new_solver(Budget::of(opts));
            uses = 1;
        }
        verdicts[i] = Some(verdict);
    }
    // A solver that worked long may hold much of Z3's memory, which counts against the
    // process-wide ceiling: the next analysis starts afresh instead.
    if slowest < KEEP_SOLVER_BELOW {
        return_solver(solver, uses);
    }
    verdicts
        .into_iter()
        .map(|v| v.unwrap_or(Verdict { answer: Tri::Unknown, witness: None, reason: Some("not asked".into()) }))
        .collect()
}

/// Definitions of the variables in use, to a fixpoint (definitions create variables).
fn definitions(world: &World<'_>, enc: &mut Encoder<'_>, members_only: bool) -> Vec<z3::ast::Bool> {
    let mut axioms = Vec::new();
    let mut done_vars: BTreeSet<StrVar> = BTreeSet::new();
    let mut done_keys: BTreeSet<String> = BTreeSet::new();
    let mut done_shapes: BTreeSet<StrVar> = BTreeSet::new();
    loop {
        let vars: Vec<StrVar> = enc.strs.keys().filter(|v| !done_vars.contains(*v)).cloned().collect();
        let shapes: Vec<StrVar> = enc.pattern_vars.iter().filter(|v| !done_shapes.contains(*v)).cloned().collect();
        let keys: BTreeSet<String> = enc
            .present
            .keys()
            .cloned()
            .chain(enc.strs.keys().filter_map(|v| match v {
                StrVar::Slot(k, _) => Some(k.clone()),
                _ => None,
            }))
            .filter(|k| !done_keys.contains(k))
            .collect();
        if vars.is_empty() && keys.is_empty() && shapes.is_empty() {
            return axioms;
        }
        for v in shapes {
            if let Some(a) = world.shape_for_var(&v) {
                axioms.push(enc.lower(&a));
            }
            done_shapes.insert(v);
        }
        for v in vars {
            if let Some(a) = world.axiom_for_var(&v) {
                axioms.push(enc.lower(&a));
            }
            if let StrVar::Slot(k, i) = &v {
                if let Some(a) = world.axiom_for_slot(k, *i) {
                    axioms.push(enc.lower(&a));
                }
            }
            done_vars.insert(v);
        }
        for k in keys {
            if let Some(a) = world.axiom_for_key(&k, members_only) {
                axioms.push(enc.lower(&a));
            }
            done_keys.insert(k);
        }
    }
}

fn assemble(world: &World<'_>, questions: &[Question], verdicts: Vec<Verdict>, budget: Duration) -> Analysis {
    let mut by_q: BTreeMap<Question, Tri> = BTreeMap::new();
    let mut witnesses = Vec::new();
    let mut unknown_reasons = Vec::new();
    let mut internal = Vec::new();
    let mut external = Vec::new();
    let mut sharing_unknown = false;
    let mut not_reached: Vec<String> = Vec::new();
    for (q, v) in questions.iter().zip(verdicts) {
        if let Some(w) = v.witness {
            witnesses.push(w);
        }
        match v.reason {
            Some(r) if r == NOT_REACHED => not_reached.push(q.to_string()),
            Some(r) => unknown_reasons.push(format!("{q}: {r}")),
            None => {}
        }
        if let Question::SharedWithAccount(a) | Question::ServiceActingFor(a) = q {
            match v.answer {
                Tri::True if world.members.contains(a) => internal.push(a.clone()),
                Tri::True => external.push(a.clone()),
                Tri::Unknown => sharing_unknown = true,
                Tri::False => {}
            }
        }
        by_q.insert(q.clone(), v.answer);
    }
    if !not_reached.is_empty() {
        const NAMED: usize = 5;
        let more = not_reached.len().saturating_sub(NAMED);
        let mut named = not_reached.iter().take(NAMED).cloned().collect::<Vec<_>>().join(", ");
        if more > 0 {
            named.push_str(&format!(" and {more} more"));
        }
        unknown_reasons.push(format!(
            "the policy's analysis budget of {} ms ran out before {} question(s): {named}",
            budget.as_millis(),
            not_reached.len()
        ));
    }
    // An account may get in both as a principal and through a service acting for it.
    for accounts in [&mut internal, &mut external] {
        accounts.sort();
        accounts.dedup();
    }
    let get = |q: Question| by_q.get(&q).copied().unwrap_or(Tri::Unknown);
    let cloudfront = get(Question::SharedWithCloudFront);
    let shared_access = if !external.is_empty() || cloudfront == Tri::True {
        SharedAccess::External
    } else if sharing_unknown || cloudfront == Tri::Unknown {
        SharedAccess::Unknown
    } else if !internal.is_empty() {
        SharedAccess::Internal
    } else {
        SharedAccess::NotShared
    };
    Analysis {
        allows_public_read_access: get(Question::PublicRead),
        allows_public_write_access: get(Question::PublicWrite),
        shared_access,
        shared_with_cloudfront: cloudfront,
        allows_unencrypted_object_uploads: get(Question::UnencryptedUpload),
        internal_accounts: internal,
        external_accounts: external,
        witnesses,
        unknown_reasons,
        internal_error: false,
        stats: AnalysisStats::default(),
    }
}

/// The term "the request is exactly `r`" (keys the policy does not use are ignored).
fn request_is(world: &World<'_>, r: &Request) -> Term {
    let mut parts = Vec::new();
    match &r.principal {
        Principal::Anonymous => parts.push(Term::KindIs(Kind::Anonymous)),
        Principal::Account { account, arn } => {
            parts.push(Term::KindIs(Kind::Account));
            parts.push(term::str_eq(StrVar::Account, account));
            parts.push(crate::compiler::account_arn_match(&Template(vec![Seg::Lit(arn.clone())])));
        }
        Principal::Service { name } => {
            parts.push(Term::KindIs(Kind::Service));
            parts.push(term::str_eq(StrVar::Service, name));
        }
        Principal::CloudFrontOai { arn, canonical_user } => {
            parts.push(Term::KindIs(Kind::Oai));
            parts.push(match arn.strip_prefix(crate::analysis::OAI_ARN_PREFIX) {
                Some(id) => term::str_eq(StrVar::OaiId, id),
                None => FALSE,
            });
            parts.push(term::str_eq(StrVar::Canonical, canonical_user));
        }
        Principal::Federated { provider } => {
            parts.push(Term::KindIs(Kind::Federated));
            parts.push(term::str_eq(StrVar::Federated, provider));
        }
    }
    parts.push(actions::index_of(&r.action).map_or(FALSE, |i| term::action_in([i])));
    let object_prefix = format!("arn:aws:s3:::{}/", world.bucket);
    parts.push(match r.resource.strip_prefix(&object_prefix) {
        Some(key) => term::str_eq(StrVar::Key, key),
        None => Term::Const(r.resource == format!("arn:aws:s3:::{}", world.bucket)),
    });
    for (key, shape) in &world.compiled.keys {
        match r.context.get(key) {
            None => parts.push(not(Term::Present(key.clone()))),
            Some(values) => {
                parts.push(Term::Present(key.clone()));
                if shape.multi {
                    parts.push(Term::CountEq(key.clone(), values.len()));
                } else if values.len() != 1 {
                    parts.push(FALSE);
                }
                if values.len() > shape.slots {
                    parts.push(FALSE);
                }
                for (i, v) in values.iter().enumerate().take(shape.slots) {
                    for sort in &shape.sorts {
                        parts.push(match sort {
                            crate::ast::ValueSort::Str => term::str_eq(StrVar::Slot(key.clone(), i), v),
                            crate::ast::ValueSort::Ip => match crate::values::parse_ip(v) {
                                Some((v6, bits)) => Term::IpIn {
                                    key: key.clone(),
                                    slot: i,
                                    cidr: crate::values::Cidr { v6, net: bits, prefix: if v6 { 128 } else { 32 } },
                                },
                                None => FALSE,
                            },
                            crate::ast::ValueSort::Int => {
                                match crate::values::parse_number(v).or_else(|| crate::values::parse_date(v)) {
                                    Some(n) => Term::IntCmp { key: key.clone(), slot: i, cmp: term::Cmp::Eq, value: n },
                                    None => FALSE,
                                }
                            }
                        });
                    }
                }
            }
        }
    }
    and(parts)
}

/// Is some request of `requests` allowed, according to the solver?
pub fn allows_some(
    policy: &Policy,
    bucket: &str,
    ctx: &OrgContext,
    requests: &[Request],
    opts: &AnalysisOptions,
) -> Tri {
    let world = World::new(policy, bucket, ctx);
    let t = and([world.allowed(), or(requests.iter().map(|r| request_is(&world, r)))]);
    if t == FALSE {
        return Tri::False;
    }
    match solve_plain(&world, &t, opts) {
        SatResult::Sat => Tri::True,
        SatResult::Unsat => Tri::False,
        SatResult::Unknown => Tri::Unknown,
    }
}

fn solve_plain(world: &World<'_>, t: &Term, opts: &AnalysisOptions) -> SatResult {
    let mut enc = Encoder::new(&world.compiled.keys);
    let f = enc.lower(t);
    let axioms = definitions(world, &mut enc, false);
    let (solver, uses) = take_solver(Budget::of(opts));
    solver.push();
    for a in enc.side.iter().chain(&axioms) {
        solver.assert(a);
    }
    solver.assert(&f);
    let res = solver.check();
    solver.pop(1);
    if res != SatResult::Unknown {
        return_solver(solver, uses);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> OrgContext {
        OrgContext {
            owner_account: "111111111111".parse().unwrap(),
            organization_id: Some("o-exampleorg1".into()),
            member_accounts: std::sync::Arc::new(
                ["111111111111", "222222222222", "333333333333"].iter().map(|s| s.parse().unwrap()).collect(),
            ),
            organization_paths: vec!["o-exampleorg1/r-ab12/ou-ab12-11111111/".into()],
        }
    }

    /// With the pre-solver off every member question reaches the solver: the members are asked
    /// as one class first, which decides them when none gets in and leaves them to their own
    /// questions (and witnesses) when one does.
    #[test]
    fn members_are_asked_as_one_class_first() {
        let solver_only = AnalysisOptions { presolve: false, ..AnalysisOptions::default() };
        let analyse = |statements: &str| {
            let text = format!(r#"{{"Version":"2012-10-17","Statement":[{statements}]}}"#);
            crate::analyze(&text, "example-bucket", &ctx(), &solver_only).unwrap()
        };
        let nobody = analyse(
            r#"{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111111111111:root"},"Action":"s3:GetObject","Resource":"arn:aws:s3:::example-bucket/*"}"#,
        );
        assert!(nobody.stats.solved.contains(&"sharedWithAccount:members(2)".to_owned()), "{:?}", nobody.stats);
        assert!(!nobody.stats.solved.iter().any(|q| q == "sharedWithAccount:222222222222"), "decided by the class");
        assert_eq!(nobody.shared_access, SharedAccess::NotShared);

        let one = analyse(
            r#"{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::333333333333:root"},"Action":"s3:GetObject","Resource":"arn:aws:s3:::example-bucket/*"}"#,
        );
        assert!(one.stats.solved.iter().any(|q| q == "sharedWithAccount:222222222222"), "{:?}", one.stats);
        assert_eq!(
            (one.internal_accounts.clone(), one.shared_access),
            (vec!["333333333333".to_owned()], SharedAccess::Internal)
        );
    }

    fn run(statements: &str) -> Analysis {
        let text = format!(r#"{{"Version":"2012-10-17","Statement":[{statements}]}}"#);
        let a = crate::analyze(&text, "example-bucket", &ctx(), &AnalysisOptions::default()).unwrap();
        let policy = crate::parse_policy(&text).unwrap();
        let c = ctx();
        let world = World::new(&policy, "example-bucket", &c);
        for w in &a.witnesses {
            assert_eq!(world.check_witness(&w.question, w), None, "{w:?}");
        }
        a
    }

    #[test]
    fn public_read() {
        let a = run(
            r#"{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::example-bucket/*"}"#,
        );
        assert_eq!(a.allows_public_read_access, Tri::True);
        assert_eq!(a.allows_public_write_access, Tri::False);
        assert_eq!(a.shared_access, SharedAccess::External);
        assert_eq!(a.external_accounts, vec!["*"]);
        assert_eq!(a.internal_accounts, vec!["222222222222", "333333333333"]);
        assert_eq!(a.shared_with_cloudfront, Tri::False);
        assert_eq!(a.allows_unencrypted_object_uploads, Tri::True);
        assert!(a.unknown_reasons.is_empty(), "{:?}", a.unknown_reasons);
    }

    #[test]
    fn organization_only() {
        let a = run(
            r#"{"Effect":"Allow","Principal":"*","Action":"s3:*","Resource":["arn:aws:s3:::example-bucket","arn:aws:s3:::example-bucket/*"],
                "Condition":{"StringEquals":{"aws:PrincipalOrgID":"o-exampleorg1"}}}"#,
        );
        assert_eq!(a.allows_public_read_access, Tri::False);
        assert_eq!(a.allows_public_write_access, Tri::False);
        assert_eq!(a.shared_access, SharedAccess::Internal);
        assert_eq!(a.internal_accounts, vec!["222222222222", "333333333333"]);
        assert!(a.external_accounts.is_empty());
    }

    /// A path under our organization can only be carried by its members, whether or not the
    /// OU tree is known; a path under another organization only by outsiders.
    #[test]
    fn organization_paths_decide_with_and_without_the_tree() {
        let ours = r#"{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::example-bucket/*",
            "Condition":{"ForAnyValue:StringLike":{"aws:PrincipalOrgPaths":"o-exampleorg1/*"}}}"#;
        let theirs = r#"{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::example-bucket/*",
            "Condition":{"ForAnyValue:StringLike":{"aws:PrincipalOrgPaths":"o-otherorg22/*"}}}"#;
        let text = |st: &str| format!(r#"{{"Version":"2012-10-17","Statement":[{st}]}}"#);
        for paths in [vec![], ctx().organization_paths] {
            for presolve in [true, false] {
                let c = OrgContext { organization_paths: paths.clone(), ..ctx() };
                let options = AnalysisOptions { presolve, ..AnalysisOptions::default() };
                let what = format!("paths {paths:?}, presolve {presolve}");
                let a = crate::analyze(&text(ours), "example-bucket", &c, &options).unwrap();
                assert_eq!(a.shared_access, SharedAccess::Internal, "{what}: {a:?}");
                assert_eq!(a.internal_accounts, vec!["222222222222", "333333333333"], "{what}");
                assert_eq!(a.allows_public_read_access, Tri::False, "{what}");
                let a = crate::analyze(&text(theirs), "example-bucket", &c, &options).unwrap();
                assert_eq!(a.shared_access, SharedAccess::External, "{what}: {a:?}");
                assert!(a.internal_accounts.is_empty(), "{what}: {a:?}");
            }
        }
    }

    #[test]
    fn encryption_required() {
        let deny_null = r#"{"Effect":"Deny","Principal":"*","Action":"s3:PutObject","Resource":"arn:aws:s3:::example-bucket/*","Condition":{"Null":{"s3:x-amz-server-side-encryption":"true"}}}"#;
        let deny_ne = r#"{"Effect":"Deny","Principal":"*","Action":"s3:PutObject","Resource":"arn:aws:s3:::example-bucket/*","Condition":{"StringNotEquals":{"s3:x-amz-server-side-encryption":["AES256","aws:kms"]}}}"#;
        // S3 rejects any header value but the accepted ones: the Null deny alone covers every
        // PutObject without encryption that S3 would store.
        assert_eq!(run(deny_null).allows_unencrypted_object_uploads, Tri::False);
        let deny_aes_only = r#"{"Effect":"Deny","Principal":"*","Action":"s3:PutObject","Resource":"arn:aws:s3:::example-bucket/*","Condition":{"StringEquals":{"s3:x-amz-server-side-encryption":"AES256"}}}"#;
        assert_eq!(run(deny_aes_only).allows_unencrypted_object_uploads, Tri::True);
        assert_eq!(run(deny_ne).allows_unencrypted_object_uploads, Tri::False);
        let both = format!("{deny_null},{deny_ne}");
        assert_eq!(run(&both).allows_unencrypted_object_uploads, Tri::False);
    }

    #[test]
    fn cloudfront_oai_and_oac() {
        let a = run(
            r#"{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::cloudfront:user/CloudFront Origin Access Identity E2QWRUHAPOMQZL"},"Action":"s3:GetObject","Resource":"arn:aws:s3:::example-bucket/*"}"#,
        );
        assert_eq!(a.shared_with_cloudfront, Tri::True);
        assert_eq!(a.shared_access, SharedAccess::External);
        assert!(a.external_accounts.is_empty());
        assert_eq!(a.allows_public_read_access, Tri::False);
        let a = run(
            r#"{"Effect":"Allow","Principal":{"Service":"cloudfront.amazonaws.com"},"Action":"s3:GetObject","Resource":"arn:aws:s3:::example-bucket/*","Condition":{"StringEquals":{"AWS:SourceArn":"arn:aws:cloudfront::111111111111:distribution/EDFDVBD6EXAMPLE"}}}"#,
        );
        assert_eq!(a.shared_with_cloudfront, Tri::True);
        let a = run(
            r#"{"Effect":"Allow","Principal":{"CanonicalUser":"79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be"},"Action":"s3:GetObject","Resource":"arn:aws:s3:::example-bucket/*"}"#,
        );
        assert_eq!(a.shared_with_cloudfront, Tri::True);
    }

    #[test]
    fn deny_takes_public_grant_away() {
        let a = run(
            r#"{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::example-bucket/*"},
               {"Effect":"Deny","Principal":"*","Action":"s3:*","Resource":"arn:aws:s3:::example-bucket/*","Condition":{"NotIpAddress":{"aws:SourceIp":"10.0.0.0/8"}}}"#,
        );
        assert_eq!(a.allows_public_read_access, Tri::False);
        // Sharing ignores the network: every account can still read from 10/8.
        assert_eq!(a.shared_access, SharedAccess::External);
        let a = run(
            r#"{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::example-bucket/*","Condition":{"IpAddress":{"aws:SourceIp":"0.0.0.0/1"}}}"#,
        );
        assert_eq!(a.allows_public_read_access, Tri::True);
    }

    #[test]
    fn named_outside_account() {
        let a = run(
            r#"{"Effect":"Allow","Principal":{"AWS":["arn:aws:iam::444444444444:role/R","222222222222"]},"Action":"s3:PutObject","Resource":"arn:aws:s3:::example-bucket/*"}"#,
        );
        assert_eq!(a.external_accounts, vec!["444444444444"]);
        assert_eq!(a.internal_accounts, vec!["222222222222"]);
        assert_eq!(a.allows_public_write_access, Tri::False);
        assert_eq!(a.shared_access, SharedAccess::External);
    }

    fn bogus_witness() -> Witness {
        Witness {
            question: Question::PublicRead,
            principal: "*".into(),
            principal_account: None,
            action: "s3:GetObject".into(),
            resource: "arn:aws:s3:::example-bucket/k".into(),
            context: BTreeMap::new(),
            canonical_user: None,
            service: false,
        }
    }

    /// A witness the evaluator rejects is never reported as a "yes" (in every build).
    #[test]
    fn unconfirmed_witness_is_unknown() {
        let policy = crate::parse_policy(r#"{"Statement":[]}"#).unwrap();
        let c = ctx();
        let world = World::new(&policy, "example-bucket", &c);
        let v = weigh(&world, &Question::PublicRead, bogus_witness(), &FALSE, false);
        assert_eq!(v.answer, Tri::Unknown);
        assert!(v.witness.is_none());
        assert!(v.reason.unwrap().starts_with("solver and evaluator disagree"));
    }

    /// ...and a debug build stops there: the disagreement is a bug to fix, not a verdict.
    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "solver and evaluator disagree")]
    fn unconfirmed_witness_stops_a_debug_build() {
        let policy = crate::parse_policy(r#"{"Statement":[]}"#).unwrap();
        let c = ctx();
        let world = World::new(&policy, "example-bucket", &c);
        confirm(&world, &Question::PublicRead, bogus_witness(), &FALSE, false);
    }

    #[test]
    fn unconfirmed_witness_with_opaque_construct_is_unknown() {
        let policy = crate::parse_policy(r#"{"Statement":[]}"#).unwrap();
        let c = ctx();
        let world = World::new(&policy, "example-bucket", &c);
        let term = Term::Opaque("a policy variable combined with wildcards".into());
        let v = confirm(&world, &Question::PublicRead, bogus_witness(), &term, true);
        assert_eq!(v.answer, Tri::Unknown);
        assert!(v.reason.unwrap().contains("unsupported construct"));
    }

    #[test]
    fn serializes_as_macie_spells_it() {
        let a = run(
            r#"{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::example-bucket/*"}"#,
        );
        let v = serde_json::to_value(&a).unwrap();
        assert_eq!(v["allowsPublicReadAccess"], "TRUE");
        assert_eq!(v["sharedAccess"], "EXTERNAL");
        assert_eq!(v["allowsUnencryptedObjectUploads"], "TRUE");
        assert_eq!(v["witnesses"][0]["question"], "publicRead");
        assert!(v["witnesses"][0]["principalAccount"].is_null() || v["witnesses"][0]["principalAccount"].is_string());
        assert_eq!(serde_json::to_value(SharedAccess::NotShared).unwrap(), "NOT_SHARED");
        assert_eq!(
            serde_json::to_value(Question::SharedWithAccount("444444444444".into())).unwrap(),
            "sharedWithAccount:444444444444"
        );
    }

    /// Running out of the budget gives UNKNOWN with the solver's reason, never a guess: one
    /// resource unit (counted by Z3, the same on any machine) decides nothing.
    #[test]
    fn an_exhausted_budget_is_unknown_with_reason() {
        let text = r#"{"Version":"2012-10-17","Statement":[
            {"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::example-bucket/*","Condition":{"StringLike":{"s3:DataAccessPointArn":"arn:*"}}},
            {"Effect":"Deny","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::example-bucket/*","Condition":{"StringLike":{"s3:DataAccessPointArn":"arn:aws:s3:?*:111111111111:accesspoint/reports-?"}}}]}"#;
        let opts = AnalysisOptions { resource_limit: Some(1), presolve: false, ..Default::default() };
        let a = crate::analyze(text, "example-bucket", &ctx(), &opts).unwrap();
        assert_eq!(a.allows_public_read_access, Tri::Unknown);
        assert!(
            a.unknown_reasons.iter().any(|r| r.starts_with("publicRead: ") && r.contains("budget of 1 resource units")),
            "{:?}",
            a.unknown_reasons
        );
        // The same policy with a bound that suffices: decided, and right.
        let opts = AnalysisOptions { resource_limit: Some(50_000_000), presolve: false, ..opts };
        let a = crate::analyze(text, "example-bucket", &ctx(), &opts).unwrap();
        assert_eq!(a.allows_public_read_access, Tri::True, "{:?}", a.unknown_reasons);
    }

    #[test]
    fn key_compared_as_two_sorts_never_gives_a_wrong_yes() {
        let a = run(
            r#"{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::example-bucket/*",
                "Condition":{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"},"StringLike":{"aws:SourceIp":"10.*"}}}"#,
        );
        assert_eq!(a.allows_public_read_access, Tri::False);
        assert_ne!(a.shared_access, SharedAccess::NotShared);
    }

    #[test]
    fn no_policy_statements() {
        let a = run("");
        assert_eq!(a.shared_access, SharedAccess::NotShared);
        assert_eq!(a.allows_unencrypted_object_uploads, Tri::True);
        assert_eq!(a.witnesses.len(), 1);
    }
}
