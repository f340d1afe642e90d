//! The contract a volume implements to be exported as a SCSI logical unit, and the raw-file
//! implementation the `target-emulator` binary uses.
//!
//! The SCSI layer speaks in logical blocks; a `Lun` is addressed in logical blocks too, so block
//! rounding is decided once, by the implementation that knows its own granularity. Methods are
//! synchronous: the session calls them off the async reactor (see `session::tasks::io_blocking`).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;

/// How a range of logical blocks is provisioned (SBC-4 §4.7, "logical block provisioning").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provisioning {
    /// The blocks hold data.
    Mapped,
    /// The blocks hold no data and read as zeros.
    Deallocated,
}

/// Errors a logical unit reports; mapped to sense data in exactly one place,
/// [`crate::scsi::sense::Sense::from_lun_error`].
#[derive(Debug, thiserror::Error)]
pub enum LunError {
    #[error("the logical unit is read-only")]
    ReadOnly,
    #[error("the logical unit does not support deallocation")]
    DeallocateUnsupported,
    #[error("I/O error on the backing store: {0}")]
    Io(#[from] std::io::Error),
    /// Stored data failed verification (a checksum mismatch in a backup repository, say).
    #[error("stored data is damaged: {0}")]
    Damaged(String),
}

/// A logical unit the target can export as LUN 0 of a target name.
pub trait Lun: Send + Sync {
    /// Logical block length in bytes: 512 or 4096.
    fn block_size(&self) -> u32;
    /// Number of logical blocks.
    fn block_count(&self) -> u64;
    /// Whether writes are refused (DATA PROTECT / WRITE PROTECTED on every write).
    fn read_only(&self) -> bool;
    /// MODE SENSE's WP bit; by default, whether the unit is read-only. A read-only unit
    /// may leave it clear so that hosts can open it read-write: Linux marks a WP disk
    /// read-only and refuses `open(O_RDWR)`, which sg3_utils does unless given `-R`. Writes
    /// are refused either way.
    fn reports_write_protect(&self) -> bool {
        self.read_only()
    }
    /// Fills `buf` (a whole number of blocks) from block `lba` on.
    fn read(&self, lba: u64, buf: &mut [u8]) -> Result<(), LunError>;
    /// Writes `data` (a whole number of blocks) at block `lba`.
    fn write(&self, _lba: u64, _data: &[u8]) -> Result<(), LunError> {
        Err(LunError::ReadOnly)
    }
    /// Whether [`Lun::deallocate`] works (VPD 0xB2 LBPU/LBPWS, UNMAP).
    fn supports_deallocate(&self) -> bool {
        false
    }
    /// Deallocates `blocks` blocks from `lba`: they then read as zeros.
    fn deallocate(&self, _lba: u64, _blocks: u64) -> Result<(), LunError> {
        Err(LunError::DeallocateUnsupported)
    }
    /// Makes written data durable (SYNCHRONIZE CACHE).
    fn flush(&self) -> Result<(), LunError> {
        Ok(())
    }
    /// The provisioning status at `lba` and how many blocks from `lba` on share it (≥ 1, and
    /// never past the end). Implementations should return maximal runs: GET LBA STATUS emits
    /// one descriptor per run and merges only what it is given.
    fn provisioning(&self, lba: u64) -> Result<(Provisioning, u64), LunError>;
    /// A stable identifier for VPD 0x80 / 0x83 (unit serial number, device identification).
    fn serial(&self) -> String;
}

/// A raw file (or block device) exported block for block. Holes are deallocated, found with
/// SEEK_DATA / SEEK_HOLE, and UNMAP punches holes, so thin provisioning round-trips.
pub struct FileLun {
    file: File,
    block_size: u32,
    block_count: u64,
    read_only: bool,
    serial: String,
}

impl FileLun {
    /// Opens `path`. The file's size must be a whole number of blocks: a trailing partial block
    /// could be neither read nor written through SCSI.
    pub fn open(path: &Path, block_size: u32, read_only: bool) -> std::io::Result<Self> {
        if block_size != 512 && block_size != 4096 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("block size must be 512 or 4096, not {block_size}"),
            ));
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(!read_only)
            .open(path)?;
        let size = crate::sparse::device_size(&file)?;
        if size % block_size as u64 != 0 || size == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "{} is {size} bytes, not a non-zero multiple of the {block_size}-byte block",
                    path.display()
                ),
            ));
        }
        let serial = serial_from_path(path);
        Ok(Self {
            file,
            block_size,
            block_count: size / block_size as u64,
            read_only,
            serial,
        })
    }

    fn byte_range(&self, lba: u64, len: usize) -> u64 {
        debug_assert!(lba + (len as u64 / self.block_size as u64) <= self.block_count);
        lba * self.block_size as u64
    }
}

