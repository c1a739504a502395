#![no_main]
//! libFuzzer target `client_micro_token`: see `keel_node::fuzz::TARGETS`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| keel_node::fuzz::run("client_micro_token", data));
