//! Active-active nodes (issue 12): three `blockdelta serve` processes on one throwaway
//! PostgreSQL catalog (`common::postgres`) and one SeaweedFS bucket (`common::s3`):
//! - a backup made on one node is visible on the others at once, restores byte-identical
//!   on a third, and a delta volume made on one and attached on another gives the
//!   expected extents to qemu-img (libiscsi's GET LBA STATUS);
//! - kill -9 of the node running a backup: another node fails it within the lease,
//!   `service list` shows the dead node down, the next backup elsewhere is exact, and gc
//!   on a survivor removes the orphans while a third node's backup runs and verifies;
//! - 20 concurrent incrementals of one volume over three nodes: one runs, the rest are
//!   FAILED_PRECONDITION, the chain stays linear; quota races across nodes hold.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use common::delta::{coarse_extents, qemu_img_map};
use common::postgres::Postgres;
use common::s3::SeaweedFs;
use common::*;
use serde_json::Value;

const BUCKET: &str = "bd-cluster";
const LEASE: &str = "2";
const LIMIT: Duration = Duration::from_secs(60);

struct Cluster {
    _pg: Postgres,
    weed: SeaweedFs,
    catalog: String,
    /// `serve` flags naming the bucket (made once).
    repository: Vec<String>,
    dir: tempfile::TempDir,
    token: String,
}

impl Cluster {
    fn new() -> Cluster {
        let pg = Postgres::start();
        let catalog = pg.database("blockdelta");
        let weed = SeaweedFs::start();
        let repository = weed.serve_flags(BUCKET, "repo");
        Cluster {
            _pg: pg,
            weed,
            catalog,
            repository,
            dir: tempfile::tempdir().unwrap(),
            token: String::new(),
        }
    }

    /// Starts node `name` with its own data dir on the shared catalog and bucket. The
    /// first node's admin token is every node's (one catalog, one set of tokens).
    fn node(&mut self, name: &str) -> Server {
        self.node_with_env(name, &[])
    }

    /// As `node`, with more environment for the server (FAILPOINTS).
    fn node_with_env(&mut self, name: &str, env: &[(&str, &str)]) -> Server {
        let data = self.dir.path().join(name);
        std::fs::create_dir_all(&data).unwrap();
        if !self.token.is_empty() {
            std::fs::write(data.join("admin.token"), &self.token).unwrap();
        }
        let mut flags = self.repository.clone();
        flags.extend(
            [
                "--catalog",
                &self.catalog,
                "--node-name",
                name,
                "--lease-seconds",
                LEASE,
                "--gc-clock-skew-seconds",
                "0",
            ]
            .map(String::from),
        );
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let server = Server::start_with_env(&data, &flags, env);
        if self.token.is_empty() {
            self.token = server.token();
            assert!(
                !self.token.is_empty(),
                "the first node made the admin token"
            );
        }
        server
    }
}

fn packs(weed: &SeaweedFs) -> BTreeSet<String> {
    weed.list(BUCKET, "repo/packs/").into_iter().collect()
}

fn verify(server: &Server, id: &str) {
    let v = server.json1(&["backup", "verify", id]);
    assert_eq!(v["ok"], true, "verify {id}: {v}");
}

/// `service list --json`: one record per node.
fn services(server: &Server) -> Vec<Value> {
    server.json(&["service", "list"])
}

fn service_state(server: &Server, name: &str) -> String {
    services(server)
        .iter()
        .find(|s| s["name"] == name)
        .map(|n| s(&n["state"]))
        .unwrap_or_default()
}

fn until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "{what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn sparse_file(path: &Path, size: u64) {
    std::fs::File::create(path).unwrap().set_len(size).unwrap();
}

/// A registered volume of `size` bytes with seeded content, on a path every node sees.
fn volume(server: &Server, dir: &Path, name: &str, size: u64, seed: u64) -> (String, Model) {
    let path = dir.join(format!("{name}.img"));
    sparse_file(&path, size);
    let mut m = Model::new(&path, size, seed);
    m.populate(24);
    (server.register(name, &path), m)
}

