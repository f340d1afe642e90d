//! `blockdelta.v1.BackupService`: thin adapter over `engine::Service`, and the
//! changed-block listings of `delta::listing`.

use std::pin::Pin;
use std::sync::Arc;

use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::auth::caller;
use super::pb::backup_service_server::BackupService;
use super::{Api, ApiError, blocking, convert, pb};
use crate::delta::block_data::ChangedRange;
use crate::delta::listing::{self, Listing};
use crate::engine::service::CreateBackup;
use crate::identity::Caller;

pub struct BackupApi {
    pub api: Arc<Api>,
}

fn extents_message(listing: &Listing, extents: Vec<(u64, u64)>, next: String) -> pb::BlockExtents {
    pb::BlockExtents {
        first_backup_id: listing.first_backup_id.clone(),
        second_backup_id: listing.second_backup_id.clone(),
        block_size: listing.map.block_size(),
        volume_size: listing.map.volume_size(),
        total_blocks: listing.map.total_blocks(),
        extents: extents
            .into_iter()
            .map(|(start, count)| pb::BlockRun { start, count })
            .collect(),
        next_page_token: next,
    }
}

/// A ListChangedBlocks request as a listing, where it starts and its page size.
fn changed_listing(
    api: &Api,
    who: &Caller,
    r: &pb::ListChangedBlocksRequest,
) -> Result<(Listing, u64, usize), ApiError> {
    let listing = api
        .deltas
        .changed(who, &r.first_backup_id, &r.second_backup_id, r.block_size)?;
    let max = listing::max_results(r.max_results as u64)?;
    let start = listing.start(&r.page_token, r.starting_block_index)?;
    Ok((listing, start, max))
}

/// A server stream of `T` messages.
type Messages<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;
type ExtentStream = Messages<pb::BlockExtents>;

fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

#[tonic::async_trait]
impl BackupService for BackupApi {
    async fn create_backup(
        &self,
        req: Request<pb::CreateBackupRequest>,
    ) -> Result<Response<pb::Backup>, Status> {
        let who = caller(&req)?;
        let r = req.into_inner();
        blocking(&self.api, move |api| {
            let svc = &api.svc;
            let b = svc.create_backup(
                &who,
                CreateBackup {
                    volume: r.volume,
                    name: r.name,
                    incremental: r.incremental,
                    force: r.force,
                    compression: r.compression,
                    source: None,
                },
            )?;
            Ok(convert::backup(svc, b))
        })
        .await
    }

    async fn list_backups(
        &self,
        req: Request<pb::ListBackupsRequest>,
    ) -> Result<Response<pb::ListBackupsResponse>, Status> {
        let who = caller(&req)?;
        let r = req.into_inner();
        blocking(&self.api, move |api| {
            let svc = &api.svc;
            let backups = svc
                .list_backups(&who, non_empty(&r.volume))?
                .into_iter()
                .map(|b| convert::backup(svc, b))
                .collect();
            Ok(pb::ListBackupsResponse { backups })
        })
        .await
    }

    async fn get_backup(
        &self,
        req: Request<pb::GetBackupRequest>,
    ) -> Result<Response<pb::Backup>, Status> {
        let who = caller(&req)?;
        let r = req.into_inner();
        blocking(&self.api, move |api| {
            let svc = &api.svc;
            Ok(convert::backup(svc, svc.get_backup(&who, &r.id)?))
        })
        .await
    }

    async fn delete_backup(
        &self,
        req: Request<pb::DeleteBackupRequest>,
    ) -> Result<Response<pb::Backup>, Status> {
        let who = caller(&req)?;
        let r = req.into_inner();
        blocking(&self.api, move |api| {
            let svc = &api.svc;
            Ok(convert::backup(
                svc,
                svc.delete_backup(&who, &r.id, r.force)?,
            ))
        })
        .await
    }

    async fn cancel_restore(
        &self,
        req: Request<pb::CancelRestoreRequest>,
    ) -> Result<Response<pb::Volume>, Status> {
        let who = caller(&req)?;
        let r = req.into_inner();
        blocking(&self.api, move |api| {
            let v = api.svc.cancel_restore(&who, &r.volume)?;
            Ok(convert::volume(api, v))
        })
        .await
    }

