//! Organization-wide statistics, maintained incrementally: each bucket contributes its
//! judgement once, and a change replaces the old contribution with the new one.

use std::collections::HashMap;

use estate_common::macie::{BucketStatistics, EffectivePermission, PostureReason, SharedAccess, Tri};

use crate::judge::{EncryptionClass, Judgement};

/// `total += sign * part`, saturating: counters are validated at the edge, and sums over
/// millions of buckets must not wrap (release) or panic (debug) even so.
fn add(total: &mut i64, sign: i64, part: i64) {
    *total = total.saturating_add(sign.saturating_mul(part));
}

/// Adds (`sign` = 1) or removes (`sign` = -1) one bucket's contribution.
pub fn apply(stats: &mut BucketStatistics, judgement: &Judgement, sign: i64) {
    stats.bucket_count += sign;
    let by_permission = &mut stats.bucket_count_by_effective_permission;
    match judgement.effective_permission {
        EffectivePermission::Public => by_permission.publicly_accessible += sign,
        EffectivePermission::Unknown => by_permission.unknown += sign,
        EffectivePermission::NotPublic => {}
    }
    if judgement.publicly_readable {
        by_permission.publicly_readable += sign;
    }
    if judgement.publicly_writable {
        by_permission.publicly_writable += sign;
    }
    let by_encryption = &mut stats.bucket_count_by_encryption_type;
    match judgement.encryption {
        EncryptionClass::KmsManaged => by_encryption.kms_managed += sign,
        EncryptionClass::S3Managed => by_encryption.s3_managed += sign,
        EncryptionClass::Unencrypted => by_encryption.unencrypted += sign,
        EncryptionClass::Unknown => by_encryption.unknown += sign,
    }
    let by_requirement = &mut stats.bucket_count_by_object_encryption_requirement;
    match judgement.allows_unencrypted_object_uploads {
        Tri::True => by_requirement.allows_unencrypted_object_uploads += sign,
        Tri::False => by_requirement.denies_unencrypted_object_uploads += sign,
        Tri::Unknown => by_requirement.unknown += sign,
    }
    // Error buckets and buckets not yet counted add nothing to the storage and object totals.
    if let Some(o) = &judgement.objects {
        add(&mut stats.object_count, sign, o.object_count);
        add(&mut stats.size_in_bytes, sign, o.size_in_bytes);
        add(&mut stats.size_in_bytes_compressed, sign, o.size_in_bytes_compressed);
        add(&mut stats.classifiable_object_count, sign, o.classifiable_object_count);
        add(&mut stats.classifiable_size_in_bytes, sign, o.classifiable_size_in_bytes);
        for (total, part) in [
            (&mut stats.unclassifiable_object_count, o.unclassifiable_object_count),
            (&mut stats.unclassifiable_object_size_in_bytes, o.unclassifiable_object_size_in_bytes),
        ] {
            add(&mut total.file_type, sign, part.file_type);
            add(&mut total.storage_class, sign, part.storage_class);
            add(&mut total.total, sign, part.total);
        }
    }
    let by_sharing = &mut stats.bucket_count_by_shared_access_type;
    match judgement.shared_access {
        SharedAccess::External => by_sharing.external += sign,
        SharedAccess::Internal => by_sharing.internal += sign,
        SharedAccess::NotShared => by_sharing.not_shared += sign,
        SharedAccess::Unknown => by_sharing.unknown += sign,
    }
}

/// How many buckets the posture report holds: for each reason (in
/// [`crate::judge::POSTURE_REASONS`] order), and for any reason.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PostureCounts {
    pub by_reason: [i64; 5],
    pub exposed: i64,
}

impl PostureCounts {
    /// Adds (`sign` = 1) or removes (`sign` = -1) one bucket's [`Judgement::posture`] flags.
    fn apply(&mut self, flags: [bool; 5], sign: i64) {
        for (count, yes) in self.by_reason.iter_mut().zip(flags) {
            if yes {
                *count += sign;
            }
        }
        if flags.contains(&true) {
            self.exposed += sign;
        }
    }

