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
//! Memory is bounded per window (`capacity` deliveries) and across all windows of the node (a
//! shared [`ByteBudget`] charged with each held delivery's body size): a delivery that does not fit
//! the budget stays in the store and is paged in later, except that an empty window always takes
//! one, so every endpoint makes progress.
//!
//! Times are Unix ms, passed in; nothing here does I/O.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};

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
    held: HashMap<Box<str>, usize>,
    budget: Arc<ByteBudget>,
    /// Ids finished lately (bounded), so that a late duplicate offer is not attempted again.
    recent: VecDeque<Box<str>>,
    recent_set: HashSet<Box<str>>,
    seq: u64,
    store: StoreSide,
}

impl Window {
    /// An empty window of `capacity` deliveries (at least 1), charging `budget`.
    pub(crate) fn new(capacity: usize, budget: Arc<ByteBudget>) -> Self {
        Self {
            capacity: capacity.max(1),
            ready: VecDeque::new(),
            waiting: BinaryHeap::new(),
            in_flight: 0,
            held: HashMap::new(),
            budget,
            recent: VecDeque::new(),
            recent_set: HashSet::new(),
            seq: 0,
            store: StoreSide::default(),
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

    fn knows(&self, id: &str) -> bool {
        self.held.contains_key(id) || self.recent_set.contains(id)
    }

    /// Takes a delivery if the byte budget allows (an empty window always takes one).
    fn admit(&mut self, p: Pending, now_ms: i64) -> bool {
        let bytes = p.envelope.body.len();
        if !self.budget.charge(bytes, self.held.is_empty()) {
            return false;
        }
        self.hold(p, bytes, now_ms);
        true
    }

    /// Puts a delivery already charged for where it belongs.
    fn hold(&mut self, p: Pending, bytes: usize, now_ms: i64) {
        self.held.insert(p.id.clone(), bytes);
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
            if self.knows(&p.id) {
                continue;
            }
            if self.store.has_more || self.held.len() >= self.capacity || !self.admit(p, now_ms) {
                // Older work may be waiting in the store, or there is no room (in this window or
                // in the node's byte budget): the store keeps it.
                self.signal_store();
                continue;
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

    /// An attempt ended and the delivery is done (delivered or failed).
    pub(crate) fn finished(&mut self, id: &str) {
        self.in_flight = self.in_flight.saturating_sub(1);
        if let Some((id, bytes)) = self.held.remove_entry(id) {
            self.budget.release(bytes);
            self.recent_set.insert(id.clone());
            self.recent.push_back(id);
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
        let bytes = self.held.remove(&p.id).unwrap_or(0);
        self.hold(p, bytes, now_ms); // keeps its charge
    }

    /// Deliveries put back in the queue, due now (replay: a retry, or a recovery's batch). Ones
    /// finished lately are forgotten, so that the store's copy (pending again) is taken when
    /// paged in; ones waiting for a retry time are due now; the store side is signalled.
    pub(crate) fn requeued(&mut self, ids: &[Box<str>], now_ms: i64) {
        let mut bring_forward = false;
        for id in ids {
            if self.recent_set.remove(id) {
                self.recent.retain(|r| r != id);
            }
            bring_forward |= self.held.contains_key(id);
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
        self.store.loading = true;
        self.store.missed = false;
        let limit = (self.capacity - self.held.len()).max(1) as u32;
        Some(PageRequest { exclude: self.held.keys().map(|id| id.to_string()).collect(), limit })
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
        let full_page = items.len() >= limit as usize;
        let mut taken = 0;
        let mut over_budget = false;
        for p in items {
            if self.knows(&p.id) {
                continue;
            }
            if over_budget || !self.admit(p, now_ms) {
                over_budget = true; // left in the store: paged in again when bytes free up
                continue;
            }
            taken += 1;
        }
        self.store.has_more = full_page || self.store.missed || over_budget;
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
        for p in &out {
            if let Some(bytes) = self.held.remove(&p.id) {
                self.budget.release(bytes);
            }
        }
        self.store = StoreSide::default();
        out
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
}
