//! The public vocabulary of an analysis: organization context, options, verdicts, questions,
//! witnesses (example requests) and the analysis result.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use estate_types::AccountId;
use serde::{Serialize, Serializer};

use crate::eval::{Principal, Request};

/// Who the bucket belongs to and which organization it is judged under.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OrgContext {
    /// The bucket owner's account ID.
    pub owner_account: AccountId,
    /// The organization ID, when the owner is in one.
    pub organization_id: Option<String>,
    /// The organization's member accounts (the owner usually among them); shared, so that
    /// the contexts of many buckets cost one set.
    pub member_accounts: Arc<BTreeSet<AccountId>>,
    /// The organization paths (`o-.../r-.../ou-.../`) of the member accounts.
    pub organization_paths: Vec<String>,
}

/// Analysis knobs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisOptions {
    /// The time budget of one policy, across all its questions and the work before the
    /// solver; the questions left when it runs out are UNKNOWN, with the reason.
    pub budget: Duration,
    /// The ceiling on Z3's memory, in MiB, shared by every analysis of the process (Z3 keeps
    /// one allocator); a check that reaches it is UNKNOWN, with the reason.
    pub solver_memory_mib: u32,
    /// Decide what the policy's shape allows before the solver (`presolve.rs`). Always on in
    /// the product; tests and benchmarks turn it off to compare the two.
    #[doc(hidden)]
    pub presolve: bool,
    /// A bound on each solver check in Z3's resource units (`rlimit`), besides the time
    /// budget. Z3 counts the same units for the same query whatever the machine's load, so
    /// tests set it (with a time budget too generous to matter) and their verdicts do not
    /// depend on how busy the machine is. Production keeps the time bound only (`None`).
    pub resource_limit: Option<u32>,
}

/// The default time budget of one policy's whole analysis, in milliseconds (the
/// administrator's `--policy-budget-ms`, `estatectl policy analyze --budget-ms`).
pub const DEFAULT_BUDGET_MS: u64 = 2_000;

impl AnalysisOptions {
    /// Options whose verdicts do not depend on the machine: each solver check is bounded by
    /// Z3's resource units (ample for every policy of the test corpora), and the time budget is
    /// too generous to be reached first. For tests; production bounds time.
    #[doc(hidden)]
    pub fn counted() -> Self {
        AnalysisOptions {
            budget: Duration::from_secs(600),
            resource_limit: Some(TEST_RESOURCE_UNITS),
            ..AnalysisOptions::default()
        }
    }
}

/// The resource bound of [`AnalysisOptions::counted`], per solver check.
const TEST_RESOURCE_UNITS: u32 = 20_000_000;

impl Default for AnalysisOptions {
    fn default() -> Self {
        AnalysisOptions {
            budget: Duration::from_millis(DEFAULT_BUDGET_MS),
            solver_memory_mib: 512,
            presolve: true,
            resource_limit: None,
        }
    }
}

/// Where an analysis spent its effort (for benchmarks; not part of the verdicts).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AnalysisStats {
    /// Questions asked.
    pub questions: u32,
    /// Questions decided without the solver (by the term simplifier or the pre-solver layer).
    pub decided_before_solver: u32,
    /// Solver checks made.
    pub solver_calls: u32,
    /// The questions the solver was asked.
    pub solved: Vec<String>,
}

/// S3's limit on the size of a bucket policy: a larger document cannot be a bucket's policy,
/// and is not analysed.
pub const MAX_POLICY_BYTES: usize = estate_types::limits::MAX_BUCKET_POLICY_BYTES;

/// Changes whenever a change to the analyser may change a verdict, so that what was
/// remembered about a policy (an internal failure, say) is forgotten with the old analyser.
pub const ANALYZER_VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "+analysis.4");

/// A three-valued verdict (`Unknown`: could not be decided, with the reason alongside).
pub use estate_types::Tri;

pub use estate_types::SharedAccess;

/// A question the analyser asks the solver.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Question {
    /// Is some read request of an untrusted caller allowed?
    PublicRead,
    /// Is some write request of an untrusted caller allowed?
    PublicWrite,
    /// Is some request from this account (or `*`: a fresh outside account or anonymous) allowed?
    SharedWithAccount(String),
    /// Is some request from an AWS service principal (other than CloudFront) acting for this
    /// account allowed: one whose `aws:SourceAccount`, `aws:SourceOwner` or `aws:SourceArn`
    /// names it?
    ServiceActingFor(String),
    /// Is some request from a CloudFront OAI or OAC allowed?
    SharedWithCloudFront,
    /// Is some PutObject without a valid encryption header not explicitly denied?
    UnencryptedUpload,
}

impl std::fmt::Display for Question {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Question::PublicRead => f.write_str("publicRead"),
            Question::PublicWrite => f.write_str("publicWrite"),
            Question::SharedWithAccount(a) => write!(f, "sharedWithAccount:{a}"),
            Question::ServiceActingFor(a) => write!(f, "serviceActingFor:{a}"),
            Question::SharedWithCloudFront => f.write_str("sharedWithCloudFront"),
            Question::UnencryptedUpload => f.write_str("unencryptedUpload"),
        }
    }
}

