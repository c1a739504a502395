//! Differential test against `todc-utils`' `WGLChecker`, an independent implementation
//! of the same search, on many small random single-key histories.
//!
//! What todc-utils cannot express, and how it is modelled or avoided:
//! - It has no timestamps: a history is a sequence of call/response actions. We give it our
//!   own event order (calls before returns at the same instant).
//! - It requires every call to have a response. An indeterminate write or CAS gets its
//!   response after every other action, as Jepsen's etcd example does, and always-valid
//!   semantics: a write at the very end is indistinguishable from one that never happened,
//!   and a CAS that finds the wrong value is a no-op. That is our semantics.
//! - Indeterminate reads are left out of its history: they carry no information, and our
//!   checker drops them too. `Fail` operations are left out for the same reason.
//! - Each operation gets its own process id, so its FIFO call/response pairing per process
//!   cannot mismatch operations.

use std::time::Duration;

use keel_jepsen::{check, CheckBudget, OpKind, Operation, Outcome, Verdict};
use todc_utils::linearizability::history::{Action, History};
use todc_utils::{Specification, WGLChecker};

use crate::simulate::Rng;

const HISTORIES: u64 = 5_000;
const OPERATIONS_MAX: u64 = 8;
/// Few values, so that random reads are right often enough for both verdicts to occur.
const VALUES: [&str; 2] = ["a", "b"];

#[derive(Clone, Debug)]
enum RegisterOp {
    Read(Option<u8>),
    Write(u8),
    Cas(u8, u8),
    MaybeWrite(u8),
    MaybeCas(u8, u8),
}

struct RegisterSpec;

impl Specification for RegisterSpec {
    type State = Option<u8>;
    type Operation = RegisterOp;

    fn init() -> Self::State {
        None
    }

    fn apply(operation: &RegisterOp, state: &Option<u8>) -> (bool, Option<u8>) {
        match *operation {
            RegisterOp::Read(value) => (value == *state, *state),
            RegisterOp::Write(value) | RegisterOp::MaybeWrite(value) => (true, Some(value)),
            RegisterOp::Cas(expected, new) => {
                let swaps = *state == Some(expected);
                (swaps, if swaps { Some(new) } else { *state })
            }
            RegisterOp::MaybeCas(expected, new) => (true, if *state == Some(expected) { Some(new) } else { *state }),
        }
    }
}

fn random_value(rng: &mut Rng) -> u8 {
    rng.below(VALUES.len() as u64) as u8
}

fn text(value: u8) -> String {
    VALUES[value as usize].to_string()
}

fn random_history(rng: &mut Rng) -> Vec<Operation> {
    let count = rng.below(OPERATIONS_MAX + 1);
    (0..count)
        .map(|process| {
            let call_ns = rng.below(20);
            let kind = match rng.below(3) {
                0 => OpKind::Read { value: (rng.below(3) > 0).then(|| text(random_value(rng))) },
                1 => OpKind::Write { value: text(random_value(rng)) },
                _ => OpKind::Cas { expected: text(random_value(rng)), new: text(random_value(rng)) },
            };
            let outcome = match rng.below(10) {
                0 => Outcome::Fail,
                1 | 2 => Outcome::Indeterminate,
                _ => Outcome::Ok,
            };
            Operation {
                process,
                key: "k".to_string(),
                call_ns,
                return_ns: Some(call_ns + rng.below(10)),
                kind,
                outcome,
            }
        })
        .collect()
}

fn value_index(value: &str) -> u8 {
    VALUES.iter().position(|known| *known == value).expect("generated from VALUES") as u8
}

/// `None` when nothing is left for todc-utils (its `History` cannot be empty).
fn todc_linearizable(history: &[Operation]) -> Option<bool> {
    // (instant, rank, process, action): calls (rank 0) before returns (1) at the same
    // instant, indeterminate responses (rank 2) after everything.
    let mut events: Vec<(u64, u8, usize, Action<RegisterOp>)> = Vec::new();
    for (process, operation) in history.iter().enumerate() {
        let indeterminate = operation.outcome == Outcome::Indeterminate;
        let model = match (&operation.kind, indeterminate) {
            _ if operation.outcome == Outcome::Fail => continue,
            (OpKind::Read { .. }, true) => continue,
            (OpKind::Read { value }, false) => RegisterOp::Read(value.as_deref().map(value_index)),
            (OpKind::Write { value }, false) => RegisterOp::Write(value_index(value)),
            (OpKind::Write { value }, true) => RegisterOp::MaybeWrite(value_index(value)),
            (OpKind::Cas { expected, new }, false) => RegisterOp::Cas(value_index(expected), value_index(new)),
            (OpKind::Cas { expected, new }, true) => RegisterOp::MaybeCas(value_index(expected), value_index(new)),
        };
        let return_event =
            if indeterminate { (u64::MAX, 2) } else { (operation.return_ns.expect("generated with a return"), 1) };
        events.push((operation.call_ns, 0, process, Action::Call(model.clone())));
        events.push((return_event.0, return_event.1, process, Action::Response(model)));
    }
    if events.is_empty() {
        return None;
    }
    events.sort_by_key(|&(instant, rank, process, _)| (instant, rank, process));
    let actions = events.into_iter().map(|(_, _, process, action)| (process, action)).collect();
    Some(WGLChecker::<RegisterSpec>::is_linearizable(History::from_actions(actions)))
}

#[test]
fn agrees_with_todc_utils_on_small_histories() {
    let budget = CheckBudget { time: Duration::from_secs(10), states_max: 100_000 };
    let mut rng = Rng::new(0x0DC);
    let (mut linearizable, mut not_linearizable) = (0, 0);
    for _ in 0..HISTORIES {
        let history = random_history(&mut rng);
        let ours = match check(&history, budget) {
            Verdict::Linearizable => true,
            Verdict::NotLinearizable(_) => false,
            Verdict::Unknown { reason } => panic!("undecided ({reason}) on {history:#?}"),
        };
        let theirs = todc_linearizable(&history).unwrap_or(true);
        assert_eq!(ours, theirs, "keel says linearizable = {ours}, todc-utils {theirs}, on {history:#?}");
        if ours {
            linearizable += 1;
        } else {
            not_linearizable += 1;
        }
    }
    // The comparison only means something if both verdicts are common.
    assert!(linearizable > HISTORIES / 10, "only {linearizable} linearizable histories");
    assert!(not_linearizable > HISTORIES / 10, "only {not_linearizable} non-linearizable histories");
}
