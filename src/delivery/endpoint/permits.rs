//! Permits for attempts across all endpoints of a node.
//!
//! Every attempt holds a permit of the global pool (`max_total_in_flight`), which bounds sockets
//! and memory. An endpoint that is failing (timing out, erroring, paused) is *suspect*: its
//! attempts also need a permit of the suspect pool, half the size, and it keeps at most
//! [`SUSPECT_MAX_IN_FLIGHT`] attempts in flight. So however many endpoints hang, half the global
//! pool is always left to healthy ones.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Attempts a failing endpoint may have in flight, whatever its `maxInFlight`.
pub(crate) const SUSPECT_MAX_IN_FLIGHT: usize = 2;

/// What an attempt holds while it runs (dropped with it).
#[derive(Debug)]
pub(crate) struct AttemptPermit {
    _global: OwnedSemaphorePermit,
    _suspect: Option<OwnedSemaphorePermit>,
}

/// The pool an endpoint waits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pool {
    Global,
    Suspect,
}

/// One endpoint's access to the node's pools, with a permit of each kept aside when one came
/// back from a wait.
#[derive(Debug)]
pub(crate) struct Permits {
    global: Arc<Semaphore>,
    suspect: Arc<Semaphore>,
    spare_global: Option<OwnedSemaphorePermit>,
    spare_suspect: Option<OwnedSemaphorePermit>,
}

impl Permits {
    pub(crate) fn new(global: Arc<Semaphore>, suspect: Arc<Semaphore>) -> Self {
        Self { global, suspect, spare_global: None, spare_suspect: None }
    }

    /// The permits for one attempt, or the pool to wait on. A suspect endpoint that has a global
    /// permit but no suspect one gives the global one back rather than hoard it while it waits.
    pub(crate) fn take(&mut self, suspect: bool) -> Result<AttemptPermit, Pool> {
        let global = match self.spare_global.take() {
            Some(p) => p,
            None => self.global.clone().try_acquire_owned().map_err(|_| Pool::Global)?,
        };
        if !suspect {
            return Ok(AttemptPermit { _global: global, _suspect: None });
        }
        let extra = match self.spare_suspect.take() {
            Some(p) => p,
            None => match self.suspect.clone().try_acquire_owned() {
                Ok(p) => p,
                Err(_) => return Err(Pool::Suspect),
            },
        };
        Ok(AttemptPermit { _global: global, _suspect: Some(extra) })
    }

    /// The semaphore of a pool, to wait on.
    pub(crate) fn pool(&self, pool: Pool) -> Arc<Semaphore> {
        match pool {
            Pool::Global => self.global.clone(),
            Pool::Suspect => self.suspect.clone(),
        }
    }

    /// Keeps a permit that a wait produced for the next attempt.
    pub(crate) fn keep(&mut self, pool: Pool, permit: OwnedSemaphorePermit) {
        match pool {
            Pool::Global => self.spare_global = Some(permit),
            Pool::Suspect => self.spare_suspect = Some(permit),
        }
    }

    /// Gives back the permits kept aside (nothing to use them for).
    pub(crate) fn release_spares(&mut self) {
        self.spare_global = None;
        self.spare_suspect = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suspect_endpoints_share_half_the_pool_and_healthy_ones_keep_the_rest() {
        let global = Arc::new(Semaphore::new(4));
        let suspect = Arc::new(Semaphore::new(2));
        let mut failing = Permits::new(global.clone(), suspect.clone());
        let mut healthy = Permits::new(global.clone(), suspect.clone());
        let a = failing.take(true).unwrap();
        let b = failing.take(true).unwrap();
        assert_eq!(failing.take(true).unwrap_err(), Pool::Suspect, "the suspect pool is used up");
        assert_eq!(global.available_permits(), 2, "the global permit was given back, not hoarded");
        let c = healthy.take(false).unwrap();
        let d = healthy.take(false).unwrap();
        assert_eq!(healthy.take(false).unwrap_err(), Pool::Global);
        drop((a, c));
        assert!(healthy.take(false).is_ok(), "permits come back when attempts end");
        drop((b, d));
        let p = failing.pool(Pool::Suspect).try_acquire_owned().unwrap();
        failing.keep(Pool::Suspect, p);
        assert!(failing.take(true).is_ok(), "a kept permit is used first");
    }
}
