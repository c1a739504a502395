#![no_main]
//! libFuzzer target `store_record`: see `keel_node::fuzz::TARGETS`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| keel_node::fuzz::run("store_record", data));
