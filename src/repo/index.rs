//! Backup indexes: what a backup is (manifest), which tracking blocks it changed
//! and holds (bitmaps), and where their bytes are (extents).
//!
//! `backups/<backup id>.index`, little-endian:
//! ```text
//! "BDIDX003"
//! manifest_len:u32  manifest (JSON, `BackupManifest`: self-describing for `recover`)
//! change_len:u64    change bitmap   (RoaringTreemap portable serialization)
//! alloc_len:u64     allocated bitmap (RoaringTreemap portable serialization)
//! head_sum          blake3 of everything before it (32)
//! count:u64         extents: first_block:u64 blocks:u32 pack:16 offset:u64 stored_len:u32 hash:32
//!                   skip:u32 (blocks of the frame before `first_block`; "BDIDX002" has none)
//! blake3 of everything before it (32)
//! ```
//! The head (manifest and bitmaps) carries its own checksum so that a delta,
//! which needs only bitmaps, reads and verifies only the head
//! (`IndexHead::read`): the extents grow with the changed runs and are not
//! needed until data is read.
//! `backups/<backup id>.fingerprints`: "BDFP0001", count:u64, then a 16-byte
//! fingerprint (blake3, truncated) for each block the backup stored
//! (`change ∩ allocated`) in ascending order, and a blake3 trailer. A backup's
//! whole map is its chain's, newest first (`ChainReader::fingerprints`), so an
//! incremental's metadata grows with its changes, not with the volume.
//! A synthetic full (a merge, see `repo::merge`) keeps its own in
//! `backups/<backup id>.merged.fingerprints`, so the object an older index names is
//! never rewritten under it.
//! The index is written last: it is the backup's commit point.
//!
//! Why per-block fingerprints rather than per-region hashes plus a read-back of
//! the parent's bytes: a read-back costs a pack fetch and decompression for every
//! changed region, which on scattered changes (the common case) is most of the
//! incremental's time; 16 bytes per allocated 4 KiB block is 0.4 % of the data,
//! and an incremental then reads only the volume, never the repository.

use roaring::RoaringTreemap;
use serde::{Deserialize, Serialize};

use super::RepoError;
use super::pack::{FrameLocation, PackId};
use crate::kinds::{BackupKind, ChangeSource, VolumeKind};

const INDEX_MAGIC: &[u8; 8] = b"BDIDX003";
/// Indexes written before extents could start inside their frame (merges).
const INDEX_MAGIC_V2: &[u8; 8] = b"BDIDX002";
pub(super) const FP_MAGIC: &[u8; 8] = b"BDFP0001";
const EXTENT_LEN_V2: usize = 8 + 4 + 16 + 8 + 4 + 32;
const EXTENT_LEN: usize = EXTENT_LEN_V2 + 4;

/// The volume a backup was taken of, as it was then: enough to recreate the
/// volume's catalog record from the repository alone. As `volumes/<id>.json` it also
/// carries what only the volume knows: a delta volume's source, its attachment, and,
/// once deleted, a tombstone so `recover` never brings it back. (Inside an index those
/// stay unset; unset fields are not written, so older manifests read unchanged.)
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct VolumeManifest {
    pub id: String,
    /// The owning project; manifests written before projects existed are `admin`'s.
    #[serde(default = "admin_project")]
    pub project: String,
    pub name: String,
    pub kind: VolumeKind,
    pub path: String,
    pub size: u64,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta_source: Option<DeltaSourceManifest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachment: Option<AttachmentManifest>,
}

fn admin_project() -> String {
    crate::identity::ADMIN_PROJECT.to_string()
}

/// The two backups a delta volume shows the difference of.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct DeltaSourceManifest {
    pub first_backup_id: String,
    pub second_backup_id: String,
    pub change_block_size: u64,
    pub changed_bytes: u64,
}

