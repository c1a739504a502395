//! Linearizability checker for a history of register operations, one register per key.
//!
//! The search is Wing & Gong's, with Lowe's memo of visited configurations, as Porcupine
//! implements it: the calls and returns of one key sit in a doubly linked list sorted by
//! time; the search linearizes (lifts) the first call the model accepts, and when it meets
//! a return whose call is still in the list it backtracks (unlifts) to try the next call.
//! A configuration is the set of linearized operations plus the register's value; one
//! already visited is never explored again.
//!
//! Keys are checked independently: a history of independent registers is linearizable if
//! and only if each key's sub-history is (linearizability is local, Herlihy & Wing).
//!
//! Semantics of outcomes:
//! - `Fail` did not take effect: removed.
//! - `Indeterminate` may take effect at any time after its call, or never: its return is
//!   at +∞ and the search succeeds once every *definite* operation is linearized (an
//!   indeterminate operation left over is one that never happened). An indeterminate read
//!   carries no information and is removed; so is an indeterminate write or CAS whose value
//!   no read observed and no CAS expected, since taking effect could never explain anything.
//! - An `Ok` operation with no return time is still definite, with its return at +∞.
//! - A call and a return at the same instant are taken as concurrent.
//!
//! This module is pure: no I/O, and the only clock it reads is the one enforcing the budget.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::hash::BuildHasherDefault;
use std::time::{Duration, Instant};

use rustc_hash::FxHasher;

use crate::history::{DisplayValue, OpKind, Operation, Outcome};

/// Bounds on one [`check`]: past either, the verdict is [`Verdict::Unknown`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckBudget {
    /// Wall-clock time for the whole history, all keys together.
    pub time: Duration,
    /// Configurations remembered per key; each costs about `ops / 8 + 40` bytes, so this is
    /// the memory bound of the search.
    pub states_max: usize,
}

/// The answer of [`check`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    NotLinearizable(Counterexample),
    /// The budget ran out (or the history is malformed) before an answer was found.
    Unknown {
        reason: String,
    },
}

/// Why one key's sub-history is not linearizable, with a small window of its operations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counterexample {
    pub key: String,
    pub violation: Violation,
    /// The operation that cannot be placed: its return is reached with no order of the
    /// operations before it that the register allows.
    pub blocked: Operation,
    /// The witness, by call time: the end of the longest linearizable prefix found (its
    /// last write and the operations after it), `blocked`, and the operations concurrent
    /// with `blocked` that are not in that prefix.
    pub window: Vec<Operation>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    /// An `Ok` read returned a value that no write or CAS that may have taken effect wrote.
    ValueNeverWritten,
    /// The search exhausted every order. The longest linearizable prefix it found has
    /// `linearized_ops` of the key's `ops` operations and leaves the register at `register`.
    NoLinearization { linearized_ops: usize, ops: usize, register: Option<String> },
}

/// Operations of the prefix's end shown in a counterexample, besides its last write.
const WINDOW_PREFIX_OPS_MAX: usize = 6;
/// Concurrent operations shown in a counterexample; the earliest calls are kept.
const WINDOW_CONCURRENT_OPS_MAX: usize = 24;
/// Search steps between two reads of the clock: often enough to stop within a few
/// milliseconds of the deadline, rare enough to cost nothing.
const CLOCK_CHECK_STEPS: u64 = 4096;

