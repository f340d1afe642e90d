//! Policies, retention by merging and DR copies (issue 13, DESIGN.md §12):
//! - acceptance 1: a policy `every 2s --keep-last 3` on a volume rewritten between runs
//!   keeps exactly 3 backups after 7 runs, the oldest a synthetic full; each restores as
//!   the volume was at its run, the kept bitmaps equal the writes between them, and the
//!   repository after gc is within 1.3x of (volume data + the kept changes);
//! - acceptance 3: a server stopped across several slots runs one catch-up, not one per
//!   missed slot; runs are audited `source: policy NAME`;
//! - acceptance 4: a chain copied to a second repository (by hand and by a policy's
//!   `--copy-to`), the first repository and catalog deleted, `recover` on a fresh server
//!   there gives every backup back: restores identical, deltas equal;
//! - acceptance 5: an exported record brings deleted catalog rows back; a changed or
//!   foreign url is refused;
//! - acceptance 7: `report --json` matches the catalog; `/metrics` parses with
//!   `prometheus_client`'s parser and its counters move by what the test did;
//! - bad specs and refusals answer with clear errors.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::postgres::CatalogKind;
use common::*;
use serde_json::Value;

const SIZE: u64 = 16 << 20;

/// Single blocks all over the volume, a few runs of text and random data, one run zeroed.
fn scattered_writes(m: &mut Model) {
    for _ in 0..80 {
        let b = m.random_block();
        m.fill(b, 1, Fill::Random);
    }
    for fill in [Fill::Text, Fill::Random] {
        let at = m.random_start(24);
        m.fill(at, 24, fill);
    }
    let at = m.random_start(8);
    m.fill(at, 8, Fill::Zero);
}

fn seeded_volume(server: &Server, name: &str, seed: u64) -> (String, Model) {
    let (vol, path) = server.create_volume(name, SIZE);
    let mut model = Model::new(&path, SIZE, seed);
    let blocks = model.blocks() as usize;
    model.fill(0, blocks / 2, Fill::Random);
    model.fill(blocks as u64 / 2, blocks / 4, Fill::Text);
    (vol, model)
}

fn runs(server: &Server, policy: &str) -> Vec<Value> {
    server.json1(&["policy", "show", policy])["runs"]
        .as_array()
        .unwrap()
        .clone()
}

/// Waits (at most `limit`) until the policy has `n` finished runs; returns them.
fn finished_runs(server: &Server, policy: &str, n: usize, limit: Duration) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let done: Vec<Value> = runs(server, policy)
            .into_iter()
            .filter(|r| r["outcome"] != "running")
            .collect();
        if done.len() >= n {
            return done;
        }
        assert!(
            start.elapsed() < limit,
            "policy {policy}: {} of {n} runs ended in {limit:?}",
            done.len()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn restores_as(server: &Server, id: &str, want: &[u8]) {
    let v = server.restore(id, None);
    let got = std::fs::read(s(&v["path"])).unwrap();
    assert!(got == want, "backup {id} restored different bytes");
    server.json1(&["volume", "delete", &s(&v["id"])]);
}

/// Bytes of every file under `dir`.
fn bytes_under(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        total += if meta.is_dir() {
            bytes_under(&entry.path())
        } else {
            meta.len()
        };
    }
    total
}

fn allocated(state: &[u8]) -> u64 {
    state
        .chunks(4096)
        .filter(|c| c.iter().any(|&b| b != 0))
        .count() as u64
}

