//! Tests of `keel_jepsen::check`: hand-written cases, simulated histories (valid and
//! mutated), an oracle against `todc-utils`, and one large history.

mod cases;
mod large;
mod oracle;
mod properties;
mod simulate;
