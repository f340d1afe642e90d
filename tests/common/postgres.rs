//! A real PostgreSQL for the tests: Debian's `postgresql` package (which `scripts/test`
//! installs), one throwaway cluster per test: `initdb` into a temp dir and `pg_ctl start`
//! as the `postgres` user (the server refuses root), listening on a free port on
//! 127.0.0.1 only, stopped by its postmaster's pid when dropped.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub struct Postgres {
    dir: tempfile::TempDir,
    pub port: u16,
    bin: PathBuf,
}

/// `pg_ctl start` on `data`, listening on 127.0.0.1:`port` only.
fn pg_ctl_start(bin: &Path, dir: &Path, port: u16) {
    let mut start = as_postgres(&bin.join("pg_ctl"));
    start
        .args(["-D"])
        .arg(dir.join("data"))
        .arg("-l")
        .arg(dir.join("log"))
        .arg("-o")
        .arg(format!(
            "-p {port} -c listen_addresses=127.0.0.1 -k {} -c fsync=off -c max_connections=200",
            dir.display()
        ))
        .args(["-w", "-t", "60", "start"]);
    run(start, "pg_ctl start");
}

/// The newest installed server's binaries (`/usr/lib/postgresql/N/bin`).
fn server_bin() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed (scripts/test installs Debian's postgresql)")
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            Some((v, e.path().join("bin")))
        })
        .filter(|(_, bin)| bin.join("initdb").exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .expect("a PostgreSQL server under /usr/lib/postgresql")
        .1
}

fn is_root() -> bool {
    // SAFETY: geteuid has no failure mode.
    unsafe { libc::geteuid() == 0 }
}

/// `program args…` as the postgres user when we are root, else as ourselves.
fn as_postgres(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn run(mut cmd: Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Postgres {
    pub fn start() -> Postgres {
        let bin = server_bin();
        let dir = tempfile::Builder::new()
            .prefix("bd-pg-")
            .tempdir()
            .expect("temp dir");
        if is_root() {
            let uid = user_id("postgres");
            std::os::unix::fs::chown(dir.path(), Some(uid.0), Some(uid.1)).expect("chown");
        }
        let data = dir.path().join("data");
        let mut init = as_postgres(&bin.join("initdb"));
        init.args(["-D"]).arg(&data).args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        ]);
        run(init, "initdb");
        let port = super::free_ports::<1>()[0];
        pg_ctl_start(&bin, dir.path(), port);
        Postgres { dir, port, bin }
    }

    /// A fresh database on this server and its URL.
    pub fn database(&self, name: &str) -> String {
        let mut create = as_postgres(&self.bin.join("createdb"));
        create.args([
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-U",
            "postgres",
            name,
        ]);
        run(create, "createdb");
        self.url(name)
    }

    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    fn postmaster_pid(&self) -> Option<i32> {
        let text = std::fs::read_to_string(self.dir.path().join("data/postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }

    /// SIGKILL of the postmaster (its backends end with it): the database as a crash
    /// leaves it. Waits until the port is closed.
    pub fn kill9(&self) {
        if let Some(pid) = self.postmaster_pid() {
            // SAFETY: signalling the server this helper started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            let start = Instant::now();
            // SAFETY: signal 0 only checks that the process exists.
            while unsafe { libc::kill(pid, 0) } == 0 && start.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        // Its backends see the postmaster gone and exit; the port must be free to restart.
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "PostgreSQL still answers"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts the server again on the same port and data (after `kill9`).
    pub fn restart(&self) {
        let _ = std::fs::remove_file(self.dir.path().join("data/postmaster.pid"));
        pg_ctl_start(&self.bin, self.dir.path(), self.port);
    }
}

fn user_id(name: &str) -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let out = Command::new("id").args([flag, name]).output().expect("id");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("numeric id")
    };
    (id("-u"), id("-g"))
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let Some(pid) = self.postmaster_pid() else {
            return;
        };
        // Immediate shutdown (SIGQUIT), then SIGKILL if it lingers past 10 s.
        // SAFETY: signalling the server this helper started.
        unsafe { libc::kill(pid, libc::SIGQUIT) };
        let start = Instant::now();
        // SAFETY: signal 0 only checks that the process exists.
        while unsafe { libc::kill(pid, 0) } == 0 {
            if start.elapsed() > Duration::from_secs(10) {
                // SAFETY: as above.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Which catalog a test's server runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CatalogKind {
    Sqlite,
    Postgres,
}

/// A test's catalog: the `serve` flags that name it, and the PostgreSQL behind it.
pub struct TestCatalog {
    _pg: Option<Postgres>,
    pub flags: Vec<String>,
}

impl CatalogKind {
    pub fn catalog(self) -> TestCatalog {
        match self {
            CatalogKind::Sqlite => TestCatalog {
                _pg: None,
                flags: Vec::new(),
            },
            CatalogKind::Postgres => {
                let pg = Postgres::start();
                let url = pg.database("blockdelta");
                TestCatalog {
                    _pg: Some(pg),
                    flags: vec!["--catalog".into(), url],
                }
            }
        }
    }
}

impl TestCatalog {
    /// A server on this catalog, with more flags and environment.
    pub fn start(&self, data: &Path, more: &[&str], env: &[(&str, &str)]) -> super::Server {
        let mut flags: Vec<&str> = self.flags.iter().map(String::as_str).collect();
        flags.extend_from_slice(more);
        super::Server::start_with_env(data, &flags, env)
    }
}

/// Runs one test body on both catalogs: `on_both_catalogs!(body)` makes `body::sqlite`
/// and `body::postgres`, each calling `body(CatalogKind)`.
#[macro_export]
macro_rules! on_both_catalogs {
    ($body:ident) => {
        mod $body {
            #[test]
            fn sqlite() {
                super::$body($crate::common::postgres::CatalogKind::Sqlite)
            }
            #[test]
            fn postgres() {
                super::$body($crate::common::postgres::CatalogKind::Postgres)
            }
        }
    };
    (async $body:ident) => {
        mod $body {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                super::$body($crate::common::postgres::CatalogKind::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                super::$body($crate::common::postgres::CatalogKind::Postgres).await
            }
        }
    };
}
