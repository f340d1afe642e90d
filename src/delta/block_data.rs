//! Block data of a backup (EBS direct APIs' GetSnapshotBlock, as a range): any byte range
//! of the volume as of a backup, zeros where it is unallocated, in chunks a caller streams
//! one at a time, so memory stays one chunk whatever the range.

use std::sync::Arc;

use super::error::DeltaError;
use crate::repo::{ChainReader, TRACKING_BLOCK_SIZE};

/// Bytes per chunk: one message of the stream.
pub const CHUNK: u64 = 1 << 20;

/// A validated range of one backup, read chunk by chunk.
pub struct BlockData {
    reader: Arc<ChainReader>,
    backup_id: String,
    next: u64,
    end: u64,
}

impl BlockData {
    /// `length` 0 means to the end of the volume. The range must lie within the volume.
    pub(super) fn new(
        reader: Arc<ChainReader>,
        backup_id: String,
        volume_size: u64,
        offset: u64,
        length: u64,
    ) -> Result<BlockData, DeltaError> {
        let end = if length == 0 {
            volume_size
        } else {
            offset.saturating_add(length)
        };
        if offset > volume_size || end > volume_size {
            return Err(DeltaError::RangeOutsideVolume {
                offset,
                length,
                volume_size,
            });
        }
        Ok(BlockData {
            reader,
            backup_id,
            next: offset,
            end,
        })
    }

    /// The next chunk, `(offset, bytes)`, or `None` at the end of the range.
    pub fn next_chunk(&mut self) -> Result<Option<(u64, Vec<u8>)>, DeltaError> {
        if self.next >= self.end {
            return Ok(None);
        }
        let offset = self.next;
        let len = (self.end - offset).min(CHUNK);
        let first_block = offset / TRACKING_BLOCK_SIZE;
        let last_block = (offset + len).div_ceil(TRACKING_BLOCK_SIZE);
        let mut buf = vec![0u8; ((last_block - first_block) * TRACKING_BLOCK_SIZE) as usize];
        self.reader
            .read_blocks(&self.backup_id, first_block, &mut buf)
            .map_err(|source| DeltaError::Repo {
                backup_id: self.backup_id.clone(),
                source,
            })?;
        let skip = (offset - first_block * TRACKING_BLOCK_SIZE) as usize;
        buf.drain(..skip);
        buf.truncate(len as usize);
        self.next = offset + len;
        Ok(Some((offset, buf)))
    }
}
