//! The size the harness produces: 10,000 operations over 10 keys from 10 processes.

use std::time::{Duration, Instant};

use keel_jepsen::{check, CheckBudget, Verdict};

use crate::simulate::{make_stale_read, simulate, Rng, Simulation};

/// Far more than these histories need: a verdict other than the expected one is a checker bug,
/// never a budget artefact.
const GENEROUS: CheckBudget = CheckBudget { time: Duration::from_secs(60), states_max: 10_000_000 };

/// One key's worth of the single-key histories below: 3,000 operations from 10 processes.
fn one_key_history(seed: u64) -> Vec<keel_jepsen::Operation> {
    simulate(
        seed,
        Simulation {
            processes: 10,
            keys: 1,
            operations: 3_000,
            read_percent: 50,
            cas_percent: 20,
            indeterminate_percent: 5,
            fail_percent: 3,
        },
    )
}

/// Checks `history` and reports (does not assert) how long it took: timing depends on the
/// machine and the build profile.
fn check_reporting_time(history: &[keel_jepsen::Operation], what: &str) -> Verdict {
    let started = Instant::now();
    let verdict = check(history, GENEROUS);
    eprintln!("checked {} operations{what} in {:?}", history.len(), started.elapsed());
    verdict
}

#[test]
fn ten_thousand_operations_over_ten_keys_are_linearizable() {
    let history = simulate(
        0x4B45_454C,
        Simulation {
            processes: 10,
            keys: 10,
            operations: 10_000,
            read_percent: 50,
            cas_percent: 20,
            indeterminate_percent: 3,
            fail_percent: 3,
        },
    );
    assert_eq!(check_reporting_time(&history, ""), Verdict::Linearizable);
}

#[test]
fn three_thousand_operations_on_one_key_are_linearizable() {
    let history = one_key_history(7);
    assert_eq!(check_reporting_time(&history, " on one key"), Verdict::Linearizable);
}

#[test]
fn one_stale_read_among_three_thousand_operations_on_one_key_is_found() {
    let mut history = one_key_history(11);
    assert!(make_stale_read(&mut history, &mut Rng::new(3)), "a 3,000-operation history has a stale-able read");
    let verdict = check(&history, GENEROUS);
    let Verdict::NotLinearizable(counterexample) = verdict else {
        panic!("the stale read must be found: {verdict:?}");
    };
    // The witness is a window, not the whole history.
    assert!(counterexample.window.len() < 40, "{counterexample}");
}
