//! Helpers for tests that boot a Linux guest with `shared/harness/guest-run.sh` (the
//! kernel's iSCSI initiator and sg3-utils): where the harness is, and reading what
//! the guest printed. Shared by target-emulator's kernel test and the service's
//! delta-volume kernel test (which includes this file by path).

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

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

/// Boots a guest whose script can ask this host to act at chosen points and wait for it:
/// `script(port)` makes the script, in which `host STEP` (a shell function defined here)
/// sends STEP to a listener on this machine's loopback port `port` (10.0.2.2 in the guest)
/// and blocks until `step(STEP)` has run and returned its reply, which the guest prints as
/// `== host STEP: REPLY` and leaves in `$HOST_REPLY`. Steps run in order on this thread, at most `MAX_STEPS` of them.
pub fn run_with_host(
    repository: &str,
    work: &Path,
    script: impl FnOnce(u16) -> String,
    mut step: impl FnMut(&str) -> String,
) -> String {
    const MAX_STEPS: usize = 32;
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the host-step listener");
    listener
        .set_nonblocking(true)
        .expect("nonblocking listener");
    let port = listener.local_addr().expect("listener address").port();
    let prelude = format!(
        "host() {{ HOST_REPLY=$(echo \"$1\" | nc -w 180 10.0.2.2 {port}); echo \"== host $1: $HOST_REPLY\"; }}\n"
    );
    let script = format!("{prelude}{}", script(port));
    let repository = repository.to_string();
    let work = work.to_path_buf();
    let guest = std::thread::spawn(move || run(&repository, &script, &work));
    let deadline = Instant::now() + Duration::from_secs(660);
    let mut steps = 0;
    while !guest.is_finished() && Instant::now() < deadline && steps < MAX_STEPS {
        match listener.accept() {
            Ok((stream, _)) => {
                steps += 1;
                stream.set_nonblocking(false).expect("blocking stream");
                stream
                    .set_read_timeout(Some(Duration::from_secs(30)))
                    .expect("read timeout");
                let mut name = String::new();
                let _ = BufReader::new(&stream).read_line(&mut name);
                let reply = step(name.trim());
                let _ = (&stream).write_all(format!("{reply}\n").as_bytes());
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("host-step listener: {e}"),
        }
    }
    match guest.join() {
        Ok(log) => log,
        Err(panic) => std::panic::resume_unwind(panic),
    }
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
