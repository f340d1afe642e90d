//! Reading a volume as of any backup: walk its chain newest-first to the backup
//! that last changed a tracking block, fetch that extent's frame, verify, slice.
//!
//! This is the read path restore, verify and (issue 4) delta volumes share.
//! Indexes are loaded once and kept; decompressed frames are kept in a cache
//! bounded in bytes, because a delta volume is read in small scattered pieces
//! that hit the same frames again and again.
//!
//! For delta volumes: `engine::Service::chain_reader()` is the shared reader;
//! `change_bitmap(id)` and `allocated_bitmap(id)` are a backup's bitmaps of
//! 4 KiB tracking blocks; `read_block(second, block)` (or `read_blocks` for a
//! range) is a block's bytes as of `second`, `None` meaning zeros. Callers check
//! the backup's catalog status (available) before reading.

use crate::sync::lock;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use roaring::RoaringTreemap;

use super::pack::FrameLocation;
use super::{
    BackupIndex, FingerprintStream, Fingerprints, IndexHead, RepoError, Repository,
    TRACKING_BLOCK_SIZE,
};

const BLOCK: usize = TRACKING_BLOCK_SIZE as usize;
/// Default bound on decompressed frames kept in memory.
pub const DEFAULT_FRAME_CACHE_BYTES: usize = 64 << 20;
/// Chains longer than this are treated as damaged (a parent loop would never end).
const MAX_CHAIN_LEN: usize = 100_000;

/// A backup and its ancestors, newest first.
pub type Chain = Arc<Vec<Arc<BackupIndex>>>;

/// Which backup supplies each tracking block when restoring a backup.
pub struct ClaimPlan {
    /// Newest first: each backup with the blocks it supplies (its change bitmap
    /// minus what newer backups claimed, intersected with its allocated blocks).
    pub sources: Vec<(Arc<BackupIndex>, RoaringTreemap)>,
    /// Every non-zero block of the target backup (= union of the sources' sets).
    pub allocated: RoaringTreemap,
}

pub struct ChainReader {
    repo: Repository,
    indexes: Mutex<HashMap<String, Arc<BackupIndex>>>,
    /// Index heads (manifest and bitmaps) read without their extents.
    heads: Mutex<HashMap<String, Arc<IndexHead>>>,
    /// Chains already walked: a delta volume asks for the same one per read.
    chains: Mutex<HashMap<String, Chain>>,
    frames: Mutex<FrameCache>,
    /// Frames being read now: a second reader of the same frame (a read-ahead
    /// and the read it anticipated, say) waits for the first instead of
    /// decompressing it again.
    loading: Mutex<HashMap<FrameKey, Arc<FrameSlot>>>,
}

impl ChainReader {
    pub fn new(repo: Repository) -> ChainReader {
        ChainReader::with_cache(repo, DEFAULT_FRAME_CACHE_BYTES)
    }

    pub fn with_cache(repo: Repository, cache_bytes: usize) -> ChainReader {
        ChainReader {
            repo,
            indexes: Mutex::new(HashMap::new()),
            heads: Mutex::new(HashMap::new()),
            chains: Mutex::new(HashMap::new()),
            frames: Mutex::new(FrameCache::new(cache_bytes)),
            loading: Mutex::new(HashMap::new()),
        }
    }

    pub fn repository(&self) -> &Repository {
        &self.repo
    }

    /// A backup's index (manifest, change bitmap, allocated bitmap, extents).
    pub fn index(&self, backup_id: &str) -> Result<Arc<BackupIndex>, RepoError> {
        if let Some(idx) = lock(&self.indexes).get(backup_id) {
            return Ok(idx.clone());
        }
        let idx = Arc::new(self.repo.read_index(backup_id)?);
        lock(&self.indexes).insert(backup_id.to_string(), idx.clone());
        Ok(idx)
    }

    /// A backup's manifest and bitmaps, read (and verified) without its extents:
    /// what a delta needs. Served from the full index when that is loaded.
    pub fn head(&self, backup_id: &str) -> Result<Arc<IndexHead>, RepoError> {
        if let Some(h) = lock(&self.heads).get(backup_id) {
            return Ok(h.clone());
        }
        let loaded = lock(&self.indexes).get(backup_id).cloned();
        let head = match loaded {
            Some(idx) => IndexHead {
                manifest: idx.manifest.clone(),
                change: idx.change.clone(),
                allocated: idx.allocated.clone(),
            },
            None => self.repo.read_index_head(backup_id)?,
        };
        let head = Arc::new(head);
        lock(&self.heads).insert(backup_id.to_string(), head.clone());
        Ok(head)
    }

