//! Compiles `proto/estate/v1/*.proto` with protox (no system `protoc`) and generates the
//! tonic clients and servers, plus the file descriptor set that server reflection serves.

use std::{env, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Read at run time, not compile time: a build script compiled in another checkout that
    // shares the target directory must still find this checkout's files.
    let proto_root = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?).join("../proto");
    let files =
        ["estate/v1/bucket.proto", "estate/v1/agent.proto", "estate/v1/inventory.proto", "estate/v1/findings.proto"];
    for file in &files {
        println!("cargo:rerun-if-changed={}", proto_root.join(file).display());
    }
    let descriptors = protox::compile(files, [&proto_root])?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    std::fs::write(out_dir.join("estate_descriptor.bin"), prost::Message::encode_to_vec(&descriptors))?;
    tonic_prost_build::configure().compile_fds(descriptors)?;
    Ok(())
}
