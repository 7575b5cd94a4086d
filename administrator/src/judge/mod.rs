//! Judgements that follow from a bucket's facts, its account's settings and the organization:
//! public access, sharing, encryption and replication, exactly as Macie defines them. Pure
//! functions; the policy's own verdicts come in as `PolicyVerdict`.

use std::collections::BTreeSet;

use estate_common::macie::{
    AccessControlList, BucketPolicy, EffectivePermission, EncryptionType, PostureReason, ReplicationDetails,
    SharedAccess, Tri,
};
use estate_common::model::{
    AccountSettings, BlockPublicAccess, BucketConfig, BucketFacts, ConfigCall, Grantee, ObjectOwnership,
    ALL_USERS_GROUP, AUTHENTICATED_USERS_GROUP,
};
use estate_common::objects::ObjectTotals;
use serde::{Deserialize, Serialize};

mod metadata;
mod org;
pub use metadata::{metadata, snapshot};
pub use org::{destination_name, DestinationOwner, OrgView};

/// The policy's verdicts, or UNKNOWN for a policy not (yet) decided. Stored with the outcome
/// it comes from (`state/verdicts.rs`, the `policy_outcomes` tree): a layout change is a new record
/// version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyVerdict {
    pub public_read: Tri,
    pub public_write: Tri,
    pub unencrypted_uploads: Tri,
    pub shared_internal: Vec<String>,
    /// Outside accounts; `*` for any outside account or anonymous caller.
    pub shared_external: Vec<String>,
    pub shared_with_cloudfront: Tri,
    /// Whether the sharing verdict could be decided at all.
    pub sharing_decided: bool,
    /// The accounts among `shared_internal` and `shared_external` that get in through an AWS
    /// service principal acting for them, which RestrictPublicBuckets leaves in. Not stored:
    /// derived from the witnesses (`serviceActingFor:ACCOUNT`) whenever an outcome is made
    /// or loaded (`state/verdicts.rs`), so the stored layout is unchanged.
    #[serde(skip)]
    pub service_accounts: Vec<String>,
}

impl PolicyVerdict {
    /// The verdict for a policy that has not been analysed.
    pub fn undecided() -> Self {
        Self {
            public_read: Tri::Unknown,
            public_write: Tri::Unknown,
            unencrypted_uploads: Tri::Unknown,
            shared_internal: Vec::new(),
            shared_external: Vec::new(),
            shared_with_cloudfront: Tri::Unknown,
            sharing_decided: false,
            service_accounts: Vec::new(),
        }
    }
}

/// Default encryption, as the statistics count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncryptionClass {
    KmsManaged,
    S3Managed,
    Unencrypted,
    Unknown,
}

impl EncryptionClass {
    /// The class of a bucket's default encryption as [`default_encryption_type`] reads it.
    fn of(kind: Option<EncryptionType>) -> Self {
        match kind {
            None => EncryptionClass::Unknown,
            Some(EncryptionType::None) => EncryptionClass::Unencrypted,
            Some(EncryptionType::Aes256) => EncryptionClass::S3Managed,
            Some(EncryptionType::AwsKms | EncryptionType::AwsKmsDsse) => EncryptionClass::KmsManaged,
        }
    }
}

/// The bucket's default encryption in Macie's terms: `EncryptionType::None` when none is
/// configured, `None` when it is unknown (the call was not read, or the algorithm is one
/// Estate does not know).
pub(crate) fn default_encryption_type(config: &BucketConfig) -> Option<EncryptionType> {
    if config.is_unread(ConfigCall::Encryption) {
        return None;
    }
    match &config.default_encryption {
        None => Some(EncryptionType::None),
        Some(e) => EncryptionType::from_s3_algorithm(&e.algorithm),
    }
}

/// Everything derived about one bucket; what the statistics count and queries filter on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judgement {
    pub effective_permission: EffectivePermission,
    pub publicly_readable: bool,
    pub publicly_writable: bool,
    pub acl: Option<AccessControlList>,
    pub policy: Option<PolicyFlags>,
    pub shared_access: SharedAccess,
    pub shared_with_accounts: Vec<String>,
    /// A named account outside the organization (not CloudFront) is known to get in.
    pub shared_outside_named: bool,
    /// Any account at all (`*` among `shared_with_accounts`) is known to get in.
    pub shared_with_anyone: bool,
    /// The members among `shared_with_accounts`.
    pub shared_internal: Vec<String>,
    /// `Unknown` without a decided policy too; `False` when there is no policy.
    pub shared_with_cloud_front: Tri,
    pub allows_unencrypted_object_uploads: Tri,
    pub encryption: EncryptionClass,
    pub replication: Option<ReplicationDetails>,
    /// The numbers the statistics sum and queries filter on; `None` for an error bucket or
    /// a bucket whose objects have not been counted.
    pub objects: Option<ObjectTotals>,
    /// PUBLIC because S3's own `PolicyStatus.IsPublic` says so while the analyser answered
    /// UNKNOWN (shown as [`PUBLIC_BY_S3_POLICY_STATUS`]).
    pub public_by_s3_policy_status: bool,
    /// PUBLIC only because the ACL grants AllUsers or AuthenticatedUsers READ_ACP (shown as
    /// [`PUBLIC_BY_ACL_GRANT`]).
    pub public_by_acl_grant: bool,
}

/// The posture report's reasons, in the order of [`Judgement::posture`].
pub const POSTURE_REASONS: [PostureReason; 5] = [
    PostureReason::Public,
    PostureReason::SharedExternally,
    PostureReason::SharedInternally,
    PostureReason::ReplicatedExternally,
    PostureReason::AllowsUnencryptedUploads,
];