/// How a volume is exported on the iSCSI target (the repository's files are the
/// owner's only: the CHAP secret is as safe here as in the catalog).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct AttachmentManifest {
    pub target_name: String,
    pub initiator: String,
    pub chap_user: String,
    pub chap_secret: String,
    pub block_size: u32,
    pub read_only: bool,
    pub attached_at: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct BackupManifest {
    pub format_version: u32,
    pub id: String,
    pub name: String,
    pub kind: BackupKind,
    pub parent_id: Option<String>,
    pub chain_id: String,
    pub volume: VolumeManifest,
    /// Volume size in bytes at backup time.
    pub size: u64,
    pub compression: String,
    pub created_at: String,
    pub completed_at: String,
    pub content_hash: String,
    pub changed_blocks: u64,
    pub allocated_blocks: u64,
    pub stored_bytes: u64,
    /// Set on a synthetic full: when the chain before it was merged into it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_at: Option<String>,
    /// How the backup found its changes; absent in backups made before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change_source: Option<ChangeSource>,
    /// Bytes the backup read from the volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_bytes: Option<u64>,
}

/// One run of consecutive tracking blocks whose bytes are in one frame: a whole frame
/// as a backup wrote it, or (in a synthetic full) the part of an older frame that is
/// still current.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    pub first_block: u64,
    pub blocks: u32,
    pub frame: FrameLocation,
    /// Blocks of the frame before `first_block`.
    pub skip: u32,
}

impl Extent {
    pub fn end_block(&self) -> u64 {
        self.first_block + self.blocks as u64
    }

    /// The block the frame's first bytes belong to.
    pub fn frame_first_block(&self) -> u64 {
        self.first_block - self.skip as u64
    }
}

#[derive(Clone, Debug)]
pub struct BackupIndex {
    pub manifest: BackupManifest,
    /// Tracking blocks whose content differs from the parent (full: non-zero blocks).
    pub change: RoaringTreemap,
    /// Tracking blocks that are not all-zero in this backup.
    pub allocated: RoaringTreemap,
    /// Sorted by `first_block`, non-overlapping; covers `change ∩ allocated` exactly.
    pub extents: Vec<Extent>,
}

impl BackupIndex {
    pub fn id(&self) -> &str {
        &self.manifest.id
    }

    pub fn parent_id(&self) -> Option<&str> {
        self.manifest.parent_id.as_deref()
    }

    /// Blocks whose bytes this backup stored: changed and not all-zero.
    pub fn stored_blocks(&self) -> RoaringTreemap {
        &self.change & &self.allocated
    }

    /// The extent holding `block`, if this backup stored it.
    pub fn extent_of(&self, block: u64) -> Option<&Extent> {
        let i = self.extents.partition_point(|e| e.first_block <= block);
        let e = self.extents.get(i.checked_sub(1)?)?;
        (block < e.end_block()).then_some(e)
    }

    pub fn encode(&self) -> Result<Vec<u8>, RepoError> {
        let manifest = serde_json::to_vec(&self.manifest)
            .map_err(|e| RepoError::corrupt(format!("index {}", self.id()), e.to_string()))?;
        let mut out = Vec::with_capacity(64 + manifest.len() + self.extents.len() * EXTENT_LEN);
        out.extend_from_slice(INDEX_MAGIC);
        out.extend_from_slice(&(manifest.len() as u32).to_le_bytes());
        out.extend_from_slice(&manifest);
        for bitmap in [&self.change, &self.allocated] {
            let mut bytes = Vec::with_capacity(bitmap.serialized_size());
            bitmap
                .serialize_into(&mut bytes)
                .map_err(|e| RepoError::corrupt(format!("index {}", self.id()), e.to_string()))?;
            out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
            out.extend_from_slice(&bytes);
        }
        let head_sum = blake3::hash(&out);
        out.extend_from_slice(head_sum.as_bytes());
        out.extend_from_slice(&(self.extents.len() as u64).to_le_bytes());
        for e in &self.extents {
            out.extend_from_slice(&e.first_block.to_le_bytes());
            out.extend_from_slice(&e.blocks.to_le_bytes());
            out.extend_from_slice(&e.frame.pack.0);
            out.extend_from_slice(&e.frame.offset.to_le_bytes());
            out.extend_from_slice(&e.frame.stored_len.to_le_bytes());
            out.extend_from_slice(&e.frame.hash);
            out.extend_from_slice(&e.skip.to_le_bytes());
        }
        let sum = blake3::hash(&out);
        out.extend_from_slice(sum.as_bytes());
        Ok(out)
    }

