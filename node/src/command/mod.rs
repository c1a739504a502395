//! The replicated commands (`keel_model::command`: the types and their log encoding) and what
//! the node adds before proposing one: typed proposals (`typed`), the checks every command
//! passes (`validate`), and the prefixes reserved to native services (`reserved`).

pub use keel_model::command::*;

mod reserved;
mod typed;
mod validate;

// The model test applies only what the proposal gate lets through.
#[cfg(test)]
pub(crate) use reserved::check_reserved;
pub use reserved::{ReservedPrefix, RESERVED_PREFIXES};
pub use typed::{As, Proposal, Unanswered};
pub use validate::{validate, Origin};