/// Decides whether `history` could have come from one linearizable register per key,
/// each starting absent (`None`). Keys are checked in key order; the first key found not
/// linearizable is reported.
pub fn check(history: &[Operation], budget: CheckBudget) -> Verdict {
    // No deadline when the budget is too large for the clock to represent.
    let deadline = Instant::now().checked_add(budget.time);
    if let Some(operation) =
        history.iter().find(|operation| operation.return_ns.is_some_and(|return_ns| return_ns < operation.call_ns))
    {
        return Verdict::Unknown {
            reason: format!("malformed history: operation returns before its call: {operation}"),
        };
    }
    let mut keys: BTreeMap<&str, Vec<&Operation>> = BTreeMap::new();
    for operation in history {
        keys.entry(operation.key.as_str()).or_default().push(operation);
    }
    let mut undecided = Vec::new();
    for (key, operations) in &keys {
        match check_key(key, operations, budget.states_max, deadline) {
            Verdict::Linearizable => {}
            Verdict::NotLinearizable(counterexample) => return Verdict::NotLinearizable(counterexample),
            Verdict::Unknown { reason } => undecided.push(reason),
        }
    }
    match undecided.first() {
        None => Verdict::Linearizable,
        Some(first) => {
            Verdict::Unknown { reason: format!("{} of {} keys undecided, first: {first}", undecided.len(), keys.len()) }
        }
    }
}

fn check_key(key: &str, operations: &[&Operation], states_max: usize, deadline: Option<Instant>) -> Verdict {
    match KeyHistory::prepare(operations) {
        Err(read) => Verdict::NotLinearizable(Counterexample {
            key: key.to_string(),
            violation: Violation::ValueNeverWritten,
            blocked: read.clone(),
            window: window(operations, read, &[]),
        }),
        Ok(history) => Search::new(&history, states_max, deadline).run(key),
    }
}

/// A register value interned per key; [`ABSENT`] is `None`.
type Value = u32;
const ABSENT: Value = 0;

/// An operation as the model sees it.
#[derive(Clone, Copy, Debug)]
enum Step {
    Read(Value),
    Write(Value),
    Cas { expected: Value, new: Value },
}

impl Step {
    /// The register after this step from `register`, or `None` if the step cannot happen there.
    fn apply(self, register: Value) -> Option<Value> {
        match self {
            Step::Read(value) => (value == register).then_some(register),
            Step::Write(value) => Some(value),
            Step::Cas { expected, new } => (expected == register).then_some(new),
        }
    }

    fn writes(self) -> bool {
        !matches!(self, Step::Read(_))
    }
}

/// One key's operations that can matter, in model form.
struct KeyHistory<'h> {
    operations: Vec<&'h Operation>,
    steps: Vec<Step>,
    /// Interned value → its text, for reports; index 0 is [`ABSENT`].
    values: Vec<Option<&'h str>>,
}

