//! The bounded window of one endpoint's pending deliveries, as a pure state machine.
//!
//! It holds at most `capacity` deliveries: `ready` (due, waiting for an in-flight slot), in
//! flight, and `waiting` (a min-heap by retry time). Everything else stays in the store, which is
//! the source of truth: the window pages due work in from there (by due time, leaving out what it
//! already holds) whenever the store may hold some (`store.has_more`) and the window is at most
//! half full. Work reaches it two ways: directly (`offer`, a publish on this node), and by a
//! signal that the store has some (`signal_store`: another node published, the safety-net poll,
//! a fresh owner). Both are safe to repeat: a delivery already held, or finished a moment ago, is
//! never taken twice.
//!
//! While the store may hold older work and no page is loading, offers are left to the store, so
//! that new work does not overtake old. While a page loads, offers that fit are taken: the page
//! brings the older work a moment later, and whatever the page repeats of them is recognised.
//! (Leaving them to the store too would keep a busy endpoint paging for good: every offer made
//! during a load would call for another load, and each delivery would be read back from the
//! store instead of being handed over in memory.)
//!
//! Memory is bounded per window (`capacity` deliveries) and across all windows of the node (a
//! shared [`ByteBudget`] charged with each held delivery's body size): a delivery that does not fit
//! the budget stays in the store and is paged in later, except that an empty window always takes
//! one, so every endpoint makes progress.
//!
//! An `ordered` window (pacing) keeps what it holds in a publish-order `queue` and releases one
//! delivery at a time, its *head*, to the usual ready/waiting machinery: the head goes at its own
//! due time (retries included) while the rest wait behind it, and the next is released only when
//! the head is done (delivered or failed) and nothing is in flight. Such a window takes nothing
//! offered directly (a publish on this node could overtake an older one committed by another
//! node); it pages everything in from the store in publish order (`Store::load_in_order`).
//!
//! Times are Unix ms, passed in; nothing here does I/O.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};

// Ids are this process's own (time-ordered, not chosen by callers): a fast hash will do, and
// these maps are touched several times per attempt.
use foldhash::{HashMap, HashSet};

use super::key::DeliveryKey;
use crate::delivery::Pending;

/// Body bytes held in windows across all endpoints of a node, against a limit.
#[derive(Debug)]
pub(crate) struct ByteBudget {
    used: AtomicUsize,
    limit: usize,
}

impl ByteBudget {
    pub(crate) fn new(limit: usize) -> Self {
        Self { used: AtomicUsize::new(0), limit }
    }

    /// Charges `n` bytes if they fit (or always, with `force`); false if they do not.
    fn charge(&self, n: usize, force: bool) -> bool {
        let mut used = self.used.load(AtomicOrdering::Relaxed);
        loop {
            if !force && used.saturating_add(n) > self.limit {
                return false;
            }
            match self.used.compare_exchange_weak(used, used + n, AtomicOrdering::Relaxed, AtomicOrdering::Relaxed) {
                Ok(_) => return true,
                Err(now) => used = now,
            }
        }
    }

    fn release(&self, n: usize) {
        self.used.fetch_sub(n, AtomicOrdering::Relaxed);
    }

    /// Bytes held now.
    pub(crate) fn used(&self) -> usize {
        self.used.load(AtomicOrdering::Relaxed)
    }
}

/// After a page whose deliveries did not fit the byte budget, look again this much later.
const BUDGET_RETRY_MS: i64 = 200;

/// A delivery waiting for its retry time; ordered so that `BinaryHeap` pops the earliest first.
struct Waiting {
    due_ms: i64,
    seq: u64,
    pending: Pending,
}

impl PartialEq for Waiting {
    fn eq(&self, other: &Self) -> bool {
        (self.due_ms, self.seq) == (other.due_ms, other.seq)
    }
}
impl Eq for Waiting {}
impl PartialOrd for Waiting {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Waiting {
    fn cmp(&self, other: &Self) -> Ordering {
        (other.due_ms, other.seq).cmp(&(self.due_ms, self.seq))
    }
}

/// What the window knows of the work left in the store.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct StoreSide {
    /// The store may hold due deliveries the window does not: page when there is room.
    has_more: bool,
    /// A page query is running.
    loading: bool,
    /// Work was signalled while a page query ran: that page may not include it.
    missed: bool,
    /// Ids offered and taken while a page query ran: the page may repeat them, even after they
    /// finished (they are not in the query's exclusions).
    taken_while_loading: HashSet<DeliveryKey>,
    /// The earliest due time in the store after the last page: look again then.
    wake_at_ms: Option<i64>,
}

