//! Acceptance item 3 of the delta-volume issue, and item 2 of the identity issue (a
//! member token runs the workflow; a reader token reads and is refused the rest): a Python client generated from
//! proto/ with grpcio-tools runs Oracle's workflow against a real server
//! (tests/python/workflow.py), and lists services and methods through gRPC
//! reflection as `grpcurl list` / `describe` do (grpcurl itself is not packaged
//! for Debian 12; Python's grpcio-reflection client asks the same service).

mod common;

use std::process::Command;
use std::time::Duration;

use common::delta::run_bounded;
use common::*;

#[test]
fn python_client_from_the_protos_runs_the_workflow_and_lists_by_reflection() {
    let ready = Command::new("python3")
        .args(["-c", "import grpc, grpc_tools, grpc_reflection"])
        .status()
        .expect("python3");
    assert!(
        ready.success(),
        "python3 needs grpcio, grpcio-tools and grpcio-reflection: run scripts/test once (it installs them)"
    );
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    server.json1(&["project", "create", "py"]);
    let token = |role: &str| {
        s(&server.json1(&["--project", "py", "token", "create", "--role", role])["token"])
    };
    let (member, reader) = (token("member"), token("reader"));
    let root = env!("CARGO_MANIFEST_DIR");
    let (ok, out, err) = run_bounded(
        Command::new("python3")
            .arg(format!("{root}/tests/python/workflow.py"))
            .args(["--server", server.url.trim_start_matches("http://")])
            .args(["--proto", &format!("{root}/proto")])
            .arg("--work")
            .arg(dir.path())
            .args(["--token", &member, "--reader-token", &reader]),
        Duration::from_secs(300),
    );
    println!("{out}");
    assert!(ok, "workflow.py failed:\n{out}\n{err}");
    assert!(out.contains("python client: ok"));
    assert!(
        out.contains("4 mutating calls refused with PERMISSION_DENIED"),
        "{out}"
    );
    for listed in [
        "blockdelta.v1.VolumeService",
        "csi.v1.SnapshotMetadata",
        "grpc.reflection.v1alpha.ServerReflection",
        "blockdelta.v1.VolumeService.CreateVolume",
    ] {
        assert!(
            out.lines().any(|l| l == listed),
            "{listed} not listed:\n{out}"
        );
    }
}
