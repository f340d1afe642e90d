//! Acceptance 2 of the operator's-kit issue: the Python package in clients/python installs
//! into a fresh venv (its stubs generated from proto/ as it builds) and its tests pass
//! against a real server.

mod common;

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::delta::run_bounded;
use common::*;
use serde_json::Value;

fn byte_extents(listing: &Value) -> String {
    let bs = listing["block_size"].as_u64().unwrap();
    let size = listing["volume_size"].as_u64().unwrap();
    let pairs: Vec<[u64; 2]> = listing["extents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let (start, count) = (e[0].as_u64().unwrap(), e[1].as_u64().unwrap());
            [start * bs, ((start + count) * bs).min(size) - start * bs]
        })
        .collect();
    serde_json::to_string(&pairs).unwrap()
}

#[test]
fn the_python_package_installs_into_a_fresh_venv_and_its_tests_pass() {
    let dir = tempfile::tempdir().unwrap();
    let root = env!("CARGO_MANIFEST_DIR");
    // A clean venv: the package and its dependencies from the index, its stubs generated
    // by the build from the tree's protos.
    let venv = dir.path().join("venv");
    let ok = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .unwrap();
    assert!(ok.success(), "python3 -m venv");
    let py = venv.join("bin/python3");
    let (ok, out, err) = run_bounded(
        Command::new(&py)
            .args(["-m", "pip", "install", "-q", "--disable-pip-version-check"])
            .arg(Path::new(root).join("clients/python")),
        Duration::from_secs(300),
    );
    assert!(ok, "pip install clients/python:\n{out}\n{err}");

    let server = Server::start(&dir.path().join("data"));
    server.json1(&["project", "create", "py"]);
    let token = |role: &str| {
        s(&server.json1(&["--project", "py", "token", "create", "--role", role])["token"])
    };
    let (member, reader) = (token("member"), token("reader"));
    let as_py = |args: &[&str]| server.json1(&[&["--project", "py"][..], args].concat());
    let v = as_py(&["volume", "create", "--name", "pkg", "--size", "8M"]);
    let (vol, path) = (s(&v["id"]), s(&v["path"]));
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    for b in [0u64, 1, 100, 2047] {
        f.write_all_at(&[(b % 200) as u8 + 3; 4096], b * 4096)
            .unwrap();
    }
    let first = s(&as_py(&["backup", "create", &vol, "--wait"])["id"]);
    for b in [1u64, 2, 3, 500, 2047] {
        f.write_all_at(&[0x5a; 4096], b * 4096).unwrap();
    }
    let second = s(&as_py(&["backup", "create", &vol, "--incremental", "--wait"])["id"]);
    let changed = byte_extents(&server.json1(&["changed-blocks", &first, &second]));
    let allocated = byte_extents(&server.json1(&["backup", "allocated-blocks", &second]));

    let (ok, out, err) = run_bounded(
        Command::new(&py)
            .args(["-m", "unittest", "discover", "-v", "-s"])
            .arg(Path::new(root).join("clients/python/tests"))
            // Not the source tree's package: the one installed into the venv.
            .current_dir(dir.path())
            .env(
                "BLOCKDELTA_SERVER",
                server.url.trim_start_matches("http://"),
            )
            .env("BD_MEMBER_TOKEN", &member)
            .env("BD_READER_TOKEN", &reader)
            .env("BD_FIRST", &first)
            .env("BD_SECOND", &second)
            .env("BD_CHANGED", &changed)
            .env("BD_ALLOCATED", &allocated),
        Duration::from_secs(300),
    );
    println!("{out}\n{err}");
    assert!(ok, "the package's tests failed");
    assert!(err.contains("OK"), "{err}");
}
