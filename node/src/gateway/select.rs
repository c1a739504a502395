//! Which node of a service a request tries first, and which next: round-robin or random over
//! the nodes not ejected. A node the gateway could not reach is ejected for a while (outlier
//! detection), and gets its chance back when that time is up or when it registers again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use keel_client::registry::Strategy;
use rand::seq::SliceRandom;

use super::directory::Instance;

/// How long a node that refused a connection is left out. Short: a restarted node is back in
/// seconds, and its new registration brings it back sooner.
pub const EJECTION: Duration = Duration::from_secs(10);
/// Nodes tried for one request before the gateway gives up (each one never reached).
pub const ATTEMPTS_MAX: usize = 3;
/// Ejected addresses remembered at most; past this the oldest are forgotten (the registry
/// holds what nodes exist: a stranger cannot grow this beyond what it lets register).
const EJECTED_MAX: usize = 4096;

pub struct Selector {
    strategy: Strategy,
    // std Mutex: held for a lookup or an insert, never across an await.
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Service → requests routed so far (round-robin's position).
    turns: HashMap<String, usize>,
    /// Address → until when it is left out.
    ejected: HashMap<String, Instant>,
}

impl Selector {
    pub fn new(strategy: Strategy) -> Selector {
        Selector { strategy, state: Mutex::new(State::default()) }
    }

    /// The nodes to try for one request, in order, at most [`ATTEMPTS_MAX`]; empty when every
    /// node is ejected.
    pub fn order(&self, service: &str, instances: &[Instance], now: Instant) -> Vec<Instance> {
        let mut state = self.lock();
        let mut healthy: Vec<Instance> = instances
            .iter()
            .filter(|i| state.ejected.get(&i.address).is_none_or(|until| *until <= now))
            .cloned()
            .collect();
        match self.strategy {
            Strategy::RoundRobin if !healthy.is_empty() => {
                let turn = state.turns.entry(service.to_string()).or_default();
                let start = *turn % healthy.len();
                *turn = turn.wrapping_add(1);
                healthy.rotate_left(start);
            }
            Strategy::RoundRobin => {}
            Strategy::Random => healthy.shuffle(&mut rand::rng()),
        }
        healthy.truncate(ATTEMPTS_MAX);
        healthy
    }

    /// Leaves `address` out until `now + EJECTION`.
    pub fn eject(&self, address: &str, now: Instant) {
        let mut state = self.lock();
        if state.ejected.len() >= EJECTED_MAX {
            state.ejected.retain(|_, until| *until > now);
            if state.ejected.len() >= EJECTED_MAX {
                state.ejected.clear();
            }
        }
        state.ejected.insert(address.to_string(), now + EJECTION);
        tracing::warn!(address, "node unreachable; left out for {EJECTION:?}");
    }

    /// A node that registers (again) is back in.
    pub fn readmit(&self, address: &str) {
        self.lock().ejected.remove(address);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instances(addresses: &[&str]) -> Vec<Instance> {
        addresses
            .iter()
            .map(|a| Instance { node_id: a.to_string(), address: a.to_string(), version: "1".into() })
            .collect()
    }

    fn firsts(selector: &Selector, nodes: &[Instance], now: Instant, n: usize) -> Vec<String> {
        (0..n).map(|_| selector.order("s", nodes, now).first().map(|i| i.address.clone()).unwrap_or_default()).collect()
    }

    #[test]
    fn round_robin_turns_and_skips_the_ejected_until_their_time_is_up() {
        let selector = Selector::new(Strategy::RoundRobin);
        let nodes = instances(&["a", "b", "c"]);
        let now = Instant::now();
        assert_eq!(firsts(&selector, &nodes, now, 3), ["a", "b", "c"]);
        selector.eject("b", now);
        assert_eq!(selector.order("s", &nodes, now).len(), 2);
        assert!(!firsts(&selector, &nodes, now, 4).contains(&"b".to_string()));
        assert!(firsts(&selector, &nodes, now + EJECTION, 3).contains(&"b".to_string()));
        selector.eject("a", now);
        selector.readmit("a");
        let order: Vec<String> = selector.order("s", &nodes, now).into_iter().map(|i| i.address).collect();
        assert_eq!(order.len(), 2, "b is still out: {order:?}");
        assert!(order.contains(&"a".to_string()), "a registered again: {order:?}");
    }

    #[test]
    fn every_node_ejected_leaves_nothing_to_try() {
        let selector = Selector::new(Strategy::Random);
        let nodes = instances(&["a", "b"]);
        let now = Instant::now();
        selector.eject("a", now);
        selector.eject("b", now);
        assert!(selector.order("s", &nodes, now).is_empty());
        assert_eq!(selector.order("s", &instances(&["a", "b", "c", "d", "e"]), now).len(), ATTEMPTS_MAX);
    }
}
