//! Listings of blocks from metadata alone: the blocks changed between two backups
//! (or in one backup), and the blocks a backup holds. Shared by BackupService's
//! ListChangedBlocks, StreamChangedBlocks and ListAllocatedBlocks and by CSI's
//! SnapshotMetadata. Pages continue by an opaque token, as EBS's NextToken does:
//! the next block and a tag binding it to the listing it came from.

use super::{DeltaError, DeltaMap};

/// Extents per page when the caller leaves it to us, and the most we allow.
pub const DEFAULT_MAX_RESULTS: u64 = 10_000;
pub const LIMIT_MAX_RESULTS: u64 = 100_000;

/// What a listing is of: part of its page tag, so a token of one kind of listing
/// is refused by the other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListingKind {
    Changed,
    Allocated,
}

impl ListingKind {
    fn tag(self) -> &'static str {
        match self {
            ListingKind::Changed => "changed",
            ListingKind::Allocated => "allocated",
        }
    }
}

/// A listing's blocks and what it is of.
pub struct Listing {
    pub map: DeltaMap,
    /// The older backup, or the second's parent (empty for a full).
    pub first_backup_id: String,
    pub second_backup_id: String,
    kind: ListingKind,
}

/// Extents per page: 0 = the default; above the limit is an error.
pub fn max_results(asked: u64) -> Result<usize, DeltaError> {
    match asked {
        0 => Ok(DEFAULT_MAX_RESULTS as usize),
        n if n > LIMIT_MAX_RESULTS => Err(DeltaError::TooManyResults(n)),
        n => Ok(n as usize),
    }
}

impl Listing {
    pub fn new(
        kind: ListingKind,
        map: DeltaMap,
        first_backup_id: String,
        second_backup_id: String,
    ) -> Listing {
        Listing {
            map,
            first_backup_id,
            second_backup_id,
            kind,
        }
    }

    /// Where a request starts: its page token, else its starting block.
    pub fn start(&self, page_token: &str, starting_block: u64) -> Result<u64, DeltaError> {
        if page_token.is_empty() {
            return Ok(starting_block);
        }
        let bad = || DeltaError::BadPageToken(page_token.to_string());
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
        for part in [
            self.kind.tag(),
            &self.first_backup_id,
            &self.second_backup_id,
        ] {
            h.update(part.as_bytes());
            h.update(b"\0");
        }
        h.update(&self.map.block_size().to_le_bytes());
        h.update(&next.to_le_bytes());
        h.finalize().to_hex()[..16].to_string()
    }
}
