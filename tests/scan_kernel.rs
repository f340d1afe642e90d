//! The changed-blocks issue in the Linux guest (shared/harness; 10.0.2.2 is this machine's
//! loopback), where a host attaches disks with the kernel's initiator:
//! - acceptance 1: `blockdelta scan /dev/sdX --list --json` and `--out` (SG_IO) give
//!   exactly the extents and bytes of the change set, at 512- and 4096-byte logical
//!   blocks and change block sizes 4 KiB and 1 MiB, the same as `scan iscsi://` on the
//!   host;
//! - acceptance 3, the kernel's part: a managed volume written through the kernel
//!   initiator gets a `dirty-bitmap` incremental that reads only the written blocks.
//!
//! The guest fetches this build's `blockdelta` (and the two libraries it needs beyond
//! the guest's) over HTTP from a one-shot server on the loopback, bounded in time.

mod common;
#[path = "../target-emulator/tests/guest/mod.rs"]
mod guest;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use guest::section;
use serde_json::Value;

const SIZE: u64 = 32 << 20;
const BLOCK: u64 = 4096;

/// A gzipped tar of `bin/blockdelta` (debug info stripped, when objcopy is there) and the
/// libraries it links that a minimal guest may lack.
fn guest_bundle(dir: &Path) -> Vec<u8> {
    let root = dir.join("bundle");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    let bin = root.join("bin/blockdelta");
    let stripped = Command::new("objcopy")
        .args(["--strip-debug", env!("CARGO_BIN_EXE_blockdelta")])
        .arg(&bin)
        .status()
        .is_ok_and(|s| s.success());
    if !stripped {
        std::fs::copy(env!("CARGO_BIN_EXE_blockdelta"), &bin).unwrap();
    }
    let ldd = Command::new("ldd")
        .arg(env!("CARGO_BIN_EXE_blockdelta"))
        .output()
        .unwrap();
    for lib in String::from_utf8_lossy(&ldd.stdout)
        .split_whitespace()
        .filter(|w| w.starts_with('/') && (w.contains("libgcc_s") || w.contains("libm.")))
    {
        let to = root.join(lib.trim_start_matches('/'));
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(lib, &to).unwrap();
    }
    let tgz = dir.join("bundle.tgz");
    let ok = Command::new("tar")
        .arg("czf")
        .arg(&tgz)
        .arg("-C")
        .arg(&root)
        .arg(".")
        .status()
        .unwrap();
    assert!(ok.success());
    std::fs::read(tgz).unwrap()
}

/// Serves `body` to every GET on a free loopback port, for at most `limit`; returns the
/// port. The thread ends by itself.
fn serve_once(body: Vec<u8>, limit: Duration) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let deadline = Instant::now() + limit;
        let mut served = 0;
        while Instant::now() < deadline && served < 4 {
            match listener.accept() {
                Ok((mut stream, _)) => {
                    served += 1;
                    stream.set_nonblocking(false).unwrap();
                    stream
                        .set_read_timeout(Some(Duration::from_secs(30)))
                        .unwrap();
                    let mut head = [0u8; 4096];
                    let _ = stream.read(&mut head);
                    let _ = write!(
                        stream,
                        "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nContent-Type: application/gzip\r\n\r\n",
                        body.len()
                    );
                    let _ = stream.write_all(&body);
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    });
    port
}

/// The JSON object on the first line of a guest section that holds one.
fn json_in(section: &str) -> Value {
    section
        .lines()
        .find_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
        .unwrap_or_else(|| panic!("no JSON in:\n{section}"))
}

