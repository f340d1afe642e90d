//! Compiles proto/ with the protoc shipped inside `protoc-bin-vendored`, so a fresh
//! machine needs no system protoc to build or run `blockdelta serve`.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "proto/blockdelta/v1/volume.proto",
    "proto/blockdelta/v1/backup.proto",
    "proto/blockdelta/v1/identity.proto",
    "proto/blockdelta/v1/policy.proto",
    "proto/csi/v1/snapshot_metadata.proto",
    "proto/csi/v1/identity.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // google/protobuf/wrappers.proto (CSI's Probe answers a BoolValue), shipped with protoc.
    let well_known = protoc_bin_vendored::include_path()?;
    let well_known = well_known
        .to_str()
        .ok_or("protoc's include path is not UTF-8")?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("blockdelta_descriptor.bin"))
        .compile_with_config(config, PROTOS, &["proto", well_known])?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
