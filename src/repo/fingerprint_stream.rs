//! A backup's fingerprints for every allocated block, in block order, as a stream.
//!
//! An incremental compares each block with its parent's fingerprint. Held whole, that
//! map is 24 bytes per allocated 4 KiB block (6 GB for 1 TiB), so it is read instead as
//! it is needed: each backup of the parent's chain supplies the blocks it claims
//! (`ChainReader::claim_plan`), its fingerprint object is read in ranged chunks, and the
//! sources (disjoint, each ascending) are merged. Memory is one chunk per source.
//!
//! Each object's blake3 trailer covers the whole object, so it is checked when the last
//! chunk has been read: a consumer must read the stream to its end
//! ([`FingerprintStream::finish`]) before trusting anything it compared, which a backup
//! does before it commits.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use roaring::RoaringTreemap;

use super::index::FP_MAGIC;
use super::{BackupIndex, RepoError, Repository, fingerprints_key_of};

/// Fingerprints read from an object at once: 256 KiB.
const CHUNK_ENTRIES: u64 = 16 << 10;
const HEADER_LEN: u64 = 16;
const TRAILER_LEN: u64 = 32;

/// One (block, fingerprint) of a backup's map.
pub type BlockFingerprint = (u64, [u8; 16]);

/// The merged stream (see the module's doc).
pub struct FingerprintStream {
    sources: Vec<Source>,
    /// The next entry of each source that has one: (block, source).
    heads: BinaryHeap<Reverse<(u64, usize)>>,
    peeked: Vec<Option<[u8; 16]>>,
}

impl FingerprintStream {
    /// A stream with nothing in it: a full backup's parent side.
    pub fn empty() -> FingerprintStream {
        FingerprintStream {
            sources: Vec::new(),
            heads: BinaryHeap::new(),
            peeked: Vec::new(),
        }
    }

    /// The stream of `sources`: each index with the blocks it supplies (a subset of
    /// the blocks it stored).
    pub(super) fn open(
        repo: &Repository,
        sources: Vec<(std::sync::Arc<BackupIndex>, RoaringTreemap)>,
    ) -> Result<FingerprintStream, RepoError> {
        let mut stream = FingerprintStream::empty();
        for (index, own) in sources {
            let source = Source::open(repo, &index, own)?;
            stream.sources.push(source);
            stream.peeked.push(None);
            let at = stream.sources.len() - 1;
            stream.advance(at)?;
        }
        Ok(stream)
    }

    fn advance(&mut self, at: usize) -> Result<(), RepoError> {
        if let Some((block, fp)) = self.sources[at].next_owned()? {
            self.peeked[at] = Some(fp);
            self.heads.push(Reverse((block, at)));
        }
        Ok(())
    }

    /// The next entry, in ascending block order.
    pub fn next_entry(&mut self) -> Result<Option<BlockFingerprint>, RepoError> {
        let Some(Reverse((block, at))) = self.heads.pop() else {
            return Ok(None);
        };
        let fp = self.peeked[at]
            .take()
            .expect("a queued source has a peeked entry");
        self.advance(at)?;
        Ok(Some((block, fp)))
    }

    /// Entries below `end`, appended to `out`, at most `max` of them: whether every
    /// entry below `end` was taken.
    pub fn take_below_at_most(
        &mut self,
        end: u64,
        max: usize,
        out: &mut Vec<BlockFingerprint>,
    ) -> Result<bool, RepoError> {
        for _ in 0..max {
            match self.heads.peek() {
                Some(Reverse((block, _))) if *block < end => {
                    let entry = self.next_entry()?.expect("peeked");
                    out.push(entry);
                }
                _ => return Ok(true),
            }
        }
        Ok(!matches!(self.heads.peek(), Some(Reverse((block, _))) if *block < end))
    }

    /// Passes over the entries below `end`.
    pub fn skip_below(&mut self, end: u64) -> Result<(), RepoError> {
        while matches!(self.heads.peek(), Some(Reverse((block, _))) if *block < end) {
            self.next_entry()?;
        }
        Ok(())
    }

