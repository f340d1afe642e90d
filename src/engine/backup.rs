//! Full and incremental backups: one streaming pipeline.
//!
//! ```text
//! workers (read, zero-check, fingerprint, compare, compress) ──results──▶ this thread ──frames──▶ BackupWriter
//! ```
//! Workers, one a core, take the next piece of the volume's data ranges (holes
//! skipped with SEEK_DATA / SEEK_HOLE), read it, fingerprint each tracking block,
//! compare it with the parent's fingerprint and compress each run of changed
//! blocks into a frame. A worker reads the piece it works on, so the bytes are
//! still in its core's cache when it hashes and compresses them: a separate
//! reader thread made every byte cross memory once more, which cost a tenth of a
//! full backup's CPU. This thread builds the change bitmap, allocated bitmap and
//! fingerprints and hands frames to the repository's `BackupWriter`, which packs
//! and stores them beside it. The result queue is bounded, so memory is a fixed
//! number of pieces in flight.
//!
//! The index is written last, after every pack is durable: a backup that dies
//! midway leaves only unreferenced packs, which garbage collection removes.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};

use roaring::RoaringTreemap;

use super::source::data_ranges;
use super::{EngineError, JobControl, worker_count};
use crate::clock::now_rfc3339;
use crate::repo::hash::{fingerprint, frame_hash_of};
use crate::repo::pack::EncodedFrame;
use crate::repo::{
    BackupManifest, BackupWriter, Codec, Fingerprints, Repository, TRACKING_BLOCK_SIZE,
};

const BLOCK: usize = TRACKING_BLOCK_SIZE as usize;
/// Bytes a worker reads and works on at once: large enough for sequential reads,
/// small enough to stay in a core's cache between reading and compressing.
pub const PIECE_LEN: usize = 1 << 20;
/// A frame holds at most this many consecutive changed blocks (128 KiB): big
/// enough to compress well, small enough that reading one block of a delta
/// volume decompresses little.
pub const MAX_FRAME_BLOCKS: usize = 32;

static ZERO_BLOCK: [u8; BLOCK] = [0; BLOCK];

/// What to back up and how; the manifest's result fields are filled in here.
pub struct BackupPlan {
    pub manifest: BackupManifest,
    pub source: PathBuf,
    pub codec: Codec,
}

/// What a finished backup recorded.
#[derive(Debug, Clone)]
pub struct BackupOutcome {
    pub changed_blocks: u64,
    pub allocated_blocks: u64,
    pub stored_bytes: u64,
    pub content_hash: String,
    pub completed_at: String,
}

struct Piece {
    first_block: u64,
    data: Vec<u8>,
}

struct PieceResult {
    /// Fingerprints of this piece's non-zero blocks, ascending.
    fingerprints: Vec<(u64, [u8; 16])>,
    /// Non-zero blocks that differ from the parent.
    changed: Vec<u64>,
    frames: Vec<(u64, u32, EncodedFrame)>,
    bytes: u64,
}

pub fn run_backup(
    repo: &Repository,
    plan: BackupPlan,
    control: &JobControl,
) -> Result<BackupOutcome, EngineError> {
    let size = plan.manifest.size;
    let (parent_allocated, parent_fps) = match &plan.manifest.parent_id {
        Some(pid) => {
            // No frame cache: only indexes and fingerprints are read here.
            let chain = crate::repo::ChainReader::with_cache(repo.clone(), 0);
            let fps = chain.fingerprints(pid)?;
            (chain.index(pid)?.allocated.clone(), Arc::new(fps))
        }
        None => (RoaringTreemap::new(), Arc::new(Fingerprints::default())),
    };
    let file = File::open(&plan.source).map_err(|e| EngineError::io(plan.source.display(), e))?;
    let ranges = data_ranges(&file, size, TRACKING_BLOCK_SIZE)?;
    // Progress counts the bytes there are to read (holes are skipped), so it moves
    // evenly to 100 % instead of creeping to the allocated share and jumping.
    let to_read: u64 = ranges.iter().map(|(start, end)| end - start).sum();
    control.set_total(to_read.max(1));
    let workers = worker_count();
    let (result_tx, result_rx) = sync_channel::<Result<PieceResult, EngineError>>(workers * 2);
    let cursor = Mutex::new(PieceCursor::new(ranges));
    // Set when the writer gives up: workers stop taking pieces. The writer ends when
    // every worker has dropped its result sender, so no stage waits forever.
    let stop = AtomicBool::new(false);

    std::thread::scope(|scope| {
        for _ in 0..workers {
            let tx = result_tx.clone();
            let fps = parent_fps.clone();
            let codec = plan.codec;
            let (file, cursor, stop) = (&file, &cursor, &stop);
            scope.spawn(move || work_pieces(file, cursor, tx, &fps, codec, control, stop));
        }
        drop(result_tx);
        let written = write_results(repo, &plan, result_rx, &parent_allocated, control);
        if written.is_err() {
            stop.store(true, Ordering::SeqCst);
        }
        written
    })
}

