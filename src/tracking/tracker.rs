//! One managed volume's write tracking: which 4 KiB blocks were written since its last
//! backup, kept in memory and in `<volume file>.dirty` (see `format`).
//!
//! The rule that keeps it exact: the file says *clean* only when its bits hold every
//! block written so far. So before the first write after a clean file, the file is
//! marked *in use* (one byte, fsynced) and the write waits for that; a crash then
//! leaves it in use, and the next incremental compares everything instead of
//! trusting bits that may miss a block. A clean file is written whole (temp file,
//! fsync, rename, fsync of the directory) when the host asks for durability (FUA,
//! SYNCHRONIZE CACHE: before the command completes), within the tracking window
//! otherwise, and on detach and shutdown.
//!
//! A backup takes the bits (`take`): new writes count from then on, the point in time of
//! the backup. Until it commits, the taken bits stay in what is persisted, so a backup
//! that fails or dies gives them back and loses nothing.
//!
//! Only writes through the target are seen, so the tracker also keeps the volume file's
//! modification time after each write it saw. A different time when a backup takes the
//! bits means the file was written some other way (a tool run on the file, a copy over
//! it), and that backup compares every block. A foreign write landing in the instant
//! between one of our writes and the look at the time after it would go unseen: a
//! managed volume is written through the target, and this catches the rest.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use roaring::RoaringTreemap;

use super::TrackingError;
use super::format::{DirtyFile, FileState, STATE_OFFSET};
use crate::faults::fault;
use crate::repo::TRACKING_BLOCK_SIZE;
use crate::sync::lock;

/// What the file on disk says, as far as this process knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OnDisk {
    Missing,
    Clean,
    InUse,
}

struct State {
    /// The backup `bits` (with `taken`) count from; `None`: they vouch for nothing.
    base: Option<String>,
    /// Blocks written since the base (or since the running backup took the rest).
    bits: RoaringTreemap,
    /// What a running backup took: persisted with `bits` until it commits.
    taken: Option<RoaringTreemap>,
    on_disk: OnDisk,
    /// The volume file's modification time after the last write seen.
    mtime: (i64, u32),
    /// Whether memory holds what the file does not.
    unpersisted: bool,
    /// Why the bits vouch for nothing, when `base` is `None` for a reason worth saying.
    untrusted: Option<String>,
}

/// The blocks a backup took and what they count from.
pub struct Taken {
    pub base: Option<String>,
    pub bits: RoaringTreemap,
    /// Why they cannot be used, if they cannot.
    pub untrusted: Option<String>,
}

pub struct WriteTracker {
    volume: PathBuf,
    path: PathBuf,
    state: Mutex<State>,
}

/// A file's modification time; (0, 0) when it cannot be read.
fn mtime_of(path: &Path) -> (i64, u32) {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).map_or((0, 0), |m| (m.mtime(), m.mtime_nsec() as u32))
}

