//! The engine's errors: what went wrong in the user's words, with the id involved.

use crate::catalog::CatalogError;
use crate::kinds::Status;
use crate::repo::RepoError;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A request that can never succeed as given (bad size, name, id, codec).
    #[error(transparent)]
    Invalid(#[from] InvalidRequest),
    #[error("{kind} {id} not found")]
    NotFound { kind: &'static str, id: String },
    /// The request is valid but the state of things refuses it now.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The caller's role or the operator's volume roots forbid it (PERMISSION_DENIED).
    #[error(transparent)]
    Denied(#[from] Denial),
    #[error("interrupted")]
    Interrupted,
    /// Reading a backup hit a damaged or missing repository object.
    #[error("backup {backup_id} is damaged: {source} (stored by backup {owner_id})")]
    Damaged {
        backup_id: String,
        owner_id: String,
        #[source]
        source: RepoError,
    },
    /// Data decoded cleanly but does not match what the backup recorded.
    #[error("backup {backup_id} failed verification: {object}: {reason}")]
    VerifyFailed {
        backup_id: String,
        object: String,
        reason: String,
    },
}

impl EngineError {
    pub fn io(path: impl std::fmt::Display, source: std::io::Error) -> Self {
        EngineError::Io {
            path: path.to_string(),
            source,
        }
    }
}

/// Write tracking fails only on its file: an I/O error like any other (a full disk
/// included).
impl From<crate::tracking::TrackingError> for EngineError {
    fn from(e: crate::tracking::TrackingError) -> Self {
        let crate::tracking::TrackingError::Io { path, source } = e;
        EngineError::Io { path, source }
    }
}

/// Requests that can never succeed as given, whatever the state.
#[derive(Debug, thiserror::Error)]
pub enum InvalidRequest {
    #[error("{path} is neither a regular file nor a block device")]
    NotABlockSource { path: String },
    #[error("the file system under {dir} cannot hold a volume of {size} bytes")]
    TooLargeForFileSystem { dir: String, size: u64 },
    #[error("volume path {path} must be absolute")]
    RelativePath { path: String },
    #[error("volume path {path} does not exist")]
    NoSuchPath { path: String },
    #[error("a volume id or name has 1 to {max} characters, not {len}")]
    IdOrNameLength { max: usize, len: usize },
    #[error("{kind} name {name:?} must be 1-{max} characters of letters, digits, '.', '_' or '-'")]
    BadName {
        kind: String,
        name: String,
        max: usize,
    },
    #[error("malformed backup id {id:?}: expected bkp- and 16 hex digits")]
    MalformedBackupId { id: String },
    #[error(
        "volume size {size} must be a positive multiple of 4096 bytes (4 KiB) up to {max} (256 TiB)"
    )]
    BadVolumeSize { size: u64, max: u64 },
    #[error(transparent)]
    UnknownCodec(RepoError),
    #[error(
        "volume {volume} is a delta volume: its data is already in backups and cannot be backed up again"
    )]
    DeltaNotBackedUp { volume: String },
    #[error("volume {volume} is a delta volume: it is read-only")]
    DeltaIsReadOnly { volume: String },
    #[error("volume {volume} ({size} bytes) is smaller than backup {backup} ({backup_size} bytes)")]
    RestoreTargetTooSmall {
        volume: String,
        size: u64,
        backup: String,
        backup_size: u64,
    },
    #[error("this server's repository is {own}; recover reads only that one")]
    NotOwnRepository { own: String },
    #[error(
        "project name {name:?} must be 1-63 of a-z, 0-9, '-' and '_', starting with a letter or digit"
    )]
    BadProjectName { name: String },
    #[error(transparent)]
    BadSchedule(#[from] crate::lifecycle::ScheduleError),
    #[error("policy {name}: {why}")]
    BadPolicy { name: String, why: String },
    #[error("repository {location:?}: {why}")]
    BadRepository { location: String, why: String },
    #[error(transparent)]
    BadRecord(#[from] crate::lifecycle::RecordError),
    #[error(
        "backup_service {service:?}: this server imports only {}",
        crate::lifecycle::BACKUP_SERVICE
    )]
    ForeignBackupService { service: String },
    #[error("the record was exported from repository {from}; this server's is {own}")]
    ForeignRepository { from: String, own: String },
    #[error("the record of backup {id} does not match what the repository holds for it")]
    RecordMismatch { id: String },
    #[error("quota {resource} limit {limit} must be -1 (unlimited) or more")]
    BadQuotaLimit {
        resource: crate::identity::QuotaResource,
        limit: i64,
    },
}