impl Serialize for Question {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// An example request that makes a question's answer "yes".
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Witness {
    /// The question answered.
    pub question: Question,
    /// The principal's ARN, `*` for anonymous, a service name, a federated provider, or a
    /// CloudFront OAI's ARN or canonical user ID.
    pub principal: String,
    /// The principal's account, for account principals.
    pub principal_account: Option<String>,
    /// The action.
    pub action: String,
    /// The resource ARN.
    pub resource: String,
    /// The condition key values the request carries (keys lowercased).
    pub context: BTreeMap<String, Vec<String>>,
    /// A CloudFront OAI's canonical user ID, when `principal` is its ARN: the identity has
    /// both, and a policy may name either.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canonical_user: Option<String>,
    /// The principal is an AWS service principal, whatever its name looks like (a service
    /// name need not end in `.amazonaws.com` in a policy). Not part of the JSON.
    #[serde(skip)]
    pub service: bool,
}

const FEDERATED_PROVIDERS: &[&str] =
    &["cognito-identity.amazonaws.com", "www.amazon.com", "graph.facebook.com", "accounts.google.com"];

pub(crate) const OAI_ARN_PREFIX: &str = "arn:aws:iam::cloudfront:user/CloudFront Origin Access Identity ";

impl Witness {
    /// Builds the witness of `request`.
    pub fn from_request(question: Question, request: &Request) -> Witness {
        let mut canonical = None;
        let (principal, principal_account) = match &request.principal {
            Principal::Anonymous => ("*".to_owned(), None),
            Principal::Account { account, arn } => (arn.clone(), Some(account.clone())),
            Principal::Service { name } => (name.clone(), None),
            Principal::Federated { provider } => (provider.clone(), None),
            Principal::CloudFrontOai { arn, canonical_user } if arn.is_empty() => (canonical_user.clone(), None),
            Principal::CloudFrontOai { arn, canonical_user } => {
                canonical = (!canonical_user.is_empty()).then(|| canonical_user.clone());
                (arn.clone(), None)
            }
        };
        Witness {
            question,
            principal,
            principal_account,
            action: request.action.clone(),
            resource: request.resource.clone(),
            context: request.context.clone(),
            canonical_user: canonical,
            service: matches!(request.principal, Principal::Service { .. }),
        }
    }

    /// The request the witness stands for.
    pub fn to_request(&self) -> Request {
        let p = self.principal.as_str();
        let principal = if self.service {
            Principal::Service { name: p.to_owned() }
        } else if p == "*" {
            Principal::Anonymous
        } else if let Some(account) = &self.principal_account {
            Principal::Account { account: account.clone(), arn: p.to_owned() }
        } else if p.starts_with(OAI_ARN_PREFIX) {
            Principal::CloudFrontOai {
                arn: p.to_owned(),
                canonical_user: self.canonical_user.clone().unwrap_or_default(),
            }
        } else if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            Principal::CloudFrontOai { arn: String::new(), canonical_user: p.to_owned() }
        } else if FEDERATED_PROVIDERS.contains(&p) || p.contains(":saml-provider/") || p.contains(":oidc-provider/") {
            Principal::Federated { provider: p.to_owned() }
        } else {
            Principal::Service { name: p.to_owned() }
        };
        Request {
            principal,
            action: self.action.clone(),
            resource: self.resource.clone(),
            context: self.context.clone(),
        }
    }
}

/// The verdicts for one bucket policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Analysis {
    /// An untrusted caller can read.
    pub allows_public_read_access: Tri,
    /// An untrusted caller can write.
    pub allows_public_write_access: Tri,
    /// Macie's sharedAccess.
    pub shared_access: SharedAccess,
    /// A CloudFront OAI or OAC is allowed.
    #[serde(rename = "sharedWithCloudFront")]
    pub shared_with_cloudfront: Tri,
    /// Some unencrypted PutObject is not explicitly denied.
    pub allows_unencrypted_object_uploads: Tri,
    /// Member accounts (other than the owner) that get in.
    pub internal_accounts: Vec<String>,
    /// Outside accounts named in the policy that get in, plus `*` for arbitrary ones.
    pub external_accounts: Vec<String>,
    /// One example request per "yes".
    pub witnesses: Vec<Witness>,
    /// Why some verdicts are UNKNOWN.
    pub unknown_reasons: Vec<String>,
    /// The analysis stopped on an internal error (a bug in the analyser, caught): every
    /// verdict is UNKNOWN and `unknown_reasons` says what happened.
    pub internal_error: bool,
    /// Where the effort went.
    #[serde(skip)]
    pub stats: AnalysisStats,
}

impl Analysis {
    /// Every verdict UNKNOWN, for `reason`.
    pub fn undecided(reason: impl Into<String>) -> Analysis {
        Analysis {
            allows_public_read_access: Tri::Unknown,
            allows_public_write_access: Tri::Unknown,
            shared_access: SharedAccess::Unknown,
            shared_with_cloudfront: Tri::Unknown,
            allows_unencrypted_object_uploads: Tri::Unknown,
            internal_accounts: Vec::new(),
            external_accounts: Vec::new(),
            witnesses: Vec::new(),
            unknown_reasons: vec![reason.into()],
            internal_error: false,
            stats: AnalysisStats::default(),
        }
    }

    /// Whether a verdict is UNKNOWN because the time budget (or Z3's timeout within it) ran
    /// out: on a less busy machine, or with a larger budget, the same policy may be decided,
    /// so such an analysis is not one to remember.
    pub fn ran_out_of_time(&self) -> bool {
        self.unknown_reasons.iter().any(|r| r.contains(BUDGET_REASON))
    }
}

/// The words every reason of a budget that ran out contains (`verifier.rs` writes them).
pub const BUDGET_REASON: &str = "budget";