#[test]
fn a_policy_keeps_three_generations_by_merging() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data);
    let (vol, mut model) = seeded_volume(&server, "v", 41);
    let p = server.json1(&[
        "policy",
        "create",
        "gens",
        "--schedule",
        "every 2s",
        "--incremental",
        "--keep-last",
        "3",
    ]);
    assert_eq!(p["keep_last"], 3, "{p}");
    server.json1(&["policy", "assign", &vol, "gens"]);
    // The volume as each run saw it. Writes go in right after a run ends, and only while
    // the next slot is still more than 0.4 s away (on a slow machine a run may end late);
    // otherwise the next run sees the volume unchanged.
    let mut states = Vec::new();
    let mut rounds_written = 0;
    for k in 1..=7 {
        let done = finished_runs(&server, "gens", k, Duration::from_secs(60));
        let run = &done[k - 1];
        assert_eq!(run["outcome"], "succeeded", "{run}");
        states.push((s(&run["backup"]), model.data.clone()));
        let next_slot = unix_ms(&s(&run["slot"])) + 2000;
        if k < 7 && now_ms() + 400 < next_slot {
            scattered_writes(&mut model);
            rounds_written += 1;
        }
    }
    server.json1(&["policy", "unassign", &vol, "gens"]);
    // A run the scheduler started before the unassign ends first (it saw the last state).
    let started = runs(&server, "gens").len();
    let all = finished_runs(&server, "gens", started, Duration::from_secs(60));
    assert!((7..=8).contains(&all.len()), "{all:?}");
    if all.len() == 8 {
        states.push((s(&all[7]["backup"]), model.data.clone()));
    }
    assert!(
        rounds_written >= 3,
        "only {rounds_written} of 6 rounds wrote between runs"
    );
    let n = states.len();
    let listed = server.json(&["backup", "list", "--volume", &vol]);
    let ids: Vec<String> = listed.iter().map(|b| s(&b["id"])).collect();
    let kept: Vec<String> = states[n - 3..].iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(ids, kept, "{listed:?}");
    assert_eq!(listed[0]["kind"], "full", "{}", listed[0]);
    assert_eq!(listed[0]["merged"], true, "{}", listed[0]);
    assert_eq!(listed[1]["kind"], "incremental");
    // What each run pruned: from the 4th run on, the one backup that fell out.
    for (k, run) in all.iter().enumerate() {
        let pruned = run["pruned"].as_array().unwrap();
        let want: Vec<String> = if k >= 3 {
            vec![states[k - 3].0.clone()]
        } else {
            vec![]
        };
        let got: Vec<String> = pruned.iter().map(s).collect();
        assert_eq!(got, want, "run {k}: {run}");
    }
    for pair in states[n - 3..].windows(2) {
        assert_eq!(
            server.changed_blocks(&pair[1].0),
            diff_blocks(&pair[0].1, &pair[1].1),
            "bitmap of {}",
            pair[1].0
        );
    }
    server.json1(&["gc"]);
    for (id, state) in &states[n - 3..] {
        restores_as(&server, id, state);
    }
    // Volume data (allocated blocks of the oldest kept) + the kept changes, raw.
    let kept_changes: u64 = states[n - 2..]
        .iter()
        .map(|(id, _)| server.changed_blocks(id).len() as u64)
        .sum();
    let logical = (allocated(&states[n - 3].1) + kept_changes) * 4096;
    let repo = data.join("repository");
    let stored = bytes_under(&repo.join("packs")) + bytes_under(&repo.join("backups"));
    let ratio = stored as f64 / logical as f64;
    eprintln!("repository {stored} bytes for {logical} logical: {ratio:.3}x");
    assert!(ratio <= 1.3, "repository {stored} bytes > 1.3 x {logical}");
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Unix ms of one of our timestamps (`YYYY-MM-DDTHH:MM:SS.mmmZ`).
fn unix_ms(t: &str) -> i64 {
    let n = |r: std::ops::Range<usize>| t[r].parse::<i64>().unwrap();
    let (y, m, d) = (n(0..4), n(5..7), n(8..10));
    let y = if m <= 2 { y - 1 } else { y };
    let (era, yoe) = (y.div_euclid(400), y.rem_euclid(400));
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    (days * 86_400 + n(11..13) * 3600 + n(14..16) * 60 + n(17..19)) * 1000 + n(20..23)
}