/// Why a bucket is PUBLIC when S3's `PolicyStatus.IsPublic` decided it (the metadata's
/// `publicAccessReason`).
pub const PUBLIC_BY_S3_POLICY_STATUS: &str =
    "S3's PolicyStatus.IsPublic says the bucket policy is public, and the policy analysis is UNKNOWN";

/// Why a bucket is PUBLIC when only an ACL grant that neither reads nor writes objects makes it
/// so (the metadata's `publicAccessReason`).
pub const PUBLIC_BY_ACL_GRANT: &str = "The ACL grants READ_ACP to AllUsers or AuthenticatedUsers: \
     S3 counts an ACL that grants these groups anything as public, though this grant neither reads nor writes objects";

impl Judgement {
    /// Whether the bucket is in the posture report for each reason, in [`POSTURE_REASONS`]
    /// order (no allocation: the statistics count these for every bucket).
    pub fn posture(&self) -> [bool; 5] {
        [
            self.effective_permission == EffectivePermission::Public,
            self.shared_access == SharedAccess::External,
            !self.shared_internal.is_empty(),
            self.replication.as_ref().and_then(|r| r.replicated_externally) == Some(true),
            self.allows_unencrypted_object_uploads == Tri::True,
        ]
    }

    /// Why the bucket is exposed (empty when it is not).
    pub fn posture_reasons(&self) -> Vec<PostureReason> {
        POSTURE_REASONS.into_iter().zip(self.posture()).filter_map(|(reason, yes)| yes.then_some(reason)).collect()
    }

    /// An error bucket: every derived judgement is UNKNOWN.
    pub fn unknown() -> Self {
        Self {
            effective_permission: EffectivePermission::Unknown,
            publicly_readable: false,
            publicly_writable: false,
            acl: None,
            policy: None,
            shared_access: SharedAccess::Unknown,
            shared_with_accounts: Vec::new(),
            shared_outside_named: false,
            shared_with_anyone: false,
            shared_internal: Vec::new(),
            shared_with_cloud_front: Tri::Unknown,
            allows_unencrypted_object_uploads: Tri::Unknown,
            encryption: EncryptionClass::Unknown,
            replication: None,
            objects: None,
            public_by_s3_policy_status: false,
            public_by_acl_grant: false,
        }
    }
}

/// A block-public-access flag as S3 applies it: set at either level wins; unknown account
/// settings leave it unknown unless the bucket sets it.
fn effective_flag(
    bucket: Option<BlockPublicAccess>,
    bucket_unread: bool,
    account: Option<BlockPublicAccess>,
    flag: fn(BlockPublicAccess) -> bool,
) -> Tri {
    let bucket = if bucket_unread { Tri::Unknown } else { Tri::from_bool(bucket.is_some_and(flag)) };
    let account = account.map_or(Tri::Unknown, |a| Tri::from_bool(flag(a)));
    bucket.or(account)
}

/// Judges a bucket without knowing who owns replication destinations named without their
/// account (those make `replicatedExternally` unknown).
pub fn judge(
    facts: &BucketFacts,
    account: Option<&AccountSettings>,
    org: &OrgView,
    policy: Option<&PolicyVerdict>,
) -> Judgement {
    judge_with(facts, account, org, policy, &|name| {
        DestinationOwner::Unknown(format!("the owner of bucket `{name}` is not known here"))
    })
}

/// Judges a bucket; `owner` says who owns a destination bucket a replication rule names
/// without its account.
pub fn judge_with(
    facts: &BucketFacts,
    account: Option<&AccountSettings>,
    org: &OrgView,
    policy: Option<&PolicyVerdict>,
    owner: &dyn Fn(&str) -> DestinationOwner,
) -> Judgement {
    let Some(config) = facts.config() else {
        return Judgement::unknown();
    };
    let account_bpa = account.and_then(|a| a.block_public_access.effective());
    let bpa_unread = config.is_unread(ConfigCall::PublicAccessBlock);
    let ignore_acls = effective_flag(config.block_public_access, bpa_unread, account_bpa, |b| b.ignore_public_acls);
    let restrict_policy =
        effective_flag(config.block_public_access, bpa_unread, account_bpa, |b| b.restrict_public_buckets);

    let (acl, other_grant) = acl_verdict(config);
    let (acl_read, acl_write, acl_other) = acl_public(config, acl, other_grant);
    let undecided = PolicyVerdict::undecided();
    let policy_verdict = match (&config.policy, policy) {
        // An unread policy may be anything.
        _ if config.is_unread(ConfigCall::Policy) => Some(&undecided),
        (None, _) => None,
        (Some(_), Some(verdict)) => Some(verdict),
        (Some(_), None) => Some(&undecided),
    };
    let (policy_read, policy_write) =
        policy_verdict.map_or((Tri::False, Tri::False), |p| (p.public_read, p.public_write));

    let readable = policy_read.and(!restrict_policy).or(acl_read.and(!ignore_acls));
    let writable = policy_write.and(!restrict_policy).or(acl_write.and(!ignore_acls));
    // S3's own verdict stands in where the analyser could not decide: the policy was
    // analysed (or could not be read) and the analysis left public access UNKNOWN. A policy
    // still being analysed (`policy` is `None`) waits for its analysis.
    let analysis_unknown = (config.is_unread(ConfigCall::Policy) || (config.policy.is_some() && policy.is_some()))
        && policy_read.or(policy_write) == Tri::Unknown;
    let s3_says_public =
        analysis_unknown && !config.is_unread(ConfigCall::PolicyStatus) && config.policy_status_public == Some(true);
    let by_status = Tri::from_bool(s3_says_public).and(!restrict_policy);
    // An ACL that grants AllUsers or AuthenticatedUsers anything is public, READ_ACP included,
    // though that grant neither reads nor writes objects.
    let by_acl_grant = acl_other.and(!ignore_acls);
    let public = readable.or(writable).or(by_status).or(by_acl_grant);
    let effective_permission = match public {
        Tri::True => EffectivePermission::Public,
        Tri::False => EffectivePermission::NotPublic,
        Tri::Unknown => EffectivePermission::Unknown,
    };

    let Sharing { verdict: shared_access, accounts: shared_with_accounts, named_outside, anyone, internal } =
        sharing(facts, config, org, ignore_acls, restrict_policy, policy_verdict);

    Judgement {
        effective_permission,
        publicly_readable: readable == Tri::True,
        publicly_writable: writable == Tri::True,
        acl,
        policy: policy_verdict.map(|p| bucket_policy(p, config)),
        shared_access,
        shared_with_accounts,
        shared_outside_named: named_outside,
        shared_with_anyone: anyone,
        shared_internal: internal,
        shared_with_cloud_front: policy_verdict.map_or(Tri::False, |p| p.shared_with_cloudfront),
        allows_unencrypted_object_uploads: policy_verdict.map_or(Tri::True, |p| p.unencrypted_uploads),
        encryption: EncryptionClass::of(default_encryption_type(config)),
        replication: replication(facts, config, org, owner),
        objects: config.objects.as_deref().map(|o| o.totals),
        public_by_s3_policy_status: by_status == Tri::True && readable.or(writable) != Tri::True,
        public_by_acl_grant: by_acl_grant == Tri::True && readable.or(writable).or(by_status) != Tri::True,
    }
}

