//! The backup service: volumes and backups as the user sees them. Validates
//! requests, keeps the catalog in step with the repository, runs backups and
//! restores as background jobs (one per volume at a time) and reports progress.
//!
//! - this file: the service itself, opening a data directory, jobs, shutdown;
//! - [`volumes`]: managed, registered and delta volume records, the audit log;
//! - [`backups`]: backups, restore, verify, garbage collection;
//! - [`recover`]: rebuilding the catalog from the repository;
//! - [`policies`], [`scheduler`]: policies, and running them on schedule;
//! - [`copies`]: a backup's chain copied to another repository;
//! - [`records`]: a backup's record exported and imported (cinder's backup_url);
//! - [`reports`]: `report` and `/metrics`.
//!
//! Every method blocks (SQLite, file I/O): async callers use `spawn_blocking`.

mod attachments;
mod backups;
pub mod cluster;
mod copies;
mod identity;
mod integrity;
mod merge;
mod policies;
mod records;
mod recover;
mod reports;
mod restore_cancel;
mod scheduler;
mod state;
mod volumes;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;

use super::{EngineError, InvalidRequest, JobControl, Refusal};
use crate::catalog::AttachmentRecord;
use crate::catalog::{Catalog, CatalogError, VolumeRecord};
use crate::kinds::VolumeKind;
use crate::repo::store::RepositoryLocation;
use crate::repo::{
    AttachmentManifest, ChainReader, Repository, S3Settings, TRACKING_BLOCK_SIZE, VolumeManifest,
};

pub const MAX_VOLUME_SIZE: u64 = 256 << 40;
/// Longest volume or backup name.
pub const MAX_NAME_LEN: usize = 128;

pub struct CreateBackup {
    pub volume: String,
    pub name: String,
    pub incremental: bool,
    pub force: bool,
    pub compression: String,
    /// What asked for it, when not a user's request (`policy NAME`), for the audit log.
    pub source: Option<String>,
}

pub(super) struct Job {
    control: JobControl,
    handle: Mutex<Option<JoinHandle<()>>>,
}

pub struct Service {
    volumes_dir: PathBuf,
    catalog: Catalog,
    repo: Repository,
    reader: Arc<ChainReader>,
    /// Running jobs: backup jobs by backup id, restore jobs by target volume id.
    jobs: Mutex<HashMap<String, Arc<Job>>>,
    /// Volumes with a backup or restore running, and which.
    busy: Mutex<HashMap<String, String>>,
    /// Backups and restores hold it shared; garbage collection exclusively, since
    /// a running backup's finished packs are referenced by no index yet.
    gc_lock: RwLock<()>,
    /// Token secrets are stored as keyed hashes with this key (kept in the catalog).
    token_key: [u8; 32],
    /// The operator's `volume_roots`: the only places host paths may be used.
    volume_roots: Vec<PathBuf>,
    /// Final job states the catalog could not take yet (see `state`).
    pending: state::PendingStates,
    /// This node's name and lease (see `cluster`).
    cluster: cluster::ClusterSettings,
    /// Set by shutdown: the heartbeat stops.
    stopping: std::sync::atomic::AtomicBool,
    heartbeat: Mutex<Option<JoinHandle<()>>>,
    /// What `/metrics` shows (see `crate::metrics`).
    metrics: crate::metrics::Metrics,
    /// How to reach S3, for copy targets in buckets too.
    s3: S3Settings,
    /// The scheduler and the policy runs it started (see `scheduler`).
    policy_runs: scheduler::PolicyRuns,
    /// Write tracking of managed volumes attached writable (see `crate::tracking`).
    trackers: Arc<crate::tracking::Trackers>,
    /// Held (flock) for the service's life: one server per data directory, since
    /// startup removes packs that no index references.
    _dir_lock: std::fs::File,
}

use crate::sync::lock;
pub use policies::PolicyView;
pub use reports::ReportView;

fn new_id(prefix: &str) -> String {
    format!("{prefix}-{:016x}", rand::random::<u64>())
}

/// Refuses what cannot be a backup id before it reaches the catalog.
pub fn check_backup_id(id: &str) -> Result<(), EngineError> {
    if crate::catalog::well_formed_backup_id(id) {
        Ok(())
    } else {
        Err(InvalidRequest::MalformedBackupId { id: id.to_string() }.into())
    }
}

fn check_name(kind: &str, name: &str) -> Result<(), EngineError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        && !name.starts_with("bkp-");
    if ok {
        Ok(())
    } else {
        Err(InvalidRequest::BadName {
            kind: kind.to_string(),
            name: name.to_string(),
            max: MAX_NAME_LEN,
        }
        .into())
    }
}