    pub fn decode(bytes: &[u8], object: &str) -> Result<BackupIndex, RepoError> {
        let bad = |reason: &str| RepoError::corrupt(object, reason);
        if bytes.len() < INDEX_MAGIC.len() + 32 {
            return Err(bad("not a backup index"));
        }
        let extent_len = match &bytes[..8] {
            m if m == INDEX_MAGIC => EXTENT_LEN,
            m if m == INDEX_MAGIC_V2 => EXTENT_LEN_V2,
            _ => return Err(bad("not a backup index")),
        };
        let (body, sum) = bytes.split_at(bytes.len() - 32);
        if blake3::hash(body).as_bytes() != sum {
            return Err(bad("blake3 mismatch"));
        }
        let mut r = Cursor { buf: body, pos: 0 };
        let head = IndexHead::parse(&mut r, object)?;
        let count = r.u64().ok_or_else(|| bad("truncated"))? as usize;
        if count > (body.len() - r.pos) / extent_len {
            return Err(bad("extent count larger than the index"));
        }
        let mut extents = Vec::with_capacity(count);
        for _ in 0..count {
            let first_block = r.u64().ok_or_else(|| bad("truncated"))?;
            let blocks = r.u32().ok_or_else(|| bad("truncated"))?;
            let mut pack = [0u8; 16];
            pack.copy_from_slice(r.take(16).ok_or_else(|| bad("truncated"))?);
            let offset = r.u64().ok_or_else(|| bad("truncated"))?;
            let stored_len = r.u32().ok_or_else(|| bad("truncated"))?;
            let mut hash = [0u8; 32];
            hash.copy_from_slice(r.take(32).ok_or_else(|| bad("truncated"))?);
            let skip = match extent_len {
                EXTENT_LEN => r.u32().ok_or_else(|| bad("truncated"))?,
                _ => 0,
            };
            if skip as u64 > first_block {
                return Err(bad("an extent starts before its frame's first block"));
            }
            extents.push(Extent {
                first_block,
                blocks,
                frame: FrameLocation {
                    pack: PackId(pack),
                    offset,
                    stored_len,
                    hash,
                },
                skip,
            });
        }
        if extents
            .windows(2)
            .any(|w| w[0].end_block() > w[1].first_block)
        {
            return Err(bad("extents overlap or are unsorted"));
        }
        Ok(BackupIndex {
            manifest: head.manifest,
            change: head.change,
            allocated: head.allocated,
            extents,
        })
    }
}

/// The head of an index: what a backup is and which blocks it changed and holds,
/// without where their bytes are.
#[derive(Clone, Debug)]
pub struct IndexHead {
    pub manifest: BackupManifest,
    pub change: RoaringTreemap,
    pub allocated: RoaringTreemap,
}

impl IndexHead {
    /// Parses the head at the start of `r` and checks its own checksum.
    fn parse(r: &mut Cursor<'_>, object: &str) -> Result<IndexHead, RepoError> {
        let bad = |reason: &str| RepoError::corrupt(object, reason);
        match r.take(8) {
            Some(m) if m == INDEX_MAGIC || m == INDEX_MAGIC_V2 => {}
            _ => return Err(bad("not a backup index")),
        }
        let mlen = r.u32().ok_or_else(|| bad("truncated"))? as usize;
        let manifest: BackupManifest =
            serde_json::from_slice(r.take(mlen).ok_or_else(|| bad("truncated"))?)
                .map_err(|e| RepoError::corrupt(object, format!("manifest: {e}")))?;
        let mut bitmaps = Vec::with_capacity(2);
        for _ in 0..2 {
            let len = r.u64().ok_or_else(|| bad("truncated"))? as usize;
            let raw = r.take(len).ok_or_else(|| bad("truncated"))?;
            bitmaps.push(raw);
        }
        let head_len = r.pos;
        let sum = r.take(32).ok_or_else(|| bad("truncated"))?;
        if blake3::hash(&r.buf[..head_len]).as_bytes() != sum {
            return Err(bad("blake3 mismatch in the head"));
        }
        let decode = |raw: &[u8]| {
            RoaringTreemap::deserialize_from(raw)
                .map_err(|e| RepoError::corrupt(object, format!("bitmap: {e}")))
        };
        Ok(IndexHead {
            manifest,
            change: decode(bitmaps[0])?,
            allocated: decode(bitmaps[1])?,
        })
    }

