//! The repository on S3 (a real SeaweedFS, see `common::s3`), issue 11's items 2 and 3:
//! - kill -9 mid-backup and mid-gc, then restart: nothing incomplete shows available,
//!   gc reclaims the orphans, verify passes on the rest;
//! - an object deleted from the bucket behind the server's back: restore and verify fail
//!   naming the key (verify with DATA_LOSS), a delta volume's read with MEDIUM ERROR;
//! - SeaweedFS stopped mid-backup: the backup ends in `error` naming the endpoint, the
//!   server stays up, the next backup succeeds once SeaweedFS is back;
//! - `repository copy` to a bucket and `recover` on a fresh server pointed at it: every
//!   backup with its change bitmaps, the same delta extents, byte-identical restores.
//!
//! The e2e suites (`backup_e2e`, `delta_e2e`) run their whole bodies on S3 as well.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::delta::{Attached, read16};
use common::s3::SeaweedFs;
use common::*;

const BUCKET: &str = "bd-s3";
const LIMIT: Duration = Duration::from_secs(120);

fn packs(weed: &SeaweedFs) -> Vec<String> {
    weed.list(BUCKET, "repo/packs/")
}

/// A volume of random bytes (compression cannot shorten its backup) with a full backup.
fn volume_with_full(server: &Server, size: u64, seed: u64) -> (String, Model, String) {
    let (vol, path) = server.create_volume("v", size);
    let mut m = Model::new(&path, size, seed);
    let blocks = m.blocks() as usize;
    m.fill(0, blocks, Fill::Random);
    let full = s(&server.backup(&vol, &[])["id"]);
    (vol, m, full)
}

/// Starts a full backup and returns its id once it has stored a few packs.
fn backup_in_flight(server: &Server, weed: &SeaweedFs, vol: &str) -> String {
    let before = packs(weed).len();
    let b = server.json1(&["backup", "create", vol]);
    let id = s(&b["id"]);
    let started = Instant::now();
    while packs(weed).len() < before + 3 {
        assert!(started.elapsed() < LIMIT, "the backup stored no pack");
        std::thread::sleep(Duration::from_millis(50));
    }
    let running = server.json1(&["backup", "show", &id]);
    assert_eq!(running["status"], "creating", "{running}");
    id
}

/// The bucket's packs once no write lands for a second (bounded). A kill -9 cannot take
/// back a request SeaweedFS already has whole: it may finish storing it a moment later.
fn settled_packs(weed: &SeaweedFs) -> usize {
    let started = Instant::now();
    let mut last = packs(weed).len();
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let now = packs(weed).len();
        if now == last || started.elapsed() > Duration::from_secs(15) {
            return now;
        }
        last = now;
    }
}

fn verify(server: &Server, id: &str) {
    let v = server.json1(&["backup", "verify", id]);
    assert_eq!(v["ok"], true, "verify {id}: {v}");
}

