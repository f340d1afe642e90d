//! Volume records: managed sparse files, registered files or devices, delta
//! volumes (catalog rows only), and the audit log of what was done to them.

use std::path::{Path, PathBuf};

use super::{MAX_NAME_LEN, attachment_manifest};
use super::{
    Service, check_name, check_size, lock, name_taken, new_id, not_found, volume_manifest,
};
use crate::catalog::{DeltaSourceRecord, Quota, Status, VolumeRecord};
use crate::clock::now_rfc3339;
use crate::engine::source::volume_size;
use crate::engine::{Denial, EngineError, InvalidRequest, Refusal};
use crate::faults::fault;
use crate::identity::{Caller, roots};
use crate::kinds::VolumeKind;
use crate::repo::{DeltaSourceManifest, VolumeManifest};

impl Service {
    pub fn create_volume(
        &self,
        caller: &Caller,
        name: &str,
        size: u64,
    ) -> Result<VolumeRecord, EngineError> {
        let (id, path) = self.make_volume_file(name, size)?;
        self.insert_volume(caller, id, name, VolumeKind::Managed, path, size)
    }

    /// A new managed volume's sparse file, not yet recorded: its id and path.
    pub(super) fn make_volume_file(
        &self,
        name: &str,
        size: u64,
    ) -> Result<(String, PathBuf), EngineError> {
        check_name("volume", name)?;
        check_size(size)?;
        let id = new_id("vol");
        let path = self.volumes_dir.join(format!("{id}.img"));
        fault!("engine.volume.create", |e| EngineError::io(
            path.display(),
            e
        ));
        let file = std::fs::File::create(&path).map_err(|e| EngineError::io(path.display(), e))?;
        if let Err(e) = file.set_len(size) {
            if let Err(cleanup) = std::fs::remove_file(&path) {
                tracing::warn!(path = %path.display(), error = %cleanup, "cannot remove a volume file that could not be sized");
            }
            if e.raw_os_error() == Some(libc::EFBIG) {
                return Err(InvalidRequest::TooLargeForFileSystem {
                    dir: self.volumes_dir.display().to_string(),
                    size,
                }
                .into());
            }
            return Err(EngineError::io(path.display(), e));
        }
        Ok((id, path))
    }

    /// Registers a host file or device: an admin's, and only under the operator's
    /// volume roots, checked on the canonical path (symlinks and `..` resolved).
    pub fn register_volume(
        &self,
        caller: &Caller,
        name: &str,
        path: &str,
    ) -> Result<VolumeRecord, EngineError> {
        check_name("volume", name)?;
        let asked = Path::new(path);
        if !asked.is_absolute() {
            return Err(InvalidRequest::RelativePath {
                path: asked.display().to_string(),
            }
            .into());
        }
        let path = self.host_path(caller, path).map_err(|e| match e {
            EngineError::Denied(Denial::HostPath(roots::RootError::Unresolvable {
                path, ..
            })) => InvalidRequest::NoSuchPath { path }.into(),
            other => other,
        })?;
        let size = volume_size(&path)?;
        check_size(size)?;
        let shown = path.display().to_string();
        if let Some(other) = self
            .catalog
            .list_volumes(None)?
            .into_iter()
            .find(|v| v.kind != VolumeKind::Delta && v.path == shown)
        {
            return Err(Refusal::PathAlreadyRegistered {
                path: shown,
                volume: other.id,
                name: other.name,
            }
            .into());
        }
        let id = new_id("vol");
        self.insert_volume(caller, id, name, VolumeKind::Registered, path, size)
    }

    /// A host path `caller` may use: an admin's, under a volume root, canonical.
    pub(super) fn host_path(&self, caller: &Caller, path: &str) -> Result<PathBuf, EngineError> {
        if !caller.is_admin() {
            return Err(Denial::HostPathNeedsAdmin { path: path.into() }.into());
        }
        Ok(roots::admit(&self.volume_roots, path).map_err(Denial::HostPath)?)
    }