    /// Reads and verifies only the head of an index through `read_range` (ranged
    /// reads of the index object): a few reads sized by the head's own length fields,
    /// never the extents. A range past the object's end comes back as `Corrupt`.
    pub fn read(
        object: &str,
        read_range: impl Fn(std::ops::Range<u64>) -> Result<Vec<u8>, RepoError>,
    ) -> Result<IndexHead, RepoError> {
        let truncated = |e: RepoError| match e {
            RepoError::Corrupt { .. } => RepoError::corrupt(object, "truncated"),
            other => other,
        };
        let mut buf = read_range(0..12).map_err(truncated)?;
        let mlen = u32::from_le_bytes([buf[8], buf[9], buf[10], buf[11]]) as u64;
        let want = |buf: &mut Vec<u8>, more: u64| -> Result<(), RepoError> {
            let at = buf.len() as u64;
            let end = at
                .checked_add(more)
                .filter(|end| *end <= MAX_HEAD_LEN)
                .ok_or_else(|| RepoError::corrupt(object, "truncated"))?;
            buf.extend_from_slice(&read_range(at..end).map_err(truncated)?);
            Ok(())
        };
        want(&mut buf, mlen + 8)?;
        for last in [false, true] {
            let at = buf.len() - 8;
            let mut len = [0u8; 8];
            len.copy_from_slice(&buf[at..]);
            let len = u64::from_le_bytes(len);
            want(&mut buf, len.saturating_add(if last { 32 } else { 8 }))?;
        }
        IndexHead::parse(&mut Cursor { buf: &buf, pos: 0 }, object)
    }
}

/// No head is larger: two bitmaps of a 16 EiB volume at their worst are far below it,
/// and a damaged length field must not become a multi-gigabyte read.
const MAX_HEAD_LEN: u64 = 1 << 34;

/// Per-block fingerprints of a backup, sorted by block: the parent side of an
/// incremental's comparison.
#[derive(Clone, Debug, Default)]
pub struct Fingerprints {
    pub entries: Vec<(u64, [u8; 16])>,
}

impl Fingerprints {
    pub fn get(&self, block: u64) -> Option<&[u8; 16]> {
        self.entries
            .binary_search_by_key(&block, |e| e.0)
            .ok()
            .map(|i| &self.entries[i].1)
    }

    /// Encodes only the fingerprints: the block numbers are the stored blocks'.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(48 + self.entries.len() * 16);
        out.extend_from_slice(FP_MAGIC);
        out.extend_from_slice(&(self.entries.len() as u64).to_le_bytes());
        for (_, fp) in &self.entries {
            out.extend_from_slice(fp);
        }
        let sum = blake3::hash(&out);
        out.extend_from_slice(sum.as_bytes());
        out
    }

    /// Decodes a fingerprint object whose entries belong, in order, to `blocks`.
    pub fn decode(
        bytes: &[u8],
        blocks: &RoaringTreemap,
        object: &str,
    ) -> Result<Fingerprints, RepoError> {
        let bad = |reason: &str| RepoError::corrupt(object, reason);
        if bytes.len() < 48 || &bytes[..8] != FP_MAGIC {
            return Err(bad("not a fingerprint file"));
        }
        let (body, sum) = bytes.split_at(bytes.len() - 32);
        if blake3::hash(body).as_bytes() != sum {
            return Err(bad("blake3 mismatch"));
        }
        let mut count_bytes = [0u8; 8];
        count_bytes.copy_from_slice(&body[8..16]);
        let count = u64::from_le_bytes(count_bytes);
        if count != blocks.len() || (body.len() - 16) as u64 != count * 16 {
            return Err(bad("fingerprint count differs from the stored blocks"));
        }
        let entries = blocks
            .iter()
            .zip(body[16..].chunks_exact(16))
            .map(|(block, fp)| {
                let mut f = [0u8; 16];
                f.copy_from_slice(fp);
                (block, f)
            })
            .collect();
        Ok(Fingerprints { entries })
    }

    /// The backup's content hash: blake3 over the volume size and every
    /// (allocated block, fingerprint) pair. Equal volumes give equal hashes without
    /// hashing their zeros.
    pub fn content_hash(&self, size: u64) -> String {
        let mut h = ContentHasher::new(size);
        for (block, fp) in &self.entries {
            h.add(*block, fp);
        }
        h.finish()
    }
}