    /// Reads what is left and checks every object's trailer.
    pub fn finish(&mut self) -> Result<(), RepoError> {
        while self.next_entry()?.is_some() {}
        for source in &mut self.sources {
            source.check_trailer()?;
        }
        Ok(())
    }
}

/// One backup's fingerprint object, read chunk by chunk.
struct Source {
    repo: Repository,
    key: String,
    what: String,
    blocks: roaring::treemap::IntoIter,
    own: RoaringTreemap,
    count: u64,
    /// Entries read so far.
    read: u64,
    chunk: Vec<u8>,
    chunk_pos: usize,
    hasher: blake3::Hasher,
    checked: bool,
}

impl Source {
    fn open(
        repo: &Repository,
        index: &BackupIndex,
        own: RoaringTreemap,
    ) -> Result<Source, RepoError> {
        let key = fingerprints_key_of(&index.manifest);
        let stored = index.stored_blocks();
        let mut source = Source {
            repo: repo.clone(),
            what: format!("fingerprints {}", index.id()),
            key,
            count: stored.len(),
            blocks: stored.into_iter(),
            own,
            read: 0,
            chunk: Vec::new(),
            chunk_pos: 0,
            hasher: blake3::Hasher::new(),
            checked: false,
        };
        let header = source.get(0..HEADER_LEN)?;
        if header.len() != HEADER_LEN as usize || &header[..8] != FP_MAGIC {
            return Err(source.corrupt("not a fingerprint file"));
        }
        let count = u64::from_le_bytes(header[8..16].try_into().expect("8 bytes"));
        if count != source.count {
            return Err(source.corrupt("fingerprint count differs from the stored blocks"));
        }
        source.hasher.update(&header);
        Ok(source)
    }

    fn get(&self, range: std::ops::Range<u64>) -> Result<Vec<u8>, RepoError> {
        let got = self.repo.store.get_range(&self.key, range);
        self.repo.named(&self.what, &self.key, got)
    }

    fn corrupt(&self, reason: &str) -> RepoError {
        RepoError::corrupt(
            format!("{} ({})", self.what, self.repo.describe(&self.key)),
            reason,
        )
    }

    /// The next entry this source supplies (its own blocks only).
    fn next_owned(&mut self) -> Result<Option<BlockFingerprint>, RepoError> {
        loop {
            let Some(block) = self.blocks.next() else {
                return Ok(None);
            };
            let fp = self.next_fingerprint()?;
            if self.own.contains(block) {
                return Ok(Some((block, fp)));
            }
        }
    }

    fn next_fingerprint(&mut self) -> Result<[u8; 16], RepoError> {
        if self.chunk_pos == self.chunk.len() {
            let entries = CHUNK_ENTRIES.min(self.count - self.read);
            let from = HEADER_LEN + self.read * 16;
            let chunk = self.get(from..from + entries * 16)?;
            if chunk.len() as u64 != entries * 16 {
                return Err(self.corrupt("fingerprint object is short"));
            }
            self.hasher.update(&chunk);
            self.chunk = chunk;
            self.chunk_pos = 0;
        }
        let fp: [u8; 16] = self.chunk[self.chunk_pos..self.chunk_pos + 16]
            .try_into()
            .expect("16 bytes");
        self.chunk_pos += 16;
        self.read += 1;
        Ok(fp)
    }

    fn check_trailer(&mut self) -> Result<(), RepoError> {
        if self.checked {
            return Ok(());
        }
        // Entries after the last owned block are still part of the sum.
        while self.read < self.count {
            self.next_fingerprint()?;
        }
        let from = HEADER_LEN + self.count * 16;
        let trailer = self.get(from..from + TRAILER_LEN)?;
        if self.hasher.finalize().as_bytes()[..] != trailer[..] {
            return Err(self.corrupt("blake3 mismatch"));
        }
        self.checked = true;
        Ok(())
    }
}
