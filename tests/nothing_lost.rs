//! The faults issue, one test per numbered defect: what an adversarial run found, each
//! reproduced here against a real server, on real full disks (small tmpfs mounts) where the
//! defect needs one.

mod common;

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use rand::{RngCore, SeedableRng};

/// A sparse volume of `size` bytes with `data` bytes of incompressible data from offset 0.
fn random_volume(path: &Path, size: u64, data: u64, seed: u64) {
    let f = std::fs::File::create(path).unwrap();
    f.set_len(size).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut buf = vec![0u8; 4 << 20];
    let mut at = 0;
    while at < data {
        rng.fill_bytes(&mut buf);
        f.write_all_at(&buf[..(data - at).min(buf.len() as u64) as usize], at)
            .unwrap();
        at += buf.len() as u64;
    }
}

/// A volume of compressible text: stored small, restored large.
fn text_volume(path: &Path, size: u64, seed: u64) -> Model {
    let mut m = Model::new(path, size, seed);
    std::fs::File::create(path).unwrap().set_len(size).unwrap();
    m.fill(0, (size / 4096) as usize, Fill::Text);
    m
}

fn backup_state(server: &Server, id: &str) -> serde_json::Value {
    server.json1(&["backup", "show", id])
}

/// Everything the faults issue asks of a server after a failure: no job still running,
/// the server answering, gc answering, SIGTERM stopping it within 5 s.
fn assert_not_wedged(server: Server, volume: &str) {
    let v = server.json1(&["volume", "show", volume]);
    let out = server
        .cli_bounded(&["--json", "gc"], Duration::from_secs(30))
        .expect("gc answered");
    assert!(
        out.status.success(),
        "gc: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let backups = server.json(&["backup", "list"]);
    for b in &backups {
        assert!(
            b["status"] != "creating" && b["status"] != "restoring",
            "a job is still running: {b}"
        );
    }
    assert!(v["status"] != "restoring", "{v}");
    let took = server.stop_within(Duration::from_secs(5));
    println!("SIGTERM stopped the server in {took:?}");
}

/// Defect 1: a backup whose index went missing kept listing as available while startup
/// deleted its packs. Now it is `error` "index missing", its incremental too, no pack is
/// removed, and once the index is back both are available and verify.
#[test]
fn defect_1_startup_never_removes_packs_of_a_backup_whose_index_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data);
    let (vol, path) = server.create_volume("d1", 16 << 20);
    let mut m = Model::new(&path, 16 << 20, 1);
    m.fill(0, 1024, Fill::Random);
    let full = s(&server.backup(&vol, &[])["id"]);
    m.fill(10, 5, Fill::Text);
    let inc = s(&server.backup(&vol, &["--incremental"])["id"]);
    server.stop();

    let index = data.join(format!("repository/backups/{full}.index"));
    let aside = dir.path().join("full.index");
    std::fs::rename(&index, &aside).unwrap();
    let packs_before = count_packs(&data);
    let server = Server::start(&data);
    let f = backup_state(&server, &full);
    assert_eq!(f["status"], "error", "{f}");
    assert_eq!(f["error"], "index missing", "{f}");
    let i = backup_state(&server, &inc);
    assert_eq!(i["status"], "error", "{i}");
    assert!(s(&i["error"]).contains(&full), "{i}");
    assert_eq!(count_packs(&data), packs_before, "packs removed at start");
    server.json(&["gc"]);
    assert_eq!(count_packs(&data), packs_before, "packs removed by gc");
    server.stop();

    std::fs::rename(&aside, &index).unwrap();
    let server = Server::start(&data);
    for id in [&full, &inc] {
        assert_eq!(backup_state(&server, id)["status"], "available");
        let out = server.cli(&["backup", "verify", id]);
        assert!(
            out.status.success(),
            "verify {id}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn count_packs(data: &Path) -> usize {
    let mut n = 0;
    for sub in std::fs::read_dir(data.join("repository/packs"))
        .unwrap()
        .flatten()
    {
        n += std::fs::read_dir(sub.path())
            .map(|d| d.count())
            .unwrap_or(0);
    }
    n
}

/// Defect 2: on a full disk a backup stayed `creating` forever, its reader blocked on a
/// queue nobody read; the volume stayed busy, gc hung, SIGTERM did nothing. Now every
/// attempt ends in `error` naming the disk, and nothing is left wedged.
#[test]
fn defect_2_a_full_disk_fails_the_backup_and_wedges_nothing() {
    let disk = Tmpfs::mount(48);
    let dir = tempfile::tempdir().unwrap();
    let vol_path = dir.path().join("big.img");
    random_volume(&vol_path, 512 << 20, 160 << 20, 2);
    let server = Server::start(&disk.path.join("data"));
    let vol = server.register("big", &vol_path);
    for attempt in 0..3 {
        let out = server
            .cli_bounded(
                &["--json", "backup", "create", &vol, "--wait"],
                Duration::from_secs(120),
            )
            .unwrap_or_else(|| panic!("backup attempt {attempt} never returned"));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() || stdout.contains("\"error\""),
            "a backup on a full disk succeeded: {stdout}"
        );
        assert!(
            format!("{stdout}{stderr}").contains("No space left"),
            "attempt {attempt} does not name the full disk: {stdout} {stderr}"
        );
    }
    // The volume is free again: another job can claim it.
    let busy = server.cli(&["backup", "create", &vol]);
    assert!(
        !String::from_utf8_lossy(&busy.stderr).contains("busy"),
        "the volume stayed busy"
    );
    std::thread::sleep(Duration::from_millis(500));
    let _ = server.cli_bounded(&["backup", "list"], Duration::from_secs(60));
    wait_no_running(&server);
    assert_not_wedged(server, &vol);
}