#[cfg(test)]
mod content_hash_tests {
    use super::*;

    #[test]
    fn batched_hashing_is_the_hash_of_the_pairs() {
        let entries: Vec<(u64, [u8; 16])> =
            (0..10_000u64).map(|b| (b * 3, [b as u8; 16])).collect();
        let mut plain = blake3::Hasher::new();
        plain.update(&(1u64 << 30).to_le_bytes());
        for (b, fp) in &entries {
            plain.update(&b.to_le_bytes());
            plain.update(fp);
        }
        assert_eq!(
            Fingerprints { entries }.content_hash(1 << 30),
            plain.finalize().to_hex().to_string()
        );
    }
}

/// A backup's content hash (see `Fingerprints::content_hash`) fed one allocated block
/// at a time, in ascending order: a backup computes it as it goes, without the map.
/// The 24-byte pairs are hashed in batches (the same bytes in the same order, so the same
/// hash): blake3 is several times faster on long inputs than on tiny ones, and a
/// write-tracked incremental hashes every allocated block's pair while reading few.
pub struct ContentHasher {
    hasher: blake3::Hasher,
    pending: Vec<u8>,
}

const HASH_BATCH: usize = 64 << 10;

impl ContentHasher {
    pub fn new(size: u64) -> ContentHasher {
        let mut pending = Vec::with_capacity(HASH_BATCH + 24);
        pending.extend_from_slice(&size.to_le_bytes());
        ContentHasher {
            hasher: blake3::Hasher::new(),
            pending,
        }
    }

    pub fn add(&mut self, block: u64, fingerprint: &[u8; 16]) {
        self.pending.extend_from_slice(&block.to_le_bytes());
        self.pending.extend_from_slice(fingerprint);
        if self.pending.len() >= HASH_BATCH {
            self.hasher.update(&self.pending);
            self.pending.clear();
        }
    }