    /// Forgets a cached index (after the backup is deleted).
    pub fn forget(&self, backup_id: &str) {
        lock(&self.indexes).remove(backup_id);
        lock(&self.heads).remove(backup_id);
        lock(&self.chains).clear();
    }

    /// The change bitmap of a backup: tracking blocks that differ from its parent.
    pub fn change_bitmap(&self, backup_id: &str) -> Result<RoaringTreemap, RepoError> {
        Ok(self.index(backup_id)?.change.clone())
    }

    /// The allocated bitmap of a backup: tracking blocks that are not all-zero.
    pub fn allocated_bitmap(&self, backup_id: &str) -> Result<RoaringTreemap, RepoError> {
        Ok(self.index(backup_id)?.allocated.clone())
    }

    /// The backup and its ancestors, newest first, ending at the full.
    pub fn chain(&self, backup_id: &str) -> Result<Chain, RepoError> {
        if let Some(c) = lock(&self.chains).get(backup_id) {
            return Ok(c.clone());
        }
        let mut out = vec![self.index(backup_id)?];
        while let Some(parent) = out.last().and_then(|i| i.parent_id().map(str::to_string)) {
            if out.len() > MAX_CHAIN_LEN {
                return Err(RepoError::corrupt(
                    format!("index {backup_id}"),
                    "parent chain loops",
                ));
            }
            out.push(self.index(&parent)?);
        }
        let chain: Chain = Arc::new(out);
        lock(&self.chains).insert(backup_id.to_string(), chain.clone());
        Ok(chain)
    }

    /// Roaring AND-NOT walk: which backup supplies which block for `backup_id`.
    pub fn claim_plan(&self, backup_id: &str) -> Result<ClaimPlan, RepoError> {
        let mut claimed = RoaringTreemap::new();
        let mut allocated = RoaringTreemap::new();
        let mut sources = Vec::new();
        for idx in self.chain(backup_id)?.iter().cloned() {
            let mut own = &idx.change - &claimed;
            own &= &idx.allocated;
            claimed |= &idx.change;
            allocated |= &own;
            if !own.is_empty() {
                sources.push((idx, own));
            }
        }
        Ok(ClaimPlan { sources, allocated })
    }

    /// The fingerprint of every allocated block as of `backup_id`: each backup
    /// of the chain supplies the blocks it claims (see `claim_plan`).
    pub fn fingerprints(&self, backup_id: &str) -> Result<Fingerprints, RepoError> {
        let plan = self.claim_plan(backup_id)?;
        let mut entries = Vec::with_capacity(plan.allocated.len() as usize);
        for (idx, own) in &plan.sources {
            let stored = self.repo.read_stored_fingerprints(idx)?;
            entries.extend(stored.entries.into_iter().filter(|(b, _)| own.contains(*b)));
        }
        entries.sort_unstable_by_key(|e| e.0);
        Ok(Fingerprints { entries })
    }

    /// The same map as `fingerprints`, as a stream in block order (memory: a chunk per
    /// backup of the chain, whatever the volume's size).
    pub fn fingerprint_stream(&self, backup_id: &str) -> Result<FingerprintStream, RepoError> {
        let plan = self.claim_plan(backup_id)?;
        FingerprintStream::open(&self.repo, plan.sources)
    }

    /// A frame, decompressed and verified, through the cache. Concurrent readers
    /// of one frame share a single read.
    pub fn frame(&self, loc: &FrameLocation) -> Result<Arc<Vec<u8>>, RepoError> {
        let key = (loc.pack, loc.offset);
        if let Some(f) = lock(&self.frames).get(&key) {
            return Ok(f);
        }
        let slot = lock(&self.loading).entry(key).or_default().clone();
        let mut mine = None;
        let shared = slot.get_or_init(|| {
            let result = self.repo.read_frame(loc).map(Arc::new);
            let frame = result.as_ref().ok().cloned();
            if let Some(f) = &frame {
                lock(&self.frames).insert(key, f.clone());
            }
            mine = Some(result);
            frame
        });
        let outcome = match (mine, shared) {
            (Some(result), _) => result,
            (None, Some(frame)) => Ok(frame.clone()),
            // The reader we waited for failed: read it ourselves, for our own error.
            (None, None) => self.repo.read_frame(loc).map(Arc::new),
        };
        let mut loading = lock(&self.loading);
        if loading.get(&key).is_some_and(|s| Arc::ptr_eq(s, &slot)) {
            loading.remove(&key);
        }
        outcome
    }

