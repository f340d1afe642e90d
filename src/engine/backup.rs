//! Full and incremental backups: one streaming pipeline.
//!
//! ```text
//! cursor (pieces + parent fingerprints) ──▶ workers (read, zero-check, fingerprint,
//!     compare, compress) ──results──▶ this thread (in piece order) ──frames──▶ BackupWriter
//! ```
//! The cursor hands out the next piece of what there is to read: every data range of
//! the volume (holes skipped with SEEK_DATA / SEEK_HOLE), or only the blocks write
//! tracking marked since the parent (`BackupPlan::dirty`). With each piece go the
//! parent's fingerprints up to its end, read as a stream in block order
//! (`FingerprintStream`), so the parent's map is never held whole.
//!
//! Workers, one a core, read the piece they work on, so the bytes are still in their
//! core's cache when they hash and compress them. Each fingerprints every tracking
//! block, compares it with the parent's and compresses each run of changed blocks into
//! a frame. This thread takes the results in piece order (the cursor runs at most a
//! window of pieces ahead of it), builds the change and allocated bitmaps and the
//! content hash as it goes, and hands frames to the repository's `BackupWriter`.
//! Memory is a fixed number of pieces in flight plus what the backup stores, whatever
//! the volume's size.
//!
//! The index is written last, after every pack is durable: a backup that dies
//! midway leaves only unreferenced packs, which garbage collection removes.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use roaring::RoaringTreemap;

use super::source::data_ranges;
use super::{EngineError, JobControl, worker_count};
use crate::clock::now_rfc3339;
use crate::kinds::ChangeSource;
use crate::repo::hash::{fingerprint, frame_hash_of};
use crate::repo::pack::EncodedFrame;
use crate::repo::{
    BackupManifest, BackupWriter, BlockFingerprint, Codec, ContentHasher, FingerprintStream,
    Fingerprints, Repository, TRACKING_BLOCK_SIZE,
};

const BLOCK: usize = TRACKING_BLOCK_SIZE as usize;
/// Bytes a worker reads and works on at once: large enough for sequential reads,
/// small enough to stay in a core's cache between reading and compressing.
pub const PIECE_LEN: usize = 1 << 20;
/// A frame holds at most this many consecutive changed blocks (128 KiB): big
/// enough to compress well, small enough that reading one block of a delta
/// volume decompresses little.
pub const MAX_FRAME_BLOCKS: usize = 32;
/// Pieces the cursor may hand out beyond the oldest one not yet taken in order, per
/// worker: what bounds the results waiting to be taken in order.
const WINDOW_PER_WORKER: u64 = 4;
/// The most parent fingerprints of unread blocks one task carries (1.5 MiB).
const MAX_UNREAD: usize = 64 << 10;

static ZERO_BLOCK: [u8; BLOCK] = [0; BLOCK];

/// What to back up and how; the manifest's result fields are filled in here.
pub struct BackupPlan {
    pub manifest: BackupManifest,
    pub source: PathBuf,
    pub codec: Codec,
    /// The blocks written since the parent, when write tracking vouches for them:
    /// only those are read and compared. `None`, or a backup without a parent: every
    /// allocated block is.
    pub dirty: Option<RoaringTreemap>,
}

/// What a finished backup recorded.
#[derive(Debug, Clone)]
pub struct BackupOutcome {
    pub changed_blocks: u64,
    pub allocated_blocks: u64,
    pub stored_bytes: u64,
    pub content_hash: String,
    pub completed_at: String,
    pub change_source: ChangeSource,
    /// Bytes read from the volume.
    pub read_bytes: u64,
}

/// A piece of work: the volume's bytes `[pos, pos + len)` (`len` may be 0) and the
/// parent's fingerprints below its end that earlier tasks did not carry.
struct Task {
    seq: u64,
    pos: u64,
    len: usize,
    /// `parent` below this block is of blocks not read.
    unread_below: u64,
    parent: Vec<BlockFingerprint>,
}

