//! Shared helpers for the end-to-end tests: a real `blockdelta serve` on a free
//! loopback port over a temp data dir, the CLI as a client, and seeded volume
//! content (text-like, random, zeros) with an in-memory model to compare against.

#![allow(dead_code)]

pub mod delta;
pub mod postgres;
pub mod s3;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use serde_json::Value;

pub const BLOCK: usize = 4096;
pub const BIN: &str = env!("CARGO_BIN_EXE_blockdelta");

/// A running server; killed (SIGKILL) when dropped.
pub struct Server {
    pub child: Child,
    pub url: String,
    /// host:port of its iSCSI target.
    pub iscsi: String,
    pub data_dir: PathBuf,
}

impl Server {
    /// Starts `blockdelta serve` with gRPC and iSCSI on free loopback ports and
    /// reads the bound addresses from its stdout (30 s at most).
    pub fn start(data_dir: &Path) -> Server {
        Server::start_with(data_dir, &[])
    }

    /// As `start`, with more `serve` flags (`--grpc-listen` / `--iscsi-listen` among them
    /// replace the free ports).
    pub fn start_with(data_dir: &Path, flags: &[&str]) -> Server {
        Server::start_with_env(data_dir, flags, &[])
    }

    /// As `start_with`, with more environment variables for the server (FAILPOINTS, say).
    pub fn start_with_env(data_dir: &Path, flags: &[&str], env: &[(&str, &str)]) -> Server {
        let mut defaults: Vec<String> = Vec::new();
        for flag in ["--grpc-listen", "--iscsi-listen"] {
            if !flags.contains(&flag) {
                defaults.extend([flag.to_string(), "127.0.0.1:0".to_string()]);
            }
        }
        // The tests register files in temp dirs: that is the operator's volume root here.
        if !flags.contains(&"--volume-root") {
            defaults.push("--volume-root".into());
            defaults.push(std::env::temp_dir().display().to_string());
        }
        let mut child = Command::new(BIN)
            .args(["serve", "--data-dir"])
            .arg(data_dir)
            .args(defaults)
            .args(flags)
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn blockdelta serve");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut iscsi = String::new();
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("iscsi listening on ") {
                    iscsi = addr.to_string();
                }
                if let Some(addr) = line.strip_prefix("grpc listening on ") {
                    let _ = tx.send((addr.to_string(), iscsi.clone()));
                }
            }
        });
        let (addr, iscsi) = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("server printed its address");
        Server {
            child,
            url: format!("http://{addr}"),
            iscsi,
            data_dir: data_dir.to_path_buf(),
        }
    }

    /// The admin token the server's first start wrote (empty if it wrote none).
    pub fn token(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("admin.token"))
            .map(|t| t.trim().to_string())
            .unwrap_or_default()
    }

    /// The CLI as this server's admin (its first start's token, through the environment).
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_as(&self.token(), args)
    }

    /// The CLI with another token (empty: none at all).
    pub fn cli_as(&self, token: &str, args: &[&str]) -> Output {
        let mut cmd = Command::new(BIN);
        cmd.arg("--server").arg(&self.url).args(args);
        if token.is_empty() {
            cmd.env_remove("BLOCKDELTA_TOKEN");
        } else {
            cmd.env("BLOCKDELTA_TOKEN", token);
        }
        cmd.output().expect("run blockdelta cli")
    }

    /// A gRPC request carrying this server's admin token.
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        with_token(&self.token(), message)
    }

    /// Runs a CLI command that must succeed, with `--json`; one value per line.
    pub fn json(&self, args: &[&str]) -> Vec<Value> {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.cli(&all);
        assert!(
            out.status.success(),
            "blockdelta {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect()
    }

    pub fn json1(&self, args: &[&str]) -> Value {
        let mut v = self.json(args);
        assert_eq!(v.len(), 1, "one record from {args:?}: {v:?}");
        v.remove(0)
    }

    /// `volume create --from-delta` over `first`..`second` (with `more` flags, such as
    /// `--change-block-size`): the new delta volume's record.
    pub fn create_delta(&self, first: &str, second: &str, more: &[&str]) -> Value {
        let mut args = vec![
            "volume",
            "create",
            "--from-delta",
            "--first-backup",
            first,
            "--second-backup",
            second,
        ];
        args.extend_from_slice(more);
        self.json1(&args)
    }

    /// Runs a CLI command that must fail; returns its stderr.
    pub fn fails(&self, args: &[&str], code: &str) -> String {
        let out = self.cli(args);
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(!out.status.success(), "blockdelta {args:?} should fail");
        assert!(
            stderr.contains(code),
            "blockdelta {args:?}: expected {code}, got {stderr}"
        );
        stderr
    }

    pub fn create_volume(&self, name: &str, size: u64) -> (String, PathBuf) {
        let v = self.json1(&[
            "volume",
            "create",
            "--name",
            name,
            "--size",
            &size.to_string(),
        ]);
        (s(&v["id"]), PathBuf::from(s(&v["path"])))
    }

    /// `volume register`; returns the new volume's id.
    pub fn register(&self, name: &str, path: &Path) -> String {
        let v = self.json1(&[
            "volume",
            "register",
            "--name",
            name,
            "--path",
            path.to_str().expect("utf-8 path"),
        ]);
        s(&v["id"])
    }

    /// `backup create --wait`; returns the backup record (must be available).
    pub fn backup(&self, volume: &str, extra: &[&str]) -> Value {
        let mut args = vec!["backup", "create", volume, "--wait"];
        args.extend_from_slice(extra);
        let b = self.json1(&args);
        assert_eq!(b["status"], "available", "{b}");
        b
    }

    /// The change bitmap of a backup as a sorted list of tracking blocks.
    pub fn changed_blocks(&self, id: &str) -> Vec<u64> {
        runs_to_blocks(&self.json1(&["backup", "changed-blocks", id]))
    }

    pub fn allocated_blocks(&self, id: &str) -> Vec<u64> {
        runs_to_blocks(&self.json1(&["backup", "allocated-blocks", id]))
    }

    /// Restores onto a new volume (`target` None) or onto `target`, waits, and
    /// returns the volume record.
    pub fn restore(&self, id: &str, target: Option<&str>) -> Value {
        let mut args = vec!["backup", "restore", id, "--wait"];
        if let Some(t) = target {
            args.extend_from_slice(&["--volume", t]);
        }
        let v = self.json1(&args);
        assert_eq!(v["status"], "available", "{v}");
        v
    }

    /// Polls `backup show` until `pred` holds (bounded: `limit`).
    pub fn wait_backup(&self, id: &str, limit: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            let b = self.json1(&["backup", "show", id]);
            if pred(&b) {
                return b;
            }
            assert!(
                start.elapsed() < limit,
                "backup {id} never reached the state: {b}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait (bounded) for a graceful exit.
    pub fn stop(mut self) -> std::process::ExitStatus {
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "server did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// `N` distinct free TCP ports on 127.0.0.1, for a server that must come back on the same
/// ports (all bound at once, so they differ).
pub fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: Vec<std::net::TcpListener> = (0..N)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("a free loopback port"))
        .collect();
    std::array::from_fn(|i| listeners[i].local_addr().expect("bound address").port())
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A gRPC channel that sends `authorization: Bearer TOKEN` on every call.
pub type Authed =
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, Bearer>;

#[derive(Clone)]
pub struct Bearer(pub String);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if !self.0.is_empty() {
            req.metadata_mut().insert(
                "authorization",
                format!("Bearer {}", self.0).parse().expect("ascii token"),
            );
        }
        Ok(req)
    }
}

/// A channel to `url` carrying `token` (empty: none).
pub async fn channel_as(url: &str, token: &str) -> Authed {
    let channel = tonic::transport::Endpoint::from_shared(url.to_string())
        .expect("url")
        .connect()
        .await
        .expect("connect");
    tonic::service::interceptor::InterceptedService::new(channel, Bearer(token.to_string()))
}

impl Server {
    /// A channel carrying this server's admin token.
    pub async fn channel(&self) -> Authed {
        channel_as(&self.url, &self.token()).await
    }
}

/// A gRPC request with `authorization: Bearer TOKEN`.
pub fn with_token<T>(token: &str, message: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(message);
    req.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ascii token"),
    );
    req
}