/// Volume sizes: whole tracking blocks, more than zero, at most `MAX_VOLUME_SIZE`.
pub fn check_size(size: u64) -> Result<(), EngineError> {
    if size == 0 || !size.is_multiple_of(TRACKING_BLOCK_SIZE) || size > MAX_VOLUME_SIZE {
        return Err(InvalidRequest::BadVolumeSize {
            size,
            max: MAX_VOLUME_SIZE,
        }
        .into());
    }
    Ok(())
}

fn name_taken(e: CatalogError) -> EngineError {
    match e {
        CatalogError::NameTaken { kind, name } => Refusal::NameTaken {
            kind: kind.to_string(),
            name,
        }
        .into(),
        other => other.into(),
    }
}

fn not_found(e: CatalogError) -> EngineError {
    match e {
        CatalogError::NotFound { kind, id } => EngineError::NotFound { kind, id },
        other => other.into(),
    }
}

impl Service {
    /// Opens (creating if needed) the catalog and repository under `data_dir`,
    /// marks whatever was running when the last server stopped as interrupted and
    /// removes the packs such runs left behind.
    pub fn open(
        data_dir: &Path,
        repository: &RepositoryLocation,
        s3: &S3Settings,
        volume_roots: Vec<PathBuf>,
        cluster: cluster::ClusterSettings,
        tracking_window: std::time::Duration,
    ) -> Result<Arc<Service>, EngineError> {
        std::fs::create_dir_all(data_dir).map_err(|e| EngineError::io(data_dir.display(), e))?;
        let data_dir = data_dir
            .canonicalize()
            .map_err(|e| EngineError::io(data_dir.display(), e))?;
        let dir_lock = lock_data_dir(&data_dir)?;
        let volumes_dir = data_dir.join("volumes");
        std::fs::create_dir_all(&volumes_dir)
            .map_err(|e| EngineError::io(volumes_dir.display(), e))?;
        let catalog = Catalog::open_at(&cluster.catalog, &data_dir)?;
        let mut repo = Repository::open(repository, s3, true)?;
        repo.set_clock_skew(cluster.clock_skew);
        let token_key = catalog.token_key()?;
        let interrupted = catalog.mark_interrupted(&cluster.node_name)?;
        let n = interrupted.len();
        catalog.fail_interrupted_runs(&cluster.node_name, &crate::clock::now_rfc3339())?;
        for lost in interrupted.iter().filter(|l| l.backup_failed) {
            // An index written just before the crash, with the catalog not yet told:
            // the catalog's "error" wins, so the repository must not resurrect it.
            repo.remove_backup(&lost.job.subject)?;
        }
        if catalog.is_shared() {
            catalog.adopt_attachments(&cluster.node_name)?;
        } else {
            // One server: every attachment is this one's, whatever name it had before.
            catalog.claim_all_attachments(&cluster.node_name)?;
        }
        let out_of_service = integrity::check_indexes(&catalog, &repo)?;
        let (packs, bytes) = integrity::collect_packs(&catalog, &repo)?;
        if out_of_service > 0 {
            tracing::warn!(
                records = out_of_service,
                "backups whose index is missing or damaged changed state (see above)"
            );
        }
        if n > 0 || packs > 0 {
            tracing::warn!(
                records = n,
                packs,
                bytes,
                "marked interrupted jobs as error and removed their packs"
            );
        }
        Ok(Arc::new(Service {
            volumes_dir,
            reader: Arc::new(ChainReader::new(repo.clone())),
            catalog,
            repo,
            jobs: Mutex::new(HashMap::new()),
            busy: Mutex::new(HashMap::new()),
            gc_lock: RwLock::new(()),
            token_key,
            volume_roots,
            pending: state::PendingStates::default(),
            cluster,
            stopping: std::sync::atomic::AtomicBool::new(false),
            heartbeat: Mutex::new(None),
            policy_runs: scheduler::PolicyRuns::default(),
            trackers: crate::tracking::Trackers::start(tracking_window),
            s3: s3.clone(),
            metrics: crate::metrics::Metrics::new(),
            _dir_lock: dir_lock,
        }))
    }

