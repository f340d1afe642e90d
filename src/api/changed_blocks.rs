//! Listings of blocks from metadata alone: the blocks changed between two backups
//! (or in one backup), and the blocks a backup holds. Shared by BackupService's
//! ListChangedBlocks, StreamChangedBlocks and ListAllocatedBlocks and by CSI's
//! SnapshotMetadata. Pages continue by an opaque token, as EBS's NextToken does:
//! the next block and a tag binding it to the listing it came from.

use super::{Api, ApiError};
use crate::delta::{self, DeltaError, DeltaMap};

/// Extents per page when the caller leaves it to us, and the most we allow.
pub const DEFAULT_MAX_RESULTS: u64 = 10_000;
pub const LIMIT_MAX_RESULTS: u64 = 100_000;

/// A listing's blocks and what it is of.
pub struct Listing {
    pub map: DeltaMap,
    /// The older backup, or the second's parent (empty for a full).
    pub first_backup_id: String,
    pub second_backup_id: String,
    /// "changed" or "allocated": part of the page tag.
    kind: &'static str,
}

/// The blocks changed from `first` (empty: the second's parent) to `second`, in
/// blocks of `block_size` bytes (0 = 4096). Reads bitmaps only.
pub fn changed(api: &Api, first: &str, second: &str, block_size: u64) -> Result<Listing, ApiError> {
    let block_size = delta::rules::change_block_size(block_size)?;
    if first.is_empty() {
        let backup = delta::rules::check_single(api.svc.catalog(), second)?;
        let head = head(api, second)?;
        return Ok(Listing {
            map: DeltaMap::new(head.change.clone(), backup.size, block_size),
            first_backup_id: backup.parent_id.unwrap_or_default(),
            second_backup_id: backup.id,
            kind: "changed",
        });
    }
    let source = delta::rules::check_pair(api.svc.catalog(), first, second, block_size)?;
    Ok(Listing {
        map: delta::compute(api.svc.chain_reader(), &source)?,
        first_backup_id: source.first.id,
        second_backup_id: source.second.id,
        kind: "changed",
    })
}

/// The blocks of `backup` that are not all-zero, in blocks of `block_size` bytes.
pub fn allocated(api: &Api, backup: &str, block_size: u64) -> Result<Listing, ApiError> {
    let block_size = delta::rules::change_block_size(block_size)?;
    let record = delta::rules::check_single(api.svc.catalog(), backup)?;
    let head = head(api, backup)?;
    Ok(Listing {
        map: DeltaMap::new(head.allocated.clone(), record.size, block_size),
        first_backup_id: String::new(),
        second_backup_id: record.id,
        kind: "allocated",
    })
}

fn head(api: &Api, id: &str) -> Result<std::sync::Arc<crate::repo::IndexHead>, ApiError> {
    api.svc.chain_reader().head(id).map_err(|source| {
        DeltaError::Repo {
            backup_id: id.to_string(),
            source,
        }
        .into()
    })
}

/// Extents per page: 0 = the default; above the limit is an error.
pub fn max_results(asked: u64) -> Result<usize, ApiError> {
    match asked {
        0 => Ok(DEFAULT_MAX_RESULTS as usize),
        n if n > LIMIT_MAX_RESULTS => Err(DeltaError::TooManyResults(n).into()),
        n => Ok(n as usize),
    }
}

impl Listing {
    /// Where a request starts: its page token, else its starting block.
    pub fn start(&self, page_token: &str, starting_block: u64) -> Result<u64, ApiError> {
        if page_token.is_empty() {
            return Ok(starting_block);
        }
        let bad = || ApiError::from(DeltaError::BadPageToken(page_token.to_string()));
        let (next, tag) = page_token.split_once('-').ok_or_else(bad)?;
        let next = u64::from_str_radix(next, 16).map_err(|_| bad())?;
        if tag != self.tag(next) {
            return Err(bad());
        }
        Ok(next)
    }

    /// One page: up to `max` extents from `start`, and where the rest starts.
    pub fn page(&self, start: u64, max: usize) -> (Vec<(u64, u64)>, Option<u64>) {
        self.map.changed_extents(start, max)
    }

    /// The page token for continuing at `next`; empty when the listing is done.
    pub fn token(&self, next: Option<u64>) -> String {
        next.map_or_else(String::new, |n| format!("{n:x}-{}", self.tag(n)))
    }

    fn tag(&self, next: u64) -> String {
        let mut h = blake3::Hasher::new();
        for part in [self.kind, &self.first_backup_id, &self.second_backup_id] {
            h.update(part.as_bytes());
            h.update(b"\0");
        }
        h.update(&self.map.block_size().to_le_bytes());
        h.update(&next.to_le_bytes());
        h.finalize().to_hex()[..16].to_string()
    }
}
