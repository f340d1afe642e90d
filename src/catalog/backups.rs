//! Backup records: insert (with its quota), get, list, chains, status, completion, delete.

use super::db::Row;
use super::{BackupKind, Catalog, CatalogError, Quota, Status, quotas};
use crate::faults::fault;
use crate::identity::quota::Ask;
use crate::kinds::{ChangeSource, QuotaResource};

/// Backup ids, as the engine makes them: `bkp-` and 16 lower-case hex digits.
pub fn well_formed_backup_id(id: &str) -> bool {
    id.strip_prefix("bkp-").is_some_and(|h| {
        h.len() == 16
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct BackupRecord {
    pub id: String,
    pub volume_id: String,
    pub name: String,
    pub kind: BackupKind,
    pub parent_id: Option<String>,
    pub chain_id: String,
    pub status: Status,
    pub size: u64,
    pub compression: String,
    pub changed_blocks: u64,
    pub allocated_blocks: u64,
    pub stored_bytes: u64,
    pub content_hash: String,
    pub error: String,
    pub created_at: String,
    pub completed_at: String,
    /// Its volume's project.
    pub project: String,
    /// Set when it is a synthetic full: when its chain's older backups were merged into it.
    pub merged_at: String,
    /// How it found its changes; `None` until it completes (and for backups made before
    /// this was recorded).
    pub change_source: Option<ChangeSource>,
    /// Bytes it read from its volume.
    pub read_bytes: u64,
}

/// Why a delete cannot start now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeleteRefusal {
    /// Incrementals (not `error`) name it as parent.
    Dependents(Vec<String>),
    /// Delta volumes are made from it.
    DeltaSources(Vec<String>),
    /// Its state does not allow it (being created without force, being restored).
    State(Status),
    /// It is being deleted already.
    AlreadyDeleting,
}

/// Why a merge cannot drop one of the backups before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeRefusal {
    pub backup: String,
    pub why: DeleteRefusal,
}

const BACKUP_COLUMNS: &str = "id, volume_id, name, kind, parent_id, chain_id, status, size, compression, \
     changed_blocks, allocated_blocks, stored_bytes, content_hash, error, created_at, completed_at, project, \
     merged_at, change_source, read_bytes";

impl Catalog {
    /// Inserts a backup after reserving its quota (unless `Quota::Exempt`, or it is
    /// recorded as `error` already), in one transaction.
    pub fn insert_backup(&self, b: &BackupRecord, quota: Quota) -> Result<(), CatalogError> {
        fault!("catalog.insert_backup", CatalogError::disk_full);
        self.write(|s| {
            if quota == Quota::Reserve && b.status != Status::Error {
                quotas::reserve_on(
                    s,
                    &b.project,
                    Ask {
                        count: QuotaResource::Backups,
                        size: Some((QuotaResource::BackupGigabytes, b.size)),
                    },
                )?;
            }
            // A new incremental's parent must still be there: a delete on another node
            // either marked it first (nothing inserted here) or sees this child (and is
            // refused there). One statement: the insert happens only if the parent is.
            let checked = quota == Quota::Reserve;
            let change_source = b.change_source.map_or("", ChangeSource::as_str);
            let n = s.execute(
                &format!(
                    "INSERT INTO backups ({BACKUP_COLUMNS})
                     SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18,
                            ?20, ?21
                     WHERE ?19 = 0 OR ?5 IS NULL OR EXISTS
                       (SELECT 1 FROM backups WHERE id = ?5 AND status IN ('available', 'restoring'))"
                ),
                &[
                    &b.id, &b.volume_id, &b.name, &b.kind, &b.parent_id, &b.chain_id, &b.status,
                    &b.size, &b.compression, &b.changed_blocks, &b.allocated_blocks,
                    &b.stored_bytes, &b.content_hash, &b.error, &b.created_at, &b.completed_at,
                    &b.project, &b.merged_at, &checked, &change_source, &b.read_bytes,
                ],
            )?;
            match (&b.parent_id, n) {
                (Some(parent), 0) => Err(CatalogError::ParentNotAvailable {
                    parent: parent.clone(),
                }),
                _ => Ok(()),
            }
        })
    }

    fn backup_from_row(r: &Row) -> Result<BackupRecord, CatalogError> {
        Ok(BackupRecord {
            id: r.get(0)?,
            volume_id: r.get(1)?,
            name: r.get(2)?,
            kind: r.get(3)?,
            parent_id: r.get(4)?,
            chain_id: r.get(5)?,
            status: r.get(6)?,
            size: r.get(7)?,
            compression: r.get(8)?,
            changed_blocks: r.get(9)?,
            allocated_blocks: r.get(10)?,
            stored_bytes: r.get(11)?,
            content_hash: r.get(12)?,
            error: r.get(13)?,
            created_at: r.get(14)?,
            completed_at: r.get(15)?,
            project: r.get(16)?,
            merged_at: r.get(17)?,
            change_source: ChangeSource::parse(&r.get::<String>(18)?),
            read_bytes: r.get(19)?,
        })
    }

    /// A backup of a project `scope` admits (`None`: any).
    pub fn get_backup(&self, id: &str, scope: Option<&str>) -> Result<BackupRecord, CatalogError> {
        self.read(|s| {
            s.query_opt(
                &format!("SELECT {BACKUP_COLUMNS} FROM backups WHERE id = ?1 AND (?2 IS NULL OR project = ?2)"),
                &[&id, &scope],
            )
        })?
        .map(|r| Self::backup_from_row(&r))
        .transpose()?
        .ok_or_else(|| CatalogError::NotFound {
            kind: "backup",
            id: id.to_string(),
        })
    }

    /// Backups oldest first, optionally of one volume, of the projects `scope` admits.
    pub fn list_backups(
        &self,
        volume_id: Option<&str>,
        scope: Option<&str>,
    ) -> Result<Vec<BackupRecord>, CatalogError> {
        self.read(|s| {
            s.query(
                &format!(
                    "SELECT {BACKUP_COLUMNS} FROM backups WHERE (?1 IS NULL OR volume_id = ?1)
                     AND (?2 IS NULL OR project = ?2) ORDER BY seq"
                ),
                &[&volume_id, &scope],
            )
        })?
        .iter()
        .map(Self::backup_from_row)
        .collect()
    }

    /// Backups whose parent is `id` (whatever their status).
    pub fn children(&self, id: &str) -> Result<Vec<String>, CatalogError> {
        self.read(|s| {
            s.query(
                "SELECT id FROM backups WHERE parent_id = ?1 ORDER BY seq",
                &[&id],
            )
        })?
        .iter()
        .map(|r| r.get(0))
        .collect()
    }

    /// The parent for a new incremental: the newest available backup of the chain
    /// started by the volume's newest available full.
    pub fn incremental_parent(
        &self,
        volume_id: &str,
    ) -> Result<Option<BackupRecord>, CatalogError> {
        // One statement (one round trip to a shared catalog).
        self.read(|s| {
            s.query_opt(
                &format!(
                    "SELECT {BACKUP_COLUMNS} FROM backups WHERE status IN ('available', 'restoring')
                     AND chain_id = (SELECT chain_id FROM backups WHERE volume_id = ?1 AND kind = 'full'
                                     AND status IN ('available', 'restoring') ORDER BY seq DESC LIMIT 1)
                     ORDER BY seq DESC LIMIT 1"
                ),
                &[&volume_id],
            )
        })?
        .map(|r| Self::backup_from_row(&r))
        .transpose()
    }

    pub fn set_backup_status(
        &self,
        id: &str,
        status: Status,
        error: &str,
    ) -> Result<(), CatalogError> {
        fault!("catalog.set_backup_status", CatalogError::disk_full);
        self.read(|s| {
            s.execute(
                "UPDATE backups SET status = ?2, error = ?3 WHERE id = ?1",
                &[&id, &status, &error],
            )
        })?;
        Ok(())
    }

    /// Records a finished backup: one statement, after the repository index is durable,
    /// and only while `node` still holds its job. `Ok(false)`: another node took the job
    /// over (this one lost its lease) and the backup is not this node's to finish.
    pub fn complete_backup(&self, b: &BackupRecord, node: &str) -> Result<bool, CatalogError> {
        fault!("catalog.complete_backup", CatalogError::disk_full);
        let n = self.read(|s| {
            s.execute(
                "UPDATE backups SET status = ?2, error = '', changed_blocks = ?3, allocated_blocks = ?4,
                 stored_bytes = ?5, content_hash = ?6, completed_at = ?7, change_source = ?9,
                 read_bytes = ?10
                 WHERE id = ?1 AND status = 'creating'
                   AND EXISTS (SELECT 1 FROM jobs WHERE subject = ?1 AND node = ?8)",
                &[
                    &b.id,
                    &Status::Available,
                    &b.changed_blocks,
                    &b.allocated_blocks,
                    &b.stored_bytes,
                    &b.content_hash,
                    &b.completed_at,
                    &node,
                    &b.change_source.map_or("", ChangeSource::as_str),
                    &b.read_bytes,
                ],
            )
        })?;
        Ok(n == 1)
    }

    /// Starts deleting a backup, in one transaction: refused while a backup that is not
    /// `error` names it as parent or a delta volume uses it; otherwise it becomes
    /// `deleting` (from whatever state `allowed` accepts).
    pub fn begin_delete_backup(
        &self,
        id: &str,
        allowed: impl Fn(Status) -> Result<(), DeleteRefusal>,
    ) -> Result<Result<(), DeleteRefusal>, CatalogError> {
        fault!("catalog.begin_delete_backup", CatalogError::disk_full);
        self.write(|s| {
            let children: Vec<String> = s
                .query(
                    "SELECT id FROM backups WHERE parent_id = ?1 AND status != 'error' ORDER BY seq",
                    &[&id],
                )?
                .iter()
                .map(|r| r.get(0))
                .collect::<Result<_, _>>()?;
            if !children.is_empty() {
                return Ok(Err(DeleteRefusal::Dependents(children)));
            }
            let deltas: Vec<String> = s
                .query(
                    "SELECT volume_id FROM delta_sources WHERE first_backup_id = ?1 OR second_backup_id = ?1
                     ORDER BY volume_id",
                    &[&id],
                )?
                .iter()
                .map(|r| r.get(0))
                .collect::<Result<_, _>>()?;
            if !deltas.is_empty() {
                return Ok(Err(DeleteRefusal::DeltaSources(deltas)));
            }
            let status: Status = s
                .query_opt("SELECT status FROM backups WHERE id = ?1", &[&id])?
                .ok_or_else(|| CatalogError::NotFound {
                    kind: "backup",
                    id: id.to_string(),
                })?
                .get(0)?;
            if let Err(refused) = allowed(status) {
                return Ok(Err(refused));
            }
            s.execute(
                "UPDATE backups SET status = 'deleting', error = '' WHERE id = ?1",
                &[&id],
            )?;
            Ok(Ok(()))
        })
    }

    /// Records a merge in one transaction: `merged` (the synthetic full's new figures)
    /// becomes a full with no parent and its former `ancestors` become `deleting`.
    /// Refused, changing nothing, when an ancestor is not available, a delta volume uses
    /// it, or a backup outside the merged chain depends on it.
    pub fn record_merge(
        &self,
        merged: &BackupRecord,
        ancestors: &[String],
    ) -> Result<Result<(), MergeRefusal>, CatalogError> {
        fault!("catalog.record_merge", CatalogError::disk_full);
        self.write(|s| {
            for id in ancestors {
                let refused = |why| Ok(Err(MergeRefusal { backup: id.clone(), why }));
                let status: Option<Status> = s
                    .query_opt("SELECT status FROM backups WHERE id = ?1", &[id])?
                    .map(|r| r.get(0))
                    .transpose()?;
                match status {
                    Some(Status::Available) => {}
                    Some(other) => return refused(DeleteRefusal::State(other)),
                    None => {
                        return Err(CatalogError::NotFound {
                            kind: "backup",
                            id: id.clone(),
                        });
                    }
                }
                let deltas: Vec<String> = s
                    .query(
                        "SELECT volume_id FROM delta_sources WHERE first_backup_id = ?1 OR second_backup_id = ?1
                         ORDER BY volume_id",
                        &[id],
                    )?
                    .iter()
                    .map(|r| r.get(0))
                    .collect::<Result<_, _>>()?;
                if !deltas.is_empty() {
                    return refused(DeleteRefusal::DeltaSources(deltas));
                }
                let outside: Vec<String> = s
                    .query(
                        "SELECT id FROM backups WHERE parent_id = ?1 AND status != 'error' ORDER BY seq",
                        &[id],
                    )?
                    .iter()
                    .map(|r| r.get::<String>(0))
                    .collect::<Result<Vec<_>, _>>()?
                    .into_iter()
                    .filter(|child| *child != merged.id && !ancestors.contains(child))
                    .collect();
                if !outside.is_empty() {
                    return refused(DeleteRefusal::Dependents(outside));
                }
            }
            s.execute(
                "UPDATE backups SET kind = ?2, parent_id = NULL, changed_blocks = ?3,
                 allocated_blocks = ?4, stored_bytes = ?5, merged_at = ?6
                 WHERE id = ?1",
                &[
                    &merged.id,
                    &BackupKind::Full,
                    &merged.changed_blocks,
                    &merged.allocated_blocks,
                    &merged.stored_bytes,
                    &merged.merged_at,
                ],
            )?;
            for id in ancestors {
                s.execute(
                    "UPDATE backups SET status = 'deleting', error = '' WHERE id = ?1",
                    &[id],
                )?;
            }
            Ok(Ok(()))
        })
    }

    pub fn delete_backup(&self, id: &str) -> Result<(), CatalogError> {
        fault!("catalog.delete_backup", CatalogError::disk_full);
        self.read(|s| s.execute("DELETE FROM backups WHERE id = ?1", &[&id]))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{Catalog, Quota};

    fn backup(
        id: &str,
        kind: &str,
        parent: Option<&str>,
        chain: &str,
        status: &str,
    ) -> BackupRecord {
        BackupRecord {
            id: id.into(),
            volume_id: "vol-1".into(),
            kind: BackupKind::parse(kind).unwrap(),
            parent_id: parent.map(Into::into),
            chain_id: chain.into(),
            status: Status::parse(status).unwrap(),
            compression: "zstd".into(),
            created_at: crate::clock::now_rfc3339(),
            project: "admin".into(),
            ..Default::default()
        }
    }

    #[test]
    fn parent_selection_and_interruption() {
        let dir = tempfile::tempdir().unwrap();
        let cat = Catalog::open(&dir.path().join("c.sqlite")).unwrap();
        assert!(cat.incremental_parent("vol-1").unwrap().is_none());
        cat.insert_backup(&backup("a", "full", None, "a", "available"), Quota::Reserve)
            .unwrap();
        cat.insert_backup(
            &backup("b", "incremental", Some("a"), "a", "available"),
            Quota::Reserve,
        )
        .unwrap();
        cat.insert_backup(
            &backup("c", "incremental", Some("b"), "a", "error"),
            Quota::Reserve,
        )
        .unwrap();
        assert_eq!(cat.incremental_parent("vol-1").unwrap().unwrap().id, "b");
        cat.insert_backup(&backup("d", "full", None, "d", "creating"), Quota::Reserve)
            .unwrap();
        assert_eq!(cat.incremental_parent("vol-1").unwrap().unwrap().id, "b");
        assert_eq!(cat.children("a").unwrap(), vec!["b".to_string()]);
        cat.mark_interrupted("node-a").unwrap();
        let d = cat.get_backup("d", None).unwrap();
        assert_eq!(
            (d.status.as_str(), d.error.as_str()),
            ("error", "interrupted")
        );
        assert!(matches!(
            cat.get_backup("zz", None),
            Err(CatalogError::NotFound { .. })
        ));
    }
}
