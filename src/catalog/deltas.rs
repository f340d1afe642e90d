//! Where a delta volume comes from: its two backups and change block size. A
//! delta volume has no file and no repository manifest: this row and its volume
//! row are all of it, which is why deleting it costs nothing and `recover` (which
//! rebuilds from the repository) does not bring it back.

use crate::faults::fault;
use rusqlite::{OptionalExtension, params};

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
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        if quota == Quota::Reserve {
            super::quotas::reserve_on(&tx, &volume.project, super::volume_ask(volume))?;
        }
        insert_volume_row(&tx, volume)?;
        tx.execute(
            "INSERT INTO delta_sources (volume_id, first_backup_id, second_backup_id, change_block_size,
             changed_bytes) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                source.volume_id,
                source.first_backup_id,
                source.second_backup_id,
                source.change_block_size as i64,
                source.changed_bytes as i64
            ],
        )?;
        tx.commit()?;
        Ok(())
    }

    pub fn delta_source(&self, volume_id: &str) -> Result<Option<DeltaSourceRecord>, CatalogError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT volume_id, first_backup_id, second_backup_id, change_block_size, changed_bytes
                 FROM delta_sources WHERE volume_id = ?1",
                [volume_id],
                |r| {
                    Ok(DeltaSourceRecord {
                        volume_id: r.get(0)?,
                        first_backup_id: r.get(1)?,
                        second_backup_id: r.get(2)?,
                        change_block_size: r.get::<_, i64>(3)? as u64,
                        changed_bytes: r.get::<_, i64>(4)? as u64,
                    })
                },
            )
            .optional()?)
    }

    /// Delta volumes made from `backup_id` (as first or second backup).
    pub fn delta_volumes_of_backup(&self, backup_id: &str) -> Result<Vec<String>, CatalogError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT volume_id FROM delta_sources WHERE first_backup_id = ?1 OR second_backup_id = ?1
             ORDER BY volume_id",
        )?;
        let rows = stmt.query_map([backup_id], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