    /// Records a delta volume whose source `delta::rules` has validated: no file,
    /// no data, available at once. The audit line carries Oracle's `sourceDetails`.
    pub fn create_delta_volume(
        &self,
        caller: &Caller,
        name: &str,
        size: u64,
        source: &DeltaSourceRecord,
    ) -> Result<VolumeRecord, EngineError> {
        let id = new_id("vol");
        let name = if name.is_empty() {
            id.clone()
        } else {
            name.to_string()
        };
        check_name("volume", &name)?;
        let record = VolumeRecord {
            id: id.clone(),
            project: caller.owner().to_string(),
            name,
            kind: VolumeKind::Delta,
            path: String::new(),
            size,
            status: Status::Available,
            error: String::new(),
            created_at: now_rfc3339(),
        };
        let source = DeltaSourceRecord {
            volume_id: id,
            ..source.clone()
        };
        self.catalog
            .insert_delta_volume(&record, &source, Quota::Reserve)
            .map_err(name_taken)?;
        // Recover needs the definition: without this manifest a rebuilt catalog would
        // lose the delta volume.
        if let Err(e) = self.sync_volume_manifest(&record.id) {
            tracing::warn!(volume = %record.id, error = %e, "cannot write the delta volume's manifest");
        }
        self.audit_action(
            caller,
            &record.project,
            "volume.create",
            &record.id,
            serde_json::json!({
                "kind": VolumeKind::Delta,
                "size": record.size,
                "sourceDetails": {
                    "changeBlockSizeInBytes": source.change_block_size,
                    "firstBackupId": source.first_backup_id,
                    "secondBackupId": source.second_backup_id,
                    "type": "volumeBackupDelta",
                },
            }),
        );
        Ok(record)
    }

    fn insert_volume(
        &self,
        caller: &Caller,
        id: String,
        name: &str,
        kind: VolumeKind,
        path: PathBuf,
        size: u64,
    ) -> Result<VolumeRecord, EngineError> {
        let record = VolumeRecord {
            id,
            project: caller.owner().to_string(),
            name: name.to_string(),
            kind,
            path: path.display().to_string(),
            size,
            status: Status::Available,
            error: String::new(),
            created_at: now_rfc3339(),
        };
        if let Err(e) = self.catalog.insert_volume(&record, Quota::Reserve) {
            if kind == VolumeKind::Managed
                && let Err(cleanup) = std::fs::remove_file(&path)
            {
                tracing::warn!(path = %path.display(), error = %cleanup, "cannot remove the file of a volume that was not recorded");
            }
            return Err(name_taken(e));
        }
        self.sync_volume_manifest(&record.id)?;
        self.audit_action(
            caller,
            &record.project,
            "volume.create",
            &record.id,
            serde_json::json!({"kind": record.kind, "size": record.size, "path": record.path}),
        );
        Ok(record)
    }

    /// The repository manifest and audit line of a volume a restore created. A manifest
    /// that cannot be written costs `recover` this volume, not the restore: logged.
    pub(super) fn record_new_volume(&self, caller: &Caller, record: &VolumeRecord) {
        if let Err(e) = self.sync_volume_manifest(&record.id) {
            tracing::warn!(volume = %record.id, error = %e, "cannot write the volume manifest");
        }
        self.audit_action(
            caller,
            &record.project,
            "volume.create",
            &record.id,
            serde_json::json!({"kind": record.kind, "size": record.size, "path": record.path}),
        );
    }

    /// Writes an audit event to `project`'s log in the catalog and to the repository's
    /// audit log (which `recover` reads back), the same line in both, with who did it
    /// (project, token id, role). A failure to record is logged, not fatal to the
    /// operation that already happened.
    pub fn audit_action(
        &self,
        caller: &Caller,
        project: &str,
        action: &str,
        id: &str,
        details: serde_json::Value,
    ) {
        let event = serde_json::json!({
            "action": action,
            "id": id,
            "details": details,
            "project": project,
            "caller": caller.audit_fields(),
        });
        let at = now_rfc3339();
        if let Err(e) = self.catalog.audit_at(&at, project, &event) {
            tracing::warn!(error = %e, %action, %id, "audit log write failed");
        }
        let line = serde_json::json!({"at": at, "event": event}).to_string();
        if let Err(e) = self.repo.append_audit(&line) {
            tracing::warn!(error = %e, %action, %id, "repository audit log write failed");
        }
    }