impl<'h> KeyHistory<'h> {
    /// Drops what cannot matter (see the module doc). Returns the first `Ok` read of a value
    /// that nothing left could have written: no order can explain it.
    fn prepare(operations: &[&'h Operation]) -> Result<Self, &'h Operation> {
        let mut kept: Vec<&'h Operation> = operations
            .iter()
            .copied()
            .filter(|operation| {
                // A failed operation did not happen; an indeterminate read says nothing.
                let no_information = operation.outcome == Outcome::Fail
                    || (operation.outcome == Outcome::Indeterminate && matches!(operation.kind, OpKind::Read { .. }));
                !no_information
            })
            .collect();

        let written: HashSet<&str> = kept.iter().filter_map(|operation| written_value(operation)).collect();
        if let Some(read) = kept.iter().find(|operation| match &operation.kind {
            OpKind::Read { value: Some(value) } => !written.contains(value.as_str()),
            _ => false,
        }) {
            return Err(read);
        }

        // Dropping an indeterminate CAS removes its expectation, which may make another
        // indeterminate write useless: repeat until nothing changes.
        loop {
            let needed: HashSet<&str> = kept
                .iter()
                .filter_map(|operation| match &operation.kind {
                    OpKind::Read { value } => value.as_deref(),
                    OpKind::Cas { expected, .. } => Some(expected.as_str()),
                    OpKind::Write { .. } => None,
                })
                .collect();
            let before = kept.len();
            kept.retain(|operation| {
                operation.outcome != Outcome::Indeterminate
                    || written_value(operation).is_some_and(|value| needed.contains(value))
            });
            if kept.len() == before {
                break;
            }
        }

        let mut values = vec![None];
        let mut interned: HashMap<&'h str, Value> = HashMap::new();
        let mut intern = |value: &'h str| {
            *interned.entry(value).or_insert_with(|| {
                values.push(Some(value));
                Value::try_from(values.len() - 1).expect("a key has fewer than 2^32 values")
            })
        };
        let steps = kept
            .iter()
            .map(|operation| match &operation.kind {
                OpKind::Read { value } => Step::Read(value.as_deref().map_or(ABSENT, &mut intern)),
                OpKind::Write { value } => Step::Write(intern(value)),
                OpKind::Cas { expected, new } => Step::Cas { expected: intern(expected), new: intern(new) },
            })
            .collect();
        Ok(KeyHistory { operations: kept, steps, values })
    }
}

fn written_value(operation: &Operation) -> Option<&str> {
    match &operation.kind {
        OpKind::Read { .. } => None,
        OpKind::Write { value } => Some(value),
        OpKind::Cas { new, .. } => Some(new),
    }
}

fn is_definite(operation: &Operation) -> bool {
    operation.outcome == Outcome::Ok
}

/// The end of an operation's window: +∞ (`u64::MAX`) when it may take effect any time later.
fn return_end_ns(operation: &Operation) -> u64 {
    match (operation.outcome, operation.return_ns) {
        (Outcome::Ok | Outcome::Fail, Some(return_ns)) => return_ns,
        _ => u64::MAX,
    }
}

/// Index of a node in [`Search`]'s linked list; node 0 is the head sentinel.
type Node = u32;
const HEAD: Node = 0;
const NIL: Node = Node::MAX;

/// The memo: (linearized-operations bitset ++ register) as one word slice, so a lookup
/// borrows the working buffer instead of cloning it.
type Memo = HashSet<Box<[u64]>, BuildHasherDefault<FxHasher>>;

/// Porcupine's search over one key.
struct Search<'k, 'h> {
    history: &'k KeyHistory<'h>,
    states_max: usize,
    deadline: Option<Instant>,
    next: Vec<Node>,
    prev: Vec<Node>,
    /// For each node, the operation it belongs to and whether it is the call.
    node_operation: Vec<u32>,
    node_is_call: Vec<bool>,
    call_node: Vec<Node>,
    return_node: Vec<Node>,
}

/// The deepest point the search reached, kept for the counterexample.
struct Deepest {
    linearized: Vec<u32>,
    blocked: u32,
    register: Value,
}

impl<'k, 'h> Search<'k, 'h> {
    fn new(history: &'k KeyHistory<'h>, states_max: usize, deadline: Option<Instant>) -> Self {
        let count = history.operations.len();
        // Calls before returns at the same instant (rank 0), so touching operations are
        // concurrent; definite returns before indeterminate ones at +∞, so the search meets
        // every definite return before any indeterminate one.
        let mut events: Vec<(u64, u8, u32)> = Vec::with_capacity(2 * count);
        for (index, operation) in history.operations.iter().enumerate() {
            let index = u32::try_from(index).expect("a key has fewer than 2^32 operations");
            events.push((operation.call_ns, 0, index));
            let rank = if is_definite(operation) { 1 } else { 2 };
            events.push((return_end_ns(operation), rank, index));
        }
        events.sort_unstable();

        let nodes = events.len() + 1;
        let mut search = Search {
            history,
            states_max,
            deadline,
            next: (1..=nodes).map(|node| if node == nodes { NIL } else { to_node(node) }).collect(),
            prev: (0..nodes).map(|node| if node == 0 { NIL } else { to_node(node - 1) }).collect(),
            node_operation: vec![u32::MAX; nodes],
            node_is_call: vec![false; nodes],
            call_node: vec![NIL; count],
            return_node: vec![NIL; count],
        };
        for (position, &(_, rank, operation)) in events.iter().enumerate() {
            let node = to_node(position + 1);
            search.node_operation[position + 1] = operation;
            search.node_is_call[position + 1] = rank == 0;
            if rank == 0 {
                search.call_node[operation as usize] = node;
            } else {
                search.return_node[operation as usize] = node;
            }
        }
        search
    }

