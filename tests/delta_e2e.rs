//! Acceptance item 1 of the delta-volume issue: Oracle's changed-blocks workflow
//! end to end against a real `blockdelta serve` on free ports.
//!
//! A registered volume of 2 GiB + 12 KiB (so every change block size leaves a
//! partial last block, and a 1 GiB scan ends mid-volume) gets a full backup and
//! two incrementals with known changes. Delta volumes of (full, inc1), (inc1,
//! inc2) and (full, inc2) at change block sizes 4096, 65536 and 1048576 are
//! created, attached and checked with real clients: GET LBA STATUS(32) in 1 GiB
//! scans through the Rust initiator, GET LBA STATUS(16) through libiscsi
//! (`qemu-img map`), every block read through libiscsi (`qemu-img convert`);
//! ListChangedBlocks (paged), its stream and CSI GetMetadataDelta give the same
//! extents; then detach and delete.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::delta::*;
use common::s3::Backend;
use common::*;
use rand::Rng;
use serde_json::Value;

const SIZE: u64 = (2 << 30) + 3 * 4096;
const GIB: u64 = 1 << 30;
const CHANGE_BLOCK_SIZES: [u64; 3] = [4096, 65536, 1 << 20];

/// Three generations of a volume with known changes; returns the models' block maps.
fn generations(m: &mut SparseModel) -> [BTreeMap<u64, Vec<u8>>; 3] {
    let last = m.tracking_blocks() - 1;
    // Generation 0: scattered text and random regions, the first and last block,
    // and 4 MiB straddling the 1 GiB boundary.
    m.fill(0, 1, true);
    m.fill(last, 1, false);
    for i in 0..60 {
        let len = m.rng.random_range(1..48usize);
        let at = m.rng.random_range(0..m.tracking_blocks() - len as u64);
        m.fill(at, len, i % 2 == 0);
    }
    m.fill(GIB / 4096 - 512, 1024, false);
    let g0 = m.blocks.clone();

    // Generation 1: single blocks, runs, identical rewrites, zeroed blocks, the
    // last (partial at every change block size) block, 8 MiB sequential rewrite.
    for i in 0..40 {
        let b = m.random_block();
        m.fill(b, 1, i % 3 == 0);
    }
    for _ in 0..5 {
        let len = m.rng.random_range(2..200usize);
        let at = m.rng.random_range(0..m.tracking_blocks() - len as u64);
        m.fill(at, len, false);
    }
    let written: Vec<u64> = m.blocks.keys().copied().step_by(37).take(20).collect();
    for b in written {
        m.rewrite_same(b);
    }
    let nonzero: Vec<u64> = m.blocks.keys().copied().step_by(101).take(3).collect();
    for b in nonzero {
        m.zero(b, 1);
    }
    m.fill(last, 1, true);
    m.fill(GIB / 4096 - 1024, 2048, true);
    let g1 = m.blocks.clone();

    // Generation 2: more singles, blocks changed again, one block put back to its
    // generation-0 bytes (still changed in the union of change bitmaps).
    for _ in 0..30 {
        let b = m.random_block();
        m.fill(b, 1, false);
    }
    let again: Vec<u64> = diff(&g0, &g1).into_iter().step_by(7).take(10).collect();
    for b in again {
        m.fill(b, 1, true);
    }
    if let Some((&b, bytes)) = g0.iter().find(|(b, v)| g1.get(b) != Some(v)) {
        let bytes = bytes.clone();
        m.write(b, &bytes);
    }
    m.fill(12345, 300, false);
    let g2 = m.blocks.clone();
    [g0, g1, g2]
}

fn delta_volume(server: &Server, first: &str, second: &str, cbs: u64) -> Value {
    server.create_delta(first, second, &["--change-block-size", &cbs.to_string()])
}

