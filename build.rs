//! Compiles proto/ with the protoc shipped inside `protoc-bin-vendored`, so a fresh
//! machine needs no system protoc to build or run `blockdelta serve`.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "proto/blockdelta/v1/volume.proto",
    "proto/blockdelta/v1/backup.proto",
    "proto/blockdelta/v1/identity.proto",
    "proto/csi/v1/snapshot_metadata.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("blockdelta_descriptor.bin"))
        .compile_with_config(config, PROTOS, &["proto"])?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