/// Macie's bucket-policy flags, always booleans as in Macie: Estate's verdicts, or while one
/// is UNKNOWN, S3's own `PolicyStatus.IsPublic` for both (`true` when that was not read
/// either), with the reason.
fn bucket_policy(p: &PolicyVerdict, config: &BucketConfig) -> PolicyFlags {
    let s3 = if config.is_unread(ConfigCall::PolicyStatus) { None } else { config.policy_status_public };
    let undecided = p.public_read == Tri::Unknown || p.public_write == Tri::Unknown;
    let stand_in = s3.unwrap_or(true);
    PolicyFlags {
        allows_public_read_access: p.public_read.as_bool().unwrap_or(stand_in),
        allows_public_write_access: p.public_write.as_bool().unwrap_or(stand_in),
        stand_in: undecided.then_some(s3),
    }
}

/// Macie's bucket-policy flags as [`bucket_policy`] decides them; a few bytes, kept for every
/// bucket in the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyFlags {
    pub allows_public_read_access: bool,
    pub allows_public_write_access: bool,
    /// Set when Estate's analysis is UNKNOWN: S3's `PolicyStatus.IsPublic` stood in for it
    /// (`Some(None)`: that was not read either, and the flags are `true`).
    pub stand_in: Option<Option<bool>>,
}

impl PolicyFlags {
    /// Macie's view.
    pub fn macie(self) -> BucketPolicy {
        BucketPolicy {
            allows_public_read_access: Some(self.allows_public_read_access),
            allows_public_write_access: Some(self.allows_public_write_access),
        }
    }

    /// Why the flags are not Estate's own verdict, when they are not.
    pub fn stand_in_reason(self) -> Option<String> {
        self.stand_in.map(|s3| match s3 {
            Some(public) => format!(
                "bucketPolicy's flags that Estate's analysis left UNKNOWN are S3's PolicyStatus.IsPublic ({public})"
            ),
            None => "bucketPolicy's flags that Estate's analysis left UNKNOWN are true: S3's PolicyStatus was not \
                     read either"
                .to_owned(),
        })
    }
}

/// Whether the ACL makes the bucket publicly readable, writable, and public through a grant
/// that is neither (`other`, READ_ACP): unknown when the ACL, or (for an ACL with public
/// grants) the ownership controls that may disable it, were not read.
fn acl_public(config: &BucketConfig, acl: Option<AccessControlList>, other: bool) -> (Tri, Tri, Tri) {
    if config.is_unread(ConfigCall::Acl) {
        return (Tri::Unknown, Tri::Unknown, Tri::Unknown);
    }
    let (read, write) = acl.map_or((false, false), |a| (a.allows_public_read_access, a.allows_public_write_access));
    let maybe = |grants: bool| match (grants, config.is_unread(ConfigCall::OwnershipControls)) {
        (true, true) => Tri::Unknown,
        (grants, _) => Tri::from_bool(grants),
    };
    (maybe(read), maybe(write), maybe(other))
}

/// ACL grants to AllUsers or AuthenticatedUsers, and whether one of them grants a permission
/// that neither reads nor writes (READ_ACP); none when ACLs are disabled.
fn acl_verdict(config: &BucketConfig) -> (Option<AccessControlList>, bool) {
    let Some(acl) = config.acl.as_ref() else { return (None, false) };
    if config.object_ownership == Some(ObjectOwnership::BucketOwnerEnforced) {
        return (
            Some(AccessControlList { allows_public_read_access: false, allows_public_write_access: false }),
            false,
        );
    }
    let public = acl.grants.iter().filter(|g| g.grantee.is_public_group());
    let (mut read, mut write, mut other) = (false, false, false);
    for grant in public {
        read |= grant.permission.grants_read();
        write |= grant.permission.grants_write();
        other |= !grant.permission.grants_read() && !grant.permission.grants_write();
    }
    (Some(AccessControlList { allows_public_read_access: read, allows_public_write_access: write }), other)
}

/// Who the bucket is shared with, as [`sharing`] decides it.
struct Sharing {
    verdict: SharedAccess,
    /// Every account that gets in: members, outsiders, `cloudfront`, `*`.
    accounts: Vec<String>,
    /// An outside account other than CloudFront or `*` gets in.
    named_outside: bool,
    /// `*` gets in.
    anyone: bool,
    /// The members among `accounts`.
    internal: Vec<String>,
}

