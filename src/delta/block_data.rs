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

/// The changed extents between two backups with their bytes (as of the second), in
/// pieces of at most [`CHUNK`] bytes that start on change-block boundaries, from a block
/// on and for at most a number of blocks: GetChangedBlockData, resumable from the block
/// after the last piece received.
pub struct ChangedData {
    listing: super::listing::Listing,
    reader: Arc<ChainReader>,
    /// The next block to look for changes from.
    next_block: u64,
    /// Blocks still to send (`u64::MAX`: all).
    budget: u64,
    /// The extent being sent: (next block of it, blocks left in it).
    current: Option<(u64, u64)>,
}

/// One piece: its first block, where it starts in the volume, and its bytes.
/// Where a GetChangedBlockData starts and how much it sends.
pub struct ChangedRange<'a> {
    /// A piece's `next_page_token`; wins over `starting_block` when not empty.
    pub page_token: &'a str,
    pub starting_block: u64,
    /// 0: every changed block.
    pub max_blocks: u64,
}

pub struct ChangedPiece {
    pub block: u64,
    pub offset: u64,
    pub data: Vec<u8>,
    /// Where the changes after this piece start, as a page token; empty after the last.
    pub next_page_token: String,
}

impl ChangedData {
    pub(super) fn new(
        listing: super::listing::Listing,
        reader: Arc<ChainReader>,
        start_block: u64,
        max_blocks: u64,
    ) -> ChangedData {
        ChangedData {
            listing,
            reader,
            next_block: start_block,
            budget: if max_blocks == 0 {
                u64::MAX
            } else {
                max_blocks
            },
            current: None,
        }
    }

    pub fn block_size(&self) -> u64 {
        self.listing.map.block_size()
    }

    pub fn volume_size(&self) -> u64 {
        self.listing.map.volume_size()
    }

    pub fn next_piece(&mut self) -> Result<Option<ChangedPiece>, DeltaError> {
        if self.budget == 0 {
            return Ok(None);
        }
        let (block, left) = match self.current.take() {
            Some(c) => c,
            None => {
                let (extents, _) = self.listing.page(self.next_block, 1);
                let Some(&(start, count)) = extents.first() else {
                    return Ok(None);
                };
                // A resumed request may start inside an extent.
                let from = start.max(self.next_block);
                (from, count - (from - start))
            }
        };
        let per_piece = (CHUNK / self.block_size()).max(1);
        let blocks = left.min(per_piece).min(self.budget);
        let (offset, len) = self.listing.map.byte_range(block, blocks);
        let mut data = BlockData {
            reader: self.reader.clone(),
            backup_id: self.listing.second_backup_id.clone(),
            next: offset,
            end: offset + len,
        };
        let mut bytes = Vec::with_capacity(len as usize);
        while let Some((_, chunk)) = data.next_chunk()? {
            bytes.extend_from_slice(&chunk);
        }
        self.budget -= blocks;
        self.next_block = block + blocks;
        if left > blocks {
            self.current = Some((block + blocks, left - blocks));
        }
        let next = match self.current {
            Some((b, _)) => Some(b),
            None => self.listing.page(self.next_block, 1).0.first().map(|e| e.0),
        };
        Ok(Some(ChangedPiece {
            block,
            offset,
            data: bytes,
            next_page_token: self.listing.token(next),
        }))
    }
}
