//! The catalog's attachments, for the exports: they own the order of side effects
//! (the export exists before the catalog says `in-use`), the service owns the records.

use super::Service;
use crate::catalog::{AttachmentRecord, Status};
use crate::engine::EngineError;

impl Service {
    /// The attachment of a volume (by id), if it has one.
    pub fn attachment(&self, volume_id: &str) -> Result<Option<AttachmentRecord>, EngineError> {
        Ok(self.catalog.attachment(volume_id)?)
    }

    /// The attachments this node serves.
    pub fn own_attachments(&self) -> Result<Vec<AttachmentRecord>, EngineError> {
        Ok(self.catalog.list_attachments(Some(self.node_name()))?)
    }

    /// Records an attachment whose export exists; its volume becomes `in-use`. `replacing`:
    /// the attachment a lost node had.
    pub fn record_attachment(
        &self,
        record: &AttachmentRecord,
        replacing: Option<&AttachmentRecord>,
    ) -> Result<(), EngineError> {
        Ok(self.catalog.insert_attachment(record, replacing)?)
    }

    /// Forgets an attachment whose export is gone; its volume is `available` again.
    pub fn forget_attachment(&self, volume_id: &str) -> Result<(), EngineError> {
        Ok(self.catalog.delete_attachment(volume_id)?)
    }

    /// Forgets an attachment that could not be exported again and marks its volume
    /// `error` with why.
    pub fn drop_attachment(&self, volume_id: &str, reason: &str) -> Result<(), EngineError> {
        self.catalog.delete_attachment(volume_id)?;
        Ok(self
            .catalog
            .set_volume_status(volume_id, Status::Error, reason)?)
    }
}
