//! Who should own which webhook, given the live nodes: a pure, deterministic function that every
//! node computes for itself and that all nodes agree on once they see the same membership.
//!
//! Rendezvous hashing with exact capacities. Every (webhook, node) pair gets a score from a fixed
//! hash; pairs are taken best score first, and a webhook goes to the first node of its pairs that
//! still has room. Capacities are ⌊N/k⌋ or ⌈N/k⌉ (the first `N mod k` nodes in id order get the
//! larger), so each node owns within one webhook of an even share. Scores do not depend on the
//! other nodes, so when a node joins or leaves, most webhooks keep their owner: mostly the ones
//! the newcomer scores best on move to it, and a leaver's webhooks spread over the rest.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// A stable 64-bit score for a (webhook, node) pair: FNV-1a over both ids, then the splitmix64
/// finaliser for avalanche. Fixed here rather than `std`'s hasher, whose output may change between
/// Rust releases: nodes running different builds must still agree.
pub(crate) fn score(webhook: &str, node: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in webhook.bytes().chain([0xff]).chain(node.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// The owner of every webhook as an index into `nodes` (which must be sorted and distinct).
/// Empty when there are no nodes.
pub(crate) fn assign<'a>(nodes: &[String], webhooks: &'a [Arc<str>]) -> HashMap<&'a str, usize> {
    let k = nodes.len();
    let n = webhooks.len();
    let mut owner = HashMap::with_capacity(n);
    if k == 0 {
        return owner;
    }
    if k == 1 {
        owner.extend(webhooks.iter().map(|w| (&**w, 0)));
        return owner;
    }
    let base = n / k;
    let extra = n % k;
    let mut room: Vec<usize> = (0..k).map(|i| base + usize::from(i < extra)).collect();
    let mut pairs: Vec<(u64, u32, u32)> = Vec::with_capacity(n * k);
    for (wi, w) in webhooks.iter().enumerate() {
        for (ni, node) in nodes.iter().enumerate() {
            pairs.push((score(w, node), wi as u32, ni as u32));
        }
    }
    // Best score first; ties (astronomically rare) broken by webhook then node index, so the
    // order is total and every node computes the same answer.
    pairs.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    for (_, wi, ni) in pairs {
        let w = &*webhooks[wi as usize];
        if room[ni as usize] == 0 || owner.contains_key(w) {
            continue;
        }
        room[ni as usize] -= 1;
        owner.insert(w, ni as usize);
        if owner.len() == n {
            break;
        }
    }
    owner
}

/// What one node should do to reach the assignment.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Webhooks it should own but does not hold: claim them (succeeds once the lease is free).
    pub(crate) claim: Vec<Arc<str>>,
    /// Webhooks it holds that belong to another node now: drain, then release them.
    pub(crate) release: Vec<Arc<str>>,
}

/// The plan of node `me`, given the live nodes (sorted; `me` is counted even if missing, since
/// it is alive by definition), every webhook id (sorted), and the leases it holds.
pub(crate) fn plan(me: &str, live: &[String], webhooks: &[Arc<str>], held: &BTreeSet<Arc<str>>) -> Plan {
    let mut nodes: Vec<String> = live.to_vec();
    if let Err(at) = nodes.binary_search_by(|n| n.as_str().cmp(me)) {
        nodes.insert(at, me.to_string());
    }
    let me_index = nodes.iter().position(|n| n == me).expect("inserted above");
    let owner = assign(&nodes, webhooks);
    let mut out = Plan::default();
    for w in webhooks {
        let mine = owner.get(&**w) == Some(&me_index);
        if mine && !held.contains(w) {
            out.claim.push(w.clone());
        }
    }
    for w in held {
        if owner.get(&**w) != Some(&me_index) {
            out.release.push(w.clone());
        }
    }
    out
}

