//! What each question of SEMANTICS.md asks, as terms over the compiled policy: the world a
//! policy is judged in (bucket, organization, compiled statements), the term of each question,
//! the axioms of its variables, and the concrete check of a witness. No Z3 here: `solver`
//! keeps the solvers, `verifier` drives the questions through them, and `presolve` decides
//! what it can without them.

use std::collections::BTreeSet;

use crate::actions;
use crate::analysis::{OrgContext, Question, Tri, Witness};
use crate::ast::{Effect, Policy, ValueSort};
use crate::compiler::{active, compile, key_match, Compiled, Fixed, SOURCE_ACCOUNT_KEYS, SOURCE_ARN_KEY};
use crate::eval::{self, entry_form, Decision, EntryForm, Principal, Request};
use crate::term::{self, and, implies, not, or, Kind, Part, Shape, StrVar, Term, FALSE};
use crate::values::{Seg, Template};

/// Valid server-side-encryption header values.
pub(crate) const SSE_VALUES: &[&str] = &["AES256", "aws:kms", "aws:kms:dsse"];
pub(crate) const SSE_KEY: &str = "s3:x-amz-server-side-encryption";
pub(crate) const SSE_C_KEY: &str = "s3:x-amz-server-side-encryption-customer-algorithm";
/// CloudFront's service principal (origin access control), which SEMANTICS.md's CloudFront
/// rule covers rather than the service-principal rule.
pub(crate) const CLOUDFRONT_SERVICE: &str = "cloudfront.amazonaws.com";

/// The `aws:SourceArn` values that name `account`: those that hold `:ACCOUNT:`, as the account
/// field of `arn:PARTITION:SERVICE:REGION:ACCOUNT:...` does (a later field holding it counts
/// too; the solver's term and the witness check both use this one template, so they agree).
/// Two wildcards: the solver decides a pattern with more of them, met with the policy's own,
/// far more slowly.
pub(crate) fn source_arn_naming(account: &str) -> Template {
    Template(vec![Seg::Star, Seg::Lit(format!(":{account}:")), Seg::Star])
}

/// Whether a request's source keys say it acts for `account`: one of them names it, and no
/// source-account key names another.
pub(crate) fn request_acts_for(context: &std::collections::BTreeMap<String, Vec<String>>, account: &str) -> bool {
    let mut named = false;
    for key in SOURCE_ACCOUNT_KEYS {
        match context.get(key).map(Vec::as_slice) {
            None => {}
            Some([value]) if value == account => named = true,
            Some(_) => return false,
        }
    }
    if let Some([arn]) = context.get(SOURCE_ARN_KEY).map(Vec::as_slice) {
        named |= source_arn_naming(account).matches(arn, false);
    }
    named
}
/// The values S3 accepts in an encryption header (`None`: not such a header); any other
/// value is refused with 400 InvalidArgument before a policy is consulted.
pub(crate) fn accepted_values(key: &str) -> Option<&'static [&'static str]> {
    match key {
        SSE_KEY => Some(SSE_VALUES),
        SSE_C_KEY => Some(&["AES256"]),
        _ => None,
    }
}

/// The answer to one question.
#[derive(Debug, Clone)]
pub(crate) struct Verdict {
    pub answer: Tri,
    pub witness: Option<Witness>,
    pub reason: Option<String>,
}

/// Everything a question needs to know about the world.
pub(crate) struct World<'a> {
    pub bucket: &'a str,
    pub ctx: &'a OrgContext,
    pub compiled: Compiled,
    /// The organization's accounts, owner included.
    pub members: BTreeSet<String>,
    pub policy: &'a Policy,
}

impl<'a> World<'a> {
    pub(crate) fn new(policy: &'a Policy, bucket: &'a str, ctx: &'a OrgContext) -> Self {
        let compiled = compile(policy, bucket, ctx.organization_paths.len());
        let mut members: BTreeSet<String> = ctx.member_accounts.iter().map(|a| a.as_str().to_owned()).collect();
        members.insert(ctx.owner_account.as_str().to_owned());
        World { bucket, ctx, compiled, members, policy }
    }