/// On both catalogs: the slot is taken by a conditional update each database runs.
fn a_restarted_scheduler_runs_one_catch_up(catalog: CatalogKind) {
    let cat = catalog.catalog();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = cat.start(&data, &[], &[]);
    let (vol, _model) = seeded_volume(&server, "v", 42);
    server.json1(&[
        "policy",
        "create",
        "often",
        "--schedule",
        "every 2s",
        "--incremental",
    ]);
    server.json1(&["policy", "assign", &vol, "often"]);
    let before = finished_runs(&server, "often", 1, Duration::from_secs(30));
    assert_eq!(before[0]["outcome"], "succeeded", "{}", before[0]);
    server.stop();
    // Down across two or three slots.
    std::thread::sleep(Duration::from_millis(5500));
    let server = cat.start(&data, &[], &[]);
    let started = unix_ms(&s(&server.json1(&["service", "list"])["started_at"]));
    let after = finished_runs(&server, "often", before.len() + 1, Duration::from_secs(30));
    server.json1(&["policy", "unassign", &vol, "often"]);
    let all = runs(&server, "often");
    // (slot, started) of each run; those started before the restart ran (or were
    // interrupted) before the stop.
    let slots: Vec<(i64, i64)> = all
        .iter()
        .map(|r| (unix_ms(&s(&r["slot"])), unix_ms(&s(&r["started_at"]))))
        .collect();
    let newest_before = slots
        .iter()
        .filter(|(_, at)| *at < started)
        .map(|(slot, _)| *slot)
        .max()
        .unwrap();
    let catch_ups: Vec<&(i64, i64)> = slots
        .iter()
        .filter(|&&(slot, at)| at >= started && slot > newest_before && slot <= started)
        .collect();
    assert_eq!(
        catch_ups.len(),
        1,
        "slots {slots:?}, restarted at {started}"
    );
    assert!(
        after.iter().all(|r| r["outcome"] == "succeeded"),
        "{after:?}"
    );
    // Every run is a normal backup, audited as the policy's.
    let audit = server.cli(&["audit"]);
    let audit = String::from_utf8_lossy(&audit.stdout);
    let by_policy = audit
        .lines()
        .filter(|l| l.contains("backup.create") && l.contains("\"source\":\"policy often\""))
        .count();
    let with_backup = all.iter().filter(|r| !r["backup"].is_null()).count();
    assert_eq!(by_policy, with_backup, "{audit}");
}
on_both_catalogs!(a_restarted_scheduler_runs_one_catch_up);

#[test]
fn a_dr_copy_recovers_on_a_fresh_server() {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("main");
    let dr = dir.path().join("dr");
    let dr_text = dr.to_str().unwrap();
    let server = Server::start(&main);
    let (vol, mut model) = seeded_volume(&server, "v", 43);
    let mut states = vec![(s(&server.backup(&vol, &[])["id"]), model.data.clone())];
    for _ in 0..2 {
        scattered_writes(&mut model);
        states.push((
            s(&server.backup(&vol, &["--incremental"])["id"]),
            model.data.clone(),
        ));
    }
    let first = server.json1(&["backup", "copy", &states[1].0, "--to", dr_text]);
    assert!(first["objects"].as_u64().unwrap() > 0, "{first}");
    // Only what the destination lacks crosses: the second copy sends the newest backup
    // alone, the third nothing.
    let second = server.json1(&["backup", "copy", &states[2].0, "--to", dr_text]);
    assert!(
        second["bytes"].as_u64().unwrap() * 3 < first["bytes"].as_u64().unwrap(),
        "{first} then {second}"
    );
    let third = server.json1(&["backup", "copy", &states[2].0, "--to", dr_text]);
    assert_eq!(third["objects"], 0, "{third}");
    // A policy copies after each run.
    server.json1(&[
        "policy",
        "create",
        "dr",
        "--schedule",
        "daily 02:00",
        "--incremental",
        "--copy-to",
        dr_text,
    ]);
    server.json1(&["policy", "assign", &vol, "dr"]);
    scattered_writes(&mut model);
    let ran = server.json1(&["policy", "run", "dr", "--wait"]);
    assert_eq!(ran["outcome"], "succeeded", "{ran}");
    assert_eq!(ran["copied_to"], dr_text, "{ran}");
    states.push((s(&ran["backup"]), model.data.clone()));
    let deltas: Vec<Value> = states[1..]
        .iter()
        .map(|(id, _)| server.json1(&["changed-blocks", &states[0].0, id])["extents"].clone())
        .collect();
    // Refusals: the own repository, a member's copy, a bad location.
    let own = main.join("repository");
    server.fails(
        &[
            "backup",
            "copy",
            &states[0].0,
            "--to",
            own.to_str().unwrap(),
        ],
        "INVALID_ARGUMENT",
    );
    server.fails(
        &["backup", "copy", &states[0].0, "--to", "s3://"],
        "INVALID_ARGUMENT",
    );
    server.stop();
    std::fs::remove_dir_all(&main).unwrap();

    let fresh = dir.path().join("fresh");
    let server = Server::start_with(&fresh, &["--repository", dr_text]);
    let recovered = server.json1(&["recover"]);
    assert_eq!(recovered["backups_recovered"], states.len(), "{recovered}");
    let listed: Vec<String> = server
        .json(&["backup", "list"])
        .iter()
        .map(|b| s(&b["id"]))
        .collect();
    let want: Vec<String> = states.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(listed, want);
    for (i, (id, _)) in states[1..].iter().enumerate() {
        let extents = server.json1(&["changed-blocks", &states[0].0, id])["extents"].clone();
        assert_eq!(extents, deltas[i], "delta to {id}");
    }
    for (id, state) in &states {
        restores_as(&server, id, state);
    }
}

