//! `Analyzer`: the analysis behind a bounded cache keyed by a SHA-256 of the policy text,
//! the bucket and the organization context, so identical inputs are analysed once.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

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

    /// Analyses (or recalls) the policy.
    pub fn analyze(&self, policy_text: &str, bucket: &str, ctx: &OrgContext) -> Result<Arc<Analysis>, PolicyError> {
        let key = cache_key(policy_text, bucket, ctx);
        if let Some(hit) = self.lock().map.get(&key) {
            return Ok(Arc::clone(hit));
        }
        let result = Arc::new(crate::analyze(policy_text, bucket, ctx, &self.opts)?);
        // An undecided verdict (a timeout, say) is not remembered: a later call may decide it.
        if self.capacity > 0 && result.unknown_reasons.is_empty() {
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
    let mut h = Sha256::new();
    let mut field = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    field(text.as_bytes());
    field(bucket.as_bytes());
    field(ctx.owner_account.as_bytes());
    field(ctx.organization_id.as_deref().unwrap_or("").as_bytes());
    field(if ctx.organization_id.is_some() { b"1" } else { b"0" });
    for m in &ctx.member_accounts {
        field(m.as_bytes());
    }
    field(b"|paths");
    for p in &ctx.organization_paths {
        field(p.as_bytes());
    }
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn caches_and_evicts() {
        assert_send_sync::<Analyzer>();
        let ctx = OrgContext {
            owner_account: "111111111111".into(),
            organization_id: None,
            member_accounts: Default::default(),
            organization_paths: vec![],
        };
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
}