    /// The count for one reason, or for any reason.
    pub fn count(&self, reason: Option<PostureReason>) -> i64 {
        match reason {
            None => self.exposed,
            Some(r) => crate::judge::POSTURE_REASONS.iter().position(|x| *x == r).map_or(0, |i| self.by_reason[i]),
        }
    }
}

/// One account's part: its statistics and its posture counts.
#[derive(Debug, Default)]
struct AccountTotals {
    stats: BucketStatistics,
    posture: PostureCounts,
}

/// Statistics per account and for the whole organization, kept side by side so that both
/// answers cost O(1); the posture report's counts likewise.
#[derive(Debug, Default)]
pub struct Statistics {
    total: BucketStatistics,
    posture_total: PostureCounts,
    by_account: HashMap<String, AccountTotals>,
}

impl Statistics {
    /// Called for every bucket change: one hash lookup, and an allocation only for an
    /// account's first bucket.
    pub fn add(&mut self, account_id: &str, judgement: &Judgement) {
        let flags = judgement.posture();
        apply(&mut self.total, judgement, 1);
        self.posture_total.apply(flags, 1);
        let account = match self.by_account.get_mut(account_id) {
            Some(account) => account,
            None => self.by_account.entry(account_id.to_owned()).or_default(),
        };
        apply(&mut account.stats, judgement, 1);
        account.posture.apply(flags, 1);
    }

    pub fn remove(&mut self, account_id: &str, judgement: &Judgement) {
        let flags = judgement.posture();
        apply(&mut self.total, judgement, -1);
        self.posture_total.apply(flags, -1);
        if let Some(account) = self.by_account.get_mut(account_id) {
            apply(&mut account.stats, judgement, -1);
            account.posture.apply(flags, -1);
        }
    }

    pub fn total(&self) -> BucketStatistics {
        self.total
    }

    pub fn account(&self, account_id: &str) -> BucketStatistics {
        self.by_account.get(account_id).map(|a| a.stats).unwrap_or_default()
    }

    /// The posture report's counts, for the organization or one account.
    pub fn posture(&self, account_id: Option<&str>) -> PostureCounts {
        match account_id {
            None => self.posture_total,
            Some(a) => self.by_account.get(a).map(|a| a.posture).unwrap_or_default(),
        }
    }

    /// Every account that has had buckets, with its posture counts (zero once its buckets are
    /// gone).
    pub fn posture_accounts(&self) -> impl Iterator<Item = (&str, &PostureCounts)> {
        self.by_account.iter().map(|(a, t)| (a.as_str(), &t.posture))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remove_undoes_add() {
        let mut stats = Statistics::default();
        let mut public = Judgement::unknown();
        public.effective_permission = EffectivePermission::Public;
        public.publicly_readable = true;
        stats.add("a", &public);
        stats.add("b", &Judgement::unknown());
        assert_eq!(stats.total().bucket_count, 2);
        assert_eq!(stats.total().bucket_count_by_effective_permission.publicly_accessible, 1);
        assert_eq!(stats.account("b").bucket_count_by_shared_access_type.unknown, 1);
        assert_eq!(stats.posture(None).count(Some(PostureReason::Public)), 1);
        assert_eq!(stats.posture(Some("a")).exposed, 1);
        assert_eq!(stats.posture(Some("b")).exposed, 0, "an error bucket is exposed for no known reason");
        stats.remove("a", &public);
        stats.remove("b", &Judgement::unknown());
        assert_eq!(stats.total(), BucketStatistics::default());
        assert_eq!(stats.account("a"), BucketStatistics::default());
        assert_eq!(stats.posture(None), PostureCounts::default());
        assert_eq!(stats.posture(Some("a")), PostureCounts::default());
    }

    #[test]
    fn sums_saturate_instead_of_wrapping() {
        let mut total = i64::MAX - 1;
        add(&mut total, 1, 10);
        assert_eq!(total, i64::MAX);
        add(&mut total, -1, i64::MAX);
        assert_eq!(total, 0);
    }
}
