//! Hand-written histories, one row each: what happened, and the verdict it deserves.

use std::time::Duration;

use keel_jepsen::{check, CheckBudget, OpKind, Operation, Outcome, Verdict, Violation};

const BUDGET: CheckBudget = CheckBudget { time: Duration::from_secs(10), states_max: 100_000 };

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Linearizable,
    /// `NotLinearizable` with `Violation::NoLinearization`.
    NoOrder,
    /// `NotLinearizable` with `Violation::ValueNeverWritten`.
    NeverWritten,
}

/// An `Ok` operation on key "x" by process 0, refined by the builder methods.
fn operation(call_ns: u64, return_ns: u64, kind: OpKind) -> Operation {
    Operation { process: 0, key: "x".to_string(), call_ns, return_ns: Some(return_ns), kind, outcome: Outcome::Ok }
}

fn write(call_ns: u64, return_ns: u64, value: &str) -> Operation {
    operation(call_ns, return_ns, OpKind::Write { value: value.to_string() })
}

fn read(call_ns: u64, return_ns: u64, value: Option<&str>) -> Operation {
    operation(call_ns, return_ns, OpKind::Read { value: value.map(str::to_string) })
}

fn cas(call_ns: u64, return_ns: u64, expected: &str, new: &str) -> Operation {
    operation(call_ns, return_ns, OpKind::Cas { expected: expected.to_string(), new: new.to_string() })
}

trait Refine {
    fn on(self, key: &str) -> Self;
    fn by(self, process: u64) -> Self;
    fn outcome(self, outcome: Outcome) -> Self;
    fn never_returns(self) -> Self;
}

impl Refine for Operation {
    fn on(mut self, key: &str) -> Self {
        self.key = key.to_string();
        self
    }
    fn by(mut self, process: u64) -> Self {
        self.process = process;
        self
    }
    fn outcome(mut self, outcome: Outcome) -> Self {
        self.outcome = outcome;
        self
    }
    fn never_returns(mut self) -> Self {
        self.return_ns = None;
        self
    }
}

fn check_case(name: &str, history: &[Operation], expect: Expect) {
    let verdict = check(history, BUDGET);
    let actual = match &verdict {
        Verdict::Linearizable => Expect::Linearizable,
        Verdict::NotLinearizable(counterexample) => match counterexample.violation {
            Violation::NoLinearization { .. } => Expect::NoOrder,
            Violation::ValueNeverWritten => Expect::NeverWritten,
        },
        Verdict::Unknown { reason } => panic!("{name}: undecided: {reason}"),
    };
    assert_eq!(actual, expect, "{name}: {verdict:?}");
}

