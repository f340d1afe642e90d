//! A backup's one way into the repository: frames go in, an index comes out.
//!
//! The writer owns everything about where the bytes go: packs and their rollover at
//! the store's target size, storing full packs in parallel (`sealer`), size accounting, the
//! fingerprints object and the index commit. The engine only appends frames and
//! commits, so it works the same on a local directory and on a bucket.
//!
//! Order of a commit: every pack durable, then the fingerprints, then the index. The
//! index is the commit point: a backup that dies before it leaves only packs no index
//! names, which `gc` removes. While a backup runs, a marker (`running/<id>`) tells a
//! collection anywhere that packs younger than it may still be named.

use roaring::RoaringTreemap;

use super::pack::{EncodedFrame, FRAME_HEADER_LEN, PackBuilder};
use super::sealer::PackSealer;
use super::{BackupIndex, BackupManifest, Extent, Fingerprints, RepoError, Repository};

pub struct BackupWriter {
    repo: Repository,
    backup_id: String,
    pack: Option<PackBuilder>,
    sealer: Option<PackSealer>,
    extents: Vec<Extent>,
    frame_bytes: u64,
    committed: bool,
}

/// What a commit stored.
#[derive(Debug, Clone, Copy)]
pub struct Committed {
    /// Frames, fingerprints and index: what the backup costs in the repository.
    pub stored_bytes: u64,
}

impl BackupWriter {
    /// Starts writing backup `backup_id`: its running marker first, so no collection
    /// takes the packs it is about to store.
    pub fn begin(repo: &Repository, backup_id: &str) -> Result<BackupWriter, RepoError> {
        repo.put_running_marker(backup_id)?;
        Ok(BackupWriter {
            repo: repo.clone(),
            backup_id: backup_id.to_string(),
            pack: None,
            sealer: Some(PackSealer::start(repo)),
            extents: Vec::new(),
            frame_bytes: 0,
            committed: false,
        })
    }

    /// Appends the frame holding `blocks` tracking blocks from `first_block`.
    pub fn append(
        &mut self,
        first_block: u64,
        blocks: u32,
        frame: &EncodedFrame,
    ) -> Result<(), RepoError> {
        let target = self.repo.pack_target_len();
        let pack = self.pack.get_or_insert_with(|| PackBuilder::new(target));
        let frame_location = pack.append(frame)?;
        self.frame_bytes += FRAME_HEADER_LEN + frame.data.len() as u64;
        self.extents.push(Extent {
            first_block,
            blocks,
            frame: frame_location,
            skip: 0,
        });
        if pack.is_full()
            && let Some(full) = self.pack.take()
        {
            self.sealer()?.seal(full)?;
        }
        Ok(())
    }

    fn sealer(&mut self) -> Result<&mut PackSealer, RepoError> {
        self.sealer
            .as_mut()
            .ok_or_else(|| RepoError::corrupt("backup being written", "written after its commit"))
    }

    /// Makes the backup exist: waits for every pack, stores `fingerprints` (those of
    /// the blocks it holds data for) and then the index. `manifest.stored_bytes` is
    /// filled in here.
    pub fn commit(
        mut self,
        mut manifest: BackupManifest,
        change: RoaringTreemap,
        allocated: RoaringTreemap,
        fingerprints: &Fingerprints,
    ) -> Result<Committed, RepoError> {
        if let Some(last) = self.pack.take() {
            self.sealer()?.seal(last)?;
        }
        if let Some(sealer) = self.sealer.take() {
            // Every pack is durable before anything names it.
            sealer.wait()?;
        }
        let fingerprint_bytes = self.repo.write_fingerprints(&manifest, fingerprints)?;
        manifest.stored_bytes = self.frame_bytes + fingerprint_bytes;
        let mut extents = std::mem::take(&mut self.extents);
        extents.sort_by_key(|e| e.first_block);
        let index = BackupIndex {
            manifest,
            change,
            allocated,
            extents,
        };
        let index_bytes = self.repo.write_index(&index)?;
        self.committed = true;
        self.repo.remove_running_marker(&self.backup_id);
        Ok(Committed {
            stored_bytes: index.manifest.stored_bytes + index_bytes,
        })
    }
}

impl Drop for BackupWriter {
    /// A backup that ends without its commit (failed, cancelled, panicked) waits for
    /// packs being stored, so nothing writes after its job ends, then drops its marker:
    /// its packs are garbage now.
    fn drop(&mut self) {
        drop(self.sealer.take());
        if !self.committed {
            self.repo.remove_running_marker(&self.backup_id);
        }
    }
}
