//! Backups as the user sees them: create (full or incremental, in the
//! background), list, delete (respecting chains and delta volumes), restore,
//! verify, garbage collection.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::state::Record;
use super::{
    CreateBackup, Service, check_backup_id, check_name, lock, name_taken, new_id, not_found,
    volume_manifest,
};
use crate::catalog::{BackupRecord, CatalogError, DeleteRefusal, Quota, Status, VolumeRecord};
use crate::clock::now_rfc3339;
use crate::engine::backup::{BackupPlan, run_backup};
use crate::engine::restore::{VerifyOutcome, run_restore, run_verify};
use crate::engine::source::volume_size;
use crate::engine::{Denial, EngineError, InvalidRequest, JobControl, Refusal};
use crate::identity::Caller;
use crate::kinds::{BackupKind, JobKind, VolumeKind};
use crate::repo::{BackupManifest, Codec, TRACKING_BLOCK_SIZE, VolumeManifest};

impl Service {
    pub fn create_backup(
        self: &Arc<Self>,
        caller: &Caller,
        req: CreateBackup,
    ) -> Result<BackupRecord, EngineError> {
        let volume = self.get_volume(caller, &req.volume)?;
        let codec = Codec::parse(&req.compression).map_err(InvalidRequest::UnknownCodec)?;
        if !req.name.is_empty() {
            check_name("backup", &req.name)?;
        }
        if volume.kind == VolumeKind::Delta {
            return Err(InvalidRequest::DeltaNotBackedUp { volume: volume.id }.into());
        }
        if volume.status != Status::Available && !req.force {
            return Err(Refusal::VolumeNotAvailable {
                volume: volume.id,
                status: volume.status,
            }
            .into());
        }
        let size = volume_size(Path::new(&volume.path)).map_err(|e| match e {
            EngineError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                Refusal::VolumeFileGone {
                    volume: volume.id.clone(),
                    path: volume.path.clone(),
                }
                .into()
            }
            other => other,
        })?;
        if !size.is_multiple_of(TRACKING_BLOCK_SIZE) {
            return Err(Refusal::VolumeSizeUnaligned {
                volume: volume.id,
                size,
            }
            .into());
        }
        let id = new_id("bkp");
        let clock = BackupClock::start();
        self.claim_volume(&volume.id, JobKind::Backup, &id)?;
        let start = BackupStart {
            id: id.clone(),
            size,
            codec,
            clock: clock.clone(),
        };
        let result = self.start_backup(caller, &volume, req, start);
        clock.request_done();
        if result.is_err() {
            self.release_volume(&volume.id);
        }
        result
    }

    fn start_backup(
        self: &Arc<Self>,
        caller: &Caller,
        volume: &VolumeRecord,
        req: CreateBackup,
        start: BackupStart,
    ) -> Result<BackupRecord, EngineError> {
        let BackupStart {
            id,
            size,
            codec,
            clock,
        } = start;
        let id = id.as_str();
        let parent = if req.incremental {
            let parent = self
                .catalog
                .incremental_parent(&volume.id)?
                .ok_or_else(|| Refusal::NoFullInChain {
                    volume: volume.id.clone(),
                })?;
            if !self.repo.has_index(&parent.id)? {
                return Err(Refusal::ParentMissing { parent: parent.id }.into());
            }
            Some(parent)
        } else {
            None
        };
        let record = BackupRecord {
            id: id.to_string(),
            volume_id: volume.id.clone(),
            name: if req.name.is_empty() {
                id.to_string()
            } else {
                req.name.clone()
            },
            kind: if parent.is_some() {
                BackupKind::Incremental
            } else {
                BackupKind::Full
            },
            parent_id: parent.as_ref().map(|p| p.id.clone()),
            chain_id: parent
                .as_ref()
                .map_or_else(|| id.to_string(), |p| p.chain_id.clone()),
            status: Status::Creating,
            size,
            compression: codec.name().to_string(),
            created_at: now_rfc3339(),
            project: volume.project.clone(),
            ..Default::default()
        };
        self.catalog
            .insert_backup(&record, Quota::Reserve)
            .map_err(parent_gone)?;
        self.audit_action(
            caller,
            &record.project,
            "backup.create",
            &record.id,
            serde_json::json!({"volume": record.volume_id, "kind": record.kind, "parent": record.parent_id, "source": req.source}),
        );
        let plan = BackupPlan {
            manifest: BackupManifest {
                format_version: crate::repo::FORMAT_VERSION,
                id: record.id.clone(),
                name: record.name.clone(),
                kind: record.kind,
                parent_id: record.parent_id.clone(),
                chain_id: record.chain_id.clone(),
                volume: VolumeManifest {
                    size,
                    ..volume_manifest(volume)
                },
                size,
                compression: record.compression.clone(),
                created_at: record.created_at.clone(),
                completed_at: String::new(),
                content_hash: String::new(),
                changed_blocks: 0,
                allocated_blocks: 0,
                stored_bytes: 0,
                merged_at: None,
                change_source: None,
                read_bytes: None,
            },
            source: PathBuf::from(&volume.path),
            codec,
            dirty: None,
        };
        let tracker = self.write_tracker(volume);
        let mut plan = plan;
        if let Some(t) = &tracker {
            plan.dirty = trusted_dirty(t.take(), &record);
        }
        let volume_id = volume.id.clone();
        let backup_id = record.id.clone();
        let (panic_backup, panic_volume) = (backup_id.clone(), volume_id.clone());
        let panic_tracker = tracker.clone();
        let on_panic = move |svc: &Arc<Service>| {
            if let Some(t) = &panic_tracker {
                t.abort();
            }
            // The repository call that panicked may panic again here: the record must
            // still end as `error`.
            let removed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                svc.repo.remove_backup(&panic_backup)
            }));
            match removed {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::error!(backup = %panic_backup, error = %e, "cannot remove the failed backup's index")
                }
                Err(_) => {
                    tracing::error!(backup = %panic_backup, "removing the failed backup's index panicked")
                }
            }
            svc.pending.set(
                &svc.catalog,
                Record::Backup(panic_backup.clone()),
                Status::Error,
                "internal error: the backup job panicked (see the server log)",
            );
            svc.release_volume(&panic_volume);
        };
        self.spawn_job(backup_id.clone(), move |svc, control| {
            let job_catalog = crate::catalog::timing::thread_nanos();
            let result = {
                let _shared = crate::sync::read(&svc.gc_lock);
                run_backup(&svc.repo, plan, control)
            };
            let read_stored = result.as_ref().map(|out| (out.read_bytes, out.stored_bytes)).ok();
            let outcome = match result {
                Ok(out) => {
                    let done = BackupRecord {
                        id: backup_id.clone(),
                        changed_blocks: out.changed_blocks,
                        allocated_blocks: out.allocated_blocks,
                        stored_bytes: out.stored_bytes,
                        content_hash: out.content_hash,
                        completed_at: out.completed_at,
                        change_source: Some(out.change_source),
                        read_bytes: out.read_bytes,
                        ..Default::default()
                    };
                    match svc.catalog.complete_backup(&done, svc.node_name()) {
                        Ok(true) => Ok(()),
                        Ok(false) => Err(Refusal::JobTakenOver {
                            node: svc.node_name().to_string(),
                        }
                        .into()),
                        Err(e) => Err(e.into()),
                    }
                }
                Err(e) => Err(e),
            };
            match (&tracker, &outcome) {
                (Some(t), Ok(())) => {
                    // The backup is available now: nothing here may undo that, a panic
                    // included (the job's panic handler would mark it `error`).
                    let committed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        t.commit(&backup_id)
                    }));
                    if !matches!(committed, Ok(Ok(()))) {
                        let error = match committed {
                            Ok(Err(e)) => e.to_string(),
                            _ => "it panicked".into(),
                        };
                        tracing::warn!(backup = %backup_id, error, "cannot record the new base of write tracking (the next incremental compares every block)");
                    }
                }
                (Some(t), Err(_)) => t.abort(),
                (None, _) => {}
            }
            if let Err(e) = &outcome {
                tracing::warn!(backup = %backup_id, error = %e, "backup failed");
                // Its index goes first: whatever else fails, the backup cannot come back.
                if let Err(remove) = svc.repo.remove_backup(&backup_id) {
                    tracing::error!(backup = %backup_id, error = %remove, "cannot remove the failed backup's index");
                }
                // Free what the failed run wrote before recording the failure (the disk
                // may be full), unless other backups are running: then the next
                // collection or restart does it.
                if let Ok(_exclusive) = svc.gc_lock.try_write()
                    && let Err(gc) = svc.remove_unreferenced_packs()
                {
                    tracing::warn!(backup = %backup_id, error = %gc, "cannot remove the failed backup's packs yet");
                }
                // A delete that cancelled this backup owns its record now: it stays
                // `deleting` until it is gone, never a passing `error` that a client waiting
                // on the delete would take for the delete's failure.
                let deleting = svc
                    .catalog
                    .get_backup(&backup_id, None)
                    .is_ok_and(|b| b.status == Status::Deleting);
                if !deleting {
                    svc.pending.set(
                        &svc.catalog,
                        Record::Backup(backup_id.clone()),
                        Status::Error,
                        &e.to_string(),
                    );
                }
            }
            svc.release_volume(&volume_id);
            if outcome.is_ok() {
                // What the cluster benchmark reads: the share of a backup's time in its own
                // catalog calls.
                let (seconds, catalog) = clock.finish(job_catalog);
                tracing::info!(backup = %backup_id, seconds, catalog_seconds = catalog, "backup available");
                let (read, stored) = read_stored.unwrap_or_default();
                svc.metrics.backup_bytes_read.inc_by(read);
                svc.metrics.backup_bytes_stored.inc_by(stored);
                svc.metrics.backup_seconds.observe(seconds);
            }
            let ended = if outcome.is_ok() { "available" } else { "error" };
            svc.metrics.backups_ended.with_label_values(&[ended]).inc();
        }, on_panic);
        Ok(record)
    }

    /// A backup `caller` may see; another project's is not found.
    pub fn get_backup(&self, caller: &Caller, id: &str) -> Result<BackupRecord, EngineError> {
        check_backup_id(id)?;
        self.pending.retry(&self.catalog);
        let mut b = self
            .catalog
            .get_backup(id, caller.visible())
            .map_err(not_found)?;
        self.pending.overlay_backup(&mut b);
        Ok(b)
    }

    pub fn list_backups(
        &self,
        caller: &Caller,
        volume: Option<&str>,
    ) -> Result<Vec<BackupRecord>, EngineError> {
        let volume_id = match volume {
            Some(v) => Some(self.get_volume(caller, v)?.id),
            None => None,
        };
        let mut all = self
            .catalog
            .list_backups(volume_id.as_deref(), caller.visible())?;
        all.iter_mut().for_each(|b| self.pending.overlay_backup(b));
        Ok(all)
    }

    /// Progress of a running backup.
    pub fn backup_progress(&self, backup_id: &str) -> Option<(u64, u64)> {
        lock(&self.jobs)
            .get(backup_id)
            .map(|j| j.control.progress())
    }

    /// Deletes a backup in the background (status `deleting`). Refused while
    /// incrementals depend on it; a running backup only with `force`, which
    /// cancels it and removes what it wrote.
    pub fn delete_backup(
        self: &Arc<Self>,
        caller: &Caller,
        id: &str,
        force: bool,
    ) -> Result<BackupRecord, EngineError> {
        let mut backup = self.get_backup(caller, id)?;
        // One transaction decides, so a delete and a new incremental on two nodes never
        // both go through (see `Catalog::insert_backup`).
        let began = self
            .catalog
            .begin_delete_backup(id, |status| match status {
                Status::Creating if !force => Err(DeleteRefusal::State(status)),
                Status::Restoring => Err(DeleteRefusal::State(status)),
                Status::Deleting => Err(DeleteRefusal::AlreadyDeleting),
                _ => Ok(()),
            })?;
        match began {
            Ok(()) => {}
            Err(DeleteRefusal::AlreadyDeleting) => {
                backup.status = Status::Deleting;
                return Ok(backup);
            }
            Err(refusal) => return Err(delete_refused(id, refusal)),
        }
        let running = lock(&self.jobs).get(id).cloned();
        backup.status = Status::Deleting;
        self.audit_action(
            caller,
            &backup.project,
            "backup.delete",
            id,
            serde_json::json!({"force": force}),
        );
        let svc = self.clone();
        let id = id.to_string();
        let (panic_svc, panic_id) = (self.clone(), id.clone());
        std::thread::spawn(move || {
            let deleted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                svc.run_delete(&id, running)
            }));
            if deleted.is_err() {
                tracing::error!(backup = %panic_id, "backup delete panicked");
                panic_svc.pending.set(
                    &panic_svc.catalog,
                    Record::Backup(panic_id.clone()),
                    Status::Error,
                    "internal error: the delete panicked (see the server log); delete again",
                );
            }
        });
        Ok(backup)
    }

    /// The background part of a delete: stop the backup if it runs, remove its index,
    /// then its record, then collect garbage.
    fn run_delete(&self, id: &str, running: Option<Arc<super::Job>>) {
        let svc = self;
        let id = id.to_string();
        {
            if let Some(job) = running {
                job.control.cancel();
                if let Some(h) = lock(&job.handle).take()
                    && h.join().is_err()
                {
                    tracing::error!(backup = %id, "the cancelled backup's job panicked");
                }
            }
            let result = svc
                .repo
                .remove_backup(&id)
                .map_err(EngineError::from)
                .and_then(|_| Ok(svc.catalog.delete_backup(&id)?));
            svc.reader.forget(&id);
            match result {
                Ok(()) => {
                    svc.pending.forget(&Record::Backup(id.clone()));
                    if let Err(e) = svc.collect_garbage() {
                        tracing::warn!(error = %e, "garbage collection after delete failed");
                    }
                }
                Err(e) => {
                    tracing::warn!(backup = %id, error = %e, "delete failed");
                    svc.pending.set(
                        &svc.catalog,
                        Record::Backup(id.clone()),
                        Status::Error,
                        &e.to_string(),
                    );
                }
            }
        }
    }

    pub(super) fn available_backup(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<BackupRecord, EngineError> {
        let backup = self.get_backup(caller, id)?;
        if backup.status != Status::Available {
            return Err(Refusal::BackupNotAvailable {
                id: id.to_string(),
                status: backup.status,
            }
            .into());
        }
        Ok(backup)
    }

    /// Restores onto `volume` (id or name; at least the backup's size) or onto a
    /// new managed volume of the backup's project. Runs in the background; the volume
    /// is `restoring`. Onto a registered volume (a host path) only an admin may.
    pub fn restore_backup(
        self: &Arc<Self>,
        caller: &Caller,
        id: &str,
        volume: Option<&str>,
        name: Option<&str>,
    ) -> Result<(BackupRecord, VolumeRecord), EngineError> {
        let mut backup = self.available_backup(caller, id)?;
        if !self.repo.has_index(id)? {
            return Err(Refusal::BackupNotInRepository { id: id.to_string() }.into());
        }
        let (mut target, fresh) = match volume {
            Some(v) => {
                let target = self.get_volume(caller, v)?;
                if target.kind == VolumeKind::Delta {
                    return Err(InvalidRequest::DeltaIsReadOnly { volume: target.id }.into());
                }
                if target.kind == VolumeKind::Registered {
                    if !caller.is_admin() {
                        return Err(Denial::RestoreOntoHostPath {
                            volume: target.id,
                            path: target.path,
                        }
                        .into());
                    }
                    self.host_path(caller, &target.path)?;
                }
                if target.status == Status::InUse {
                    return Err(Refusal::RestoreTargetAttached { volume: target.id }.into());
                }
                if target.size < backup.size {
                    return Err(InvalidRequest::RestoreTargetTooSmall {
                        volume: target.id,
                        size: target.size,
                        backup: id.to_string(),
                        backup_size: backup.size,
                    }
                    .into());
                }
                self.claim_volume(&target.id, JobKind::Restore, id)?;
                // The restore writes the file behind the target's back: what write
                // tracking counted no longer says what changed since the last backup.
                if let Some(tracker) = self.write_tracker(&target)
                    && let Err(e) = tracker.invalidate(&format!("restored from {id}"))
                {
                    self.release_volume(&target.id);
                    return Err(e.into());
                }
                (target, false)
            }
            None => {
                let default = format!("restore-{id}-{:04x}", rand::random::<u16>());
                let name = name.unwrap_or(&default);
                let (volume_id, path) = self.make_volume_file(name, backup.size)?;
                let target = VolumeRecord {
                    id: volume_id,
                    project: backup.project.clone(),
                    name: name.to_string(),
                    kind: VolumeKind::Managed,
                    path: path.display().to_string(),
                    size: backup.size,
                    status: Status::Restoring,
                    error: String::new(),
                    created_at: now_rfc3339(),
                };
                self.claim_volume(&target.id, JobKind::Restore, id)?;
                (target, true)
            }
        };
        if let Err(e) = self.catalog.begin_restore(&target, fresh, id) {
            if fresh && let Err(cleanup) = std::fs::remove_file(&target.path) {
                tracing::warn!(path = %target.path, error = %cleanup, "cannot remove the file of a restore that did not start");
            }
            self.release_volume(&target.id);
            return Err(name_taken(e));
        }
        if fresh {
            self.record_new_volume(caller, &target);
        }
        self.audit_action(
            caller,
            &target.project,
            "backup.restore",
            &target.id,
            serde_json::json!({"sourceDetails": {"type": "volumeBackup", "id": id}, "newVolume": fresh}),
        );
        target.status = Status::Restoring;
        backup.status = Status::Restoring;
        let (backup_id, volume_id, path) = (
            id.to_string(),
            target.id.clone(),
            PathBuf::from(&target.path),
        );
        let (panic_backup, panic_volume) = (backup_id.clone(), volume_id.clone());
        let on_panic = move |svc: &Arc<Service>| {
            svc.pending.set(
                &svc.catalog,
                Record::Volume(panic_volume.clone()),
                Status::Error,
                "internal error: the restore job panicked (see the server log)",
            );
            svc.pending.set(
                &svc.catalog,
                Record::Backup(panic_backup),
                Status::Available,
                "",
            );
            svc.release_volume(&panic_volume);
        };
        self.spawn_job(volume_id.clone(), move |svc, control| {
            let started = std::time::Instant::now();
            let result = {
                let _shared = crate::sync::read(&svc.gc_lock);
                run_restore(&svc.reader, &backup_id, &path, fresh, control)
            };
            let (st, err) = match &result {
                Ok(()) => (Status::Available, String::new()),
                // Cancelled by `restore-cancel`, not by a shutdown (that is "interrupted").
                Err(_) if control.is_cancelled() && !svc.is_stopping() => {
                    tracing::info!(backup = %backup_id, volume = %volume_id, "restore cancelled");
                    (Status::Error, RESTORE_CANCELLED.to_string())
                }
                Err(e) => {
                    tracing::warn!(backup = %backup_id, volume = %volume_id, error = %e, "restore failed");
                    (Status::Error, e.to_string())
                }
            };
            if !svc.still_holds(&volume_id, &backup_id) {
                // Another node failed this restore when our lease ran out: its word stands.
                tracing::warn!(backup = %backup_id, volume = %volume_id, "restore finished after this node lost its lease; left as failed");
                svc.release_volume(&volume_id);
                return;
            }
            if st == Status::Available {
                svc.metrics
                    .restore_seconds
                    .observe(started.elapsed().as_secs_f64());
            }
            let ended = if st == Status::Available { "available" } else { "error" };
            svc.metrics.restores_ended.with_label_values(&[ended]).inc();
            svc.pending
                .set(&svc.catalog, Record::Volume(volume_id.clone()), st, &err);
            svc.pending.set(
                &svc.catalog,
                Record::Backup(backup_id.clone()),
                Status::Available,
                "",
            );
            svc.release_volume(&volume_id);
        }, on_panic);
        Ok((backup, target))
    }

    pub fn verify_backup(&self, caller: &Caller, id: &str) -> Result<VerifyOutcome, EngineError> {
        let backup = self.get_backup(caller, id)?;
        if backup.status != Status::Available && backup.status != Status::Restoring {
            return Err(Refusal::BackupNotAvailable {
                id: id.to_string(),
                status: backup.status,
            }
            .into());
        }
        let control = JobControl::default();
        run_verify(&self.reader, id, &control)
    }

    /// Removes packs no index references. Answers at once: while backups or restores
    /// run (their finished packs are referenced by no index yet) it is refused, naming
    /// them, rather than waiting for them.
    pub fn collect_garbage(&self) -> Result<(u64, u64), EngineError> {
        let _exclusive = match self.gc_lock.try_write() {
            Ok(guard) => guard,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => {
                let running: Vec<String> = lock(&self.busy).values().cloned().collect();
                // (Backups on other nodes are protected by their markers instead.)
                if running.is_empty() {
                    // Only another collection holds it (the one a delete runs): short.
                    crate::sync::write(&self.gc_lock)
                } else {
                    return Err(Refusal::GcWaitsForJobs { running }.into());
                }
            }
        };
        self.remove_unreferenced_packs()
    }
}

