//! The logical unit of a managed volume attached writable: its file, with every write
//! (WRITE*, WRITE SAME, UNMAP, COMPARE AND WRITE, ORWRITE, WRITE AND VERIFY all end in
//! `write` or `deallocate`) marked in the volume's tracker first, and every flush
//! (SYNCHRONIZE CACHE, FUA) making the tracker's file durable before it completes.

use std::sync::Arc;

use target_emulator::{FileLun, Lun, LunError, Provisioning};

use super::{TrackingError, WriteTracker};

pub struct TrackedLun {
    inner: FileLun,
    tracker: Arc<WriteTracker>,
}

impl TrackedLun {
    pub fn new(inner: FileLun, tracker: Arc<WriteTracker>) -> TrackedLun {
        TrackedLun { inner, tracker }
    }

    fn mark(&self, lba: u64, blocks: u64) -> Result<(), LunError> {
        let bs = self.inner.block_size() as u64;
        self.tracker
            .mark(lba * bs, blocks * bs)
            .map_err(|TrackingError::Io { source, .. }| LunError::Io(source))
    }
}

impl Lun for TrackedLun {
    fn block_size(&self) -> u32 {
        self.inner.block_size()
    }
    fn block_count(&self) -> u64 {
        self.inner.block_count()
    }
    fn read_only(&self) -> bool {
        self.inner.read_only()
    }
    fn read(&self, lba: u64, buf: &mut [u8]) -> Result<(), LunError> {
        self.inner.read(lba, buf)
    }
    fn write(&self, lba: u64, data: &[u8]) -> Result<(), LunError> {
        self.mark(lba, data.len() as u64 / self.inner.block_size() as u64)?;
        self.inner.write(lba, data)?;
        self.tracker.written();
        Ok(())
    }
    fn supports_deallocate(&self) -> bool {
        self.inner.supports_deallocate()
    }
    fn deallocate(&self, lba: u64, blocks: u64) -> Result<(), LunError> {
        self.mark(lba, blocks)?;
        self.inner.deallocate(lba, blocks)?;
        self.tracker.written();
        Ok(())
    }
    fn flush(&self) -> Result<(), LunError> {
        self.inner.flush()?;
        self.tracker
            .persist()
            .map_err(|TrackingError::Io { source, .. }| LunError::Io(source))
    }
    fn provisioning(&self, lba: u64) -> Result<(Provisioning, u64), LunError> {
        self.inner.provisioning(lba)
    }
    fn serial(&self) -> String {
        self.inner.serial()
    }
}
