//! Acceptance item 4 of the delta-volume issue: the Linux kernel's initiator on a
//! delta volume. A small guest (shared/harness/guest-run.sh, QEMU; 10.0.2.2 is this
//! machine's loopback) logs in with CHAP to an attached delta volume and runs
//! Oracle's scan, `sg_get_lba_status -b -T -t 1 -s 2097152 -m 4096 -l 0`: the
//! changed extents come back as status 3 (mapped), the rest as 1 (deallocated).
//! `dd` of a changed extent gives the second backup's bytes; a write is refused.

mod common;
#[path = "../target-emulator/tests/guest/mod.rs"]
mod guest;

use std::process::Command;

use common::delta::*;
use common::*;
use guest::{brief_descriptors, section};

const SIZE: u64 = 256 << 20;

fn sha256(bytes: &[u8], dir: &std::path::Path) -> String {
    let f = dir.join("expected.bin");
    std::fs::write(&f, bytes).unwrap();
    let out = Command::new("sha256sum")
        .arg(&f)
        .output()
        .expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn kernel_initiator_scans_a_delta_volume_with_chap_and_reads_its_changes() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let mut m = SparseModel::create(&dir.path().join("vol.img"), SIZE, 31);
    for i in 0..40 {
        let b = (i * 1543) % m.tracking_blocks();
        m.fill(b, 4, i % 2 == 0);
    }
    let vol = server.json1(&[
        "volume",
        "register",
        "--name",
        "k",
        "--path",
        m.path.to_str().unwrap(),
    ]);
    let vol_id = s(&vol["id"]);
    let full = s(&server.backup(&vol_id, &[])["id"]);
    let before = m.blocks.clone();
    m.fill(100, 3, false);
    m.fill(30_000, 16, true);
    m.fill(45_000, 1, false);
    m.fill(m.tracking_blocks() - 1, 1, false);
    let inc = s(&server.backup(&vol_id, &["--incremental"])["id"]);
    let changed = diff(&before, &m.blocks);
    let expected = coarse_extents(&changed, 4096, SIZE);

    let delta = server.create_delta(&full, &inc, &[]);
    let id = s(&delta["id"]);
    let a = server.json1(&[
        "volume",
        "attach",
        &id,
        "--chap",
        "--initiator",
        "iqn.2026-11.io.blockdelta:guest",
    ]);
    let att = Attached::from_json(&a);
    let chap = att.chap.clone().expect("CHAP credentials");

    let guest = format!(
        r#"
iscsistart -i iqn.2026-11.io.blockdelta:guest -t {target} -g 1 -a 10.0.2.2 -p {port} -u {user} -w {secret}
for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15; do [ -b /dev/sda ] && break; sleep 1; done
echo "== gls32"; sg_get_lba_status -b -T -t 1 -s 2097152 -m 4096 -l 0 /dev/sda
echo "== gls16"; sg_get_lba_status -R -m 4096 /dev/sda
echo "== dd"; dd if=/dev/sda bs=4096 skip=30000 count=16 2>/dev/null | sha256sum
echo "== write"; if dd if=/dev/zero of=/dev/sda bs=4096 count=1 seek=100 oflag=direct 2>/dev/null; then echo WRITE-ACCEPTED; else echo WRITE-REFUSED; fi
echo "== end"
"#,
        target = att.target,
        port = att.portal.port(),
        user = chap.user,
        secret = chap.secret,
    );
    let log = guest::run(env!("CARGO_MANIFEST_DIR"), &guest, dir.path());

    // Oracle's sample shape: every extent from LBA 0 to the end, 3 mapped, 1 deallocated.
    let mut want = Vec::new();
    let mut at = 0;
    for &(off, len) in &expected {
        if off > at {
            want.push((at / 512, (off - at) / 512, 1u8));
        }
        want.push((off / 512, len / 512, 3u8));
        at = off + len;
    }
    if at < SIZE {
        want.push((at / 512, (SIZE - at) / 512, 1));
    }
    let gls32 = section(&log, "== gls32");
    assert!(gls32.contains("Completion condition=3"), "{gls32}");
    assert!(gls32.contains("RTP=1"), "{gls32}");
    assert_eq!(
        brief_descriptors(gls32),
        want,
        "sg_get_lba_status -T:\n{gls32}"
    );
    let gls16 = section(&log, "== gls16");
    assert_eq!(
        gls16.matches("deallocated").count(),
        want.iter().filter(|w| w.2 == 1).count(),
        "16-byte scan:\n{gls16}"
    );

    let bytes: Vec<u8> = (30_000..30_016).flat_map(|b| m.block(b)).collect();
    let dd = section(&log, "== dd");
    assert!(
        dd.contains(&sha256(&bytes, dir.path())),
        "dd of a changed extent:\n{dd}"
    );
    assert!(
        section(&log, "== write").contains("WRITE-REFUSED"),
        "a write was accepted"
    );
}
