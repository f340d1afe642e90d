//! The faults issue's failpoint walk (needs the `failpoints` feature; the test command
//! enables it). Every failpoint in `src/` (`fault!("name", …)`, listed from the source) is
//! armed in turn, as an injected I/O error (`return`) and as a panic, in a server that then
//! runs the backup, restore, gc, delete, attach and recover paths. After each:
//! - no job is still running, and the server still answers;
//! - SIGTERM stops it within 5 s;
//! - restarted without faults, every backup that says `available` verifies, no backup
//!   claims to be available without an index, and after `gc` nothing is left in the
//!   repository's `tmp/` and a second `gc` finds nothing more to remove.
//!
//! A second test reads the source: a function that writes, syncs, renames, unlinks or
//! updates the catalog without a failpoint fails it, so a new write site cannot land
//! without one.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const CALL_LIMIT: Duration = Duration::from_secs(30);
/// Walks at once: each mostly waits on its servers, so more than the two cores.
const WALKERS: usize = 3;

fn sources() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let p = entry.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|e| e == "rs") {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut out);
    out.sort();
    out
}

/// Every failpoint name in the source, in order.
fn failpoints() -> Vec<String> {
    let mut names = Vec::new();
    for file in sources() {
        let text = std::fs::read_to_string(&file).unwrap();
        for (i, _) in text.match_indices("fault!(\"") {
            let rest = &text[i + 8..];
            let name = &rest[..rest.find('"').unwrap()];
            names.push(name.to_string());
        }
    }
    let unique: BTreeSet<&String> = names.iter().collect();
    assert_eq!(
        unique.len(),
        names.len(),
        "failpoint names repeat: {names:?}"
    );
    names
}

/// Calls that change durable state.
const WRITES: &[&str] = &[
    "write_all(",
    "write_all_at(",
    "sync_all(",
    "fs::rename(",
    "remove_file(",
    "File::create(",
    ".execute(",
    "set_len(",
];

/// Functions that write but are not a state change of the paths the walk covers, each
/// with the reason.
const EXEMPT: &[(&str, &str)] = &[
    // compressing into a Vec in memory
    ("repo/codec.rs", "compress"),
    // removing the temp file of a failed put: cleanup, never state
    ("repo/store/local.rs", "put"),
    // the write of put_via, whose failpoints are before it
    ("repo/store/local.rs", "write_direct"),
    // removing leftovers of interrupted puts under tmp/: cleanup, never state
    ("repo/store/local.rs", "clear_temporaries"),
    // the schema, applied once at open
    ("catalog/migrations.rs", "migrate_sqlite"),
    ("catalog/migrations.rs", "migrate_postgres"),
    // the database sessions: every caller of a statement holds the failpoint
    ("catalog/db/", ""),
    // ending one lost job, shared by fail_lost_jobs and mark_interrupted (both with failpoints)
    ("catalog/jobs.rs", "fail_job"),
    // the row insert shared by insert_volume and insert_delta_volume, both with failpoints
    ("catalog/volumes.rs", "insert_volume_row"),
    // the run insert shared by take_slot and insert_run, both with failpoints
    ("catalog/policies.rs", "insert_run"),
    // removing the file of a volume the catalog refused: cleanup of a failed create
    ("engine/service/volumes.rs", "insert_volume"),
    // removing the file of a restore whose catalog transaction failed: cleanup likewise
    ("engine/service/backups.rs", "restore_backup"),
    // removing a deleted volume's write-tracking file: cleanup after the catalog forgot it
    ("tracking/mod.rs", "forget"),
    ("tracking/tracker.rs", "remove"),
    // the scanner writes the user's image file, never the server's state
    ("scan/", ""),
    // the CLI and the API write to sockets and the terminal
    ("cli/", ""),
    ("api/", ""),
];