/// A page to load: at most `limit` due deliveries, leaving out `exclude` (already held).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PageRequest {
    /// Ids the window holds.
    pub(crate) exclude: Vec<String>,
    /// Room left.
    pub(crate) limit: u32,
}

/// One endpoint's window.
pub(crate) struct Window {
    capacity: usize,
    ready: VecDeque<Pending>,
    waiting: BinaryHeap<Waiting>,
    in_flight: usize,
    /// Ids in `ready`, `waiting` or in flight, with the bytes each is charged.
    held: HashMap<DeliveryKey, usize>,
    budget: Arc<ByteBudget>,
    /// Ids finished lately (bounded), so that a late duplicate offer is not attempted again.
    recent: VecDeque<DeliveryKey>,
    recent_set: HashSet<DeliveryKey>,
    seq: u64,
    store: StoreSide,
    // ----- pacing -----
    /// Ordered mode: one delivery at a time, in publish order.
    ordered: bool,
    /// Ordered mode: held deliveries behind the head, in publish order.
    queue: VecDeque<Pending>,
    /// Ordered mode: the delivery released to ready/waiting/in flight, if any.
    head: Option<DeliveryKey>,
}

impl Window {
    /// An empty window of `capacity` deliveries (at least 1), charging `budget`.
    pub(crate) fn new(capacity: usize, budget: Arc<ByteBudget>) -> Self {
        Self {
            capacity: capacity.max(1),
            ready: VecDeque::new(),
            waiting: BinaryHeap::new(),
            in_flight: 0,
            held: HashMap::default(),
            budget,
            recent: VecDeque::new(),
            recent_set: HashSet::default(),
            seq: 0,
            store: StoreSide::default(),
            ordered: false,
            queue: VecDeque::new(),
            head: None,
        }
    }

    /// Deliveries held (ready, waiting and in flight).
    pub(crate) fn held(&self) -> usize {
        self.held.len()
    }

    /// Attempts in flight.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Whether a delivery is due now and waiting for a slot.
    pub(crate) fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    fn knows(&self, key: &DeliveryKey) -> bool {
        self.held.contains_key(key) || self.recent_set.contains(key)
    }

    /// Takes a delivery (keyed `key`) if the byte budget allows (an empty window always takes one).
    fn admit(&mut self, key: DeliveryKey, p: Pending, now_ms: i64) -> bool {
        let bytes = p.envelope.body.len();
        if !self.budget.charge(bytes, self.held.is_empty()) {
            return false;
        }
        self.held.insert(key, bytes);
        self.hold(p, now_ms);
        true
    }

    /// Puts a delivery already charged for where it belongs (ordered: at the back of the queue).
    fn hold(&mut self, p: Pending, now_ms: i64) {
        if self.ordered {
            self.queue.push_back(p);
            self.release(now_ms);
        } else {
            self.place(p, now_ms);
        }
    }

    /// Ready now or waiting for its time.
    fn place(&mut self, p: Pending, now_ms: i64) {
        if p.due_ms <= now_ms {
            self.ready.push_back(p);
        } else {
            self.seq += 1;
            self.waiting.push(Waiting { due_ms: p.due_ms, seq: self.seq, pending: p });
        }
    }

    /// New committed deliveries from this node's own publishes. Takes what fits and is not known;
    /// past the window the rest is left to the store. Returns how many it took.
    pub(crate) fn offer(&mut self, items: Vec<Pending>, now_ms: i64) -> usize {
        let mut taken = 0;
        for p in items {
            let key = DeliveryKey::of(&p.id);
            if self.knows(&key) {
                continue;
            }
            if self.ordered {
                // Paged in publish order instead (see the module documentation).
                self.signal_store();
                continue;
            }
            let older_in_store = self.store.has_more && !self.store.loading;
            if older_in_store || self.held.len() >= self.capacity {
                // Older work waits in the store and is not being loaded yet, or there is no room:
                // the store keeps it.
                self.signal_store();
                continue;
            }
            // Remembered only while a page loads (the page may repeat it).
            let loading_key = self.store.loading.then(|| key.clone());
            if !self.admit(key, p, now_ms) {
                // No room in the node's byte budget: the store keeps it.
                self.signal_store();
                continue;
            }
            if let Some(key) = loading_key {
                self.store.taken_while_loading.insert(key);
            }
            taken += 1;
        }
        taken
    }

