//! Helpers for tests that boot a Linux guest with `shared/harness/guest-run.sh` (the
//! kernel's iSCSI initiator and sg3-utils): where the harness is, and reading what
//! the guest printed. Shared by target-emulator's kernel test and the service's
//! delta-volume kernel test (which includes this file by path).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// `shared/harness/guest-run.sh` beside the repository, or under `BLOCKDELTA_SHARED`.
/// `repository` is the repository's root.
pub fn harness(repository: &str) -> PathBuf {
    let shared = std::env::var_os("BLOCKDELTA_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(repository).join("../shared"));
    let script = shared.join("harness/guest-run.sh");
    assert!(
        script.is_file(),
        "{} not found: the guest harness lives in shared/ beside the repository (set BLOCKDELTA_SHARED)",
        script.display()
    );
    script
}

/// Boots a guest that runs `script` (which must end by printing `== end`) and returns
/// what the guest printed. The image cache is `<repository>/target/guest`; the harness
/// stops the guest after 240 s, and `timeout` the whole run after 600 s.
pub fn run(repository: &str, script: &str, work: &Path) -> String {
    let harness = harness(repository);
    let script_file = work.join("guest.sh");
    std::fs::write(&script_file, script).expect("write guest script");
    let out = Command::new("timeout")
        .arg("600")
        .arg("bash")
        .arg(&harness)
        .arg(&script_file)
        .env(
            "GUEST_BUILD",
            PathBuf::from(repository).join("target/guest"),
        )
        .env("GUEST_TIMEOUT", "240")
        .output()
        .expect("run the guest harness");
    let log = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success() && log.contains("== end"),
        "guest failed:\n{log}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    log
}

/// The guest's output after the line `start` up to the next `== ` marker.
pub fn section<'a>(log: &'a str, start: &str) -> &'a str {
    let s = log
        .find(start)
        .unwrap_or_else(|| panic!("{start} missing from the guest's output:\n{log}"));
    let body = s + start.len();
    let e = log[body..]
        .find("== ")
        .map(|e| body + e)
        .unwrap_or(log.len());
    &log[body..e]
}

/// `sg_get_lba_status -b` lines: (lba, blocks, provisioning status).
pub fn brief_descriptors(section: &str) -> Vec<(u64, u64, u8)> {
    section
        .lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            if w.len() == 4 && w[0].starts_with("0x") && w[1].starts_with("0x") {
                Some((
                    u64::from_str_radix(&w[0][2..], 16).ok()?,
                    u64::from_str_radix(&w[1][2..], 16).ok()?,
                    w[2].parse().ok()?,
                ))
            } else {
                None
            }
        })
        .collect()
}