    pub fn finish(mut self) -> String {
        self.hasher.update(&self.pending);
        self.hasher.finalize().to_hex().to_string()
    }
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }
    fn u32(&mut self) -> Option<u32> {
        let b = self.take(4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Option<u64> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Some(u64::from_le_bytes(a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> BackupIndex {
        let mut change = RoaringTreemap::new();
        change.insert_range(10..20);
        change.insert(1 << 40);
        let allocated = change.clone();
        BackupIndex {
            manifest: BackupManifest {
                format_version: 1,
                id: "bkp-0123456789abcdef".into(),
                name: "n".into(),
                kind: BackupKind::Full,
                parent_id: None,
                chain_id: "bkp-0123456789abcdef".into(),
                volume: VolumeManifest {
                    id: "vol-0123456789abcdef".into(),
                    name: "v".into(),
                    kind: VolumeKind::Managed,
                    path: "/x".into(),
                    size: 1 << 52,
                    created_at: "t".into(),
                    ..Default::default()
                },
                size: 1 << 52,
                compression: "zstd".into(),
                created_at: "t".into(),
                completed_at: "t".into(),
                content_hash: "h".into(),
                changed_blocks: 11,
                allocated_blocks: 11,
                stored_bytes: 0,
                merged_at: None,
                change_source: None,
                read_bytes: None,
            },
            change,
            allocated,
            extents: vec![Extent {
                first_block: 10,
                blocks: 10,
                frame: FrameLocation {
                    pack: PackId([7; 16]),
                    offset: 8,
                    stored_len: 100,
                    hash: [9; 32],
                },
                skip: 0,
            }],
        }
    }

    #[test]
    fn index_round_trips_and_rejects_damage() {
        let idx = sample();
        let bytes = idx.encode().unwrap();
        let back = BackupIndex::decode(&bytes, "i").unwrap();
        assert_eq!(back.manifest, idx.manifest);
        assert_eq!(back.change, idx.change);
        assert_eq!(back.extents, idx.extents);
        assert_eq!(back.extent_of(15).map(|e| e.first_block), Some(10));
        assert!(back.extent_of(20).is_none());
        assert!(back.extent_of(9).is_none());
        for i in [0, 9, bytes.len() / 2, bytes.len() - 1] {
            let mut b = bytes.clone();
            b[i] ^= 1;
            assert!(BackupIndex::decode(&b, "i").is_err());
        }
        assert!(BackupIndex::decode(&bytes[..20], "i").is_err());
    }

    /// Indexes written before extents had `skip` ("BDIDX002") read as whole frames.
    #[test]
    fn version_2_indexes_still_read() {
        let idx = sample();
        let v3 = idx.encode().unwrap();
        let (head, _) = v3.split_at(v3.len() - 32 - 8 - EXTENT_LEN - 32);
        let mut v2 = head.to_vec();
        v2[..8].copy_from_slice(INDEX_MAGIC_V2);
        let head_sum = blake3::hash(&v2);
        v2.extend_from_slice(head_sum.as_bytes());
        v2.extend_from_slice(&1u64.to_le_bytes());
        let extent_at = v3.len() - 32 - EXTENT_LEN;
        v2.extend_from_slice(&v3[extent_at..extent_at + EXTENT_LEN_V2]);
        let sum = blake3::hash(&v2);
        v2.extend_from_slice(sum.as_bytes());
        let back = BackupIndex::decode(&v2, "i").unwrap();
        assert_eq!(back.manifest, idx.manifest);
        assert_eq!(back.extents, idx.extents);
        // A skip reaching before block 0 is damage.
        let mut bad = idx.clone();
        bad.extents[0].skip = 11;
        assert!(BackupIndex::decode(&bad.encode().unwrap(), "i").is_err());
        bad.extents[0].skip = 10;
        assert_eq!(
            BackupIndex::decode(&bad.encode().unwrap(), "i")
                .unwrap()
                .extents[0]
                .frame_first_block(),
            0
        );
    }

    #[test]
    fn the_head_reads_alone_and_checks_its_own_sum() {
        let idx = sample();
        let bytes = idx.encode().unwrap();
        let ranged = |b: &[u8]| {
            let b = b.to_vec();
            move |r: std::ops::Range<u64>| {
                b.get(r.start as usize..r.end as usize)
                    .map(<[u8]>::to_vec)
                    .ok_or_else(|| RepoError::corrupt("i", "short"))
            }
        };
        let head = IndexHead::read("i", ranged(&bytes)).unwrap();
        assert_eq!(head.manifest, idx.manifest);
        assert_eq!(head.change, idx.change);
        assert_eq!(head.allocated, idx.allocated);
        // Damage in the extents leaves the head readable; damage in the head does not.
        let head_len = bytes.len() - 32 - 8 - EXTENT_LEN;
        let mut b = bytes.clone();
        b[head_len + 10] ^= 1;
        assert!(IndexHead::read("i", ranged(&b)).is_ok());
        assert!(BackupIndex::decode(&b, "i").is_err());
        for i in [0, 9, 20, head_len - 40, head_len - 1] {
            let mut b = bytes.clone();
            b[i] ^= 1;
            assert!(IndexHead::read("i", ranged(&b)).is_err(), "byte {i}");
        }
        for len in [4, 12, 40, head_len - 1] {
            assert!(
                IndexHead::read("i", ranged(&bytes[..len])).is_err(),
                "length {len}"
            );
        }
    }
}