    /// The store may hold due work the window does not (another node published, a poll found
    /// some, or the endpoint was just taken over).
    pub(crate) fn signal_store(&mut self) {
        self.store.has_more = true;
        if self.store.loading {
            self.store.missed = true;
        }
    }

    /// Moves deliveries whose retry time has come to `ready`, and wakes the store side when its
    /// next due time has come.
    pub(crate) fn tick(&mut self, now_ms: i64) {
        self.release(now_ms);
        while self.waiting.peek().is_some_and(|w| w.due_ms <= now_ms) {
            let w = self.waiting.pop().expect("peeked");
            self.ready.push_back(w.pending);
        }
        if self.store.wake_at_ms.is_some_and(|t| t <= now_ms) {
            self.store.wake_at_ms = None;
            self.signal_store();
        }
    }

    /// Brings the earliest waiting delivery forward to now (a breaker probe is due and nothing
    /// else is ready: the probe should not wait for that delivery's own retry time).
    pub(crate) fn promote_earliest(&mut self) -> bool {
        match self.waiting.pop() {
            Some(w) => {
                self.ready.push_back(w.pending);
                true
            }
            None => false,
        }
    }

    /// The next delivery to attempt, counted as in flight from now on.
    pub(crate) fn start_next(&mut self) -> Option<Pending> {
        let p = self.ready.pop_front()?;
        self.in_flight += 1;
        Some(p)
    }

    /// An attempt ended and the delivery is done (delivered or failed). In ordered mode the next
    /// delivery is released at the next [`Window::tick`].
    pub(crate) fn finished(&mut self, id: &str) {
        self.in_flight = self.in_flight.saturating_sub(1);
        let key = DeliveryKey::of(id);
        if self.head.as_ref() == Some(&key) {
            self.head = None;
        }
        if let Some((key, bytes)) = self.held.remove_entry(&key) {
            self.budget.release(bytes);
            self.recent_set.insert(key.clone());
            self.recent.push_back(key);
            while self.recent.len() > self.capacity {
                if let Some(old) = self.recent.pop_front() {
                    self.recent_set.remove(&old);
                }
            }
        }
    }

    /// An attempt ended and the delivery retries at `p.due_ms`.
    pub(crate) fn retry(&mut self, p: Pending, now_ms: i64) {
        self.in_flight = self.in_flight.saturating_sub(1);
        let key = DeliveryKey::of(&p.id);
        let bytes = self.held.remove(&key).unwrap_or(0);
        if self.ordered && self.head.as_ref() != Some(&key) {
            // Started before the window became ordered: it goes back to the store and returns
            // in publish order.
            self.budget.release(bytes);
            self.signal_store();
            self.release(now_ms);
            return;
        }
        self.held.insert(key, bytes); // keeps its charge
        self.place(p, now_ms);
    }

    /// Deliveries put back in the queue, due now (replay: a retry, or a recovery's batch). Ones
    /// finished lately are forgotten, so that the store's copy (pending again) is taken when
    /// paged in; ones waiting for a retry time are due now; the store side is signalled.
    pub(crate) fn requeued(&mut self, ids: &[Box<str>], now_ms: i64) {
        let mut bring_forward = false;
        for id in ids {
            let key = DeliveryKey::of(id);
            if self.recent_set.remove(&key) {
                self.recent.retain(|r| *r != key);
            }
            bring_forward |= self.held.contains_key(&key);
        }
        if bring_forward {
            let (due, keep): (Vec<Waiting>, Vec<Waiting>) =
                std::mem::take(&mut self.waiting).into_iter().partition(|w| ids.contains(&w.pending.id));
            self.waiting = keep.into_iter().collect();
            for mut w in due {
                w.pending.due_ms = w.pending.due_ms.min(now_ms);
                self.ready.push_back(w.pending);
            }
        }
        self.signal_store();
    }