pub fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

fn runs_to_blocks(v: &Value) -> Vec<u64> {
    let mut out = Vec::new();
    for r in v["extents"].as_array().expect("extents") {
        let (start, count) = (r[0].as_u64().unwrap(), r[1].as_u64().unwrap());
        out.extend(start..start + count);
    }
    out
}

/// What to write into a block.
#[derive(Clone, Copy, Debug)]
pub enum Fill {
    Text,
    Random,
    Zero,
}

/// A volume file plus its expected content in memory. Every write goes to both,
/// so expected change bitmaps come from comparing model generations byte-wise.
pub struct Model {
    pub path: PathBuf,
    pub data: Vec<u8>,
    pub rng: StdRng,
}

const WORDS: &[&str] = &[
    "block",
    "delta",
    "backup",
    "volume",
    "extent",
    "chain",
    "restore",
    "the",
    "of",
    "and",
    "data",
    "sector",
    "iscsi",
    "target",
    "lun",
    "snapshot",
    "incremental",
    "full",
    "zero",
    "hole",
];

impl Model {
    /// The model of a freshly created (all-zero, sparse) volume at `path`.
    pub fn new(path: &Path, size: u64, seed: u64) -> Model {
        Model {
            path: path.to_path_buf(),
            data: vec![0; size as usize],
            rng: StdRng::seed_from_u64(seed),
        }
    }

    pub fn blocks(&self) -> u64 {
        (self.data.len() / BLOCK) as u64
    }