/// Every listing path gives `expected` (byte extents at change block size `cbs`).
fn check_listings(server: &Server, first: &str, second: &str, cbs: u64, expected: &[(u64, u64)]) {
    let as_blocks: Vec<(u64, u64)> = expected
        .iter()
        .map(|&(off, len)| (off / cbs, len.div_ceil(cbs)))
        .collect();
    let extents = |v: &Value| -> Vec<(u64, u64)> {
        v["extents"]
            .as_array()
            .expect("extents")
            .iter()
            .map(|e| (e[0].as_u64().unwrap(), e[1].as_u64().unwrap()))
            .collect()
    };
    let bs = cbs.to_string();
    let paged = server.json1(&["changed-blocks", first, second, "--block-size", &bs]);
    assert_eq!(
        extents(&paged),
        as_blocks,
        "ListChangedBlocks {first} {second} {cbs}"
    );
    assert_eq!(paged["next_page_token"], "");
    assert_eq!(paged["total_blocks"], SIZE.div_ceil(cbs));
    let streamed = server.json1(&[
        "changed-blocks",
        first,
        second,
        "--block-size",
        &bs,
        "--stream",
    ]);
    assert_eq!(extents(&streamed), as_blocks, "StreamChangedBlocks");
    // Small pages resumed by token give the same list.
    let mut resumed = Vec::new();
    let mut token = String::new();
    for _ in 0..10_000 {
        let mut args = vec![
            "changed-blocks",
            first,
            second,
            "--block-size",
            &bs,
            "--max",
            "3",
        ];
        if !token.is_empty() {
            args.extend_from_slice(&["--page-token", &token]);
        }
        let page = server.json1(&args);
        let got = extents(&page);
        assert!(got.len() <= 3);
        resumed.extend(got);
        token = page["next_page_token"].as_str().unwrap().to_string();
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(resumed, as_blocks, "paged by 3 with tokens");
}

/// CSI GetMetadataDelta over gRPC, from `starting_offset`, `max_results` a message.
/// The token travels in the request's `secrets` map, as the Kubernetes sidecar sends it.
async fn csi_delta(
    server: &Server,
    base: &str,
    target: &str,
    starting_offset: i64,
) -> Vec<(u64, u64)> {
    use blockdelta::api::csi_pb::snapshot_metadata_client::SnapshotMetadataClient;
    use blockdelta::api::csi_pb::{BlockMetadataType, GetMetadataDeltaRequest};
    let mut c = SnapshotMetadataClient::connect(server.url.clone())
        .await
        .expect("connect");
    let mut stream = c
        .get_metadata_delta(GetMetadataDeltaRequest {
            base_snapshot_id: base.into(),
            target_snapshot_id: target.into(),
            starting_offset,
            max_results: 7,
            secrets: [("token".to_string(), server.token())].into(),
        })
        .await
        .expect("GetMetadataDelta")
        .into_inner();
    let mut out: Vec<(u64, u64)> = Vec::new();
    while let Some(m) = stream.message().await.expect("stream") {
        assert_eq!(
            m.block_metadata_type,
            BlockMetadataType::VariableLength as i32
        );
        assert_eq!(m.volume_capacity_bytes, SIZE as i64);
        assert!(m.block_metadata.len() <= 7);
        for b in m.block_metadata {
            let (off, len) = (b.byte_offset as u64, b.size_bytes as u64);
            if let Some(&(o, l)) = out.last() {
                assert!(o + l < off, "tuples ascend, never touch or overlap");
            }
            out.push((off, len));
        }
    }
    out
}

/// Reads the whole delta volume through libiscsi and checks every block: the
/// second generation's bytes inside changed extents, zeros elsewhere.
fn check_reads(
    att: &Attached,
    dir: &Path,
    second: &BTreeMap<u64, Vec<u8>>,
    expected: &[(u64, u64)],
) {
    let out = dir.join("read-back.raw");
    let _ = std::fs::remove_file(&out);
    let (ok, _, err) = run_bounded(
        Command::new("qemu-img")
            .args(["convert", "-O", "raw", &att.url()])
            .arg(&out),
        Duration::from_secs(300),
    );
    assert!(ok, "qemu-img convert: {err}");
    let f = std::fs::File::open(&out).expect("read-back");
    assert_eq!(f.metadata().unwrap().len(), SIZE);
    let changed: BTreeSet<u64> = expected
        .iter()
        .flat_map(|&(off, len)| off / 4096..(off + len) / 4096)
        .collect();
    let mut buf = vec![0u8; 4096];
    for &t in &changed {
        f.read_exact_at(&mut buf, t * 4096).unwrap();
        let want = second.get(&t).cloned().unwrap_or_else(|| vec![0; 4096]);
        assert!(buf == want, "block {t} differs from the second backup");
    }
    // Outside the changed extents everything reads as zeros.
    for (&t, _) in second.iter().filter(|(t, _)| !changed.contains(t)) {
        f.read_exact_at(&mut buf, t * 4096).unwrap();
        assert!(
            buf.iter().all(|&b| b == 0),
            "unchanged block {t} is not zero"
        );
    }
    drop(f);
    std::fs::remove_file(&out).unwrap();
}

crate::on_both_backends!(async oracle_workflow_create_attach_scan_read_list_detach_delete);

/// On the local directory and on S3 (SeaweedFS): the same extents, reads and listings.
async fn oracle_workflow_create_attach_scan_read_list_detach_delete(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let repository = backend.repository();
    let server = repository.start(&dir.path().join("data"));
    let mut model = SparseModel::create(&dir.path().join("vol.img"), SIZE, 7);
    let gens = generations(&mut model);
    // Back up generation by generation: rewrite the file to each generation first.
    let vol = {
        let f = std::fs::File::create(&model.path).unwrap();
        f.set_len(SIZE).unwrap();
        server.json1(&[
            "volume",
            "register",
            "--name",
            "src",
            "--path",
            model.path.to_str().unwrap(),
        ])
    };
    let vol_id = s(&vol["id"]);
    let mut backups = Vec::new();
    let mut current: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    for (i, g) in gens.iter().enumerate() {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&model.path)
            .unwrap();
        for b in diff(&current, g) {
            let bytes = g.get(&b).cloned().unwrap_or_else(|| vec![0; 4096]);
            f.write_all_at(&bytes, b * 4096).unwrap();
        }
        drop(f);
        current = g.clone();
        let extra: &[&str] = if i == 0 { &[] } else { &["--incremental"] };
        backups.push(s(&server.backup(&vol_id, extra)["id"]));
    }
    let c1 = diff(&gens[0], &gens[1]);
    let c2 = diff(&gens[1], &gens[2]);
    assert!(!c1.is_empty() && !c2.is_empty());
    let union: BTreeSet<u64> = c1.union(&c2).copied().collect();
    assert!(
        union.len() > c1.len().max(c2.len()),
        "the generations overlap only partly"
    );
    let pairs = [
        (0usize, 1usize, c1.clone()),
        (1, 2, c2.clone()),
        (0, 2, union),
    ];

    for (first, second, changed) in &pairs {
        let (a, b) = (&backups[*first], &backups[*second]);
        for (n, &cbs) in CHANGE_BLOCK_SIZES.iter().enumerate() {
            let expected = coarse_extents(changed, cbs, SIZE);
            assert!(
                expected.len() > 3 && expected.last().unwrap().0 > GIB,
                "changes on both sides of 1 GiB"
            );
            println!(
                "delta ({a}, {b}) at {cbs}: {} extents, {} bytes",
                expected.len(),
                expected.iter().map(|e| e.1).sum::<u64>()
            );
            let v = delta_volume(&server, a, b, cbs);
            assert_eq!(v["kind"], "delta");
            assert_eq!(v["status"], "available");
            assert_eq!(v["size"], SIZE);
            assert_eq!(v["source_details"]["type"], "volumeBackupDelta");
            assert_eq!(v["source_details"]["first_backup_id"], a.as_str());
            assert_eq!(v["source_details"]["change_block_size_in_bytes"], cbs);
            let changed_bytes: u64 = expected.iter().map(|e| e.1).sum();
            assert_eq!(v["changed_bytes"], changed_bytes);
            let id = s(&v["id"]);

            // Attach: 512-byte blocks as Oracle's example, 4096 for one in three.
            let block_size = if n == 1 { "4096" } else { "512" };
            let a_json = server.json1(&["volume", "attach", &id, "--block-size", block_size]);
            let att = Attached::from_json(&a_json);
            assert_eq!(server.json1(&["volume", "show", &id])["status"], "in-use");

            // GET LBA STATUS(32) in 1 GiB scans through the Rust initiator.
            let mut i = att.login().await;
            let descriptors = scan32(&mut i, att.block_size, SIZE, GIB).await;
            assert!(descriptors.iter().all(|d| d.2 == 0 || d.2 == 1));
            assert_eq!(
                mapped_bytes(&descriptors, att.block_size),
                expected,
                "GET LBA STATUS(32) of delta ({a}, {b}) at {cbs}"
            );
            // Writes are refused: DATA PROTECT / WRITE PROTECTED.
            let w = write10(&mut i, 0, att.block_size).await;
            assert_eq!(w.status, 2);
            assert_eq!(w.sense_code().map(|s| (s.0, s.1)), Some((7, 0x27)));
            // Spot reads through our initiator: the first changed extent.
            if let Some(&(off, len)) = expected.first() {
                let blocks = (len.min(65536) / att.block_size) as u32;
                let r = read16(&mut i, off / att.block_size, blocks, att.block_size).await;
                assert_eq!(r.status, 0);
                for (k, chunk) in r.data.chunks(4096).enumerate() {
                    assert!(chunk == model_block(&gens[*second], off / 4096 + k as u64));
                }
            }
            i.logout().await.expect("logout");

            // GET LBA STATUS(16) through libiscsi, and every block read through it.
            assert_eq!(
                qemu_img_map(&att.url()),
                expected,
                "qemu-img map ({a}, {b}) at {cbs}"
            );
            check_reads(&att, dir.path(), &gens[*second], &expected);

            check_listings(&server, a, b, cbs, &expected);
            if cbs == 4096 {
                assert_eq!(
                    csi_delta(&server, a, b, 0).await,
                    expected,
                    "GetMetadataDelta"
                );
                // Resuming mid-extent: the first tuple ends after the offset.
                if let Some(&(off, len)) = expected.get(expected.len() / 2) {
                    let resume = off + len / 2 + 100;
                    let got = csi_delta(&server, a, b, resume as i64).await;
                    assert!(got[0].0 + got[0].1 > resume);
                    let tail: Vec<(u64, u64)> =
                        expected.iter().copied().filter(|e| e.0 > off).collect();
                    assert_eq!(&got[1..], &tail[..]);
                }
            }

            let detached = server.json1(&["volume", "detach", &id]);
            assert_eq!(detached["status"], "available");
            assert!(att.try_login().await.is_err(), "export gone after detach");
            server.json1(&["volume", "delete", &id]);
            server.fails(&["volume", "show", &id], "NOT_FOUND");
        }
    }
    // Nothing was restored or copied: the repository holds only the three backups.
    let audit = server.cli(&["audit"]);
    let lines = String::from_utf8_lossy(&audit.stdout).to_string();
    let creations: Vec<Value> = lines
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|l| {
            l["event"]["action"] == "volume.create" && l["event"]["details"]["kind"] == "delta"
        })
        .collect();
    assert_eq!(creations.len(), 9);
    let sd = &creations[0]["event"]["details"]["sourceDetails"];
    assert_eq!(sd["type"], "volumeBackupDelta");
    assert_eq!(sd["firstBackupId"], backups[0].as_str());
    assert_eq!(sd["secondBackupId"], backups[1].as_str());
    assert_eq!(sd["changeBlockSizeInBytes"], 4096);
}

