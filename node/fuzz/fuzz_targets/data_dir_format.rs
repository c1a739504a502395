#![no_main]
//! libFuzzer target `data_dir_format`: see `keel_node::fuzz::TARGETS`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| keel_node::fuzz::run("data_dir_format", data));