#[test]
fn three_nodes_share_backups_restores_and_delta_exports() {
    let mut c = Cluster::new();
    let a = c.node("node-a");
    let b = c.node("node-b");
    let cn = c.node("node-c");
    let names: Vec<String> = services(&b).iter().map(|n| s(&n["name"])).collect();
    assert_eq!(names, ["node-a", "node-b", "node-c"]);
    assert!(services(&cn).iter().all(|s| s["state"] == "up"));

    let size = 64 << 20;
    let (vol, mut m) = volume(&a, c.dir.path(), "shared", size, 7);
    let full = a.backup(&vol, &[]);
    let full_id = s(&full["id"]);
    // The same record, at once, on the other nodes.
    for other in [&b, &cn] {
        let seen = other.json1(&["backup", "show", &full_id]);
        assert_eq!(seen["status"], "available", "{seen}");
        assert_eq!(seen["content_hash"], full["content_hash"]);
    }
    // Scattered writes, then an incremental on B.
    let mut written = BTreeSet::new();
    for _ in 0..40 {
        let block = m.random_block();
        m.fill(block, 1, Fill::Random);
        written.insert(block);
    }
    let second_hash = m.hash();
    let inc = b.backup(&vol, &["--incremental"]);
    let inc_id = s(&inc["id"]);
    assert_eq!(inc["parent"], full_id.as_str(), "{inc}");
    assert_eq!(
        a.changed_blocks(&inc_id),
        written.iter().copied().collect::<Vec<_>>()
    );

    // Restore on C: byte-identical to the volume at the incremental.
    let restored = cn.restore(&inc_id, None);
    assert_eq!(file_hash(Path::new(&s(&restored["path"]))), second_hash);

    // A delta volume made on B, attached on C (asked for through B with --node).
    let delta = b.create_delta(&full_id, &inc_id, &["--change-block-size", "4096"]);
    let delta_id = s(&delta["id"]);
    let att = b.json1(&["volume", "attach", &delta_id, "--node", "node-c"]);
    assert_eq!(att["node"], "node-c", "{att}");
    assert_eq!(att["portal"], cn.iscsi.as_str(), "C's portal: {att}");
    // A call made on another node about C's attachment names C.
    let wrong = a.fails(&["volume", "detach", &delta_id], "FAILED_PRECONDITION");
    assert!(wrong.contains("node-c"), "{wrong}");
    let url = format!("iscsi://{}/{}/0", cn.iscsi, s(&att["target_iqn"]));
    assert_eq!(
        qemu_img_map(&url),
        coarse_extents(&written, 4096, size),
        "the delta's extents through libiscsi on node C"
    );
    let shown = a.json1(&["volume", "show", &delta_id]);
    assert_eq!(shown["attachment"]["node"], "node-c", "{shown}");
    assert_eq!(shown["attachment"]["state"], "attached", "{shown}");
    cn.json1(&["volume", "detach", &delta_id]);
    drop((a, b, cn));
}