#[test]
fn bad_policies_are_refused_with_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    for (spec, says) in [
        ("every 7m", "divide 60m"),
        ("daily 25:00", "HH:MM"),
        ("weekly fun 03:00", "day \"fun\""),
        ("61 * * * *", "not a cron expression"),
    ] {
        let e = server.fails(
            &["policy", "create", "p", "--schedule", spec],
            "INVALID_ARGUMENT",
        );
        assert!(e.contains(says), "{spec}: {e}");
    }
    let e = server.fails(
        &[
            "policy",
            "create",
            "p",
            "--schedule",
            "hourly",
            "--full-every",
            "3",
        ],
        "INVALID_ARGUMENT",
    );
    assert!(e.contains("--incremental"), "{e}");
    server.json1(&["policy", "create", "p", "--schedule", "weekly sun 03:00"]);
    let e = server.fails(
        &["policy", "create", "p", "--schedule", "hourly"],
        "FAILED_PRECONDITION",
    );
    assert!(e.contains("already exists"), "{e}");
    let (vol, _) = server.create_volume("v", 1 << 20);
    server.json1(&["policy", "assign", &vol, "p"]);
    let e = server.fails(&["policy", "delete", "p"], "FAILED_PRECONDITION");
    assert!(e.contains(&vol), "{e}");
    server.json1(&["policy", "unassign", &vol, "p"]);
    server.fails(&["policy", "unassign", &vol, "p"], "NOT_FOUND");
    server.fails(&["policy", "assign", &vol, "nope"], "NOT_FOUND");
    server.fails(&["policy", "run", "nope"], "NOT_FOUND");
    let out = server.cli(&["policy", "delete", "p"]);
    assert!(out.status.success());
    server.fails(&["policy", "show", "p"], "NOT_FOUND");
}