/// Hands out the volume's data ranges in pieces of at most `PIECE_LEN`, in order.
struct PieceCursor {
    ranges: std::vec::IntoIter<(u64, u64)>,
    current: Option<(u64, u64)>,
}

impl PieceCursor {
    fn new(ranges: Vec<(u64, u64)>) -> PieceCursor {
        PieceCursor {
            ranges: ranges.into_iter(),
            current: None,
        }
    }

    /// The next piece as (byte offset, length).
    fn next_piece(&mut self) -> Option<(u64, usize)> {
        loop {
            match self.current {
                Some((pos, end)) if pos < end => {
                    let len = ((end - pos) as usize).min(PIECE_LEN);
                    self.current = Some((pos + len as u64, end));
                    return Some((pos, len));
                }
                _ => self.current = Some(self.ranges.next()?),
            }
        }
    }
}

fn work_pieces(
    file: &File,
    cursor: &Mutex<PieceCursor>,
    tx: SyncSender<Result<PieceResult, EngineError>>,
    parent: &Fingerprints,
    codec: Codec,
    control: &JobControl,
    stop: &AtomicBool,
) {
    let mut data = Vec::with_capacity(PIECE_LEN);
    loop {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        if control.is_cancelled() {
            let _ = tx.send(Err(EngineError::Interrupted));
            return;
        }
        let next = match cursor.lock() {
            Ok(mut cursor) => cursor.next_piece(),
            Err(_) => return,
        };
        let Some((pos, len)) = next else { return };
        data.resize(len, 0);
        let result = match file.read_exact_at(&mut data, pos) {
            Err(e) => Err(EngineError::io(format!("volume read at {pos}"), e)),
            Ok(()) => {
                let piece = Piece {
                    first_block: pos / TRACKING_BLOCK_SIZE,
                    data,
                };
                let result = process_piece(&piece, parent, codec);
                data = piece.data;
                result
            }
        };
        let failed = result.is_err();
        if tx.send(result).is_err() || failed {
            return;
        }
    }
}

/// Per tracking block: zero? fingerprint, equal to the parent's? Runs of changed
/// non-zero blocks become frames.
fn process_piece(
    piece: &Piece,
    parent: &Fingerprints,
    codec: Codec,
) -> Result<PieceResult, EngineError> {
    let mut out = PieceResult {
        fingerprints: Vec::new(),
        changed: Vec::new(),
        frames: Vec::new(),
        bytes: piece.data.len() as u64,
    };
    // Current run of changed blocks: (index of first block within the piece, count).
    let mut run: Option<(usize, usize)> = None;
    let flush =
        |run: &mut Option<(usize, usize)>, out: &mut PieceResult| -> Result<(), EngineError> {
            if let Some((first, count)) = run.take() {
                let raw = &piece.data[first * BLOCK..(first + count) * BLOCK];
                let first_block = piece.first_block + first as u64;
                let at = out.fingerprints.partition_point(|f| f.0 < first_block);
                let fps = out.fingerprints[at..].iter().take(count).map(|f| &f.1);
                let frame = EncodedFrame::encode_hashed(raw, codec, frame_hash_of(fps))?;
                out.frames
                    .push((piece.first_block + first as u64, count as u32, frame));
            }
            Ok(())
        };
    for (i, block) in piece.data.chunks_exact(BLOCK).enumerate() {
        let index = piece.first_block + i as u64;
        // Slice equality is a memcmp: fast even in unoptimised builds.
        if block == &ZERO_BLOCK[..] {
            flush(&mut run, &mut out)?;
            continue;
        }
        let fp = fingerprint(block);
        out.fingerprints.push((index, fp));
        if parent.get(index) == Some(&fp) {
            flush(&mut run, &mut out)?;
            continue;
        }
        out.changed.push(index);
        run = match run {
            Some((first, count)) if count < MAX_FRAME_BLOCKS => Some((first, count + 1)),
            Some(_) => {
                flush(&mut run, &mut out)?;
                Some((i, 1))
            }
            None => Some((i, 1)),
        };
    }
    flush(&mut run, &mut out)?;
    Ok(out)
}

