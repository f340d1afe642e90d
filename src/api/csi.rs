//! `csi.v1.SnapshotMetadata` (CSI spec v1.10+): the allocated extents of a backup
//! and the changed extents between two backups of a chain, streamed as
//! VARIABLE_LENGTH byte extents. Backup ids are the snapshot ids. Errors use CSI's
//! codes (`status::to_csi_status`).

use std::pin::Pin;
use std::sync::Arc;

use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::csi_pb::snapshot_metadata_server::SnapshotMetadata;
use super::csi_pb::{
    BlockMetadata, BlockMetadataType, GetMetadataAllocatedRequest, GetMetadataAllocatedResponse,
    GetMetadataDeltaRequest, GetMetadataDeltaResponse,
};
use super::{Api, ApiError, status};
use crate::delta::listing::Listing;

/// CSI's block metadata is in the tracking blocks of the change bitmaps: 4 KiB.
const CSI_BLOCK_SIZE: u64 = 4096;

/// Tuples per message when the caller leaves it to us.
const DEFAULT_TUPLES: usize = 1024;

pub struct CsiApi {
    pub api: Arc<Api>,
}

type Responses<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// The request fields every call shares, checked as the spec orders.
fn check_fields(
    ids: &[(&str, &str)],
    starting_offset: i64,
    max_results: i32,
) -> Result<usize, ApiError> {
    for (field, value) in ids {
        if value.is_empty() {
            return Err(ApiError::InvalidArgument(format!("{field} is required")));
        }
    }
    if max_results < 0 {
        return Err(ApiError::InvalidArgument(format!(
            "max_results {max_results} must not be negative"
        )));
    }
    if starting_offset < 0 {
        return Err(ApiError::OutOfRange(format!(
            "starting_offset {starting_offset} is negative"
        )));
    }
    Ok(if max_results == 0 {
        DEFAULT_TUPLES
    } else {
        max_results as usize
    })
}

/// Where a stream starts: the 4 KiB block holding `starting_offset`, so the first
/// tuple ends after it (CSI's resume rule); past the volume is OUT_OF_RANGE.
fn first_block(listing: &Listing, starting_offset: i64) -> Result<u64, ApiError> {
    let capacity = listing.map.volume_size();
    if starting_offset as u64 > capacity {
        return Err(ApiError::OutOfRange(format!(
            "starting_offset {starting_offset} is beyond the volume's {capacity} bytes"
        )));
    }
    Ok(starting_offset as u64 / CSI_BLOCK_SIZE)
}

/// Streams the listing from `start` in messages of `per_message` tuples; always
/// at least one message, so a client learns the capacity even of an empty delta.
fn stream<T: Send + 'static>(
    listing: Listing,
    start: u64,
    per_message: usize,
    message: fn(i64, Vec<BlockMetadata>) -> T,
) -> Responses<T> {
    let capacity = listing.map.volume_size() as i64;
    let mut at = Some(start);
    super::blocking_stream(4, move || {
        let Some(from) = at else { return Ok(None) };
        let (extents, next) = listing.page(from, per_message);
        let tuples = extents
            .into_iter()
            .map(|(block, count)| {
                let (offset, len) = listing.map.byte_range(block, count);
                BlockMetadata {
                    byte_offset: offset as i64,
                    size_bytes: len as i64,
                }
            })
            .collect();
        at = next;
        Ok(Some(message(capacity, tuples)))
    })
}

async fn prepare(
    api: &Arc<Api>,
    f: impl FnOnce(&Api) -> Result<(Listing, u64, usize), ApiError> + Send + 'static,
) -> Result<(Listing, u64, usize), Status> {
    let api = api.clone();
    tokio::task::spawn_blocking(move || f(&api))
        .await
        .map_err(status::join_error)?
        .map_err(status::to_csi_status)
}

#[tonic::async_trait]
impl SnapshotMetadata for CsiApi {
    type GetMetadataAllocatedStream = Responses<GetMetadataAllocatedResponse>;
    type GetMetadataDeltaStream = Responses<GetMetadataDeltaResponse>;

    async fn get_metadata_allocated(
        &self,
        req: Request<GetMetadataAllocatedRequest>,
    ) -> Result<Response<Self::GetMetadataAllocatedStream>, Status> {
        let who = self
            .api
            .auth
            .csi_caller(req.extensions(), &req.get_ref().secrets)
            .await?;
        let r = req.into_inner();
        let (listing, start, per_message) = prepare(&self.api, move |api| {
            let per_message = check_fields(
                &[("snapshot_id", &r.snapshot_id)],
                r.starting_offset,
                r.max_results,
            )?;
            let listing = api.deltas.allocated(&who, &r.snapshot_id, CSI_BLOCK_SIZE)?;
            let start = first_block(&listing, r.starting_offset)?;
            Ok((listing, start, per_message))
        })
        .await?;
        Ok(Response::new(stream(
            listing,
            start,
            per_message,
            |capacity, block_metadata| GetMetadataAllocatedResponse {
                block_metadata_type: BlockMetadataType::VariableLength as i32,
                volume_capacity_bytes: capacity,
                block_metadata,
            },
        )))
    }

    async fn get_metadata_delta(
        &self,
        req: Request<GetMetadataDeltaRequest>,
    ) -> Result<Response<Self::GetMetadataDeltaStream>, Status> {
        let who = self
            .api
            .auth
            .csi_caller(req.extensions(), &req.get_ref().secrets)
            .await?;
        let r = req.into_inner();
        let (listing, start, per_message) = prepare(&self.api, move |api| {
            let per_message = check_fields(
                &[
                    ("base_snapshot_id", &r.base_snapshot_id),
                    ("target_snapshot_id", &r.target_snapshot_id),
                ],
                r.starting_offset,
                r.max_results,
            )?;
            let listing = api.deltas.changed(
                &who,
                &r.base_snapshot_id,
                &r.target_snapshot_id,
                CSI_BLOCK_SIZE,
            )?;
            let start = first_block(&listing, r.starting_offset)?;
            Ok((listing, start, per_message))
        })
        .await?;
        Ok(Response::new(stream(
            listing,
            start,
            per_message,
            |capacity, block_metadata| GetMetadataDeltaResponse {
                block_metadata_type: BlockMetadataType::VariableLength as i32,
                volume_capacity_bytes: capacity,
                block_metadata,
            },
        )))
    }
}
