//! The repository: pack/extent store, backup indexes and volume manifests, as
//! immutable objects in a local directory or an S3 bucket (`store`). It owns every
//! byte of backup data and knows nothing of the catalog: from its objects alone every
//! backup can be listed and restored.
//!
//! ```text
//! repository.json              format marker
//! packs/<xx>/<id>.pack         frames (see `pack`)
//! backups/<id>.index           backup indexes: the commit point (see `index`)
//! backups/<id>.fingerprints    per-block fingerprints
//! backups/<id>.merged.fingerprints  a synthetic full's (see `merge`)
//! volumes/<id>.json            volume manifests
//! running/<id>                 backups being written (see `writer`)
//! audit.jsonl                  the audit log (on S3: one object per line under audit.jsonl.d/)
//! tmp/                         local only: objects being put
//! ```
//! Nothing above this module sees a path or a key: backups write through
//! `BackupWriter`, reads go through `ChainReader`.

pub mod chain;
pub mod codec;
mod copy;
pub mod error;
mod fingerprint_stream;
pub mod hash;
pub mod index;
pub mod merge;
pub mod pack;
mod sealer;
pub mod store;
pub mod writer;

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::faults::fault;
use pack::{FrameLocation, decode_frame, frame_span, pack_key};
use store::{LocalStore, ObjectStore, RepositoryLocation, S3Store};

pub use chain::ChainReader;
pub use codec::Codec;
pub use copy::CopyCount;
pub use error::RepoError;
pub use fingerprint_stream::{BlockFingerprint, FingerprintStream};
pub use index::{
    AttachmentManifest, BackupIndex, BackupManifest, ContentHasher, DeltaSourceManifest, Extent,
    Fingerprints, IndexHead, VolumeManifest,
};
pub use pack::PackId;
pub use store::s3::S3Settings;
pub use writer::BackupWriter;

/// Change bitmaps count in tracking blocks of this many bytes.
pub const TRACKING_BLOCK_SIZE: u64 = 4096;
pub const FORMAT_VERSION: u32 = 1;
const MARKER_KEY: &str = "repository.json";
const AUDIT_KEY: &str = "audit.jsonl";
/// A pack younger than the oldest running backup's marker by less than this is kept by
/// a collection: clocks of the nodes and of the object store may disagree this much.
pub const CLOCK_SKEW: Duration = Duration::from_secs(300);
/// A running marker no catalog accounts for is taken as abandoned (its server died
/// and never came back) after this long: no backup runs for a day.
const STALE_MARKER: Duration = Duration::from_secs(24 * 3600);

/// What `scan_references` found.
#[derive(Debug, Default)]
pub struct ReferenceScan {
    pub referenced: HashSet<PackId>,
    /// Backups whose index is present but damaged, with why.
    pub unreadable: Vec<(String, RepoError)>,
}

#[derive(Clone, Debug)]
pub struct Repository {
    store: Arc<dyn ObjectStore>,
    /// Set for a local repository: leftovers of interrupted puts are cleared by gc.
    local: Option<Arc<LocalStore>>,
    /// How far apart the clocks of the nodes and the store may be (`gc_clock_skew_seconds`).
    clock_skew: Duration,
}

fn index_key(backup_id: &str) -> String {
    format!("backups/{backup_id}.index")
}

fn fingerprints_key(backup_id: &str) -> String {
    format!("backups/{backup_id}.fingerprints")
}

/// A synthetic full's fingerprints: a name of their own, so that the object the
/// backup's unmerged index names stays whole until the merged index replaces it.
fn merged_fingerprints_key(backup_id: &str) -> String {
    format!("backups/{backup_id}.merged.fingerprints")
}

fn fingerprints_key_of(manifest: &BackupManifest) -> String {
    match manifest.merged_at {
        Some(_) => merged_fingerprints_key(&manifest.id),
        None => fingerprints_key(&manifest.id),
    }
}

fn running_key(backup_id: &str) -> String {
    format!("running/{backup_id}")
}

impl Repository {
    /// Opens the local repository at `root`, creating it when missing.
    pub fn open_or_create(root: &std::path::Path) -> Result<Repository, RepoError> {
        Repository::open(
            &RepositoryLocation::Local(root.to_path_buf()),
            &S3Settings::default(),
            true,
        )
    }