struct PieceResult {
    seq: u64,
    /// The parent's fingerprints of blocks before the piece that were not read: when
    /// only written blocks are read, the unchanged blocks between them.
    unread: Vec<BlockFingerprint>,
    /// Fingerprints of this piece's non-zero blocks, ascending.
    fingerprints: Vec<BlockFingerprint>,
    /// Non-zero blocks that differ from the parent, ascending.
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
            let fps = chain.fingerprint_stream(pid)?;
            (chain.index(pid)?.allocated.clone(), fps)
        }
        None => (RoaringTreemap::new(), FingerprintStream::empty()),
    };
    let file = File::open(&plan.source).map_err(|e| EngineError::io(plan.source.display(), e))?;
    let (source, ranges) = match (&plan.dirty, &plan.manifest.parent_id) {
        (Some(dirty), Some(_)) => (ChangeSource::DirtyBitmap, dirty_ranges(dirty, size)),
        _ => (
            ChangeSource::FullCompare,
            data_ranges(&file, size, TRACKING_BLOCK_SIZE)?,
        ),
    };
    // Progress counts the bytes there are to read (holes are skipped), so it moves
    // evenly to 100 % instead of creeping to the allocated share and jumping.
    let to_read: u64 = ranges.iter().map(|(start, end)| end - start).sum();
    control.set_total(to_read.max(1));
    // Reading only written blocks is many small reads and little work on each: more
    // readers than cores keep the disk's queue full.
    let workers = match source {
        ChangeSource::DirtyBitmap => (worker_count() * 4).max(8),
        ChangeSource::FullCompare => worker_count(),
    };
    let (result_tx, result_rx) = sync_channel::<Result<PieceResult, EngineError>>(workers * 2);
    let keep_unread = source == ChangeSource::DirtyBitmap;
    let cursor = PieceCursor::new(
        ranges,
        parent_fps,
        keep_unread,
        WINDOW_PER_WORKER * workers as u64,
    );
    // Set when the writer gives up: workers stop taking pieces. The writer ends when
    // every worker has dropped its result sender, so no stage waits forever.
    let stop = AtomicBool::new(false);

    std::thread::scope(|scope| {
        for _ in 0..workers {
            let tx = result_tx.clone();
            let codec = plan.codec;
            let (file, cursor, stop) = (&file, &cursor, &stop);
            scope.spawn(move || work_pieces(file, cursor, tx, codec, control, stop));
        }
        drop(result_tx);
        let results = Results {
            rx: result_rx,
            cursor: &cursor,
            parent_allocated: &parent_allocated,
            source,
        };
        let written = write_results(repo, &plan, results, control);
        if written.is_err() {
            stop.store(true, Ordering::SeqCst);
            cursor.wake();
        }
        written
    })
}

/// The byte ranges of the dirty blocks inside the volume, runs merged.
fn dirty_ranges(dirty: &RoaringTreemap, size: u64) -> Vec<(u64, u64)> {
    let blocks = size / TRACKING_BLOCK_SIZE;
    let mut out: Vec<(u64, u64)> = Vec::new();
    for block in dirty.iter().take_while(|b| *b < blocks) {
        let at = block * TRACKING_BLOCK_SIZE;
        match out.last_mut() {
            Some(last) if last.1 == at => last.1 = at + TRACKING_BLOCK_SIZE,
            _ => out.push((at, at + TRACKING_BLOCK_SIZE)),
        }
    }
    out
}

/// What the cursor hands out next.
#[derive(Clone, Copy)]
enum Next {
    Piece(u64, usize),
    /// After the last piece: the parent's remaining fingerprints, then its trailers.
    Tail,
    Done,
}

/// Hands out the ranges to read in pieces of at most `PIECE_LEN`, in order, each with
/// the parent's fingerprints up to its end; never more than `window` pieces ahead of
/// the results taken in order.
struct PieceCursor {
    state: Mutex<CursorState>,
    taken: Condvar,
}

struct CursorState {
    ranges: std::vec::IntoIter<(u64, u64)>,
    current: Option<(u64, u64)>,
    /// A piece whose parent fingerprints before it did not fit in one task.
    held: Option<Next>,
    parent: FingerprintStream,
    keep_unread: bool,
    next_seq: u64,
    /// Results taken in order so far.
    taken: u64,
    window: u64,
    tail_sent: bool,
    woken: bool,
}

impl PieceCursor {
    fn new(
        ranges: Vec<(u64, u64)>,
        parent: FingerprintStream,
        keep_unread: bool,
        window: u64,
    ) -> PieceCursor {
        PieceCursor {
            state: Mutex::new(CursorState {
                ranges: ranges.into_iter(),
                current: None,
                held: None,
                parent,
                keep_unread,
                next_seq: 0,
                taken: 0,
                window: window.max(1),
                tail_sent: false,
                woken: false,
            }),
            taken: Condvar::new(),
        }
    }