    pub(crate) fn is_member(&self) -> Term {
        or(self.members.iter().map(|m| term::str_eq(StrVar::Account, m)))
    }

    /// Not the owner, no member, no account literal of the policy.
    pub(crate) fn fresh_account(&self) -> Term {
        and(self.members.iter().chain(&self.compiled.accounts).map(|a| not(term::str_eq(StrVar::Account, a))))
    }

    pub(crate) fn fresh_account_concrete(&self, account: &str) -> bool {
        !self.members.contains(account) && !self.compiled.accounts.contains(account)
    }

    pub(crate) fn active(&self, key: &str, i: usize) -> Term {
        active(&self.compiled.keys, key, i)
    }

    pub(crate) fn slots(&self, key: &str) -> usize {
        self.compiled.keys.get(key).map_or(0, |s| s.slots)
    }

    /// The questions to ask, in report order.
    pub(crate) fn questions(&self) -> Vec<Question> {
        let mut qs = vec![Question::PublicRead, Question::PublicWrite, Question::SharedWithCloudFront];
        for m in &self.members {
            if m.as_str() != self.ctx.owner_account.as_str() {
                qs.push(Question::SharedWithAccount(m.clone()));
            }
        }
        for a in &self.compiled.named_accounts {
            if !self.members.contains(a) {
                qs.push(Question::SharedWithAccount(a.clone()));
            }
        }
        qs.push(Question::SharedWithAccount("*".into()));
        if self.admits_services() {
            for a in &self.compiled.source_accounts {
                if a.as_str() != self.ctx.owner_account.as_str() {
                    qs.push(Question::ServiceActingFor(a.clone()));
                }
            }
        }
        qs.push(Question::UnencryptedUpload);
        qs
    }

    /// Some Allow statement may let in a service principal: it names one, or `*`, or is a
    /// NotPrincipal.
    fn admits_services(&self) -> bool {
        self.policy.statements.iter().any(|st| {
            st.effect == Effect::Allow
                && (st.principal.negated
                    || st
                        .principal
                        .entries
                        .iter()
                        .any(|e| matches!(entry_form(e), EntryForm::Everyone | EntryForm::Service(_))))
        })
    }

    /// The request's source keys (those the policy uses) say it acts for `account`: as
    /// [`request_acts_for`] decides it for a concrete request.
    fn acting_for(&self, account: &str) -> Term {
        let mut consistent = Vec::new();
        let mut naming = Vec::new();
        for key in SOURCE_ACCOUNT_KEYS.into_iter().chain([SOURCE_ARN_KEY]) {
            let Some(shape) = self.compiled.keys.get(key) else { continue };
            if shape.sorts.iter().any(|sort| *sort != ValueSort::Str) {
                // Its string value is not tied to the number or address the policy compares:
                // left to the evaluator, which confirms or refuses any witness.
                return Term::Opaque(format!("`{key}` compared as a number or IP address"));
            }
            let slot = StrVar::Slot(key.to_owned(), 0);
            let single = if shape.multi { Term::CountEq(key.to_owned(), 1) } else { term::TRUE };
            let present = Term::Present(key.to_owned());
            if key == SOURCE_ARN_KEY {
                let names = Term::Match { var: slot, pat: source_arn_naming(account), ignore_case: false };
                naming.push(and([present, single, names]));
            } else {
                let names = term::str_eq(slot, account);
                naming.push(and([present.clone(), single.clone(), names.clone()]));
                consistent.push(or([not(present.clone()), and([present, single, names])]));
            }
        }
        and([and(consistent), or(naming)])
    }

    pub(crate) fn allowed(&self) -> Term {
        and([self.compiled.allow.clone(), not(self.compiled.deny.clone())])
    }