    fn run(mut self, key: &str) -> Verdict {
        let history = self.history;
        let count = history.operations.len();
        let mut definite_left = history.operations.iter().filter(|operation| is_definite(operation)).count();
        if definite_left == 0 {
            return Verdict::Linearizable;
        }
        let register_word = count.div_ceil(64);
        // Bits of linearized operations, then the register in the last word.
        let mut configuration = vec![0u64; register_word + 1];
        let mut memo = Memo::default();
        let mut register = ABSENT;
        let mut stack: Vec<(u32, Value)> = Vec::new();
        let mut deepest: Option<Deepest> = None;
        let mut node = self.next[HEAD as usize];
        let mut steps: u64 = 0;
        loop {
            steps += 1;
            if steps.is_multiple_of(CLOCK_CHECK_STEPS)
                && self.deadline.is_some_and(|deadline| Instant::now() >= deadline)
            {
                return Verdict::Unknown {
                    reason: format!("time budget exhausted on key {key:?} after {} configurations", memo.len()),
                };
            }
            // Never NIL here: each call precedes its return, and every definite return
            // precedes the indeterminate ones, so a return is met while definite ops remain.
            assert_ne!(node, NIL, "search ran off the list with definite operations left");
            let operation = self.node_operation[node as usize];
            let index = operation as usize;
            if self.node_is_call[node as usize] {
                if let Some(after) = history.steps[index].apply(register) {
                    configuration[index / 64] |= 1 << (index % 64);
                    configuration[register_word] = u64::from(after);
                    if !memo.contains(&configuration[..]) {
                        if memo.len() >= self.states_max {
                            return Verdict::Unknown {
                                reason: format!(
                                    "key {key:?} reached states_max = {} configurations with at most {} of {count} operations linearized",
                                    self.states_max,
                                    deepest.as_ref().map_or(stack.len(), |deepest| deepest.linearized.len()),
                                ),
                            };
                        }
                        memo.insert(configuration.clone().into_boxed_slice());
                        stack.push((operation, register));
                        register = after;
                        self.lift(operation);
                        if is_definite(history.operations[index]) {
                            definite_left -= 1;
                            if definite_left == 0 {
                                return Verdict::Linearizable;
                            }
                        }
                        node = self.next[HEAD as usize];
                        continue;
                    }
                    configuration[index / 64] &= !(1 << (index % 64));
                }
                node = self.next[node as usize];
            } else {
                if deepest.as_ref().is_none_or(|deepest| stack.len() > deepest.linearized.len()) {
                    deepest = Some(Deepest {
                        linearized: stack.iter().map(|&(operation, _)| operation).collect(),
                        blocked: operation,
                        register,
                    });
                }
                let Some((undone, before)) = stack.pop() else {
                    let deepest = deepest.expect("recorded just above");
                    return Verdict::NotLinearizable(self.counterexample(key, &deepest));
                };
                let undone_index = undone as usize;
                register = before;
                configuration[undone_index / 64] &= !(1 << (undone_index % 64));
                self.unlift(undone);
                if is_definite(history.operations[undone_index]) {
                    definite_left += 1;
                }
                node = self.next[self.call_node[undone_index] as usize];
            }
        }
    }

    /// Removes an operation's call and return from the list; they keep their own links so
    /// [`Search::unlift`] can put them back (dancing links: undone in reverse order).
    fn lift(&mut self, operation: u32) {
        self.unlink(self.call_node[operation as usize]);
        self.unlink(self.return_node[operation as usize]);
    }

    fn unlift(&mut self, operation: u32) {
        self.relink(self.return_node[operation as usize]);
        self.relink(self.call_node[operation as usize]);
    }