    fn lock(&self) -> Option<MutexGuard<'_, CursorState>> {
        self.state.lock().ok()
    }

    /// The results up to `taken` have been taken in order.
    fn taken_up_to(&self, taken: u64) {
        if let Some(mut st) = self.lock() {
            st.taken = taken;
        }
        self.taken.notify_all();
    }

    /// Lets waiting workers see that the backup stopped.
    fn wake(&self) {
        if let Some(mut st) = self.lock() {
            st.woken = true;
        }
        self.taken.notify_all();
    }

    /// How many tasks were handed out.
    fn handed_out(&self) -> u64 {
        self.lock().map_or(0, |st| st.next_seq)
    }

    /// The next task; `None` when there is none or the backup stopped.
    fn next_task(&self, control: &JobControl) -> Option<Result<Task, EngineError>> {
        let mut st = self.lock()?;
        while st.next_seq >= st.taken + st.window {
            if st.woken || control.is_cancelled() {
                return None;
            }
            st = self
                .taken
                .wait_timeout(st, Duration::from_millis(100))
                .ok()?
                .0;
        }
        if st.woken {
            return None;
        }
        let next = match st.held.take() {
            Some(n) => n,
            None => st.next_piece(),
        };
        let (pos, len, start_block, end_block) = match next {
            Next::Piece(pos, len) => (
                pos,
                len,
                pos / TRACKING_BLOCK_SIZE,
                (pos + len as u64) / TRACKING_BLOCK_SIZE,
            ),
            Next::Tail => (0, 0, u64::MAX, u64::MAX),
            Next::Done => return None,
        };
        let seq = st.next_seq;
        st.next_seq += 1;
        Some(
            st.parent_for(next, start_block, end_block)
                .map(|(parent, whole)| Task {
                    seq,
                    pos,
                    // A task that carries only unread blocks' fingerprints reads nothing.
                    len: if whole { len } else { 0 },
                    unread_below: start_block,
                    parent,
                }),
        )
    }
}

impl CursorState {
    fn next_piece(&mut self) -> Next {
        loop {
            match self.current {
                Some((pos, end)) if pos < end => {
                    let len = ((end - pos) as usize).min(PIECE_LEN);
                    self.current = Some((pos + len as u64, end));
                    return Next::Piece(pos, len);
                }
                _ => match self.ranges.next() {
                    Some(r) => self.current = Some(r),
                    None if self.tail_sent => return Next::Done,
                    None => {
                        self.tail_sent = true;
                        return Next::Tail;
                    }
                },
            }
        }
    }

    /// The parent's fingerprints for a task: those of unread blocks before
    /// `start_block` (at most `MAX_UNREAD`; the piece is held back for the next task if
    /// there are more: then `false`, the task is only those), then those inside the
    /// piece.
    fn parent_for(
        &mut self,
        next: Next,
        start_block: u64,
        end_block: u64,
    ) -> Result<(Vec<BlockFingerprint>, bool), EngineError> {
        let mut out = Vec::new();
        if self.keep_unread {
            if !self
                .parent
                .take_below_at_most(start_block, MAX_UNREAD, &mut out)?
            {
                self.held = Some(next);
                return Ok((out, false));
            }
        } else {
            // Parent blocks in what is a hole now: changed, found from the bitmaps.
            self.parent.skip_below(start_block)?;
        }
        self.parent
            .take_below_at_most(end_block, usize::MAX, &mut out)?;
        if matches!(next, Next::Tail) {
            self.parent.finish()?;
        }
        Ok((out, true))
    }
}

fn work_pieces(
    file: &File,
    cursor: &PieceCursor,
    tx: SyncSender<Result<PieceResult, EngineError>>,
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
        let task = match cursor.next_task(control) {
            None => return,
            Some(Err(e)) => {
                let _ = tx.send(Err(e));
                return;
            }
            Some(Ok(task)) => task,
        };
        data.resize(task.len, 0);
        let result = match file.read_exact_at(&mut data, task.pos) {
            Err(e) => Err(EngineError::io(format!("volume read at {}", task.pos), e)),
            Ok(()) => process_piece(&task, &data, codec),
        };
        let failed = result.is_err();
        if tx.send(result).is_err() || failed {
            return;
        }
    }
}

