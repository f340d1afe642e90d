//! Acceptance 1 of the operator's-kit issue: a client written from CSI's proto drives
//! `csi.v1.Identity` and `csi.v1.SnapshotMetadata` over the unix socket exactly as the
//! Kubernetes sidecar does (tests/python/csi_sidecar.py), and gets the extents the gRPC
//! listing gives.

mod common;

use std::os::unix::fs::{FileExt, PermissionsExt};
use std::process::Command;
use std::time::Duration;

use common::delta::run_bounded;
use common::*;
use serde_json::Value;

/// A listing's extents as merged (byte offset, byte length) pairs.
fn byte_extents(listing: &Value) -> Vec<(u64, u64)> {
    let bs = listing["block_size"].as_u64().unwrap();
    let mut out: Vec<(u64, u64)> = Vec::new();
    for e in listing["extents"].as_array().unwrap() {
        let (start, count) = (e[0].as_u64().unwrap(), e[1].as_u64().unwrap());
        match out.last_mut() {
            Some(last) if last.0 + last.1 == start * bs => last.1 += count * bs,
            _ => out.push((start * bs, count * bs)),
        }
    }
    out
}

#[test]
fn the_sidecars_calls_over_the_unix_socket_give_the_grpc_listings_extents() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("csi.sock");
    let server = Server::start_with(
        &dir.path().join("data"),
        &["--csi-socket", socket.to_str().unwrap()],
    );
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode & 0o077, 0, "the socket is the owner's only: {mode:o}");
    let (vol, path) = server.create_volume("csi", 16 << 20);
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    for block in [0u64, 7, 8, 1000, 4095] {
        f.write_all_at(&[(block % 200) as u8 + 1; 4096], block * 4096)
            .unwrap();
    }
    let full = s(&server.backup(&vol, &[])["id"]);
    for block in [8u64, 9, 2000] {
        f.write_all_at(&[0xee; 4096], block * 4096).unwrap();
    }
    let inc = s(&server.backup(&vol, &["--incremental"])["id"]);
    let root = env!("CARGO_MANIFEST_DIR");
    let (ok, out, err) = run_bounded(
        Command::new("python3")
            .arg(format!("{root}/tests/python/csi_sidecar.py"))
            .arg("--socket")
            .arg(&socket)
            .args(["--proto", &format!("{root}/proto")])
            .arg("--work")
            .arg(dir.path())
            .args([
                "--token",
                &server.token(),
                "--base",
                &full,
                "--target",
                &inc,
            ]),
        Duration::from_secs(120),
    );
    assert!(ok, "csi_sidecar.py failed:\n{out}\n{err}");
    let got: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(got["plugin"], "csi.blockdelta.io");
    let pairs = |v: &Value| -> Vec<(u64, u64)> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|e| (e[0].as_u64().unwrap(), e[1].as_u64().unwrap()))
            .collect()
    };
    let changed = server.json1(&["changed-blocks", &full, &inc]);
    assert_eq!(pairs(&got["delta"]), byte_extents(&changed));
    assert_eq!(
        pairs(&got["delta"]),
        vec![(8 * 4096, 2 * 4096), (2000 * 4096, 4096)]
    );
    let allocated = server.json1(&["backup", "allocated-blocks", &inc]);
    assert_eq!(pairs(&got["allocated"]), byte_extents(&allocated));
    // The socket goes with the server.
    server.stop();
    assert!(!socket.exists(), "the CSI socket outlived the server");
}