fn wait_no_running(server: &Server) {
    for _ in 0..600 {
        let running = server
            .json(&["backup", "list"])
            .iter()
            .any(|b| b["status"] == "creating");
        if !running {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("a backup is still creating after 60 s");
}

/// Defect 3: a restore onto a managed volume that fills the disk logged its failure but
/// left the volume and the backup `restoring` (the catalog writes on the failure path
/// failed on the same full disk and were dropped). Now `--wait` returns, the volume is
/// `error` with the reason, the backup `available`, and the server is not wedged.
#[test]
fn defect_3_a_restore_that_fills_the_disk_ends_in_error() {
    let disk = Tmpfs::mount(40);
    let dir = tempfile::tempdir().unwrap();
    let vol_path = dir.path().join("text.img");
    text_volume(&vol_path, 96 << 20, 3);
    let server = Server::start(&disk.path.join("data"));
    let vol = server.register("text", &vol_path);
    let full = s(&server.backup(&vol, &[])["id"]);
    let out = server
        .cli_bounded(
            &["--json", "backup", "restore", &full, "--wait"],
            Duration::from_secs(120),
        )
        .expect("restore --wait never returned");
    let restored: serde_json::Value = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no volume record: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(restored["status"], "error", "{restored}");
    assert!(
        s(&restored["error"]).contains("No space left"),
        "{restored}"
    );
    assert_eq!(backup_state(&server, &full)["status"], "available");
    let id = s(&restored["id"]);
    assert_not_wedged(server, &id);
}

/// Defect 4: one flipped byte in an index stopped the server from starting, and one bad
/// volume manifest made `recover` recover nothing. Now the damaged backup (and the
/// incremental on it) is `error` naming the object, the server starts, the other volume's
/// backups still restore, and `recover` brings back the rest and says what it skipped.
#[test]
fn defect_4_a_damaged_index_or_manifest_is_confined_to_what_it_damages() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data);
    let (a, a_path) = server.create_volume("a", 8 << 20);
    let (b, b_path) = server.create_volume("b", 8 << 20);
    let mut ma = Model::new(&a_path, 8 << 20, 4);
    ma.fill(0, 200, Fill::Random);
    let mut mb = Model::new(&b_path, 8 << 20, 5);
    mb.fill(0, 300, Fill::Text);
    let a_full = s(&server.backup(&a, &[])["id"]);
    ma.fill(7, 2, Fill::Random);
    let a_inc = s(&server.backup(&a, &["--incremental"])["id"]);
    let b_full = s(&server.backup(&b, &[])["id"]);
    server.stop();

    flip_byte(
        &data.join(format!("repository/backups/{a_full}.index")),
        100,
    );
    let server = Server::start(&data);
    let f = backup_state(&server, &a_full);
    assert_eq!(f["status"], "error", "{f}");
    assert!(
        s(&f["error"]).contains(&format!("index {a_full}")),
        "the damaged object is named: {f}"
    );
    assert_eq!(backup_state(&server, &a_inc)["status"], "error");
    assert_eq!(backup_state(&server, &b_full)["status"], "available");
    let restored = server.restore(&b_full, None);
    assert_eq!(file_hash(Path::new(&s(&restored["path"]))), mb.hash());
    server.stop();

    // A fresh catalog: recover reads the repository alone, past a damaged manifest.
    std::fs::remove_file(data.join("catalog.sqlite")).unwrap();
    for side in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(data.join(format!("catalog.sqlite{side}")));
    }
    let manifest = data.join(format!("repository/volumes/{b}.json"));
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&manifest)
        .unwrap();
    f.write_all(b"}garbage").unwrap();
    let server = Server::start(&data);
    let out = server.cli(&["recover"]);
    assert!(
        out.status.success(),
        "recover: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        report.contains("skipped"),
        "recover lists what it skipped: {report}"
    );
    assert_eq!(backup_state(&server, &b_full)["status"], "available");
    assert_eq!(backup_state(&server, &a_inc)["status"], "error");
    let restored = server.restore(&b_full, None);
    assert_eq!(file_hash(Path::new(&s(&restored["path"]))), mb.hash());
}