    fn unlink(&mut self, node: Node) {
        let (before, after) = (self.prev[node as usize], self.next[node as usize]);
        self.next[before as usize] = after;
        if after != NIL {
            self.prev[after as usize] = before;
        }
    }

    fn relink(&mut self, node: Node) {
        let (before, after) = (self.prev[node as usize], self.next[node as usize]);
        self.next[before as usize] = node;
        if after != NIL {
            self.prev[after as usize] = node;
        }
    }

    fn counterexample(&self, key: &str, deepest: &Deepest) -> Counterexample {
        let history = self.history;
        let operations = &history.operations;
        let linearized = &deepest.linearized;
        // The prefix's last write says why the register holds what it holds; the
        // operations after it are what the blocked one had to fit between.
        let last_write = linearized.iter().rposition(|&operation| history.steps[operation as usize].writes());
        let tail_start = linearized.len().saturating_sub(WINDOW_PREFIX_OPS_MAX);
        let prefix: Vec<&Operation> = linearized
            .iter()
            .enumerate()
            .filter(|&(position, _)| position >= tail_start || Some(position) == last_write)
            .map(|(_, &operation)| operations[operation as usize])
            .collect();
        let blocked = operations[deepest.blocked as usize];
        let in_prefix: HashSet<u32> = linearized.iter().copied().collect();
        let outside_prefix: Vec<&Operation> = (0..operations.len())
            .filter(|&operation| !in_prefix.contains(&to_u32(operation)))
            .map(|operation| operations[operation])
            .collect();
        Counterexample {
            key: key.to_string(),
            violation: Violation::NoLinearization {
                linearized_ops: linearized.len(),
                ops: operations.len(),
                register: history.values[deepest.register as usize].map(str::to_string),
            },
            blocked: blocked.clone(),
            window: window(&outside_prefix, blocked, &prefix),
        }
    }
}

fn to_node(index: usize) -> Node {
    Node::try_from(index).expect("a key has fewer than 2^31 operations")
}

fn to_u32(index: usize) -> u32 {
    u32::try_from(index).expect("a key has fewer than 2^32 operations")
}

/// `prefix`, `blocked` and the operations of `candidates` concurrent with `blocked`, by call time.
fn window(candidates: &[&Operation], blocked: &Operation, prefix: &[&Operation]) -> Vec<Operation> {
    let overlaps = |operation: &Operation| {
        operation.call_ns <= return_end_ns(blocked) && return_end_ns(operation) >= blocked.call_ns
    };
    let mut concurrent: Vec<&Operation> = candidates
        .iter()
        .copied()
        .filter(|&operation| !std::ptr::eq(operation, blocked) && overlaps(operation))
        .collect();
    concurrent.sort_by_key(|operation| operation.call_ns);
    concurrent.truncate(WINDOW_CONCURRENT_OPS_MAX);
    let mut window: Vec<Operation> = prefix
        .iter()
        .copied()
        .chain(concurrent)
        .filter(|&operation| !std::ptr::eq(operation, blocked))
        .chain([blocked])
        .cloned()
        .collect();
    window.sort_by_key(|operation| (operation.call_ns, return_end_ns(operation)));
    window
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::ValueNeverWritten => {
                f.write_str("an ok read returned a value that no write or CAS that may have taken effect wrote")
            }
            Violation::NoLinearization { linearized_ops, ops, register } => write!(
                f,
                "no linearization exists; the longest linearizable prefix found places {linearized_ops} of {ops} \
                 operations and leaves the register at {}, after which the operation marked `>` cannot take effect \
                 before it returns",
                DisplayValue(register.as_deref())
            ),
        }
    }
}

impl fmt::Display for Counterexample {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "key {:?}: {}", self.key, self.violation)?;
        writeln!(f, "operations by call time (`>` cannot be placed):")?;
        for operation in &self.window {
            let marker = if *operation == self.blocked { '>' } else { ' ' };
            writeln!(f, "  {marker} {operation}")?;
        }
        Ok(())
    }
}
