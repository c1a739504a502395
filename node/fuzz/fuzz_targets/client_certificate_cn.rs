#![no_main]
//! libFuzzer target `client_certificate_cn`: see `keel_node::fuzz::TARGETS`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| keel_node::fuzz::run("client_certificate_cn", data));
