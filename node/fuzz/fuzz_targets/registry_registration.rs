#![no_main]
//! libFuzzer target `registry_registration`: see `keel_node::fuzz::TARGETS`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| keel_node::fuzz::run("registry_registration", data));
