//! `backup merge`: a backup becomes a synthetic full and the backups before it in its
//! chain go (DESIGN.md §12). Retention prunes this way, so no periodic full is needed.
//!
//! Order, each step safe to stop after:
//! 1. the volume's job is claimed, so no backup, restore or other merge runs on it;
//! 2. the repository gets the merged fingerprints, then the merged index (`repo::merge`):
//!    from here the backup reads through its own index; the older ones still work;
//! 3. one catalog transaction makes it a full and its ancestors `deleting`, refused if
//!    one of them is in use (a delta volume's source, a restore) — then nothing but
//!    the index changed, which says the same bytes;
//! 4. the ancestors' indexes and records go; then `gc`, in the background, reclaims what
//!    nobody references.
//!
//! A failure in 4, or a crash between 3 and 4, leaves the ancestors `error` (at the next
//! start: "interrupted"), with their indexes: deleting them again finishes the job.

use std::sync::Arc;

use super::state::Record;
use super::{EngineError, Refusal, Service};
use crate::catalog::{BackupRecord, DeleteRefusal, MergeRefusal, Status};
use crate::clock::now_rfc3339;
use crate::identity::Caller;
use crate::kinds::JobKind;
use crate::repo::merge::merge_into_full;

/// Longer chains are damaged (a loop).
const MAX_CHAIN_LEN: usize = 100_000;

impl Service {
    /// Merges backup `id` with every backup before it in its chain into a synthetic
    /// full, then removes those. A full (merged or not) is returned as it is.
    pub fn merge_backup(
        self: &Arc<Self>,
        caller: &Caller,
        id: &str,
    ) -> Result<BackupRecord, EngineError> {
        let backup = self.available_backup(caller, id)?;
        if backup.parent_id.is_none() {
            return Ok(backup);
        }
        self.claim_volume(&backup.volume_id, JobKind::Merge, id)?;
        let merged = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.merge_claimed(caller, &backup)
        }));
        // Released whatever happened: a failed merge must not leave the volume busy.
        self.release_volume(&backup.volume_id);
        let (record, ancestors) = match merged {
            Ok(merged) => merged?,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        self.remove_merged_away(id, &ancestors)?;
        self.repo.remove_unmerged_fingerprints(id);
        // Reclaiming the frames is gc's work, not the merge's: it follows in the
        // background (an explicit `gc` waits for it).
        let svc = self.clone();
        std::thread::spawn(move || {
            let collected =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| svc.collect_garbage()));
            match collected {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "garbage collection after a merge failed; run gc")
                }
                Err(_) => tracing::error!("garbage collection after a merge panicked"),
            }
        });
        Ok(record)
    }

    /// Step 4: the ancestors' indexes, then their records. One that cannot go, and those
    /// after it, end `error` saying so (never `deleting` with nothing behind it).
    fn remove_merged_away(&self, target: &str, ancestors: &[String]) -> Result<(), EngineError> {
        for (i, old) in ancestors.iter().enumerate() {
            let removed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.repo
                    .remove_backup(old)
                    .map_err(EngineError::from)
                    .and_then(|_| Ok(self.catalog.delete_backup(old)?))
            }));
            self.reader.forget(old);
            let failure = match removed {
                Ok(Ok(())) => continue,
                Ok(Err(e)) => e.to_string(),
                Err(_) => "internal error (see the server log)".to_string(),
            };
            tracing::warn!(backup = %old, error = %failure, "a merged-away backup could not be removed");
            for rest in &ancestors[i..] {
                self.pending.set(
                    &self.catalog,
                    Record::Backup(rest.clone()),
                    Status::Error,
                    &format!(
                        "merged into {target}, then removing it failed: {failure}; delete it again"
                    ),
                );
            }
            return Err(Refusal::MergeLeftBackups {
                target: target.to_string(),
                left: ancestors[i..].to_vec(),
                reason: failure,
            }
            .into());
        }
        Ok(())
    }

    /// Steps 2 and 3, while the volume's job is held.
    fn merge_claimed(
        &self,
        caller: &Caller,
        backup: &BackupRecord,
    ) -> Result<(BackupRecord, Vec<String>), EngineError> {
        let id = backup.id.as_str();
        // From the catalog, not the index: a merge that stopped after its index step has
        // an index without parents, and its ancestors must still go.
        let ancestors = self.catalog_ancestors(backup)?;
        let merged_at = now_rfc3339();
        let merged = merge_into_full(&self.reader, id, &merged_at);
        // Whatever happened, the cached index of `id` is no longer the one stored.
        self.reader.forget(id);
        let merged = merged.map_err(|source| EngineError::Damaged {
            backup_id: id.to_string(),
            owner_id: id.to_string(),
            source,
        })?;
        let record = BackupRecord {
            kind: merged.index.manifest.kind,
            parent_id: None,
            changed_blocks: merged.index.manifest.changed_blocks,
            allocated_blocks: merged.index.manifest.allocated_blocks,
            stored_bytes: merged.stored_bytes,
            merged_at: merged.index.manifest.merged_at.clone().unwrap_or(merged_at),
            ..backup.clone()
        };
        match self.catalog.record_merge(&record, &ancestors)? {
            Ok(()) => {}
            Err(MergeRefusal { backup: old, why }) => {
                return Err(Refusal::MergeBlocked {
                    target: id.to_string(),
                    backup: old,
                    reason: describe(why),
                }
                .into());
            }
        }
        self.audit_action(
            caller,
            &backup.project,
            "backup.merge",
            id,
            serde_json::json!({"merged": ancestors}),
        );
        Ok((record, ancestors))
    }

    /// The backups before `backup` in its chain, oldest first, as the catalog has them.
    pub(super) fn catalog_ancestors(
        &self,
        backup: &BackupRecord,
    ) -> Result<Vec<String>, EngineError> {
        let mut out = Vec::new();
        let mut parent = backup.parent_id.clone();
        while let Some(id) = parent {
            if out.len() > MAX_CHAIN_LEN || out.contains(&id) {
                return Err(crate::catalog::CatalogError::Corrupt(format!(
                    "backup {}'s chain loops at {id}",
                    backup.id
                ))
                .into());
            }
            parent = self.catalog.get_backup(&id, None)?.parent_id;
            out.push(id);
        }
        out.reverse();
        Ok(out)
    }
}

fn describe(why: DeleteRefusal) -> String {
    match why {
        DeleteRefusal::Dependents(children) => format!(
            "has dependent backups outside the chain ({})",
            children.join(", ")
        ),
        DeleteRefusal::DeltaSources(deltas) => format!(
            "is the source of delta volumes ({}); delete them first",
            deltas.join(", ")
        ),
        DeleteRefusal::State(status) => format!("is {status}, not available"),
        DeleteRefusal::AlreadyDeleting => "is being deleted".to_string(),
    }
}
