//! Generates the peer (Raft) API and Keel's native API (`keel.v1`). It needs `protoc`, which etcd-client's own build needs too;
//! `scripts/setup` installs it.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    tonic_prost_build::configure().build_client(true).build_server(true).compile_protos(
        &[
            "proto/keel/peer.proto",
            "proto/keel/v1/registry.proto",
            "proto/keel/v1/store.proto",
            "proto/keel/v1/config.proto",
            "proto/keel/v1/events.proto",
            "proto/keel/v1/auth.proto",
        ],
        &["proto"],
    )?;
    // etcd's Auth service: its header is the etcd-client crate's, shared with the other etcd services.
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .extern_path(".etcdserverpb.ResponseHeader", "::etcd_client::proto::PbResponseHeader")
        .compile_protos(&["proto/etcd/auth.proto"], &["proto"])?;
    // etcd's Lock and Election services, on the same shared header and etcd-client's KeyValue.
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .extern_path(".etcdserverpb.ResponseHeader", "::etcd_client::proto::PbResponseHeader")
        .extern_path(".mvccpb.KeyValue", "::etcd_client::proto::PbKeyValue")
        .compile_protos(&["proto/etcd/v3lock.proto", "proto/etcd/v3election.proto"], &["proto"])?;
    // The example greeter, with its descriptors for gRPC server reflection.
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .file_descriptor_set_path(out_dir.join("greeter_descriptor.bin"))
        .compile_protos(&["proto/keel/examples/greeter.proto"], &["proto"])?;
    Ok(())
}
