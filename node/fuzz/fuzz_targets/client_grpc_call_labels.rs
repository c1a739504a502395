#![no_main]
//! libFuzzer target `client_grpc_call_labels`: see `keel_node::fuzz::TARGETS`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| keel_node::fuzz::run("client_grpc_call_labels", data));
