//! The repository: pack/extent store, backup indexes and volume manifests on a
//! local directory. It owns every byte of backup data and knows nothing of the
//! catalog: from this directory alone every backup can be listed and restored.
//!
//! ```text
//! <root>/repository.json          format marker
//! <root>/packs/<xx>/<id>.pack      frames (see `pack`)
//! <root>/backups/<id>.index        backup indexes: the commit point (see `index`)
//! <root>/backups/<id>.fingerprints per-block fingerprints
//! <root>/volumes/<id>.json         volume manifests
//! <root>/tmp/                      packs being written
//! ```
//! Every write is temp file + fsync + rename + fsync of the directory.

pub mod chain;
pub mod codec;
pub mod error;
pub mod hash;
pub mod index;
pub mod pack;
pub mod sealer;

use std::collections::HashSet;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::faults::fault;

pub use chain::ChainReader;
pub use codec::Codec;
pub use error::RepoError;
pub use index::{
    AttachmentManifest, BackupIndex, BackupManifest, DeltaSourceManifest, Extent, Fingerprints,
    IndexHead, VolumeManifest,
};
pub use pack::PackId;

/// Change bitmaps count in tracking blocks of this many bytes.
pub const TRACKING_BLOCK_SIZE: u64 = 4096;
pub const FORMAT_VERSION: u32 = 1;

/// What `scan_references` found.
#[derive(Debug, Default)]
pub struct ReferenceScan {
    pub referenced: HashSet<PackId>,
    /// Backups whose index is present but damaged, with why.
    pub unreadable: Vec<(String, RepoError)>,
}

#[derive(Clone, Debug)]
pub struct Repository {
    root: PathBuf,
}

impl Repository {
    /// Opens the repository at `root`, creating its folders when missing.
    pub fn open_or_create(root: &Path) -> Result<Repository, RepoError> {
        for sub in ["packs", "backups", "volumes", "tmp"] {
            let p = root.join(sub);
            std::fs::create_dir_all(&p).map_err(|e| RepoError::io(&p, e))?;
        }
        let marker = root.join("repository.json");
        if !marker.exists() {
            let body =
                format!("{{\"format\":\"blockdelta-repository\",\"version\":{FORMAT_VERSION}}}\n");
            write_atomic(&marker, body.as_bytes())?;
        }
        Ok(Repository {
            root: root.to_path_buf(),
        })
    }

    /// Opens an existing repository; refuses a folder that is not one.
    pub fn open_existing(root: &Path) -> Result<Repository, RepoError> {
        if !root.join("repository.json").is_file() {
            return Err(RepoError::NotFound {
                object: format!("repository at {}", root.display()),
            });
        }
        Repository::open_or_create(root)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn index_path(&self, backup_id: &str) -> PathBuf {
        self.root.join("backups").join(format!("{backup_id}.index"))
    }

    pub fn fingerprints_path(&self, backup_id: &str) -> PathBuf {
        self.root
            .join("backups")
            .join(format!("{backup_id}.fingerprints"))
    }

    pub fn has_index(&self, backup_id: &str) -> bool {
        self.index_path(backup_id).is_file()
    }

    /// Writes a backup's index atomically: the moment the backup exists in the repository.
    pub fn write_index(&self, index: &BackupIndex) -> Result<u64, RepoError> {
        let bytes = index.encode()?;
        let path = self.index_path(index.id());
        fault!("repo.index.write", |e| RepoError::io(&path, e));
        write_atomic(&path, &bytes)?;
        // Durable, yet reported as failed: the caller must still not call it available.
        fault!("repo.index.written", |e| RepoError::io(&path, e));
        Ok(bytes.len() as u64)
    }

    pub fn read_index(&self, backup_id: &str) -> Result<BackupIndex, RepoError> {
        let path = self.index_path(backup_id);
        let object = format!("index {backup_id}");
        let bytes = std::fs::read(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => RepoError::NotFound {
                object: object.clone(),
            },
            _ => RepoError::io(&path, e),
        })?;
        BackupIndex::decode(&bytes, &object)
    }

