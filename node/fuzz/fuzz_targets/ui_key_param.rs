#![no_main]
//! libFuzzer target `ui_key_param`: see `keel_node::fuzz::TARGETS`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| keel_node::fuzz::run("ui_key_param", data));
