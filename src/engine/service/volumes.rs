//! Volume records: managed sparse files, registered files or devices, delta
//! volumes (catalog rows only), and the audit log of what was done to them.

use std::path::{Path, PathBuf};

use super::{
    Service, check_name, check_size, lock, name_taken, new_id, not_found, volume_manifest,
};
use crate::catalog::time::now_rfc3339;
use crate::catalog::{DeltaSourceRecord, VolumeRecord, status};
use crate::engine::EngineError;
use crate::engine::source::volume_size;

impl Service {
    pub fn create_volume(&self, name: &str, size: u64) -> Result<VolumeRecord, EngineError> {
        check_name("volume", name)?;
        check_size(size)?;
        let id = new_id("vol");
        let path = self.volumes_dir.join(format!("{id}.img"));
        let file = std::fs::File::create(&path).map_err(|e| EngineError::io(path.display(), e))?;
        if let Err(e) = file.set_len(size) {
            let _ = std::fs::remove_file(&path);
            if e.raw_os_error() == Some(libc::EFBIG) {
                return Err(EngineError::InvalidArgument(format!(
                    "the file system under {} cannot hold a volume of {size} bytes",
                    self.volumes_dir.display()
                )));
            }
            return Err(EngineError::io(path.display(), e));
        }
        self.insert_volume(id, name, "managed", path, size)
    }

    pub fn register_volume(&self, name: &str, path: &str) -> Result<VolumeRecord, EngineError> {
        check_name("volume", name)?;
        let path = Path::new(path);
        if !path.is_absolute() {
            return Err(EngineError::InvalidArgument(format!(
                "volume path {} must be absolute",
                path.display()
            )));
        }
        let path = path.canonicalize().map_err(|_| {
            EngineError::InvalidArgument(format!("volume path {} does not exist", path.display()))
        })?;
        let size = volume_size(&path)?;
        check_size(size)?;
        let id = new_id("vol");
        self.insert_volume(id, name, "registered", path, size)
    }

    /// Records a delta volume whose source `delta::rules` has validated: no file,
    /// no data, available at once. The audit line carries Oracle's `sourceDetails`.
    pub fn create_delta_volume(
        &self,
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
            name,
            kind: "delta".to_string(),
            path: String::new(),
            size,
            status: status::AVAILABLE.to_string(),
            error: String::new(),
            created_at: now_rfc3339(),
        };
        let source = DeltaSourceRecord {
            volume_id: id,
            ..source.clone()
        };
        self.catalog
            .insert_delta_volume(&record, &source)
            .map_err(name_taken)?;
        self.audit_action(
            "volume.create",
            &record.id,
            serde_json::json!({
                "kind": "delta",
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
        id: String,
        name: &str,
        kind: &str,
        path: PathBuf,
        size: u64,
    ) -> Result<VolumeRecord, EngineError> {
        let record = VolumeRecord {
            id,
            name: name.to_string(),
            kind: kind.to_string(),
            path: path.display().to_string(),
            size,
            status: status::AVAILABLE.to_string(),
            error: String::new(),
            created_at: now_rfc3339(),
        };
        if let Err(e) = self.catalog.insert_volume(&record) {
            if kind == "managed" {
                let _ = std::fs::remove_file(&path);
            }
            return Err(name_taken(e));
        }
        self.repo.write_volume(&volume_manifest(&record))?;
        self.audit_action(
            "volume.create",
            &record.id,
            serde_json::json!({"kind": record.kind, "size": record.size, "path": record.path}),
        );
        Ok(record)
    }

    /// Appends to the audit log; a failure to record is logged, not fatal to the
    /// operation that already happened.
    pub fn audit_action(&self, action: &str, id: &str, details: serde_json::Value) {
        let event = serde_json::json!({"action": action, "id": id, "details": details});
        if let Err(e) = self.catalog.audit(&event) {
            tracing::warn!(error = %e, %action, %id, "audit log write failed");
        }
    }

    /// The audit log as JSON lines, oldest first; only lines naming `id` if given.
    pub fn audit_events(&self, id: Option<&str>) -> Result<Vec<String>, EngineError> {
        let lines = self.catalog.audit_lines()?;
        Ok(match id {
            Some(id) => {
                let quoted = format!("\"{id}\"");
                lines.into_iter().filter(|l| l.contains(&quoted)).collect()
            }
            None => lines,
        })
    }

    pub fn get_volume(&self, id_or_name: &str) -> Result<VolumeRecord, EngineError> {
        self.pending.retry(&self.catalog);
        let mut v = self.catalog.find_volume(id_or_name).map_err(not_found)?;
        self.pending.overlay_volume(&mut v);
        Ok(v)
    }

    pub fn list_volumes(&self) -> Result<Vec<VolumeRecord>, EngineError> {
        self.pending.retry(&self.catalog);
        let mut all = self.catalog.list_volumes()?;
        all.iter_mut().for_each(|v| self.pending.overlay_volume(v));
        Ok(all)
    }

    /// Progress of a restore onto this volume, while one runs.
    pub fn volume_progress(&self, volume_id: &str) -> Option<(u64, u64)> {
        lock(&self.jobs)
            .get(volume_id)
            .map(|j| j.control.progress())
    }

    pub fn delete_volume(&self, id_or_name: &str) -> Result<VolumeRecord, EngineError> {
        let volume = self.get_volume(id_or_name)?;
        let busy = lock(&self.busy);
        if let Some(what) = busy.get(&volume.id) {
            return Err(EngineError::FailedPrecondition(format!(
                "volume {} is busy ({what})",
                volume.id
            )));
        }
        if self.catalog.attachment(&volume.id)?.is_some() {
            return Err(EngineError::FailedPrecondition(format!(
                "volume {} is attached; detach it first (or delete with --force)",
                volume.id
            )));
        }
        if volume.kind == "managed" {
            match std::fs::remove_file(&volume.path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(EngineError::io(&volume.path, e)),
            }
        }
        self.catalog.delete_volume(&volume.id)?;
        self.repo.remove_volume(&volume.id)?;
        self.audit_action(
            "volume.delete",
            &volume.id,
            serde_json::json!({"name": volume.name}),
        );
        drop(busy);
        Ok(volume)
    }
}