#[test]
fn a_dead_nodes_backup_fails_within_the_lease_and_gc_spares_a_running_one() {
    let mut c = Cluster::new();
    let a = c.node("node-a");
    let b = c.node("node-b");
    let cn = c.node("node-c");
    let size = 384 << 20;
    let path = c.dir.path().join("big.img");
    sparse_file(&path, size);
    let mut m = Model::new(&path, size, 11);
    let blocks = m.blocks() as usize;
    m.fill(0, blocks, Fill::Random);
    let vol = a.register("big", &path);

    // A attached a volume, then starts a full backup and dies with packs stored.
    let (small, _) = volume(&a, c.dir.path(), "small", 8 << 20, 3);
    a.json1(&["volume", "attach", &small]);
    let before = packs(&c.weed);
    let running = a.json1(&["backup", "create", &vol]);
    let id = s(&running["id"]);
    until(LIMIT, "the backup stores packs", || {
        packs(&c.weed).len() >= before.len() + 2
    });
    assert_eq!(b.json1(&["backup", "show", &id])["status"], "creating");
    a.kill9();
    let orphans: BTreeSet<String> = packs(&c.weed).difference(&before).cloned().collect();
    assert!(!orphans.is_empty());

    // Within the lease (and a heartbeat), another node fails it; A shows down.
    let killed = Instant::now();
    until(
        Duration::from_secs(15),
        "the lost backup becomes error",
        || b.json1(&["backup", "show", &id])["status"] == "error",
    );
    let lost = b.json1(&["backup", "show", &id]);
    assert!(s(&lost["error"]).contains("node node-a lost"), "{lost}");
    assert!(
        killed.elapsed() < Duration::from_secs(10),
        "{:?}",
        killed.elapsed()
    );
    until(Duration::from_secs(15), "node-a is down", || {
        service_state(&cn, "node-a") == "down"
    });
    assert_eq!(service_state(&cn, "node-b"), "up");
    // Its attachment is lost, and attaches again on C.
    let shown = b.json1(&["volume", "show", &small]);
    assert_eq!(shown["attachment"]["state"], "lost", "{shown}");
    let again = b.json1(&["volume", "attach", &small, "--node", "node-c"]);
    assert_eq!(again["node"], "node-c", "{again}");

    // The next backup of the volume, on C, is exact.
    let next = cn.backup(&vol, &[]);
    let next_id = s(&next["id"]);
    verify(&b, &next_id);
    let restored = b.restore(&next_id, None);
    assert_eq!(file_hash(Path::new(&s(&restored["path"]))), m.hash());

    // A backup runs on C while B collects: the orphans go, the running backup's packs
    // stay, and it verifies.
    let (other, mut om) = volume(&cn, c.dir.path(), "other", 512 << 20, 5);
    let oblocks = om.blocks() as usize;
    om.fill(0, oblocks, Fill::Random);
    let stored = packs(&c.weed);
    let in_flight = s(&cn.json1(&["backup", "create", &other])["id"]);
    until(LIMIT, "the third node's backup stores packs", || {
        packs(&c.weed).len() > stored.len()
    });
    assert_eq!(
        cn.json1(&["backup", "show", &in_flight])["status"],
        "creating"
    );
    let gc = b.json1(&["gc"]);
    assert!(
        gc["packs_removed"].as_u64().unwrap() >= orphans.len() as u64,
        "{gc}"
    );
    let left = packs(&c.weed);
    assert!(orphans.iter().all(|o| !left.contains(o)), "orphans removed");
    let done = cn.wait_backup(&in_flight, LIMIT, |b| b["status"] != "creating");
    assert_eq!(done["status"], "available", "{done}");
    verify(&b, &in_flight);

    // A comes back: it does not resume the job another node failed.
    let a = c.node("node-a");
    assert_eq!(a.json1(&["backup", "show", &id])["status"], "error");
    until(Duration::from_secs(15), "node-a is up again", || {
        service_state(&b, "node-a") == "up"
    });

    verify(&a, &next_id);
}

