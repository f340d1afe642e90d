//! Acceptance item 2 of issue 3: faults. kill -9 mid-backup, graceful shutdown,
//! a flipped byte in the repository, every codec, delete rules and garbage
//! collection, and rebuilding a deleted catalog with `recover`.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Fill, Model, Server, file_hash, s};

const SIZE: u64 = 128 << 20;

fn packs(data_dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for sub in std::fs::read_dir(data_dir.join("repository/packs"))
        .unwrap()
        .flatten()
    {
        for f in std::fs::read_dir(sub.path()).unwrap().flatten() {
            out.push(f.path());
        }
    }
    out.sort();
    out
}

/// A slow backup to interrupt: 64 MiB of random data through bz2.
fn start_slow_backup(server: &Server, vol: &str, m: &mut Model) -> String {
    m.fill(4096, 16384, Fill::Random);
    let b = server.json1(&[
        "backup",
        "create",
        vol,
        "--incremental",
        "--compression",
        "bz2",
    ]);
    assert_eq!(b["status"], "creating");
    let id = s(&b["id"]);
    server.wait_backup(&id, Duration::from_secs(60), |b| {
        b["progress_done"].as_u64().unwrap_or(0) > 0 || b["status"] != "creating"
    });
    id
}

#[test]
fn kill_9_mid_backup_leaves_it_error_the_others_verify_and_the_next_backup_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data);
    let (vol, path) = server.create_volume("victim", SIZE);
    let mut m = Model::new(&path, SIZE, 0x5eed_0002);
    m.populate(60);
    let full = s(&server.backup(&vol, &[])["id"]);
    let gen0 = m.hash();

    let killed = start_slow_backup(&server, &vol, &mut m);
    assert_eq!(
        server.json1(&["backup", "show", &killed])["status"],
        "creating"
    );
    server.kill9();

    let server = Server::start(&data);
    let b = server.json1(&["backup", "show", &killed]);
    assert_eq!(b["status"], "error", "{b}");
    assert_eq!(b["error"], "interrupted");
    assert_eq!(server.json1(&["backup", "verify", &full])["ok"], true);
    let next = server.backup(&vol, &["--incremental"]);
    assert_eq!(next["parent"].as_str(), Some(full.as_str()));
    let next_id = s(&next["id"]);
    assert_eq!(server.json1(&["backup", "verify", &next_id])["ok"], true);
    let restored = server.restore(&next_id, None);
    assert_eq!(file_hash(Path::new(&s(&restored["path"]))), m.hash());
    let restored0 = server.restore(&full, None);
    assert_eq!(file_hash(Path::new(&s(&restored0["path"]))), gen0);
}

#[test]
fn graceful_shutdown_ends_a_running_backup_as_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data);
    let (vol, path) = server.create_volume("term", SIZE);
    let mut m = Model::new(&path, SIZE, 0x5eed_0003);
    m.populate(30);
    server.backup(&vol, &[]);
    let running = start_slow_backup(&server, &vol, &mut m);
    assert!(server.stop().success());
    let server = Server::start(&data);
    let b = server.json1(&["backup", "show", &running]);
    assert_eq!(
        (b["status"].as_str(), b["error"].as_str()),
        (Some("error"), Some("interrupted"))
    );
}

#[test]
fn a_flipped_byte_fails_verify_and_restore_naming_the_backup_and_the_object() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data);
    let (vol, path) = server.create_volume("flip", 16 << 20);
    let mut m = Model::new(&path, 16 << 20, 0x5eed_0004);
    m.fill(0, 256, Fill::Random);
    let id = s(&server.backup(&vol, &["--compression", "none"])["id"]);
    let pack = packs(&data).remove(0);
    let mut bytes = std::fs::read(&pack).unwrap();
    bytes[8 + 48 + 1000] ^= 0x01;
    std::fs::write(&pack, bytes).unwrap();
    let pack_id = pack.file_stem().unwrap().to_string_lossy().to_string();

    let err = server.fails(&["backup", "verify", &id], "DATA_LOSS");
    assert!(err.contains(&id) && err.contains(&pack_id), "{err}");

    let out = server.cli(&["backup", "restore", &id, "--wait"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains(&id) && err.contains(&pack_id), "{err}");
}

