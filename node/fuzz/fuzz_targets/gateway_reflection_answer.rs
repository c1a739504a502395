#![no_main]
//! libFuzzer target `gateway_reflection_answer`: see `keel_node::fuzz::TARGETS`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| keel_node::fuzz::run("gateway_reflection_answer", data));
