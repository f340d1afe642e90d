//! Shared helpers for target-emulator's integration tests: sparse files with known extents, the
//! `target-emulator` binary on a free loopback port, and checks that external tools exist.
//! Below them, the libiscsi conformance helpers ([`iscsi_test_cu`] and its CUnit parser
//! [`CuRun`]) and Debian's tgt as a reference target ([`Tgtd`]).
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

// ---- libiscsi's conformance suite (iscsi-test-cu) ----

/// How one test of an `iscsi-test-cu` run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CuVerdict {
    Passed,
    /// CUnit counts it as passed, but the test printed `[SKIPPED] <reason>` and checked nothing
    /// (or only part of what it covers).
    Skipped(String),
    /// The failed assertions CUnit listed, `file:line - condition`.
    Failed(Vec<String>),
}

#[derive(Debug, Clone)]
pub struct CuTest {
    /// `Suite.Test`, as `iscsi-test-cu -l` names it without the family.
    pub name: String,
    pub verdict: CuVerdict,
}

/// A parsed `iscsi-test-cu` run: one entry per test, and CUnit's own "Run Summary" counts
/// (ran, passed, failed), which the parse is checked against.
#[derive(Debug, Clone)]
pub struct CuRun {
    pub tests: Vec<CuTest>,
    pub summary: Option<(usize, usize, usize)>,
    pub output: String,
}

impl CuRun {
    /// Parses CUnit's verbose output. A test's lines run from `  Test: NAME ...` to the
    /// `passed` or `FAILED` verdict (on that line or a later one); log lines in between carry
    /// the `[SKIPPED]` reasons; the numbered lines after `FAILED` are the failed assertions.
    pub fn parse(output: &str) -> CuRun {
        let mut tests = Vec::new();
        let mut suite = String::new();
        let mut current: Option<(String, Vec<String>)> = None;
        let mut failed_last = false;
        let mut summary = None;
        let mut in_summary = false;
        for line in output.lines() {
            if let Some(name) = line.strip_prefix("Suite: ") {
                suite = name.trim().to_string();
                failed_last = false;
                continue;
            }
            if line.starts_with("Run Summary:") {
                in_summary = true;
                continue;
            }
            if in_summary {
                let words: Vec<&str> = line.split_whitespace().collect();
                if words.first() == Some(&"tests") && words.len() >= 5 {
                    let n = |i: usize| words[i].parse::<usize>().unwrap_or(0);
                    summary = Some((n(2), n(3), n(4)));
                }
                continue;
            }
            let rest = match line.strip_prefix("  Test: ") {
                Some(t) => {
                    failed_last = false;
                    let (name, rest) = t.split_once(" ...").unwrap_or((t, ""));
                    current = Some((format!("{suite}.{name}"), Vec::new()));
                    rest
                }
                None => line,
            };
            if failed_last {
                let t = rest.trim();
                if t.split_once(". ")
                    .is_some_and(|(n, _)| n.parse::<u32>().is_ok())
                {
                    if let Some(CuTest {
                        verdict: CuVerdict::Failed(lines),
                        ..
                    }) = tests.last_mut()
                    {
                        lines.push(t.to_string());
                    }
                    continue;
                }
                failed_last = false;
            }
            let Some((name, logs)) = current.as_mut() else {
                continue;
            };
            let verdict = if rest.starts_with("passed") {
                Some(true)
            } else if rest.starts_with("FAILED") {
                Some(false)
            } else {
                logs.push(rest.to_string());
                None
            };
            if let Some(passed) = verdict {
                let skip = logs
                    .iter()
                    .filter_map(|l| l.split_once("[SKIPPED]").map(|(_, r)| r.trim().to_string()))
                    .next();
                let verdict = match (passed, skip) {
                    (false, _) => CuVerdict::Failed(Vec::new()),
                    (true, Some(reason)) => CuVerdict::Skipped(reason),
                    (true, None) => CuVerdict::Passed,
                };
                failed_last = matches!(verdict, CuVerdict::Failed(_));
                tests.push(CuTest {
                    name: std::mem::take(name),
                    verdict,
                });
                current = None;
            }
        }
        CuRun {
            tests,
            summary,
            output: output.to_string(),
        }
    }

