//! Acceptance item 3 of issue 3: bad input gets a clear gRPC status and CLI
//! message, and changes nothing.

mod common;

use std::time::Duration;

use common::postgres::CatalogKind;
use common::{Fill, Model, garbage_file, s};

on_both_catalogs!(bad_input_gets_a_clear_status_and_changes_nothing);
fn bad_input_gets_a_clear_status_and_changes_nothing(catalog: CatalogKind) {
    let catalog = catalog.catalog();
    let dir = tempfile::tempdir().unwrap();
    let server = catalog.start(&dir.path().join("data"), &[], &[]);
    let (vol, path) = server.create_volume("good", 64 << 20);
    let mut m = Model::new(&path, 64 << 20, 0x5eed_0010);
    m.populate(30);

    // Wrong sizes.
    for size in ["0", "1000", "4097", "300T"] {
        let err = server.fails(
            &["volume", "create", "--name", "bad", "--size", size],
            "INVALID_ARGUMENT",
        );
        assert!(err.contains("4096") || err.contains("4 KiB"), "{err}");
    }
    let odd = dir.path().join("odd.img");
    std::fs::write(&odd, vec![1u8; 5000]).unwrap();
    server.fails(
        &[
            "volume",
            "register",
            "--name",
            "odd",
            "--path",
            odd.to_str().unwrap(),
        ],
        "INVALID_ARGUMENT",
    );
    server.fails(
        &[
            "volume",
            "register",
            "--name",
            "nope",
            "--path",
            dir.path().join("no/such/file").to_str().unwrap(),
        ],
        "INVALID_ARGUMENT",
    );
    // Outside the volume roots the answer is the same whether the path exists or not.
    server.fails(
        &[
            "volume",
            "register",
            "--name",
            "nope",
            "--path",
            "/no/such/file",
        ],
        "PERMISSION_DENIED",
    );
    server.fails(
        &["volume", "create", "--name", "good", "--size", "4096"],
        "FAILED_PRECONDITION",
    );
    server.fails(
        &["volume", "create", "--name", "bad name!", "--size", "4096"],
        "INVALID_ARGUMENT",
    );

    // Unknown and malformed ids.
    server.fails(&["volume", "show", "vol-0000000000000000"], "NOT_FOUND");
    server.fails(&["backup", "create", "no-such-volume"], "NOT_FOUND");
    server.fails(&["backup", "show", "bkp-0000000000000000"], "NOT_FOUND");
    server.fails(&["backup", "show", "not-an-id"], "INVALID_ARGUMENT");
    server.fails(&["backup", "restore", "bkp-0000000000000000"], "NOT_FOUND");
    server.fails(&["backup", "verify", "bkp-0000000000000000"], "NOT_FOUND");
    server.fails(&["backup", "delete", "bkp-0000000000000000"], "NOT_FOUND");
    server.fails(&["backup", "changed-blocks", "bkp-zz"], "INVALID_ARGUMENT");
    server.fails(
        &["backup", "create", &vol, "--compression", "lz4"],
        "INVALID_ARGUMENT",
    );

    // Incremental with no full.
    let err = server.fails(
        &["backup", "create", &vol, "--incremental"],
        "FAILED_PRECONDITION",
    );
    assert!(err.contains("full backup"), "{err}");
    assert!(
        server.json(&["backup", "list"]).is_empty(),
        "nothing was created"
    );

    // Restore onto a smaller volume.
    let full = s(&server.backup(&vol, &[])["id"]);
    let (small, small_path) = server.create_volume("small", 32 << 20);
    garbage_file(&small_path, 32 << 20, 5);
    let before = common::file_hash(&small_path);
    let err = server.fails(
        &["backup", "restore", &full, "--volume", &small],
        "INVALID_ARGUMENT",
    );
    assert!(err.contains("smaller"), "{err}");
    assert_eq!(
        common::file_hash(&small_path),
        before,
        "the smaller volume is untouched"
    );
    assert_eq!(
        server.json1(&["volume", "show", &small])["status"],
        "available"
    );

    // Concurrent backups of one volume: the second is refused while the first runs.
    m.fill(0, 16384, Fill::Random);
    let first = server.json1(&[
        "backup",
        "create",
        &vol,
        "--incremental",
        "--compression",
        "bz2",
    ]);
    let err = server.fails(
        &["backup", "create", &vol, "--incremental"],
        "FAILED_PRECONDITION",
    );
    assert!(err.contains("busy"), "{err}");
    // A restore onto the busy volume is refused too.
    server.fails(
        &["backup", "restore", &full, "--volume", &vol],
        "FAILED_PRECONDITION",
    );
    let done = server.wait_backup(&s(&first["id"]), Duration::from_secs(120), |b| {
        b["status"] != "creating"
    });
    assert_eq!(done["status"], "available");
    assert_eq!(
        server.json(&["backup", "list"]).len(),
        2,
        "only the full and the first incremental exist"
    );
    assert_eq!(server.json(&["volume", "list"]).len(), 2);

    // Deleting a busy or unknown volume.
    server.fails(&["volume", "delete", "vol-0000000000000000"], "NOT_FOUND");
}

#[test]
fn an_unreachable_server_is_a_clear_cli_error() {
    let out = std::process::Command::new(common::BIN)
        .args(["--server", "http://127.0.0.1:1", "volume", "list"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("UNAVAILABLE"));
}
