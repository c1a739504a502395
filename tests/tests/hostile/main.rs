//! The hostile probe, replayed: every way an attacker or a careless operator crashed, froze,
//! emptied or split a member (issue 12), each as a regression test. One module per class of
//! attack; each test states the attack, then what must hold afterwards.

mod faults;
mod peer;
mod registry;
mod services;
mod transport;