    /// The full assertion of a question.
    pub(crate) fn question_term(&self, q: &Question) -> Term {
        match q {
            Question::PublicRead | Question::PublicWrite => {
                let pick: fn(&str) -> bool =
                    if *q == Question::PublicRead { actions::is_read } else { actions::is_write };
                let acts = term::action_in((0..actions::count()).filter(|&i| pick(actions::name(i))));
                and([self.allowed(), acts, self.untrusted()])
            }
            Question::SharedWithAccount(a) if a == "*" => and([self.allowed(), self.anyone()]),
            Question::SharedWithAccount(a) => {
                and([self.allowed(), Term::KindIs(Kind::Account), term::str_eq(StrVar::Account, a)])
            }
            Question::ServiceActingFor(a) => and([
                self.allowed(),
                Term::KindIs(Kind::Service),
                not(term::str_eq(StrVar::Service, CLOUDFRONT_SERVICE)),
                self.acting_for(a),
            ]),
            Question::SharedWithCloudFront => and([
                self.compiled.allow_named.clone(),
                not(self.compiled.deny.clone()),
                or([
                    Term::KindIs(Kind::Oai),
                    and([Term::KindIs(Kind::Service), term::str_eq(StrVar::Service, CLOUDFRONT_SERVICE)]),
                ]),
            ]),
            Question::UnencryptedUpload => {
                let put = actions::index_of("s3:PutObject").map_or(FALSE, |i| term::action_in([i]));
                and([not(self.compiled.deny.clone()), put, self.no_encryption_headers()])
            }
        }
    }

    /// The PutObject carries no server-side-encryption header. The other encryption keys
    /// (the KMS key ID, the encryption context, the SSE-C key digest) are only accepted by S3
    /// alongside one of them, so they are absent too.
    pub(crate) fn no_encryption_headers(&self) -> Term {
        and(self
            .compiled
            .keys
            .keys()
            .filter(|k| k.starts_with(SSE_KEY))
            .map(|k| not(Term::Present(k.clone())))
            .collect::<Vec<_>>())
    }

    /// What S3 accepts in an encryption header: a request whose
    /// `x-amz-server-side-encryption` is not `AES256`, `aws:kms` or `aws:kms:dsse`, or whose
    /// SSE-C algorithm is not `AES256`, is rejected (400 InvalidArgument) and reaches no
    /// policy decision, so no witness may carry one.
    pub(crate) fn accepted_header(&self, key: &str) -> Option<Term> {
        let accepted = accepted_values(key)?;
        let mut parts: Vec<Term> = (0..self.slots(key))
            .map(|i| {
                implies(
                    self.active(key, i),
                    or(accepted.iter().map(|v| term::str_eq(StrVar::Slot(key.to_owned(), i), v))),
                )
            })
            .collect();
        if self.compiled.keys.get(key).is_some_and(|s| s.multi) {
            parts.push(implies(Term::Present(key.to_owned()), Term::CountEq(key.to_owned(), 1)));
        }
        Some(and(parts))
    }

    /// A caller nobody vouches for: anonymous, an account that is neither a member nor named
    /// by the policy, or a federated identity (a web identity or SAML provider anyone may sign
    /// in through).
    pub(crate) fn anyone(&self) -> Term {
        or([
            Term::KindIs(Kind::Anonymous),
            Term::KindIs(Kind::Federated),
            and([Term::KindIs(Kind::Account), self.fresh_account()]),
        ])
    }

    /// The untrusted caller of SEMANTICS.md.
    pub(crate) fn untrusted(&self) -> Term {
        let mut parts = vec![self.anyone()];
        for (key, fixed) in &self.compiled.fixed {
            for i in 0..self.slots(key) {
                let differs = and(fixed.iter().map(|f| {
                    not(match f {
                        Fixed::Lit { value, ignore_case } => {
                            key_match(key, i, Template(vec![Seg::Lit(value.clone())]), *ignore_case)
                        }
                        Fixed::Pattern(p) => key_match(key, i, p.clone(), false),
                        Fixed::Cidr(cidr) => Term::IpIn { key: key.clone(), slot: i, cidr: *cidr },
                    })
                }));
                parts.push(implies(self.active(key, i), differs));
            }
        }
        and(parts)
    }