#[test]
fn the_kernel_initiator_scans_delta_volumes_with_sg_io_and_writes_a_tracked_volume() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let (vol, path) = server.create_volume("scanned", SIZE);
    let mut m = Model::new(&path, SIZE, 0x6e57);
    m.populate(14);
    let full = s(&server.backup(&vol, &[])["id"]);
    m.populate(8);
    m.fill(m.blocks() - 1, 1, Fill::Random);
    let second = std::fs::read(&path).unwrap();
    let inc = s(&server.backup(&vol, &["--incremental"])["id"]);

    // Four delta volumes: change block 4 KiB and 1 MiB, each at 512- and 4096-byte blocks.
    let combos = [
        (4096u64, 512u64),
        (4096, 4096),
        (1 << 20, 512),
        (1 << 20, 4096),
    ];
    let mut deltas = Vec::new();
    for (change_block, lun_block) in combos {
        let id = s(&server.create_delta(
            &full,
            &inc,
            &["--change-block-size", &change_block.to_string()],
        )["id"]);
        let a = server.json1(&[
            "volume",
            "attach",
            &id,
            "--block-size",
            &lun_block.to_string(),
        ]);
        deltas.push((
            id,
            s(&a["target_iqn"]),
            change_block,
            lun_block,
            s(&a["portal"]),
        ));
    }
    // A managed volume the guest writes through the kernel.
    let (written, wpath) = server.create_volume("written", SIZE);
    let mut w = Model::new(&wpath, SIZE, 0x77);
    w.populate(6);
    s(&server.backup(&written, &[])["id"]);
    let before = std::fs::read(&wpath).unwrap();
    let wa = server.json1(&["volume", "attach", &written]);

    let port: u16 = server.iscsi.rsplit(':').next().unwrap().parse().unwrap();
    let http = serve_once(guest_bundle(dir.path()), Duration::from_secs(400));
    let mut script =
        format!("wget -q -O /tmp/bd.tgz http://10.0.2.2:{http}/bd.tgz\ntar xzf /tmp/bd.tgz -C /\n");
    let disks = ["sda", "sdb", "sdc", "sdd", "sde"];
    let targets: Vec<&str> = deltas
        .iter()
        .map(|d| d.1.as_str())
        .chain([wa["target_iqn"].as_str().unwrap()])
        .collect();
    for (disk, iqn) in disks.iter().zip(&targets) {
        script += &format!(
            "iscsistart -i iqn.2026-11.io.blockdelta:guest -t {iqn} -g 1 -a 10.0.2.2 -p {port}\n\
             for i in $(seq 1 20); do [ -b /dev/{disk} ] && break; sleep 1; done\n"
        );
    }
    for disk in &disks[..4] {
        script += &format!(
            "echo \"== list {disk}\"; blockdelta --json scan /dev/{disk} --list\n\
             blockdelta --json scan /dev/{disk} --out /tmp/{disk}.img > /tmp/{disk}.out\n\
             echo \"== image {disk}\"; sha256sum /tmp/{disk}.img; rm /tmp/{disk}.img\n"
        );
    }
    // Writes through the kernel: 4 KiB-aligned blocks, made durable (SYNCHRONIZE CACHE).
    let written_blocks: Vec<u64> = vec![3, 4, 5, 900, 4000, 7000];
    for b in &written_blocks {
        script += &format!(
            "dd if=/dev/urandom of=/dev/sde bs=4096 seek={b} count=1 conv=fsync 2>/dev/null\n"
        );
    }
    script += "sync\necho \"== end\"\n";
    let log = guest::run(env!("CARGO_MANIFEST_DIR"), &script, dir.path());

    for ((id, iqn, change_block, lun_block, portal), disk) in deltas.iter().zip(disks) {
        let listing = server.json1(&[
            "changed-blocks",
            &full,
            &inc,
            "--block-size",
            &change_block.to_string(),
        ]);
        let per = change_block / lun_block;
        let want: Vec<Value> = listing["extents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let (start, count) = (e[0].as_u64().unwrap() * per, e[1].as_u64().unwrap() * per);
                // The last change block is clipped to the medium.
                let end = (start + count).min(SIZE / lun_block);
                serde_json::json!([start, end - start])
            })
            .collect();
        let what = format!("{disk}: change block {change_block}, logical block {lun_block}");
        let listed = json_in(section(&log, &format!("== list {disk}")));
        assert_eq!(listed["block_size"], *lun_block, "{what}: {listed}");
        assert_eq!(listed["extents"], Value::Array(want.clone()), "{what}");
        // The same through the built-in initiator on this host.
        let url = format!("iscsi://{portal}/{iqn}/0");
        let host = server.json1(&["scan", &url, "--list"]);
        assert_eq!(host["extents"], listed["extents"], "{what}: host and guest");
        // The image: the second backup's bytes in the extents, zeros elsewhere.
        let mut expected = vec![0u8; SIZE as usize];
        for e in &want {
            let at = (e[0].as_u64().unwrap() * lun_block) as usize;
            let n = (e[1].as_u64().unwrap() * lun_block) as usize;
            expected[at..at + n].copy_from_slice(&second[at..at + n]);
        }
        let digest = file_sha256(&expected, dir.path());
        assert!(
            section(&log, &format!("== image {disk}")).contains(&digest),
            "{what}: scan --out image differs"
        );
        server.json1(&["volume", "detach", id]);
    }

    // The kernel's writes: tracked, so the incremental reads only them.
    server.json1(&["volume", "detach", &written]);
    let after = std::fs::read(&wpath).unwrap();
    let inc = server.backup(&written, &["--incremental"]);
    assert_eq!(inc["change_source"], "dirty-bitmap", "{inc}");
    assert_eq!(
        inc["read_bytes"],
        written_blocks.len() as u64 * BLOCK,
        "{inc}"
    );
    assert_eq!(
        server.changed_blocks(&s(&inc["id"])),
        diff_blocks(&before, &after)
    );
    assert_eq!(diff_blocks(&before, &after), written_blocks);
}

fn file_sha256(bytes: &[u8], dir: &Path) -> String {
    let f = dir.join("expected.bin");
    std::fs::write(&f, bytes).unwrap();
    let out = Command::new("sha256sum").arg(&f).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}
