//! Compiles proto/*.proto with a protoc binary that comes from a crate, so the build needs no
//! protobuf compiler on the machine.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    std::env::set_var("PROTOC", protoc);
    println!("cargo:rerun-if-changed=../../proto/raftable.proto");
    tonic_prost_build::configure().compile_protos(&["../../proto/raftable.proto"], &["../../proto"])?;
    Ok(())
}
