use std::sync::Arc;

use tokio::sync::{Mutex, OwnedMutexGuard};

/// One training at a time per service: a second `Train` while one runs is refused
/// (the caller maps `None` to FAILED_PRECONDITION / ABORTED) rather than queued.
#[derive(Debug, Clone, Default)]
pub struct TrainGate {
    lock: Arc<Mutex<()>>,
}

/// Held for the duration of a training; dropping it lets the next one start.
#[derive(Debug)]
pub struct TrainPermit {
    _guard: OwnedMutexGuard<()>,
}

impl TrainGate {
    pub fn try_start(&self) -> Option<TrainPermit> {
        self.lock
            .clone()
            .try_lock_owned()
            .ok()
            .map(|g| TrainPermit { _guard: g })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_training_is_refused_until_the_first_ends() {
        let gate = TrainGate::default();
        let p = gate.try_start().unwrap();
        assert!(gate.try_start().is_none());
        drop(p);
        assert!(gate.try_start().is_some());
    }
}