    /// The definitions that hold in every question for a variable, once it is in use.
    pub(crate) fn axiom_for_var(&self, v: &StrVar) -> Option<Term> {
        Some(match v {
            StrVar::Arn => implies(
                Term::KindIs(Kind::Account),
                Term::Concat { var: StrVar::Arn, parts: account_arn_parts(), prefix: false },
            ),
            StrVar::Resource => {
                let b = actions::bucket_count();
                let arn = format!("arn:aws:s3:::{}", self.bucket);
                and([
                    implies(term::action_in(0..b), term::str_eq(StrVar::Resource, &arn)),
                    implies(
                        term::action_in(b..actions::count()),
                        Term::Concat {
                            var: StrVar::Resource,
                            parts: vec![Part::Lit(format!("{arn}/")), Part::Var(StrVar::Key)],
                            prefix: false,
                        },
                    ),
                ])
            }
            _ => return None,
        })
    }

    /// The shape of a variable that meets wildcard patterns or concatenations.
    pub(crate) fn shape_for_var(&self, v: &StrVar) -> Option<Term> {
        let (kind, shape) = match v {
            StrVar::Account => (Some(Kind::Account), Shape::AccountId),
            StrVar::ArnTail => (Some(Kind::Account), Shape::ArnTail),
            StrVar::OaiId => (Some(Kind::Oai), Shape::OaiId),
            StrVar::Service => (Some(Kind::Service), Shape::ServiceName),
            StrVar::Canonical => (Some(Kind::Oai), Shape::CanonicalId),
            StrVar::Federated => (Some(Kind::Federated), Shape::Federated),
            StrVar::Key => (None, Shape::ObjectKey),
            _ => return None,
        };
        let shaped = Term::Shaped(v.clone(), shape);
        Some(match kind {
            Some(k) => implies(Term::KindIs(k), shaped),
            None => shaped,
        })
    }

    /// The value of a principal key's slot, once that slot is used as a variable.
    pub(crate) fn axiom_for_slot(&self, key: &str, slot: usize) -> Option<Term> {
        let var = StrVar::Slot(key.to_owned(), slot);
        let parts = match key {
            "aws:principalaccount" => vec![Part::Var(StrVar::Account)],
            "aws:principalarn" => account_arn_parts(),
            _ => return None,
        };
        Some(implies(Term::KindIs(Kind::Account), Term::Concat { var, parts, prefix: false }))
    }

    /// How the principal condition keys follow from the principal and the organization, and
    /// which values S3 accepts in the encryption headers. `members_only`: the query already
    /// asserts that the principal is a member account, so only the member's side is stated
    /// (the outsider's and the non-account's would be vacuous, and cost the solver).
    pub(crate) fn axiom_for_key(&self, key: &str, members_only: bool) -> Option<Term> {
        if let Some(accepted) = self.accepted_header(key) {
            return Some(accepted);
        }
        let present = || Term::Present(key.to_owned());
        let single = |value: Term| -> Term {
            let count = if self.compiled.keys.get(key).is_some_and(|s| s.multi) {
                Term::CountEq(key.to_owned(), 1)
            } else {
                term::TRUE
            };
            and([present(), count, value])
        };
        let slot0 = StrVar::Slot(key.to_owned(), 0);
        let account = Term::KindIs(Kind::Account);
        let member = and([account.clone(), self.is_member()]);
        let outsider = and([account.clone(), not(self.is_member())]);
        Some(match key {
            "aws:principalaccount" | "aws:principalarn" if members_only => single(term::TRUE),
            "aws:principalaccount" | "aws:principalarn" => {
                and([implies(account.clone(), single(term::TRUE)), implies(not(account), not(present()))])
            }
            "aws:principalorgid" => {
                let (inside, outside) = match &self.ctx.organization_id {
                    Some(org) => (
                        single(term::str_eq(slot0.clone(), org)),
                        (0..self.slots(key))
                            .map(|i| {
                                implies(self.active(key, i), not(term::str_eq(StrVar::Slot(key.to_owned(), i), org)))
                            })
                            .fold(term::TRUE, |a, b| and([a, b])),
                    ),
                    None => (not(present()), term::TRUE),
                };
                if members_only {
                    return Some(inside);
                }
                and([implies(member, inside), implies(outsider, outside), implies(not(account), not(present()))])
            }
            "aws:principalorgpaths" => {
                let paths = &self.ctx.organization_paths;
                let ours = |i: usize| Term::Match {
                    var: StrVar::Slot(key.to_owned(), i),
                    pat: Template(vec![
                        Seg::Lit(format!("{}/", self.ctx.organization_id.as_deref().unwrap_or(""))),
                        Seg::Star,
                    ]),
                    ignore_case: false,
                };
                let inside = match &self.ctx.organization_id {
                    None => not(present()),
                    // The OU tree is unknown: a member carries one path, somewhere under our
                    // organization.
                    Some(_) if paths.is_empty() => and([present(), Term::CountEq(key.to_owned(), 1), ours(0)]),
                    Some(_) => and(std::iter::once(present())
                        .chain(std::iter::once(Term::CountEq(key.to_owned(), paths.len())))
                        .chain(
                            paths.iter().enumerate().map(|(i, p)| term::str_eq(StrVar::Slot(key.to_owned(), i), p)),
                        )),
                };
                if members_only {
                    return Some(inside);
                }
                let outside = match &self.ctx.organization_id {
                    Some(_) => and((0..self.slots(key)).map(|i| implies(self.active(key, i), not(ours(i))))),
                    None => term::TRUE,
                };
                and([implies(member, inside), implies(outsider, outside), implies(not(account), not(present()))])
            }
            _ => return None,
        })
    }