#[test]
fn every_codec_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let (vol, path) = server.create_volume("codecs", 32 << 20);
    let mut m = Model::new(&path, 32 << 20, 0x5eed_0005);
    m.populate(40);
    for codec in ["none", "zlib", "bz2", "zstd"] {
        let b = m.random_start(8);
        m.fill(b, 8, Fill::Text);
        let b = server.backup(&vol, &["--compression", codec]);
        assert_eq!(b["compression"], codec);
        let id = s(&b["id"]);
        assert_eq!(server.json1(&["backup", "verify", &id])["ok"], true);
        let v = server.restore(&id, None);
        assert_eq!(file_hash(Path::new(&s(&v["path"]))), m.hash(), "{codec}");
    }
}

#[test]
fn delete_of_a_parent_is_refused_and_garbage_collection_removes_unreferenced_packs() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data);
    let (vol, path) = server.create_volume("del", SIZE);
    let mut m = Model::new(&path, SIZE, 0x5eed_0006);
    m.populate(40);
    let full = s(&server.backup(&vol, &[])["id"]);
    m.fill(7, 3, Fill::Random);
    let inc = s(&server.backup(&vol, &["--incremental"])["id"]);
    let err = server.fails(&["backup", "delete", &full], "FAILED_PRECONDITION");
    assert!(err.contains(&inc), "{err}");
    assert_eq!(
        server.json1(&["backup", "show", &full])["status"],
        "available"
    );

    // delete --force cancels a running backup and removes what it wrote.
    let before = packs(&data);
    let running = start_slow_backup(&server, &vol, &mut m);
    server.json(&["backup", "delete", &running, "--force", "--wait"]);
    server.fails(&["backup", "show", &running], "NOT_FOUND");
    server.json(&["gc"]);
    assert_eq!(
        packs(&data),
        before,
        "the cancelled backup's packs are gone"
    );

    server.json(&["backup", "delete", &inc, "--wait"]);
    server.json(&["backup", "delete", &full, "--wait"]);
    server.json(&["gc"]);
    assert!(packs(&data).is_empty(), "no backup left, no pack left");
}

#[test]
fn a_deleted_catalog_is_rebuilt_by_recover_and_every_backup_then_restores() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data);
    let (vol, path) = server.create_volume("lost", 64 << 20);
    let mut m = Model::new(&path, 64 << 20, 0x5eed_0007);
    m.populate(80);
    let mut gens = Vec::new();
    for i in 0..3 {
        if i > 0 {
            let b = m.random_start(5);
            m.fill(b, 5, Fill::Text);
            let z = m.random_block();
            m.fill(z, 1, Fill::Zero);
        }
        let extra: &[&str] = if i == 0 { &[] } else { &["--incremental"] };
        let b = server.backup(&vol, extra);
        gens.push((s(&b["id"]), m.hash(), server.changed_blocks(&s(&b["id"]))));
    }
    assert!(server.stop().success());
    for f in ["catalog.sqlite", "catalog.sqlite-wal", "catalog.sqlite-shm"] {
        let _ = std::fs::remove_file(data.join(f));
    }

    let server = Server::start(&data);
    assert!(server.json(&["backup", "list"]).is_empty());
    let repo = data.join("repository");
    let r = server.json1(&["recover", "--repository", repo.to_str().unwrap()]);
    assert_eq!(r["backups_recovered"], 3);
    assert_eq!(r["volumes_recovered"], 1);
    assert_eq!(
        server.json1(&["volume", "show", "lost"])["id"].as_str(),
        Some(vol.as_str())
    );
    for (id, hash, changed) in &gens {
        let b = server.json1(&["backup", "show", id]);
        assert_eq!(b["status"], "available");
        assert_eq!(&server.changed_blocks(id), changed);
        let v = server.restore(id, None);
        assert_eq!(
            &file_hash(Path::new(&s(&v["path"]))),
            hash,
            "restore of {id} after recover"
        );
    }
    // The chain goes on where it was.
    let next = server.backup(&vol, &["--incremental"]);
    assert_eq!(next["parent"].as_str(), Some(gens[2].0.as_str()));
}
