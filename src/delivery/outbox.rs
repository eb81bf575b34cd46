//! The endpoint actors' messages to the ledger, gathered per arbiter thread.
//!
//! Every attempt ends in a record for the ledger, on another thread. Sent one by one, each record
//! is a message of its own and, as often as not, a cross-thread wake-up of the ledger. Instead each
//! arbiter thread keeps an outbox: the first message put in it spawns a task on the same thread
//! that sends everything gathered by the time it runs (typically every attempt whose response
//! arrived in the same turn of the runtime, across all the thread's endpoints) as one
//! [`LedgerOps`]. Per thread, messages reach the ledger in the order they were put in, barriers
//! included, so a barrier still answers only after every earlier record is committed.
//!
//! Whoever tells another thread that an endpoint is done (a drain) calls [`flush`] first, so that
//! nothing it recorded is still waiting here.

use std::cell::RefCell;

use actix::prelude::*;
use tokio::sync::oneshot;

use super::ledger::{DisableEndpoint, LedgerActor};
use crate::store::{AttemptUpdate, FailDelivery, HealthWrite};

/// One message for the ledger.
pub(crate) enum LedgerOp {
    /// An attempt's outcome.
    Attempt(AttemptUpdate),
    /// Pending deliveries failed without an attempt.
    Fail(Vec<FailDelivery>),
    /// An endpoint's health (only the latest per webhook is written).
    Health(HealthWrite),
    /// Disable a webhook and fail its pending deliveries.
    Disable(DisableEndpoint),
    /// Answered once everything before it is committed.
    Barrier(oneshot::Sender<()>),
}

/// Messages from one thread's endpoints, in the order they were put in the outbox.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct LedgerOps(pub(crate) Vec<LedgerOp>);

thread_local! {
    /// Per ledger (one per running `Webhooks`; tests run several in a process): what waits.
    static OUTBOX: RefCell<Vec<(Addr<LedgerActor>, Vec<LedgerOp>)>> = const { RefCell::new(Vec::new()) };
}

/// Puts a message in this thread's outbox; it goes out once the tasks ready now have run.
/// Must be called on an actix arbiter (an endpoint actor's thread).
pub(crate) fn put(ledger: &Addr<LedgerActor>, op: LedgerOp) {
    let first = OUTBOX.with_borrow_mut(|boxes| {
        let first = boxes.is_empty();
        match boxes.iter_mut().find(|(addr, _)| addr == ledger) {
            Some((_, ops)) => ops.push(op),
            None => boxes.push((ledger.clone(), vec![op])),
        }
        first
    });
    if first {
        actix::spawn(async { flush() });
    }
}

/// Sends everything in this thread's outbox now.
pub(crate) fn flush() {
    let boxes = OUTBOX.with_borrow_mut(std::mem::take);
    for (ledger, ops) in boxes {
        ledger.do_send(LedgerOps(ops));
    }
}
