//! Rebuilding catalog records from the repository alone, as `lxd recover` does:
//! every volume manifest and backup index found becomes a record again.

use std::collections::HashSet;
use std::path::Path;

use super::Service;
use super::attachment_record;
use crate::catalog::{BackupRecord, DeltaSourceRecord, Quota, Status, VolumeRecord};
use crate::engine::{EngineError, InvalidRequest};
use crate::identity::{ADMIN_PROJECT, Caller};
use crate::repo::{BackupManifest, VolumeManifest};

impl Service {
    /// Whether `asked` names this server's repository: the same bucket and prefix, or
    /// the same directory after resolving links.
    pub(super) fn is_own_repository(&self, asked: &str) -> bool {
        let own = self.repo.location();
        if asked.starts_with("s3://") || own.starts_with("s3://") {
            return asked.trim_end_matches('/') == own.trim_end_matches('/');
        }
        match (
            Path::new(asked).canonicalize(),
            Path::new(&own).canonicalize(),
        ) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        }
    }
}

#[derive(Debug, Default)]
pub struct RecoverReport {
    pub volumes: u64,
    pub backups: u64,
    pub messages: Vec<String>,
}

impl Service {
    /// Rebuilds missing catalog records from the repository alone. Records keep the
    /// project their manifests name (`admin` for manifests older than projects), and
    /// a project a manifest names that the catalog lacks is created.
    pub fn recover(&self, caller: &Caller, repository: &str) -> Result<RecoverReport, EngineError> {
        if !repository.is_empty() && !self.is_own_repository(repository) {
            return Err(InvalidRequest::NotOwnRepository {
                own: self.repo.location(),
            }
            .into());
        }
        let mut report = RecoverReport::default();
        let mut indexes = Vec::new();
        for id in self.repo.list_backup_ids()? {
            match self.repo.read_index(&id) {
                Ok(idx) => indexes.push(idx),
                Err(e) => report.messages.push(format!("skipped backup {id}: {e}")),
            }
        }
        indexes.sort_by(|a, b| a.manifest.created_at.cmp(&b.manifest.created_at));
        let mut volumes: Vec<VolumeManifest> = Vec::new();
        // Deleted volumes keep a tombstone: never brought back, not even from the
        // manifests their backups carry.
        let mut seen: HashSet<String> = HashSet::new();
        for manifest in self.repo.list_volumes()? {
            match manifest {
                Ok(v) => {
                    seen.insert(v.id.clone());
                    if v.deleted_at.is_none() {
                        volumes.push(v);
                    }
                }
                Err(e) => report.messages.push(format!("skipped a volume: {e}")),
            }
        }
        for idx in &indexes {
            if seen.insert(idx.manifest.volume.id.clone()) {
                volumes.push(idx.manifest.volume.clone());
            }
        }
        for v in &volumes {
            self.ensure_project(&v.project)?;
        }
        // Delta volumes after the backups they show (their rules read those records).
        let (deltas, plain): (Vec<VolumeManifest>, Vec<VolumeManifest>) =
            volumes.into_iter().partition(|v| v.delta_source.is_some());
        let mut attachments = Vec::new();
        for v in plain {
            if self.catalog.find_volume(&v.id, None).is_ok() {
                continue;
            }
            let record = self.recovered_volume(&v);
            self.catalog.insert_volume(&record, Quota::Exempt)?;
            report.volumes += 1;
            attachments.extend(v.attachment.clone().map(|a| (v.id.clone(), a)));
        }
        // An incremental is only as good as its chain: one whose parent could not be read
        // (or is itself out) comes back as error, naming the parent.
        let readable: HashSet<String> = indexes.iter().map(|i| i.manifest.id.clone()).collect();
        let mut out: HashSet<String> = HashSet::new();
        for idx in indexes {
            let m = &idx.manifest;
            if self.catalog.get_backup(&m.id, None).is_ok() {
                continue;
            }
            let broken_parent = m
                .parent_id
                .as_ref()
                .filter(|p| !readable.contains(*p) || out.contains(*p));
            let (state, error) = match broken_parent {
                Some(p) => {
                    out.insert(m.id.clone());
                    report.messages.push(format!(
                        "backup {} recovered as error: its parent {p} could not be recovered",
                        m.id
                    ));
                    (
                        Status::Error,
                        format!("depends on backup {p}, whose index is missing or damaged"),
                    )
                }
                None => (Status::Available, String::new()),
            };
            let record = BackupRecord {
                status: state,
                error,
                ..recovered_backup(m)
            };
            self.catalog.insert_backup(&record, Quota::Exempt)?;
            report.backups += 1;
        }
        for v in deltas {
            let Some(d) = &v.delta_source else { continue };
            if self.catalog.find_volume(&v.id, None).is_ok() {
                continue;
            }
            let record = VolumeRecord {
                id: v.id.clone(),
                project: v.project.clone(),
                name: self.free_name(&v),
                kind: v.kind,
                path: String::new(),
                size: v.size,
                status: Status::Available,
                error: String::new(),
                created_at: v.created_at.clone(),
            };
            let source = DeltaSourceRecord {
                volume_id: v.id.clone(),
                first_backup_id: d.first_backup_id.clone(),
                second_backup_id: d.second_backup_id.clone(),
                change_block_size: d.change_block_size,
                changed_bytes: d.changed_bytes,
            };
            self.catalog
                .insert_delta_volume(&record, &source, Quota::Exempt)?;
            report.volumes += 1;
            attachments.extend(v.attachment.clone().map(|a| (v.id.clone(), a)));
        }
        for (volume_id, a) in attachments {
            if self.catalog.attachment(&volume_id)?.is_some() {
                continue;
            }
            self.catalog
                .insert_attachment(&attachment_record(&volume_id, a, self.node_name()), None)?;
            report
                .messages
                .push(format!("attachment of {volume_id} recovered"));
        }
        // The history too: every event of the repository's log the catalog lacks (a
        // rebuilt catalog has only what happened since, such as its first admin token).
        {
            let known: HashSet<String> = self.catalog.audit_lines(None)?.into_iter().collect();
            let mut events = 0;
            for line in self.repo.audit_lines()? {
                let Ok(parsed) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                let at = parsed["at"].as_str().unwrap_or_default();
                let event = &parsed["event"];
                if known.contains(&crate::catalog::audit_line(at, &event.to_string())) {
                    continue;
                }
                let project = event["project"].as_str().unwrap_or(ADMIN_PROJECT);
                self.catalog.audit_at(at, project, event)?;
                events += 1;
            }
            if events > 0 {
                report
                    .messages
                    .push(format!("{events} audit events recovered"));
            }
        }
        self.audit_action(
            caller,
            ADMIN_PROJECT,
            "recover",
            "",
            serde_json::json!({"volumes": report.volumes, "backups": report.backups}),
        );
        Ok(report)
    }

