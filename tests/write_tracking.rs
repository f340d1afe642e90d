//! Write-tracked incrementals (the changed-blocks issue, acceptance 3): a managed volume
//! attached writable and written through libiscsi (`qemu-io` on the `iscsi://` URL) gets
//! an incremental that reads only the written blocks (`change_source: dirty-bitmap`,
//! `read_bytes`), whose change bitmap is exactly the written blocks whose bytes differ.
//! A kill -9 between a write and the backup, before anything asked for durability, makes
//! the next incremental `full-compare` and still exact; after SYNCHRONIZE CACHE the
//! bitmap survives the kill. A write to the file behind the target's back is noticed.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::delta::run_bounded;
use common::*;

const SIZE: u64 = 16 << 20;
const BLOCK: u64 = 4096;

/// Runs qemu-io commands on an attached volume; `cache` "unsafe" sends no flush.
fn qemu_io(url: &str, cache: &str, commands: &[String]) {
    let mut cmd = Command::new("qemu-io");
    cmd.args(["-f", "raw", "-t", cache]);
    for c in commands {
        cmd.args(["-c", c]);
    }
    cmd.arg(url);
    let (ok, out, err) = run_bounded(&mut cmd, Duration::from_secs(60));
    assert!(
        ok && !out.to_lowercase().contains("error"),
        "qemu-io {commands:?}: {out} {err}"
    );
}

fn attach(server: &Server, volume: &str) -> String {
    let a = server.json1(&["volume", "attach", volume]);
    format!("iscsi://{}/{}/0", s(&a["portal"]), s(&a["target_iqn"]))
}

/// A volume with data, and its full backup.
fn volume_with_full(server: &Server, seed: u64) -> (String, Model) {
    let (vol, path) = server.create_volume("tracked", SIZE);
    let mut m = Model::new(&path, SIZE, seed);
    m.populate(12);
    // A block of one repeated byte, which a host then rewrites with the same bytes.
    m.write(7, &[0x33; BLOCK as usize]);
    // Blocks with data that a host then discards and zeroes.
    m.fill(150, 1, Fill::Random);
    m.fill(3500, 1, Fill::Random);
    let full = server.backup(&vol, &[]);
    assert_eq!(full["change_source"], "full-compare", "{full}");
    (vol, m)
}

/// What the file holds now.
fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

/// The incremental restores to exactly the volume's bytes.
fn assert_restores_exactly(server: &Server, backup: &str, volume_path: &Path) {
    let v = server.restore(backup, None);
    assert!(
        read(Path::new(&s(&v["path"]))) == read(volume_path),
        "restore of {backup} differs from the volume"
    );
}