/// The most recently written pack file under `packs/`.
fn newest_pack(packs: &Path) -> std::path::PathBuf {
    let mut all = Vec::new();
    for sub in std::fs::read_dir(packs).unwrap().flatten() {
        for f in std::fs::read_dir(sub.path()).unwrap().flatten() {
            let modified = f.metadata().unwrap().modified().unwrap();
            all.push((modified, f.path()));
        }
    }
    all.sort();
    all.pop().expect("a pack").1
}

fn model_block(g: &BTreeMap<u64, Vec<u8>>, b: u64) -> Vec<u8> {
    g.get(&b).cloned().unwrap_or_else(|| vec![0; 4096])
}

/// Deleting an attached delta volume is refused until --force, which ends the
/// sessions; an attachment survives a server restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attached_volumes_refuse_delete_survive_restart_and_force_ends_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data);
    let mut model = SparseModel::create(&dir.path().join("vol.img"), 64 << 20, 11);
    model.fill(10, 20, false);
    let vol = server.json1(&[
        "volume",
        "register",
        "--name",
        "v",
        "--path",
        model.path.to_str().unwrap(),
    ]);
    let vol_id = s(&vol["id"]);
    let full = s(&server.backup(&vol_id, &[])["id"]);
    model.fill(100, 3, false);
    let inc = s(&server.backup(&vol_id, &["--incremental"])["id"]);
    let id = s(&delta_volume(&server, &full, &inc, 4096)["id"]);
    let att = Attached::from_json(&server.json1(&["volume", "attach", &id, "--chap"]));
    assert!(att.chap.is_some(), "CHAP credentials returned");
    let without_chap = Attached {
        chap: None,
        ..att.clone()
    };
    assert!(without_chap.try_login().await.is_err(), "CHAP required");
    server.fails(&["volume", "attach", &id], "FAILED_PRECONDITION");
    server.fails(&["backup", "delete", &inc], "FAILED_PRECONDITION");

    // The attachment comes back after a restart, same name, same credentials.
    drop(server);
    let server = Server::start(&data);
    let att = Attached {
        portal: server.iscsi.parse().unwrap(),
        ..att
    };
    let mut i = att.login().await;
    let scan = scan32(&mut i, 512, 64 << 20, GIB).await;
    assert_eq!(mapped_bytes(&scan, 512), vec![(100 * 4096, 3 * 4096)]);
    // A damaged repository object reads as MEDIUM ERROR, not as wrong bytes: flip
    // a byte inside the incremental's pack (the newest one) and read its block.
    let packs = newest_pack(&data.join("repository/packs"));
    let mut bytes = std::fs::read(&packs).unwrap();
    let at = bytes.len() - 10;
    bytes[at] ^= 0xff;
    std::fs::write(&packs, &bytes).unwrap();
    let r = read16(&mut i, 100 * 8, 8, 512).await;
    assert_eq!(r.status, 2, "read of a damaged block must fail");
    assert_eq!(
        r.sense_code().map(|s| (s.0, s.1)),
        Some((3, 0x11)),
        "MEDIUM ERROR / UNRECOVERED READ ERROR"
    );

    let err = server.fails(&["volume", "delete", &id], "FAILED_PRECONDITION");
    assert!(err.contains("attached"), "{err}");
    let err = server.fails(&["volume", "detach", &id], "FAILED_PRECONDITION");
    assert!(err.contains("session"), "{err}");
    server.json1(&["volume", "delete", &id, "--force"]);
    // The session was ended: a command soon finds the connection closed.
    let mut ended = false;
    for _ in 0..50 {
        if i.command(&[0u8; 6], &[], 0).await.is_err() {
            ended = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ended, "session survived a forced delete");
    assert!(att.try_login().await.is_err());
    // With the delta volume gone its backups can go too.
    server.json1(&["backup", "delete", &inc, "--wait"]);
}
