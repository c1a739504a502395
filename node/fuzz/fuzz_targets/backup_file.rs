#![no_main]
//! libFuzzer target `backup_file`: see `keel_node::fuzz::TARGETS`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| keel_node::fuzz::run("backup_file", data));
