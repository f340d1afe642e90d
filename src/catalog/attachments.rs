//! Volumes attached to the iSCSI target. The rows outlive the server: on start it
//! exports every attached volume again under the same target name and CHAP
//! credentials, so initiators reconnect as they do after any target restart.

use crate::faults::fault;
use rusqlite::{OptionalExtension, Row, params};

use super::{Catalog, CatalogError, Status};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttachmentRecord {
    pub volume_id: String,
    pub target_name: String,
    /// The only initiator allowed; empty = any.
    pub initiator: String,
    /// Empty when CHAP is off.
    pub chap_user: String,
    pub chap_secret: String,
    pub block_size: u32,
    pub read_only: bool,
    pub attached_at: String,
}

const COLUMNS: &str =
    "volume_id, target_name, initiator, chap_user, chap_secret, block_size, read_only, attached_at";

fn from_row(r: &Row<'_>) -> rusqlite::Result<AttachmentRecord> {
    Ok(AttachmentRecord {
        volume_id: r.get(0)?,
        target_name: r.get(1)?,
        initiator: r.get(2)?,
        chap_user: r.get(3)?,
        chap_secret: r.get(4)?,
        block_size: r.get::<_, i64>(5)? as u32,
        read_only: r.get(6)?,
        attached_at: r.get(7)?,
    })
}

impl Catalog {
    /// Records an attachment and marks the volume `in-use`, in one transaction.
    pub fn insert_attachment(&self, a: &AttachmentRecord) -> Result<(), CatalogError> {
        fault!("catalog.insert_attachment", CatalogError::disk_full);
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            &format!("INSERT INTO attachments ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"),
            params![
                a.volume_id,
                a.target_name,
                a.initiator,
                a.chap_user,
                a.chap_secret,
                a.block_size as i64,
                a.read_only,
                a.attached_at
            ],
        )?;
        tx.execute(
            "UPDATE volumes SET status = ?2 WHERE id = ?1",
            params![a.volume_id, Status::InUse],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Removes an attachment and marks the volume `available` again.
    pub fn delete_attachment(&self, volume_id: &str) -> Result<(), CatalogError> {
        fault!("catalog.delete_attachment", CatalogError::disk_full);
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute("DELETE FROM attachments WHERE volume_id = ?1", [volume_id])?;
        tx.execute(
            "UPDATE volumes SET status = ?2 WHERE id = ?1 AND status = ?3",
            params![volume_id, Status::Available, Status::InUse],
        )?;
        tx.commit()?;
        Ok(())
    }

    pub fn attachment(&self, volume_id: &str) -> Result<Option<AttachmentRecord>, CatalogError> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {COLUMNS} FROM attachments WHERE volume_id = ?1"),
                [volume_id],
                from_row,
            )
            .optional()?)
    }

    pub fn list_attachments(&self) -> Result<Vec<AttachmentRecord>, CatalogError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM attachments ORDER BY attached_at"
        ))?;
        let rows = stmt.query_map([], from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
