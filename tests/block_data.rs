//! Block data over gRPC (the changed-blocks issue's GetBlockData): any byte range of a
//! backup, zeros where unallocated, each message with its blake3, resumable from an offset,
//! the range checked against the volume.

mod common;

use blockdelta::api::pb;
use blockdelta::api::pb::backup_service_client::BackupServiceClient;
use common::*;
use serde_json::Value;

async fn read(
    c: &mut BackupServiceClient<Authed>,
    backup: &str,
    offset: u64,
    length: u64,
) -> Result<Vec<u8>, tonic::Status> {
    let mut stream = c
        .get_block_data(pb::GetBlockDataRequest {
            backup_id: backup.into(),
            offset,
            length,
        })
        .await?
        .into_inner();
    let mut out = Vec::new();
    let mut at = offset;
    while let Some(m) = stream.message().await? {
        assert_eq!(m.offset, at, "messages are contiguous");
        assert!(m.data.len() <= 1 << 20, "a message holds at most 1 MiB");
        assert_eq!(m.blake3, blake3::hash(&m.data).to_hex().to_string());
        at += m.data.len() as u64;
        out.extend_from_slice(&m.data);
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_range_of_a_backup_reads_as_the_volume_was() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    const SIZE: u64 = 6 << 20;
    let (vol, path) = server.create_volume("data", SIZE);
    let mut m = Model::new(&path, SIZE, 0x5eed_b10c);
    m.populate(12);
    let gen0 = std::fs::read(&path).unwrap();
    let full = s(&server.backup(&vol, &[])["id"]);
    m.populate(5);
    let gen1 = std::fs::read(&path).unwrap();
    let inc = s(&server.backup(&vol, &["--incremental"])["id"]);
    let mut c = BackupServiceClient::new(server.channel().await);

    assert_eq!(
        read(&mut c, &full, 0, 0).await.unwrap(),
        gen0,
        "the whole full backup"
    );
    assert_eq!(
        read(&mut c, &inc, 0, 0).await.unwrap(),
        gen1,
        "the whole incremental"
    );
    // Unaligned, crossing blocks and a message boundary; resuming from an offset.
    let (off, len) = ((1 << 20) - 1000, 5000 + (1 << 20));
    assert_eq!(
        read(&mut c, &inc, off, len).await.unwrap(),
        &gen1[off as usize..(off + len) as usize]
    );
    assert_eq!(
        read(&mut c, &inc, SIZE - 10, 0).await.unwrap(),
        &gen1[(SIZE - 10) as usize..]
    );
    assert!(read(&mut c, &inc, SIZE, 0).await.unwrap().is_empty());
    for (offset, length) in [(SIZE + 1, 0), (SIZE - 4096, 8192), (u64::MAX, 1)] {
        let e = read(&mut c, &inc, offset, length).await.unwrap_err();
        assert_eq!(
            e.code(),
            tonic::Code::OutOfRange,
            "{offset}+{length}: {e:?}"
        );
        assert!(e.message().contains("outside the volume"), "{e:?}");
    }
    let e = read(&mut c, "bkp-00000000000000aa", 0, 0)
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
}

/// GetChangedBlockData: the changed extents of the listing, with the second backup's bytes,
/// in pieces on change-block boundaries, bounded by max_blocks, resumable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_extents_stream_with_their_bytes_and_resume() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    const SIZE: u64 = 8 << 20;
    let (vol, path) = server.create_volume("data", SIZE);
    let mut m = Model::new(&path, SIZE, 0x5eed_c0de);
    m.populate(10);
    let full = s(&server.backup(&vol, &[])["id"]);
    m.populate(6);
    let now = std::fs::read(&path).unwrap();
    let inc = s(&server.backup(&vol, &["--incremental"])["id"]);
    let mut c = BackupServiceClient::new(server.channel().await);
    for block_size in [4096u64, 65536] {
        let listing = server.json1(&[
            "changed-blocks",
            &full,
            &inc,
            "--block-size",
            &block_size.to_string(),
        ]);
        let want: Vec<(u64, u64)> = listing["extents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e[0].as_u64().unwrap(), e[1].as_u64().unwrap()))
            .collect();
        assert!(!want.is_empty());
        let pieces = |start: u64, max: u64| {
            let mut c = c.clone();
            let (full, inc) = (full.clone(), inc.clone());
            async move {
                let mut s = c
                    .get_changed_block_data(pb::GetChangedBlockDataRequest {
                        first_backup_id: full,
                        second_backup_id: inc,
                        block_size,
                        starting_block_index: start,
                        max_blocks: max,
                        page_token: String::new(),
                    })
                    .await
                    .unwrap()
                    .into_inner();
                let mut out = Vec::new();
                while let Some(p) = s.message().await.unwrap() {
                    out.push(p);
                }
                out
            }
        };
        let all = pieces(0, 0).await;
        let mut got: Vec<(u64, u64)> = Vec::new();
        for p in &all {
            assert_eq!(p.block_size, block_size);
            assert_eq!(p.offset, p.block_index * block_size);
            assert!(p.data.len() <= 1 << 20);
            assert_eq!(p.blake3, blake3::hash(&p.data).to_hex().to_string());
            assert_eq!(
                p.data,
                &now[p.offset as usize..p.offset as usize + p.data.len()],
                "bytes at {}",
                p.offset
            );
            match got.last_mut() {
                Some(last) if last.0 + last.1 == p.block_index => last.1 += p.block_count,
                _ => got.push((p.block_index, p.block_count)),
            }
        }
        assert_eq!(got, want, "the pieces cover exactly the listing's extents");
        // At most N blocks, then the rest from the block after the last piece.
        let first_part = pieces(0, 3).await;
        let sent: u64 = first_part.iter().map(|p| p.block_count).sum();
        assert_eq!(sent, 3.min(want.iter().map(|e| e.1).sum()));
        let last = first_part.last().unwrap();
        let rest = pieces(last.block_index + last.block_count, 0).await;
        let joined: Vec<u8> = first_part
            .iter()
            .chain(rest.iter())
            .flat_map(|p| p.data.clone())
            .collect();
        let whole: Vec<u8> = all.iter().flat_map(|p| p.data.clone()).collect();
        assert_eq!(
            joined, whole,
            "a resumed stream continues where the first stopped"
        );
    }
    // `changed-blocks --out`: the same bytes in a sparse image of the volume's size, zeros
    // (holes) everywhere else.
    let image = dir.path().join("changed.img");
    let written = server.json1(&[
        "changed-blocks",
        &full,
        &inc,
        "--block-size",
        "65536",
        "--out",
        image.to_str().unwrap(),
    ]);
    let got = std::fs::read(&image).unwrap();
    assert_eq!(got.len() as u64, SIZE, "{written}");
    let changed = server.json1(&["changed-blocks", &full, &inc, "--block-size", "65536"]);
    let mut want = vec![0u8; SIZE as usize];
    for e in changed["extents"].as_array().unwrap() {
        let (at, n) = (
            e[0].as_u64().unwrap() as usize * 65536,
            e[1].as_u64().unwrap() as usize * 65536,
        );
        want[at..at + n].copy_from_slice(&now[at..at + n]);
    }
    assert!(
        got == want,
        "the image holds the changed blocks at their offsets, zeros elsewhere"
    );
    use std::os::unix::fs::MetadataExt;
    let allocated = std::fs::metadata(&image).unwrap().blocks() * 512;
    assert!(
        allocated <= written["bytes"].as_u64().unwrap() + (1 << 20),
        "the image is sparse: {allocated} bytes allocated for {written}"
    );
    let e = c
        .get_changed_block_data(pb::GetChangedBlockDataRequest {
            first_backup_id: full.clone(),
            second_backup_id: inc.clone(),
            block_size: 3000,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
}

/// `blockdelta scan iscsi://…` (issue 14's scan, over the built-in initiator): a delta
/// volume attached at 512- and 4096-byte logical blocks, change block sizes 4 KiB and
/// 1 MiB; `--list --json` gives exactly the listing's extents in LBAs, `--out` an image
/// holding the second backup's bytes there and zeros elsewhere.
#[test]
fn scan_finds_and_reads_exactly_the_changed_extents() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    const SIZE: u64 = 8 << 20;
    let (vol, path) = server.create_volume("data", SIZE);
    let mut m = Model::new(&path, SIZE, 0x5ca1);
    m.populate(10);
    let full = s(&server.backup(&vol, &[])["id"]);
    m.populate(6);
    let now = std::fs::read(&path).unwrap();
    let inc = s(&server.backup(&vol, &["--incremental"])["id"]);
    for (change_block, lun_block) in [(4096u64, 512u64), (1 << 20, 4096)] {
        let delta = s(&server.create_delta(
            &full,
            &inc,
            &["--change-block-size", &change_block.to_string()],
        )["id"]);
        let a = server.json1(&[
            "volume",
            "attach",
            &delta,
            "--chap",
            "--block-size",
            &lun_block.to_string(),
        ]);
        let url = format!("iscsi://{}/{}/0", s(&a["portal"]), s(&a["target_iqn"]));
        let chap = [
            "--chap-user",
            a["chap_username"].as_str().unwrap(),
            "--chap-secret",
            a["chap_secret"].as_str().unwrap(),
        ];
        let listing = server.json1(&[
            "changed-blocks",
            &full,
            &inc,
            "--block-size",
            &change_block.to_string(),
        ]);
        let per = change_block / lun_block;
        let want: Vec<Value> = listing["extents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                serde_json::json!([e[0].as_u64().unwrap() * per, e[1].as_u64().unwrap() * per])
            })
            .collect();
        let scanned = server.json1(&[&["scan", &url, "--list"][..], &chap].concat());
        assert_eq!(scanned["block_size"], lun_block, "{scanned}");
        assert_eq!(
            scanned["extents"],
            Value::Array(want.clone()),
            "{change_block}/{lun_block}"
        );
        let image = dir.path().join(format!("scan-{change_block}.img"));
        let read =
            server.json1(&[&["scan", &url, "--out", image.to_str().unwrap()][..], &chap].concat());
        let got = std::fs::read(&image).unwrap();
        let mut expected = vec![0u8; SIZE as usize];
        for e in &want {
            let at = (e[0].as_u64().unwrap() * lun_block) as usize;
            let n = (e[1].as_u64().unwrap() * lun_block) as usize;
            expected[at..at + n].copy_from_slice(&now[at..at + n]);
        }
        assert!(
            got == expected,
            "scan --out {change_block}/{lun_block}: {read}"
        );
        // --stream: the same extents and bytes, each with its blake3, in one framed stream.
        let streamed = server.cli(&[&["scan", &url, "--stream"][..], &chap].concat());
        assert!(streamed.status.success(), "{streamed:?}");
        let decoded = blockdelta::scan::stream::decode(&streamed.stdout).unwrap();
        assert_eq!(
            (decoded.block_size as u64, decoded.medium_bytes),
            (lun_block, SIZE)
        );
        let mut rebuilt = vec![0u8; SIZE as usize];
        for (offset, data) in &decoded.extents {
            rebuilt[*offset as usize..*offset as usize + data.len()].copy_from_slice(data);
        }
        assert!(
            rebuilt == expected,
            "scan --stream {change_block}/{lun_block}"
        );
        assert_eq!(decoded.extents.len(), want.len());
        // --verify: extents against ListChangedBlocks, bytes against GetBlockData.
        let verified = server.json1(&[&["scan", &url, "--verify"][..], &chap].concat());
        assert_eq!(verified["verified"], true, "{verified}");
        let e = server.cli(&[&["scan", &url, "--verify", &vol][..], &chap].concat());
        assert!(!e.status.success());
        assert!(
            String::from_utf8_lossy(&e.stderr).contains("not a delta volume"),
            "{e:?}"
        );
        // Without CHAP the login is refused, and the command says so.
        let out = server.cli(&["scan", &url]);
        assert!(!out.status.success());
        server.json1(&["volume", "detach", &delta]);
        server.json1(&["volume", "delete", &delta]);
    }
    let e = server.cli(&["scan", "/dev/sdz"]);
    assert!(!e.status.success());
    assert!(
        String::from_utf8_lossy(&e.stderr).contains("/dev/sdz"),
        "{e:?}"
    );
    // A file is not a SCSI device: SG_IO says so.
    let e = server.cli(&["scan", path.to_str().unwrap()]);
    assert!(!e.status.success());
    assert!(
        String::from_utf8_lossy(&e.stderr).contains("SG_IO"),
        "{e:?}"
    );
    let e = server.cli(&["scan", "sda"]);
    assert!(!e.status.success());
    assert!(String::from_utf8_lossy(&e.stderr).contains("iscsi://"));
}
