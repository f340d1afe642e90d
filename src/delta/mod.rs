//! Deltas between two backups of one chain, from metadata alone.
//!
//! - [`rules`]: which pairs of backups make a delta (Oracle's rules, DESIGN.md §6),
//!   decided from catalog records.
//! - [`map`]: the delta as changed blocks at the change block size, answered from
//!   the union of the span's 4 KiB change bitmaps.
//! - [`volume`]: the delta volume, a read-only `target_emulator::Lun` whose changed
//!   blocks read as the second backup's bytes and the rest as zeros.
//! - [`read_ahead`]: frames fetched ahead of sequential readers.
//!
//! Arrows: `delta → repo, catalog, target-emulator (the Lun trait)`; it never
//! reaches the engine or the API.

pub mod error;
pub mod map;
pub mod read_ahead;
pub mod rules;
pub mod volume;

pub use error::{DELTA_SOURCE_TYPE, DeltaError};
pub use map::DeltaMap;
pub use rules::{DeltaRequest, DeltaSource};
pub use volume::DeltaVolume;

use crate::repo::ChainReader;

/// The delta of a validated source: the union of its span's change bitmaps at
/// its change block size. Reads only index heads (manifest and bitmaps).
pub fn compute(reader: &ChainReader, source: &DeltaSource) -> Result<DeltaMap, DeltaError> {
    let mut heads = Vec::with_capacity(source.span.len());
    for id in &source.span {
        heads.push(reader.head(id).map_err(|e| DeltaError::Repo {
            backup_id: id.clone(),
            source: e,
        })?);
    }
    Ok(DeltaMap::union(
        heads.iter().map(|h| &h.change),
        source.volume_size(),
        source.change_block_size,
    ))
}