fn flip_byte(path: &PathBuf, at: u64) {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).unwrap();
    b[0] ^= 0x55;
    f.write_all_at(&b, at).unwrap();
}

/// Defect 6, the smaller ones, each as the adversarial run found it.
#[test]
fn defect_6_small_ones_each_get_a_clear_answer() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data);

    // A closed pipe ends the CLI quietly, not with a panic.
    for i in 0..3 {
        server.create_volume(&format!("p{i}"), 1 << 20);
    }
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{BIN} --server {} --json volume list | head -1 >/dev/null; echo \"${{PIPESTATUS:-}}\"",
            server.url
        ))
        .env("BLOCKDELTA_TOKEN", server.token())
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("panicked"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A registered file removed before a backup: FAILED_PRECONDITION naming the path.
    let path = dir.path().join("gone.img");
    std::fs::File::create(&path)
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    let p = path.to_str().unwrap();
    let vol = s(&server.json1(&["volume", "register", "--name", "gone", "--path", p])["id"]);
    // One file, one volume: the same path again (or through a symlink) is refused.
    let link = dir.path().join("link.img");
    std::os::unix::fs::symlink(&path, &link).unwrap();
    for again in [p, link.to_str().unwrap()] {
        let e = server.fails(
            &["volume", "register", "--name", "again", "--path", again],
            "FAILED_PRECONDITION",
        );
        assert!(e.contains(&vol), "{e}");
    }
    std::fs::remove_file(&path).unwrap();
    let e = server.fails(&["backup", "create", &vol], "FAILED_PRECONDITION");
    assert!(e.contains(p), "{e}");

    // A negative performance level is refused, not taken.
    let (src, src_path) = server.create_volume("src", 1 << 20);
    Model::new(&src_path, 1 << 20, 13).fill(0, 4, Fill::Random);
    let f = s(&server.backup(&src, &[])["id"]);
    Model::new(&src_path, 1 << 20, 14).fill(1, 1, Fill::Random);
    let i = s(&server.backup(&src, &["--incremental"])["id"]);
    server.fails(
        &[
            "volume",
            "create",
            "--from-delta",
            "--first-backup",
            &f,
            "--second-backup",
            &i,
            "--vpus-per-gb",
            "-1",
        ],
        "INVALID_ARGUMENT",
    );

    // A ~100 KB id is an INVALID_ARGUMENT, with a message of bounded size.
    let huge = "v".repeat(100_000);
    let e = server.fails(&["volume", "show", &huge], "INVALID_ARGUMENT");
    assert!(e.len() < 4096, "{} bytes", e.len());
    let e = server.fails(
        &["backup", "show", &format!("bkp-{huge}")],
        "INVALID_ARGUMENT",
    );
    assert!(e.len() < 4096, "{} bytes", e.len());

    // Files under the data dir are the owner's only, whatever the umask.
    let (_, vol_path) = server.create_volume("private", 1 << 20);
    for (p, want) in [
        (data.join("catalog.sqlite"), 0o600),
        (vol_path.clone(), 0o600),
        (data.join("repository"), 0o700),
        (data.join("volumes"), 0o700),
    ] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, want, "{} is {mode:o}", p.display());
    }
    server.stop();

    // A missing config file: one clear message, printed once, and no data dir made.
    let fresh = dir.path().join("never");
    let out = Command::new(BIN)
        .args([
            "serve",
            "--config",
            "/nonexistent/blockdelta.toml",
            "--data-dir",
        ])
        .arg(&fresh)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(err.matches("No such file").count(), 1, "{err}");
    assert!(!fresh.exists(), "a failed start left {}", fresh.display());
    // Nor does a start whose iSCSI port is taken.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--grpc-listen", "127.0.0.1:0", "--iscsi-listen"])
        .arg(taken.local_addr().unwrap().to_string())
        .arg("--data-dir")
        .arg(&fresh)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("iSCSI"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!fresh.exists(), "a failed start left {}", fresh.display());
}