/// A short stable serial: a hash of the canonical path, so a re-export keeps its identity.
fn serial_from_path(path: &Path) -> String {
    let canon = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in canon.as_os_str().as_encoded_bytes() {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

impl Lun for FileLun {
    fn block_size(&self) -> u32 {
        self.block_size
    }
    fn block_count(&self) -> u64 {
        self.block_count
    }
    fn read_only(&self) -> bool {
        self.read_only
    }
    fn read(&self, lba: u64, buf: &mut [u8]) -> Result<(), LunError> {
        self.file
            .read_exact_at(buf, self.byte_range(lba, buf.len()))?;
        Ok(())
    }
    fn write(&self, lba: u64, data: &[u8]) -> Result<(), LunError> {
        if self.read_only {
            return Err(LunError::ReadOnly);
        }
        self.file
            .write_all_at(data, self.byte_range(lba, data.len()))?;
        Ok(())
    }
    fn supports_deallocate(&self) -> bool {
        !self.read_only
    }
    fn deallocate(&self, lba: u64, blocks: u64) -> Result<(), LunError> {
        if self.read_only {
            return Err(LunError::ReadOnly);
        }
        let bs = self.block_size as u64;
        // SAFETY: fallocate on a descriptor we own; no memory is passed.
        let r = unsafe {
            libc::fallocate(
                self.file.as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                (lba * bs) as libc::off_t,
                (blocks * bs) as libc::off_t,
            )
        };
        if r == 0 {
            return Ok(());
        }
        // A device or file system without hole punching still reads zeros after a zero write.
        let zeros = vec![0u8; (64 * 1024).min(blocks * bs) as usize];
        let (mut at, end) = (lba * bs, (lba + blocks) * bs);
        while at < end {
            let n = zeros.len().min((end - at) as usize);
            self.file.write_all_at(&zeros[..n], at)?;
            at += n as u64;
        }
        Ok(())
    }
    fn flush(&self) -> Result<(), LunError> {
        if !self.read_only {
            self.file.sync_data()?;
        }
        Ok(())
    }
    fn provisioning(&self, lba: u64) -> Result<(Provisioning, u64), LunError> {
        let bs = self.block_size as u64;
        let size = self.block_count * bs;
        let at = lba * bs;
        let data = crate::sparse::next_data(&self.file, at)?
            .unwrap_or(size)
            .min(size);
        if data > at {
            // Hole from `at` to `data`; a partial block at the end of the hole holds data.
            let blocks = (data - at) / bs;
            if blocks > 0 {
                return Ok((Provisioning::Deallocated, blocks));
            }
        }
        let hole = crate::sparse::next_hole(&self.file, at)?
            .unwrap_or(size)
            .min(size);
        let end = hole.div_ceil(bs).min(self.block_count);
        Ok((Provisioning::Mapped, (end - lba).max(1)))
    }
    fn serial(&self) -> String {
        self.serial.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holes_and_data_are_reported_as_maximal_runs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk.img");
        let f = File::create(&path).unwrap();
        f.set_len(4 << 20).unwrap();
        f.write_all_at(&[1u8; 8192], 1 << 20).unwrap();
        drop(f);
        let lun = FileLun::open(&path, 512, true).unwrap();
        assert_eq!(
            lun.provisioning(0).unwrap(),
            (Provisioning::Deallocated, 2048)
        );
        assert_eq!(lun.provisioning(2048).unwrap(), (Provisioning::Mapped, 16));
        assert_eq!(lun.provisioning(2050).unwrap(), (Provisioning::Mapped, 14));
        assert_eq!(
            lun.provisioning(2064).unwrap(),
            (Provisioning::Deallocated, 8192 - 2064)
        );
    }

    #[test]
    fn refuses_sizes_that_are_not_whole_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("odd.img");
        File::create(&path).unwrap().set_len(1000).unwrap();
        assert!(FileLun::open(&path, 512, true).is_err());
    }
}
