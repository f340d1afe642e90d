//! Acceptance item 1 of the target-emulator issue: libiscsi's tools and QEMU against the
//! `target-emulator` binary exporting a sparse file with known extents.

mod common;

use common::*;
use std::process::Command;
use std::time::Duration;

const SIZE: u64 = 64 << 20;
const LIMIT: Duration = Duration::from_secs(60);

fn export() -> (tempfile::TempDir, std::path::PathBuf, Emulator) {
    let dir = tempfile::tempdir().unwrap();
    let file = sparse_image(dir.path(), "known.img", SIZE, &standard_extents(SIZE), 7);
    let emu = Emulator::start(&file, &["--read-only"]);
    (dir, file, emu)
}

#[test]
fn iscsi_ls_discovers_the_export() {
    require_tool("iscsi-ls", "libiscsi-bin");
    let (_d, _f, emu) = export();
    let (ok, out, err) = run_with_timeout(
        Command::new("iscsi-ls")
            .arg("-s")
            .arg(format!("iscsi://{}", emu.portal)),
        LIMIT,
    );
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!("Target:{} Portal:{},1", emu.iqn, emu.portal)),
        "{out}"
    );
    assert!(
        out.contains("Lun:0") && out.contains("DIRECT_ACCESS"),
        "{out}"
    );
}

#[test]
fn iscsi_inq_shows_standard_inquiry_and_vpd_pages() {
    require_tool("iscsi-inq", "libiscsi-bin");
    let (_d, _f, emu) = export();
    let (ok, out, err) = run_with_timeout(Command::new("iscsi-inq").arg(emu.url()), LIMIT);
    assert!(ok, "{err}");
    assert!(
        out.contains("Vendor:BLKDELTA") && out.contains("Peripheral Device Type:DIRECT_ACCESS"),
        "{out}"
    );
    // VPD 0x00 lists the pages in ascending order.
    let (ok, out, err) = run_with_timeout(
        Command::new("iscsi-inq")
            .args(["-e", "1", "-c", "0"])
            .arg(emu.url()),
        LIMIT,
    );
    assert!(ok, "{err}");
    for page in ["0x00", "0x80", "0x83", "0xb0", "0xb1", "0xb2"] {
        assert!(
            out.to_lowercase().contains(page),
            "VPD 0x00 lacks {page}:\n{out}"
        );
    }
    // 0xB0 block limits and 0xB2 logical block provisioning (page codes in decimal).
    let (ok, out, err) = run_with_timeout(
        Command::new("iscsi-inq")
            .args(["-e", "1", "-c", "176"])
            .arg(emu.url()),
        LIMIT,
    );
    assert!(ok, "{err}");
    assert!(out.contains("maximum transfer length:16384"), "{out}");
    let (ok, out, err) = run_with_timeout(
        Command::new("iscsi-inq")
            .args(["-e", "1", "-c", "178"])
            .arg(emu.url()),
        LIMIT,
    );
    assert!(ok, "{err}");
    assert!(
        out.contains("lbprz:1") && out.contains("provisioning type:2"),
        "{out}"
    );
    // A read-only export cannot unmap, and says so (libiscsi's consistency rule).
    assert!(out.contains("lbpu:0") && out.contains("lbpws:0"), "{out}");
}

#[test]
fn iscsi_readcapacity16_reports_thin_provisioning() {
    require_tool("iscsi-readcapacity16", "libiscsi-bin");
    let (_d, _f, emu) = export();
    let (ok, out, err) =
        run_with_timeout(Command::new("iscsi-readcapacity16").arg(emu.url()), LIMIT);
    assert!(ok, "{err}");
    assert!(out.contains("LBPME:1 LBPRZ:1"), "{out}");
    assert!(out.contains(&format!("Total size:{SIZE}")), "{out}");
}

#[test]
fn qemu_img_convert_is_byte_identical() {
    require_tool("qemu-img", "qemu-utils");
    let (dir, file, emu) = export();
    let copy = dir.path().join("copy.img");
    let (ok, _, err) = run_with_timeout(
        Command::new("qemu-img")
            .args(["convert", "-O", "raw"])
            .arg(emu.url())
            .arg(&copy),
        LIMIT,
    );
    assert!(
        ok,
        "qemu-img convert failed (is qemu-block-extra installed?): {err}"
    );
    assert!(
        std::fs::read(&copy).unwrap() == std::fs::read(&file).unwrap(),
        "copy differs from the exported file"
    );
}

/// (start, length, data) triples from `qemu-img map --output=json`.
fn map(target: &str) -> Vec<(u64, u64, bool)> {
    let (ok, out, err) = run_with_timeout(
        Command::new("qemu-img")
            .args(["map", "--output=json", "-f", "raw"])
            .arg(target),
        LIMIT,
    );
    assert!(ok, "qemu-img map {target}: {err}");
    let field = |line: &str, key: &str| -> String {
        let at = line
            .find(&format!("\"{key}\": "))
            .unwrap_or_else(|| panic!("{key} missing in {line}"));
        line[at + key.len() + 4..]
            .split([',', '}'])
            .next()
            .unwrap_or("")
            .trim()
            .to_string()
    };
    out.lines()
        .filter(|l| l.contains("\"start\""))
        .map(|l| {
            (
                field(l, "start").parse().unwrap(),
                field(l, "length").parse().unwrap(),
                field(l, "data") == "true",
            )
        })
        .collect()
}

#[test]
fn qemu_img_map_reports_exactly_the_files_extents() {
    require_tool("qemu-img", "qemu-utils");
    let (_d, file, emu) = export();
    let over_iscsi = map(&emu.url());
    let local = map(file.to_str().unwrap());
    assert_eq!(over_iscsi, local);
    let data: Vec<(u64, u64)> = over_iscsi
        .iter()
        .filter(|e| e.2)
        .map(|e| (e.0, e.1))
        .collect();
    // The written extents, with the two adjacent-in-spirit 4 KiB blocks kept separate.
    let want: Vec<(u64, u64)> = standard_extents(SIZE);
    assert_eq!(data, want);
}