    /// Checks a witness with the concrete evaluator; `None` when it holds, else what failed.
    pub(crate) fn check_witness(&self, q: &Question, w: &Witness) -> Option<String> {
        let r = w.to_request();
        let decision = eval::evaluate(self.policy, &r);
        let untrusted_ok = |r: &Request| match &r.principal {
            Principal::Anonymous | Principal::Federated { .. } => true,
            Principal::Account { account, .. } => self.fresh_account_concrete(account),
            _ => false,
        };
        let ok = match q {
            Question::PublicRead => decision == Decision::Allowed && actions::is_read(&r.action) && untrusted_ok(&r),
            Question::PublicWrite => decision == Decision::Allowed && actions::is_write(&r.action) && untrusted_ok(&r),
            Question::SharedWithAccount(a) if a == "*" => decision == Decision::Allowed && untrusted_ok(&r),
            Question::SharedWithAccount(a) => {
                decision == Decision::Allowed
                    && matches!(&r.principal, Principal::Account { account, .. } if account == a)
            }
            Question::ServiceActingFor(a) => {
                decision == Decision::Allowed
                    && matches!(&r.principal, Principal::Service { name } if name != CLOUDFRONT_SERVICE)
                    && request_acts_for(&r.context, a)
            }
            Question::SharedWithCloudFront => {
                let named = self.policy.statements.iter().any(|s| {
                    s.effect == crate::ast::Effect::Allow
                        && eval::statement_matches(s, &r, self.policy.variables_enabled(), true)
                });
                decision == Decision::Allowed
                    && named
                    && match &r.principal {
                        Principal::CloudFrontOai { .. } => true,
                        Principal::Service { name } => name == CLOUDFRONT_SERVICE,
                        _ => false,
                    }
            }
            Question::UnencryptedUpload => {
                let encrypted = r.context.keys().any(|k| k.starts_with(SSE_KEY));
                decision != Decision::ExplicitlyDenied && r.action.eq_ignore_ascii_case("s3:PutObject") && !encrypted
            }
        };
        (!ok).then(|| format!("evaluator says {decision:?} for the witness of `{q}`"))
    }
}

/// `arn:aws:iam::ACCOUNT:TAIL`.
fn account_arn_parts() -> Vec<Part> {
    vec![
        Part::Lit("arn:aws:iam::".into()),
        Part::Var(StrVar::Account),
        Part::Lit(":".into()),
        Part::Var(StrVar::ArnTail),
    ]
}