#[test]
fn writes_through_the_target_make_an_incremental_that_reads_only_them() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let (vol, m) = volume_with_full(&server, 11);
    let before = read(&m.path);
    let url = attach(&server, &vol);
    // 4 KiB writes, a 1 MiB write, one 512-byte write inside a block, a rewrite with the
    // same bytes, a discard (UNMAP) of a block with data and a write of zeros.
    let (discarded, zeroed) = (150, 3500);
    let commands = vec![
        format!("write -P 0x5a {} 4096", 10 * BLOCK),
        format!("write -P 0x5b {} 4096", 2000 * BLOCK),
        format!("write -P 0x5c {} 1048576", 1024 * BLOCK),
        format!("write -P 0x5d {} 512", 300 * BLOCK + 1024),
        format!("write -P 0x33 {} 4096", 7 * BLOCK),
        format!("discard {} 4096", discarded * BLOCK),
        format!("write -z {} 4096", zeroed * BLOCK),
    ];
    qemu_io(&url, "writeback", &commands);
    server.json1(&["volume", "detach", &vol]);
    let after = read(&m.path);
    let written: BTreeSet<u64> = [10, 2000, 300, 7, discarded, zeroed]
        .into_iter()
        .chain(1024..1024 + 256)
        .collect();

    let inc = server.backup(&vol, &["--incremental", "--force"]);
    assert_eq!(inc["change_source"], "dirty-bitmap", "{inc}");
    assert_eq!(
        inc["read_bytes"],
        written.len() as u64 * BLOCK,
        "it reads only the written blocks: {inc}"
    );
    let truth = diff_blocks(&before, &after);
    assert!(!truth.contains(&7), "the same bytes again are no change");
    assert!(truth.contains(&discarded) && truth.contains(&zeroed));
    assert!(truth.iter().all(|b| written.contains(b)));
    let inc_id = s(&inc["id"]);
    assert_eq!(server.changed_blocks(&inc_id), truth);
    assert_restores_exactly(&server, &inc_id, &m.path);

    // A write behind the target's back: the next incremental compares everything, and
    // finds it.
    let mut m = m;
    std::thread::sleep(Duration::from_millis(20));
    m.fill(3900, 3, Fill::Random);
    let inc2 = server.backup(&vol, &["--incremental"]);
    assert_eq!(inc2["change_source"], "full-compare", "{inc2}");
    assert_eq!(
        server.changed_blocks(&s(&inc2["id"])),
        vec![3900, 3901, 3902]
    );
    // With nothing written since, tracking vouches again: nothing to read.
    let inc3 = server.backup(&vol, &["--incremental"]);
    assert_eq!(inc3["change_source"], "dirty-bitmap", "{inc3}");
    assert_eq!(inc3["read_bytes"], 0, "{inc3}");
    assert_eq!(inc3["changed_blocks"], 0, "{inc3}");
    let shown = server.json1(&["backup", "show", &s(&inc["id"])]);
    assert_eq!(shown["change_source"], "dirty-bitmap");
}

/// kill -9 right after a write that nobody flushed: the bitmap file is left in use, so
/// the incremental after the restart compares every block, and is exact.
#[test]
fn a_kill_between_a_write_and_the_backup_makes_a_full_compare_that_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // A window far longer than the test: only a flush could make the bitmap durable.
    let long = ["--write-tracking-window-ms", "600000"];
    let server = Server::start_with(&data, &long);
    let (vol, m) = volume_with_full(&server, 12);
    let url = attach(&server, &vol);
    qemu_io(
        &url,
        "unsafe",
        &[
            format!("write -P 0x71 {} 8192", 40 * BLOCK),
            format!("write -P 0x72 {} 4096", 3000 * BLOCK),
        ],
    );
    server.kill9();
    let server = Server::start_with(&data, &long);
    let inc = server.backup(&vol, &["--incremental", "--force"]);
    assert_eq!(inc["change_source"], "full-compare", "{inc}");
    let changed = server.changed_blocks(&s(&inc["id"]));
    assert_eq!(changed, vec![40, 41, 3000]);
    assert_restores_exactly(&server, &s(&inc["id"]), &m.path);
    server.json1(&["volume", "detach", &vol]);
}

/// SYNCHRONIZE CACHE (qemu-io flushes before it exits) makes the bitmap durable before it
/// completes: a kill -9 after it loses nothing, and the next incremental still reads
/// only what was written.
#[test]
fn after_a_flush_the_bitmap_survives_a_kill() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let long = ["--write-tracking-window-ms", "600000"];
    let server = Server::start_with(&data, &long);
    let (vol, m) = volume_with_full(&server, 13);
    let url = attach(&server, &vol);
    qemu_io(
        &url,
        "writeback",
        &[
            format!("write -P 0x44 {} 4096", 123 * BLOCK),
            "flush".into(),
        ],
    );
    server.kill9();
    let server = Server::start_with(&data, &long);
    let inc = server.backup(&vol, &["--incremental", "--force"]);
    assert_eq!(inc["change_source"], "dirty-bitmap", "{inc}");
    assert_eq!(inc["read_bytes"], BLOCK, "{inc}");
    assert_eq!(server.changed_blocks(&s(&inc["id"])), vec![123]);
    assert_restores_exactly(&server, &s(&inc["id"]), &m.path);
    server.json1(&["volume", "detach", &vol]);
}