    /// Content for `count` blocks.
    pub fn content(&mut self, fill: Fill, count: usize) -> Vec<u8> {
        let mut buf = vec![0u8; count * BLOCK];
        match fill {
            Fill::Zero => {}
            Fill::Random => self.rng.fill_bytes(&mut buf),
            Fill::Text => {
                let mut pos = 0;
                while pos < buf.len() {
                    let w = WORDS[self.rng.random_range(0..WORDS.len())];
                    let sep: &[u8] = if self.rng.random_range(0..12) == 0 {
                        b"\n"
                    } else {
                        b" "
                    };
                    for &b in w.as_bytes().iter().chain(sep) {
                        if pos < buf.len() {
                            buf[pos] = b;
                            pos += 1;
                        }
                    }
                }
            }
        }
        buf
    }

    /// Writes bytes at a tracking block, to the file and the model.
    pub fn write(&mut self, block: u64, bytes: &[u8]) {
        let off = block as usize * BLOCK;
        self.data[off..off + bytes.len()].copy_from_slice(bytes);
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&self.path)
            .expect("open volume");
        f.write_all_at(bytes, off as u64).expect("write volume");
    }

    pub fn fill(&mut self, block: u64, count: usize, fill: Fill) {
        let bytes = self.content(fill, count);
        self.write(block, &bytes);
    }

    /// Rewrites blocks with the bytes they already hold (not a change).
    pub fn rewrite_same(&mut self, block: u64, count: usize) {
        let off = block as usize * BLOCK;
        let bytes = self.data[off..off + count * BLOCK].to_vec();
        self.write(block, &bytes);
    }

    /// A random first block for a run of `len` blocks that fits the volume.
    pub fn random_start(&mut self, len: usize) -> u64 {
        self.rng.random_range(0..=self.blocks() - len as u64)
    }

    pub fn random_block(&mut self) -> u64 {
        self.rng.random_range(0..self.blocks())
    }

    /// A mixed first generation: text-like and random regions, explicit zero
    /// blocks, and holes left between them.
    pub fn populate(&mut self, regions: usize) {
        for i in 0..regions {
            let len = self.rng.random_range(1..64usize);
            let start = self.rng.random_range(0..self.blocks() - len as u64);
            let fill = [Fill::Text, Fill::Random, Fill::Zero][i % 3];
            self.fill(start, len, fill);
        }
    }

    pub fn hash(&self) -> String {
        blake3::hash(&self.data).to_hex().to_string()
    }

    pub fn nonzero_blocks(&self) -> Vec<u64> {
        let zero = [0u8; BLOCK];
        (0..self.blocks())
            .filter(|&b| self.data[b as usize * BLOCK..(b as usize + 1) * BLOCK] != zero)
            .collect()
    }
}

/// Tracking blocks whose bytes differ between two generations.
pub fn diff_blocks(old: &[u8], new: &[u8]) -> Vec<u64> {
    old.chunks(BLOCK)
        .zip(new.chunks(BLOCK))
        .enumerate()
        .filter(|(_, (a, b))| a != b)
        .map(|(i, _)| i as u64)
        .collect()
}

/// blake3 of a whole file.
pub fn file_hash(path: &Path) -> String {
    let mut h = blake3::Hasher::new();
    let f = std::fs::File::open(path).expect("open file to hash");
    h.update_reader(f).expect("hash file");
    h.finalize().to_hex().to_string()
}

/// A file of `size` bytes full of non-zero garbage.
pub fn garbage_file(path: &Path, size: u64, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut f = std::fs::File::create(path).expect("create garbage");
    let mut chunk = vec![0u8; 1 << 20];
    rng.fill_bytes(&mut chunk);
    for _ in 0..size / chunk.len() as u64 {
        f.write_all(&chunk).expect("write garbage");
    }
    let rest = (size % chunk.len() as u64) as usize;
    f.write_all(&chunk[..rest]).expect("write garbage");
}

/// A small tmpfs mounted on a temp dir, so a test gets a real full disk; unmounted (lazily,
/// so a busy mount never hangs the test) when dropped. Tests run as root in CI: a mount
/// that fails fails the test rather than skipping it.
pub struct Tmpfs {
    pub path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    pub fn mount(size_mib: u64) -> Tmpfs {
        let dir = tempfile::tempdir().expect("tempdir for tmpfs");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={size_mib}m,mode=0700"))
            .arg("tmpfs")
            .arg(dir.path())
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "mounting a {size_mib} MiB tmpfs (needs root, as in CI): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs {
            path: dir.path().to_path_buf(),
            _dir: dir,
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

impl Server {
    /// Runs a CLI command, killed after `limit`: `None` if it did not finish (a wedge).
    pub fn cli_bounded(&self, args: &[&str], limit: Duration) -> Option<Output> {
        let mut child = Command::new(BIN)
            .arg("--server")
            .arg(&self.url)
            .args(args)
            .env("BLOCKDELTA_TOKEN", self.token())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run blockdelta cli");
        let start = Instant::now();
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                return child.wait_with_output().ok();
            }
            if start.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, and how long the server took to exit (at most `limit`, else it is killed
    /// and the test fails).
    pub fn stop_within(mut self, limit: Duration) -> Duration {
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let start = Instant::now();
        loop {
            if let Ok(Some(_)) = self.child.try_wait() {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < limit,
                "server did not stop within {limit:?} of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
