//! The delta volume: a read-only, sparse, virtual logical unit. A block inside a
//! changed change block reads as the second backup's bytes; every other block is
//! deallocated and reads as zeros. GET LBA STATUS reports the delta map's runs at
//! the change block size: mapped for changed, deallocated for the rest.
//!
//! It reaches the target only through `target_emulator::Lun` and the repository
//! only through the `ChainReader` (cached, verified frames).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use target_emulator::{Lun, LunError, Provisioning};

use super::map::DeltaMap;
use super::read_ahead::{Job, ReadAheadPool};
use crate::repo::{ChainReader, TRACKING_BLOCK_SIZE};

const BLOCK: u64 = TRACKING_BLOCK_SIZE;
/// How far ahead of a sequential reader frames are fetched: 8 MiB.
const READ_AHEAD_BLOCKS: u64 = 2048;

pub struct DeltaVolume {
    reader: Arc<ChainReader>,
    second_backup_id: Arc<str>,
    map: Arc<DeltaMap>,
    /// Logical block size the LUN exposes: 512 or 4096.
    block_size: u32,
    serial: String,
    read_ahead: Option<Arc<ReadAheadPool>>,
    /// Tracking block just after the last read: a read starting there is sequential.
    next_expected: AtomicU64,
    /// Read-ahead has been asked up to here (tracking blocks, exclusive).
    fetched_until: AtomicU64,
}

impl DeltaVolume {
    /// `block_size` must be 512 or 4096 (the export layer checks it).
    pub fn new(
        reader: Arc<ChainReader>,
        second_backup_id: &str,
        map: Arc<DeltaMap>,
        block_size: u32,
        serial: String,
        read_ahead: Option<Arc<ReadAheadPool>>,
    ) -> DeltaVolume {
        DeltaVolume {
            reader,
            second_backup_id: Arc::from(second_backup_id),
            map,
            block_size,
            serial,
            read_ahead,
            next_expected: AtomicU64::new(u64::MAX),
            fetched_until: AtomicU64::new(0),
        }
    }

    fn factor(&self) -> u64 {
        self.map.block_size() / BLOCK
    }

    /// Copies `out.len()` bytes of tracking block `t` from offset `within` into `out`.
    fn copy_block(&self, t: u64, within: usize, out: &mut [u8]) -> Result<(), LunError> {
        if !self.map.is_changed(t / self.factor()) {
            out.fill(0);
            return Ok(());
        }
        let damaged = |e: crate::repo::RepoError| {
            LunError::Damaged(format!("backup {}: {e}", self.second_backup_id))
        };
        let Some((loc, first_block)) = self
            .reader
            .locate(&self.second_backup_id, t)
            .map_err(damaged)?
        else {
            out.fill(0);
            return Ok(());
        };
        let frame = self.reader.frame(&loc).map_err(damaged)?;
        let start = (t - first_block) as usize * BLOCK as usize + within;
        let bytes = frame.get(start..start + out.len()).ok_or_else(|| {
            LunError::Damaged(format!("{}: frame shorter than its extent", loc.describe()))
        })?;
        out.copy_from_slice(bytes);
        Ok(())
    }

    /// After a read of tracking blocks [first, end): if it continued the previous
    /// read, ask the pool for the frames of the next window.
    fn after_read(&self, first: u64, end: u64) {
        let sequential = self.next_expected.swap(end, Ordering::Relaxed) == first;
        let Some(pool) = &self.read_ahead else { return };
        if !sequential {
            self.fetched_until.store(end, Ordering::Relaxed);
            return;
        }
        let total = self.map.volume_size() / BLOCK;
        let target = (end + READ_AHEAD_BLOCKS).min(total);
        let from = self.fetched_until.load(Ordering::Relaxed).max(end);
        // Nothing new to ask, or still more than half a window ahead.
        if target <= from || from > end + READ_AHEAD_BLOCKS / 2 {
            return;
        }
        self.fetched_until.store(target, Ordering::Relaxed);
        pool.hint(Job {
            reader: self.reader.clone(),
            backup_id: self.second_backup_id.clone(),
            map: self.map.clone(),
            first: from,
            end: target,
        });
    }
}

impl Lun for DeltaVolume {
    fn block_size(&self) -> u32 {
        self.block_size
    }

    fn block_count(&self) -> u64 {
        self.map.volume_size() / self.block_size as u64
    }

    fn read_only(&self) -> bool {
        true
    }

    /// Clear, as Oracle's delta volumes appear to hosts: its workflow runs
    /// `sg_get_lba_status` on the disk without `-R`, which opens it read-write,
    /// and Linux refuses that on a disk whose MODE SENSE says WP. Every write is
    /// still refused with DATA PROTECT / WRITE PROTECTED.
    fn reports_write_protect(&self) -> bool {
        false
    }

    fn read(&self, lba: u64, buf: &mut [u8]) -> Result<(), LunError> {
        let start = lba * self.block_size as u64;
        let end = start + buf.len() as u64;
        let mut at = start;
        while at < end {
            let t = at / BLOCK;
            let within = (at % BLOCK) as usize;
            let len = ((BLOCK - within as u64).min(end - at)) as usize;
            let offset = (at - start) as usize;
            self.copy_block(t, within, &mut buf[offset..offset + len])?;
            at += len as u64;
        }
        if end > start {
            self.after_read(start / BLOCK, end.div_ceil(BLOCK));
        }
        Ok(())
    }

    fn provisioning(&self, lba: u64) -> Result<(Provisioning, u64), LunError> {
        let bs = self.block_size as u64;
        let change_block = lba * bs / self.map.block_size();
        let (changed, blocks) = self.map.run_at(change_block);
        let (run_offset, run_len) = self.map.byte_range(change_block, blocks);
        let run_end_lba = (run_offset + run_len).div_ceil(bs).min(self.block_count());
        let status = if changed {
            Provisioning::Mapped
        } else {
            Provisioning::Deallocated
        };
        Ok((status, (run_end_lba - lba).max(1)))
    }

    fn serial(&self) -> String {
        self.serial.clone()
    }
}