/// The plan of a node that sees no other live node, when only registrations (`added`) changed
/// since its last plan: every webhook is its own, so it claims the new ones it does not hold yet,
/// once each. The same claims as [`plan`] would make, without reading every webhook: a fleet
/// registered one claim round at a time would otherwise cost a full plan per round.
pub(crate) fn plan_added(added: Vec<Arc<str>>, known: impl Fn(&str) -> bool, held: impl Fn(&str) -> bool) -> Plan {
    let mut claim: Vec<Arc<str>> = added.into_iter().filter(|w| known(w) && !held(w)).collect();
    claim.sort();
    claim.dedup();
    Plan { claim, release: Vec::new() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lone_node_claims_just_what_was_added_as_a_full_plan_would() {
        let all = webhooks(50);
        let held: BTreeSet<Arc<str>> = all[..40].iter().cloned().collect();
        // Added: ten new ones (one twice), one already held, one deleted since (not known).
        let mut added: Vec<Arc<str>> = all[40..].to_vec();
        added.push(all[45].clone());
        added.push(all[3].clone());
        added.push(Arc::from("wh_gone"));
        let known: BTreeSet<Arc<str>> = all.iter().cloned().collect();
        let quick = plan_added(added, |w| known.contains(w), |w| held.contains(w));
        let full = plan("n1", &nodes(&["n1"]), &all, &held);
        assert_eq!(quick, full);
        assert_eq!(quick.claim.len(), 10);
    }

    fn webhooks(n: usize) -> Vec<Arc<str>> {
        let mut v: Vec<Arc<str>> =
            (0..n).map(|i| Arc::from(format!("wh_{:08x}", i.wrapping_mul(2_654_435_761)))).collect();
        v.sort();
        v
    }

    fn nodes(names: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        v.sort();
        v
    }

    fn counts(nodes: &[String], owner: &HashMap<&str, usize>) -> Vec<usize> {
        let mut c = vec![0; nodes.len()];
        for i in owner.values() {
            c[*i] += 1;
        }
        c
    }

    fn moved(before: &HashMap<&str, usize>, bn: &[String], after: &HashMap<&str, usize>, an: &[String]) -> usize {
        before.iter().filter(|(w, i)| an[after[*w]] != bn[**i]).count()
    }

    #[test]
    fn score_is_stable_across_builds() {
        // Pinned values: a change here would make nodes of different versions disagree.
        assert_eq!(score("wh_1", "node-a"), score("wh_1", "node-a"));
        assert_ne!(score("wh_1", "node-a"), score("wh_1", "node-b"));
        assert_ne!(score("ab", "c"), score("a", "bc"), "the separator keeps the two ids apart");
    }

    #[test]
    fn every_webhook_has_one_owner_within_one_of_an_even_share() {
        for (n, k) in [(0, 3), (1, 3), (2, 3), (10, 3), (101, 4), (1000, 7), (5, 1)] {
            let ws = webhooks(n);
            let ns: Vec<String> = (0..k).map(|i| format!("node-{i}")).collect();
            let owner = assign(&ns, &ws);
            assert_eq!(owner.len(), n);
            let c = counts(&ns, &owner);
            let (lo, hi) = (c.iter().min().unwrap(), c.iter().max().unwrap());
            assert!(hi - lo <= 1, "n={n} k={k}: {c:?}");
        }
    }

    #[test]
    fn the_answer_does_not_depend_on_input_order_or_on_who_computes_it() {
        let ws = webhooks(300);
        let ns = nodes(&["b", "a", "c"]);
        let one = assign(&ns, &ws);
        let mut rev = ws.clone();
        rev.reverse();
        let two = assign(&ns, &rev);
        assert_eq!(one, two.iter().map(|(w, i)| (*w, *i)).collect());
    }

    #[test]
    fn a_node_joining_or_leaving_moves_little() {
        let ws = webhooks(3000);
        for k in 1..=6usize {
            let before_nodes: Vec<String> = (0..k).map(|i| format!("node-{i}")).collect();
            let mut after_nodes = before_nodes.clone();
            after_nodes.push(format!("node-{k}"));
            after_nodes.sort();
            let before = assign(&before_nodes, &ws);
            let after = assign(&after_nodes, &ws);
            let m = moved(&before, &before_nodes, &after, &after_nodes);
            // The least possible is the newcomer's share, N/(k+1).
            let ideal = ws.len() / (k + 1);
            assert!(m <= ideal + ideal / 2, "join of node {k}: {m} moved, ideal {ideal}");
            // And the reverse: the leaver's share moves, little else.
            let back = moved(&after, &after_nodes, &before, &before_nodes);
            assert!(back <= ideal + ideal / 2, "leave of node {k}: {back} moved, ideal {ideal}");
        }
    }

    #[test]
    fn plans_claim_what_is_assigned_and_release_the_rest() {
        let ws = webhooks(40);
        let ns = nodes(&["a", "b"]);
        let owner = assign(&ns, &ws);
        let mine: BTreeSet<Arc<str>> = ws.iter().filter(|w| owner[&***w] == 0).cloned().collect();
        let theirs: BTreeSet<Arc<str>> = ws.iter().filter(|w| owner[&***w] == 1).cloned().collect();
        // Holding everything (e.g. it was alone until b joined): release b's share only.
        let all: BTreeSet<Arc<str>> = ws.iter().cloned().collect();
        let p = plan("a", &ns, &ws, &all);
        assert!(p.claim.is_empty());
        assert_eq!(p.release.iter().cloned().collect::<BTreeSet<_>>(), theirs);
        // Holding nothing: claim its share.
        let p = plan("a", &ns, &ws, &BTreeSet::new());
        assert_eq!(p.claim.iter().cloned().collect::<BTreeSet<_>>(), mine);
        assert!(p.release.is_empty());
        // Not yet seen live by the store: it still counts itself.
        let p = plan("a", &nodes(&["b"]), &ws, &BTreeSet::new());
        assert_eq!(p.claim.iter().cloned().collect::<BTreeSet<_>>(), mine);
    }

    #[test]
    fn a_lone_node_owns_everything_and_a_deleted_webhook_is_released() {
        let ws = webhooks(5);
        let mut held: BTreeSet<Arc<str>> = ws.iter().cloned().collect();
        held.insert(Arc::from("wh_deleted"));
        let p = plan("solo", &nodes(&["solo"]), &ws, &held);
        assert!(p.claim.is_empty());
        assert_eq!(p.release, vec![Arc::<str>::from("wh_deleted")]);
    }
}
