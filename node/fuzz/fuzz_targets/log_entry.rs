#![no_main]
//! libFuzzer target `log_entry`: see `keel_node::fuzz::TARGETS`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| keel_node::fuzz::run("log_entry", data));