#[test]
fn hand_written_histories() {
    use Expect::*;
    use Outcome::{Fail, Indeterminate};
    let cases: Vec<(&str, Vec<Operation>, Expect)> = vec![
        ("empty", vec![], Linearizable),
        (
            "sequential writes and reads",
            vec![write(0, 10, "a"), read(20, 30, Some("a")), write(40, 50, "b"), read(60, 70, Some("b"))],
            Linearizable,
        ),
        ("read of the initial absent value", vec![read(0, 10, None), write(20, 30, "a")], Linearizable),
        (
            "reads concurrent with a write see either value, then stick to the new one",
            vec![
                write(0, 100, "a"),
                read(10, 20, None).by(1),
                read(30, 40, Some("a")).by(1),
                read(110, 120, Some("a")).by(1),
            ],
            Linearizable,
        ),
        (
            "concurrent writes linearized in reverse call order",
            vec![
                write(0, 100, "1").by(1),
                write(1, 100, "2").by(2),
                write(2, 100, "3").by(3),
                read(10, 20, Some("3")),
                read(30, 40, Some("2")),
                read(50, 60, Some("1")),
            ],
            Linearizable,
        ),
        (
            "a call at the instant another returns is concurrent with it",
            vec![write(0, 10, "a"), read(10, 20, None).by(1)],
            Linearizable,
        ),
        (
            "stale read after a completed write",
            vec![write(0, 10, "a"), write(20, 30, "b"), read(40, 50, Some("a"))],
            NoOrder,
        ),
        (
            "sequentially consistent but not linearizable",
            vec![write(0, 100, "a"), read(10, 20, Some("a")).by(1), read(30, 40, None).by(2)],
            NoOrder,
        ),
        (
            "lost write: acknowledged, never visible, later reads see the older value",
            vec![
                write(0, 10, "a"),
                read(15, 18, Some("a")).by(1),
                write(20, 30, "b"),
                read(40, 50, Some("a")).by(1),
                read(60, 70, Some("a")).by(2),
            ],
            NoOrder,
        ),
        ("read of a value never written", vec![write(0, 10, "a"), read(20, 30, Some("zzz"))], NeverWritten),
        (
            "successful CAS seen by a later read",
            vec![write(0, 10, "a"), cas(20, 30, "a", "b"), read(40, 50, Some("b"))],
            Linearizable,
        ),
        (
            "CAS acknowledged although the register no longer held its expected value",
            vec![write(0, 10, "a"), write(20, 30, "b"), cas(40, 50, "a", "c"), read(60, 70, Some("c"))],
            NoOrder,
        ),
        (
            "successful CAS not seen by a later read",
            vec![write(0, 10, "a"), cas(20, 30, "a", "b"), read(40, 50, Some("a"))],
            NoOrder,
        ),
        (
            "CAS ordered before a concurrent write",
            vec![write(0, 10, "a"), write(20, 60, "b").by(1), cas(30, 40, "a", "c"), read(70, 80, Some("b"))],
            Linearizable,
        ),
        (
            "failed CAS did not take effect",
            vec![write(0, 10, "a"), cas(20, 30, "a", "b").outcome(Fail), read(40, 50, Some("a"))],
            Linearizable,
        ),
        (
            "indeterminate write that takes effect after the client gave up",
            vec![
                write(0, 10, "a"),
                write(20, 30, "b").outcome(Indeterminate),
                read(40, 50, Some("a")),
                read(60, 70, Some("b")),
            ],
            Linearizable,
        ),
        (
            "indeterminate write that never takes effect",
            vec![
                write(0, 10, "a"),
                write(20, 30, "b").outcome(Indeterminate).never_returns(),
                read(40, 50, Some("a")),
                read(60, 70, Some("a")),
            ],
            Linearizable,
        ),
        (
            "indeterminate write takes effect once: its value cannot flicker",
            vec![
                write(0, 10, "a"),
                write(20, 30, "b").outcome(Indeterminate),
                read(40, 50, Some("b")),
                read(60, 70, Some("a")),
            ],
            NoOrder,
        ),
        (
            "indeterminate CAS that takes effect",
            vec![write(0, 10, "a"), cas(20, 30, "a", "b").outcome(Indeterminate), read(40, 50, Some("b"))],
            Linearizable,
        ),
        (
            "indeterminate CAS whose expected value the register never held",
            vec![write(0, 10, "a"), cas(20, 30, "z", "b").outcome(Indeterminate), read(40, 50, Some("b"))],
            NoOrder,
        ),
        (
            "a failed write appears in a read",
            vec![write(0, 10, "a"), write(20, 30, "b").outcome(Fail), read(40, 50, Some("b"))],
            NeverWritten,
        ),
        (
            "an indeterminate read carries no information",
            vec![write(0, 10, "a"), read(20, 30, Some("zzz")).outcome(Indeterminate)],
            Linearizable,
        ),
        (
            "an acknowledged operation without a return time may take effect any time later",
            vec![write(0, 10, "a").never_returns(), read(20, 30, None).by(1), read(40, 50, Some("a")).by(1)],
            Linearizable,
        ),
        (
            "keys are independent registers",
            vec![write(0, 10, "a"), write(20, 30, "b").on("y"), read(40, 50, Some("a")), read(40, 50, None).on("z")],
            Linearizable,
        ),
    ];
    for (name, history, expect) in cases {
        check_case(name, &history, expect);
    }
}

#[test]
fn counterexample_names_the_key_and_marks_the_blocked_read() {
    let history = vec![
        write(0, 10, "a").on("y"),
        read(20, 30, Some("a")).on("y"),
        write(0, 10, "a"),
        write(20, 30, "b").by(1),
        read(25, 35, Some("b")).by(2),
        read(40, 50, Some("a")).by(3),
    ];
    let Verdict::NotLinearizable(counterexample) = check(&history, BUDGET) else {
        panic!("a read of \"a\" after \"b\" was read must fail");
    };
    assert_eq!(counterexample.key, "x");
    assert_eq!(counterexample.blocked, history[5]);
    assert_eq!(
        counterexample.violation,
        Violation::NoLinearization { linearized_ops: 3, ops: 4, register: Some("b".to_string()) }
    );
    let report = counterexample.to_string();
    assert!(report.starts_with("key \"x\": no linearization exists"), "{report}");
    assert!(report.contains("  > p3 [40, 50] read -> \"a\" ok"), "{report}");
    assert!(report.contains("    p1 [20, 30] write \"b\" ok"), "{report}");
    assert!(!report.contains("\"y\""), "{report}");
}

#[test]
fn budget_limits_give_unknown() {
    // Ten concurrent writes: the search needs more than one configuration.
    let history: Vec<Operation> = (0..10).map(|process| write(0, 100, &process.to_string()).by(process)).collect();
    let verdict = check(&history, CheckBudget { time: Duration::from_secs(10), states_max: 1 });
    assert!(matches!(&verdict, Verdict::Unknown { reason } if reason.contains("states_max")), "{verdict:?}");
}

#[test]
fn return_before_call_is_malformed() {
    let verdict = check(&[write(10, 5, "a")], BUDGET);
    assert!(matches!(&verdict, Verdict::Unknown { reason } if reason.contains("malformed")), "{verdict:?}");
}
