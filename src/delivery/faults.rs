//! Test hooks: faults injected into one endpoint's work, to show that each ends in a supervised
//! restart that reloads from the store. Nothing is armed in production; checking costs one
//! relaxed atomic load on the hot path.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// A fault to inject into an endpoint's work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The next message handler of the endpoint actor panics (caught, supervised restart).
    HandlerPanic,
    /// The next attempt future of the endpoint panics while it runs.
    AttemptPanic,
    /// The next page-in future (loading due deliveries from the store) panics.
    PagePanic,
    /// Every attempt whose body contains this text panics (a delivery that crashes its endpoint
    /// whenever it is tried).
    PanicOnPayload(String),
    /// The actor dies without its supervisor (as if a panic escaped every guard): the dispatcher
    /// must notice the dead address and start a new actor.
    Kill,
}

/// The faults armed per webhook.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    armed: AtomicBool,
    plan: Mutex<HashMap<String, Vec<Fault>>>,
}

impl Faults {
    /// Arms a fault for a webhook.
    pub(crate) fn arm(&self, webhook_id: &str, fault: Fault) {
        self.plan.lock().unwrap_or_else(|p| p.into_inner()).entry(webhook_id.to_string()).or_default().push(fault);
        self.armed.store(true, Ordering::Relaxed);
    }

    /// Takes a one-shot fault of this kind, if armed.
    pub(crate) fn take(&self, webhook_id: &str, fault: &Fault) -> bool {
        if !self.armed.load(Ordering::Relaxed) {
            return false;
        }
        let mut plan = self.plan.lock().unwrap_or_else(|p| p.into_inner());
        let Some(list) = plan.get_mut(webhook_id) else { return false };
        match list.iter().position(|f| f == fault) {
            Some(i) => {
                list.remove(i);
                true
            }
            None => false,
        }
    }

    /// Whether an attempt with this body must panic (a persistent `PanicOnPayload`).
    pub(crate) fn poisons(&self, webhook_id: &str, body: &[u8]) -> bool {
        if !self.armed.load(Ordering::Relaxed) {
            return false;
        }
        let plan = self.plan.lock().unwrap_or_else(|p| p.into_inner());
        plan.get(webhook_id).is_some_and(|list| {
            list.iter().any(|f| match f {
                Fault::PanicOnPayload(marker) => body.windows(marker.len().max(1)).any(|w| w == marker.as_bytes()),
                _ => false,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_shot_faults_fire_once_and_payload_faults_persist() {
        let f = Faults::default();
        assert!(!f.take("w", &Fault::AttemptPanic), "nothing armed");
        f.arm("w", Fault::AttemptPanic);
        f.arm("w", Fault::PanicOnPayload("boom".into()));
        assert!(!f.take("other", &Fault::AttemptPanic));
        assert!(f.take("w", &Fault::AttemptPanic));
        assert!(!f.take("w", &Fault::AttemptPanic), "one shot");
        assert!(f.poisons("w", br#"{"data":"boom"}"#));
        assert!(f.poisons("w", b"boom boom"), "persistent");
        assert!(!f.poisons("w", b"fine"));
    }
}