#[test]
fn every_write_site_has_a_failpoint() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut missing = Vec::new();
    for file in sources() {
        let rel = file.strip_prefix(&src).unwrap().display().to_string();
        let text = std::fs::read_to_string(&file).unwrap();
        let mut function = String::new();
        let mut has_fault = false;
        for (n, line) in text.lines().enumerate() {
            let t = line.trim_start();
            if t.starts_with("#[cfg(test)]") {
                break;
            }
            if let Some(at) = t.find("fn ")
                && (t.starts_with("fn ") || t.starts_with("pub") || t.starts_with("async"))
            {
                let rest = &t[at + 3..];
                function = rest
                    .split(|c: char| !c.is_alphanumeric() && c != '_')
                    .next()
                    .unwrap_or_default()
                    .to_string();
                has_fault = false;
            }
            if t.contains("fault!(\"") {
                has_fault = true;
            }
            let exempt = EXEMPT
                .iter()
                .any(|(f, func)| rel.starts_with(f) && (func.is_empty() || *func == function));
            if !exempt && !has_fault && WRITES.iter().any(|w| t.contains(w)) && !t.starts_with("//")
            {
                missing.push(format!("src/{rel}:{} in fn {function}: {t}", n + 1));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "write sites without a failpoint before them (add fault!(…) in the same function):\n{}",
        missing.join("\n")
    );
}

/// A server with FAILPOINTS armed; `None` if it did not come up (a startup failpoint).
fn start_armed(data: &Path, failpoints: &str) -> Option<Server> {
    let mut child = Command::new(BIN)
        .args(["serve", "--data-dir"])
        .arg(data)
        .args([
            "--grpc-listen",
            "127.0.0.1:0",
            "--iscsi-listen",
            "127.0.0.1:0",
        ])
        .env("RUST_LOG", "error")
        .env("FAILPOINTS", failpoints)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn serve");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        let mut iscsi = String::new();
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if let Some(a) = line.strip_prefix("iscsi listening on ") {
                iscsi = a.to_string();
            }
            if let Some(a) = line.strip_prefix("grpc listening on ") {
                let _ = tx.send((a.to_string(), iscsi.clone()));
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok((addr, iscsi)) => Some(Server {
            child,
            url: format!("http://{addr}"),
            iscsi,
            data_dir: data.to_path_buf(),
        }),
        Err(_) => {
            let start = Instant::now();
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    assert!(!status.success(), "serve exited 0 without serving");
                    return None;
                }
                assert!(
                    start.elapsed() < Duration::from_secs(10),
                    "serve neither served nor exited with {failpoints}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// One CLI call that must return (succeeding or not) within the limit.
fn call(server: &Server, args: &[&str], what: &str) -> Option<serde_json::Value> {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = server
        .cli_bounded(&all, CALL_LIMIT)
        .unwrap_or_else(|| panic!("{what}: `blockdelta {args:?}` never returned"));
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| serde_json::from_str(l).ok())
}

fn available(v: &Option<serde_json::Value>) -> Option<String> {
    v.as_ref()
        .filter(|v| v["status"] == "available")
        .map(|v| s(&v["id"]))
}

/// The workload: every path the failpoints sit on, each step allowed to fail.
fn workload(server: &Server, what: &str) {
    let Some(vol) = call(
        server,
        &["volume", "create", "--name", "v", "--size", "4194304"],
        what,
    ) else {
        return;
    };
    let (vol_id, path) = (s(&vol["id"]), PathBuf::from(s(&vol["path"])));
    let mut m = Model::new(&path, 4 << 20, 9);
    m.fill(0, 300, Fill::Random);
    m.fill(400, 200, Fill::Text);
    let full = available(&call(
        server,
        &["backup", "create", &vol_id, "--wait"],
        what,
    ));
    m.fill(10, 20, Fill::Random);
    let inc = available(&call(
        server,
        &["backup", "create", &vol_id, "--incremental", "--wait"],
        what,
    ));
    if let (Some(f), Some(i)) = (&full, &inc)
        && let Some(d) = call(
            server,
            &[
                "volume",
                "create",
                "--from-delta",
                "--first-backup",
                f,
                "--second-backup",
                i,
            ],
            what,
        )
    {
        let id = s(&d["id"]);
        call(server, &["volume", "attach", &id], what);
        call(server, &["volume", "detach", &id], what);
        call(server, &["volume", "delete", &id], what);
    }
    if let Some(b) = inc.as_ref().or(full.as_ref()) {
        call(server, &["backup", "restore", b, "--wait"], what);
        call(
            server,
            &["backup", "restore", b, "--volume", &vol_id, "--wait"],
            what,
        );
    }
    call(server, &["gc"], what);
    // A second incremental merged into a synthetic full (the first goes with the full).
    m.fill(50, 10, Fill::Random);
    let inc2 = inc.as_ref().and_then(|_| {
        available(&call(
            server,
            &["backup", "create", &vol_id, "--incremental", "--wait"],
            what,
        ))
    });
    if let Some(i) = &inc2 {
        call(server, &["backup", "merge", i], what);
    }
    if let Some(i) = inc2.as_ref().or(inc.as_ref()) {
        call(server, &["backup", "delete", i, "--wait"], what);
    }
    // A policy run: a backup, retention by merging, a copy to a second repository.
    let dr = server.data_dir.with_file_name("dr");
    let dr = dr.to_str().unwrap();
    call(
        server,
        &[
            "policy",
            "create",
            "p",
            "--schedule",
            "daily 02:00",
            "--incremental",
            "--keep-last",
            "2",
            "--copy-to",
            dr,
        ],
        what,
    );
    call(server, &["policy", "assign", &vol_id, "p"], what);
    m.fill(70, 10, Fill::Random);
    call(server, &["policy", "run", "p", "--wait"], what);
    call(server, &["policy", "unassign", &vol_id, "p"], what);
    call(server, &["policy", "delete", "p"], what);
    call(server, &["recover"], what);
}

/// Polls until no backup is creating or deleting and no volume restoring (30 s at most).
fn assert_settles(server: &Server, what: &str) {
    let start = Instant::now();
    loop {
        let backups = server.json(&["backup", "list"]);
        let volumes = server.json(&["volume", "list"]);
        let running: Vec<String> = backups
            .iter()
            .filter(|b| b["status"] == "creating" || b["status"] == "deleting")
            .chain(volumes.iter().filter(|v| v["status"] == "restoring"))
            .map(|r| format!("{} {}", s(&r["id"]), s(&r["status"])))
            .collect();
        if running.is_empty() {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{what}: still running after 30 s: {running:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// After a clean restart: what says available is whole, and gc leaves nothing behind.
fn assert_consistent(data: &Path, what: &str) {
    let server = Server::start(data);
    for b in server.json(&["backup", "list"]) {
        if b["status"] == "available" {
            let id = s(&b["id"]);
            assert!(
                data.join(format!("repository/backups/{id}.index"))
                    .is_file(),
                "{what}: backup {id} is available without an index"
            );
            let out = server.cli(&["backup", "verify", &id]);
            assert!(
                out.status.success(),
                "{what}: available backup {id} fails verify: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    server.json(&["gc"]);
    let again = server.json1(&["gc"]);
    assert_eq!(
        again["packs_removed"], 0,
        "{what}: a second gc found orphans"
    );
    let tmp: Vec<_> = std::fs::read_dir(data.join("repository/tmp"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(tmp.is_empty(), "{what}: left in tmp/: {tmp:?}");
    server.stop_within(Duration::from_secs(5));
}

fn walk_one(name: &str, action: &str) {
    let what = format!("{name}={action}");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // A first generation without faults, so restart-time paths have something to read.
    {
        let server = Server::start(&data);
        let (vol, path) = server.create_volume("base", 1 << 20);
        let mut m = Model::new(&path, 1 << 20, 3);
        m.fill(0, 50, Fill::Random);
        server.backup(&vol, &[]);
        server.stop_within(Duration::from_secs(5));
    }
    if let Some(server) = start_armed(&data, &what) {
        workload(&server, &what);
        assert_settles(&server, &what);
        // Still answering, and stopping on SIGTERM.
        server.json(&["volume", "list"]);
        server.stop_within(Duration::from_secs(5));
    }
    assert_consistent(&data, &what);
}

#[test]
fn every_failpoint_fails_cleanly_as_an_error_and_as_a_panic() {
    let names = failpoints();
    assert!(
        names.len() >= 20,
        "only {} failpoints: {names:?}",
        names.len()
    );
    let jobs: Vec<(String, &str)> = names
        .iter()
        .flat_map(|n| [(n.clone(), "return"), (n.clone(), "panic")])
        .collect();
    let next = std::sync::Mutex::new(jobs.into_iter());
    let failures = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..WALKERS {
            scope.spawn(|| {
                loop {
                    let job = next.lock().unwrap_or_else(|p| p.into_inner()).next();
                    let Some((name, action)) = job else { return };
                    let walked = std::panic::catch_unwind(|| walk_one(&name, action));
                    if let Err(panic) = walked {
                        let why = panic
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_default();
                        failures
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(format!("{name}={action}: {why}"));
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap_or_else(|p| p.into_inner());
    println!("walked {} failpoints as return and panic", names.len());
    assert!(
        failures.is_empty(),
        "{} of {} runs failed:\n{}",
        failures.len(),
        names.len() * 2,
        failures.join("\n")
    );
}