/// Acceptance 5: export a record, delete the catalog rows (the data kept), import it:
/// the backup and its chain are back and restore; a url with one character changed,
/// another service's, or another repository's record is INVALID_ARGUMENT.
#[test]
fn an_exported_record_brings_deleted_rows_back() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data);
    let (vol, mut model) = seeded_volume(&server, "v", 44);
    let full = s(&server.backup(&vol, &[])["id"]);
    let full_state = model.data.clone();
    scattered_writes(&mut model);
    let inc = s(&server.backup(&vol, &["--incremental"])["id"]);
    let record = server.json1(&["backup", "export", &inc]);
    assert_eq!(record["backup_service"], "blockdelta", "{record}");
    let url = s(&record["backup_url"]);
    server.stop();
    let deleted = std::process::Command::new("python3")
        .args([
            "-c",
            "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); \
             c.execute('DELETE FROM backups'); c.commit()",
        ])
        .arg(data.join("catalog.sqlite"))
        .status()
        .unwrap();
    assert!(deleted.success());

    let server = Server::start(&data);
    assert!(server.json(&["backup", "list"]).is_empty());
    // One character changed anywhere is refused, as are other services and repositories.
    let mid = url.len() / 2;
    let swapped = if &url[mid..=mid] == "A" { "B" } else { "A" };
    let tampered = format!("{}{swapped}{}", &url[..mid], &url[mid + 1..]);
    let e = server.fails(
        &["backup", "import", "blockdelta", &tampered],
        "INVALID_ARGUMENT",
    );
    assert!(e.contains("checksum") || e.contains("base64"), "{e}");
    let e = server.fails(
        &["backup", "import", "cinder.backup.drivers.swift", &url],
        "INVALID_ARGUMENT",
    );
    assert!(e.contains("blockdelta"), "{e}");
    let other_dir = dir.path().join("other");
    let other = Server::start(&other_dir);
    let (other_vol, _) = seeded_volume(&other, "o", 45);
    let theirs = s(&other.backup(&other_vol, &[])["id"]);
    let foreign = s(&other.json1(&["backup", "export", &theirs])["backup_url"]);
    other.stop();
    let e = server.fails(
        &["backup", "import", "blockdelta", &foreign],
        "INVALID_ARGUMENT",
    );
    assert!(e.contains("exported from repository"), "{e}");
    assert!(server.json(&["backup", "list"]).is_empty());

    let back = server.json1(&["backup", "import", "blockdelta", &url]);
    assert_eq!(back["id"], inc.as_str(), "{back}");
    assert_eq!(back["status"], "available", "{back}");
    let listed: Vec<String> = server
        .json(&["backup", "list"])
        .iter()
        .map(|b| s(&b["id"]))
        .collect();
    assert_eq!(listed, [full.clone(), inc.clone()]);
    // Importing again changes nothing.
    let again = server.json1(&["backup", "import", "blockdelta", &url]);
    assert_eq!(again["id"], inc.as_str());
    assert_eq!(server.json(&["backup", "list"]).len(), 2);
    restores_as(&server, &inc, &model.data);
    restores_as(&server, &full, &full_state);
}