    /// Only the manifest and bitmaps of a backup's index (see `IndexHead`).
    pub fn read_index_head(&self, backup_id: &str) -> Result<IndexHead, RepoError> {
        IndexHead::read(&self.index_path(backup_id), &format!("index {backup_id}"))
    }

    /// The fingerprints this backup stored: one per block it holds data for
    /// (`change ∩ allocated`). The whole volume's map is `ChainReader::fingerprints`.
    pub fn read_stored_fingerprints(&self, index: &BackupIndex) -> Result<Fingerprints, RepoError> {
        Fingerprints::read(
            &self.fingerprints_path(index.id()),
            &index.stored_blocks(),
            &format!("fingerprints {}", index.id()),
        )
    }

    /// Removes a backup from the repository: the index first (so the backup is gone
    /// atomically), then its fingerprints. Its packs are left to garbage collection.
    pub fn remove_backup(&self, backup_id: &str) -> Result<(), RepoError> {
        for path in [
            self.index_path(backup_id),
            self.fingerprints_path(backup_id),
        ] {
            fault!("repo.backup.remove", |e| RepoError::io(&path, e));
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(RepoError::io(&path, e)),
            }
        }
        fsync_dir(&self.root.join("backups"))
    }

    /// Ids of every backup whose index is present.
    pub fn list_backup_ids(&self) -> Result<Vec<String>, RepoError> {
        let dir = self.root.join("backups");
        let mut ids = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(|e| RepoError::io(&dir, e))? {
            let entry = entry.map_err(|e| RepoError::io(&dir, e))?;
            let name = entry.file_name().to_string_lossy().to_string();
            if let Some(id) = name.strip_suffix(".index") {
                ids.push(id.to_string());
            }
        }
        ids.sort();
        Ok(ids)
    }

    pub fn write_volume(&self, volume: &VolumeManifest) -> Result<(), RepoError> {
        let path = self
            .root
            .join("volumes")
            .join(format!("{}.json", volume.id));
        let body = serde_json::to_vec_pretty(volume)
            .map_err(|e| RepoError::corrupt(format!("volume {}", volume.id), e.to_string()))?;
        fault!("repo.volume_manifest.write", |e| RepoError::io(&path, e));
        write_atomic(&path, &body)
    }

    /// Appends one line to the repository's audit log (`audit.jsonl`), durably, so the
    /// history survives the catalog.
    pub fn append_audit(&self, line: &str) -> Result<(), RepoError> {
        let path = self.root.join("audit.jsonl");
        fault!("repo.audit.append", |e| RepoError::io(&path, e));
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| RepoError::io(&path, e))?;
        f.write_all(format!("{line}\n").as_bytes())
            .and_then(|_| f.sync_data())
            .map_err(|e| RepoError::io(&path, e))
    }

    /// The repository's audit log, oldest first; a torn last line (a crash mid-append)
    /// is left out.
    pub fn audit_lines(&self) -> Result<Vec<String>, RepoError> {
        let path = self.root.join("audit.jsonl");
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(text
                .lines()
                .filter(|l| serde_json::from_str::<serde_json::Value>(l).is_ok())
                .map(str::to_string)
                .collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(RepoError::io(&path, e)),
        }
    }

    /// Every volume manifest, each read on its own: a damaged one is returned as its
    /// error beside the others, never in their place.
    pub fn list_volumes(&self) -> Result<Vec<Result<VolumeManifest, RepoError>>, RepoError> {
        let dir = self.root.join("volumes");
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(|e| RepoError::io(&dir, e))? {
            let entry = entry.map_err(|e| RepoError::io(&dir, e))?;
            let path = entry.path();
            if path.extension().is_some_and(|x| x == "json") {
                out.push(
                    std::fs::read(&path)
                        .map_err(|e| RepoError::io(&path, e))
                        .and_then(|bytes| {
                            serde_json::from_slice::<VolumeManifest>(&bytes).map_err(|e| {
                                RepoError::corrupt(
                                    format!("volume manifest {}", path.display()),
                                    e.to_string(),
                                )
                            })
                        }),
                );
            }
        }
        Ok(out)
    }

    /// Every finished pack with its size.
    pub fn list_packs(&self) -> Result<Vec<(PackId, u64)>, RepoError> {
        let dir = self.root.join("packs");
        let mut out = Vec::new();
        for sub in std::fs::read_dir(&dir).map_err(|e| RepoError::io(&dir, e))? {
            let sub = sub.map_err(|e| RepoError::io(&dir, e))?.path();
            if !sub.is_dir() {
                continue;
            }
            for entry in std::fs::read_dir(&sub).map_err(|e| RepoError::io(&sub, e))? {
                let entry = entry.map_err(|e| RepoError::io(&sub, e))?;
                let name = entry.file_name().to_string_lossy().to_string();
                if let Some(id) = name.strip_suffix(".pack").and_then(PackId::from_hex) {
                    let len = entry.metadata().map(|m| m.len()).unwrap_or(0);
                    out.push((id, len));
                }
            }
        }
        Ok(out)
    }

    /// Which packs the readable indexes reference, and which indexes could not be read
    /// (their references are unknown: nothing may be collected while there are any).
    pub fn scan_references(&self) -> Result<ReferenceScan, RepoError> {
        let mut scan = ReferenceScan::default();
        for id in self.list_backup_ids()? {
            match self.read_index(&id) {
                Ok(index) => scan
                    .referenced
                    .extend(index.extents.iter().map(|e| e.frame.pack)),
                Err(e @ (RepoError::Corrupt { .. } | RepoError::NotFound { .. })) => {
                    scan.unreadable.push((id, e))
                }
                Err(e) => return Err(e),
            }
        }
        Ok(scan)
    }

    /// Removes every pack not in `keep`, and leftovers in `tmp/`. The caller must hold
    /// off new backups while this runs (see `engine::service`): a running backup's
    /// finished packs are referenced by no index yet.
    pub fn remove_packs_except(&self, keep: &HashSet<PackId>) -> Result<(u64, u64), RepoError> {
        let (mut packs, mut bytes) = (0, 0);
        for (id, len) in self.list_packs()? {
            if !keep.contains(&id) {
                let path = pack::pack_path(&self.root, &id);
                fault!("repo.pack.remove", |e| RepoError::io(&path, e));
                std::fs::remove_file(&path).map_err(|e| RepoError::io(&path, e))?;
                packs += 1;
                bytes += len;
            }
        }
        let tmp = self.root.join("tmp");
        for entry in std::fs::read_dir(&tmp)
            .map_err(|e| RepoError::io(&tmp, e))?
            .flatten()
        {
            let path = entry.path();
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove a leftover temporary file");
            }
        }
        Ok((packs, bytes))
    }

    /// Total bytes of the repository's files (packs, indexes, fingerprints).
    pub fn stored_bytes(&self) -> Result<u64, RepoError> {
        let mut total: u64 = self.list_packs()?.iter().map(|p| p.1).sum();
        let dir = self.root.join("backups");
        for entry in std::fs::read_dir(&dir)
            .map_err(|e| RepoError::io(&dir, e))?
            .flatten()
        {
            total += entry.metadata().map(|m| m.len()).unwrap_or(0);
        }
        Ok(total)
    }
}

/// temp file + fsync + rename + fsync(dir): readers see the old file or the new
/// one, never a torn one, and after return it survives a crash.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), RepoError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.{:016x}.tmp",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        rand::random::<u64>()
    ));
    let result = (|| {
        fault!("repo.atomic.create", |e| e);
        let mut f = File::create(&tmp)?;
        fault!("repo.atomic.write", |e| e);
        f.write_all(bytes)?;
        fault!("repo.atomic.fsync", |e| e);
        f.sync_all()?;
        fault!("repo.atomic.rename", |e| e);
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(RepoError::io(path, e));
    }
    fsync_dir(dir)
}

pub fn fsync_dir(dir: &Path) -> Result<(), RepoError> {
    fault!("repo.dir.fsync", |e| RepoError::io(dir, e));
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| RepoError::io(dir, e))
}
