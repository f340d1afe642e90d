//! `backup copy ID --to REPOSITORY` and a policy's `--copy-to` (DESIGN.md §12): the
//! backup and whatever of its chain the destination lacks, with their change bitmaps, so
//! deltas work there and `recover` on it alone gives every copied backup back.

use super::{EngineError, Service};
use crate::catalog::BackupRecord;
use crate::identity::Caller;
use crate::repo::store::RepositoryLocation;
use crate::repo::{CopyCount, Repository};

impl Service {
    /// Copies backup `id` (an admin's call: the destination is a server-side location).
    pub fn copy_backup(
        &self,
        caller: &Caller,
        id: &str,
        to: &str,
    ) -> Result<(BackupRecord, CopyCount), EngineError> {
        let backup = self.available_backup(caller, id)?;
        self.check_copy_target(caller, to)?;
        let count = self.copy_backup_to(id, to)?;
        self.audit_action(
            caller,
            &backup.project,
            "backup.copy",
            id,
            serde_json::json!({"to": to, "objects": count.objects, "bytes": count.bytes}),
        );
        Ok((backup, count))
    }

    /// The copy itself, once the caller may make it.
    pub(super) fn copy_backup_to(&self, id: &str, to: &str) -> Result<CopyCount, EngineError> {
        let backup = self.catalog.get_backup(id, None)?;
        let location = RepositoryLocation::parse(to).map_err(|why| {
            crate::engine::InvalidRequest::BadRepository {
                location: to.to_string(),
                why,
            }
        })?;
        let destination = Repository::open(&location, &self.s3, true)?;
        let mut chain = self.catalog_ancestors(&backup)?;
        chain.push(backup.id.clone());
        // The volume's manifest as the catalog has it now (the copy takes it along).
        self.sync_volume_manifest(&backup.volume_id)?;
        let copied = self
            .repo
            .copy_chain(&chain, &backup.volume_id, &destination, &|| {
                self.is_stopping()
            })?;
        copied.ok_or(EngineError::Interrupted)
    }
}
