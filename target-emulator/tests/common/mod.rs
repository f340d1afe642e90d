//! Shared helpers for target-emulator's integration tests: sparse files with known extents, the
//! `target-emulator` binary on a free loopback port, and checks that external tools exist.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A data extent written into a test image: (byte offset, length).
pub type Extent = (u64, u64);

/// A sparse file of `size` bytes with pseudo-random data (seeded, so failures replay) at
/// `extents`; everything else is a hole.
pub fn sparse_image(dir: &Path, name: &str, size: u64, extents: &[Extent], seed: u64) -> PathBuf {
    let path = dir.join(name);
    let f = std::fs::File::create(&path).expect("create image");
    f.set_len(size).expect("size image");
    let mut state = seed | 1;
    for &(offset, len) in extents {
        let mut buf = vec![0u8; len as usize];
        for b in buf.iter_mut() {
            // xorshift64*: cheap, deterministic, never all-zero blocks.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            *b = (state >> 24) as u8 | 1;
        }
        f.write_all_at(&buf, offset).expect("write extent");
    }
    f.sync_all().expect("sync image");
    path
}

/// The extents most tests use: a run at 2 MiB, single 4 KiB blocks, and data in the last block.
pub fn standard_extents(size: u64) -> Vec<Extent> {
    vec![
        (2 << 20, 1 << 20),
        (8 << 20, 4096),
        (8 << 20 | 64 << 10, 4096),
        (40 << 20, 3 * 4096),
        (size - 4096, 4096),
    ]
}

/// A running `target-emulator`; killed on drop.
pub struct Emulator {
    pub child: Child,
    pub iqn: String,
    pub portal: SocketAddr,
}

impl Emulator {
    pub fn start(file: &Path, extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_target-emulator"))
            .arg("--file")
            .arg(file)
            .args(["--portal", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start target-emulator");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read banner");
        // "target IQN listening on ADDR"
        let words: Vec<&str> = line.split_whitespace().collect();
        assert!(
            words.len() == 5 && words[0] == "target",
            "unexpected banner {line:?}"
        );
        Self {
            iqn: words[1].to_string(),
            portal: words[4].parse().expect("portal address"),
            child,
        }
    }

    /// `iscsi://127.0.0.1:PORT/IQN/0`, the URL libiscsi tools and QEMU take.
    pub fn url(&self) -> String {
        format!("iscsi://{}/{}/0", self.portal, self.iqn)
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Fails the test with a clear message when a tool the README's test command installs is absent.
pub fn require_tool(tool: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "`{tool}` (Debian package {package}) is not installed: run the README's test command (scripts/test), which installs it"
    );
}

/// Runs a command with a time limit; returns (success, stdout, stderr).
pub fn run_with_timeout(cmd: &mut Command, limit: Duration) -> (bool, String, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let out_pipe = child.stdout.take().expect("stdout");
    let err_pipe = child.stderr.take().expect("stderr");
    let out_thread =
        std::thread::spawn(move || std::io::read_to_string(out_pipe).unwrap_or_default());
    let err_thread =
        std::thread::spawn(move || std::io::read_to_string(err_pipe).unwrap_or_default());
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break Some(s);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = out_thread.join().unwrap_or_default();
    let err = err_thread.join().unwrap_or_default();
    match status {
        Some(s) => (s.success(), out, err),
        None => panic!("{cmd:?} did not finish within {limit:?}\nstdout:\n{out}\nstderr:\n{err}"),
    }
}