fn write_results(
    repo: &Repository,
    plan: &BackupPlan,
    rx: Receiver<Result<PieceResult, EngineError>>,
    parent_allocated: &RoaringTreemap,
    control: &JobControl,
) -> Result<BackupOutcome, EngineError> {
    let mut writer = BackupWriter::begin(repo, &plan.manifest.id)?;
    let mut fingerprints = Vec::new();
    let mut changed = RoaringTreemap::new();
    let mut done = 0u64;
    for result in rx.iter() {
        let piece = result?;
        for (first_block, blocks, frame) in &piece.frames {
            writer.append(*first_block, *blocks, frame)?;
        }
        changed.extend(piece.changed.iter().copied());
        fingerprints.extend_from_slice(&piece.fingerprints);
        done += piece.bytes;
        control.set_done(done);
    }
    if control.is_cancelled() {
        return Err(EngineError::Interrupted);
    }
    fingerprints.sort_by_key(|f| f.0);
    let fingerprints = Fingerprints {
        entries: fingerprints,
    };
    let mut allocated = RoaringTreemap::new();
    allocated.extend(fingerprints.entries.iter().map(|f| f.0));
    // Blocks the parent held and that are zero now changed too (zeroed or trimmed).
    changed |= parent_allocated - &allocated;
    let content_hash = fingerprints.content_hash(plan.manifest.size);
    // Only the blocks this backup stores keep their fingerprint here; the rest
    // are its ancestors' (see `repo::index`).
    let stored = Fingerprints {
        entries: fingerprints
            .entries
            .into_iter()
            .filter(|(b, _)| changed.contains(*b))
            .collect(),
    };
    // Run containers: allocated regions are long runs, so the bitmaps stay small.
    changed.optimize();
    allocated.optimize();

    let mut manifest = plan.manifest.clone();
    manifest.changed_blocks = changed.len();
    manifest.allocated_blocks = allocated.len();
    manifest.content_hash = content_hash.clone();
    manifest.completed_at = now_rfc3339();
    if control.is_cancelled() {
        return Err(EngineError::Interrupted);
    }
    let committed = writer.commit(manifest.clone(), changed, allocated, &stored)?;
    control.set_done(control.progress().1);
    Ok(BackupOutcome {
        changed_blocks: manifest.changed_blocks,
        allocated_blocks: manifest.allocated_blocks,
        stored_bytes: committed.stored_bytes,
        content_hash,
        completed_at: manifest.completed_at,
    })
}

#[cfg(test)]
mod tests {
    use crate::kinds::{BackupKind, VolumeKind};
    use std::os::unix::fs::FileExt;

    use super::*;
    use crate::engine::restore::{run_restore, run_verify};
    use crate::repo::{ChainReader, VolumeManifest};

    const SIZE: u64 = 8 << 20;

    fn plan(dir: &std::path::Path, id: &str, parent: Option<&str>, codec: Codec) -> BackupPlan {
        BackupPlan {
            manifest: BackupManifest {
                format_version: 1,
                id: id.into(),
                name: id.into(),
                kind: if parent.is_some() {
                    BackupKind::Incremental
                } else {
                    BackupKind::Full
                },
                parent_id: parent.map(Into::into),
                chain_id: "c".into(),
                volume: VolumeManifest {
                    id: "vol-0000000000000001".into(),
                    name: "v".into(),
                    kind: VolumeKind::Managed,
                    path: dir.join("vol.img").display().to_string(),
                    size: SIZE,
                    created_at: String::new(),
                    ..Default::default()
                },
                size: SIZE,
                compression: codec.name().into(),
                created_at: now_rfc3339(),
                completed_at: String::new(),
                content_hash: String::new(),
                changed_blocks: 0,
                allocated_blocks: 0,
                stored_bytes: 0,
                merged_at: None,
            },
            source: dir.join("vol.img"),
            codec,
        }
    }