/// gc answers at once while a backup runs, naming it, instead of blocking behind it.
#[test]
fn defect_6_gc_answers_while_a_backup_runs() {
    let dir = tempfile::tempdir().unwrap();
    let vol_path = dir.path().join("big.img");
    random_volume(&vol_path, 1 << 30, 600 << 20, 7);
    let server = Server::start(&dir.path().join("data"));
    let vol = server.register("big", &vol_path);
    let b = s(&server.json1(&["backup", "create", &vol])["id"]);
    // Progress counts the data to read (600 MiB), not the volume's 1 GiB.
    let running = backup_state(&server, &b);
    if running["status"] == "creating" && running["progress_total"].as_u64() > Some(0) {
        let total = running["progress_total"].as_u64().unwrap();
        assert!(
            (600 << 20..=601 << 20).contains(&total),
            "progress counts {total} bytes: {running}"
        );
    }
    let out = server
        .cli_bounded(&["gc"], Duration::from_secs(5))
        .expect("gc blocked behind a running backup");
    let state = backup_state(&server, &b);
    if state["status"] == "creating" {
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("FAILED_PRECONDITION") && err.contains(&b),
            "{err}"
        );
    }
    wait_no_running(&server);
}

/// Defect 5: recover brought back a deleted volume, dropped delta volumes and their
/// attachments, and lost the audit history. Deleted now means deleted (a tombstone in the
/// repository); delta volume definitions, attachments and the audit log are in the
/// repository too, and come back.
#[test]
fn defect_5_recover_keeps_deletions_delta_volumes_attachments_and_history() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data);
    let (gone, gone_path) = server.create_volume("gone", 4 << 20);
    Model::new(&gone_path, 4 << 20, 11).fill(0, 10, Fill::Random);
    let gone_backup = s(&server.backup(&gone, &[])["id"]);
    server.json(&["volume", "delete", &gone]);

    let (vol, path) = server.create_volume("kept", 4 << 20);
    let mut m = Model::new(&path, 4 << 20, 12);
    m.fill(0, 100, Fill::Random);
    let full = s(&server.backup(&vol, &[])["id"]);
    m.fill(5, 3, Fill::Text);
    let inc = s(&server.backup(&vol, &["--incremental"])["id"]);
    let delta = server.create_delta(&full, &inc, &[]);
    let delta_id = s(&delta["id"]);
    let attached = server.json1(&["volume", "attach", &delta_id, "--chap"]);
    let audit_before = server.cli(&["audit"]).stdout.len();
    server.stop();

    for f in ["catalog.sqlite", "catalog.sqlite-wal", "catalog.sqlite-shm"] {
        let _ = std::fs::remove_file(data.join(f));
    }
    let server = Server::start(&data);
    let out = server.cli(&["recover"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = String::from_utf8_lossy(&out.stdout);

    let names: Vec<String> = server
        .json(&["volume", "list"])
        .iter()
        .map(|v| s(&v["id"]))
        .collect();
    assert!(
        !names.contains(&gone),
        "a deleted volume came back: {report}"
    );
    assert_eq!(backup_state(&server, &gone_backup)["status"], "available");
    let d = server.json1(&["volume", "show", &delta_id]);
    assert_eq!(d["source_details"]["first_backup_id"], full.as_str(), "{d}");
    assert_eq!(d["source_details"]["second_backup_id"], inc.as_str(), "{d}");
    assert_eq!(
        d["attachment"]["target_iqn"], attached["target_iqn"],
        "the attachment came back: {d}"
    );
    assert_eq!(d["status"], "in-use", "{d}");
    let audit_after = String::from_utf8_lossy(&server.cli(&["audit"]).stdout).to_string();
    assert!(
        audit_after.len() >= audit_before,
        "audit history lost: {} bytes before, {} after",
        audit_before,
        audit_after.len()
    );
    assert!(audit_after.contains("volume.delete") && audit_after.contains("volume.attach"));
}