    /// Opens the repository at `location`; `create`: make it when it is not there yet,
    /// otherwise refuse a place that holds none.
    pub fn open(
        location: &RepositoryLocation,
        s3: &S3Settings,
        create: bool,
    ) -> Result<Repository, RepoError> {
        let (store, local): (Arc<dyn ObjectStore>, _) = match location {
            RepositoryLocation::Local(root) => {
                if !create && !root.join(MARKER_KEY).is_file() {
                    return Err(RepoError::NotFound {
                        object: format!("repository at {}", root.display()),
                    });
                }
                // Today's layout, folders and all, so tools that look into them work.
                for sub in ["packs", "backups", "volumes"] {
                    let dir = root.join(sub);
                    std::fs::create_dir_all(&dir).map_err(|e| RepoError::io(&dir, e))?;
                }
                let local = Arc::new(LocalStore::open(root)?);
                (local.clone(), Some(local))
            }
            RepositoryLocation::S3(at) => (Arc::new(S3Store::open(at, s3)?), None),
        };
        let repo = Repository {
            store,
            local,
            clock_skew: CLOCK_SKEW,
        };
        match repo.store.get(MARKER_KEY) {
            Ok(_) => {}
            Err(RepoError::NotFound { .. }) if create => {
                let body = format!(
                    "{{\"format\":\"blockdelta-repository\",\"version\":{FORMAT_VERSION}}}\n"
                );
                fault!("repo.marker.write", |e| RepoError::io(
                    repo.describe(MARKER_KEY),
                    e
                ));
                repo.store.put(MARKER_KEY, Bytes::from(body))?;
            }
            Err(RepoError::NotFound { .. }) => {
                return Err(RepoError::NotFound {
                    object: format!("repository at {location}"),
                });
            }
            Err(e) => return Err(e),
        }
        Ok(repo)
    }

    /// Where the repository is, as configured: a path or `s3://bucket/prefix`.
    pub fn location(&self) -> String {
        self.store.location()
    }

    fn describe(&self, key: &str) -> String {
        self.store.describe(key)
    }

    /// Names an object the way an operator finds it: what it is, and its key.
    fn named<T>(&self, what: &str, key: &str, r: Result<T, RepoError>) -> Result<T, RepoError> {
        r.map_err(|e| match e {
            RepoError::NotFound { .. } => RepoError::NotFound {
                object: format!("{what} ({})", self.describe(key)),
            },
            RepoError::Corrupt { reason, .. } => RepoError::Corrupt {
                object: format!("{what} ({})", self.describe(key)),
                reason,
            },
            other => other,
        })
    }

    pub fn requests_in_flight(&self) -> usize {
        self.store.requests_in_flight()
    }

    /// Bytes between two wanted frames of a pack below which one read takes both.
    pub fn coalesce_gap(&self) -> u64 {
        self.store.coalesce_gap()
    }