    /// A plain volume's record from its manifest (`error` when its path is gone).
    pub(super) fn recovered_volume(&self, v: &VolumeManifest) -> VolumeRecord {
        let present = Path::new(&v.path).exists();
        VolumeRecord {
            id: v.id.clone(),
            project: v.project.clone(),
            name: self.free_name(v),
            kind: v.kind,
            path: v.path.clone(),
            size: v.size,
            status: if present {
                Status::Available
            } else {
                Status::Error
            },
            error: if present {
                String::new()
            } else {
                "volume path missing after recover".into()
            },
            created_at: v.created_at.clone(),
        }
    }

    /// The manifest's name, or `name-id` when another volume has it now.
    fn free_name(&self, v: &VolumeManifest) -> String {
        if self.catalog.find_volume(&v.name, Some(&v.project)).is_ok() {
            format!("{}-{}", v.name, v.id)
        } else {
            v.name.clone()
        }
    }
}

/// An available backup's record from its manifest.
pub(super) fn recovered_backup(m: &BackupManifest) -> BackupRecord {
    BackupRecord {
        id: m.id.clone(),
        volume_id: m.volume.id.clone(),
        name: m.name.clone(),
        kind: m.kind,
        parent_id: m.parent_id.clone(),
        chain_id: m.chain_id.clone(),
        status: Status::Available,
        size: m.size,
        compression: m.compression.clone(),
        changed_blocks: m.changed_blocks,
        allocated_blocks: m.allocated_blocks,
        stored_bytes: m.stored_bytes,
        content_hash: m.content_hash.clone(),
        error: String::new(),
        created_at: m.created_at.clone(),
        completed_at: m.completed_at.clone(),
        project: m.volume.project.clone(),
        merged_at: m.merged_at.clone().unwrap_or_default(),
        change_source: m.change_source,
        read_bytes: m.read_bytes.unwrap_or_default(),
    }
}