#[test]
fn kill_mid_backup_and_mid_gc_then_gc_reclaims_the_orphans() {
    let weed = SeaweedFs::start();
    let flags = weed.serve_flags(BUCKET, "repo");
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start_with(&data, &flags);
    let (vol, _m, full) = volume_with_full(&server, 192 << 20, 11);
    let baseline = packs(&weed).len();
    assert!(baseline > 10, "the full stored its packs: {baseline}");

    // kill -9 mid-backup: the backup is `error` after the restart, its packs orphans.
    let killed = backup_in_flight(&server, &weed, &vol);
    server.kill9();
    let orphaned = settled_packs(&weed);
    assert!(orphaned > baseline, "the killed backup had stored packs");
    let server = Server::start_with(&data, &flags);
    let b = server.json1(&["backup", "show", &killed]);
    assert_eq!(b["status"], "error", "{b}");
    // The restart collected them (it marks interrupted jobs and removes their packs).
    assert_eq!(packs(&weed).len(), baseline, "the restart left orphans");
    let gc = server.json1(&["gc"]);
    assert_eq!(gc["packs_removed"], 0, "{gc}");
    verify(&server, &full);

    // kill -9 mid-gc. A backup that fails at its index leaves orphans, which its
    // failure path collects at once; a failpoint makes each removal slow, and the
    // server is killed once some are gone and some are not.
    server.stop();
    let env = [(
        "FAILPOINTS",
        "repo.index.write=return;repo.pack.remove=sleep(400)",
    )];
    let server = Server::start_with_env(&data, &flags, &env);
    server.json1(&["backup", "create", &vol]);
    let (started, mut most) = (Instant::now(), baseline);
    let left = loop {
        let now = packs(&weed).len();
        if now < most && now > baseline {
            break now;
        }
        most = most.max(now);
        assert!(started.elapsed() < LIMIT, "gc never removed a pack: {now}");
        std::thread::sleep(Duration::from_millis(50));
    };
    server.kill9();
    assert!(most > baseline + 2, "the failed backup left packs: {most}");
    assert!(packs(&weed).len() > baseline, "killed mid-gc: {left}");
    let server = Server::start_with(&data, &flags);
    server.json1(&["gc"]);
    assert_eq!(
        packs(&weed).len(),
        baseline,
        "gc after the kill left orphans"
    );
    let listed = server.json(&["backup", "list"]);
    for b in &listed {
        if b["status"] == "available" {
            verify(&server, &s(&b["id"]));
        }
    }
    assert_eq!(
        listed.iter().filter(|b| b["status"] == "available").count(),
        1,
        "only the full is available: {listed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_objects_are_named_and_a_dead_endpoint_fails_only_the_job() {
    let mut weed = SeaweedFs::start();
    let flags = weed.serve_flags(BUCKET, "repo");
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start_with(&data, &flags);
    let (vol, mut m, full) = volume_with_full(&server, 64 << 20, 12);
    let before: Vec<String> = packs(&weed);
    m.fill(0, 16, Fill::Random);
    let inc = s(&server.backup(&vol, &["--incremental"])["id"]);
    let inc_packs: Vec<String> = packs(&weed)
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    assert_eq!(inc_packs.len(), 1, "the incremental stored one pack");

    // A delta volume over the pair, attached before anything is damaged.
    let delta = server.create_delta(&full, &inc, &[]);
    let delta_id = s(&delta["id"]);
    let att = Attached::from_json(&server.json1(&["volume", "attach", &delta_id]));

    // The incremental's pack deleted behind the server's back.
    weed.delete_object(BUCKET, &inc_packs[0]);
    let key = format!("s3://{BUCKET}/{}", inc_packs[0]);
    let err = server.fails(&["backup", "verify", &inc], "DATA_LOSS");
    assert!(err.contains(&key), "verify names the key: {err}");
    // A restore is a job: it ends `error` with the same message.
    let err = server.fails(&["backup", "restore", &inc, "--wait"], "is damaged");
    assert!(err.contains(&key), "restore names the key: {err}");
    let mut i = att.login().await;
    let r = read16(&mut i, 0, 8, att.block_size).await;
    assert_eq!(r.status, 2, "a read of a missing object must fail");
    assert_eq!(
        r.sense_code().map(|s| (s.0, s.1)),
        Some((3, 0x11)),
        "MEDIUM ERROR / UNRECOVERED READ ERROR"
    );
    i.logout().await.expect("logout");
    server.json1(&["volume", "detach", &delta_id]);
    verify(&server, &full);

    // SeaweedFS stopped mid-backup: the job fails naming the endpoint; the server
    // answers throughout; once SeaweedFS is back the next backup is exact.
    let big = dir.path().join("big.img");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(192 << 20)
        .unwrap();
    let mut model = Model::new(&big, 192 << 20, 13);
    let blocks = model.blocks() as usize;
    model.fill(0, blocks, Fill::Random);
    let big_vol = server.register("big", &big);
    server.backup(&big_vol, &[]);
    model.fill(0, blocks, Fill::Random);
    let running = backup_in_flight(&server, &weed, &big_vol);
    weed.stop();
    let failed = server.wait_backup(&running, LIMIT, |b| b["status"] != "creating");
    assert_eq!(failed["status"], "error", "{failed}");
    let endpoint = weed.endpoint.trim_start_matches("http://").to_string();
    assert!(
        s(&failed["error"]).contains(&endpoint),
        "the error names the endpoint: {failed}"
    );
    server.json(&["volume", "list"]);
    weed.restart();
    let next = s(&server.backup(&big_vol, &[])["id"]);
    verify(&server, &next);
    let restored = server.restore(&next, None);
    assert_eq!(file_hash(Path::new(&s(&restored["path"]))), model.hash());
}

/// `blockdelta repository copy` of the repository of `data` to s3://dr-site/site-b.
fn copy_to_bucket(data: &Path, endpoint: &str) -> serde_json::Value {
    let copy = Command::new(BIN)
        .args(["--json", "repository", "copy", "--data-dir"])
        .arg(data)
        .args(["--to", "s3://dr-site/site-b", "--to-s3-endpoint", endpoint])
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(copy.status.success(), "repository copy failed");
    serde_json::from_slice(&copy.stdout).unwrap()
}

#[test]
fn a_copy_in_a_bucket_recovers_every_backup_on_a_fresh_server() {
    let weed = SeaweedFs::start();
    weed.create_bucket("dr-site");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("main");
    // Its own repository is local; the endpoint is for `backup copy` to the bucket.
    let main = Server::start_with(&data, &["--s3-endpoint", &weed.endpoint]);
    let (vol, path) = main.create_volume("gen", 64 << 20);
    let mut m = Model::new(&path, 64 << 20, 21);
    m.populate(40);
    let mut backups = vec![s(&main.backup(&vol, &[])["id"])];
    let mut hashes = vec![m.hash()];
    for round in 0..2 {
        for _ in 0..20 {
            let b = m.random_block();
            m.fill(b, 1 + round, Fill::Text);
        }
        backups.push(s(&main.backup(&vol, &["--incremental"])["id"]));
        hashes.push(m.hash());
    }
    let bitmaps: Vec<Vec<u64>> = backups.iter().map(|b| main.changed_blocks(b)).collect();
    let extents = main.json1(&["changed-blocks", &backups[0], &backups[2]]);

    // The copy runs beside the live server, on its data dir's repository.
    let copied = copy_to_bucket(&data, &weed.endpoint);
    assert!(copied["objects_copied"].as_u64().unwrap() > 3, "{copied}");
    // A second copy finds everything there already (manifests are rewritten).
    let again = copy_to_bucket(&data, &weed.endpoint);
    assert!(
        again["objects_copied"].as_u64().unwrap() < copied["objects_copied"].as_u64().unwrap() / 2,
        "{again}"
    );
    // `backup copy` of the newest backup alone takes its whole chain along.
    let chain = main.json1(&[
        "backup",
        "copy",
        &backups[2],
        "--to",
        "s3://dr-site/per-backup",
    ]);
    assert!(chain["objects"].as_u64().unwrap() > 3, "{chain}");
    drop(main);
    let per_backup = Server::start_with(
        &dir.path().join("dr-per-backup"),
        &[
            "--repository",
            "s3://dr-site/per-backup",
            "--s3-endpoint",
            &weed.endpoint,
        ],
    );
    let r = per_backup.json1(&["recover"]);
    assert_eq!(r["backups_recovered"], 3, "{r}");
    let v = per_backup.restore(&backups[2], None);
    assert_eq!(
        &file_hash(Path::new(&s(&v["path"]))),
        &hashes[2],
        "restore of the copied chain's newest backup"
    );
    drop(per_backup);

    // The main site is gone: a fresh server on the bucket, `recover` with no arguments.
    let dr = Server::start_with(
        &dir.path().join("dr"),
        &[
            "--repository",
            "s3://dr-site/site-b",
            "--s3-endpoint",
            &weed.endpoint,
        ],
    );
    dr.fails(
        &["recover", "--repository", "s3://dr-site/elsewhere"],
        "INVALID_ARGUMENT",
    );
    let r = dr.json1(&["recover"]);
    assert_eq!(r["backups_recovered"], 3, "{r}");
    for (b, bitmap) in backups.iter().zip(&bitmaps) {
        assert_eq!(&dr.changed_blocks(b), bitmap, "change bitmap of {b}");
        verify(&dr, b);
    }
    assert_eq!(
        dr.json1(&["changed-blocks", &backups[0], &backups[2]])["extents"],
        extents["extents"],
        "the same delta extents after recovery"
    );
    for (b, hash) in backups.iter().zip(&hashes) {
        let v = dr.restore(b, None);
        assert_eq!(
            &file_hash(Path::new(&s(&v["path"]))),
            hash,
            "restore of {b}"
        );
    }
}

/// Two servers on one bucket (separate catalogs): a gc on one while the other writes a
/// backup spares the packs that backup has stored but no index names yet (its marker
/// under `running/`), and the backup then verifies.
#[test]
fn gc_on_another_server_spares_a_running_backups_packs() {
    let weed = SeaweedFs::start();
    let flags = weed.serve_flags(BUCKET, "repo");
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let dir = tempfile::tempdir().unwrap();
    let writer = Server::start_with(&dir.path().join("a"), &flags);
    let collector = Server::start_with(&dir.path().join("b"), &flags);
    let (vol, path) = writer.create_volume("v", 192 << 20);
    let mut m = Model::new(&path, 192 << 20, 31);
    let blocks = m.blocks() as usize;
    m.fill(0, blocks, Fill::Random);
    let running = backup_in_flight(&writer, &weed, &vol);
    let stored = packs(&weed).len();
    let gc = collector.json1(&["gc"]);
    assert_eq!(gc["packs_removed"], 0, "{gc}");
    assert!(
        packs(&weed).len() >= stored,
        "the running backup's packs are there"
    );
    let done = writer.wait_backup(&running, LIMIT, |b| b["status"] != "creating");
    assert_eq!(done["status"], "available", "{done}");
    verify(&writer, &running);
    // Once it is done, its marker is gone, and a gc anywhere keeps what its index names.
    assert!(weed.list(BUCKET, "repo/running/").is_empty());
    collector.json1(&["gc"]);
    verify(&writer, &running);
}
