//! Acceptance item 1 of issue 3: a full and two incrementals with known changes
//! on a generated sparse volume; each change bitmap equals the known set exactly;
//! every generation restores byte-identical onto a new volume and onto an
//! existing one filled with garbage. On the local directory and on S3 (SeaweedFS).

mod common;

use common::s3::Backend;
use common::{Fill, Model, diff_blocks, file_hash, garbage_file, s};

const SIZE: u64 = 128 << 20;

crate::on_both_backends!(
    full_and_two_incrementals_have_exact_change_bitmaps_and_restore_byte_identical
);

fn full_and_two_incrementals_have_exact_change_bitmaps_and_restore_byte_identical(
    backend: Backend,
) {
    let dir = tempfile::tempdir().unwrap();
    let repository = backend.repository();
    let server = repository.start(&dir.path().join("data"));
    let (vol, path) = server.create_volume("gen", SIZE);
    let mut m = Model::new(&path, SIZE, 0x5eed_0001);

    // Generation 0: mixed text, random and explicit zero regions, holes between.
    m.populate(120);
    let gen0 = m.data.clone();
    let full = server.backup(&vol, &[]);
    let full_id = s(&full["id"]);
    assert_eq!(full["kind"], "full");
    assert_eq!(
        server.changed_blocks(&full_id),
        m.nonzero_blocks(),
        "full: change bitmap = non-zero blocks"
    );
    assert_eq!(server.allocated_blocks(&full_id), m.nonzero_blocks());

    // Generation 1: single blocks, runs, identical rewrites, a zeroed block.
    let mut expected1 = Vec::new();
    for _ in 0..40 {
        let b = m.random_block();
        m.fill(
            b,
            1,
            if b.is_multiple_of(2) {
                Fill::Random
            } else {
                Fill::Text
            },
        );
        expected1.push(b);
    }
    for _ in 0..6 {
        let len = 3 + (m.random_block() % 40) as usize;
        let start = m.random_block().min(m.blocks() - len as u64);
        m.fill(start, len, Fill::Random);
        expected1.extend(start..start + len as u64);
    }
    let nonzero = m.nonzero_blocks();
    let same: Vec<u64> = nonzero
        .iter()
        .copied()
        .filter(|b| !expected1.contains(b))
        .take(25)
        .collect();
    for &b in &same {
        m.rewrite_same(b, 1);
    }
    let zeroed = *nonzero
        .iter()
        .find(|b| !expected1.contains(b) && !same.contains(b))
        .unwrap();
    m.fill(zeroed, 1, Fill::Zero);
    let gen1 = m.data.clone();
    let truth1 = diff_blocks(&gen0, &gen1);
    assert!(truth1.contains(&zeroed));
    assert!(
        same.iter().all(|b| !truth1.contains(b)),
        "identical rewrites are no change"
    );
    let inc1 = server.backup(&vol, &["--incremental"]);
    let inc1_id = s(&inc1["id"]);
    assert_eq!(inc1["kind"], "incremental");
    assert_eq!(inc1["parent"], full["id"]);
    assert_eq!(
        server.changed_blocks(&inc1_id),
        truth1,
        "incremental 1 change bitmap"
    );

    // Generation 2: a 64 MiB sequential rewrite plus a few single blocks and a zeroed one.
    let seq_start = 8192u64; // 32 MiB in
    let seq_blocks = (64 << 20) / 4096;
    for chunk in 0..seq_blocks / 1024 {
        m.fill(
            seq_start + chunk * 1024,
            1024,
            if chunk % 2 == 0 {
                Fill::Text
            } else {
                Fill::Random
            },
        );
    }
    for _ in 0..10 {
        let b = m.random_block();
        m.fill(b, 1, Fill::Text);
    }
    let z = *m.nonzero_blocks().iter().find(|&&b| b < seq_start).unwrap();
    m.fill(z, 1, Fill::Zero);
    let gen2 = m.data.clone();
    let truth2 = diff_blocks(&gen1, &gen2);
    assert!(truth2.len() as u64 >= seq_blocks - 16);
    let inc2 = server.backup(&vol, &["--incremental"]);
    let inc2_id = s(&inc2["id"]);
    assert_eq!(inc2["parent"], inc1["id"]);
    assert_eq!(
        server.changed_blocks(&inc2_id),
        truth2,
        "incremental 2 change bitmap"
    );

    // Storage: an incremental adds at most 1.25x its changed bytes before
    // compression, frames, index and fingerprints included.
    for (inc, truth) in [(&inc1, &truth1), (&inc2, &truth2)] {
        let changed_bytes = truth.len() as u64 * 4096;
        let stored = inc["stored_bytes"].as_u64().unwrap();
        assert!(
            stored * 4 <= changed_bytes * 5,
            "incremental {} stored {stored} for {changed_bytes} changed",
            inc["id"]
        );
    }

    // Restore every generation onto a new volume and onto a garbage-filled one.
    let garbage = dir.path().join("garbage.img");
    garbage_file(&garbage, SIZE, 99);
    let target = server.json1(&[
        "volume",
        "register",
        "--name",
        "garbage",
        "--path",
        garbage.to_str().unwrap(),
    ]);
    let target_id = s(&target["id"]);
    for (id, data) in [(&full_id, &gen0), (&inc1_id, &gen1), (&inc2_id, &gen2)] {
        let want = blake3::hash(data).to_hex().to_string();
        let fresh = server.restore(id, None);
        assert_eq!(
            file_hash(std::path::Path::new(&s(&fresh["path"]))),
            want,
            "restore of {id} onto a new volume"
        );
        server.restore(id, Some(&target_id));
        assert_eq!(
            file_hash(&garbage),
            want,
            "restore of {id} onto an existing volume"
        );
        let v = server.json1(&["backup", "verify", id]);
        assert_eq!(v["ok"], true);
    }
    // The source volume was never touched by any of this.
    assert_eq!(file_hash(&path), m.hash());
}
