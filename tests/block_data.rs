//! Block data over gRPC (the changed-blocks issue's GetBlockData): any byte range of a
//! backup, zeros where unallocated, each message with its blake3, resumable from an offset,
//! the range checked against the volume.

mod common;

use blockdelta::api::pb;
use blockdelta::api::pb::backup_service_client::BackupServiceClient;
use common::*;

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
