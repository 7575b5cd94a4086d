//! One account's limit of bucket reads at once, which backs off when AWS throttles the
//! account: halved (down to one) after a read that met throttling, raised by one after as many
//! clean reads as the limit allows at once, never above its maximum. AWS's API limits are per
//! account, so a hub lowers only the limit of the account that is throttled.

use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Debug)]
pub struct AdaptiveLimit {
    permits: Arc<Semaphore>,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Reads allowed at once now.
    current: usize,
    max: usize,
    /// Clean reads since the last change.
    clean: usize,
    /// Permits to take out of circulation as reads end (lowered while they held them).
    owed: usize,
}

/// A read's place under the limit; given back (or retired, when the limit was lowered) when
/// dropped.
#[derive(Debug)]
pub struct Permit {
    permit: Option<OwnedSemaphorePermit>,
    limit: Arc<AdaptiveLimit>,
}

impl AdaptiveLimit {
    pub fn new(max: usize) -> Arc<Self> {
        let max = max.max(1);
        Arc::new(Self {
            permits: Arc::new(Semaphore::new(max)),
            state: Mutex::new(State { current: max, max, clean: 0, owed: 0 }),
        })
    }

    /// Reads allowed at once now.
    pub fn current(&self) -> usize {
        self.state.lock().expect("limit lock").current
    }

    /// Waits for a place.
    pub async fn acquire(self: &Arc<Self>) -> Permit {
        let permit = Arc::clone(&self.permits).acquire_owned().await.expect("the limit is never closed");
        Permit { permit: Some(permit), limit: Arc::clone(self) }
    }

    /// A read met throttling: halves the limit. Returns the new limit when it changed.
    pub fn throttled(&self) -> Option<usize> {
        let mut state = self.state.lock().expect("limit lock");
        state.clean = 0;
        if state.current == 1 {
            return None;
        }
        let lowered = state.current / 2;
        let mut retire = state.current - lowered;
        state.current = lowered;
        // Free places are retired now; the rest as the reads holding them end.
        while retire > 0 {
            match self.permits.try_acquire() {
                Ok(permit) => permit.forget(),
                Err(_) => break,
            }
            retire -= 1;
        }
        state.owed += retire;
        Some(lowered)
    }

    /// A read met no throttling: after as many clean reads as the limit, raises it by one.
    pub fn clean(&self) {
        let mut state = self.state.lock().expect("limit lock");
        if state.current >= state.max {
            return;
        }
        state.clean += 1;
        if state.clean < state.current {
            return;
        }
        state.clean = 0;
        state.current += 1;
        if state.owed > 0 {
            state.owed -= 1;
        } else {
            self.permits.add_permits(1);
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let Some(permit) = self.permit.take() else { return };
        let mut state = self.limit.state.lock().expect("limit lock");
        if state.owed > 0 {
            state.owed -= 1;
            permit.forget();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Places free now: how many acquisitions succeed at once.
    fn free(limit: &AdaptiveLimit) -> usize {
        limit.permits.available_permits()
    }

    #[tokio::test]
    async fn throttling_halves_the_limit_and_clean_reads_raise_it_again() {
        let limit = AdaptiveLimit::new(8);
        let held: Vec<Permit> = futures::future::join_all((0..6).map(|_| limit.acquire())).await;
        assert_eq!(free(&limit), 2);
        // Halved to 4: the two free places retire at once, two more as reads end.
        assert_eq!(limit.throttled(), Some(4));
        assert_eq!(free(&limit), 0);
        drop(held);
        assert_eq!(free(&limit), 4, "six reads ended, two of their places retired");
        assert_eq!(limit.throttled(), Some(2));
        assert_eq!(limit.throttled(), Some(1));
        assert_eq!(limit.throttled(), None, "never below one");
        assert_eq!(free(&limit), 1);
        // One clean read at a limit of one raises it to two; two more to three.
        limit.clean();
        assert_eq!((limit.current(), free(&limit)), (2, 2));
        limit.clean();
        limit.clean();
        assert_eq!((limit.current(), free(&limit)), (3, 3));
        for _ in 0..100 {
            limit.clean();
        }
        assert_eq!((limit.current(), free(&limit)), (8, 8), "never above the maximum");
    }

    /// A limit raised while places were still owed pays the debt instead of adding a place.
    #[tokio::test]
    async fn a_raise_pays_what_is_owed_first() {
        let limit = AdaptiveLimit::new(4);
        let held: Vec<Permit> = futures::future::join_all((0..4).map(|_| limit.acquire())).await;
        assert_eq!(limit.throttled(), Some(2));
        limit.clean();
        limit.clean();
        assert_eq!(limit.current(), 3);
        drop(held);
        assert_eq!(free(&limit), 3);
    }
}
