//! Volumes attached to the iSCSI target. The rows outlive the server: on start it
//! exports every attached volume again under the same target name and CHAP
//! credentials, so initiators reconnect as they do after any target restart.

use crate::faults::fault;

use super::db::Row;
use super::{Catalog, CatalogError, Status};

#[derive(Clone, Debug, PartialEq, Eq, Default)]
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
    /// The node whose target serves it (empty: a catalog from before nodes, served by
    /// whichever node starts on it).
    pub node: String,
}

const COLUMNS: &str = "volume_id, target_name, initiator, chap_user, chap_secret, block_size, read_only, \
     attached_at, node";

fn from_row(r: &Row) -> Result<AttachmentRecord, CatalogError> {
    Ok(AttachmentRecord {
        volume_id: r.get(0)?,
        target_name: r.get(1)?,
        initiator: r.get(2)?,
        chap_user: r.get(3)?,
        chap_secret: r.get(4)?,
        block_size: r.get(5)?,
        read_only: r.get(6)?,
        attached_at: r.get(7)?,
        node: r.get(8)?,
    })
}

impl Catalog {
    /// Records an attachment and marks the volume `in-use`, in one transaction. An
    /// attachment its node lost (`replacing`: that node is down) is replaced.
    pub fn insert_attachment(
        &self,
        a: &AttachmentRecord,
        replacing: Option<&AttachmentRecord>,
    ) -> Result<(), CatalogError> {
        fault!("catalog.insert_attachment", CatalogError::disk_full);
        self.write(|s| {
            if let Some(old) = replacing {
                s.execute(
                    "DELETE FROM attachments WHERE volume_id = ?1 AND node = ?2",
                    &[&old.volume_id, &old.node],
                )?;
            }
            s.execute(
                &format!(
                    "INSERT INTO attachments ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
                ),
                &[
                    &a.volume_id,
                    &a.target_name,
                    &a.initiator,
                    &a.chap_user,
                    &a.chap_secret,
                    &a.block_size,
                    &a.read_only,
                    &a.attached_at,
                    &a.node,
                ],
            )?;
            s.execute(
                "UPDATE volumes SET status = ?2 WHERE id = ?1",
                &[&a.volume_id, &Status::InUse],
            )?;
            Ok(())
        })
    }

    /// Removes an attachment and marks the volume `available` again.
    pub fn delete_attachment(&self, volume_id: &str) -> Result<(), CatalogError> {
        fault!("catalog.delete_attachment", CatalogError::disk_full);
        self.write(|s| {
            s.execute(
                "DELETE FROM attachments WHERE volume_id = ?1",
                &[&volume_id],
            )?;
            s.execute(
                "UPDATE volumes SET status = ?2 WHERE id = ?1 AND status = ?3",
                &[&volume_id, &Status::Available, &Status::InUse],
            )?;
            Ok(())
        })
    }

    /// Gives the attachments of a catalog from before nodes to `node`.
    pub fn adopt_attachments(&self, node: &str) -> Result<(), CatalogError> {
        fault!("catalog.adopt_attachments", CatalogError::disk_full);
        self.read(|s| s.execute("UPDATE attachments SET node = ?1 WHERE node = ''", &[&node]))?;
        Ok(())
    }

    /// Gives every attachment to `node`: the one server of an embedded catalog.
    pub fn claim_all_attachments(&self, node: &str) -> Result<(), CatalogError> {
        fault!("catalog.claim_all_attachments", CatalogError::disk_full);
        self.read(|s| s.execute("UPDATE attachments SET node = ?1", &[&node]))?;
        Ok(())
    }

    pub fn attachment(&self, volume_id: &str) -> Result<Option<AttachmentRecord>, CatalogError> {
        self.read(|s| {
            s.query_opt(
                &format!("SELECT {COLUMNS} FROM attachments WHERE volume_id = ?1"),
                &[&volume_id],
            )
        })?
        .map(|r| from_row(&r))
        .transpose()
    }

    /// Every attachment, or those one node serves.
    pub fn list_attachments(
        &self,
        node: Option<&str>,
    ) -> Result<Vec<AttachmentRecord>, CatalogError> {
        self.read(|s| {
            s.query(
                &format!(
                    "SELECT {COLUMNS} FROM attachments WHERE ?1 IS NULL OR node = ?1 ORDER BY attached_at"
                ),
                &[&node],
            )
        })?
        .iter()
        .map(from_row)
        .collect()
    }
}