    fn count(&self, f: impl Fn(&CuVerdict) -> bool) -> usize {
        self.tests.iter().filter(|t| f(&t.verdict)).count()
    }
    /// Tests that passed and checked what they cover (not skipped).
    pub fn passed(&self) -> usize {
        self.count(|v| *v == CuVerdict::Passed)
    }
    pub fn skipped(&self) -> usize {
        self.count(|v| matches!(v, CuVerdict::Skipped(_)))
    }
    pub fn failed(&self) -> usize {
        self.count(|v| matches!(v, CuVerdict::Failed(_)))
    }
    pub fn failures(&self) -> Vec<&CuTest> {
        self.tests
            .iter()
            .filter(|t| matches!(t.verdict, CuVerdict::Failed(_)))
            .collect()
    }
    /// Whether the per-test parse agrees with CUnit's own summary.
    pub fn consistent(&self) -> bool {
        self.summary
            == Some((
                self.tests.len(),
                self.passed() + self.skipped(),
                self.failed(),
            ))
    }
}

/// Runs `iscsi-test-cu` with `args` against `urls` (a second URL enables its multipath
/// tests), killing it after `limit`.
pub fn iscsi_test_cu(args: &[&str], urls: &[String], limit: Duration) -> CuRun {
    let mut cmd = Command::new("iscsi-test-cu");
    cmd.args(args).args(urls);
    let (_, out, err) = run_with_timeout(&mut cmd, limit);
    let run = CuRun::parse(&out);
    assert!(
        run.summary.is_some(),
        "iscsi-test-cu {args:?} {urls:?} printed no Run Summary\nstdout:\n{out}\nstderr:\n{err}"
    );
    assert!(
        run.consistent(),
        "could not follow iscsi-test-cu's output: parsed {} tests ({} passed, {} skipped, {} failed) but CUnit says {:?}\n{out}",
        run.tests.len(),
        run.passed(),
        run.skipped(),
        run.failed(),
        run.summary
    );
    run
}

/// Every test `iscsi-test-cu -l` knows, as `FAMILY.SUITE.TEST`.
pub fn iscsi_test_cu_list() -> Vec<String> {
    let (ok, out, err) = run_with_timeout(
        Command::new("iscsi-test-cu").arg("-l"),
        Duration::from_secs(30),
    );
    assert!(ok, "iscsi-test-cu -l failed: {err}");
    out.lines()
        .map(str::trim)
        .filter(|l| l.matches('.').count() == 2)
        .map(str::to_string)
        .collect()
}

/// A `--test=` argument selecting every test of `family` except those `exclude` names:
/// whole suites where nothing is excluded, single tests elsewhere.
pub fn iscsi_test_cu_selection(
    all: &[String],
    family: &str,
    exclude: impl Fn(&str) -> bool,
) -> String {
    let mut suites: Vec<(String, Vec<&String>)> = Vec::new();
    for t in all.iter().filter(|t| t.starts_with(&format!("{family}."))) {
        let suite = t
            .rsplit_once('.')
            .map_or(t.as_str(), |(s, _)| s)
            .to_string();
        match suites.iter_mut().find(|(s, _)| *s == suite) {
            Some((_, tests)) => tests.push(t),
            None => suites.push((suite, vec![t])),
        }
    }
    let mut selection = Vec::new();
    for (suite, tests) in suites {
        let kept: Vec<&String> = tests.iter().copied().filter(|t| !exclude(t)).collect();
        if kept.len() == tests.len() {
            selection.push(suite);
        } else {
            selection.extend(kept.into_iter().cloned());
        }
    }
    selection.join(",")
}

/// A free TCP port on 127.0.0.1 (bound and released; another process could take it first).
pub fn free_loopback_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

// ---- Debian's tgt as a reference target ----

