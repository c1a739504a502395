//! A linearizable register simulated with concurrent processes, for generated histories.
//!
//! Every operation gets a real-time window and an atomic effect point inside it (after its
//! call, anywhere later for an indeterminate one); effects are applied to per-key registers
//! in effect-time order, which makes the history linearizable by construction.

use std::collections::HashMap;

use keel_jepsen::{OpKind, Operation, Outcome};

/// SplitMix64: a tiny deterministic generator, so a failing seed replays exactly.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound`; `bound` > 0.
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound
    }

    pub fn percent(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Simulation {
    pub processes: u64,
    pub keys: u64,
    pub operations: usize,
    pub read_percent: u64,
    pub cas_percent: u64,
    /// Operations whose client never learns the outcome; half of them take effect.
    pub indeterminate_percent: u64,
    /// Writes and CASes that fail without effect (besides CASes whose comparison fails).
    pub fail_percent: u64,
}

/// One planned operation before effects are applied.
struct Planned {
    operation: Operation,
    effect_ns: u64,
    takes_effect: bool,
}

pub fn simulate(seed: u64, simulation: Simulation) -> Vec<Operation> {
    let mut rng = Rng::new(seed);
    let mut free_at_ns = vec![0u64; simulation.processes as usize];
    let mut planned = Vec::with_capacity(simulation.operations);
    let mut value_counter = 0u64;
    for _ in 0..simulation.operations {
        // The process that becomes free first calls next: `processes` calls stay in flight.
        let process = (0..free_at_ns.len()).min_by_key(|&process| free_at_ns[process]).expect("at least one process");
        let call_ns = free_at_ns[process] + rng.below(20);
        let latency_ns = 1 + rng.below(100);
        let return_ns = call_ns + latency_ns;
        free_at_ns[process] = return_ns;
        let roll = rng.below(100);
        value_counter += 1;
        let kind = if roll < simulation.read_percent {
            OpKind::Read { value: None }
        } else if roll < simulation.read_percent + simulation.cas_percent {
            // `expected` is chosen when the effect is applied, from what the register holds.
            OpKind::Cas { expected: String::new(), new: format!("v{value_counter}") }
        } else {
            OpKind::Write { value: format!("v{value_counter}") }
        };
        let is_read = matches!(kind, OpKind::Read { .. });
        let (outcome, effect_ns, takes_effect) = if rng.percent(simulation.indeterminate_percent) {
            // The effect may land long after the client gave up.
            (Outcome::Indeterminate, call_ns + rng.below(4 * latency_ns), rng.percent(50))
        } else if !is_read && rng.percent(simulation.fail_percent) {
            (Outcome::Fail, call_ns, false)
        } else {
            (Outcome::Ok, call_ns + rng.below(latency_ns + 1), true)
        };
        let never_returns = outcome == Outcome::Indeterminate && rng.percent(50);
        planned.push(Planned {
            operation: Operation {
                process: process as u64,
                key: format!("k{}", rng.below(simulation.keys)),
                call_ns,
                return_ns: (!never_returns).then_some(return_ns),
                kind,
                outcome,
            },
            effect_ns,
            takes_effect,
        });
    }

    let mut order: Vec<usize> = (0..planned.len()).collect();
    order.sort_by_key(|&index| (planned[index].effect_ns, index));
    let mut registers: HashMap<String, Option<String>> = HashMap::new();
    for index in order {
        let Planned { operation, takes_effect, .. } = &mut planned[index];
        let register = registers.entry(operation.key.clone()).or_default();
        match &mut operation.kind {
            OpKind::Read { value } => {
                *value = if operation.outcome == Outcome::Ok {
                    register.clone()
                } else {
                    Some("garbage from an indeterminate read".to_string())
                };
            }
            OpKind::Write { value } => {
                if *takes_effect {
                    *register = Some(value.clone());
                }
            }
            OpKind::Cas { expected, new } => {
                // Half the time expect what is there, else something stale or absent.
                *expected = match register {
                    Some(current) if rng.percent(50) => current.clone(),
                    _ => format!("v{}", rng.below(value_counter + 1)),
                };
                let matches = register.as_deref() == Some(expected.as_str());
                if *takes_effect && matches {
                    *register = Some(new.clone());
                } else if operation.outcome == Outcome::Ok {
                    operation.outcome = Outcome::Fail;
                }
            }
        }
    }
    planned.into_iter().map(|planned| planned.operation).collect()
}

/// Makes one `Ok` read provably stale: it returns a value whose only writer finished
/// before another acknowledged write began, which itself finished before the read began.
/// (Or `nil` after any acknowledged write: there are no deletes.) Values are unique per
/// history, so the stale value cannot come back. Returns whether a read was changed.
pub fn make_stale_read(history: &mut [Operation], rng: &mut Rng) -> bool {
    let acknowledged_writes: Vec<usize> = (0..history.len())
        .filter(|&index| history[index].outcome == Outcome::Ok && !matches!(history[index].kind, OpKind::Read { .. }))
        .collect();
    let mut reads: Vec<usize> = (0..history.len())
        .filter(|&index| history[index].outcome == Outcome::Ok && matches!(history[index].kind, OpKind::Read { .. }))
        .collect();
    // Try reads in a random order.
    for position in (1..reads.len()).rev() {
        let other = rng.below(position as u64 + 1) as usize;
        reads.swap(position, other);
    }
    let returned_before =
        |writer: usize, instant_ns: u64| history[writer].return_ns.is_some_and(|return_ns| return_ns < instant_ns);
    for read in reads {
        let key = &history[read].key;
        let same_key: Vec<usize> =
            acknowledged_writes.iter().copied().filter(|&writer| history[writer].key == *key).collect();
        let Some(&overwriter) = same_key.iter().find(|&&writer| returned_before(writer, history[read].call_ns)) else {
            continue;
        };
        // Absent (`None`) if no writer finished before the overwriter: equally stale.
        let stale = same_key.iter().copied().find(|&writer| returned_before(writer, history[overwriter].call_ns)).map(
            |writer| match &history[writer].kind {
                OpKind::Write { value } | OpKind::Cas { new: value, .. } => value.clone(),
                OpKind::Read { .. } => unreachable!("only writers are listed"),
            },
        );
        history[read].kind = OpKind::Read { value: stale };
        return true;
    }
    false
}