fn sharing(
    facts: &BucketFacts,
    config: &BucketConfig,
    org: &OrgView,
    ignore_acls: Tri,
    restrict_policy: Tri,
    policy: Option<&PolicyVerdict>,
) -> Sharing {
    let owner = &facts.key.account_id;
    let mut internal = BTreeSet::new();
    let mut external = BTreeSet::new();
    // An unread ACL may grant to anyone; unread ownership controls may leave a grant in force.
    let mut undecided = config.is_unread(ConfigCall::Acl);

    if let Some(acl) = &config.acl {
        if config.object_ownership != Some(ObjectOwnership::BucketOwnerEnforced) {
            let grants_to_others = acl.grants.iter().any(|g| match &g.grantee {
                Grantee::CanonicalUser(id) => *id != acl.owner_canonical_id,
                _ => true,
            });
            undecided |= grants_to_others && config.is_unread(ConfigCall::OwnershipControls);
            for grant in &acl.grants {
                match &grant.grantee {
                    Grantee::CanonicalUser(id) if *id == acl.owner_canonical_id => {}
                    Grantee::CanonicalUser(id) => match org.canonical_ids.get(id) {
                        Some(account) if account == owner => {}
                        Some(account) if org.members().contains(account) => {
                            internal.insert(account.to_string());
                        }
                        Some(account) => {
                            external.insert(account.to_string());
                        }
                        None => {
                            external.insert(format!("canonical:{id}"));
                        }
                    },
                    Grantee::Email(email) => {
                        external.insert(format!("email:{email}"));
                    }
                    Grantee::Group(uri) if uri == ALL_USERS_GROUP || uri == AUTHENTICATED_USERS_GROUP => {
                        match ignore_acls {
                            Tri::True => {}
                            Tri::False => {
                                external.insert("*".to_owned());
                            }
                            Tri::Unknown => undecided = true,
                        }
                    }
                    Grantee::Group(_) => {}
                }
            }
        }
    }

    if let Some(policy) = policy {
        // RestrictPublicBuckets: a bucket with a public policy is reachable only by the
        // owner's account and AWS service principals; cross-account grants stop working.
        let public = policy.public_read.or(policy.public_write);
        let cross_account_blocked = public.and(restrict_policy);
        let shares = !policy.shared_external.is_empty() || !policy.shared_internal.is_empty();
        if !policy.sharing_decided || (cross_account_blocked == Tri::Unknown && shares) {
            undecided = true;
        } else if cross_account_blocked == Tri::False {
            internal.extend(policy.shared_internal.iter().filter(|a| *a != owner).cloned());
            external.extend(policy.shared_external.iter().cloned());
        } else if cross_account_blocked == Tri::True {
            // AWS service principals still get in, and with them the accounts they act for.
            for account in &policy.service_accounts {
                if policy.shared_internal.contains(account) && account != owner {
                    internal.insert(account.clone());
                } else if policy.shared_external.contains(account) {
                    external.insert(account.clone());
                }
            }
        }
        if policy.shared_with_cloudfront == Tri::True {
            external.insert("cloudfront".to_owned());
        } else if policy.shared_with_cloudfront == Tri::Unknown && policy.sharing_decided {
            undecided = true;
        }
    }

    let accounts: Vec<String> = internal.iter().chain(external.iter()).cloned().collect();
    let verdict = if !external.is_empty() {
        SharedAccess::External
    } else if undecided {
        SharedAccess::Unknown
    } else if !internal.is_empty() {
        SharedAccess::Internal
    } else {
        SharedAccess::NotShared
    };
    Sharing {
        verdict,
        accounts,
        named_outside: external.iter().any(|a| a != "cloudfront" && a != "*"),
        anyone: external.contains("*"),
        internal: internal.into_iter().collect(),
    }
}