#[test]
fn concurrent_incrementals_over_three_nodes_keep_one_chain_and_quotas_hold() {
    let mut c = Cluster::new();
    let nodes = [c.node("node-a"), c.node("node-b"), c.node("node-c")];
    let (vol, mut m) = volume(&nodes[0], c.dir.path(), "busy", 64 << 20, 9);
    let full = s(&nodes[0].backup(&vol, &[])["id"]);
    m.fill(100, 50, Fill::Random);

    // 20 requests at once, spread over the nodes: exactly one is accepted.
    let outcomes: Vec<(bool, String)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..20)
            .map(|i| {
                let node = &nodes[i % 3];
                let vol = vol.clone();
                scope.spawn(move || {
                    let out = node.cli(&["--json", "backup", "create", &vol, "--incremental"]);
                    let text = if out.status.success() {
                        String::from_utf8_lossy(&out.stdout).into_owned()
                    } else {
                        String::from_utf8_lossy(&out.stderr).into_owned()
                    };
                    (out.status.success(), text)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let accepted: Vec<&String> = outcomes.iter().filter(|o| o.0).map(|o| &o.1).collect();
    assert_eq!(accepted.len(), 1, "one runs: {outcomes:?}");
    for (_, refusal) in outcomes.iter().filter(|o| !o.0) {
        assert!(
            refusal.contains("FAILED_PRECONDITION") && refusal.contains("busy"),
            "{refusal}"
        );
    }
    let inc: Value = serde_json::from_str(accepted[0].trim()).unwrap();
    let inc_id = s(&inc["id"]);
    nodes[1].wait_backup(&inc_id, LIMIT, |b| b["status"] == "available");
    let chain = nodes[2].json(&["backup", "list", "--volume", &vol]);
    assert_eq!(chain.len(), 2, "{chain:?}");
    assert_eq!(inc["parent"], full.as_str());
    // A delete of a full on one node races an incremental on it on another: they never
    // both go through on the same full (the incremental would lose its parent).
    for round in 0..5 {
        let full = s(&nodes[round % 3].backup(&vol, &[])["id"]);
        m.fill(200 + round as u64 * 10, 5, Fill::Random);
        let (deleted, incremental) = std::thread::scope(|scope| {
            let d = scope.spawn(|| nodes[(round + 1) % 3].cli(&["backup", "delete", &full]));
            let i = scope.spawn(|| {
                nodes[(round + 2) % 3].cli(&["--json", "backup", "create", &vol, "--incremental"])
            });
            (d.join().unwrap(), i.join().unwrap())
        });
        let err = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(
            deleted.status.success() || incremental.status.success(),
            "round {round}: delete ({}) or incremental ({}) goes through",
            err(&deleted),
            err(&incremental)
        );
        if incremental.status.success() {
            let inc: Value = serde_json::from_slice(&incremental.stdout).unwrap();
            // On the full being deleted only if that delete was refused (else the delete
            // went first and the incremental took the previous chain).
            if inc["parent"] == full.as_str() {
                assert!(
                    !deleted.status.success(),
                    "round {round}: both went through: {inc}"
                );
                assert!(err(&deleted).contains("dependent"), "{}", err(&deleted));
            }
            let done = nodes[0].wait_backup(&s(&inc["id"]), LIMIT, |b| b["status"] != "creating");
            assert_eq!(done["status"], "available", "{done}");
            verify(&nodes[1], &s(&inc["id"]));
        }
        if deleted.status.success() {
            until(LIMIT, "the delete ends", || {
                !nodes[0].cli(&["backup", "show", &full]).status.success()
            });
        }
    }

    // Every chain is linear, and every parent is there.
    let all = nodes[1].json(&["backup", "list", "--volume", &vol]);
    let mut children = std::collections::BTreeMap::<String, usize>::new();
    for b in all.iter().filter(|b| b["status"] == "available") {
        if let Some(parent) = b["parent"].as_str() {
            let p = all
                .iter()
                .find(|x| x["id"] == parent)
                .expect("parent listed");
            assert_eq!(p["status"], "available", "{p}");
            *children.entry(parent.to_string()).or_default() += 1;
        }
    }
    assert!(children.values().all(|n| *n == 1), "{children:?}");

    // Quota races across nodes: a project allowed 3 backups gets 3 of 12 concurrent ones.
    let admin = &nodes[0];
    admin.json1(&["project", "create", "tenant"]);
    admin.json1(&[
        "quota",
        "set",
        "tenant",
        "--backups",
        "3",
        "--volumes",
        "20",
    ]);
    let token =
        s(&admin.json1(&["--project", "tenant", "token", "create", "--role", "member"])["token"]);
    let mut vols = Vec::new();
    for i in 0..12 {
        let out = nodes[i % 3].cli_as(
            &token,
            &[
                "--json",
                "volume",
                "create",
                "--name",
                &format!("t{i}"),
                "--size",
                "1M",
            ],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        vols.push(s(&v["id"]));
    }
    let created: Vec<bool> = std::thread::scope(|scope| {
        let handles: Vec<_> = vols
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let node = &nodes[i % 3];
                let token = token.clone();
                scope.spawn(move || {
                    node.cli_as(&token, &["backup", "create", v])
                        .status
                        .success()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(created.iter().filter(|c| **c).count(), 3, "{created:?}");
}

/// A node whose heartbeat fails (cut off from the catalog) loses its job to the others;
/// when its backup then finishes, it does not become available. A node killed during a
/// restore: its target volume becomes `error` and the backup `available` again.
#[cfg(feature = "failpoints")]
#[test]
fn a_node_past_its_lease_cannot_finish_and_a_lost_restore_fails_its_volume() {
    let mut c = Cluster::new();
    let b = c.node("node-b");
    let a = c.node_with_env(
        "node-a",
        &[(
            "FAILPOINTS",
            "catalog.heartbeat=return;repo.pack.write=sleep(1000)",
        )],
    );
    let size = 256 << 20;
    let path = c.dir.path().join("slow.img");
    sparse_file(&path, size);
    let mut m = Model::new(&path, size, 21);
    let blocks = m.blocks() as usize;
    m.fill(0, blocks, Fill::Random);
    let vol = a.register("slow", &path);
    let id = s(&a.json1(&["backup", "create", &vol])["id"]);
    until(
        Duration::from_secs(15),
        "B fails the job of a node past its lease",
        || b.json1(&["backup", "show", &id])["status"] == "error",
    );
    // A's job runs on past its lease to its end, and is refused the completion: it
    // records that it lost the job (the failure then removes the marker B may have left).
    until(LIMIT, "A's job ends, refused", || {
        s(&b.json1(&["backup", "show", &id])["error"]).contains("lost its lease")
    });
    for node in [&a, &b] {
        let after = node.json1(&["backup", "show", &id]);
        assert_eq!(after["status"], "error", "{after}");
    }
    b.fails(&["backup", "verify", &id], "FAILED_PRECONDITION");
    drop(a);

    // A restore on C, killed: its volume ends `error`, its backup `available`.
    let (small, _) = volume(&b, c.dir.path(), "small", 64 << 20, 4);
    let full = s(&b.backup(&small, &[])["id"]);
    let cn = c.node_with_env(
        "node-c",
        &[("FAILPOINTS", "engine.restore.write=sleep(500)")],
    );
    let target = cn.json1(&["backup", "restore", &full]);
    let target_id = s(&target["id"]);
    assert_eq!(target["status"], "restoring", "{target}");
    cn.kill9();
    until(
        Duration::from_secs(15),
        "the lost restore's volume becomes error",
        || b.json1(&["volume", "show", &target_id])["status"] == "error",
    );
    let lost = b.json1(&["volume", "show", &target_id]);
    assert!(s(&lost["error"]).contains("node node-c lost"), "{lost}");
    assert_eq!(b.json1(&["backup", "show", &full])["status"], "available");
    verify(&b, &full);
}

/// PostgreSQL killed under a node: calls fail UNAVAILABLE naming the catalog, a running
/// backup ends (never stays `creating`), and once the database is back everything works
/// again without a restart of the node.
#[cfg(feature = "failpoints")]
#[test]
fn a_catalog_outage_fails_calls_clearly_and_wedges_nothing() {
    let pg = Postgres::start();
    let url = pg.database("blockdelta");
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with_env(
        &dir.path().join("data"),
        &["--catalog", &url, "--lease-seconds", LEASE],
        &[("FAILPOINTS", "repo.pack.write=sleep(300)")],
    );
    let (vol, path) = server.create_volume("v", 96 << 20);
    let mut m = Model::new(&path, 96 << 20, 8);
    let blocks = m.blocks() as usize;
    m.fill(0, blocks, Fill::Random);
    let id = s(&server.json1(&["backup", "create", &vol])["id"]);
    pg.kill9();
    let down = server.fails(&["volume", "list"], "UNAVAILABLE");
    assert!(down.contains("catalog"), "{down}");
    server.fails(&["backup", "create", &vol], "UNAVAILABLE");
    std::thread::sleep(Duration::from_secs(3));
    pg.restart();
    until(LIMIT, "the backup's last state reaches the catalog", || {
        let out = server.cli(&["--json", "backup", "show", &id]);
        out.status.success() && !String::from_utf8_lossy(&out.stdout).contains("\"creating\"")
    });
    let after = server.json1(&["backup", "show", &id]);
    if after["status"] == "available" {
        verify(&server, &id);
    } else {
        assert_eq!(after["status"], "error", "{after}");
    }
    // The volume is free again, and the next backup is exact.
    until(LIMIT, "the volume's job is released", || {
        server
            .cli(&["backup", "create", &vol, "--wait"])
            .status
            .success()
    });
    let restored = server.restore(
        &s(&server.json(&["backup", "list"]).last().unwrap()["id"]),
        None,
    );
    assert_eq!(file_hash(Path::new(&s(&restored["path"]))), m.hash());
    let stopped = server.stop();
    assert!(stopped.success(), "{stopped:?}");
}