    /// A page to load now, if the store may hold work and the window is at most half full.
    pub(crate) fn page_request(&mut self) -> Option<PageRequest> {
        if !self.store.has_more || self.store.loading || self.held.len() > self.capacity / 2 {
            return None;
        }
        if self.ordered && self.head.is_none() && self.in_flight > 0 {
            // Attempts from before the window became ordered are still out: their outcome decides
            // where they stand in the queue.
            return None;
        }
        self.store.loading = true;
        self.store.missed = false;
        let limit = (self.capacity - self.held.len()).max(1) as u32;
        Some(PageRequest { exclude: self.held.keys().map(DeliveryKey::to_id).collect(), limit })
    }

    /// A page arrived: takes what is not known, and works out whether the store holds more.
    /// Returns how many it took.
    pub(crate) fn on_page(
        &mut self,
        items: Vec<Pending>,
        limit: u32,
        next_due_at_ms: Option<i64>,
        now_ms: i64,
    ) -> usize {
        self.store.loading = false;
        let taken_while_loading = std::mem::take(&mut self.store.taken_while_loading);
        let full_page = items.len() >= limit as usize;
        let mut taken = 0;
        let mut over_budget = false;
        let mut no_room = false;
        for p in items {
            let key = DeliveryKey::of(&p.id);
            if self.knows(&key) || taken_while_loading.contains(&key) {
                continue;
            }
            if no_room || self.held.len() >= self.capacity {
                no_room = true; // offers taken during the load filled the window: paged in later
                continue;
            }
            if over_budget || !self.admit(key, p, now_ms) {
                over_budget = true; // left in the store: paged in again when bytes free up
                continue;
            }
            taken += 1;
        }
        self.store.has_more = full_page || self.store.missed || over_budget || no_room;
        self.store.missed = false;
        self.store.wake_at_ms = if over_budget {
            Some(next_due_at_ms.map_or(now_ms + BUDGET_RETRY_MS, |t| t.min(now_ms + BUDGET_RETRY_MS)))
        } else {
            next_due_at_ms
        };
        taken
    }

    /// A page query failed: the store still may hold work; the caller retries later.
    pub(crate) fn on_page_failed(&mut self) {
        self.store.loading = false;
        self.store.taken_while_loading.clear();
        self.store.has_more = true;
    }

