#![no_main]
//! libFuzzer target `raft_watermark`: see `keel_node::fuzz::TARGETS`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| keel_node::fuzz::run("raft_watermark", data));
