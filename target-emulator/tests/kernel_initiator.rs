//! Acceptance item 4 of the target-emulator issue: the Linux kernel's iSCSI initiator.
//!
//! Boots a small Linux guest with `shared/harness/guest-run.sh` (QEMU, ~12 s; 10.0.2.2 in the
//! guest is this machine's 127.0.0.1), logs in with `iscsistart` to a read-only export and to a
//! writable one with CHAP, and runs `sg_readcap -l`, `sg_get_lba_status` in its 16-byte and
//! 32-byte (Extended-CDB AHS) forms, and `dd`. The guest's output must match the files.

mod common;
mod guest;

use common::*;
use guest::{brief_descriptors, section};
use std::process::Command;
use std::time::Duration;

const SIZE: u64 = 256 << 20;

fn sha256_of(path: &std::path::Path, offset: u64, len: u64) -> String {
    let (ok, out, err) = run_with_timeout(
        Command::new("sh").arg("-c").arg(format!(
            "dd if='{}' bs=4096 skip={} count={} 2>/dev/null | sha256sum",
            path.display(),
            offset / 4096,
            len / 4096
        )),
        Duration::from_secs(30),
    );
    assert!(ok, "{err}");
    out.split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Lines of the default (non-brief) output: `[n] LBA: 0x.. blocks: N status-text`.
fn full_descriptors(section: &str) -> Vec<(u64, u64, bool)> {
    section
        .lines()
        .filter_map(|l| {
            let at = l.find("LBA: 0x")?;
            let rest = &l[at + 7..];
            let mut w = rest.split_whitespace();
            let lba = u64::from_str_radix(w.next()?, 16).ok()?;
            let _ = w.next()?; // "blocks:"
            let blocks = w.next()?.parse().ok()?;
            Some((lba, blocks, rest.contains("deallocated")))
        })
        .collect()
}

#[test]
fn kernel_initiator_scans_and_reads_read_only_and_writable_exports() {
    require_tool("qemu-system-x86_64", "qemu-system-x86");
    let dir = tempfile::tempdir().unwrap();
    let extents = standard_extents(SIZE);
    let ro_file = sparse_image(dir.path(), "ro.img", SIZE, &extents, 21);
    let rw_file = sparse_image(dir.path(), "rw.img", SIZE, &extents, 22);
    let ro = Emulator::start(&ro_file, &["--read-only"]);
    let rw = Emulator::start(
        &rw_file,
        &["--chap-user", "guest", "--chap-secret", "guest-secret-123"],
    );

    // One boot serves both exports; the kernel names them sda then sdb in login order.
    let guest = format!(
        r#"
wait_disk() {{ for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15; do [ -b $1 ] && return 0; sleep 1; done; return 1; }}
iscsistart -i iqn.2026-11.io.blockdelta:guest -t {ro_iqn} -g 1 -a 10.0.2.2 -p {ro_port}
wait_disk /dev/sda
echo "== readcap ro"; sg_readcap -R -l /dev/sda
echo "== gls16 ro"; sg_get_lba_status -R -m 1024 /dev/sda
echo "== gls32 ro"; sg_get_lba_status -R -T -t 1 -s 2097152 -m 4096 -b /dev/sda
echo "== dd ro"; dd if=/dev/sda bs=1M count=4 skip=2 2>/dev/null | sha256sum
echo "== write ro"; if dd if=/dev/zero of=/dev/sda bs=4096 count=1 oflag=direct 2>/dev/null; then echo WRITE-ACCEPTED; else echo WRITE-REFUSED; fi
iscsistart -i iqn.2026-11.io.blockdelta:guest -t {rw_iqn} -g 1 -a 10.0.2.2 -p {rw_port} -u guest -w guest-secret-123
wait_disk /dev/sdb
echo "== readcap rw"; sg_readcap -l /dev/sdb
echo "== gls32 rw"; sg_get_lba_status -T -t 1 -s 2097152 -m 4096 -b /dev/sdb
echo "== dd rw"; dd if=/dev/sdb bs=1M count=4 skip=2 2>/dev/null | sha256sum
dd if=/dev/sdb bs=4096 count=1 skip=2048 of=/tmp/block 2>/dev/null
dd if=/tmp/block of=/dev/sdb bs=4096 count=1 seek=5000 oflag=direct 2>/dev/null
sync
echo "== end"
"#,
        ro_iqn = ro.iqn,
        ro_port = ro.portal.port(),
        rw_iqn = rw.iqn,
        rw_port = rw.portal.port(),
    );
    let log = guest::run(
        concat!(env!("CARGO_MANIFEST_DIR"), "/.."),
        &guest,
        dir.path(),
    );

    let blocks = SIZE / 512;
    for name in ["ro", "rw"] {
        let rc = section(&log, &format!("== readcap {name}"));
        assert!(rc.contains(&format!("Last LBA={}", blocks - 1)), "{rc}");
        assert!(rc.contains("lbpme=1, lbprz=1"), "{rc}");
    }

    // Expected descriptors at 512-byte blocks: holes status 1, data status 3 (report type 1).
    let mut want = Vec::new();
    let mut at = 0;
    for &(off, len) in &extents {
        if off > at {
            want.push((at / 512, (off - at) / 512, 1u8));
        }
        want.push((off / 512, len / 512, 3u8));
        at = off + len;
    }
    for name in ["ro", "rw"] {
        let section = section(&log, &format!("== gls32 {name}"));
        assert!(section.contains("Completion condition=3"), "{section}");
        assert!(section.contains("RTP=1"), "{section}");
        assert_eq!(
            brief_descriptors(section),
            want,
            "32-byte scan of {name}:\n{section}"
        );
    }
    let gls16 = section(&log, "== gls16 ro");
    let want16: Vec<(u64, u64, bool)> = want.iter().map(|&(l, b, s)| (l, b, s == 1)).collect();
    assert_eq!(full_descriptors(gls16), want16, "16-byte scan:\n{gls16}");

    let dd_ro = section(&log, "== dd ro");
    assert!(
        dd_ro.contains(&sha256_of(&ro_file, 2 << 20, 4 << 20)),
        "dd of the read-only export differs:\n{dd_ro}"
    );
    let dd_rw = section(&log, "== dd rw");
    assert!(
        dd_rw.contains(&sha256_of(&rw_file, 2 << 20, 4 << 20)),
        "dd of the writable export differs:\n{dd_rw}"
    );
    assert!(
        section(&log, "== write ro").contains("WRITE-REFUSED"),
        "a write to the read-only export succeeded"
    );
    // The guest copied block 2048 (inside the 2 MiB data run... at 8 MiB) onto block 5000.
    drop(rw);
    assert_eq!(
        sha256_of(&rw_file, 5000 * 4096, 4096),
        sha256_of(&rw_file, 2048 * 4096, 4096),
        "guest write did not reach the file"
    );
}
