//! `Analyzer`: the analysis behind a bounded cache keyed by a SHA-256 of the policy text,
//! the bucket and the organization context, so identical inputs are analysed once.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use estate_types::AccountId;

use crate::analysis::{Analysis, AnalysisOptions, OrgContext};
use crate::error::PolicyError;

type Key = [u8; 32];

/// A caching analyser; cheap to share between threads.
#[derive(Debug)]
pub struct Analyzer {
    opts: AnalysisOptions,
    capacity: usize,
    cache: Mutex<Cache>,
}

#[derive(Debug, Default)]
struct Cache {
    map: HashMap<Key, Arc<Analysis>>,
    order: VecDeque<Key>,
}

impl Analyzer {
    /// An analyser keeping at most `capacity` results (0 disables the cache).
    pub fn new(opts: AnalysisOptions, capacity: usize) -> Self {
        Analyzer { opts, capacity, cache: Mutex::new(Cache::default()) }
    }

    /// Analyses (or recalls) the policy. A panic inside the analysis is caught and becomes
    /// an analysis with every verdict UNKNOWN and `internal_error` set: one policy never takes
    /// down the thread or the process that analyses it.
    pub fn analyze(&self, policy_text: &str, bucket: &str, ctx: &OrgContext) -> Result<Arc<Analysis>, PolicyError> {
        self.analyze_with(policy_text, bucket, ctx, || crate::analyze(policy_text, bucket, ctx, &self.opts))
    }

    fn analyze_with(
        &self,
        policy_text: &str,
        bucket: &str,
        ctx: &OrgContext,
        run: impl FnOnce() -> Result<Analysis, PolicyError>,
    ) -> Result<Arc<Analysis>, PolicyError> {
        let key = cache_key(policy_text, bucket, ctx);
        if let Some(hit) = self.lock().map.get(&key) {
            return Ok(Arc::clone(hit));
        }
        let result = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)) {
            Ok(outcome) => Arc::new(outcome?),
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic without a message".to_owned());
                let mut analysis = Analysis::undecided(format!("internal error in the analyser: {what}"));
                analysis.internal_error = true;
                // Not cached: the caller decides whether to remember the failure.
                return Ok(Arc::new(analysis));
            }
        };
        // Undecided verdicts are remembered too: the same text under the same context and
        // budget would spend the same budget again for the same answer.
        if self.capacity > 0 {
            let mut cache = self.lock();
            if !cache.map.contains_key(&key) {
                while cache.map.len() >= self.capacity {
                    match cache.order.pop_front() {
                        Some(old) => {
                            cache.map.remove(&old);
                        }
                        None => break,
                    }
                }
                cache.order.push_back(key);
                cache.map.insert(key, Arc::clone(&result));
            }
        }
        Ok(result)
    }

    /// Number of cached results.
    pub fn cached(&self) -> usize {
        self.lock().map.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        // A panic while holding the lock leaves a consistent map: recover it.
        self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn cache_key(text: &str, bucket: &str, ctx: &OrgContext) -> Key {
    let org = organization_digest(ctx.organization_id.as_deref(), ctx.member_accounts.iter(), &ctx.organization_paths);
    policy_digest(text, bucket, &ctx.owner_account, &org)
}

/// A digest of everything an analysis depends on: the policy text, the bucket, its owner and
/// the organization (as [`organization_digest`]). Equal digests mean equal verdicts.
pub fn policy_digest(text: &str, bucket: &str, owner: &str, organization: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    for field in [text.as_bytes(), bucket.as_bytes(), owner.as_bytes(), organization] {
        h.update((field.len() as u64).to_le_bytes());
        h.update(field);
    }
    h.finalize().into()
}

/// A digest of the organization an analysis is judged under: its ID, member accounts and
/// paths. Computed once per organization change, not once per bucket.
pub fn organization_digest<'a>(
    organization_id: Option<&str>,
    members: impl IntoIterator<Item = &'a AccountId>,
    paths: &[String],
) -> [u8; 32] {
    let mut h = Sha256::new();
    let mut field = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    match organization_id {
        Some(id) => field(format!("1{id}").as_bytes()),
        None => field(b"0"),
    }
    for m in members {
        field(m.as_bytes());
    }
    field(b"|paths");
    for p in paths {
        field(p.as_bytes());
    }
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    /// An owner in no organization.
    fn lone_account() -> OrgContext {
        OrgContext {
            owner_account: "111111111111".parse().unwrap(),
            organization_id: None,
            member_accounts: Arc::default(),
            organization_paths: vec![],
        }
    }

    #[test]
    fn caches_and_evicts() {
        assert_send_sync::<Analyzer>();
        let ctx = lone_account();
        let a = Analyzer::new(AnalysisOptions::default(), 1);
        let p1 = r#"{"Statement":[]}"#;
        let p2 = r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"}]}"#;
        let first = a.analyze(p1, "b", &ctx).unwrap();
        let again = a.analyze(p1, "b", &ctx).unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        a.analyze(p2, "b", &ctx).unwrap();
        assert_eq!(a.cached(), 1);
        assert!(a.analyze("{", "b", &ctx).is_err());
    }

    #[test]
    fn a_panic_becomes_an_internal_error() {
        let ctx = lone_account();
        let a = Analyzer::new(AnalysisOptions::default(), 10);
        let out = a.analyze_with("{}", "b", &ctx, || panic!("injected")).unwrap();
        assert!(out.internal_error);
        assert_eq!(out.shared_access, crate::SharedAccess::Unknown);
        assert!(out.unknown_reasons[0].contains("injected"), "{:?}", out.unknown_reasons);
        assert_eq!(a.cached(), 0);
        // The analyser (and its thread) carry on.
        assert!(!a.analyze(r#"{"Statement":[]}"#, "b", &ctx).unwrap().internal_error);
    }
}