/// `/metrics` scraped and parsed by the `prometheus_client` package's own parser, as
/// sample name{labels} → value.
fn scrape(addr: &str) -> std::collections::BTreeMap<String, f64> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let parse = "import sys, json\n\
        from prometheus_client.parser import text_string_to_metric_families\n\
        out = {}\n\
        for family in text_string_to_metric_families(sys.stdin.read()):\n\
        \x20   for s in family.samples:\n\
        \x20       labels = ','.join('%s=\"%s\"' % kv for kv in sorted(s.labels.items()))\n\
        \x20       out[s.name + '{' + labels + '}'] = s.value\n\
        print(json.dumps(out))\n";
    let mut child = std::process::Command::new("python3")
        .args(["-c", parse])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the Prometheus parser refused /metrics:\n{body}"
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Acceptance 7: `report --json` matches the catalog; `/metrics` parses with Prometheus's
/// parser and its counters move by what the test did.
#[test]
fn report_and_metrics_follow_what_happened() {
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let server = Server::start_with(&dir.path().join("data"), &["--metrics-listen", &addr]);
    let before = scrape(&addr);
    let (vol, mut model) = seeded_volume(&server, "v", 46);
    server.backup(&vol, &[]);
    scattered_writes(&mut model);
    let inc = server.backup(&vol, &["--incremental"]);
    let inc_state = model.data.clone();
    server.json1(&[
        "policy",
        "create",
        "nightly",
        "--schedule",
        "daily 02:00",
        "--incremental",
    ]);
    server.json1(&["policy", "assign", &vol, "nightly"]);
    scattered_writes(&mut model);
    let ran = server.json1(&["policy", "run", "nightly", "--wait"]);
    assert_eq!(ran["outcome"], "succeeded", "{ran}");
    let backups = server.json(&["backup", "list"]);
    assert_eq!(backups.len(), 3);
    let after = scrape(&addr);
    let moved = |name: &str| {
        after.get(name).copied().unwrap_or(0.0) - before.get(name).copied().unwrap_or(0.0)
    };
    let stored: u64 = backups
        .iter()
        .map(|b| b["stored_bytes"].as_u64().unwrap())
        .sum();
    assert_eq!(
        moved("blockdelta_backups{status=\"available\"}"),
        3.0,
        "{after:?}"
    );
    assert_eq!(
        moved("blockdelta_backup_jobs_total{outcome=\"available\"}"),
        3.0
    );
    assert_eq!(moved("blockdelta_backup_duration_seconds_count{}"), 3.0);
    assert_eq!(
        moved("blockdelta_backup_stored_bytes_total{}"),
        stored as f64
    );
    // What the backups read (holes are skipped), as each record says.
    let read: u64 = backups
        .iter()
        .map(|b| b["read_bytes"].as_u64().unwrap())
        .sum();
    assert!(read > 0 && read <= 3 * SIZE, "{read}");
    assert_eq!(moved("blockdelta_backup_read_bytes_total{}"), read as f64);
    assert_eq!(
        moved("blockdelta_policy_runs_total{outcome=\"succeeded\"}"),
        1.0
    );
    assert_eq!(
        after["blockdelta_quota_usage{project=\"admin\",resource=\"backups\"}"],
        3.0
    );
    assert!(after["blockdelta_repository_bytes{}"] >= stored as f64);
    // A restore moves the restore counters.
    restores_as(&server, &s(&inc["id"]), &inc_state);
    let restored = scrape(&addr);
    let moved = |name: &str| {
        restored.get(name).copied().unwrap_or(0.0) - after.get(name).copied().unwrap_or(0.0)
    };
    assert_eq!(
        moved("blockdelta_restore_jobs_total{outcome=\"available\"}"),
        1.0
    );
    assert_eq!(moved("blockdelta_restore_duration_seconds_count{}"), 1.0);

    // The report says what the catalog says.
    let report = server.json1(&["report", "--since", "1h"]);
    let reported = report["volumes"].as_array().unwrap();
    assert_eq!(reported.len(), 1, "{report}");
    assert_eq!(reported[0]["volume"], vol.as_str());
    let lines = reported[0]["backups"].as_array().unwrap();
    assert_eq!(lines.len(), backups.len(), "{report}");
    for (line, b) in lines.iter().zip(&backups) {
        for field in ["id", "kind", "status", "stored_bytes"] {
            assert_eq!(line[field], b[field], "{field}: {line} vs {b}");
        }
        assert_eq!(line["started_at"], b["created_at"]);
        assert_eq!(
            line["changed_bytes"].as_u64().unwrap(),
            b["changed_blocks"].as_u64().unwrap() * 4096
        );
        assert!(line["duration_seconds"].as_f64().unwrap() >= 0.0, "{line}");
    }
    let totals = &report["totals"];
    assert_eq!(totals["backups"], 3, "{totals}");
    assert_eq!(totals["available"], 3, "{totals}");
    assert_eq!(totals["stored_bytes"], stored, "{totals}");
    let policies = report["policies"].as_array().unwrap();
    assert_eq!(policies.len(), 1, "{report}");
    assert_eq!(policies[0]["name"], "nightly");
    assert_eq!(policies[0]["succeeded"], 1);
    assert_eq!(policies[0]["runs"][0]["backup"], ran["backup"]);
    let repo = &report["repository"];
    assert!(repo["used_bytes"].as_u64().unwrap() >= stored, "{repo}");
    let free = repo["free_percent"].as_f64().unwrap();
    assert!(free > 0.0 && free <= 100.0, "{repo}");
    let text = server.cli(&["report"]);
    assert!(text.status.success());
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("policy nightly: 1 runs, 1 succeeded") && text.contains("totals: 3 backups"),
        "{text}"
    );
    let e = server.fails(&["report", "--since", "yesterday"], "INVALID_ARGUMENT");
    assert!(e.contains("--since"), "{e}");
}
