#![no_main]
//! libFuzzer target `rocksdb_open_error`: see `keel_node::fuzz::TARGETS`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| keel_node::fuzz::run("rocksdb_open_error", data));