    /// Whether the backup's index is present (an error reaching the store is an error,
    /// never "absent": that would take a good backup out of service).
    pub fn has_index(&self, backup_id: &str) -> Result<bool, RepoError> {
        match self.store.get_range(&index_key(backup_id), 0..8) {
            Ok(_) | Err(RepoError::Corrupt { .. }) => Ok(true),
            Err(RepoError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Writes a backup's index atomically: the moment the backup exists in the repository.
    pub(crate) fn write_index(&self, index: &BackupIndex) -> Result<u64, RepoError> {
        let bytes = Bytes::from(index.encode()?);
        let key = index_key(index.id());
        fault!("repo.index.write", |e| RepoError::io(
            self.describe(&key),
            e
        ));
        self.store.put(&key, bytes.clone())?;
        // Durable, yet reported as failed: the caller must still not call it available.
        fault!("repo.index.written", |e| RepoError::io(
            self.describe(&key),
            e
        ));
        Ok(bytes.len() as u64)
    }

    /// Writes the fingerprints the backup `manifest` describes will read.
    pub(crate) fn write_fingerprints(
        &self,
        manifest: &BackupManifest,
        fingerprints: &Fingerprints,
    ) -> Result<u64, RepoError> {
        let bytes = Bytes::from(fingerprints.encode());
        let key = fingerprints_key_of(manifest);
        fault!("repo.fingerprints.write", |e| RepoError::io(
            self.describe(&key),
            e
        ));
        self.store.put(&key, bytes.clone())?;
        Ok(bytes.len() as u64)
    }

    pub(crate) fn put_pack(&self, pack: pack::PackBuilder) -> Result<(), RepoError> {
        let key = pack_key(&pack.id());
        fault!("repo.pack.write", |e| RepoError::io(self.describe(&key), e));
        self.store.put(&key, pack.into_bytes())
    }

    /// Size at which the backend wants packs closed.
    pub(crate) fn pack_target_len(&self) -> u64 {
        self.store.pack_target_len()
    }

    pub(crate) fn put_running_marker(&self, backup_id: &str) -> Result<(), RepoError> {
        let key = running_key(backup_id);
        fault!("repo.running.write", |e| RepoError::io(
            self.describe(&key),
            e
        ));
        self.store
            .put(&key, Bytes::copy_from_slice(backup_id.as_bytes()))
    }

    /// Best effort: a marker left behind only makes gc keep young packs until the next
    /// collection finds it stale.
    pub(crate) fn remove_running_marker(&self, backup_id: &str) {
        if let Err(e) = self.store.delete(&running_key(backup_id)) {
            tracing::warn!(backup_id, error = %e, "cannot remove a running backup's marker");
        }
    }

    pub fn read_index(&self, backup_id: &str) -> Result<BackupIndex, RepoError> {
        let key = index_key(backup_id);
        let what = format!("index {backup_id}");
        let bytes = self.named(&what, &key, self.store.get(&key))?;
        BackupIndex::decode(&bytes, &format!("{what} ({})", self.describe(&key)))
    }

    /// Only the manifest and bitmaps of a backup's index (see `IndexHead`).
    pub fn read_index_head(&self, backup_id: &str) -> Result<IndexHead, RepoError> {
        let key = index_key(backup_id);
        let what = format!("index {backup_id}");
        let head = IndexHead::read(&what, |range| self.store.get_range(&key, range));
        self.named(&what, &key, head)
    }

    /// The fingerprints this backup stored: one per block it holds data for
    /// (`change ∩ allocated`). The whole volume's map is `ChainReader::fingerprints`.
    pub fn read_stored_fingerprints(&self, index: &BackupIndex) -> Result<Fingerprints, RepoError> {
        let key = fingerprints_key_of(&index.manifest);
        let what = format!("fingerprints {}", index.id());
        let bytes = self.named(&what, &key, self.store.get(&key))?;
        let object = format!("{what} ({})", self.describe(&key));
        Fingerprints::decode(&bytes, &index.stored_blocks(), &object)
    }

    /// One frame, verified: a ranged read of its pack.
    pub fn read_frame(&self, loc: &FrameLocation) -> Result<Vec<u8>, RepoError> {
        let mut frames = self.read_frames(std::slice::from_ref(loc))?;
        frames
            .pop()
            .ok_or_else(|| RepoError::corrupt(loc.describe(), "no frame read"))
    }

    /// Frames of one pack, fetched with one read of the span from the first to the last
    /// (the caller picks frames that lie close together, see `coalesce_gap`), each
    /// verified on its own.
    pub fn read_frames(&self, locs: &[FrameLocation]) -> Result<Vec<Vec<u8>>, RepoError> {
        let (Some(first), Some(last)) = (locs.first(), locs.last()) else {
            return Ok(Vec::new());
        };
        let key = pack_key(&first.pack);
        let span = frame_span(first).start..frame_span(last).end;
        let named = |loc: &FrameLocation| format!("{} ({})", loc.describe(), self.describe(&key));
        let bytes = self
            .store
            .get_range(&key, span.clone())
            .map_err(|e| match e {
                RepoError::NotFound { .. } => RepoError::NotFound {
                    object: named(first),
                },
                RepoError::Corrupt { reason, .. } => RepoError::corrupt(named(last), reason),
                other => other,
            })?;
        locs.iter()
            .map(|loc| {
                let r = frame_span(loc);
                let slice = bytes
                    .get((r.start - span.start) as usize..(r.end - span.start) as usize)
                    .ok_or_else(|| RepoError::corrupt(named(loc), "frames out of order"))?;
                decode_frame(slice, loc, &named(loc))
            })
            .collect()
    }

    /// Removes a backup from the repository: the index first (so the backup is gone
    /// atomically), then its fingerprints and marker. Its packs are left to gc.
    pub fn remove_backup(&self, backup_id: &str) -> Result<(), RepoError> {
        for key in [
            index_key(backup_id),
            fingerprints_key(backup_id),
            merged_fingerprints_key(backup_id),
            running_key(backup_id),
        ] {
            fault!("repo.backup.remove", |e| RepoError::io(
                self.describe(&key),
                e
            ));
            self.store.delete(&key)?;
        }
        Ok(())
    }

    /// Removes the fingerprints a backup's index named before it was merged (best
    /// effort: a leftover is a few bytes per block, and `remove_backup` takes it later).
    pub(crate) fn remove_unmerged_fingerprints(&self, backup_id: &str) {
        if let Err(e) = self.try_remove_unmerged_fingerprints(backup_id) {
            tracing::warn!(backup_id, error = %e, "cannot remove a merged backup's old fingerprints");
        }
    }

    fn try_remove_unmerged_fingerprints(&self, backup_id: &str) -> Result<(), RepoError> {
        let key = fingerprints_key(backup_id);
        fault!("repo.unmerged_fingerprints.remove", |e| RepoError::io(
            self.describe(&key),
            e
        ));
        self.store.delete(&key)
    }

    /// Ids of every backup whose index is present.
    pub fn list_backup_ids(&self) -> Result<Vec<String>, RepoError> {
        let mut ids: Vec<String> = self
            .store
            .list("backups/")?
            .into_iter()
            .filter_map(|o| {
                o.key
                    .strip_prefix("backups/")
                    .and_then(|k| k.strip_suffix(".index"))
                    .map(str::to_string)
            })
            .collect();
        ids.sort();
        Ok(ids)
    }

    pub fn write_volume(&self, volume: &VolumeManifest) -> Result<(), RepoError> {
        let key = format!("volumes/{}.json", volume.id);
        let body = serde_json::to_vec_pretty(volume)
            .map_err(|e| RepoError::corrupt(format!("volume {}", volume.id), e.to_string()))?;
        fault!("repo.volume_manifest.write", |e| RepoError::io(
            self.describe(&key),
            e
        ));
        self.store.put(&key, Bytes::from(body))
    }

    /// Appends one line to the repository's audit log, durably, so the history
    /// survives the catalog.
    pub fn append_audit(&self, line: &str) -> Result<(), RepoError> {
        self.store.append_log(AUDIT_KEY, line)
    }

    /// The repository's audit log, oldest first; a torn last line (a crash mid-append)
    /// is left out.
    pub fn audit_lines(&self) -> Result<Vec<String>, RepoError> {
        Ok(self
            .store
            .read_log(AUDIT_KEY)?
            .lines()
            .filter(|l| serde_json::from_str::<serde_json::Value>(l).is_ok())
            .map(str::to_string)
            .collect())
    }

    /// Every volume manifest, each read on its own: a damaged one is returned as its
    /// error beside the others, never in their place.
    pub fn list_volumes(&self) -> Result<Vec<Result<VolumeManifest, RepoError>>, RepoError> {
        let mut out = Vec::new();
        for object in self.store.list("volumes/")? {
            if !object.key.ends_with(".json") {
                continue;
            }
            let what = format!("volume manifest {}", self.describe(&object.key));
            out.push(self.store.get(&object.key).and_then(|bytes| {
                serde_json::from_slice::<VolumeManifest>(&bytes)
                    .map_err(|e| RepoError::corrupt(&what, e.to_string()))
            }));
        }
        Ok(out)
    }

    /// Every stored pack with its size and when it was stored.
    fn list_packs(&self) -> Result<Vec<(PackId, u64, Option<SystemTime>)>, RepoError> {
        Ok(self
            .store
            .list("packs/")?
            .into_iter()
            .filter_map(|o| {
                let name = o.key.rsplit('/').next()?;
                let id = PackId::from_hex(name.strip_suffix(".pack")?)?;
                Some((id, o.size, o.modified))
            })
            .collect())
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

    /// How far apart clocks may be, for collections (default [`CLOCK_SKEW`]).
    pub fn set_clock_skew(&mut self, skew: Duration) {
        self.clock_skew = skew;
    }

    /// Removes every pack not in `keep`, except those a running backup may still name:
    /// packs stored after the oldest running marker (less the clock skew). `finished`
    /// says which backups the caller's catalog knows to have ended: their markers are
    /// stale and removed. A marker the catalog does not know (another server's backup
    /// on the same repository) counts as running until `STALE_MARKER` has passed.
    /// Local leftovers under `tmp/` go too.
    pub fn remove_packs_except(
        &self,
        keep: &HashSet<PackId>,
        finished: &dyn Fn(&str) -> bool,
    ) -> Result<(u64, u64), RepoError> {
        let mut oldest_running: Option<SystemTime> = None;
        let now = SystemTime::now();
        for marker in self.store.list("running/")? {
            let id = marker.key.trim_start_matches("running/").to_string();
            let at = marker.modified.unwrap_or(now);
            let abandoned = now.duration_since(at).is_ok_and(|age| age > STALE_MARKER);
            if !finished(&id) && !abandoned {
                oldest_running = Some(oldest_running.map_or(at, |t| t.min(at)));
            } else {
                fault!("repo.running.remove", |e| RepoError::io(
                    self.describe(&marker.key),
                    e
                ));
                self.store.delete(&marker.key)?;
            }
        }
        let spare_after = oldest_running.map(|t| t.checked_sub(self.clock_skew).unwrap_or(t));
        let (mut packs, mut bytes) = (0, 0);
        for (id, len, modified) in self.list_packs()? {
            let young = match (spare_after, modified) {
                (Some(after), Some(at)) => at >= after,
                (Some(_), None) => true,
                (None, _) => false,
            };
            if !keep.contains(&id) && !young {
                let key = pack_key(&id);
                fault!("repo.pack.remove", |e| RepoError::io(
                    self.describe(&key),
                    e
                ));
                self.store.delete(&key)?;
                packs += 1;
                bytes += len;
            }
        }
        if let Some(local) = &self.local
            && oldest_running.is_none()
        {
            local.clear_temporaries();
        }
        Ok((packs, bytes))
    }

    /// Total bytes of the repository's objects (packs, indexes, fingerprints).
    pub fn stored_bytes(&self) -> Result<u64, RepoError> {
        let packs: u64 = self.list_packs()?.iter().map(|p| p.1).sum();
        let backups: u64 = self.store.list("backups/")?.iter().map(|o| o.size).sum();
        Ok(packs + backups)
    }

    /// Every object under `prefixes`, by key, with its size.
    fn sizes_under(&self, prefixes: &[&str]) -> Result<HashMap<String, u64>, RepoError> {
        let mut out = HashMap::new();
        for prefix in prefixes {
            out.extend(
                self.store
                    .list(prefix)?
                    .into_iter()
                    .map(|o| (o.key, o.size)),
            );
        }
        Ok(out)
    }

    /// Copies every object this repository has and `to` lacks (packs, indexes,
    /// fingerprints, volume manifests, the audit log), packs and fingerprints before
    /// the indexes that name them, so the copy is consistent at every moment. Returns
    /// (objects, bytes) copied.
    pub fn copy_to(&self, to: &Repository) -> Result<(u64, u64), RepoError> {
        let present = to.sizes_under(&["packs/", "backups/", "volumes/"])?;
        let mut wanted = Vec::new();
        for prefix in ["packs/", "backups/", "volumes/"] {
            wanted.extend(self.store.list(prefix)?);
        }
        // Indexes last: each is the commit point of its backup.
        wanted.sort_by_key(|o| o.key.ends_with(".index"));
        let (mut objects, mut bytes) = (0, 0);
        for object in wanted {
            let is_manifest = object.key.starts_with("volumes/");
            if !is_manifest && present.get(&object.key) == Some(&object.size) {
                continue;
            }
            let body = Bytes::from(self.store.get(&object.key)?);
            fault!("repo.copy.put", |e| RepoError::io(
                to.describe(&object.key),
                e
            ));
            to.store.put(&object.key, body.clone())?;
            objects += 1;
            bytes += body.len() as u64;
        }
        let known: HashSet<String> = to.audit_lines()?.into_iter().collect();
        for line in self.audit_lines()? {
            if !known.contains(&line) {
                to.append_audit(&line)?;
            }
        }
        Ok((objects, bytes))
    }
}
