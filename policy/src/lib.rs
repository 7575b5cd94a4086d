//! `estate-policy`: IAM bucket-policy parsing, a concrete evaluator, and exact reasoning with
//! Z3 about whether a policy makes a bucket public, shared, or open to unencrypted uploads.
//!
//! Pure: no I/O. The structure follows cedar-policy-symcc: a term language (`term`), a
//! compiler from policies to terms (`compiler`), a lowering to Z3 (`smt`), a verifier that
//! turns each question of `SEMANTICS.md` into assertions (`verifier`) and a decoder that turns
//! a model into an example request (`decoder`). Every example request is checked again by the
//! concrete evaluator ([`evaluate`]); a disagreement makes the verdict UNKNOWN.
//!
//! Encoding choices forced by the system Z3 (4.8.12): a wildcard match in positive polarity is
//! a concatenation with fresh pieces, under negation prefix/suffix/containment over `substr`
//! (regular expressions only for `?` and case-insensitive patterns: the regex engine is very
//! slow on `.*` followed by a long literal); the object key, not the resource ARN, is the
//! variable; principal shapes (12-digit accounts, ...) are asserted only for variables that
//! meet wildcard patterns, otherwise the decoder picks a fresh well-shaped value; each thread
//! keeps one solver between analyses (a new solver's first check costs milliseconds) and
//! replaces it after a timeout (4.8.12 can crash reusing a solver after a canceled check).

pub mod actions;
mod analysis;
pub mod ast;
mod cache;
mod compiler;
mod decoder;
mod error;
mod eval;
mod parser;
mod presolve;
mod question;
mod smt;
mod solver;
mod term;
pub mod values;
mod verifier;

pub use analysis::{
    Analysis, AnalysisOptions, AnalysisStats, OrgContext, Question, SharedAccess, Tri, Witness, ANALYZER_VERSION,
    DEFAULT_BUDGET_MS, MAX_POLICY_BYTES,
};
pub use ast::Policy;
pub use cache::{organization_digest, policy_digest, Analyzer};
pub use error::PolicyError;
/// The account IDs an [`OrgContext`] names.
pub use estate_types::AccountId;
pub use eval::{evaluate, Decision, Principal, Request};
pub use parser::parse_policy;

/// Analyses a bucket policy under an organization context; `Err` only for malformed input.
///
/// Bounded whatever the input: a document over S3's 20 KB limit is UNKNOWN without being
/// read, every pattern operation is polynomial, and the whole analysis (the work before the
/// solver included) shares one time budget, past which the remaining questions are UNKNOWN.
/// A panic inside the analysis is caught by [`Analyzer`], not here.
pub fn analyze(
    policy_text: &str,
    bucket: &str,
    ctx: &OrgContext,
    opts: &AnalysisOptions,
) -> Result<Analysis, PolicyError> {
    let deadline = std::time::Instant::now() + opts.budget;
    if policy_text.len() > MAX_POLICY_BYTES {
        return Ok(Analysis::undecided(format!(
            "the policy is {} bytes, over S3's bucket policy limit of {MAX_POLICY_BYTES} bytes (20 KB): not analysed",
            policy_text.len()
        )));
    }
    let policy = parse_policy(policy_text)?;
    solver::set_memory_limit(opts.solver_memory_mib);
    Ok(verifier::analyze_policy(&policy, bucket, ctx, opts, deadline))
}

/// Asks the solver whether some request of `requests` is allowed by `policy` (used by the
/// property tests to compare the solver with the evaluator on a finite request set).
#[doc(hidden)]
pub use verifier::allows_some as solver_allows_some;