fn delete_refused(id: &str, refusal: DeleteRefusal) -> EngineError {
    let id = id.to_string();
    match refusal {
        DeleteRefusal::Dependents(children) => Refusal::DependentBackups { id, children },
        DeleteRefusal::DeltaSources(deltas) => Refusal::DeltaSourceOf { id, deltas },
        DeleteRefusal::State(Status::Creating) => Refusal::BackupBeingCreated { id },
        DeleteRefusal::State(_) | DeleteRefusal::AlreadyDeleting => {
            Refusal::BackupBeingRestored { id }
        }
    }
    .into()
}

/// A cancelled restore's volume error, as cinder words it.
pub(super) const RESTORE_CANCELLED: &str = "restore cancelled";

/// A new incremental whose parent went meanwhile (deleted on another node, say).
fn parent_gone(e: CatalogError) -> EngineError {
    match e {
        CatalogError::ParentNotAvailable { parent } => Refusal::ParentMissing { parent }.into(),
        other => other.into(),
    }
}

/// A backup about to start: its id, its volume's size now, its codec, its clock.
struct BackupStart {
    id: String,
    size: u64,
    codec: Codec,
    clock: BackupClock,
}

/// What a backup's time and its catalog calls' time are, for the log line the cluster
/// benchmark reads: the starting request's calls (on its thread) plus the job's (on its).
#[derive(Clone)]
struct BackupClock {
    started: std::time::Instant,
    request_thread_at_start: u64,
    request_nanos: Arc<std::sync::atomic::AtomicU64>,
}

