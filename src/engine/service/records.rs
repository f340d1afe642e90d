//! `backup export ID` and `backup import SERVICE URL` (cinder's export-record and
//! import-record; DESIGN.md §12). The record names the backup's chain and repository;
//! importing it on a server sharing that repository (or after its catalog rows were
//! deleted with the data kept) re-creates the rows from the repository's own indexes,
//! so a record can only ever bring back what the repository holds.

use super::recover::recovered_backup;
use super::{EngineError, Service, check_backup_id};
use crate::catalog::{BackupRecord, Quota};
use crate::engine::{InvalidRequest, Refusal};
use crate::identity::Caller;
use crate::lifecycle::{BACKUP_SERVICE, ExportedRecord};
use crate::repo::RepoError;

impl Service {
    /// The record of backup `id`: (`backup_service`, `backup_url`).
    pub fn export_backup(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<(String, String), EngineError> {
        let backup = self.available_backup(caller, id)?;
        let mut chain = self.catalog_ancestors(&backup)?;
        chain.push(backup.id.clone());
        let manifest = self.repo.read_index_head(id)?.manifest;
        let record = ExportedRecord::new(self.repo.location(), chain, manifest);
        self.audit_action(
            caller,
            &backup.project,
            "backup.export",
            id,
            serde_json::json!({}),
        );
        Ok((BACKUP_SERVICE.to_string(), record.encode()))
    }

    /// Re-creates the catalog rows of the record's backup and of its chain (those
    /// missing); a backup already in the catalog is returned as it is.
    pub fn import_backup(
        &self,
        caller: &Caller,
        service: &str,
        url: &str,
    ) -> Result<BackupRecord, EngineError> {
        if service != BACKUP_SERVICE {
            return Err(InvalidRequest::ForeignBackupService {
                service: service.to_string(),
            }
            .into());
        }
        let record = ExportedRecord::decode(url).map_err(InvalidRequest::from)?;
        if !self.is_own_repository(&record.repository) {
            return Err(InvalidRequest::ForeignRepository {
                from: record.repository,
                own: self.repo.location(),
            }
            .into());
        }
        for id in &record.chain {
            check_backup_id(id)?;
        }
        let target = record.manifest.id.clone();
        // Every backup of the chain, from the repository: what the rows are made of.
        let mut manifests = Vec::with_capacity(record.chain.len());
        for id in &record.chain {
            match self.repo.read_index_head(id) {
                Ok(head) => manifests.push(head.manifest),
                Err(RepoError::NotFound { .. }) => {
                    return Err(Refusal::RecordNotInRepository { id: id.clone() }.into());
                }
                Err(e) => return Err(e.into()),
            }
        }
        let stored = manifests.last().cloned();
        if stored.as_ref() != Some(&record.manifest) {
            return Err(InvalidRequest::RecordMismatch { id: target }.into());
        }
        let volume = &record.manifest.volume;
        self.ensure_project(&volume.project)?;
        if self.catalog.find_volume(&volume.id, None).is_err() {
            let current = self
                .repo
                .list_volumes()?
                .into_iter()
                .flatten()
                .find(|v| v.id == volume.id)
                .unwrap_or_else(|| volume.clone());
            if current.deleted_at.is_none() && current.delta_source.is_none() {
                self.catalog
                    .insert_volume(&self.recovered_volume(&current), Quota::Exempt)?;
            }
        }
        let mut imported = Vec::new();
        for m in &manifests {
            if self.catalog.get_backup(&m.id, None).is_ok() {
                continue;
            }
            self.catalog
                .insert_backup(&recovered_backup(m), Quota::Exempt)?;
            imported.push(m.id.clone());
        }
        self.audit_action(
            caller,
            &volume.project,
            "backup.import",
            &target,
            serde_json::json!({"imported": imported}),
        );
        Ok(self.catalog.get_backup(&target, None)?)
    }
}