    fn block(seed: u8) -> Vec<u8> {
        (0..BLOCK)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed)
            .collect()
    }

    #[test]
    fn full_then_incremental_bitmaps_reads_restore_and_verify() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::open_or_create(&dir.path().join("repo")).unwrap();
        let vol = dir.path().join("vol.img");
        let f = std::fs::File::create(&vol).unwrap();
        f.set_len(SIZE).unwrap();
        for b in [0u64, 1, 2, 100, 1500, 2047] {
            f.write_all_at(&block((b as u8).wrapping_add(1)), b * 4096)
                .unwrap();
        }
        f.write_all_at(&[0u8; 4096], 50 * 4096).unwrap(); // allocated on disk, all zero
        let control = JobControl::default();
        let full = run_backup(
            &repo,
            plan(dir.path(), "bkp-full", None, Codec::Zstd),
            &control,
        )
        .unwrap();
        assert_eq!((full.changed_blocks, full.allocated_blocks), (6, 6));

        f.write_all_at(&block(9), 4096).unwrap(); // changed
        f.write_all_at(&block(3), 2 * 4096).unwrap(); // same bytes as before
        f.write_all_at(&[0u8; 4096], 100 * 4096).unwrap(); // zeroed
        f.write_all_at(&block(7), 700 * 4096).unwrap(); // new
        let inc = run_backup(
            &repo,
            plan(dir.path(), "bkp-inc", Some("bkp-full"), Codec::Bz2),
            &control,
        )
        .unwrap();
        assert_eq!(inc.allocated_blocks, 6);

        let reader = ChainReader::new(repo.clone());
        let change: Vec<u64> = reader.change_bitmap("bkp-inc").unwrap().iter().collect();
        assert_eq!(change, vec![1, 100, 700]);
        let allocated: Vec<u64> = reader.allocated_bitmap("bkp-inc").unwrap().iter().collect();
        assert_eq!(allocated, vec![0, 1, 2, 700, 1500, 2047]);
        assert_eq!(
            reader.read_block("bkp-inc", 1).unwrap().unwrap().to_vec(),
            block(9)
        );
        assert_eq!(
            reader.read_block("bkp-full", 1).unwrap().unwrap().to_vec(),
            block(2)
        );
        assert_eq!(
            reader
                .read_block("bkp-inc", 2047)
                .unwrap()
                .unwrap()
                .to_vec(),
            block(0)
        );
        assert_eq!(reader.read_block("bkp-inc", 100).unwrap(), None);
        assert_eq!(reader.read_block("bkp-inc", 50).unwrap(), None);
        assert_eq!(
            reader
                .read_block("bkp-full", 100)
                .unwrap()
                .unwrap()
                .to_vec(),
            block(101)
        );

        for id in ["bkp-full", "bkp-inc"] {
            let out = dir.path().join(format!("{id}.img"));
            std::fs::File::create(&out).unwrap().set_len(SIZE).unwrap();
            run_restore(&reader, id, &out, true, &control).unwrap();
            let restored = std::fs::read(&out).unwrap();
            let mut expected = vec![0u8; SIZE as usize];
            reader.read_blocks(id, 0, &mut expected).unwrap();
            assert!(restored == expected, "{id}");
            run_verify(&reader, id, &control).unwrap();
        }
        assert_eq!(
            std::fs::read(dir.path().join("bkp-inc.img")).unwrap(),
            std::fs::read(&vol).unwrap()
        );
    }

    #[test]
    fn a_cancelled_backup_writes_no_index() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::open_or_create(&dir.path().join("repo")).unwrap();
        let f = std::fs::File::create(dir.path().join("vol.img")).unwrap();
        f.set_len(SIZE).unwrap();
        f.write_all_at(&block(1), 0).unwrap();
        let control = JobControl::default();
        control.cancel();
        let err = run_backup(
            &repo,
            plan(dir.path(), "bkp-x", None, Codec::Zstd),
            &control,
        )
        .unwrap_err();
        assert!(matches!(err, EngineError::Interrupted), "{err}");
        assert!(!repo.has_index("bkp-x").unwrap());
    }
}
