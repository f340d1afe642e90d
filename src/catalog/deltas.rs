//! Where a delta volume comes from: its two backups and change block size. A
//! delta volume has no file and no repository manifest: this row and its volume
//! row are all of it, which is why deleting it costs nothing and `recover` (which
//! rebuilds from the repository) does not bring it back.

use crate::faults::fault;

use super::{Catalog, CatalogError, Quota, VolumeRecord, insert_volume_row};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeltaSourceRecord {
    pub volume_id: String,
    pub first_backup_id: String,
    pub second_backup_id: String,
    pub change_block_size: u64,
    /// Bytes in changed blocks, counted when the volume was made.
    pub changed_bytes: u64,
}

impl Catalog {
    /// Inserts a delta volume and its source in one transaction, after reserving its
    /// quota unless `Quota::Exempt`.
    pub fn insert_delta_volume(
        &self,
        volume: &VolumeRecord,
        source: &DeltaSourceRecord,
        quota: Quota,
    ) -> Result<(), CatalogError> {
        fault!("catalog.insert_delta_volume", CatalogError::disk_full);
        self.write(|s| {
            if quota == Quota::Reserve {
                super::quotas::reserve_on(s, &volume.project, super::volume_ask(volume))?;
            }
            insert_volume_row(s, volume)?;
            s.execute(
                "INSERT INTO delta_sources (volume_id, first_backup_id, second_backup_id, change_block_size,
                 changed_bytes) VALUES (?1, ?2, ?3, ?4, ?5)",
                &[
                    &source.volume_id,
                    &source.first_backup_id,
                    &source.second_backup_id,
                    &source.change_block_size,
                    &source.changed_bytes,
                ],
            )?;
            Ok(())
        })
    }

    pub fn delta_source(&self, volume_id: &str) -> Result<Option<DeltaSourceRecord>, CatalogError> {
        self.read(|s| {
            s.query_opt(
                "SELECT volume_id, first_backup_id, second_backup_id, change_block_size, changed_bytes
                 FROM delta_sources WHERE volume_id = ?1",
                &[&volume_id],
            )
        })?
        .map(|r| {
            Ok(DeltaSourceRecord {
                volume_id: r.get(0)?,
                first_backup_id: r.get(1)?,
                second_backup_id: r.get(2)?,
                change_block_size: r.get(3)?,
                changed_bytes: r.get(4)?,
            })
        })
        .transpose()
    }

    /// Delta volumes made from `backup_id` (as first or second backup).
    pub fn delta_volumes_of_backup(&self, backup_id: &str) -> Result<Vec<String>, CatalogError> {
        self.read(|s| {
            s.query(
                "SELECT volume_id FROM delta_sources WHERE first_backup_id = ?1 OR second_backup_id = ?1
                 ORDER BY volume_id",
                &[&backup_id],
            )
        })?
        .iter()
        .map(|r| r.get(0))
        .collect()
    }
}