    /// Whether the catalog answers a query now (CSI's Probe, health).
    pub fn catalog_answers(&self) -> bool {
        self.catalog.list_projects().is_ok()
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub fn repository(&self) -> &Repository {
        &self.repo
    }

    /// The read path for change bitmaps and block data as of any backup, shared
    /// with delta volumes (its frame cache serves them all).
    pub fn chain_reader(&self) -> &Arc<ChainReader> {
        &self.reader
    }

    /// Runs `work` on its own thread as the job `key`; if it panics, `on_panic` runs
    /// instead of the rest of it (record the failure, release the volume).
    fn spawn_job(
        self: &Arc<Self>,
        key: String,
        work: impl FnOnce(&Arc<Service>, &JobControl) + Send + 'static,
        on_panic: impl FnOnce(&Arc<Service>) + Send + 'static,
    ) {
        let job = Arc::new(Job {
            control: JobControl::default(),
            handle: Mutex::new(None),
        });
        let mut jobs = lock(&self.jobs);
        // Under the jobs' lock, which shutdown takes after it sets `stopping`: a job it
        // will not see to cancel starts cancelled.
        if self.is_stopping() {
            job.control.cancel();
        }
        jobs.insert(key.clone(), job.clone());
        let svc = self.clone();
        let handle = std::thread::spawn({
            let job = job.clone();
            move || {
                // A panic in a job is a bug, but it must not leave the job running for
                // ever: `on_panic` records the failure and frees the volume.
                let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    work(&svc, &job.control)
                }));
                if ran.is_err() {
                    tracing::error!(job = %key, "job panicked");
                    // Even a panic while recording the panic must not keep the job
                    // listed as running: the restart marks its record interrupted.
                    let recorded =
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| on_panic(&svc)));
                    if recorded.is_err() {
                        tracing::error!(job = %key, "recording the job's panic panicked");
                    }
                }
                lock(&svc.jobs).remove(&key);
            }
        });
        *lock(&job.handle) = Some(handle);
    }

    /// Whether `shutdown` has begun (a job cancelled now is interrupted, not cancelled).
    fn is_stopping(&self) -> bool {
        self.stopping.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Graceful shutdown: cancels every running job and waits for each to record
    /// itself as `error` "interrupted".
    pub fn shutdown(&self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let jobs: Vec<Arc<Job>> = lock(&self.jobs).values().cloned().collect();
        for job in &jobs {
            job.control.cancel();
        }
        for job in jobs {
            if let Some(h) = lock(&job.handle).take()
                && h.join().is_err()
            {
                tracing::error!("a job thread panicked during shutdown");
            }
        }
        self.stop_scheduler();
        self.trackers.shutdown();
        self.pending.retry(&self.catalog);
    }

    /// The write tracking of a managed volume; `None` for other kinds, whose files may be
    /// written by others than our target.
    pub fn write_tracker(
        &self,
        volume: &VolumeRecord,
    ) -> Option<Arc<crate::tracking::WriteTracker>> {
        (volume.kind == VolumeKind::Managed)
            .then(|| self.trackers.tracker(&volume.id, Path::new(&volume.path)))
    }
}

fn lock_data_dir(data_dir: &Path) -> Result<std::fs::File, EngineError> {
    use std::os::unix::io::AsRawFd;
    let path = data_dir.join("blockdelta.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| EngineError::io(path.display(), e))?;
    // SAFETY: flock on a descriptor we own; released when the file closes or
    // the process dies (kill -9 included).
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(Refusal::DataDirInUse {
            dir: data_dir.display().to_string(),
        }
        .into());
    }
    Ok(file)
}

fn volume_manifest(v: &VolumeRecord) -> VolumeManifest {
    VolumeManifest {
        id: v.id.clone(),
        project: v.project.clone(),
        name: v.name.clone(),
        kind: v.kind,
        path: v.path.clone(),
        size: v.size,
        created_at: v.created_at.clone(),
        ..Default::default()
    }
}

/// An attachment as the repository keeps it (the volume's manifest names the volume).
fn attachment_manifest(a: AttachmentRecord) -> AttachmentManifest {
    AttachmentManifest {
        target_name: a.target_name,
        initiator: a.initiator,
        chap_user: a.chap_user,
        chap_secret: a.chap_secret,
        block_size: a.block_size,
        read_only: a.read_only,
        attached_at: a.attached_at,
    }
}

/// The catalog record of an attachment the repository kept for `volume_id`.
fn attachment_record(volume_id: &str, a: AttachmentManifest, node: &str) -> AttachmentRecord {
    AttachmentRecord {
        volume_id: volume_id.to_string(),
        target_name: a.target_name,
        initiator: a.initiator,
        chap_user: a.chap_user,
        chap_secret: a.chap_secret,
        block_size: a.block_size,
        read_only: a.read_only,
        attached_at: a.attached_at,
        node: node.to_string(),
    }
}