    /// Where the bytes of `tracking_block` as of `backup_id` are stored (the frame and
    /// the block its bytes start with), or `None` when the block reads as zeros.
    pub fn locate(
        &self,
        backup_id: &str,
        tracking_block: u64,
    ) -> Result<Option<(FrameLocation, u64)>, RepoError> {
        for idx in self.chain(backup_id)?.iter() {
            if !idx.change.contains(tracking_block) {
                continue;
            }
            if !idx.allocated.contains(tracking_block) {
                return Ok(None);
            }
            let ext = idx.extent_of(tracking_block).ok_or_else(|| {
                RepoError::corrupt(
                    format!("index {}", idx.id()),
                    format!("changed block {tracking_block} has no extent"),
                )
            })?;
            return Ok(Some((ext.frame, ext.frame_first_block())));
        }
        Ok(None)
    }

    /// The bytes of one tracking block as of `backup_id`; `None` when the block is
    /// all zeros (deallocated). Walks the chain newest-first to the backup that
    /// last changed the block.
    pub fn read_block(
        &self,
        backup_id: &str,
        tracking_block: u64,
    ) -> Result<Option<[u8; BLOCK]>, RepoError> {
        let Some((loc, first_block)) = self.locate(backup_id, tracking_block)? else {
            return Ok(None);
        };
        let frame = self.frame(&loc)?;
        let start = (tracking_block - first_block) as usize * BLOCK;
        let slice = frame
            .get(start..start + BLOCK)
            .ok_or_else(|| RepoError::corrupt(loc.describe(), "frame shorter than its extent"))?;
        let mut out = [0u8; BLOCK];
        out.copy_from_slice(slice);
        Ok(Some(out))
    }

    /// Reads `buf.len() / 4096` tracking blocks starting at `first_block` as of
    /// `backup_id` into `buf` (zeros where deallocated). `buf.len()` must be a
    /// multiple of 4096.
    pub fn read_blocks(
        &self,
        backup_id: &str,
        first_block: u64,
        buf: &mut [u8],
    ) -> Result<(), RepoError> {
        for (i, chunk) in buf.chunks_exact_mut(BLOCK).enumerate() {
            match self.read_block(backup_id, first_block + i as u64)? {
                Some(b) => chunk.copy_from_slice(&b),
                None => chunk.fill(0),
            }
        }
        Ok(())
    }
}

/// A frame's identity: its pack and offset.
type FrameKey = (super::PackId, u64);

/// One frame being read: set once, to the frame or to `None` if the read failed.
type FrameSlot = OnceLock<Option<Arc<Vec<u8>>>>;

/// Least-recently-used frames, bounded in bytes. Eviction scans for the oldest
/// entry: with ≤ 1 MiB frames and a 64 MiB bound that is a few hundred entries.
struct FrameCache {
    limit: usize,
    used: usize,
    tick: u64,
    map: HashMap<FrameKey, (Arc<Vec<u8>>, u64)>,
}

impl FrameCache {
    fn new(limit: usize) -> FrameCache {
        FrameCache {
            limit,
            used: 0,
            tick: 0,
            map: HashMap::new(),
        }
    }

    fn get(&mut self, key: &FrameKey) -> Option<Arc<Vec<u8>>> {
        self.tick += 1;
        let tick = self.tick;
        self.map.get_mut(key).map(|(v, t)| {
            *t = tick;
            v.clone()
        })
    }

    fn insert(&mut self, key: FrameKey, value: Arc<Vec<u8>>) {
        if value.len() > self.limit {
            return;
        }
        self.tick += 1;
        self.used += value.len();
        if let Some((old, _)) = self.map.insert(key, (value, self.tick)) {
            self.used -= old.len();
        }
        while self.used > self.limit {
            let Some(oldest) = self
                .map
                .iter()
                .min_by_key(|(_, (_, t))| *t)
                .map(|(k, _)| *k)
            else {
                break;
            };
            if let Some((v, _)) = self.map.remove(&oldest) {
                self.used -= v.len();
            }
        }
    }
}