impl BackupClock {
    fn start() -> BackupClock {
        BackupClock {
            started: std::time::Instant::now(),
            request_thread_at_start: crate::catalog::timing::thread_nanos(),
            request_nanos: Arc::default(),
        }
    }

    /// On the request's thread, once the job is started.
    fn request_done(&self) {
        let spent = crate::catalog::timing::thread_nanos() - self.request_thread_at_start;
        self.request_nanos
            .store(spent, std::sync::atomic::Ordering::Relaxed);
    }

    /// On the job's thread at its end: (seconds, seconds in catalog calls).
    fn finish(&self, job_thread_at_start: u64) -> (f64, f64) {
        let job = crate::catalog::timing::thread_nanos() - job_thread_at_start;
        let request = self
            .request_nanos
            .load(std::sync::atomic::Ordering::Relaxed);
        (
            self.started.elapsed().as_secs_f64(),
            (job + request) as f64 / 1e9,
        )
    }
}

/// The blocks write tracking took, when they say what changed since this backup's
/// parent; otherwise the backup compares every block, and says why in the log.
fn trusted_dirty(
    taken: crate::tracking::Taken,
    record: &BackupRecord,
) -> Option<roaring::RoaringTreemap> {
    let parent = record.parent_id.as_deref()?;
    if taken.base.as_deref() == Some(parent) && taken.untrusted.is_none() {
        return Some(taken.bits);
    }
    let why = taken.untrusted.unwrap_or_else(|| match &taken.base {
        Some(base) => format!("write tracking counts from {base}, not from the parent"),
        None => "write tracking has no backup to count from yet".into(),
    });
    tracing::info!(backup = %record.id, parent, why, "comparing every block");
    None
}