impl WriteTracker {
    /// Opens the tracking of the volume file `volume`: its `.dirty` file, if it has one.
    /// A file left in use (a crash) or damaged vouches for nothing.
    pub fn open(volume: &Path) -> WriteTracker {
        let path = dirty_path(volume);
        let untrusted =
            |on_disk, why: String| (None, RoaringTreemap::new(), on_disk, (0, 0), Some(why));
        let (base, bits, on_disk, mtime, untrusted) = match std::fs::read(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                (None, RoaringTreemap::new(), OnDisk::Missing, (0, 0), None)
            }
            Err(e) => untrusted(
                OnDisk::InUse,
                format!("its write-tracking file cannot be read: {e}"),
            ),
            Ok(bytes) => match DirtyFile::decode(&bytes) {
                Ok(f) if f.state == FileState::Clean => {
                    (f.base, f.bits, OnDisk::Clean, f.mtime, None)
                }
                Ok(_) => untrusted(
                    OnDisk::InUse,
                    "the server stopped without closing its write tracking (a crash)".into(),
                ),
                Err(e) => untrusted(
                    OnDisk::InUse,
                    format!("its write-tracking file is damaged: {e}"),
                ),
            },
        };
        if let Some(why) = &untrusted {
            tracing::warn!(file = %path.display(), why, "write tracking starts over");
        }
        WriteTracker {
            volume: volume.to_path_buf(),
            path,
            state: Mutex::new(State {
                base,
                bits,
                taken: None,
                on_disk,
                mtime,
                unpersisted: false,
                untrusted,
            }),
        }
    }

    /// Records a write of `len` bytes at byte `offset`; returns once a crash can no
    /// longer leave a clean file that misses it.
    pub fn mark(&self, offset: u64, len: u64) -> Result<(), TrackingError> {
        if len == 0 {
            return Ok(());
        }
        let first = offset / TRACKING_BLOCK_SIZE;
        let end = (offset + len).div_ceil(TRACKING_BLOCK_SIZE);
        let mut st = lock(&self.state);
        if st.on_disk != OnDisk::InUse {
            self.mark_in_use(&mut st)?;
        }
        st.bits.insert_range(first..end);
        st.unpersisted = true;
        Ok(())
    }

    /// A write marked with `mark` has reached the volume file.
    pub fn written(&self) {
        let mtime = mtime_of(&self.volume);
        let mut st = lock(&self.state);
        st.mtime = mtime;
        st.unpersisted = true;
    }

    fn mark_in_use(&self, st: &mut State) -> Result<(), TrackingError> {
        if st.on_disk == OnDisk::Missing {
            return self.write_file(st, FileState::InUse);
        }
        let io = |e| TrackingError::io(&self.path, e);
        fault!("tracking.mark.write", io);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&self.path)
            .map_err(io)?;
        file.write_all_at(&[FileState::InUse.byte()], STATE_OFFSET)
            .map_err(io)?;
        fault!("tracking.mark.fsync", io);
        file.sync_data().map_err(io)?;
        st.on_disk = OnDisk::InUse;
        Ok(())
    }

    /// Writes a clean file if memory holds anything the file does not.
    pub fn persist(&self) -> Result<(), TrackingError> {
        let mut st = lock(&self.state);
        if !st.unpersisted && st.on_disk != OnDisk::InUse {
            return Ok(());
        }
        self.write_file(&mut st, FileState::Clean)
    }

    /// Replaces the file with one of `state` holding what memory does.
    fn write_file(&self, st: &mut State, state: FileState) -> Result<(), TrackingError> {
        let mut bits = st.bits.clone();
        if let Some(taken) = &st.taken {
            bits |= taken;
        }
        let bytes = DirtyFile {
            state,
            base: st.base.clone(),
            mtime: st.mtime,
            bits,
        }
        .encode();
        let tmp = self.path.with_extension("dirty.tmp");
        let io = |e| TrackingError::io(&self.path, e);
        fault!("tracking.file.write", io);
        let mut file = File::create(&tmp).map_err(io)?;
        file.write_all(&bytes).map_err(io)?;
        fault!("tracking.file.fsync", io);
        file.sync_all().map_err(io)?;
        // From here the file may be the new one: a write after this call must mark it
        // in use again, even if the rename below fails.
        if state == FileState::Clean {
            st.on_disk = OnDisk::Clean;
        }
        fault!("tracking.file.rename", io);
        std::fs::rename(&tmp, &self.path).map_err(io)?;
        if let Some(dir) = self.path.parent() {
            File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
        }
        st.on_disk = match state {
            FileState::Clean => OnDisk::Clean,
            FileState::InUse => OnDisk::InUse,
        };
        st.unpersisted = false;
        Ok(())
    }

    /// Takes the blocks written since the base, for a backup starting now.
    pub fn take(&self) -> Taken {
        let mut st = lock(&self.state);
        let bits = std::mem::take(&mut st.bits);
        // A second take without a commit or abort (a backup that panicked) keeps
        // what the first took.
        let mut taken = st.taken.take().unwrap_or_default();
        taken |= &bits;
        st.taken = Some(taken.clone());
        let now = mtime_of(&self.volume);
        let foreign = (now != st.mtime).then(|| {
            "the volume file was modified other than through the iSCSI target".to_string()
        });
        // What the next backup checks against: this backup reads the file as it is now.
        st.mtime = now;
        st.unpersisted = true;
        Taken {
            base: st.base.clone(),
            bits: taken,
            untrusted: st.untrusted.clone().or(foreign),
        }
    }

    /// The backup that took the bits is available: writes since the take count from it.
    pub fn commit(&self, backup_id: &str) -> Result<(), TrackingError> {
        let mut st = lock(&self.state);
        st.taken = None;
        st.base = Some(backup_id.to_string());
        st.untrusted = None;
        st.unpersisted = true;
        self.write_file(&mut st, FileState::Clean)
    }

    /// The backup that took the bits failed: they count again.
    pub fn abort(&self) {
        let mut st = lock(&self.state);
        if let Some(taken) = st.taken.take() {
            st.bits |= taken;
        }
    }

    /// The volume was written outside our target (a restore onto it): the bits vouch for
    /// nothing until the next backup.
    pub fn invalidate(&self, why: &str) -> Result<(), TrackingError> {
        let mut st = lock(&self.state);
        st.base = None;
        st.bits = RoaringTreemap::new();
        st.taken = None;
        st.untrusted = Some(why.to_string());
        st.unpersisted = true;
        self.write_file(&mut st, FileState::Clean)
    }

    /// Removes the file (the volume is gone).
    pub fn remove(&self) {
        let _st = lock(&self.state);
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Where a volume file's dirty bitmap lives.
pub fn dirty_path(volume: &Path) -> PathBuf {
    let mut name = volume.as_os_str().to_owned();
    name.push(".dirty");
    PathBuf::from(name)
}