    /// When something is next due: a retry in the window, or work in the store.
    pub(crate) fn next_due_ms(&self) -> Option<i64> {
        let retry = self.waiting.peek().map(|w| w.due_ms);
        match (retry, self.store.wake_at_ms) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Nothing held and nothing known to wait in the store (later retries in the store are found
    /// by the node's due poll, so they do not keep the actor awake).
    pub(crate) fn is_empty(&self) -> bool {
        self.held.is_empty() && !self.store.has_more && !self.store.loading
    }

    /// Drops every delivery that is not in flight (disable): the store still has them. Attempts
    /// in flight stay counted until they end ([`Window::finished`]).
    pub(crate) fn clear(&mut self) -> Vec<Pending> {
        let mut out: Vec<Pending> = self.ready.drain(..).collect();
        out.extend(self.waiting.drain().map(|w| w.pending));
        out.extend(self.queue.drain(..));
        for p in &out {
            if let Some(bytes) = self.held.remove(&DeliveryKey::of(&p.id)) {
                self.budget.release(bytes);
            }
        }
        if self.head.as_ref().is_some_and(|h| !self.held.contains_key(h)) {
            self.head = None; // it was not in flight: gone with the rest
        }
        self.store = StoreSide::default();
        out
    }
}

// ----- pacing -----
impl Window {
    /// Whether the window is in ordered mode.
    pub(crate) fn is_ordered(&self) -> bool {
        self.ordered
    }

    /// Switches ordered mode. Becoming ordered drops everything not in flight (the store has it,
    /// and it is paged in again in publish order once the attempts in flight have ended);
    /// becoming unordered releases the queue to the usual due-time order.
    pub(crate) fn set_ordered(&mut self, ordered: bool, now_ms: i64) {
        if self.ordered == ordered {
            return;
        }
        self.ordered = ordered;
        self.head = None;
        if ordered {
            let dropped: Vec<Pending> = self.ready.drain(..).chain(self.waiting.drain().map(|w| w.pending)).collect();
            for p in dropped {
                if let Some(bytes) = self.held.remove(&DeliveryKey::of(&p.id)) {
                    self.budget.release(bytes);
                }
            }
            self.store.wake_at_ms = None;
            self.signal_store();
        } else {
            for p in std::mem::take(&mut self.queue) {
                self.place(p, now_ms);
            }
        }
    }

    /// Ordered mode: releases the next delivery of the queue as the head when there is none and
    /// nothing is in flight.
    fn release(&mut self, now_ms: i64) {
        if !self.ordered || self.head.is_some() || self.in_flight > 0 {
            return;
        }
        if let Some(p) = self.queue.pop_front() {
            self.head = Some(DeliveryKey::of(&p.id));
            self.place(p, now_ms);
        }
    }
}

impl Drop for Window {
    /// A window dropped (actor stopped or restarted) gives its bytes back to the node's budget.
    fn drop(&mut self) {
        self.budget.release(self.held.values().sum());
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;

    use super::*;
    use crate::delivery::Envelope;

    fn p(id: &str, due_ms: i64) -> Pending {
        let env = Envelope::new("evt_1", "order.created", "t", Bytes::from_static(b"{}"), 0);
        Pending { id: id.into(), envelope: Arc::new(env), attempts: 0, probes: 0, due_ms }
    }

    fn window(capacity: usize) -> Window {
        Window::new(capacity, Arc::new(ByteBudget::new(usize::MAX)))
    }

    fn ids(w: &mut Window) -> Vec<String> {
        let mut v = Vec::new();
        while let Some(p) = w.start_next() {
            v.push(p.id.to_string());
        }
        v
    }

    #[test]
    fn requeued_deliveries_are_due_now_and_taken_again_after_finishing() {
        let mut w = window(8);
        w.offer(vec![p("a", 0), p("b", 0)], 0);
        assert_eq!(ids(&mut w), ["a", "b"]);
        w.finished("a"); // failed for good
        w.retry(p("b", 60_000), 10); // waits for its retry time
        w.offer(vec![p("a", 0)], 20);
        assert!(!w.has_ready(), "a finished delivery is not taken again");
        w.requeued(&["a".into(), "b".into()], 30);
        assert_eq!(ids(&mut w), ["b"], "the waiting one is due now");
        assert!(w.page_request().is_some(), "the store is asked for the re-queued ones");
        w.on_page(vec![p("a", 30)], 7, None, 30);
        assert_eq!(ids(&mut w), ["a"], "the finished one is taken from the store again");
        w.requeued(&["zzz".into()], 40);
        assert_eq!(w.held(), 2, "unknown ids change nothing held");
    }

    /// The same cycle with ids as they are minted (packed keys), beside a text one.
    #[test]
    fn minted_ids_are_held_finished_remembered_and_excluded_by_their_text() {
        let event = crate::model::new_event_id();
        let (a, b) = (crate::model::delivery_id(&event, 0), crate::model::delivery_id(&event, 1));
        let mut w = window(8);
        assert_eq!(w.offer(vec![p(&a, 0), p(&b, 0), p("legacy", 0)], 0), 3);
        assert_eq!(w.offer(vec![p(&a, 0)], 0), 0, "held already");
        assert_eq!(ids(&mut w), [a.as_str(), b.as_str(), "legacy"]);
        w.finished(&a);
        w.finished("legacy");
        assert_eq!(w.offer(vec![p(&a, 0), p("legacy", 0)], 1), 0, "finished lately");
        w.signal_store();
        assert_eq!(w.page_request().expect("a page").exclude, vec![b.clone()], "excluded as its text");
        w.on_page(vec![p(&a, 1), p(&b, 1)], 7, None, 1);
        assert!(!w.has_ready(), "the page's copies of known ids are skipped");
        w.requeued(std::slice::from_ref(&a.clone().into_boxed_str()), 2);
        assert_eq!(w.offer(vec![p(&a, 0)], 2), 0, "left to the store, which now holds it again");
        let req = w.page_request().expect("a page for the re-queued one");
        assert_eq!(w.on_page(vec![p(&a, 2)], req.limit, None, 2), 1, "forgotten, so taken again");
        assert_eq!(ids(&mut w), [a.as_str()]);
    }

    #[test]
    fn offers_fill_the_window_and_the_rest_is_left_to_the_store() {
        let mut w = window(4);
        assert_eq!(w.offer((0..6).map(|i| p(&format!("d{i}"), 0)).collect(), 10), 4);
        assert_eq!(w.held(), 4);
        assert!(w.page_request().is_none(), "full: no page");
        assert_eq!(ids(&mut w), ["d0", "d1", "d2", "d3"]);
        for i in 0..3 {
            w.finished(&format!("d{i}"));
        }
        let req = w.page_request().expect("half empty and the store has more");
        assert_eq!(req, PageRequest { exclude: vec!["d3".into()], limit: 3 });
        assert!(w.page_request().is_none(), "one page at a time");
    }

    #[test]
    fn once_the_store_has_older_work_new_offers_wait_behind_it() {
        let mut w = window(2);
        w.offer(vec![p("a", 0), p("b", 0), p("c", 0)], 1);
        w.start_next();
        w.start_next();
        w.finished("a");
        w.finished("b");
        // "d" is newer than "c", which is only in the store: it must not overtake it.
        assert_eq!(w.offer(vec![p("d", 0)], 1), 0);
        let req = w.page_request().unwrap();
        assert_eq!(w.on_page(vec![p("c", 0), p("d", 0)], req.limit, None, 1), 2);
        assert_eq!(ids(&mut w), ["c", "d"]);
    }

    /// A signal (the due poll finds the endpoint's own committed work) must not switch a busy
    /// endpoint to reading everything back from the store: offers made while the page loads are
    /// taken, the page's copies of them are skipped (even of ones finished meanwhile), and once
    /// the page is in, offers are taken directly again.
    #[test]
    fn offers_during_a_page_load_are_taken_and_paging_stops_after_it() {
        let mut w = window(8);
        w.offer(vec![p("a", 0)], 1);
        w.signal_store();
        let req = w.page_request().expect("a page is wanted");
        assert_eq!(req.exclude, vec!["a".to_string()]);
        assert_eq!(w.offer(vec![p("b", 0), p("c", 0)], 1), 2, "taken while the page loads");
        assert_eq!(ids(&mut w), ["a", "b", "c"]);
        w.finished("b");
        // The query ran after b and c were committed and before b's outcome was: it repeats them.
        assert_eq!(w.on_page(vec![p("b", 0), p("c", 0), p("old", 0)], req.limit, None, 1), 1);
        assert_eq!(ids(&mut w), ["old"], "only the store's own work is new");
        assert!(w.page_request().is_none(), "the page was not full and nothing was missed");
        assert_eq!(w.offer(vec![p("d", 0)], 2), 1, "offers go straight in again");
    }

    #[test]
    fn a_page_does_not_overfill_a_window_that_offers_filled_during_the_load() {
        let mut w = window(4);
        w.signal_store();
        let req = w.page_request().unwrap();
        assert_eq!(req.limit, 4);
        assert_eq!(w.offer((0..6).map(|i| p(&format!("n{i}"), 0)).collect(), 1), 4, "up to the capacity");
        let old: Vec<Pending> = (0..4).map(|i| p(&format!("o{i}"), 0)).collect();
        assert_eq!(w.on_page(old, req.limit, None, 1), 0, "no room left");
        assert_eq!(w.held(), 4);
        for id in ids(&mut w) {
            w.finished(&id);
        }
        let again = w.page_request().expect("what did not fit is paged in later");
        assert_eq!(w.on_page(vec![p("o0", 0), p("n4", 0)], again.limit, None, 2), 2);
        assert_eq!(ids(&mut w), ["o0", "n4"]);
    }

    #[test]
    fn nothing_is_taken_twice() {
        let mut w = window(8);
        w.offer(vec![p("a", 0), p("b", 0)], 1);
        assert_eq!(w.offer(vec![p("a", 0)], 1), 0, "already held");
        let a = w.start_next().unwrap();
        w.finished(&a.id);
        assert_eq!(w.offer(vec![p("a", 0)], 1), 0, "finished a moment ago (a late duplicate)");
        w.signal_store();
        let req = w.page_request().unwrap();
        assert_eq!(req.exclude, vec!["b".to_string()]);
        // The store answers with b (held) and a (outcome not yet committed): neither is taken.
        assert_eq!(w.on_page(vec![p("a", 0), p("b", 0)], req.limit, None, 1), 0);
        assert_eq!(w.held(), 1);
    }

    #[test]
    fn a_signal_during_a_page_query_keeps_the_store_side_awake() {
        let mut w = window(8);
        w.signal_store();
        let req = w.page_request().unwrap();
        w.signal_store(); // another node published while the query ran
        w.on_page(vec![p("a", 0)], req.limit, None, 1);
        assert!(w.page_request().is_some(), "the page may not include the signalled work");
    }

    #[test]
    fn a_short_page_settles_the_store_side_until_its_next_due_time() {
        let mut w = window(8);
        w.signal_store();
        let req = w.page_request().unwrap();
        w.on_page(vec![p("a", 0)], req.limit, Some(500), 1);
        assert!(w.page_request().is_none());
        assert_eq!(w.next_due_ms(), Some(500));
        w.tick(499);
        assert!(w.page_request().is_none());
        w.tick(500);
        assert!(w.page_request().is_some(), "the store's next due time has come");
    }

    #[test]
    fn retries_wait_for_their_time_in_due_order() {
        let mut w = window(8);
        w.offer(vec![p("a", 0), p("b", 0)], 1);
        let a = w.start_next().unwrap();
        let b = w.start_next().unwrap();
        w.retry(Pending { due_ms: 300, ..a }, 2);
        w.retry(Pending { due_ms: 200, ..b }, 2);
        assert_eq!(w.in_flight(), 0);
        assert_eq!(w.held(), 2);
        assert_eq!(w.next_due_ms(), Some(200));
        assert!(w.start_next().is_none());
        w.tick(250);
        assert_eq!(ids(&mut w), ["b"]);
        w.tick(300);
        assert_eq!(ids(&mut w), ["a"]);
    }

    #[test]
    fn a_failed_page_is_retried_and_clear_forgets_everything() {
        let mut w = window(8);
        w.offer(vec![p("a", 0), p("b", 50)], 1);
        w.signal_store();
        w.page_request().unwrap();
        w.on_page_failed();
        assert!(w.page_request().is_some());
        let a = w.start_next().unwrap();
        let dropped = w.clear();
        assert_eq!(dropped.len(), 1, "b, waiting for its time");
        assert_eq!((w.held(), w.in_flight()), (1, 1), "a is still in flight");
        assert!(w.page_request().is_none(), "the store side is forgotten too");
        w.finished(&a.id);
        assert!(w.is_empty());
    }

    fn sized(id: &str, bytes: usize) -> Pending {
        let env = Envelope::new("evt_1", "order.created", "t", Bytes::from(vec![b'x'; bytes]), 0);
        Pending { id: id.into(), envelope: Arc::new(env), attempts: 0, probes: 0, due_ms: 0 }
    }

    #[test]
    fn the_byte_budget_bounds_all_windows_together_and_an_empty_one_always_takes_one() {
        let budget = Arc::new(ByteBudget::new(1000));
        let mut a = Window::new(100, budget.clone());
        let mut b = Window::new(100, budget.clone());
        assert_eq!(a.offer(vec![sized("a1", 400), sized("a2", 400), sized("a3", 400)], 1), 2);
        assert_eq!(budget.used(), 800);
        assert!(a.page_request().is_some(), "a3 was left to the store");
        a.on_page(vec![], 100, None, 1);
        assert_eq!(b.offer(vec![sized("b1", 400)], 1), 1, "an empty window takes one even over budget");
        assert_eq!(budget.used(), 1200);
        assert_eq!(b.offer(vec![sized("b2", 10)], 1), 0, "but not more");
        let x = a.start_next().unwrap();
        a.finished(&x.id);
        assert_eq!(budget.used(), 800, "a finished delivery gives its bytes back");
        // A page that does not fit keeps the rest in the store and looks again a bit later.
        let req = b.page_request().unwrap();
        assert_eq!(b.on_page(vec![sized("b2", 150), sized("b3", 150)], req.limit, None, 10), 1);
        assert_eq!(b.next_due_ms(), Some(10 + BUDGET_RETRY_MS));
        drop(b);
        assert_eq!(budget.used(), 400, "a dropped window gives everything back");
        a.clear();
        assert_eq!(budget.used(), 0);
    }

    // ----- pacing -----

    fn ordered(capacity: usize) -> Window {
        let mut w = window(capacity);
        w.set_ordered(true, 0);
        w
    }

    /// Pages `items` in (as `load_in_order` would return them).
    fn page_in(w: &mut Window, items: Vec<Pending>, now: i64) -> usize {
        let req = w.page_request().expect("a page is due");
        w.on_page(items, req.limit, None, now)
    }

    #[test]
    fn an_ordered_window_releases_one_at_a_time_in_publish_order() {
        let mut w = ordered(8);
        assert_eq!(w.offer(vec![p("a", 0)], 1), 0, "offers go to the store, to be paged in order");
        // b is due before a, yet a was published first: a goes first.
        assert_eq!(page_in(&mut w, vec![p("a", 5), p("b", 0), p("c", 0)], 1), 3);
        assert!(!w.has_ready(), "the head waits for its own time; the others wait behind it");
        assert_eq!(w.next_due_ms(), Some(5));
        w.tick(5);
        assert_eq!(ids(&mut w), ["a"]);
        w.tick(6);
        assert!(!w.has_ready(), "one at a time");
        w.finished("a");
        w.tick(7);
        assert_eq!(ids(&mut w), ["b"]);
        w.finished("b");
        w.tick(8);
        assert_eq!(ids(&mut w), ["c"]);
        w.finished("c");
        w.tick(9);
        assert_eq!(w.held(), 0);
    }

    #[test]
    fn a_retrying_head_holds_the_rest_back_and_a_failed_one_lets_them_go() {
        let mut w = ordered(8);
        page_in(&mut w, vec![p("a", 0), p("b", 0)], 1);
        w.tick(1);
        let a = w.start_next().unwrap();
        w.retry(Pending { due_ms: 100, ..a }, 2);
        w.tick(50);
        assert!(!w.has_ready(), "b waits behind the retrying head");
        assert_eq!(w.next_due_ms(), Some(100));
        w.tick(100);
        assert_eq!(ids(&mut w), ["a"], "the head again, at its retry time");
        w.finished("a"); // failed for good (or delivered): the next goes
        w.tick(101);
        assert_eq!(ids(&mut w), ["b"]);
    }

    #[test]
    fn a_probe_takes_the_head() {
        let mut w = ordered(8);
        page_in(&mut w, vec![p("a", 500), p("b", 0)], 1);
        w.tick(1);
        assert!(w.promote_earliest());
        assert_eq!(ids(&mut w), ["a"]);
    }

    #[test]
    fn pages_after_the_first_come_behind_what_is_held() {
        let mut w = ordered(4);
        assert_eq!(page_in(&mut w, vec![p("a", 0), p("b", 0), p("c", 0), p("d", 0)], 1), 4);
        w.tick(1);
        for id in ["a", "b", "c"] {
            assert_eq!(ids(&mut w), [id]);
            w.finished(id);
            w.tick(1);
        }
        let req = w.page_request().expect("the full page left more in the store");
        assert_eq!(req.exclude, vec!["d".to_string()]);
        w.on_page(vec![p("e", 0)], req.limit, None, 1);
        assert_eq!(ids(&mut w), ["d"]);
        w.finished("d");
        w.tick(2);
        assert_eq!(ids(&mut w), ["e"]);
    }

    #[test]
    fn switching_to_ordered_waits_for_attempts_in_flight_and_back_releases_the_queue() {
        let mut w = window(8);
        w.offer(vec![p("a", 0), p("b", 0), p("c", 50)], 1);
        let a = w.start_next().unwrap();
        let b = w.start_next().unwrap();
        w.set_ordered(true, 2);
        assert_eq!(w.held(), 2, "c was dropped (the store has it); a and b are in flight");
        assert!(w.page_request().is_none(), "not before the attempts in flight have ended");
        w.finished(&a.id);
        w.retry(Pending { due_ms: 90, ..b }, 3);
        assert_eq!(w.held(), 0, "b went back to the store, to come back in publish order");
        assert_eq!(page_in(&mut w, vec![p("b", 90), p("c", 50)], 3), 2);
        w.tick(60);
        assert!(!w.has_ready(), "c waits behind b");
        w.set_ordered(false, 60);
        w.tick(60);
        assert_eq!(ids(&mut w), ["c"], "unordered again: by due time");
        w.tick(90);
        assert_eq!(ids(&mut w), ["b"]);
    }

    #[test]
    fn clearing_an_ordered_window_forgets_a_head_not_in_flight() {
        let mut w = ordered(8);
        page_in(&mut w, vec![p("a", 10), p("b", 0)], 1);
        w.tick(1);
        w.clear();
        assert_eq!(w.held(), 0);
        w.signal_store();
        page_in(&mut w, vec![p("b", 0)], 20);
        w.tick(20);
        assert_eq!(ids(&mut w), ["b"], "a new head is released");
    }
}