fn replication(
    facts: &BucketFacts,
    config: &BucketConfig,
    org: &OrgView,
    owner: &dyn Fn(&str) -> DestinationOwner,
) -> Option<ReplicationDetails> {
    // Not read: nothing is known of it, and Macie's replicationDetails is absent (the
    // bucket's unreadConfiguration names the call).
    if config.is_unread(ConfigCall::Replication) {
        return None;
    }
    let Some(replication) = &config.replication else {
        return Some(ReplicationDetails {
            replicated: false,
            replicated_externally: Some(false),
            replication_accounts: vec![],
            unknown_reason: None,
        });
    };
    let enabled: Vec<_> = replication.rules.iter().filter(|r| r.enabled).collect();
    let mut accounts = BTreeSet::new();
    let mut externally = Tri::False;
    let mut reasons = Vec::new();
    let outside = |account: &String| *account != facts.key.account_id && !org.accounts().contains(account.as_str());
    for rule in &enabled {
        let named = match &rule.destination_account {
            Some(account) => Some(account.clone()),
            None => match destination_name(&rule.destination_bucket_arn).map(owner) {
                Some(DestinationOwner::Account(account)) => Some(account.into()),
                Some(DestinationOwner::Outside) => {
                    externally = Tri::True;
                    None
                }
                Some(DestinationOwner::Unknown(reason)) => {
                    reasons.push(reason);
                    None
                }
                None => {
                    reasons.push(format!("`{}` is not a bucket ARN", rule.destination_bucket_arn));
                    None
                }
            },
        };
        if let Some(account) = named {
            if outside(&account) {
                externally = Tri::True;
            }
            accounts.insert(account);
        }
    }
    if !reasons.is_empty() {
        externally = externally.or(Tri::Unknown);
    }
    Some(ReplicationDetails {
        replicated: !enabled.is_empty(),
        replicated_externally: externally.as_bool(),
        replication_accounts: accounts.into_iter().collect(),
        unknown_reason: (externally == Tri::Unknown).then(|| reasons.join("; ")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    // The Macie view of what is judged here, to check both together.
    use crate::judge::metadata;

    #[test]
    fn a_destination_arn_names_its_bucket() {
        assert_eq!(destination_name("arn:aws:s3:::dest"), Some("dest"));
        assert_eq!(destination_name("arn:aws:s3:::dest/prefix"), None);
        assert_eq!(destination_name("dest"), None);
    }
    use estate_common::model::{
        AccountBlockPublicAccess, Acl, AclGrant, AclPermission, BucketError, BucketErrorCode, BucketKey, BucketState,
        Replication, ReplicationRule,
    };

    const OWNER: &str = "111111111111";

    fn facts(config: BucketConfig) -> BucketFacts {
        BucketFacts {
            key: BucketKey::parse(OWNER, "eu-west-1", "b").unwrap(),
            created_at: 1,
            read_at: 2,
            state: BucketState::Readable(Box::new(config)),
        }
    }

    fn acl(grants: Vec<(Grantee, AclPermission)>) -> Option<Acl> {
        Some(Acl {
            owner_canonical_id: "owner-canonical".into(),
            grants: grants.into_iter().map(|(grantee, permission)| AclGrant { grantee, permission }).collect(),
        })
    }

    fn account(bpa: AccountBlockPublicAccess) -> AccountSettings {
        AccountSettings { account_id: OWNER.parse().unwrap(), read_at: 1, block_public_access: bpa }
    }

    fn org() -> OrgView {
        let mut org =
            OrgView::new(None, [OWNER, "222222222222"].iter().map(|s| s.parse().unwrap()).collect(), Vec::new());
        org.canonical_ids = [("member-canonical".to_string(), "222222222222".parse().unwrap())].into_iter().collect();
        org
    }

    fn all_users(permission: AclPermission) -> (Grantee, AclPermission) {
        (Grantee::Group(ALL_USERS_GROUP.into()), permission)
    }

    #[test]
    fn public_read_acl_is_public_unless_ignored_or_acls_disabled() {
        let config = BucketConfig { acl: acl(vec![all_users(AclPermission::Read)]), ..Default::default() };
        let open = account(AccountBlockPublicAccess::NotConfigured);
        let j = judge(&facts(config.clone()), Some(&open), &org(), None);
        assert_eq!(j.effective_permission, EffectivePermission::Public);
        assert!(j.publicly_readable && !j.publicly_writable);
        assert_eq!(j.shared_access, SharedAccess::External);

        let ignore = BlockPublicAccess { ignore_public_acls: true, ..Default::default() };
        let j =
            judge(&facts(config.clone()), Some(&account(AccountBlockPublicAccess::Configured(ignore))), &org(), None);
        assert_eq!(j.effective_permission, EffectivePermission::NotPublic);
        // The ACL itself still grants public read; only its effect is neutralised.
        assert!(j.acl.unwrap().allows_public_read_access);

        let bucket_ignore = BucketConfig { block_public_access: Some(ignore), ..config.clone() };
        let j = judge(&facts(bucket_ignore), Some(&open), &org(), None);
        assert_eq!(j.effective_permission, EffectivePermission::NotPublic);

        let enforced = BucketConfig { object_ownership: Some(ObjectOwnership::BucketOwnerEnforced), ..config };
        let j = judge(&facts(enforced), Some(&open), &org(), None);
        assert_eq!(j.effective_permission, EffectivePermission::NotPublic);
        assert_eq!(j.shared_access, SharedAccess::NotShared);
    }

    #[test]
    fn any_grant_to_a_public_group_is_public_read_acp_included() {
        let open = account(AccountBlockPublicAccess::NotConfigured);
        let authenticated = (Grantee::Group(AUTHENTICATED_USERS_GROUP.into()), AclPermission::ReadAcp);
        for grant in [all_users(AclPermission::ReadAcp), authenticated] {
            let config = BucketConfig { acl: acl(vec![grant]), ..Default::default() };
            let j = judge(&facts(config.clone()), Some(&open), &org(), None);
            assert_eq!(j.effective_permission, EffectivePermission::Public);
            // Macie's two ACL flags still say what the grant does: neither reads nor writes.
            assert!(!j.publicly_readable && !j.publicly_writable);
            assert_eq!(
                j.acl,
                Some(AccessControlList { allows_public_read_access: false, allows_public_write_access: false })
            );
            assert!(j.public_by_acl_grant);
            assert_eq!(j.shared_access, SharedAccess::External);
            let m = metadata(&facts(config.clone()), &j, Some(&open), Default::default());
            assert_eq!(m.public_access_reason.as_deref(), Some(PUBLIC_BY_ACL_GRANT));

            let ignore = BlockPublicAccess { ignore_public_acls: true, ..Default::default() };
            let ignored = BucketConfig { block_public_access: Some(ignore), ..config.clone() };
            let j = judge(&facts(ignored), Some(&open), &org(), None);
            assert_eq!(j.effective_permission, EffectivePermission::NotPublic);
            assert!(!j.public_by_acl_grant);

            let enforced =
                BucketConfig { object_ownership: Some(ObjectOwnership::BucketOwnerEnforced), ..config.clone() };
            assert_eq!(
                judge(&facts(enforced), Some(&open), &org(), None).effective_permission,
                EffectivePermission::NotPublic
            );

            // Ownership controls not read: the grant may be in force.
            let unread_ownership = BucketConfig {
                unread: vec![estate_common::model::UnreadCall {
                    call: ConfigCall::OwnershipControls,
                    error: "throttled".into(),
                }],
                ..config
            };
            let j = judge(&facts(unread_ownership), Some(&open), &org(), None);
            assert_eq!(j.effective_permission, EffectivePermission::Unknown);
        }
        // A public read grant beside it: the reason is the read, not READ_ACP.
        let both = BucketConfig {
            acl: acl(vec![all_users(AclPermission::ReadAcp), all_users(AclPermission::Read)]),
            ..Default::default()
        };
        let j = judge(&facts(both), Some(&open), &org(), None);
        assert!(j.publicly_readable && !j.public_by_acl_grant);
    }

    #[test]
    fn write_acp_is_public_write_and_unknown_account_settings_give_unknown() {
        let config = BucketConfig { acl: acl(vec![all_users(AclPermission::WriteAcp)]), ..Default::default() };
        let unknown = account(AccountBlockPublicAccess::Unknown("denied".into()));
        let j = judge(&facts(config.clone()), Some(&unknown), &org(), None);
        assert_eq!(j.effective_permission, EffectivePermission::Unknown);
        let j = judge(&facts(config), Some(&account(AccountBlockPublicAccess::NotConfigured)), &org(), None);
        assert!(j.publicly_writable && !j.publicly_readable);
    }

    #[test]
    fn a_policy_is_unknown_until_decided_and_no_policy_is_exact() {
        let open = account(AccountBlockPublicAccess::NotConfigured);
        let j =
            judge(&facts(BucketConfig { policy: Some("{}".into()), ..Default::default() }), Some(&open), &org(), None);
        assert_eq!(j.effective_permission, EffectivePermission::Unknown);
        assert_eq!(j.shared_access, SharedAccess::Unknown);
        assert_eq!(j.allows_unencrypted_object_uploads, Tri::Unknown);
        // RestrictPublicBuckets neutralises any policy, decided or not.
        let restrict = BlockPublicAccess { restrict_public_buckets: true, ..Default::default() };
        let j = judge(
            &facts(BucketConfig {
                policy: Some("{}".into()),
                block_public_access: Some(restrict),
                ..Default::default()
            }),
            Some(&open),
            &org(),
            None,
        );
        assert_eq!(j.effective_permission, EffectivePermission::NotPublic);
        let j = judge(&facts(BucketConfig::default()), Some(&open), &org(), None);
        assert_eq!(j.effective_permission, EffectivePermission::NotPublic);
        assert_eq!(j.shared_access, SharedAccess::NotShared);
        assert_eq!(j.allows_unencrypted_object_uploads, Tri::True);
        assert_eq!(j.encryption, EncryptionClass::Unencrypted);
    }

    fn decided(public: bool, internal: &[&str], external: &[&str]) -> PolicyVerdict {
        PolicyVerdict {
            public_read: Tri::from_bool(public),
            public_write: Tri::False,
            unencrypted_uploads: Tri::False,
            shared_internal: internal.iter().map(|s| s.to_string()).collect(),
            shared_external: external.iter().map(|s| s.to_string()).collect(),
            shared_with_cloudfront: Tri::False,
            sharing_decided: true,
            service_accounts: Vec::new(),
        }
    }

    #[test]
    fn decided_policies_and_restrict_public_buckets() {
        let open = account(AccountBlockPublicAccess::NotConfigured);
        let with_policy = BucketConfig { policy: Some("{}".into()), ..Default::default() };
        let public = decided(true, &["222222222222"], &["*"]);
        let j = judge(&facts(with_policy.clone()), Some(&open), &org(), Some(&public));
        assert_eq!((j.effective_permission, j.shared_access), (EffectivePermission::Public, SharedAccess::External));
        assert_eq!(j.allows_unencrypted_object_uploads, Tri::False);
        // RestrictPublicBuckets blocks every cross-account grant of a public policy.
        let restrict = BlockPublicAccess { restrict_public_buckets: true, ..Default::default() };
        let restricted = BucketConfig { block_public_access: Some(restrict), ..with_policy.clone() };
        let j = judge(&facts(restricted), Some(&open), &org(), Some(&public));
        assert_eq!(
            (j.effective_permission, j.shared_access),
            (EffectivePermission::NotPublic, SharedAccess::NotShared)
        );
        // A non-public policy's grants are untouched by it.
        let internal = decided(false, &["222222222222"], &[]);
        let restricted = BucketConfig { block_public_access: Some(restrict), ..with_policy.clone() };
        let j = judge(&facts(restricted), Some(&open), &org(), Some(&internal));
        assert_eq!((j.effective_permission, j.shared_access), (EffectivePermission::NotPublic, SharedAccess::Internal));
        // Unknown account settings leave a public policy's sharing open.
        let unknown = account(AccountBlockPublicAccess::Unknown("denied".into()));
        let j = judge(&facts(with_policy), Some(&unknown), &org(), Some(&public));
        assert_eq!((j.effective_permission, j.shared_access), (EffectivePermission::Unknown, SharedAccess::Unknown));
    }

    /// S3's own PolicyStatus.IsPublic decides public access where the analyser answered
    /// UNKNOWN, and only there.
    #[test]
    fn s3_policy_status_decides_what_the_analysis_left_unknown() {
        let open = account(AccountBlockPublicAccess::NotConfigured);
        let says_public =
            BucketConfig { policy: Some("{}".into()), policy_status_public: Some(true), ..Default::default() };
        let undecided = PolicyVerdict::undecided();
        let j = judge(&facts(says_public.clone()), Some(&open), &org(), Some(&undecided));
        assert_eq!(j.effective_permission, EffectivePermission::Public);
        assert!(j.public_by_s3_policy_status);
        let m = metadata(&facts(says_public.clone()), &j, Some(&open), Default::default());
        assert_eq!(m.public_access_reason.as_deref(), Some(PUBLIC_BY_S3_POLICY_STATUS));
        // A policy that could not be read at all: S3's verdict decides too.
        let unread = BucketConfig {
            policy: None,
            unread: vec![estate_common::model::UnreadCall { call: ConfigCall::Policy, error: "denied".into() }],
            ..says_public.clone()
        };
        assert_eq!(judge(&facts(unread), Some(&open), &org(), None).effective_permission, EffectivePermission::Public);
        // Still being analysed: UNKNOWN until the analysis comes back.
        let j = judge(&facts(says_public.clone()), Some(&open), &org(), None);
        assert_eq!(j.effective_permission, EffectivePermission::Unknown);
        // The analyser's own decision stands.
        let j = judge(&facts(says_public.clone()), Some(&open), &org(), Some(&decided(false, &[], &[])));
        assert_eq!(j.effective_permission, EffectivePermission::NotPublic);
        assert!(!j.public_by_s3_policy_status);
        // S3 saying "not public", or its answer unread, leaves UNKNOWN.
        let says_not = BucketConfig { policy_status_public: Some(false), ..says_public.clone() };
        let j = judge(&facts(says_not), Some(&open), &org(), Some(&undecided));
        assert_eq!(j.effective_permission, EffectivePermission::Unknown);
        let status_unread = BucketConfig {
            unread: vec![estate_common::model::UnreadCall { call: ConfigCall::PolicyStatus, error: "x".into() }],
            ..says_public.clone()
        };
        let j = judge(&facts(status_unread), Some(&open), &org(), Some(&undecided));
        assert_eq!(j.effective_permission, EffectivePermission::Unknown);
        // RestrictPublicBuckets neutralises a public policy, whoever says it is public.
        let restrict = BlockPublicAccess { restrict_public_buckets: true, ..Default::default() };
        let restricted = BucketConfig { block_public_access: Some(restrict), ..says_public.clone() };
        let j = judge(&facts(restricted), Some(&open), &org(), Some(&undecided));
        assert_eq!(j.effective_permission, EffectivePermission::NotPublic);
        // Public through its ACL anyway: the reason is not S3's policy status.
        let acl_public = BucketConfig { acl: acl(vec![all_users(AclPermission::Read)]), ..says_public };
        let j = judge(&facts(acl_public), Some(&open), &org(), Some(&undecided));
        assert_eq!(j.effective_permission, EffectivePermission::Public);
        assert!(!j.public_by_s3_policy_status);
    }

    #[test]
    fn acl_grants_to_canonical_users_share_inside_or_outside() {
        let member = (Grantee::CanonicalUser("member-canonical".into()), AclPermission::Read);
        let stranger = (Grantee::CanonicalUser("stranger".into()), AclPermission::Read);
        let own = (Grantee::CanonicalUser("owner-canonical".into()), AclPermission::FullControl);
        let j = judge(
            &facts(BucketConfig { acl: acl(vec![own.clone(), member.clone()]), ..Default::default() }),
            None,
            &org(),
            None,
        );
        assert_eq!(j.shared_access, SharedAccess::Internal);
        assert_eq!(j.shared_with_accounts, vec!["222222222222".to_string()]);
        let j = judge(
            &facts(BucketConfig { acl: acl(vec![own, member, stranger]), ..Default::default() }),
            None,
            &org(),
            None,
        );
        assert_eq!(j.shared_access, SharedAccess::External);
    }

    #[test]
    fn replication_outside_the_organization_is_external() {
        let rule = |account: Option<&str>| ReplicationRule {
            id: "r".into(),
            enabled: true,
            destination_bucket_arn: "arn:aws:s3:::dest".into(),
            destination_account: account.map(str::to_owned),
        };
        let with = |rules| BucketConfig {
            replication: Some(Replication { role: "role".into(), rules }),
            ..Default::default()
        };
        let j = judge(&facts(with(vec![rule(Some("222222222222"))])), None, &org(), None);
        assert_eq!(j.replication.as_ref().unwrap().replicated_externally, Some(false));
        let j = judge(&facts(with(vec![rule(Some("222222222222")), rule(Some("999999999999"))])), None, &org(), None);
        let details = j.replication.unwrap();
        assert_eq!(details.replicated_externally, Some(true));
        assert_eq!(details.replication_accounts, vec!["222222222222", "999999999999"]);
        let j = judge(&facts(with(vec![rule(None)])), None, &org(), None);
        assert_eq!(j.replication.unwrap().replicated_externally, None);
    }

    /// A call that could not be read makes only what it decides unknown.
    #[test]
    fn unread_calls_make_only_their_own_judgements_unknown() {
        use estate_common::model::{BlockPublicAccess, ConfigCall, UnreadCall};
        let unread = |calls: &[ConfigCall]| BucketConfig {
            unread: calls.iter().map(|&call| UnreadCall { call, error: "unparsable".into() }).collect(),
            ..Default::default()
        };
        let open = account(AccountBlockPublicAccess::NotConfigured);
        let j = judge(&facts(unread(&[ConfigCall::Acl])), Some(&open), &org(), None);
        assert_eq!((j.effective_permission, j.shared_access), (EffectivePermission::Unknown, SharedAccess::Unknown));
        assert_eq!(j.encryption, EncryptionClass::Unencrypted, "the encryption was read");
        // The account ignores public ACLs: an unread ACL cannot make the bucket public.
        let ignoring = account(AccountBlockPublicAccess::Configured(BlockPublicAccess {
            ignore_public_acls: true,
            ..Default::default()
        }));
        let j = judge(&facts(unread(&[ConfigCall::Acl])), Some(&ignoring), &org(), None);
        assert_eq!(j.effective_permission, EffectivePermission::NotPublic);
        // An unread bucket-level BPA leaves a public ACL's effect unknown.
        let public_acl =
            BucketConfig { acl: acl(vec![all_users(AclPermission::Read)]), ..unread(&[ConfigCall::PublicAccessBlock]) };
        let j = judge(&facts(public_acl), Some(&open), &org(), None);
        assert_eq!(j.effective_permission, EffectivePermission::Unknown);
        let j = judge(&facts(unread(&[ConfigCall::Encryption, ConfigCall::Replication])), Some(&open), &org(), None);
        assert_eq!(j.encryption, EncryptionClass::Unknown);
        assert_eq!(j.replication, None, "unknown, not `replicated: false`");
        assert_eq!(j.effective_permission, EffectivePermission::NotPublic);
        let j = judge(&facts(unread(&[ConfigCall::Policy])), Some(&open), &org(), None);
        assert_eq!(j.effective_permission, EffectivePermission::Unknown);
        assert_eq!(j.allows_unencrypted_object_uploads, Tri::Unknown);
    }

    #[test]
    fn error_buckets_are_unknown_everywhere() {
        let error = BucketFacts {
            state: BucketState::Error(BucketError { code: BucketErrorCode::AccessDenied, message: "denied".into() }),
            ..facts(BucketConfig::default())
        };
        let j = judge(&error, None, &org(), None);
        assert_eq!(j, Judgement::unknown());
        let m = metadata(&error, &j, None, Default::default());
        assert_eq!(m.error_code.as_deref(), Some("ACCESS_DENIED"));
        assert!(m.server_side_encryption.is_none() && m.replication_details.is_none());
        // Macie's view of an error bucket: no tags read, no score; never a discovery or a job.
        assert_eq!((&m.tags, m.sensitivity_score), (&None, None));
        assert_eq!(m.job_details, estate_common::macie::JobDetails::none());
        let json = serde_json::to_value(&m).unwrap();
        assert_eq!(json["automatedDiscoveryMonitoringStatus"], "NOT_MONITORED");
        assert_eq!(json["jobDetails"]["isDefinedInJob"], "FALSE");
    }

    /// RestrictPublicBuckets stops cross-account grants of a public policy, but AWS service
    /// principals still get in, and with them the accounts they act for.
    #[test]
    fn restrict_public_buckets_leaves_the_accounts_services_act_for() {
        let open = account(AccountBlockPublicAccess::NotConfigured);
        let restrict = BlockPublicAccess { restrict_public_buckets: true, ..Default::default() };
        let config =
            BucketConfig { policy: Some("{}".into()), block_public_access: Some(restrict), ..Default::default() };
        let verdict = PolicyVerdict {
            service_accounts: vec!["555555555555".into()],
            ..decided(true, &["222222222222"], &["*", "444444444444", "555555555555"])
        };
        let j = judge(&facts(config), Some(&open), &org(), Some(&verdict));
        assert_eq!(j.effective_permission, EffectivePermission::NotPublic);
        assert_eq!(j.shared_access, SharedAccess::External);
        assert_eq!(j.shared_with_accounts, ["555555555555"], "only the service's account is left");
    }

    #[test]
    fn macies_policy_flags_are_booleans_with_s3s_status_standing_in() {
        let open = account(AccountBlockPublicAccess::NotConfigured);
        let with_status = |status: Option<bool>, unread: bool| BucketConfig {
            policy: Some("{}".into()),
            policy_status_public: status,
            unread: if unread {
                vec![estate_common::model::UnreadCall { call: ConfigCall::PolicyStatus, error: "throttled".into() }]
            } else {
                vec![]
            },
            ..Default::default()
        };
        let undecided = PolicyVerdict::undecided();
        for (config, flag, names) in [
            (with_status(Some(true), false), true, "(true)"),
            (with_status(Some(false), false), false, "(false)"),
            (with_status(Some(false), true), true, "not read"),
        ] {
            let j = judge(&facts(config.clone()), Some(&open), &org(), Some(&undecided));
            let flags = j.policy.unwrap();
            assert_eq!((flags.allows_public_read_access, flags.allows_public_write_access), (flag, flag));
            let m = metadata(&facts(config), &j, Some(&open), Default::default());
            assert!(m.policy_unknown_reasons.iter().any(|r| r.contains(names)), "{:?}", m.policy_unknown_reasons);
            let json = serde_json::to_value(&m).unwrap();
            let policy = &json["publicAccess"]["permissionConfiguration"]["bucketLevelPermissions"]["bucketPolicy"];
            assert_eq!(policy["allowsPublicReadAccess"], flag, "{policy}");
        }
        // A decided policy is Estate's own verdict, with no stand-in.
        let decided = PolicyVerdict { public_read: Tri::False, public_write: Tri::False, ..PolicyVerdict::undecided() };
        let j = judge(&facts(with_status(Some(true), false)), Some(&open), &org(), Some(&decided));
        assert_eq!(j.policy.unwrap().stand_in, None);
        assert!(!j.policy.unwrap().allows_public_read_access);
    }

    #[test]
    fn an_unknown_replication_owner_is_written_as_macies_true_with_the_reason() {
        let rule = ReplicationRule {
            id: "r".into(),
            enabled: true,
            destination_bucket_arn: "arn:aws:s3:::dest".into(),
            destination_account: None,
        };
        let config = BucketConfig {
            replication: Some(Replication { role: "role".into(), rules: vec![rule] }),
            ..Default::default()
        };
        let j = judge(&facts(config), None, &org(), None);
        let details = j.replication.unwrap();
        assert_eq!(details.replicated_externally, None, "the judgement keeps it unknown");
        let json = serde_json::to_value(&details).unwrap();
        assert_eq!(json["replicatedExternally"], true);
        assert!(json["unknownReason"].as_str().unwrap().contains("dest"), "{json}");
    }
}
