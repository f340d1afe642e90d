//! Deltas between two backups of one chain, from metadata alone.
//!
//! - [`rules`]: which pairs of backups make a delta (Oracle's rules, DESIGN.md §6),
//!   decided from catalog records.
//! - [`map`]: the delta as changed blocks at the change block size, answered from
//!   the union of the span's 4 KiB change bitmaps.
//! - [`volume`]: the delta volume, a read-only `target_emulator::Lun` whose changed
//!   blocks read as the second backup's bytes and the rest as zeros.
//! - [`read_ahead`]: frames fetched ahead of sequential readers.
//! - [`listing`]: paged listings of changed or allocated blocks, with their tokens.
//! - [`block_data`]: any byte range of a backup, in chunks (GetBlockData).
//! - [`Deltas`]: the use case, whole — plan, list, open — that the API and the
//!   exports call.
//!
//! Arrows: `delta → engine (the service's catalog and chain reader), repo, catalog,
//! target-emulator (the Lun trait)`; it never reaches the API or the exports.

pub mod block_data;
pub mod error;
pub mod listing;
pub mod map;
pub mod read_ahead;
pub mod rules;
mod usecase;
pub mod volume;

pub use error::{DELTA_SOURCE_TYPE, DeltaError};
pub use map::DeltaMap;
pub use rules::{DeltaRequest, DeltaSource};
pub use usecase::Deltas;
pub use volume::DeltaVolume;