/// Per tracking block: zero? fingerprint, equal to the parent's? Runs of changed
/// non-zero blocks become frames.
fn process_piece(task: &Task, data: &[u8], codec: Codec) -> Result<PieceResult, EngineError> {
    let first_block = task.pos / TRACKING_BLOCK_SIZE;
    let split = task.parent.partition_point(|e| e.0 < task.unread_below);
    let (unread, parent) = task.parent.split_at(split);
    let mut out = PieceResult {
        seq: task.seq,
        unread: unread.to_vec(),
        fingerprints: Vec::new(),
        changed: Vec::new(),
        frames: Vec::new(),
        bytes: data.len() as u64,
    };
    // Current run of changed blocks: (index of first block within the piece, count).
    let mut run: Option<(usize, usize)> = None;
    let flush =
        |run: &mut Option<(usize, usize)>, out: &mut PieceResult| -> Result<(), EngineError> {
            if let Some((first, count)) = run.take() {
                let raw = &data[first * BLOCK..(first + count) * BLOCK];
                let run_first = first_block + first as u64;
                let at = out.fingerprints.partition_point(|f| f.0 < run_first);
                let fps = out.fingerprints[at..].iter().take(count).map(|f| &f.1);
                let frame = EncodedFrame::encode_hashed(raw, codec, frame_hash_of(fps))?;
                out.frames.push((run_first, count as u32, frame));
            }
            Ok(())
        };
    let parent_of = |index: u64| {
        parent
            .binary_search_by_key(&index, |e| e.0)
            .ok()
            .map(|i| &parent[i].1)
    };
    for (i, block) in data.chunks_exact(BLOCK).enumerate() {
        let index = first_block + i as u64;
        // Slice equality is a memcmp: fast even in unoptimised builds.
        if block == &ZERO_BLOCK[..] {
            flush(&mut run, &mut out)?;
            continue;
        }
        let fp = fingerprint(block);
        out.fingerprints.push((index, fp));
        if parent_of(index) == Some(&fp) {
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

/// The workers' results and what taking them in order needs.
struct Results<'a> {
    rx: Receiver<Result<PieceResult, EngineError>>,
    cursor: &'a PieceCursor,
    parent_allocated: &'a RoaringTreemap,
    source: ChangeSource,
}

/// What the results taken in order add up to.
struct Totals {
    hasher: ContentHasher,
    allocated: RoaringTreemap,
    changed: RoaringTreemap,
    /// Fingerprints of the blocks this backup stores, ascending.
    stored: Vec<BlockFingerprint>,
    read_bytes: u64,
}

impl Totals {
    fn take(&mut self, piece: PieceResult) {
        // Blocks not read are the parent's, unchanged (only written blocks were read);
        // they are allocated as in the parent, which `write_results` adds at the end.
        for (block, fp) in &piece.unread {
            self.hasher.add(*block, fp);
        }
        for (block, fp) in &piece.fingerprints {
            self.hasher.add(*block, fp);
        }
        self.allocated
            .extend(piece.fingerprints.iter().map(|e| e.0));
        let mut changed = piece.changed.iter().peekable();
        for entry in &piece.fingerprints {
            if changed.peek() == Some(&&entry.0) {
                self.stored.push(*entry);
                changed.next();
            }
        }
        self.changed.extend(piece.changed.iter().copied());
        self.read_bytes += piece.bytes;
    }
}

fn write_results(
    repo: &Repository,
    plan: &BackupPlan,
    results: Results<'_>,
    control: &JobControl,
) -> Result<BackupOutcome, EngineError> {
    let mut writer = BackupWriter::begin(repo, &plan.manifest.id)?;
    let mut totals = Totals {
        hasher: ContentHasher::new(plan.manifest.size),
        allocated: RoaringTreemap::new(),
        changed: RoaringTreemap::new(),
        stored: Vec::new(),
        read_bytes: 0,
    };
    let mut waiting = BTreeMap::new();
    let mut next = 0u64;
    for result in results.rx.iter() {
        let mut piece = result?;
        for (first_block, blocks, frame) in std::mem::take(&mut piece.frames) {
            writer.append(first_block, blocks, &frame)?;
        }
        waiting.insert(piece.seq, piece);
        let before = next;
        while let Some(piece) = waiting.remove(&next) {
            totals.take(piece);
            next += 1;
        }
        if next > before {
            results.cursor.taken_up_to(next);
            control.set_done(totals.read_bytes);
        }
    }
    if control.is_cancelled() {
        return Err(EngineError::Interrupted);
    }
    if !waiting.is_empty() || next != results.cursor.handed_out() {
        return Err(EngineError::io(
            plan.source.display(),
            std::io::Error::other("a piece of the volume was not processed"),
        ));
    }
    let Totals {
        hasher,
        mut allocated,
        mut changed,
        stored,
        read_bytes,
    } = totals;
    if let (ChangeSource::DirtyBitmap, Some(dirty)) = (results.source, &plan.dirty) {
        allocated |= results.parent_allocated - dirty;
    }
    // Blocks the parent held and that are zero now changed too (zeroed or trimmed).
    changed |= results.parent_allocated - &allocated;
    let content_hash = hasher.finish();
    // Only the blocks this backup stores keep their fingerprint here; the rest
    // are its ancestors' (see `repo::index`).
    let stored = Fingerprints { entries: stored };
    // Run containers: allocated regions are long runs, so the bitmaps stay small.
    changed.optimize();
    allocated.optimize();

    let mut manifest = plan.manifest.clone();
    manifest.changed_blocks = changed.len();
    manifest.allocated_blocks = allocated.len();
    manifest.content_hash = content_hash.clone();
    manifest.completed_at = now_rfc3339();
    manifest.change_source = Some(results.source);
    manifest.read_bytes = Some(read_bytes);
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
        change_source: results.source,
        read_bytes,
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
                change_source: None,
                read_bytes: None,
            },
            source: dir.join("vol.img"),
            codec,
            dirty: None,
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