/// `tgtd` in the foreground on a free 127.0.0.1 port with its own control port (so it never
/// touches another tgtd's configuration); shut down and killed on drop.
pub struct Tgtd {
    child: Child,
    control: u16,
    pub portal: SocketAddr,
    next_tid: std::cell::Cell<u32>,
}

impl Tgtd {
    pub fn start() -> Self {
        static STARTED: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
        for _ in 0..5 {
            let attempt = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 8;
            let port = free_loopback_port();
            // The control "port" (1..32767) names the unix socket /var/run/tgtd/socket.N; a
            // live tgtd holds its lock, so a clash makes ours exit and we try another number.
            let control = 1000 + (std::process::id() % 24000) as u16 + attempt * 997;
            let child = Command::new("tgtd")
                .args(["-f", "-C", &control.to_string()])
                .args(["--iscsi", &format!("portal=127.0.0.1:{port}")])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start tgtd");
            let mut tgtd = Tgtd {
                child,
                control,
                portal: SocketAddr::from(([127, 0, 0, 1], port)),
                next_tid: std::cell::Cell::new(1),
            };
            if tgtd.wait_ready() {
                return tgtd;
            }
        }
        panic!("tgtd did not start on a free loopback port");
    }

    fn wait_ready(&mut self) -> bool {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            let admin = self.admin_quiet(&["--mode", "target", "--op", "show"]);
            if admin && std::net::TcpStream::connect(self.portal).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    fn admin_quiet(&self, args: &[&str]) -> bool {
        Command::new("tgtadm")
            .args(["-C", &self.control.to_string(), "--lld", "iscsi"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    fn admin(&self, args: &[&str]) {
        let (ok, out, err) = run_with_timeout(
            Command::new("tgtadm")
                .args(["-C", &self.control.to_string(), "--lld", "iscsi"])
                .args(args),
            Duration::from_secs(30),
        );
        assert!(ok, "tgtadm {args:?} failed: {out}{err}");
    }

    /// Exports `file` as LUN 1 of a new target `iqn` (tgt's LUN 0 is its controller), thin
    /// provisioned so UNMAP and GET LBA STATUS work, read-only if asked. Returns the URL.
    pub fn export(&self, iqn: &str, file: &Path, read_only: bool) -> String {
        let tid = self.next_tid.get().to_string();
        self.next_tid.set(self.next_tid.get() + 1);
        self.admin(&[
            "--mode",
            "target",
            "--op",
            "new",
            "--tid",
            &tid,
            "--targetname",
            iqn,
        ]);
        let file = file.to_str().expect("utf-8 path");
        self.admin(&[
            "--mode",
            "logicalunit",
            "--op",
            "new",
            "--tid",
            &tid,
            "--lun",
            "1",
            "--backing-store",
            file,
        ]);
        let params = format!(
            "thin_provisioning=1,readonly={}",
            if read_only { 1 } else { 0 }
        );
        self.admin(&[
            "--mode",
            "logicalunit",
            "--op",
            "update",
            "--tid",
            &tid,
            "--lun",
            "1",
            "--params",
            &params,
        ]);
        self.admin(&[
            "--mode",
            "target",
            "--op",
            "bind",
            "--tid",
            &tid,
            "--initiator-address",
            "ALL",
        ]);
        format!("iscsi://{}/{iqn}/1", self.portal)
    }
}

impl Drop for Tgtd {
    fn drop(&mut self) {
        // tgtd -f ignores SIGTERM; ask it to stop, then make sure.
        let _ = self.admin_quiet(&[
            "--mode", "sys", "--op", "update", "--name", "State", "-v", "offline",
        ]);
        for tid in 1..self.next_tid.get() {
            let tid = tid.to_string();
            let _ = self.admin_quiet(&[
                "--mode", "target", "--op", "delete", "--tid", &tid, "--force",
            ]);
        }
        let _ = self.admin_quiet(&["--mode", "system", "--op", "delete"]);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // tgtd leaves its control socket and lock file behind.
        let socket = format!("/var/run/tgtd/socket.{}", self.control);
        let _ = std::fs::remove_file(format!("{socket}.lock"));
        let _ = std::fs::remove_file(socket);
    }
}
