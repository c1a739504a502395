//! Generated histories: a simulated linearizable register must always pass; the same
//! history with one provably stale read must always fail.

use std::time::Duration;

use keel_jepsen::{check, CheckBudget, Verdict};
use proptest::prelude::*;

use crate::simulate::{make_stale_read, simulate, Rng, Simulation};

const BUDGET: CheckBudget = CheckBudget { time: Duration::from_secs(30), states_max: 1_000_000 };

fn simulation() -> impl Strategy<Value = Simulation> {
    (1u64..=6, 1u64..=3, 0usize..=80, 0u64..=60, 0u64..=30, 0u64..=20, 0u64..=20).prop_map(
        |(processes, keys, operations, read_percent, cas_percent, indeterminate_percent, fail_percent)| Simulation {
            processes,
            keys,
            operations,
            read_percent,
            cas_percent,
            indeterminate_percent,
            fail_percent,
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn simulated_register_is_linearizable(seed in any::<u64>(), simulation in simulation()) {
        let history = simulate(seed, simulation);
        let verdict = check(&history, BUDGET);
        prop_assert_eq!(verdict, Verdict::Linearizable, "history: {:#?}", history);
    }

    #[test]
    fn provably_stale_read_is_not_linearizable(seed in any::<u64>(), simulation in simulation()) {
        let mut history = simulate(seed, simulation);
        let mutated = make_stale_read(&mut history, &mut Rng::new(seed ^ 0x5EED));
        prop_assume!(mutated, "no read can be made provably stale");
        let verdict = check(&history, BUDGET);
        prop_assert!(
            matches!(verdict, Verdict::NotLinearizable(_)),
            "verdict {:?} for history: {:#?}", verdict, history
        );
    }
}