    /// Writes a volume's repository manifest from the catalog: its record, a delta
    /// volume's source, its attachment. Called after each change to any of them.
    pub fn sync_volume_manifest(&self, volume_id: &str) -> Result<(), EngineError> {
        let v = self
            .catalog
            .find_volume(volume_id, None)
            .map_err(not_found)?;
        let mut m = volume_manifest(&v);
        m.delta_source = self
            .catalog
            .delta_source(volume_id)?
            .map(|d| DeltaSourceManifest {
                first_backup_id: d.first_backup_id,
                second_backup_id: d.second_backup_id,
                change_block_size: d.change_block_size,
                changed_bytes: d.changed_bytes,
            });
        m.attachment = self.catalog.attachment(volume_id)?.map(attachment_manifest);
        Ok(self.repo.write_volume(&m)?)
    }

    /// The audit log of the projects `caller` sees as JSON lines, oldest first; only
    /// lines naming `id` if given.
    pub fn audit_events(
        &self,
        caller: &Caller,
        id: Option<&str>,
    ) -> Result<Vec<String>, EngineError> {
        let lines = self.catalog.audit_lines(caller.visible())?;
        Ok(match id {
            Some(id) => {
                let quoted = format!("\"{id}\"");
                lines.into_iter().filter(|l| l.contains(&quoted)).collect()
            }
            None => lines,
        })
    }

    /// A volume `caller` may see; another project's is not found.
    pub fn get_volume(
        &self,
        caller: &Caller,
        id_or_name: &str,
    ) -> Result<VolumeRecord, EngineError> {
        if id_or_name.is_empty() || id_or_name.len() > MAX_NAME_LEN {
            return Err(InvalidRequest::IdOrNameLength {
                max: MAX_NAME_LEN,
                len: id_or_name.len(),
            }
            .into());
        }
        self.pending.retry(&self.catalog);
        let mut v = self
            .catalog
            .find_volume(id_or_name, caller.visible())
            .map_err(not_found)?;
        self.pending.overlay_volume(&mut v);
        Ok(v)
    }

    pub fn list_volumes(&self, caller: &Caller) -> Result<Vec<VolumeRecord>, EngineError> {
        self.pending.retry(&self.catalog);
        let mut all = self.catalog.list_volumes(caller.visible())?;
        all.iter_mut().for_each(|v| self.pending.overlay_volume(v));
        Ok(all)
    }

    /// Progress of a restore onto this volume, while one runs.
    pub fn volume_progress(&self, volume_id: &str) -> Option<(u64, u64)> {
        lock(&self.jobs)
            .get(volume_id)
            .map(|j| j.control.progress())
    }

    pub fn delete_volume(
        &self,
        caller: &Caller,
        id_or_name: &str,
    ) -> Result<VolumeRecord, EngineError> {
        let volume = self.get_volume(caller, id_or_name)?;
        if let Some(job) = self.catalog.job_on(&volume.id)? {
            return Err(Refusal::VolumeBusy {
                volume: volume.id,
                doing: job.describe(),
            }
            .into());
        }
        if self.catalog.attachment(&volume.id)?.is_some() {
            return Err(Refusal::VolumeAttached { volume: volume.id }.into());
        }
        // The record first, in a transaction that refuses when a job (on any node) claimed
        // the volume meanwhile: its file is removed only once nothing can use it.
        self.catalog.delete_volume(&volume.id)?;
        if volume.kind == VolumeKind::Managed {
            self.trackers
                .forget(&volume.id, std::path::Path::new(&volume.path));
            match remove_volume_file(&volume.path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(volume = %volume.id, path = %volume.path, error = %e,
                        "volume deleted; its file could not be removed: remove it by hand");
                }
            }
        }

        // A tombstone, not a removal: the volume's backups still name it, and recover
        // must not bring it back from them.
        let tombstone = VolumeManifest {
            deleted_at: Some(now_rfc3339()),
            ..volume_manifest(&volume)
        };
        self.repo.write_volume(&tombstone)?;
        self.audit_action(
            caller,
            &volume.project,
            "volume.delete",
            &volume.id,
            serde_json::json!({"name": volume.name}),
        );
        Ok(volume)
    }
}

fn remove_volume_file(path: &str) -> std::io::Result<()> {
    fault!("engine.volume.remove", |e| e);
    std::fs::remove_file(path)
}
