//! The `csi.v1.SnapshotMetadata` service (delta-volume issue), with the CSI spec's
//! semantics: VARIABLE_LENGTH byte extents ascending across messages, at most
//! `max_results` per message, `starting_offset` resume (the first tuple ends after
//! it), and CSI's error codes: INVALID_ARGUMENT, NOT_FOUND, OUT_OF_RANGE, and
//! FAILED_PRECONDITION when no changed-block tracking joins two snapshots.

mod common;

use std::collections::BTreeSet;

use blockdelta::api::csi_pb::snapshot_metadata_client::SnapshotMetadataClient;
use blockdelta::api::csi_pb::{
    BlockMetadataType, GetMetadataAllocatedRequest, GetMetadataDeltaRequest,
};
use common::delta::{SparseModel, coarse_extents, diff};
use common::*;
use tonic::Code;

const SIZE: u64 = 64 << 20;

async fn allocated(
    c: &mut SnapshotMetadataClient<Authed>,
    id: &str,
    starting_offset: i64,
    max_results: i32,
) -> Result<Vec<(u64, u64)>, tonic::Status> {
    let mut stream = c
        .get_metadata_allocated(GetMetadataAllocatedRequest {
            snapshot_id: id.into(),
            starting_offset,
            max_results,
            secrets: Default::default(),
        })
        .await?
        .into_inner();
    let mut out = Vec::new();
    let mut messages = 0;
    while let Some(m) = stream.message().await? {
        messages += 1;
        assert_eq!(
            m.block_metadata_type,
            BlockMetadataType::VariableLength as i32
        );
        assert_eq!(m.volume_capacity_bytes, SIZE as i64);
        if max_results > 0 {
            assert!(m.block_metadata.len() <= max_results as usize);
        }
        out.extend(
            m.block_metadata
                .iter()
                .map(|b| (b.byte_offset as u64, b.size_bytes as u64)),
        );
    }
    assert!(messages >= 1, "at least one message, to carry the capacity");
    Ok(out)
}

async fn delta(
    c: &mut SnapshotMetadataClient<Authed>,
    base: &str,
    target: &str,
    starting_offset: i64,
) -> Result<Vec<(u64, u64)>, tonic::Status> {
    let mut stream = c
        .get_metadata_delta(GetMetadataDeltaRequest {
            base_snapshot_id: base.into(),
            target_snapshot_id: target.into(),
            starting_offset,
            max_results: 0,
            secrets: Default::default(),
        })
        .await?
        .into_inner();
    let mut out = Vec::new();
    while let Some(m) = stream.message().await? {
        out.extend(
            m.block_metadata
                .iter()
                .map(|b| (b.byte_offset as u64, b.size_bytes as u64)),
        );
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allocated_and_delta_extents_resume_and_csi_error_codes() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let mut m = SparseModel::create(&dir.path().join("v.img"), SIZE, 5);
    for i in 0..25u64 {
        m.fill(
            i * 611 % m.tracking_blocks(),
            (i % 5 + 1) as usize,
            i % 2 == 0,
        );
    }
    let vol = s(&server.json1(&[
        "volume",
        "register",
        "--name",
        "v",
        "--path",
        m.path.to_str().unwrap(),
    ])["id"]);
    let full = s(&server.backup(&vol, &[])["id"]);
    let gen0 = m.blocks.clone();
    m.fill(7, 2, false);
    m.zero(gen0.keys().nth(3).copied().unwrap(), 1);
    let inc = s(&server.backup(&vol, &["--incremental"])["id"]);
    let gen1 = m.blocks.clone();
    let full2 = s(&server.backup(&vol, &[])["id"]);
    m.fill(9000, 1, false);
    let inc2 = s(&server.backup(&vol, &["--incremental"])["id"]);
    let mut c = SnapshotMetadataClient::new(server.channel().await);

    // Allocated: exactly the full's non-zero blocks, in messages of at most 3 tuples.
    let nonzero: BTreeSet<u64> = gen0.keys().copied().collect();
    let want = coarse_extents(&nonzero, 4096, SIZE);
    assert_eq!(allocated(&mut c, &full, 0, 3).await.unwrap(), want);
    assert_eq!(allocated(&mut c, &full, 0, 0).await.unwrap(), want);
    // Resume from the middle of an extent: the first tuple ends after the offset.
    let (off, len) = want[want.len() / 2];
    let resume = off + len - 1;
    let got = allocated(&mut c, &full, resume as i64, 0).await.unwrap();
    assert!(got[0].0 <= resume && got[0].0 + got[0].1 > resume);
    assert_eq!(&got[1..], &want[want.len() / 2 + 1..]);
    assert!(
        allocated(&mut c, &full, SIZE as i64, 0)
            .await
            .unwrap()
            .is_empty()
    );

    // Delta: the incremental's changes, at 4 KiB.
    let changed = diff(&gen0, &gen1);
    assert_eq!(changed.len(), 3, "two written, one zeroed");
    assert_eq!(
        delta(&mut c, &full, &inc, 0).await.unwrap(),
        coarse_extents(&changed, 4096, SIZE)
    );
    assert_eq!(
        delta(&mut c, &full2, &inc2, 0).await.unwrap(),
        vec![(9000 * 4096, 4096)]
    );

    // CSI's error codes.
    let code = |r: Result<Vec<(u64, u64)>, tonic::Status>| r.expect_err("must fail").code();
    assert_eq!(
        code(allocated(&mut c, "", 0, 0).await),
        Code::InvalidArgument
    );
    assert_eq!(
        code(allocated(&mut c, &full, 0, -1).await),
        Code::InvalidArgument
    );
    assert_eq!(
        code(allocated(&mut c, &full, -1, 0).await),
        Code::OutOfRange
    );
    assert_eq!(
        code(allocated(&mut c, &full, SIZE as i64 + 1, 0).await),
        Code::OutOfRange
    );
    assert_eq!(
        code(allocated(&mut c, "bkp-00000000000000aa", 0, 0).await),
        Code::NotFound
    );
    assert_eq!(
        code(delta(&mut c, "", &inc, 0).await),
        Code::InvalidArgument
    );
    assert_eq!(
        code(delta(&mut c, &full, "", 0).await),
        Code::InvalidArgument
    );
    assert_eq!(
        code(delta(&mut c, &full, "bkp-00000000000000aa", 0).await),
        Code::NotFound
    );
    assert_eq!(
        code(delta(&mut c, &inc, &full, 0).await),
        Code::InvalidArgument
    );
    assert_eq!(code(delta(&mut c, &full, &inc, -5).await), Code::OutOfRange);
    // No changed-block tracking joins them (a full lies between): take a full backup.
    assert_eq!(
        code(delta(&mut c, &inc, &inc2, 0).await),
        Code::FailedPrecondition
    );
    assert_eq!(
        code(delta(&mut c, &full, &full2, 0).await),
        Code::FailedPrecondition
    );
}