    async fn copy_backup(
        &self,
        req: Request<pb::CopyBackupRequest>,
    ) -> Result<Response<pb::CopyBackupResponse>, Status> {
        let who = caller(&req)?;
        let r = req.into_inner();
        blocking(&self.api, move |api| {
            let svc = &api.svc;
            let (b, count) = svc.copy_backup(&who, &r.id, &r.to)?;
            Ok(pb::CopyBackupResponse {
                backup: Some(convert::backup(svc, b)),
                to: r.to,
                objects: count.objects,
                bytes: count.bytes,
            })
        })
        .await
    }

    async fn export_backup_record(
        &self,
        req: Request<pb::ExportBackupRecordRequest>,
    ) -> Result<Response<pb::BackupRecordExport>, Status> {
        let who = caller(&req)?;
        let r = req.into_inner();
        blocking(&self.api, move |api| {
            let (backup_service, backup_url) = api.svc.export_backup(&who, &r.id)?;
            Ok(pb::BackupRecordExport {
                backup_service,
                backup_url,
            })
        })
        .await
    }

    async fn import_backup_record(
        &self,
        req: Request<pb::BackupRecordExport>,
    ) -> Result<Response<pb::Backup>, Status> {
        let who = caller(&req)?;
        let r = req.into_inner();
        blocking(&self.api, move |api| {
            let svc = &api.svc;
            let b = svc.import_backup(&who, &r.backup_service, &r.backup_url)?;
            Ok(convert::backup(svc, b))
        })
        .await
    }

    async fn merge_backup(
        &self,
        req: Request<pb::MergeBackupRequest>,
    ) -> Result<Response<pb::Backup>, Status> {
        let who = caller(&req)?;
        let r = req.into_inner();
        blocking(&self.api, move |api| {
            let svc = &api.svc;
            Ok(convert::backup(svc, svc.merge_backup(&who, &r.id)?))
        })
        .await
    }

    async fn restore_backup(
        &self,
        req: Request<pb::RestoreBackupRequest>,
    ) -> Result<Response<pb::RestoreBackupResponse>, Status> {
        let who = caller(&req)?;
        let r = req.into_inner();
        blocking(&self.api, move |api| {
            let svc = &api.svc;
            let (b, v) =
                svc.restore_backup(&who, &r.id, non_empty(&r.volume), non_empty(&r.name))?;
            Ok(pb::RestoreBackupResponse {
                backup: Some(convert::backup(svc, b)),
                volume: Some(convert::volume(api, v)),
            })
        })
        .await
    }

    async fn verify_backup(
        &self,
        req: Request<pb::VerifyBackupRequest>,
    ) -> Result<Response<pb::VerifyBackupResponse>, Status> {
        let who = caller(&req)?;
        let r = req.into_inner();
        blocking(&self.api, move |api| {
            let svc = &api.svc;
            let out = svc.verify_backup(&who, &r.id)?;
            Ok(pb::VerifyBackupResponse {
                id: r.id,
                ok: true,
                frames_checked: out.frames_checked,
                blocks_checked: out.blocks_checked,
                content_hash: out.content_hash,
            })
        })
        .await
    }

    async fn list_changed_blocks(
        &self,
        req: Request<pb::ListChangedBlocksRequest>,
    ) -> Result<Response<pb::BlockExtents>, Status> {
        let who = caller(&req)?;
        let r = req.into_inner();
        blocking(&self.api, move |api| {
            let (listing, start, max) = changed_listing(api, &who, &r)?;
            let (extents, next) = listing.page(start, max);
            Ok(extents_message(&listing, extents, listing.token(next)))
        })
        .await
    }

    type StreamChangedBlocksStream = ExtentStream;

    async fn stream_changed_blocks(
        &self,
        req: Request<pb::ListChangedBlocksRequest>,
    ) -> Result<Response<ExtentStream>, Status> {
        let who = caller(&req)?;
        let r = req.into_inner();
        // Validate and compute before the stream starts, so errors are the call's.
        let listing = blocking(&self.api, move |api| changed_listing(api, &who, &r))
            .await?
            .into_inner();
        let (listing, mut start, max) = listing;
        let mut done = false;
        Ok(Response::new(super::blocking_stream(4, move || {
            if done {
                return Ok(None);
            }
            let (extents, next) = listing.page(start, max);
            let msg = extents_message(&listing, extents, listing.token(next));
            match next {
                Some(n) => start = n,
                None => done = true,
            }
            Ok(Some(msg))
        })))
    }