/// What the caller may not do, whatever the state of things.
#[derive(Debug, thiserror::Error)]
pub enum Denial {
    #[error("only an admin may use host path {path:?}")]
    HostPathNeedsAdmin { path: String },
    #[error(transparent)]
    HostPath(#[from] crate::identity::roots::RootError),
    #[error("only an admin may copy backups to another repository ({repository:?})")]
    CopyNeedsAdmin { repository: String },
    #[error("only an admin may restore onto registered volume {volume} (host path {path:?})")]
    RestoreOntoHostPath { volume: String, path: String },
}

/// Valid requests that the state of things refuses now; each says what would let
/// them through.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("{path} is already volume {volume} ({name}): one file, one volume")]
    PathAlreadyRegistered {
        path: String,
        volume: String,
        name: String,
    },
    /// Another job holds the volume (`doing` says which).
    #[error("volume {volume} is busy ({doing})")]
    VolumeBusy { volume: String, doing: String },
    #[error("volume {volume} is busy: {running} is running")]
    VolumeJobRunning { volume: String, running: String },
    #[error("node {node} lost its lease on this job and another node failed it")]
    JobTakenOver { node: String },
    #[error("volume {volume} is attached; detach it first (or delete with --force)")]
    VolumeAttached { volume: String },
    #[error("volume {volume} is {status}, not available (use --force to back it up anyway)")]
    VolumeNotAvailable { volume: String, status: Status },
    #[error("volume {volume}'s file {path} is gone: put it back, or delete the volume")]
    VolumeFileGone { volume: String, path: String },
    #[error("volume {volume} is {size} bytes now, not a multiple of 4096")]
    VolumeSizeUnaligned { volume: String, size: u64 },
    #[error(
        "volume {volume} has no available full backup to base an incremental on; create a full backup first"
    )]
    NoFullInChain { volume: String },
    #[error("parent backup {parent} is missing from the repository")]
    ParentMissing { parent: String },
    #[error("backup {id} has dependent incremental backups ({}); delete them first", children.join(", "))]
    DependentBackups { id: String, children: Vec<String> },
    #[error("backup {id} is the source of delta volumes ({}); delete them first", deltas.join(", "))]
    DeltaSourceOf { id: String, deltas: Vec<String> },
    #[error("backup {id} is being created; use --force to cancel and delete it")]
    BackupBeingCreated { id: String },
    #[error("backup {id} is being restored; delete it when the restore ends")]
    BackupBeingRestored { id: String },
    #[error("cannot merge into backup {target}: backup {backup} {reason}")]
    MergeBlocked {
        target: String,
        backup: String,
        reason: String,
    },
    #[error(
        "backup {target} is a synthetic full now, but the backups merged into it ({}) could not be removed: {reason}; delete them",
        left.join(", ")
    )]
    MergeLeftBackups {
        target: String,
        left: Vec<String>,
        reason: String,
    },
    #[error("no restore is running onto volume {volume} (it is {status})")]
    NoRestoreRunning { volume: String, status: Status },
    #[error("the restore onto volume {volume} runs on node {node}: cancel it there")]
    RestoreOnOtherNode { volume: String, node: String },
    #[error("backup {id} is {status}, not available")]
    BackupNotAvailable { id: String, status: Status },
    #[error("backup {id} is missing from the repository")]
    BackupNotInRepository { id: String },
    #[error("backup {id}, of the record's chain, is not in this repository (any more)")]
    RecordNotInRepository { id: String },
    #[error("volume {volume} is attached (in-use); detach it before restoring onto it")]
    RestoreTargetAttached { volume: String },
    #[error("a {kind} named {name:?} already exists")]
    NameTaken { kind: String, name: String },
    #[error("garbage collection waits for running jobs ({}): run it when they end", running.join(", "))]
    GcWaitsForJobs { running: Vec<String> },
    #[error("another blockdelta server is using {dir}")]
    DataDirInUse { dir: String },
    #[error("policy {policy} is assigned to volumes {}: unassign them first", volumes.join(", "))]
    PolicyAssigned {
        policy: String,
        volumes: Vec<String>,
    },
    #[error("the admin project cannot be deleted")]
    AdminProjectStays,
    #[error("project {name} still owns volumes or backups: delete them first")]
    ProjectNotEmpty { name: String },
}
