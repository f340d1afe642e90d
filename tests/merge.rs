//! `backup merge`: a chain's backup becomes a synthetic full from metadata alone (issue
//! 13, DESIGN.md §12), on both catalogs:
//! - it lists as kind `full`, merged, without a parent; the backups before it are gone;
//! - it and every backup after it restore byte-identical to the volume at their time;
//! - the change bitmaps after it are untouched, so deltas between kept backups are too;
//! - a backup a delta volume uses blocks the merge (FAILED_PRECONDITION), changing nothing;
//! - gc afterwards keeps every frame the kept backups need (verify after gc), and the
//!   chain goes on (a new incremental on top);
//! - a merge that fails at its catalog step leaves every backup as it was, readable.

mod common;

use common::postgres::CatalogKind;
use common::*;
use serde_json::Value;

const SIZE: u64 = 8 << 20;

/// A volume, its full and `incrementals` incrementals of seeded scattered writes; the
/// volume's bytes at each backup.
struct History {
    vol: String,
    model: Model,
    ids: Vec<String>,
    states: Vec<Vec<u8>>,
}

fn history(server: &Server, incrementals: usize, seed: u64) -> History {
    let (vol, path) = server.create_volume("v", SIZE);
    let mut model = Model::new(&path, SIZE, seed);
    let blocks = model.blocks() as usize;
    model.fill(0, blocks / 2, Fill::Random);
    model.fill(blocks as u64 / 2, blocks / 4, Fill::Text);
    let mut ids = vec![s(&server.backup(&vol, &[])["id"])];
    let mut states = vec![model.data.clone()];
    for _ in 0..incrementals {
        scattered_writes(&mut model);
        ids.push(s(&server.backup(&vol, &["--incremental"])["id"]));
        states.push(model.data.clone());
    }
    History {
        vol,
        model,
        ids,
        states,
    }
}

/// Single blocks all over the volume, a few runs, and one run zeroed.
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

fn restores_as(server: &Server, id: &str, want: &[u8]) {
    let v = server.restore(id, None);
    let got = std::fs::read(s(&v["path"])).unwrap();
    assert!(got == want, "backup {id} restored different bytes");
    server.json1(&["volume", "delete", &s(&v["id"])]);
}

fn delta(server: &Server, first: &str, second: &str) -> Value {
    server.json1(&["changed-blocks", first, second])["extents"].clone()
}

fn merge(catalog: CatalogKind) {
    let cat = catalog.catalog();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = cat.start(&data, &[], &[]);
    let h = history(&server, 4, 31);
    let [full, i1, i2, i3, i4] = <[String; 5]>::try_from(h.ids.clone()).unwrap();
    let deltas_before = (delta(&server, &i2, &i4), delta(&server, &i3, &i4));
    let bitmaps_before: Vec<Vec<u64>> = [&i3, &i4]
        .iter()
        .map(|id| server.changed_blocks(id))
        .collect();

    // A delta volume made from the full blocks the merge, which changes nothing.
    let d = server.create_delta(&full, &i1, &[]);
    let refused = server.fails(&["backup", "merge", &i2], "FAILED_PRECONDITION");
    assert!(
        refused.contains(&full) && refused.contains(&s(&d["id"])),
        "{refused}"
    );
    assert_eq!(server.json(&["backup", "list"]).len(), 5);
    server.json1(&["volume", "delete", &s(&d["id"])]);

    let merged = server.json1(&["backup", "merge", &i2]);
    assert_eq!(merged["kind"], "full", "{merged}");
    assert_eq!(merged["merged"], true, "{merged}");
    assert_eq!(merged["parent"], Value::Null, "{merged}");
    assert_eq!(merged["status"], "available", "{merged}");
    let listed: Vec<String> = server
        .json(&["backup", "list"])
        .iter()
        .map(|b| s(&b["id"]))
        .collect();
    assert_eq!(listed, vec![i2.clone(), i3.clone(), i4.clone()]);
    for gone in [&full, &i1] {
        server.fails(&["backup", "show", gone], "NOT_FOUND");
    }
    // A synthetic full's change bitmap is a full's: its allocated blocks.
    let nonzero = |state: &[u8]| -> Vec<u64> {
        state
            .chunks(4096)
            .enumerate()
            .filter(|(_, c)| c.iter().any(|&b| b != 0))
            .map(|(i, _)| i as u64)
            .collect()
    };
    assert_eq!(server.changed_blocks(&i2), nonzero(&h.states[2]));
    assert_eq!(server.allocated_blocks(&i2), nonzero(&h.states[2]));
    // Backups after it are untouched: bitmaps, deltas, content.
    let bitmaps_after: Vec<Vec<u64>> = [&i3, &i4]
        .iter()
        .map(|id| server.changed_blocks(id))
        .collect();
    assert_eq!(bitmaps_after, bitmaps_before);
    assert_eq!(bitmaps_after[0], diff_blocks(&h.states[2], &h.states[3]));
    assert_eq!(
        (delta(&server, &i2, &i4), delta(&server, &i3, &i4)),
        deltas_before
    );
    server.json1(&["gc"]);
    for (id, state) in [(&i2, 2), (&i3, 3), (&i4, 4)] {
        let v = server.json1(&["backup", "verify", id]);
        assert_eq!(v["ok"], true, "{v}");
        restores_as(&server, id, &h.states[state]);
    }
    // Merging a full changes nothing; the chain goes on after a restart.
    let again = server.json1(&["backup", "merge", &i2]);
    assert_eq!(again["merged_at"], merged["merged_at"]);
    server.stop();
    let server = cat.start(&data, &[], &[]);
    let mut model = h.model;
    scattered_writes(&mut model);
    let i5 = server.backup(&h.vol, &["--incremental"]);
    assert_eq!(i5["parent"], i4.as_str(), "{i5}");
    restores_as(&server, &s(&i5["id"]), &model.data);
    restores_as(&server, &i2, &h.states[2]);
    server.fails(&["backup", "merge", "bkp-0000000000000000"], "NOT_FOUND");
    server.fails(&["backup", "merge", "nonsense"], "INVALID_ARGUMENT");
}
on_both_catalogs!(merge);

/// A merge that fails after writing the merged index (at its catalog step) or before
/// it (at the index): every backup is as it was and restores exact; once the fault is
/// gone the same merge goes through.
#[test]
fn a_failed_merge_changes_nothing_and_can_be_run_again() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data);
    let h = history(&server, 3, 32);
    server.stop();
    for fault in ["repo.index.write=return", "catalog.record_merge=return"] {
        let server = Server::start_with_env(&data, &[], &[("FAILPOINTS", fault)]);
        server.fails(&["backup", "merge", &h.ids[2]], "");
        let list = server.json(&["backup", "list"]);
        assert_eq!(list.len(), 4, "{fault}: {list:?}");
        assert!(list.iter().all(|b| b["status"] == "available"), "{list:?}");
        let listed = server.json1(&["backup", "show", &h.ids[2]]);
        assert_eq!(listed["kind"], "incremental", "{fault}: {listed}");
        server.stop();
        let server = Server::start(&data);
        server.json1(&["gc"]);
        for (i, id) in h.ids.iter().enumerate() {
            restores_as(&server, id, &h.states[i]);
        }
        server.stop();
    }
    let server = Server::start(&data);
    let merged = server.json1(&["backup", "merge", &h.ids[2]]);
    assert_eq!(merged["kind"], "full");
    server.json1(&["gc"]);
    for i in 2..4 {
        restores_as(&server, &h.ids[i], &h.states[i]);
    }
}