    async fn list_allocated_blocks(
        &self,
        req: Request<pb::ListAllocatedBlocksRequest>,
    ) -> Result<Response<pb::BlockExtents>, Status> {
        let who = caller(&req)?;
        let r = req.into_inner();
        blocking(&self.api, move |api| {
            let listing = api.deltas.allocated(&who, &r.backup_id, r.block_size)?;
            let max = listing::max_results(r.max_results as u64)?;
            let start = listing.start(&r.page_token, r.starting_block_index)?;
            let (extents, next) = listing.page(start, max);
            Ok(extents_message(&listing, extents, listing.token(next)))
        })
        .await
    }

    type GetBlockDataStream = Messages<pb::BlockData>;

    async fn get_block_data(
        &self,
        req: Request<pb::GetBlockDataRequest>,
    ) -> Result<Response<Self::GetBlockDataStream>, Status> {
        let who = caller(&req)?;
        let r = req.into_inner();
        // Checked before the stream starts, so errors are the call's.
        let mut data = blocking(&self.api, move |api| {
            Ok(api
                .deltas
                .block_data(&who, &r.backup_id, r.offset, r.length)?)
        })
        .await?
        .into_inner();
        // One message read ahead at most: a slow reader holds the reader back, not memory.
        Ok(Response::new(super::blocking_stream(1, move || {
            let chunk = data
                .next_chunk()
                .map_err(|e| super::status::to_status(e.into()))?;
            Ok(chunk.map(|(offset, bytes)| pb::BlockData {
                offset,
                blake3: blake3::hash(&bytes).to_hex().to_string(),
                data: bytes,
            }))
        })))
    }

    type GetChangedBlockDataStream = Messages<pb::ChangedBlockData>;

    async fn get_changed_block_data(
        &self,
        req: Request<pb::GetChangedBlockDataRequest>,
    ) -> Result<Response<Self::GetChangedBlockDataStream>, Status> {
        let who = caller(&req)?;
        let r = req.into_inner();
        let mut data = blocking(&self.api, move |api| {
            Ok(api.deltas.changed_data(
                &who,
                &r.first_backup_id,
                &r.second_backup_id,
                r.block_size,
                ChangedRange {
                    page_token: &r.page_token,
                    starting_block: r.starting_block_index,
                    max_blocks: r.max_blocks,
                },
            )?)
        })
        .await?
        .into_inner();
        let (block_size, volume_size) = (data.block_size(), data.volume_size());
        Ok(Response::new(super::blocking_stream(1, move || {
            let piece = data
                .next_piece()
                .map_err(|e| super::status::to_status(e.into()))?;
            Ok(piece.map(|p| pb::ChangedBlockData {
                next_page_token: p.next_page_token,
                block_index: p.block,
                block_count: (p.data.len() as u64).div_ceil(block_size),
                block_size,
                offset: p.offset,
                blake3: blake3::hash(&p.data).to_hex().to_string(),
                data: p.data,
                volume_size,
            }))
        })))
    }

    async fn collect_garbage(
        &self,
        _req: Request<pb::CollectGarbageRequest>,
    ) -> Result<Response<pb::CollectGarbageResponse>, Status> {
        blocking(&self.api, move |api| {
            let svc = &api.svc;
            let (packs_removed, bytes_removed) = svc.collect_garbage()?;
            Ok(pb::CollectGarbageResponse {
                packs_removed,
                bytes_removed,
            })
        })
        .await
    }

    async fn recover_catalog(
        &self,
        req: Request<pb::RecoverCatalogRequest>,
    ) -> Result<Response<pb::RecoverCatalogResponse>, Status> {
        let who = caller(&req)?;
        let r = req.into_inner();
        blocking(&self.api, move |api| {
            let svc = &api.svc;
            let report = svc.recover(&who, &r.repository)?;
            api.exports.export_recovered();
            Ok(pb::RecoverCatalogResponse {
                volumes_recovered: report.volumes,
                backups_recovered: report.backups,
                messages: report.messages,
            })
        })
        .await
    }
}
