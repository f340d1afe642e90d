//! `blockdelta.v1.BackupService`: thin adapter over `engine::Service`.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::pb::backup_service_server::BackupService;
use super::{blocking, convert, pb};
use crate::engine::Service;
use crate::engine::service::CreateBackup;

pub struct BackupApi {
    pub svc: Arc<Service>,
}

fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

#[tonic::async_trait]
impl BackupService for BackupApi {
    async fn create_backup(
        &self,
        req: Request<pb::CreateBackupRequest>,
    ) -> Result<Response<pb::Backup>, Status> {
        let r = req.into_inner();
        blocking(&self.svc, move |svc| {
            let b = svc.create_backup(CreateBackup {
                volume: r.volume,
                name: r.name,
                incremental: r.incremental,
                force: r.force,
                compression: r.compression,
            })?;
            Ok(convert::backup(svc, b))
        })
        .await
    }

    async fn list_backups(
        &self,
        req: Request<pb::ListBackupsRequest>,
    ) -> Result<Response<pb::ListBackupsResponse>, Status> {
        let r = req.into_inner();
        blocking(&self.svc, move |svc| {
            let backups = svc
                .list_backups(non_empty(&r.volume))?
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
        let r = req.into_inner();
        blocking(&self.svc, move |svc| {
            Ok(convert::backup(svc, svc.get_backup(&r.id)?))
        })
        .await
    }

    async fn delete_backup(
        &self,
        req: Request<pb::DeleteBackupRequest>,
    ) -> Result<Response<pb::Backup>, Status> {
        let r = req.into_inner();
        blocking(&self.svc, move |svc| {
            Ok(convert::backup(svc, svc.delete_backup(&r.id, r.force)?))
        })
        .await
    }

    async fn restore_backup(
        &self,
        req: Request<pb::RestoreBackupRequest>,
    ) -> Result<Response<pb::RestoreBackupResponse>, Status> {
        let r = req.into_inner();
        blocking(&self.svc, move |svc| {
            let (b, v) = svc.restore_backup(&r.id, non_empty(&r.volume), non_empty(&r.name))?;
            Ok(pb::RestoreBackupResponse {
                backup: Some(convert::backup(svc, b)),
                volume: Some(convert::volume(svc, v)),
            })
        })
        .await
    }

    async fn verify_backup(
        &self,
        req: Request<pb::VerifyBackupRequest>,
    ) -> Result<Response<pb::VerifyBackupResponse>, Status> {
        let r = req.into_inner();
        blocking(&self.svc, move |svc| {
            let out = svc.verify_backup(&r.id)?;
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
    ) -> Result<Response<pb::BlockRuns>, Status> {
        let r = req.into_inner();
        blocking(&self.svc, move |svc| {
            let bitmap = svc.changed_blocks(&r.id)?;
            let size = svc.get_backup(&r.id)?.size;
            Ok(convert::runs(&r.id, size, &bitmap))
        })
        .await
    }

    async fn list_allocated_blocks(
        &self,
        req: Request<pb::ListChangedBlocksRequest>,
    ) -> Result<Response<pb::BlockRuns>, Status> {
        let r = req.into_inner();
        blocking(&self.svc, move |svc| {
            let bitmap = svc.allocated_blocks(&r.id)?;
            let size = svc.get_backup(&r.id)?.size;
            Ok(convert::runs(&r.id, size, &bitmap))
        })
        .await
    }

    async fn collect_garbage(
        &self,
        _req: Request<pb::CollectGarbageRequest>,
    ) -> Result<Response<pb::CollectGarbageResponse>, Status> {
        blocking(&self.svc, move |svc| {
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
        let r = req.into_inner();
        blocking(&self.svc, move |svc| {
            let report = svc.recover(&r.repository)?;
            Ok(pb::RecoverCatalogResponse {
                volumes_recovered: report.volumes,
                backups_recovered: report.backups,
                messages: report.messages,
            })
        })
        .await
    }
}
