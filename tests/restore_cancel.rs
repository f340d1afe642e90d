//! `backup restore-cancel VOLUME` (cinder 3.4.3's restore cancel, issue 13 item 6): a
//! running restore stops, its target volume ends `error` "restore cancelled" (never
//! `available` with part of its bytes), the backup is `available` again, and a second
//! restore onto the same volume works. A volume with no restore running, or unknown,
//! is refused with FAILED_PRECONDITION / NOT_FOUND.

mod common;

use std::time::{Duration, Instant};

use common::*;

const SIZE: u64 = 32 << 20;

#[test]
fn a_cancelled_restore_leaves_its_volume_error_and_a_second_restore_works() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data);
    let (vol, path) = server.create_volume("v", SIZE);
    let mut m = Model::new(&path, SIZE, 41);
    let blocks = m.blocks() as usize;
    m.fill(0, blocks, Fill::Random);
    let full = s(&server.backup(&vol, &[])["id"]);
    let (target, target_path) = server.create_volume("target", SIZE);
    server.fails(
        &["backup", "restore-cancel", &target],
        "FAILED_PRECONDITION",
    );
    server.fails(&["backup", "restore-cancel", "no-such-volume"], "NOT_FOUND");
    server.stop();

    // Each restore write takes 100 ms: the restore runs for seconds, long enough to be
    // caught running.
    let slow = [("FAILPOINTS", "engine.restore.write=sleep(100)")];
    let server = Server::start_with_env(&data, &[], &slow);
    let started = server.json1(&["backup", "restore", &full, "--volume", &target]);
    assert_eq!(started["status"], "restoring", "{started}");
    let until = Instant::now() + Duration::from_secs(30);
    while server.json1(&["volume", "show", &target])["progress_done"]
        .as_u64()
        .unwrap_or(0)
        == 0
    {
        assert!(Instant::now() < until, "the restore never started writing");
        std::thread::sleep(Duration::from_millis(20));
    }
    let cancelled = server.json1(&["backup", "restore-cancel", &target]);
    // The call returns once the restore has stopped.
    assert_eq!(cancelled["status"], "error", "{cancelled}");
    assert_eq!(cancelled["error"], "restore cancelled", "{cancelled}");
    let shown = server.json1(&["volume", "show", &target]);
    assert_eq!(shown["status"], "error", "{shown}");
    assert_eq!(
        server.json1(&["backup", "show", &full])["status"],
        "available"
    );
    let restored = std::fs::read(&target_path).unwrap();
    assert!(restored != m.data, "the cancelled restore wrote everything");
    server.fails(
        &["backup", "restore-cancel", &target],
        "FAILED_PRECONDITION",
    );
    server.stop();

    let server = Server::start(&data);
    let again = server.restore(&full, Some(&target));
    assert_eq!(again["id"], target.as_str());
    assert!(std::fs::read(&target_path).unwrap() == m.data);
    let audit = server.json(&["audit"]);
    assert!(
        audit
            .iter()
            .any(|l| l["event"]["action"] == "backup.restore_cancel"
                && l["event"]["id"] == target.as_str()),
        "{audit:?}"
    );
}
