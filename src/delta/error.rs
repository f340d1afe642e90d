//! Why a delta (two backups of one chain, a change block size) cannot be made or
//! read, in the user's words and naming the ids involved. `api::status` maps each
//! variant to the gRPC code of DESIGN.md §6 (and, for CSI, to CSI's codes).

use crate::catalog::CatalogError;
use crate::repo::RepoError;

/// The source type Oracle's API and ours accept for a delta volume.
pub const DELTA_SOURCE_TYPE: &str = "volumeBackupDelta";

#[derive(Debug, thiserror::Error)]
pub enum DeltaError {
    #[error(
        "delta volumes are not enabled for this project (its delta_enabled setting, or the server's default)"
    )]
    Disabled,
    #[error(
        "range at {offset} of {length} bytes is outside the volume's {volume_size} bytes (length 0: to its end)"
    )]
    RangeOutsideVolume {
        offset: u64,
        length: u64,
        volume_size: u64,
    },
    /// A listing asked to start past the volume's last block: a bad argument rather than
    /// an empty answer, since no resumed listing can start there.
    #[error("starting block {block} is past the volume's {blocks} blocks")]
    StartOutsideVolume { block: u64, blocks: u64 },
    #[error("source type {0:?} is not supported: the only source type is \"{DELTA_SOURCE_TYPE}\"")]
    UnknownSourceType(String),
    #[error("a delta volume cannot have the Lower Cost performance level (vpus_per_gb 0)")]
    LowerCostPerformance,
    #[error("vpus_per_gb {0} is not a performance level: use 10 to 120 in steps of 10")]
    BadPerformance(i64),
    #[error(
        "change block size {0} must be a power of two from 4096 to 1048576 bytes (0 means 4096)"
    )]
    ChangeBlockSize(u64),
    #[error("malformed {which} backup id {id:?}: expected bkp- and 16 lower-case hex digits")]
    MalformedId { which: &'static str, id: String },
    #[error("the first and second backup are the same backup {0}")]
    SameBackup(String),
    #[error("{which} backup {id} not found")]
    NotFound { which: &'static str, id: String },
    #[error(
        "backups {first} (volume {first_volume}) and {second} (volume {second_volume}) are of different volumes"
    )]
    DifferentVolumes {
        first: String,
        first_volume: String,
        second: String,
        second_volume: String,
    },
    #[error("first backup {first} is not older than second backup {second}")]
    NotOlder { first: String, second: String },
    #[error("second backup {0} is a full backup: the second backup must be an incremental")]
    SecondIsFull(String),
    #[error(
        "full backup {full} lies between {first} and {second}: a delta spans one chain of incrementals"
    )]
    FullBetween {
        first: String,
        second: String,
        full: String,
    },
    #[error(
        "the volume was resized between the backups: {first} is {first_size} bytes, {second} is {second_size} bytes"
    )]
    Resized {
        first: String,
        first_size: u64,
        second: String,
        second_size: u64,
    },
    #[error("backup {id} is {status}, not available")]
    NotAvailable { id: String, status: String },
    #[error("page token {0:?} does not belong to this listing (or is damaged)")]
    BadPageToken(String),
    #[error("max_results {0} is above the limit of 100000")]
    TooManyResults(u64),
    /// A backup's bitmaps could not be read from the repository.
    #[error("backup {backup_id}: {source}")]
    Repo {
        backup_id: String,
        #[source]
        source: RepoError,
    },
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("delta volume {0} has no source record")]
    NoSourceRecord(String),
}
