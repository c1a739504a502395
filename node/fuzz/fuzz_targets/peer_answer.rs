#![no_main]
//! libFuzzer target `peer_answer`: see `keel_node::fuzz::TARGETS`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| keel_node::fuzz::run("peer_answer", data));
